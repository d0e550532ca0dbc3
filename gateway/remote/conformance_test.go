package remote_test

import (
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/conformance"
	"github.com/protogate/protogate/gateway/remote"
	"github.com/protogate/protogate/internal/jsonhandler"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// serve runs gs on 127.0.0.1:0 until the test ends and returns its address.
func serve(t testing.TB, gs *grpc.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		gs.Serve(ln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startRefHandler runs the reference JSON handler on 127.0.0.1:0, calling the
// adapter at adapterAddr, and returns its address.
func startRefHandler(t testing.TB, adapterAddr string) string {
	t.Helper()
	cc, err := grpc.NewClient(adapterAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	gs := grpc.NewServer()
	jsonhandler.New(pb.NewConnectionAdapterClient(cc), slog.New(slog.DiscardHandler)).Register(gs)
	return serve(t, gs)
}

// TestConformance runs the gateway's behaviour suite against the remote back
// end, with both handler services: the gateway's ConnectionAdapter on gRPC
// over loopback, the reference JSON handler calling it, and the client of
// package remote calling the handler.
func TestConformance(t *testing.T) {
	for _, svc := range []string{remote.ServiceUnary, remote.ServiceStreaming} {
		t.Run(svc, func(t *testing.T) {
			conformance.Run(t, conformance.Backend{
				Name: svc,
				Handler: func(t testing.TB, env *conformance.Env) gateway.Handler {
					gs := grpc.NewServer()
					remote.NewAdapter(env.Server, env.Logger).Register(gs)
					addr := startRefHandler(t, serve(t, gs))
					h, err := remote.New(remote.Config{
						Address:     "http://" + addr,
						ServiceName: svc,
						Timeout:     10 * time.Second,
					})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { h.Close() })
					return h
				},
				AsyncCallbacks: svc == remote.ServiceStreaming,
			})
		})
	}
}
