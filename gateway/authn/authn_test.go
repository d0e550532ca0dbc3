package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/protogate/protogate/gateway"
)

func TestStatic(t *testing.T) {
	sum := sha256.Sum256([]byte("hunter2"))
	byUser, err := NewStatic(map[string]string{
		"alice": "secret",
		"bob":   "sha256:" + hex.EncodeToString(sum[:]),
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	byClient, err := NewStatic(map[string]string{"dev-1": "pw"}, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		a        *BuiltinDB
		ci       gateway.ClientInfo
		password string
		ok       bool
	}{
		{"plain ok", byUser, gateway.ClientInfo{Username: "alice"}, "secret", true},
		{"plain wrong", byUser, gateway.ClientInfo{Username: "alice"}, "Secret", false},
		{"hashed ok", byUser, gateway.ClientInfo{Username: "bob"}, "hunter2", true},
		{"hashed wrong", byUser, gateway.ClientInfo{Username: "bob"}, "sha256:" + hex.EncodeToString(sum[:]), false},
		{"unknown user", byUser, gateway.ClientInfo{Username: "carol"}, "secret", false},
		{"empty username", byUser, gateway.ClientInfo{ClientID: "alice"}, "secret", false},
		{"by client id", byClient, gateway.ClientInfo{ClientID: "dev-1", Username: "x"}, "pw", true},
		{"by client id wrong", byClient, gateway.ClientInfo{ClientID: "dev-2"}, "pw", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.a.Authenticate(context.Background(), &gateway.AuthRequest{Client: tc.ci, Password: tc.password})
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && gateway.CodeOf(err) != gateway.CodePermissionDeny {
				t.Fatalf("code %v, want PERMISSION_DENY", gateway.CodeOf(err))
			}
		})
	}
}

func TestStaticBadHash(t *testing.T) {
	if _, err := NewStatic(map[string]string{"x": "sha256:zz"}, false); err == nil {
		t.Fatal("a malformed sha256 entry was accepted")
	}
}

func TestParsePassword(t *testing.T) {
	sum := sha256.Sum256([]byte("hunter2"))
	digest := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		stored string
		err    string   // substring of the error; "" for success
		match  []string // passwords that log in
		refuse []string // passwords that do not
	}{
		{stored: "secret", match: []string{"secret"}, refuse: []string{"Secret", "", "secret "}},
		{stored: "sha256:" + digest, match: []string{"hunter2"}, refuse: []string{"sha256:" + digest, digest, ""}},
		{stored: "SHA256:" + digest, match: []string{"hunter2"}, refuse: []string{"SHA256:" + digest}},
		{stored: "Sha256:" + strings.ToUpper(digest), match: []string{"hunter2"}, refuse: []string{"Sha256:" + strings.ToUpper(digest)}},
		{stored: "sha256-" + digest, match: []string{"sha256-" + digest}, refuse: []string{"hunter2"}},
		{stored: "", err: "must not be empty"},
		{stored: "sha256:", err: "64 hex digits"},
		{stored: "sha256:abc", err: "64 hex digits"},
		{stored: "SHA256:" + digest[:62], err: "64 hex digits"},
		{stored: "sha256:" + digest + "00", err: "64 hex digits"},
		{stored: "sha256:" + strings.Repeat("g", 64), err: "64 hex digits"},
	} {
		t.Run(tc.stored, func(t *testing.T) {
			pw, err := ParsePassword(tc.stored)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "authn: ") {
					t.Fatalf("ParsePassword = %v, want an error containing %q", err, tc.err)
				}
				if len(tc.stored) > len("sha256:") && strings.Contains(err.Error(), tc.stored) {
					t.Errorf("the error quotes the stored value: %v", err)
				}
				if _, err := NewStatic(map[string]string{"u": tc.stored}, false); err == nil {
					t.Error("NewStatic accepted what ParsePassword refuses")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st, err := NewStatic(map[string]string{"u": tc.stored}, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.match {
				if !pw.Match(p) || !accepts(st, "u", p) {
					t.Errorf("password %q refused", p)
				}
			}
			for _, p := range tc.refuse {
				if pw.Match(p) || accepts(st, "u", p) {
					t.Errorf("password %q accepted", p)
				}
			}
		})
	}
	if (Password{}).Match("") {
		t.Error("the zero Password matched")
	}
}

// accepts reports whether db lets username in with password.
func accepts(db *BuiltinDB, username, password string) bool {
	_, err := db.Authenticate(context.Background(), &gateway.AuthRequest{Client: gateway.ClientInfo{Username: username}, Password: password})
	return err == nil
}
