package instrument

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/protogate/protogate/abi"
	"github.com/protogate/protogate/guests/builtin"
)

// Helpers that assemble a module in the binary format.

func leb(v uint32) []byte { return appendU32(nil, v) }

func vec(items ...[]byte) []byte {
	out := leb(uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func sec(id byte, body []byte) []byte {
	return append(append([]byte{id}, leb(uint32(len(body)))...), body...)
}

func str(s string) []byte { return appendName(nil, s) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func fbody(code ...byte) []byte { return withLocals([]byte{0x00}, code...) }

func withLocals(locals []byte, code ...byte) []byte {
	b := append(append([]byte(nil), locals...), code...)
	return append(leb(uint32(len(b))), b...)
}

// testModule exercises every place a function index appears: calls,
// call_indirect through an element segment, ref.func in a global's
// initializer and in an expression element segment, exports, the start
// function and the name section. run() returns
// 1000*seven() + 100*start_ran + 10*callIndirect() + twice(loop)
// where the loop counts to 3.
func testModule() []byte {
	types := vec(
		[]byte{0x60, 0x00, 0x01, 0x7f}, // 0: [] -> [i32]
		[]byte{0x60, 0x00, 0x00},       // 1: [] -> []
	)
	imports := vec(cat(str("env"), str("seven"), []byte{0x00}, leb(0))) // func 0
	// Defined functions: 1 run, 2 start, 3 two (via the table), 4 counter,
	// 5 many.
	funcs := vec(leb(0), leb(1), leb(0), leb(0), leb(1))
	table := vec([]byte{0x70, 0x00, 0x02}) // funcref, min 2
	globals := vec(
		[]byte{0x7f, 0x01, 0x41, 0x00, 0x0b}, // 0: start ran (mut i32)
		[]byte{0x70, 0x00, 0xd2, 0x03, 0x0b}, // 1: funcref = ref.func 3
		[]byte{0x7f, 0x01, 0x41, 0x00, 0x0b}, // 2: loop counter
	)
	exports := vec(cat(str("run"), []byte{0x00}, leb(1)), cat(str("many"), []byte{0x00}, leb(5)))
	start := leb(2)
	elems := vec(
		cat([]byte{0x00, 0x41, 0x00, 0x0b}, vec(leb(3))),                   // table[0] = func 3
		cat([]byte{0x04, 0x41, 0x01, 0x0b}, vec([]byte{0xd2, 0x04, 0x0b})), // table[1] = func 4, as an expression
	)
	code := vec(
		// run: seven()*1000 + started*100 + table[0]()*10 + table[1]()
		fbody(
			0x10, 0x00, 0x41, 0xe8, 0x07, 0x6c, // call 0; i32.const 1000; mul
			0x23, 0x00, 0x41, 0xe4, 0x00, 0x6c, 0x6a, // global.get 0; 100; mul; add
			0x41, 0x00, 0x11, 0x00, 0x00, 0x41, 0x0a, 0x6c, 0x6a, // call_indirect table[0] * 10; add
			0x41, 0x01, 0x11, 0x00, 0x00, 0x6a, // call_indirect table[1]; add
			0x0b,
		),
		// start: global 0 = 1
		fbody(0x41, 0x01, 0x24, 0x00, 0x0b),
		// two: 2
		fbody(0x41, 0x02, 0x0b),
		// counter: loop { g2++; br_if g2 < 3 }; g2
		fbody(
			0x03, 0x40,
			0x23, 0x02, 0x41, 0x01, 0x6a, 0x24, 0x02, // g2 = g2 + 1
			0x23, 0x02, 0x41, 0x03, 0x48, 0x0d, 0x00, // br_if 0 (g2 < 3)
			0x0b,
			0x23, 0x02, 0x0b,
		),
		// many: a loop of 5000 iterations
		withLocals([]byte{0x01, 0x01, 0x7f}, // one i32 local
			0x03, 0x40,
			0x20, 0x00, 0x41, 0x01, 0x6a, 0x22, 0x00, // local 0 += 1
			0x41, 0x88, 0x27, 0x48, 0x0d, 0x00, // br_if 0 (local 0 < 5000)
			0x0b, 0x0b,
		),
	)
	names := cat(str("name"),
		sec(0, str("test")),
		sec(1, vec(cat(leb(1), str("run")), cat(leb(4), str("counter")))),
	)
	return cat(wasmHeader,
		sec(secType, types), sec(secImport, imports), sec(secFunction, funcs),
		sec(secTable, table), sec(secGlobal, globals), sec(secExport, exports),
		sec(secStart, start), sec(secElement, elems), sec(secCode, code),
		sec(secCustom, names),
		sec(secCustom, cat(str(".debug_info"), []byte{1, 2, 3})),
	)
}

// runTestModule instantiates wasm with the host modules it needs and
// returns what run() returns.
func runTestModule(t *testing.T, wasm []byte, yield api.GoModuleFunc) (uint64, api.Module) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) { s[0] = 7 }), nil, []api.ValueType{api.ValueTypeI32}).
		Export("seven").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if yield != nil {
		_, err = rt.NewHostModuleBuilder(abi.ModuleName).NewFunctionBuilder().
			WithGoModuleFunction(yield, nil, nil).Export(YieldImport).Instantiate(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}
	mod, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	r, err := mod.ExportedFunction("run").Call(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r[0], mod
}

func TestInstrumentKeepsBehaviour(t *testing.T) {
	orig := testModule()
	want, _ := runTestModule(t, orig, nil)
	if want != 7000+100+20+3 {
		t.Fatalf("the test module itself returns %d", want)
	}
	wasm, err := Module(orig)
	if err != nil {
		t.Fatal(err)
	}
	yields := 0
	got, mod := runTestModule(t, wasm, func(context.Context, api.Module, []uint64) { yields++ })
	if got != want {
		t.Errorf("instrumented module returns %d, want %d", got, want)
	}
	if yields != 0 {
		t.Errorf("yield called %d times with the flag clear", yields)
	}
	if bytes.Contains(wasm, []byte(".debug_info")) {
		t.Error("DWARF section kept")
	}
	if !bytes.Contains(wasm, []byte("counter")) {
		t.Error("name section dropped")
	}

	// Yield is called every Every loop iterations: 3 so far, and
	// 5000 more.
	if _, err := mod.ExportedFunction("many").Call(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := (3 + 5000) / Every; yields != want {
		t.Errorf("yield called %d times, want %d", yields, want)
	}
}

var wasmHeader = []byte("\x00asm\x01\x00\x00\x00")

// spinModule is (func (export "spin") (loop (br 0))).
func spinModule() []byte {
	return cat(wasmHeader,
		sec(secType, vec([]byte{0x60, 0x00, 0x00})),
		sec(secFunction, vec(leb(0))),
		sec(secExport, vec(cat(str("spin"), []byte{0x00}, leb(0)))),
		sec(secCode, vec(fbody(0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b))),
	)
}

func TestInstrumentStopsALoop(t *testing.T) {
	wasm, err := Module(spinModule())
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stopped")
	n := 0
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	_, err = rt.NewHostModuleBuilder(abi.ModuleName).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
			if n++; n == 1000 {
				panic(stop)
			}
		}), nil, nil).Export(YieldImport).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.ExportedFunction("spin").Call(ctx); !errors.Is(err, stop) {
		t.Fatalf("spin returned %v", err)
	}
}

