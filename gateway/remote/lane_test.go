package remote_test

import (
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/conformance"
	"github.com/protogate/protogate/gateway/remote"
	"github.com/protogate/protogate/internal/nativeguest"
)

// startNative runs the native build of guest (see internal/nativeguest).
func startNative(t testing.TB, guest, listen string) *nativeguest.Handler {
	t.Helper()
	return nativeguest.Start(t, guest, listen, conformance.Timeout)
}

// laneHandler returns a remote.Handler on the fast lane to addr, closed when
// the test ends.
func laneHandler(t testing.TB, addr string, timeout time.Duration) *remote.Handler {
	t.Helper()
	h, err := remote.New(remote.Config{Address: addr, ServiceName: remote.ServiceLane, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestLaneConformance runs the behaviour suite against the fast lane, with
// the handler of guests/exproto-json built natively: the very source that
// the Wasm back end's conformance run (package wasmhost) loads as
// builtin:exproto-json. One handler, in-process or remote, unchanged.
func TestLaneConformance(t *testing.T) {
	native := startNative(t, "exproto-json", "")
	conformance.Run(t, conformance.Backend{
		Name: remote.ServiceLane,
		Handler: func(t testing.TB, env *conformance.Env) gateway.Handler {
			return laneHandler(t, native.Addr, 10*time.Second)
		},
	})
}
