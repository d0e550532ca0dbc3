package wasmhost_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/listener"
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
// goroutine per handler (see package instrument), not through wazero's
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

// BenchmarkEchoWasmTCP100 is BenchmarkEchoWasmGoGuest over loopback TCP
// with 100 connections at once, each ping-pong, as the load tool's echo
// case: the read, OnReceivedBytes into the guest, its Send (Queue), the
// flush and its write. One op is one round trip.
func BenchmarkEchoWasmTCP100(b *testing.B) {
	h, err := wasmhost.New(wasmhost.Config{Name: "echo", Wasm: mustBuiltin(b, "echo"), Cache: sharedCache(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	addr := benchServe(b, gateway.Options{}, h)
	const conns = 100
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		ncs[i] = nc
	}
	round := func(nc net.Conn, msg, buf []byte, n int) {
		for range n {
			if _, err := nc.Write(msg); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(nc, buf); err != nil {
				b.Error(err)
				return
			}
		}
	}
	for _, nc := range ncs {
		round(nc, make([]byte, 64), make([]byte, 64), 10)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, nc := range ncs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			round(nc, make([]byte, 64), make([]byte, 64), n)
		}()
	}
	wg.Wait()
}

// BenchmarkEchoWasmUDP100 is BenchmarkEchoWasmTCP100 on a udp listener:
// 100 peers, each its own socket, ping-pong with 64-byte datagrams, as the
// load tool's udp case (bench group udp). One op is one round trip: the
// listener's read and demultiplexing, the handoff to the peer's
// connection, OnReceivedBytes into the guest, its Send and the write.
func BenchmarkEchoWasmUDP100(b *testing.B) {
	h, err := wasmhost.New(wasmhost.Config{Name: "echo", Wasm: mustBuiltin(b, "echo"), Cache: sharedCache(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	quiet := slog.New(slog.DiscardHandler)
	ln, err := listener.ListenUDP("127.0.0.1:0", listener.UDPConfig{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	srv := gateway.New(gateway.Options{Logger: quiet})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln, &gateway.Listener{Name: "bench", Type: gateway.UDP, Handler: h})
	}()
	defer func() {
		srv.Close()
		<-done
	}()
	const conns = 100
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("udp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		ncs[i] = nc
	}
	// A lost datagram (a full socket buffer) is sent again after a
	// timeout rather than failing the benchmark.
	round := func(nc net.Conn, msg, buf []byte, n int) {
		for i := 0; i < n; {
			if _, err := nc.Write(msg); err != nil {
				b.Error(err)
				return
			}
			nc.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := nc.Read(buf); err != nil {
				if isTimeout(err) {
					continue
				}
				b.Error(err)
				return
			}
			i++
		}
	}
	for _, nc := range ncs {
		round(nc, make([]byte, 64), make([]byte, 64), 10)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, nc := range ncs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			round(nc, make([]byte, 64), make([]byte, 64), n)
		}()
	}
	wg.Wait()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// benchServe serves h on a loopback listener until the benchmark ends.
func benchServe(b *testing.B, opts gateway.Options, h gateway.Handler) string {
	opts.Logger = slog.New(slog.DiscardHandler)
	srv := gateway.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln, &gateway.Listener{Name: "bench", Type: gateway.TCP, Handler: h})
	}()
	b.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// BenchmarkFanout measures the delivery of published messages to 1000
// connections subscribed to their topic through builtin:linepubsub on the
// embedded broker: the broker's shared subscription, each connection's
// queue, OnReceivedMessages in the guest and its Send back to the device,
// whose client reads the MSG line. One op is one delivery; at most 100
// messages are in flight.
func BenchmarkFanout(b *testing.B) {
	const subs, window = 1000, 100
	br, err := broker.Start(broker.Config{DataDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Shutdown(context.Background())
	h, err := wasmhost.New(wasmhost.Config{Name: "line", Wasm: mustBuiltin(b, "linepubsub"), Cache: sharedCache(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	addr := benchServe(b, gateway.Options{PubSub: br}, h)

	var lines atomic.Int64 // MSG lines the clients read
	var wg sync.WaitGroup
	ncs := make([]net.Conn, 0, subs)
	defer func() {
		for _, nc := range ncs {
			nc.Close()
		}
		wg.Wait()
	}()
	for range subs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		ncs = append(ncs, nc)
		nc.SetDeadline(time.Now().Add(time.Minute))
		if _, err := io.WriteString(nc, "SUB bench/fanout\n"); err != nil {
			b.Fatal(err)
		}
		ok := make([]byte, 3)
		if _, err := io.ReadFull(nc, ok); err != nil || string(ok) != "OK\n" {
			b.Fatalf("SUB: %q, %v", ok, err)
		}
		nc.SetDeadline(time.Time{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := nc.Read(buf)
				lines.Add(int64(bytes.Count(buf[:n], []byte{'\n'})))
				if err != nil {
					return
				}
			}
		}()
	}
	payload := bytes.Repeat([]byte("x"), 64)
	msgs := max(b.N/subs, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range msgs {
		for int64(i-window)*subs > lines.Load() {
			runtime.Gosched()
		}
		if err := br.Publish(&gateway.Message{Topic: "bench/fanout", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(msgs) * subs
	deadline := time.Now().Add(time.Minute)
	for lines.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries arrived", lines.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(want), "ns/delivery")
}
