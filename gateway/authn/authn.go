// Package authn holds the gateway's built-in authenticators.
package authn

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/protogate/protogate/gateway"
)

// ErrNotAuthorized is the error every refused Authenticate wraps. Its text is
// what EMQX reported, so handlers that log it read the same.
var ErrNotAuthorized = &gateway.Error{Code: gateway.CodePermissionDeny, Err: errors.New("authn: not_authorized")}

// Static checks passwords against a fixed table, loaded from config. Entries
// are either the plain password or "sha256:" followed by the hex digest of
// the password. It is safe for concurrent use.
type Static struct {
	byClientID bool
	users      map[string]secret
}

type secret struct {
	hashed bool
	value  []byte
}

var _ gateway.Authenticator = (*Static)(nil)

// NewStatic returns a Static authenticator. With byClientID the table is
// keyed by client id, otherwise by username.
func NewStatic(users map[string]string, byClientID bool) (*Static, error) {
	s := &Static{byClientID: byClientID, users: make(map[string]secret, len(users))}
	for id, pw := range users {
		if h, ok := strings.CutPrefix(pw, "sha256:"); ok {
			sum, err := hex.DecodeString(h)
			if err != nil || len(sum) != sha256.Size {
				return nil, fmt.Errorf("authn: user %q: sha256: wants 64 hex digits", id)
			}
			s.users[id] = secret{hashed: true, value: sum}
			continue
		}
		s.users[id] = secret{value: []byte(pw)}
	}
	return s, nil
}

// Authenticate implements gateway.Authenticator.
func (s *Static) Authenticate(_ context.Context, ci *gateway.ClientInfo, password string) error {
	id := ci.Username
	if s.byClientID {
		id = ci.ClientID
	}
	sec, ok := s.users[id]
	if !ok {
		return ErrNotAuthorized
	}
	got := []byte(password)
	if sec.hashed {
		sum := sha256.Sum256(got)
		got = sum[:]
	}
	if subtle.ConstantTimeCompare(got, sec.value) != 1 {
		return ErrNotAuthorized
	}
	return nil
}
