package wasmhost_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/conformance"
	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/wasmhost"
)

const faultyPath = "testdata/faulty.wasm"

// cache is shared by every handler of the test binary, so each module
// compiles once (about a second, several with -race) instead of per test.
var (
	cacheOnce sync.Once
	cache     wazero.CompilationCache
)

func sharedCache() wazero.CompilationCache {
	cacheOnce.Do(func() { cache = wazero.NewCompilationCache() })
	return cache
}

// TestMain keeps one handler per module open for the whole run: wazero
// drops a compiled module from a shared cache when the last runtime using it
// closes, and every test closes its handlers.
func TestMain(m *testing.M) {
	if os.Getenv(idleServerEnv) != "" {
		// The server process of BenchmarkIdleConns: nothing else.
		os.Exit(m.Run())
	}
	var keepers []*wasmhost.Handler
	for _, name := range []string{"exproto-json", "echo", "linepubsub"} {
		wasm, _ := builtin.Lookup(name)
		keepers = append(keepers, keeper(wasm))
	}
	if wasm, err := os.ReadFile(faultyPath); err == nil {
		keepers = append(keepers, keeper(wasm))
	}
	code := m.Run()
	for _, k := range keepers {
		if k != nil {
			k.Close()
		}
	}
	if cache != nil {
		cache.Close(context.Background())
	}
	os.Exit(code)
}

func keeper(wasm []byte) *wasmhost.Handler {
	h, err := wasmhost.New(wasmhost.Config{Name: "keeper", Wasm: wasm, Instances: 1, Cache: sharedCache(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil
	}
	return h
}

func mustBuiltin(t testing.TB, name string) []byte {
	t.Helper()
	b, ok := builtin.Lookup(name)
	if !ok {
		t.Fatalf("no builtin %q", name)
	}
	return b
}

// TestConformance runs the gateway's behaviour suite, unchanged, against the
// builtin:exproto-json guest on TCP, TLS, UDP and DTLS.
func TestConformance(t *testing.T) {
	wasm := mustBuiltin(t, "exproto-json")
	conformance.Run(t, conformance.Backend{
		Name: "wasm",
		Handler: func(t testing.TB, env *conformance.Env) gateway.Handler {
			h, err := wasmhost.New(wasmhost.Config{
				Name:      "exproto-json",
				Wasm:      wasm,
				Instances: 2,
				Cache:     sharedCache(),
				// Generous for -race on a loaded machine; the default
				// (100ms) is what production runs with.
				CallTimeout: 5 * time.Second,
				Logger:      slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			if s := h.Stats(); s.Instances != 2 || s.LastError != "" {
				t.Fatalf("handler did not start: %+v", s)
			}
			t.Cleanup(func() { h.Close() })
			return h
		},
	})
}
