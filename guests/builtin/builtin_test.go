package builtin

import (
	"bytes"
	"slices"
	"testing"

	"github.com/protogate/protogate/abi"
)

func TestNames(t *testing.T) {
	if got, want := Names(), []string{"coap", "echo", "exproto-json", "linepubsub"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

func TestLookup(t *testing.T) {
	for _, name := range Names() {
		b, ok := Lookup(name)
		if !ok {
			t.Fatalf("Lookup(%q) failed", name)
		}
		if !bytes.HasPrefix(b, []byte("\x00asm\x01\x00\x00\x00")) {
			t.Errorf("%s is not a WebAssembly module", name)
		}
		// Export names are stored as plain strings in the export section.
		for _, export := range []string{abi.ExportMarker, abi.ExportInbox, abi.ExportOnReceivedBytes, abi.ExportReactorInitialize} {
			if !bytes.Contains(b, []byte(export)) {
				t.Errorf("%s lacks %s", name, export)
			}
		}
	}
	for _, name := range []string{"", "nope", "echo.wasm", "../builtin/echo", "."} {
		if _, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) succeeded", name)
		}
	}
}

func TestView(t *testing.T) {
	for _, name := range Names() {
		v, ok := View(name)
		if !ok {
			t.Fatalf("View(%q) failed", name)
		}
		b, _ := Lookup(name)
		if !bytes.Equal(v, b) {
			t.Errorf("View(%q) differs from Lookup(%q)", name, name)
		}
	}
	for _, name := range []string{"", "nope", "echo.wasm", "."} {
		if _, ok := View(name); ok {
			t.Errorf("View(%q) succeeded", name)
		}
	}
}
