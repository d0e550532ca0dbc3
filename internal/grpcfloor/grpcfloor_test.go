package grpcfloor

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/internal/echohandler"
	"github.com/protogate/protogate/proto/exprotov1"
)

// runWith starts the handler services made by newHandler on 127.0.0.1:0,
// calling an adapter listener the floor will serve, and runs the floor
// against them.
func runWith(t *testing.T, cfg Config, newHandler func(exprotov1.ConnectionAdapterClient) exprotov1.ConnectionUnaryHandlerServer) *Config {
	t.Helper()
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(aln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	gs := grpc.NewServer()
	exprotov1.RegisterConnectionUnaryHandlerServer(gs, newHandler(exprotov1.NewConnectionAdapterClient(cc)))
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		gs.Serve(hln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		wg.Wait()
	})
	cfg.HandlerAddr = "http://" + hln.Addr().String()
	cfg.AdapterListener = aln
	return &cfg
}

func echo(a exprotov1.ConnectionAdapterClient) exprotov1.ConnectionUnaryHandlerServer {
	return echohandler.New(a, echohandler.Options{})
}

func TestRunEcho(t *testing.T) {
	cfg := runWith(t, Config{Conns: 8, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond}, echo)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Summary())
	if r.Msgs == 0 || r.MsgsPerS <= 0 {
		t.Errorf("no round trips: %+v", r)
	}
	if r.Errors != 0 || r.Mismatch != 0 || r.Lost != 0 {
		t.Errorf("errors %d, mismatches %d, lost %d; want none", r.Errors, r.Mismatch, r.Lost)
	}
	if r.Scenario != Scenario || r.Conns != 8 || r.Size != 64 || r.Seconds != 0.3 {
		t.Errorf("result %+v does not describe the run", r)
	}
	if r.P50us <= 0 || r.P99us < r.P50us || r.MaxUs < r.P99us {
		t.Errorf("latencies p50 %v p99 %v max %v", r.P50us, r.P99us, r.MaxUs)
	}
}

// corrupt is a handler that echoes every payload with its last byte changed.
type corrupt struct {
	exprotov1.UnimplementedConnectionUnaryHandlerServer
	adapter exprotov1.ConnectionAdapterClient
}

func (c *corrupt) OnReceivedBytes(ctx context.Context, req *exprotov1.ReceivedBytesRequest) (*exprotov1.EmptySuccess, error) {
	b := req.GetBytes()
	b[len(b)-1]++
	if _, err := c.adapter.Send(ctx, &exprotov1.SendBytesRequest{Conn: req.GetConn(), Bytes: b}); err != nil {
		return nil, err
	}
	return &exprotov1.EmptySuccess{}, nil
}

func TestRunCountsMismatches(t *testing.T) {
	cfg := runWith(t, Config{Conns: 2, Size: 16, Duration: 200 * time.Millisecond}, func(a exprotov1.ConnectionAdapterClient) exprotov1.ConnectionUnaryHandlerServer {
		return &corrupt{adapter: a}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mismatch == 0 {
		t.Errorf("no mismatches counted: %+v", r)
	}
	if r.Msgs != 0 {
		t.Errorf("%d round trips with wrong bytes counted as completed", r.Msgs)
	}
}

// silent is a handler that never calls Send.
type silent struct {
	exprotov1.UnimplementedConnectionUnaryHandlerServer
}

func (silent) OnReceivedBytes(context.Context, *exprotov1.ReceivedBytesRequest) (*exprotov1.EmptySuccess, error) {
	return &exprotov1.EmptySuccess{}, nil
}

func TestRunCountsLost(t *testing.T) {
	// Timeout bounds the call too (the first one waits for the
	// connection): at 20 ms, a call 30 ms late, as on a loaded machine,
	// failed every call of the run, which then counted errors and no loss.
	// A round trip always starts and its Send never comes, so a second
	// only makes the run that long.
	cfg := runWith(t, Config{Conns: 2, Duration: 100 * time.Millisecond, Timeout: time.Second}, func(exprotov1.ConnectionAdapterClient) exprotov1.ConnectionUnaryHandlerServer {
		return silent{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lost == 0 || r.Msgs != 0 {
		t.Errorf("lost %d, msgs %d; want lost round trips and none completed", r.Lost, r.Msgs)
	}
}

func TestRunCountsErrors(t *testing.T) {
	// The unimplemented handler fails every call.
	cfg := runWith(t, Config{Conns: 1, Duration: 50 * time.Millisecond}, func(exprotov1.ConnectionAdapterClient) exprotov1.ConnectionUnaryHandlerServer {
		return exprotov1.UnimplementedConnectionUnaryHandlerServer{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors == 0 || r.Msgs != 0 {
		t.Errorf("errors %d, msgs %d; want failed calls and no round trips", r.Errors, r.Msgs)
	}
}

func TestRunCanceled(t *testing.T) {
	cfg := runWith(t, Config{Conns: 4, Duration: time.Hour}, echo)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, *cfg)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned no error after cancellation")
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not stop after cancellation")
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Run(ctx, Config{}); err == nil {
		t.Error("Run without a handler address succeeded")
	}
	if _, err := Run(ctx, Config{HandlerAddr: "127.0.0.1:1", Size: 4}); err == nil {
		t.Error("Run with a 4-byte payload succeeded")
	}
	if _, err := Run(ctx, Config{HandlerAddr: "127.0.0.1:1", AdapterListen: "256.0.0.1:0"}); err == nil {
		t.Error("Run with a bad adapter address succeeded")
	}
}
