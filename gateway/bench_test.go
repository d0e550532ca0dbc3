package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
)

// queueEcho answers every chunk with Queue, as a Wasm guest sends.
type queueEcho struct{}

func (queueEcho) OnSocketCreated(context.Context, *Conn, *ConnInfo) error    { return nil }
func (queueEcho) OnReceivedBytes(_ context.Context, c *Conn, b []byte) error { return c.Queue(b) }
func (queueEcho) OnTimerTimeout(context.Context, *Conn, TimerType) error     { return nil }
func (queueEcho) OnReceivedMessages(context.Context, *Conn, []*Message) error {
	return nil
}
func (queueEcho) OnSocketClosed(context.Context, *Conn, string) error { return nil }

// benchServer serves queueEcho on a loopback listener until the benchmark
// ends and returns its address.
func benchServer(b *testing.B) string {
	s := New(Options{Logger: quietLogger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln, &Listener{Name: "bench", Type: TCP, Handler: queueEcho{}})
	}()
	b.Cleanup(func() {
		s.Close()
		<-done
	})
	return ln.Addr().String()
}

// pingPong sends 64 bytes on nc and reads them back, n times.
func pingPong(b *testing.B, nc net.Conn, msg, buf []byte, n int) {
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

// BenchmarkTCPEcho measures one 64-byte message through the gateway's TCP
// path and back, ping-pong over loopback: a read, OnReceivedBytes, Queue,
// the flush and its write, plus the client's write and read. The gateway
// allocates nothing per message.
func BenchmarkTCPEcho(b *testing.B) {
	nc, err := net.Dial("tcp", benchServer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	msg, buf := make([]byte, 64), make([]byte, 64)
	pingPong(b, nc, msg, buf, 100)
	b.ReportAllocs()
	b.ResetTimer()
	pingPong(b, nc, msg, buf, b.N)
}

// BenchmarkTCPEcho100 is BenchmarkTCPEcho with 100 connections at once,
// each ping-pong: what the load tool's echo case does, in one process.
func BenchmarkTCPEcho100(b *testing.B) {
	addr := benchServer(b)
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
	pingPongAll(b, ncs)
}

// pingPongAll runs b.N 64 B ping-pongs spread over ncs, a goroutine per
// connection, timing only them.
func pingPongAll(b *testing.B, ncs []net.Conn) {
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, nc := range ncs {
		n := b.N / len(ncs)
		if i < b.N%len(ncs) {
			n++
		}
		wg.Go(func() { pingPong(b, nc, make([]byte, 64), make([]byte, 64), n) })
	}
	wg.Wait()
}

// BenchmarkTLSEcho100 is BenchmarkTCPEcho100 over TLS 1.3: "gateway" on an
// ssl listener, "plain" against a crypto/tls server in the same process,
// a goroutine per connection copying what it reads back (the floor of the
// bench group tls). The difference is what the gateway's TLS path adds to
// the cryptography both pay.
func BenchmarkTLSEcho100(b *testing.B) {
	server, client := selfSignedTLS(b)
	run := func(b *testing.B, addr string) {
		const conns = 100
		ncs := make([]net.Conn, conns)
		for i := range ncs {
			nc, err := tls.Dial("tcp", addr, client)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			ncs[i] = nc
		}
		pingPongAll(b, ncs)
	}
	b.Run("gateway", func(b *testing.B) {
		s := New(Options{Logger: quietLogger()})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Serve(ln, &Listener{Name: "bench", Type: SSL, TLSConfig: server, Handler: queueEcho{}})
		}()
		defer func() {
			s.Close()
			<-done
		}()
		run(b, ln.Addr().String())
	})
	b.Run("plain", func(b *testing.B) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		defer func() {
			ln.Close()
			wg.Wait()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					buf := make([]byte, 4096)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
				}()
			}
		}()
		run(b, ln.Addr().String())
	})
}
