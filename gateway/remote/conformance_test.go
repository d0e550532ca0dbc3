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
	"github.com/protogate/protogate/gateway/remote/exprotojson"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// startRefHandler runs the reference JSON handler on 127.0.0.1:0, calling the
// adapter at adapterAddr, and returns its address.
func startRefHandler(t testing.TB, adapterAddr string) string {
	t.Helper()
	cc, err := grpc.NewClient(adapterAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h := exprotojson.New(pb.NewConnectionAdapterClient(cc), slog.New(slog.DiscardHandler))
	gs := grpc.NewServer()
	h.Register(gs)
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
		cc.Close()
	})
	return ln.Addr().String()
}

func TestConformance(t *testing.T) {
	for _, svc := range []string{remote.ServiceUnary, remote.ServiceStreaming} {
		t.Run(svc, func(t *testing.T) {
			conformance.Run(t, conformance.Backend{
				Name: svc,
				Handler: func(t testing.TB, env *conformance.Env) gateway.Handler {
					addr := startRefHandler(t, env.AdapterAddr)
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
			})
		})
	}
}
