package wasmhost_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/wasmhost"
)

// nativeEcho is the same echo written as a Go handler: the baseline the
// Wasm path is compared with.
type nativeEcho struct{ fallbackEcho }

func (nativeEcho) OnReceivedBytes(_ context.Context, c *gateway.Conn, b []byte) error {
	return c.Queue(b)
}

// pipeConn hides net.Pipe's SetWriteDeadline, which allocates a timer per
// call (a TCP socket's does not), so the benchmark counts only the
// gateway's and the handler's allocations.
type pipeConn struct{ net.Conn }

func (pipeConn) SetWriteDeadline(time.Time) error { return nil }

// benchEcho measures one 64-byte message through the gateway and handler h
// and back, over net.Pipe (no kernel), ping-pong.
func benchEcho(b *testing.B, h gateway.Handler) {
	srv := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeConn(pipeConn{server}, &gateway.Listener{Name: "bench", Type: gateway.TCP, Handler: h})
	}()
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	round := func() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf); err != nil {
			b.Fatal(err)
		}
	}
	for range 100 {
		round() // warm up buffers and the guest
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		round()
	}
	b.StopTimer()
	client.Close()
	<-done
	srv.Close()
}

func BenchmarkEchoNative(b *testing.B) { benchEcho(b, nativeEcho{}) }

// BenchmarkEchoWasmGoGuest reports 0 allocations per message: the guest
// call is interrupted through instrumented loop checks and a watchdog
// goroutine per handler (see instrument), not through wazero's
// WithCloseOnContextDone, which starts a goroutine per call (3
// allocations) and calls out to Go at every loop head. Compare with
// BenchmarkEchoNative: the difference is the cost of the Wasm boundary.
func BenchmarkEchoWasmGoGuest(b *testing.B) {
	h, err := wasmhost.New(wasmhost.Config{Name: "echo", Wasm: mustBuiltin(b, "echo"), Instances: 1, Cache: sharedCache(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	benchEcho(b, h)
}
