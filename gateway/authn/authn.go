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

// Static checks passwords against a fixed table, loaded from config. Each
// entry is parsed by ParsePassword. It is safe for concurrent use.
type Static struct {
	byClientID bool
	users      map[string]Password
}

var _ gateway.Authenticator = (*Static)(nil)

// Password is a stored password: the password itself, or the SHA-256
// digest of it. Make one with ParsePassword; the zero Password matches
// nothing.
type Password struct {
	hashed bool
	value  []byte
}

// digestPrefix starts a stored password that is a SHA-256 digest.
const digestPrefix = "sha256:"

// ParsePassword parses a stored password as the configuration writes it:
// "sha256:" (in any case) followed by exactly 64 hex digits (in any case) is
// the SHA-256 digest of the password; anything else is the password in
// plain text. A value that starts with "sha256:" but is not followed by 64
// hex digits is refused rather than taken as plain text, and so is an empty
// password. Errors never quote the value.
//
// The configuration validator and NewStatic both use it, so a password that
// validates is the one that logs in.
func ParsePassword(stored string) (Password, error) {
	if stored == "" {
		return Password{}, errors.New("authn: password must not be empty")
	}
	if len(stored) >= len(digestPrefix) && strings.EqualFold(stored[:len(digestPrefix)], digestPrefix) {
		h := stored[len(digestPrefix):]
		sum, err := hex.DecodeString(h)
		if err != nil || len(sum) != sha256.Size {
			return Password{}, errors.New("authn: a sha256: password must be followed by 64 hex digits (the SHA-256 digest of the password)")
		}
		return Password{hashed: true, value: sum}, nil
	}
	return Password{value: []byte(stored)}, nil
}

// Match reports whether password is the stored password, comparing in
// constant time (for a given length of the stored plain text).
func (p Password) Match(password string) bool {
	if p.value == nil {
		return false
	}
	got := []byte(password)
	if p.hashed {
		sum := sha256.Sum256(got)
		got = sum[:]
	}
	return subtle.ConstantTimeCompare(got, p.value) == 1
}

// NewStatic returns a Static authenticator. With byClientID the table is
// keyed by client id, otherwise by username. Passwords are parsed by
// ParsePassword.
func NewStatic(users map[string]string, byClientID bool) (*Static, error) {
	s := &Static{byClientID: byClientID, users: make(map[string]Password, len(users))}
	for id, stored := range users {
		pw, err := ParsePassword(stored)
		if err != nil {
			return nil, fmt.Errorf("%w (user %q)", err, id)
		}
		s.users[id] = pw
	}
	return s, nil
}

// Authenticate implements gateway.Authenticator.
func (s *Static) Authenticate(_ context.Context, ci *gateway.ClientInfo, password string) error {
	id := ci.Username
	if s.byClientID {
		id = ci.ClientID
	}
	if pw, ok := s.users[id]; !ok || !pw.Match(password) {
		return ErrNotAuthorized
	}
	return nil
}
