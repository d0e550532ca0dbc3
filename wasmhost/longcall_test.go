package wasmhost_test

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protogate/protogate/abi"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/wasmhost"
)

// spinGuest is a minimal ABI v1 guest whose on_received_bytes counts to
// 2^30 in a loop without calling out: about a second of native code.
func spinGuest() []byte {
	types := vec(
		[]byte{0x60, 0x01, 0x7f, 0x01, 0x7f},       // 0: [i32] -> [i32]
		[]byte{0x60, 0x02, 0x7e, 0x7f, 0x01, 0x7f}, // 1: [i64 i32] -> [i32]
		[]byte{0x60, 0x00, 0x00},                   // 2: [] -> []
	)
	funcs := vec(leb(2), leb(0), leb(1))
	memory := vec([]byte{0x00, 0x01})
	exports := vec(
		cat(str(abi.ExportMarker), []byte{0x00}, leb(0)),
		cat(str(abi.ExportInbox), []byte{0x00}, leb(1)),
		cat(str(abi.ExportOnReceivedBytes), []byte{0x00}, leb(2)),
	)
	code := vec(
		fbody(0x0b),
		fbody(0x41, 0x80, 0x08, 0x0b), // inbox at 1024
		withLocals([]byte{0x01, 0x01, 0x7e}, // one i64 local (index 2)
			0x03, 0x40,
			0x20, 0x02, 0x42, 0x01, 0x7c, 0x22, 0x02, // local 2 += 1
			0x42, 0x80, 0x80, 0x80, 0x80, 0x04, 0x54, 0x0d, 0x00, // br_if 0 (local 2 < 1<<30)
			0x0b,
			0x41, 0x00, 0x0b,
		),
	)
	return cat(wasmHeader,
		sec(1, types), sec(3, funcs), sec(5, memory), sec(7, exports), sec(10, code))
}

// doneHandler tells when OnReceivedBytes starts and returns.
type doneHandler struct {
	gateway.Handler
	started chan struct{}
	ended   atomic.Int64 // UnixNano when it returned
	done    chan error
}

func (d *doneHandler) OnReceivedBytes(ctx context.Context, c *gateway.Conn, b []byte) error {
	close(d.started)
	err := d.Handler.OnReceivedBytes(ctx, c, b)
	d.ended.Store(time.Now().UnixNano())
	d.done <- err
	return err
}

// TestLongCallLetsGCRun checks that a guest call that runs long in native
// code does not hold up the Go runtime: a garbage collection, which stops
// every goroutine, completes while the call is still running, because the
// guest calls out to Go every 1024 loop iterations (see package
// instrument). (The call counts
// to 2^30, about a second; on a machine so loaded that it ends before the
// collection starts, the test is inconclusive and skips.)
func TestLongCallLetsGCRun(t *testing.T) {
	h, err := wasmhost.New(wasmhost.Config{Name: "spin", Wasm: spinGuest(), Instances: 1, CallTimeout: time.Minute,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if s := h.Stats(); s.Version == 0 {
		t.Fatalf("module did not load: %s", s.LastError)
	}
	dh := &doneHandler{Handler: h, started: make(chan struct{}), done: make(chan error, 1)}
	srv := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	client, server := net.Pipe()
	defer client.Close()
	go srv.ServeConn(server, &gateway.Listener{Name: "spin", Type: gateway.TCP, Handler: dh})
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-dh.started
	time.Sleep(20 * time.Millisecond) // into the guest's loop, most likely
	gcStart := time.Now().UnixNano()
	runtime.GC()
	gcEnd := time.Now().UnixNano()
	if err := <-dh.done; err != nil {
		t.Fatal(err)
	}
	switch ended := dh.ended.Load(); {
	case ended < gcStart:
		t.Skip("the guest call ended before the garbage collection started")
	case ended < gcEnd:
		t.Fatal("the garbage collection waited for the guest call to end")
	}
}
