package admin_test

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/protogate/protogate/admin"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/wasmhost"
)

// This file holds what the scale test and the observation benchmark share:
// a gateway serving builtin:echo through wasmhost on a loopback TCP
// listener, with its admin API, as protogate run wires them.

// wasmModule shows a wasmhost handler to the admin API, as
// cmd/protogate's adapter does.
type wasmModule struct{ h *wasmhost.Handler }

func (m wasmModule) Reload() error { return m.h.Reload() }

func (m wasmModule) WasmStatus() admin.WasmStatus {
	st := m.h.Stats()
	ws := admin.WasmStatus{
		Module: "builtin:echo", Version: st.Version, SHA256: st.SHA256, Instances: st.Instances,
		Versions: st.Versions, Faults: st.Faults, Broken: st.Broken, LastError: st.LastError,
		Reloads: st.Reloads, ReloadErrors: st.ReloadErrors,
	}
	if f := st.LastFault; f != nil {
		ws.LastFault, ws.LastFaultAt = f.Err, f.Time
	}
	return ws
}

// echoGateway is a gateway serving builtin:echo, and its admin API.
type echoGateway struct {
	gw      *gateway.Server
	handler *wasmhost.Handler
	api     *admin.Server
	devices string // the device listener's address
}

// startEchoGateway serves builtin:echo on a loopback TCP listener until tb
// ends, with the guest's call_timeout (0: the default). Warnings and
// errors go to stderr.
func startEchoGateway(tb testing.TB, callTimeout time.Duration) *echoGateway {
	tb.Helper()
	wasm, ok := builtin.Lookup("echo")
	if !ok {
		tb.Fatal("no builtin:echo")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := wasmhost.New(wasmhost.Config{Name: "echo", Wasm: wasm, CallTimeout: callTimeout, Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	gw := gateway.New(gateway.Options{Logger: logger})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln, &gateway.Listener{Name: "tcp", Type: gateway.TCP, Handler: h}) }()
	api, err := admin.New(admin.Config{
		Node: "scale@127.0.0.1", Version: "test", Gateway: gw, Logger: logger,
		Listeners: []admin.Listener{{Name: "tcp", Type: "tcp", Bind: ln.Addr().String(), Handler: "echo"}},
		Handlers:  []admin.Handler{{Name: "echo", Handler: h, Wasm: wasmModule{h}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		api.Close()
		gw.Close()
		if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
			tb.Errorf("serve: %v", err)
		}
		h.Close()
	})
	return &echoGateway{gw: gw, handler: h, api: api, devices: ln.Addr().String()}
}
