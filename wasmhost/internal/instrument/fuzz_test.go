package instrument

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/protogate/protogate/guests/builtin"
)

// FuzzInstrument feeds Module arbitrary bytes. It must never panic or
// hang (the module is untrusted, and Module sees it before wazero
// validates it), its output must not grow more than the checks explain,
// and whenever wazero accepts an input that Module rewrote, it must accept
// the output too. (That Module accepts the valid modules it should is
// checked on the seeds, in TestInstrumentAccepts.)
//
// Seeds: the guests protogate ships and tests with, small modules written
// by hand (testdata/features.wat uses every kind of instruction and index
// Module parses or renumbers), and in testdata/fuzz the inputs that made
// Module loop 2^32 times or wazero allocate gigabytes. wazero's interpreter compiles
// here: validation, which is what this checks, does not depend on the
// engine, and it compiles a Go guest in a fraction of the compiler's time
// (TestInstrumentGuests compiles them with the compiler).
func FuzzInstrument(f *testing.F) {
	for _, name := range builtin.Names() {
		wasm, _ := builtin.Lookup(name)
		f.Add(wasm)
	}
	for _, path := range []string{"../../testdata/faulty.wasm", "testdata/features.wasm"} {
		wasm, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wasm)
	}
	f.Add(testModule())
	f.Add(spinModule())
	f.Add(cat(wasmHeader))
	f.Add(cat(wasmHeader, sec(secCustom, str("only a custom section"))))
	f.Add(cat(wasmHeader, sec(secImport, vec(cat(str("env"), str("g"), []byte{0x03, 0x7f, 0x00}))))) // a global import, no types

	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := Module(wasm)
		if err != nil {
			if out != nil {
				t.Fatal("output with an error")
			}
			// wazero does not see what Module refuses: its decoder would
			// allocate gigabytes for some of it (see checkAllocs).
			return
		}
		// Every loop opcode (2 bytes at least) gains a check of 39 bytes
		// at most; function sizes and the new sections add a little.
		if max := 21*len(wasm) + 256; len(out) > max {
			t.Fatalf("%d bytes in, %d out", len(wasm), len(out))
		}
		if again, _ := Module(wasm); !bytes.Equal(out, again) {
			t.Fatal("two runs differ")
		}
		cm, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return // not a valid module: nothing more to hold Module to
		}
		cm.Close(ctx)
		cm, err = rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("wazero accepts the module but not its instrumented version: %v", err)
		}
		cm.Close(ctx)
	})
}
