package remote_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/remote"
	"github.com/protogate/protogate/internal/echohandler"
	pb "github.com/protogate/protogate/proto/exprotov1"
	protogate "github.com/protogate/protogate/sdk/go"
	laneserve "github.com/protogate/protogate/sdk/go/serve"
)

// The benchmarks in this file measure one echo through the remote path:
// a device writes 64 bytes, the gateway calls OnReceivedBytes on a remote
// echo handler (internal/echohandler, in this process over loopback gRPC),
// the handler calls the adapter's Send, and the device reads the bytes
// back. Everything runs in one process, so allocs/op counts the device,
// the gateway, the handler and both gRPC sides; BenchmarkRemoteEchoFloor
// makes the same two unary calls with no gateway and no device, and the
// difference is the gateway's own cost per message.
//
//	go test -run '^$' -bench RemoteEcho -benchmem ./gateway/remote

const benchPayload = 64

// benchServe serves gs on a fresh loopback listener until cleanup.
func benchServe(b *testing.B, gs *grpc.Server) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		gs.Serve(ln)
	}()
	b.Cleanup(func() {
		gs.Stop()
		wg.Wait()
	})
	return ln.Addr().String()
}

// benchClient is a gRPC client connection to addr, closed at cleanup
// (benchmarks and tests use it).
func benchClient(b testing.TB, addr string) *grpc.ClientConn {
	b.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return cc
}

// benchEchoHandler serves the echo handler, calling the adapter at
// adapterAddr, and returns its address.
func benchEchoHandler(b *testing.B, adapterAddr string) string {
	b.Helper()
	gs := grpc.NewServer()
	echohandler.New(pb.NewConnectionAdapterClient(benchClient(b, adapterAddr)), echohandler.Options{}).Register(gs)
	return benchServe(b, gs)
}

// laneEcho is an sdk/go handler that echoes.
type laneEcho struct{ protogate.Base }

func (laneEcho) OnReceivedBytes(c protogate.Conn, b []byte) error { return c.Send(b) }

// benchLaneHandler serves laneEcho on the fast lane in this process (with
// package serve, as a native handler's main does) and returns its address.
func benchLaneHandler(b *testing.B) string {
	b.Helper()
	protogate.Register(laneEcho{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- laneserve.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return ln.Addr().String()
}

// benchGateway runs a gateway whose TCP listener is served by the remote
// echo handler over service, and returns the device address.
func benchGateway(b *testing.B, service string) string {
	b.Helper()
	log := slog.New(slog.DiscardHandler)
	srv := gateway.New(gateway.Options{Logger: log})
	var haddr string
	if service == remote.ServiceLane {
		haddr = benchLaneHandler(b)
	} else {
		gs := grpc.NewServer()
		remote.NewAdapter(srv, log).Register(gs)
		haddr = benchEchoHandler(b, benchServe(b, gs))
	}
	h, err := remote.New(remote.Config{Address: "http://" + haddr, ServiceName: service, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		h.Close()
	})
	return ln.Addr().String()
}

// benchPingPong echoes one payload on nc, checking the bytes.
func benchPingPong(b *testing.B, nc net.Conn, msg, got []byte) {
	if _, err := nc.Write(msg); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(nc, got); err != nil {
		b.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		b.Fatalf("echo %q, want %q", got, msg)
	}
}

func benchDial(b *testing.B, addr string) net.Conn {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	return nc
}

// BenchmarkRemoteEcho is one device echoing 64 bytes at a time: the latency
// and allocations of one message through the remote path.
func BenchmarkRemoteEcho(b *testing.B) {
	for _, svc := range []string{remote.ServiceUnary, remote.ServiceStreaming, remote.ServiceLane} {
		b.Run(svc, func(b *testing.B) {
			nc := benchDial(b, benchGateway(b, svc))
			msg, got := bytes.Repeat([]byte{'e'}, benchPayload), make([]byte, benchPayload)
			benchPingPong(b, nc, msg, got) // connection set up
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				benchPingPong(b, nc, msg, got)
			}
		})
	}
}

// BenchmarkRemoteEchoParallel is many devices echoing at once (one per
// goroutine of b.RunParallel; set their number with -cpu and
// b.SetParallelism): the throughput of the remote path.
func BenchmarkRemoteEchoParallel(b *testing.B) {
	for _, svc := range []string{remote.ServiceUnary, remote.ServiceStreaming, remote.ServiceLane} {
		b.Run(svc, func(b *testing.B) {
			addr := benchGateway(b, svc)
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(p *testing.PB) {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer nc.Close()
				msg, got := bytes.Repeat([]byte{'p'}, benchPayload), make([]byte, benchPayload)
				for p.Next() {
					if _, err := nc.Write(msg); err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(nc, got); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchFloorAdapter is a ConnectionAdapter whose Send hands the bytes to
// the one waiting caller.
type benchFloorAdapter struct {
	pb.UnimplementedConnectionAdapterServer
	sent chan []byte
}

func (a *benchFloorAdapter) Send(_ context.Context, req *pb.SendBytesRequest) (*pb.CodeResponse, error) {
	a.sent <- req.GetBytes()
	return &pb.CodeResponse{}, nil
}

// BenchmarkRemoteEchoFloor makes the two unary calls of one remote echo
// (OnReceivedBytes to the handler, Send back to an adapter) with no gateway:
// what BenchmarkRemoteEcho/ConnectionUnaryHandler costs without protogate.
func BenchmarkRemoteEchoFloor(b *testing.B) {
	ad := &benchFloorAdapter{sent: make(chan []byte, 1)}
	gs := grpc.NewServer()
	pb.RegisterConnectionAdapterServer(gs, ad)
	haddr := benchEchoHandler(b, benchServe(b, gs))
	client := pb.NewConnectionUnaryHandlerClient(benchClient(b, haddr))
	req := &pb.ReceivedBytesRequest{Conn: "0123456789abcdef", Bytes: bytes.Repeat([]byte{'f'}, benchPayload)}
	round := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := client.OnReceivedBytes(ctx, req, grpc.WaitForReady(true)); err != nil {
			b.Fatal(err)
		}
		if got := <-ad.sent; !bytes.Equal(got, req.Bytes) {
			b.Fatalf("sent %q, want %q", got, req.Bytes)
		}
	}
	round()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		round()
	}
}
