package wasmhost_test

import (
	"strings"
	"testing"

	"github.com/protogate/protogate/wasmhost"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
		want string // "" for accepted
	}{
		{"echo", mustBuiltin(t, "echo"), ""},
		{"linepubsub under its limit", mustBuiltin(t, "linepubsub"), ""},
		{"not wasm", []byte("package main"), "wasmhost: compile"},
		{"no exports", []byte("\x00asm\x01\x00\x00\x00"), "not a protogate handler"},
		{"memory over the limit", []byte("\x00asm\x01\x00\x00\x00\x05\x04\x01\x00\xd0\x0f"), "wasmhost: compile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wasmhost.Check(tc.wasm, 0)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Check = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