func TestInstrumentRefuses(t *testing.T) {
	for name, wasm := range map[string][]byte{
		"not wasm":  []byte("\x7fELF"),
		"version 2": []byte("\x00asm\x02\x00\x00\x00"),
		"truncated": cat([]byte("\x00asm\x01\x00\x00\x00"), []byte{secType, 10, 1}),
		"bad opcode": cat([]byte("\x00asm\x01\x00\x00\x00"),
			sec(secType, vec([]byte{0x60, 0x00, 0x00})),
			sec(secFunction, vec(leb(0))),
			sec(secCode, vec(fbody(0xff, 0x0b)))),
	} {
		if _, err := Module(wasm); err == nil {
			t.Errorf("%s: instrumented", name)
		}
	}
}

// TestInstrumentAccepts checks that Module rewrites valid modules that use
// what it must parse, and that wazero compiles the result.
func TestInstrumentAccepts(t *testing.T) {
	features, err := os.ReadFile("testdata/features.wasm")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	for name, wasm := range map[string][]byte{
		"features.wat": features,
		// (func (param (ref null func)) (local (ref null func))
		// (block (result (ref null func)) (ref.null func)) drop
		// (loop (result (ref null func)) (ref.null func)) drop): typed
		// references, which wazero accepts by default
		"typed references": cat(wasmHeader,
			sec(secType, vec([]byte{0x60, 0x01, 0x63, 0x70, 0x00})),
			sec(secFunction, vec(leb(0))),
			sec(secCode, vec(withLocals([]byte{0x01, 0x01, 0x63, 0x70},
				0x02, 0x63, 0x70, 0xd0, 0x70, 0x0b, 0x1a,
				0x03, 0x63, 0x70, 0xd0, 0x70, 0x0b, 0x1a, 0x0b)))),
		// a table whose initializer is ref.func 0
		"table initializer": cat(wasmHeader,
			sec(secType, vec([]byte{0x60, 0x00, 0x00})),
			sec(secFunction, vec(leb(0))),
			sec(secTable, vec([]byte{0x40, 0x00, 0x70, 0x00, 0x01, 0xd2, 0x00, 0x0b})),
			sec(secCode, vec(fbody(0x0b)))),
	} {
		if _, err := rt.CompileModule(ctx, wasm); err != nil {
			t.Fatalf("%s: not valid to begin with: %v", name, err)
		}
		out, err := Module(wasm)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := rt.CompileModule(ctx, out); err != nil {
			t.Fatalf("%s: instrumented module does not compile: %v", name, err)
		}
	}
}

