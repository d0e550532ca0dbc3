package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/remote"
)

// wait bounds every step of a test; generous for a loaded machine under -race.
const wait = 20 * time.Second

// syncBuffer is a log sink the handler and the test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder passes callbacks to a gateway.Handler and reports each
// connection once its OnSocketCreated has returned.
type recorder struct {
	gateway.Handler
	created chan *gateway.Conn
}

func (r *recorder) OnSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	err := r.Handler.OnSocketCreated(ctx, c, info)
	r.created <- c
	return err
}

// denyAll refuses every client.
type denyAll struct{}

func (denyAll) Authenticate(context.Context, *gateway.AuthRequest) (*gateway.Identity, error) {
	return nil, errors.New("denied")
}

// rig is a protogate gateway whose TCP listener is served by this command,
// started with run, through gateway/remote.
type rig struct {
	addr string // device listener
	srv  *gateway.Server
	rec  *recorder
	logs *syncBuffer
}

func newRig(t *testing.T, service string, auth gateway.Authenticator, args ...string) *rig {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	srv := gateway.New(gateway.Options{Logger: log, Authenticator: auth})

	// The gateway's ConnectionAdapter.
	gs := grpc.NewServer()
	remote.NewAdapter(srv, log).Register(gs)
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		gs.Serve(aln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		wg.Wait()
	})

	// The handler, as main runs it.
	logs := new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan net.Addr, 1)
	runErr := make(chan error, 1)
	args = append([]string{"-listen", "127.0.0.1:0", "-adapter", "http://" + aln.Addr().String()}, args...)
	if service == remote.ServiceLane {
		args = append(args, "-service", "stream")
	}
	go func() { runErr <- run(ctx, args, logs, func(a net.Addr) { readyc <- a }) }()
	var haddr net.Addr
	select {
	case haddr = <-readyc:
	case err := <-runErr:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(wait):
		cancel()
		t.Fatal("handler did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(wait):
			t.Error("handler did not stop")
		}
	})

	rh, err := remote.New(remote.Config{Address: "http://" + haddr.String(), ServiceName: service, Timeout: wait, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Handler: rh, created: make(chan *gateway.Conn, 64)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln, &gateway.Listener{Name: "echo", Type: gateway.TCP, Handler: rec})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
		rh.Close()
	})
	return &rig{addr: ln.Addr().String(), srv: srv, rec: rec, logs: logs}
}

func (r *rig) dial(t *testing.T) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", r.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// pingPong writes msg and reads back exactly as many bytes.
func pingPong(nc net.Conn, msg []byte) error {
	if err := nc.SetDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	if _, err := nc.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(nc, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func TestEcho(t *testing.T) {
	for _, svc := range []string{remote.ServiceUnary, remote.ServiceStreaming, remote.ServiceLane} {
		t.Run(svc, func(t *testing.T) {
			r := newRig(t, svc, nil)
			if !strings.Contains(r.logs.String(), "listening") {
				t.Errorf("no \"listening\" log line in %q", r.logs.String())
			}
			const conns, rounds = 8, 20
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			for i := range conns {
				nc := r.dial(t)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range rounds {
						msg := fmt.Appendf(nil, "conn %d message %d %s", i, j, strings.Repeat("x", j*50))
						if err := pingPong(nc, msg); err != nil {
							errs <- fmt.Errorf("conn %d round %d: %w", i, j, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestEchoInOrder pipelines chunks on one connection: every byte must come
// back, in order, although the gateway may coalesce or split the chunks.
func TestEchoInOrder(t *testing.T) {
	for _, tc := range []struct {
		svc  string
		args []string
	}{
		{remote.ServiceUnary, nil},
		{remote.ServiceStreaming, nil},
		{remote.ServiceStreaming, []string{"-stream-concurrency", "1"}},
		{remote.ServiceLane, nil},
	} {
		t.Run(tc.svc+strings.Join(tc.args, ""), func(t *testing.T) {
			r := newRig(t, tc.svc, nil, tc.args...)
			nc := r.dial(t)
			var want bytes.Buffer
			for i := range 200 {
				fmt.Fprintf(&want, "%04d;", i)
			}
			if err := nc.SetDeadline(time.Now().Add(wait)); err != nil {
				t.Fatal(err)
			}
			writeErr := make(chan error, 1)
			go func() {
				var err error
				for chunk := range bytes.SplitAfterSeq(want.Bytes(), []byte(";")) {
					if _, err = nc.Write(chunk); err != nil {
						break
					}
				}
				writeErr <- err
			}()
			got := make([]byte, want.Len())
			if _, err := io.ReadFull(nc, got); err != nil {
				t.Fatalf("read: %v (got %q)", err, got)
			}
			if err := <-writeErr; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("echo out of order:\n got %q\nwant %q", got, want.Bytes())
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	for _, svc := range []string{remote.ServiceUnary, remote.ServiceLane} {
		t.Run(svc, func(t *testing.T) {
			r := newRig(t, svc, nil, "-authenticate")
			nc := r.dial(t)
			var c *gateway.Conn
			select {
			case c = <-r.rec.created:
			case <-time.After(wait):
				t.Fatal("OnSocketCreated not seen")
			}
			// Unary and fast-lane callbacks return after the
			// handler's calls.
			if got := c.ClientID(); got != c.Handle() {
				t.Errorf("client id = %q, want the conn handle %q", got, c.Handle())
			}
			if err := pingPong(nc, []byte("authenticated")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAuthenticateStreaming(t *testing.T) {
	r := newRig(t, remote.ServiceStreaming, nil, "-authenticate")
	nc := r.dial(t)
	if err := pingPong(nc, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var c *gateway.Conn
	select {
	case c = <-r.rec.created:
	case <-time.After(wait):
		t.Fatal("OnSocketCreated not seen")
	}
	// The streaming service acknowledges on send, so Authenticate may still
	// be on its way: poll.
	deadline := time.Now().Add(wait)
	for c.ClientID() != c.Handle() {
		if time.Now().After(deadline) {
			t.Fatalf("client id = %q, want the conn handle %q", c.ClientID(), c.Handle())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuthenticateRefusedCloses(t *testing.T) {
	for _, svc := range []string{remote.ServiceUnary, remote.ServiceLane} {
		t.Run(svc, func(t *testing.T) {
			r := newRig(t, svc, denyAll{}, "-authenticate")
			nc := r.dial(t)
			if err := nc.SetReadDeadline(time.Now().Add(wait)); err != nil {
				t.Fatal(err)
			}
			n, err := nc.Read(make([]byte, 1))
			if n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("read = %d, %v; want the gateway to close the connection", n, err)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-log-level", "loud"}, "-log-level"},
		{[]string{"-adapter", "127.0.0.1:9100"}, "has no scheme"},
		{[]string{"-listen", "256.0.0.1:0"}, "listen"},
		{[]string{"-nosuchflag"}, "not defined"},
		{[]string{"-stream-concurrency", "0"}, "-stream-concurrency"},
		{[]string{"-service", "fast"}, "want exproto or stream"},
		{[]string{"-service", "stream", "-listen", "256.0.0.1:0"}, "listen"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}
