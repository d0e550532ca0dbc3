package wasmhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/wasmhost/internal/instrument"
)

// TestRewriteKept checks that a handler with a CacheDir keeps the
// instrumented module there, that the next handler of the same module
// compiles the kept one instead of instrumenting again, and that a kept
// file that is not whole is replaced rather than used.
func TestRewriteKept(t *testing.T) {
	calls := 0
	instrumentModule = func(wasm []byte) ([]byte, error) {
		calls++
		return instrument.Module(wasm)
	}
	t.Cleanup(func() { instrumentModule = instrument.Module })

	wasm, _ := builtin.View("echo")
	dir := t.TempDir()
	sum := sha256.Sum256(wasm)
	kept := filepath.Join(dir, "protogate-instrument-"+instrument.Version, hex.EncodeToString(sum[:]))
	load := func(wantCalls int) {
		t.Helper()
		h, err := New(Config{Name: "echo", Wasm: wasm, Instances: 1, CacheDir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if st := h.Stats(); st.Instances != 1 || st.LastError != "" {
			t.Fatalf("instances = %d, last error %q", st.Instances, st.LastError)
		}
		if calls != wantCalls {
			t.Errorf("instrumented %d times, want %d", calls, wantCalls)
		}
	}

	load(1)
	want, err := instrument.Module(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if got := readRewritten(kept); !bytes.Equal(got, want) {
		t.Fatalf("kept %d bytes, want the %d of the instrumented module", len(got), len(want))
	}
	load(1) // the kept module, not instrumented again

	for _, spoil := range []struct {
		name string
		f    func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"a byte changed", func(b []byte) []byte { b[len(b)/3] ^= 0xff; return b }},
		{"empty", func([]byte) []byte { return nil }},
	} {
		b, err := os.ReadFile(kept)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kept, spoil.f(b), 0o644); err != nil {
			t.Fatal(err)
		}
		before := calls
		load(before + 1)
		if got := readRewritten(kept); !bytes.Equal(got, want) {
			t.Errorf("%s: the kept file was not replaced by the instrumented module", spoil.name)
		}
	}
}