// TestInstrumentTableInitializer checks that the ref.func of a table's
// initializer is renumbered: the table's element is still the module's
// function, not the yield import.
func TestInstrumentTableInitializer(t *testing.T) {
	// (table 1 funcref (ref.func $seven)) (func $seven (result i32) 7)
	// (func (export "run") (result i32) (call_indirect (result i32) 0))
	wasm, err := Module(cat(wasmHeader,
		sec(secType, vec([]byte{0x60, 0x00, 0x01, 0x7f})),
		sec(secFunction, vec(leb(0), leb(0))),
		sec(secTable, vec([]byte{0x40, 0x00, 0x70, 0x00, 0x01, 0xd2, 0x00, 0x0b})),
		sec(secExport, vec(cat(str("run"), []byte{0x00}, leb(1)))),
		sec(secCode, vec(fbody(0x41, 0x07, 0x0b), fbody(0x41, 0x00, 0x11, 0x00, 0x00, 0x0b)))))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	_, err = rt.NewHostModuleBuilder(abi.ModuleName).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), nil, nil).
		Export(YieldImport).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := mod.ExportedFunction("run").Call(ctx); err != nil || r[0] != 7 {
		t.Fatalf("run returned %v, %v; want 7", r, err)
	}
}

// TestInstrumentRefusesHugeCounts checks the counts Module refuses because
// wazero would allocate for them before reading what they count (see
// checkAllocs), and that a count in the input never makes Module loop
// that many times: 2^32 - 1 parameters in 7 bytes took 4 s (69 s under
// -race) before the loops stopped at the first error.
func TestInstrumentRefusesHugeCounts(t *testing.T) {
	for name, wasm := range map[string][]byte{
		"2^32-1 params":    cat(wasmHeader, sec(secType, cat(leb(1), []byte{0x60}, leb(0xffffffff)))),
		"2^32-1 functions": cat(wasmHeader, sec(secFunction, leb(0xffffffff))),
		"a long data segment": cat(wasmHeader, sec(secMemory, vec([]byte{0x00, 0x01})),
			sec(secData, vec(cat([]byte{0x01}, leb(0xffffffff), []byte("short"))))),
		"2^32-1 locals": cat(wasmHeader,
			sec(secType, vec([]byte{0x60, 0x00, 0x00})),
			sec(secFunction, vec(leb(0))),
			sec(secCode, vec(withLocals(cat(leb(1), leb(0xffffffff), []byte{0x7f}), 0x0b)))),
		"a long module name": cat(wasmHeader, sec(secCustom, cat(str("name"), sec(0, leb(0xffffffff))))),
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Module(wasm)
			done <- err
		}()
		select {
		case err := <-done:
			if name == "a long module name" {
				// Not refused: the name section is dropped.
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s: instrumented", name)
			}
		case <-time.After(2 * time.Second): // microseconds when it works
			t.Fatalf("%s: Module still running after 2s", name)
		}
	}
}

// TestInstrumentGuests instruments every guest protogate ships and checks
// that wazero compiles the result and that every loop got its check.
func TestInstrumentGuests(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	for _, name := range builtin.Names() {
		wasm, _ := builtin.Lookup(name)
		out, err := Module(wasm)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := rt.CompileModule(ctx, out); err != nil {
			t.Fatalf("%s: instrumented module does not compile: %v", name, err)
		}
		if !strings.Contains(string(out), YieldImport) {
			t.Fatalf("%s: no yield import", name)
		}
		t.Logf("%s: %d -> %d bytes", name, len(wasm), len(out))
	}
}

// TestVersion pins what Module makes of two fixtures. When it fails,
// Module's output changed: bump Version (so that outputs kept by the old
// rewriting are not used) and then update the hashes here.
func TestVersion(t *testing.T) {
	features, err := os.ReadFile("testdata/features.wasm")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"features.wasm", features, "2e8464b51a3f3a61b6fd8fdd453ed24f6e035ce8565efb7f3d350434dcc3b2d2"},
		{"testModule", testModule(), "fea23171533f3487685ec22dacb663150cf88b6f98a7c81a15a16c8c49165790"},
	} {
		out, err := Module(tc.wasm)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sum := sha256.Sum256(out)
		if got := hex.EncodeToString(sum[:]); got != tc.want {
			t.Errorf("%s: Module's output has sha256 %s, pinned %s for Version %q: if the rewriting changed, bump Version, then pin the new hash", tc.name, got, tc.want, Version)
		}
	}
}
