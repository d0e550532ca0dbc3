// Package authn holds the gateway's built-in authenticators.
package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/protogate/protogate/gateway"
)

// ErrNotAuthorized is the error every refused Authenticate wraps. Its text is
// what EMQX reported, so handlers that log it read the same.
var ErrNotAuthorized = &gateway.Error{Code: gateway.CodePermissionDeny, Err: errors.New("authn: not_authorized")}

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

// randomSalt returns 16 random bytes as 32 lowercase hex digits, the
// salt EMQX makes for new users (the hex text is the salt).
func randomSalt() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
