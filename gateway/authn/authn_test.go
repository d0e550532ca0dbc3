package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
		a        *Static
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
			err := tc.a.Authenticate(context.Background(), &tc.ci, tc.password)
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
