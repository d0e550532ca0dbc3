package remote_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/remote"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// oneShot is a streaming handler that reads a single message per stream and
// then ends it, as EMQX's early Go example handler does.
type oneShot struct {
	pb.UnimplementedConnectionHandlerServer
	created chan string
	closed  chan string
}

func (o *oneShot) OnSocketCreated(s grpc.ClientStreamingServer[pb.SocketCreatedRequest, pb.EmptySuccess]) error {
	req, err := s.Recv()
	if err != nil {
		return err
	}
	o.created <- req.GetConn()
	return s.SendAndClose(&pb.EmptySuccess{})
}

func (o *oneShot) OnSocketClosed(s grpc.ClientStreamingServer[pb.SocketClosedRequest, pb.EmptySuccess]) error {
	req, err := s.Recv()
	if err != nil {
		return err
	}
	o.closed <- req.GetConn()
	return nil // no response at all: the stream still ends
}

func TestStreamingHandlerEndingEachStream(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	br, err := broker.Start(broker.Config{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Shutdown(context.Background())
	h := &oneShot{created: make(chan string, 16), closed: make(chan string, 16)}
	gs := grpc.NewServer()
	pb.RegisterConnectionHandlerServer(gs, h)
	hln := listen(t)
	go gs.Serve(hln)
	defer gs.Stop()

	rh, err := remote.New(remote.Config{Address: "http://" + hln.Addr().String(), ServiceName: remote.ServiceStreaming, Timeout: 5 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close()
	srv := gateway.New(gateway.Options{PubSub: br, Logger: log})
	ln := listen(t)
	go srv.Serve(ln, &gateway.Listener{Name: "s", Type: gateway.TCP, Handler: rh})
	defer srv.Close()

	// Every connection's events arrive although each stream carries one.
	for i := range 5 {
		nc, err := net.DialTimeout("tcp", ln.Addr().String(), wait)
		if err != nil {
			t.Fatal(err)
		}
		var conn string
		select {
		case conn = <-h.created:
		case <-time.After(wait):
			t.Fatalf("connection %d: OnSocketCreated lost", i)
		}
		nc.Close()
		select {
		case c := <-h.closed:
			if c != conn {
				t.Fatalf("closed %s, want %s", c, conn)
			}
		case <-time.After(wait):
			t.Fatalf("connection %d: OnSocketClosed lost", i)
		}
	}
}
