package remote_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/remote"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// scripted is a handler service whose callbacks the test controls.
type scripted struct {
	pb.UnimplementedConnectionUnaryHandlerServer
	mu      sync.Mutex
	created chan string // handles, in order
	closed  chan [2]string
	onBytes func(ctx context.Context, conn string, b []byte) error
}

func newScripted() *scripted {
	return &scripted{created: make(chan string, 16), closed: make(chan [2]string, 16)}
}

func (s *scripted) OnSocketCreated(_ context.Context, req *pb.SocketCreatedRequest) (*pb.EmptySuccess, error) {
	s.created <- req.GetConn()
	return &pb.EmptySuccess{}, nil
}

func (s *scripted) OnSocketClosed(_ context.Context, req *pb.SocketClosedRequest) (*pb.EmptySuccess, error) {
	s.closed <- [2]string{req.GetConn(), req.GetReason()}
	return &pb.EmptySuccess{}, nil
}

func (s *scripted) OnReceivedBytes(ctx context.Context, req *pb.ReceivedBytesRequest) (*pb.EmptySuccess, error) {
	s.mu.Lock()
	f := s.onBytes
	s.mu.Unlock()
	if f != nil {
		if err := f(ctx, req.GetConn(), req.GetBytes()); err != nil {
			return nil, err
		}
	}
	return &pb.EmptySuccess{}, nil
}

func (s *scripted) OnReceivedMessages(context.Context, *pb.ReceivedMessagesRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}

func (s *scripted) OnTimerTimeout(context.Context, *pb.TimerTimeoutRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}

// rig is a gateway with a scripted remote handler and an adapter client.
type rig struct {
	srv     *gateway.Server
	adapter pb.ConnectionAdapterClient
	handler *scripted
	addr    string // device listener
	hAddr   string // handler listener
	hServer *grpc.Server
	hWG     *sync.WaitGroup
}

const wait = 15 * time.Second

func newRig(t *testing.T, timeout time.Duration) *rig {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	br, err := broker.Start(broker.Config{DataDir: t.TempDir(), MaxPayload: 1024, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Shutdown(context.Background()) })
	srv := gateway.New(gateway.Options{PubSub: br, Logger: log})
	r := &rig{srv: srv, handler: newScripted()}

	// Adapter.
	gs := grpc.NewServer()
	remote.NewAdapter(srv, log).Register(gs)
	aln := listen(t)
	go gs.Serve(aln)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(aln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	r.adapter = pb.NewConnectionAdapterClient(cc)

	// Handler.
	hln := listen(t)
	r.hAddr = hln.Addr().String()
	r.startHandler(t, hln)
	h, err := remote.New(remote.Config{Address: "http://" + r.hAddr, Timeout: timeout, Logger: log})
	if err != nil {
		t.Fatal(err)
	}

	ln := listen(t)
	r.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln, &gateway.Listener{Name: "rig", Type: gateway.TCP, Handler: h})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		h.Close()
		r.stopHandler()
	})
	return r
}

func (r *rig) startHandler(t *testing.T, ln net.Listener) {
	r.hServer = grpc.NewServer()
	pb.RegisterConnectionUnaryHandlerServer(r.hServer, r.handler)
	r.hWG = new(sync.WaitGroup)
	r.hWG.Add(1)
	go func() {
		defer r.hWG.Done()
		r.hServer.Serve(ln)
	}()
}

func (r *rig) stopHandler() {
	if r.hServer != nil {
		r.hServer.Stop()
		r.hWG.Wait()
		r.hServer = nil
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// dial connects a device and returns it with its conn handle.
func (r *rig) dial(t *testing.T) (net.Conn, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", r.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	select {
	case h := <-r.handler.created:
		return nc, h
	case <-time.After(wait):
		t.Fatal("no OnSocketCreated")
		return nil, ""
	}
}

func (r *rig) waitClosed(t *testing.T, conn string) string {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case c := <-r.handler.closed:
			if c[0] == conn {
				return c[1]
			}
		case <-deadline:
			t.Fatalf("no OnSocketClosed for %s", conn)
			return ""
		}
	}
}

func code(t *testing.T, resp *pb.CodeResponse, err error) pb.ResultCode {
	t.Helper()
	if err != nil {
		t.Fatalf("adapter rpc failed at the gRPC level: %v", err)
	}
	return resp.GetCode()
}

func TestAdapterResultCodes(t *testing.T) {
	r := newRig(t, 5*time.Second)
	ctx := context.Background()
	_, conn := r.dial(t)
	a := r.adapter
	ci := &pb.ClientInfo{ProtoName: "exproto-echo-svr", ProtoVer: "1.0", Clientid: "codes-1"}

	for _, tc := range []struct {
		name string
		call func() (*pb.CodeResponse, error)
		want pb.ResultCode
	}{
		{"send before auth", func() (*pb.CodeResponse, error) {
			return a.Send(ctx, &pb.SendBytesRequest{Conn: conn, Bytes: []byte("hi")})
		}, pb.ResultCode_SUCCESS},
		{"start timer before auth", func() (*pb.CodeResponse, error) {
			return a.StartTimer(ctx, &pb.TimerRequest{Conn: conn, Interval: 60})
		}, pb.ResultCode_SUCCESS},
		{"start timer interval 0", func() (*pb.CodeResponse, error) {
			return a.StartTimer(ctx, &pb.TimerRequest{Conn: conn, Interval: 0})
		}, pb.ResultCode_PARAMS_TYPE_ERROR},
		{"start timer unknown type", func() (*pb.CodeResponse, error) {
			return a.StartTimer(ctx, &pb.TimerRequest{Conn: conn, Type: 7, Interval: 5})
		}, pb.ResultCode_PARAMS_TYPE_ERROR},
		{"publish before auth", func() (*pb.CodeResponse, error) {
			return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: "t"})
		}, pb.ResultCode_UNKNOWN},
		{"subscribe before auth", func() (*pb.CodeResponse, error) {
			return a.Subscribe(ctx, &pb.SubscribeRequest{Conn: conn, Topic: "t"})
		}, pb.ResultCode_UNKNOWN},
		{"unsubscribe before auth", func() (*pb.CodeResponse, error) {
			return a.Unsubscribe(ctx, &pb.UnsubscribeRequest{Conn: conn, Topic: "t"})
		}, pb.ResultCode_UNKNOWN},
		{"authenticate without clientinfo", func() (*pb.CodeResponse, error) {
			return a.Authenticate(ctx, &pb.AuthenticateRequest{Conn: conn})
		}, pb.ResultCode_REQUIRED_PARAMS_MISSED},
		{"authenticate any proto_name", func() (*pb.CodeResponse, error) {
			return a.Authenticate(ctx, &pb.AuthenticateRequest{Conn: conn, Clientinfo: ci, Password: "pw"})
		}, pb.ResultCode_SUCCESS},
		{"authenticate twice", func() (*pb.CodeResponse, error) {
			return a.Authenticate(ctx, &pb.AuthenticateRequest{Conn: conn, Clientinfo: ci})
		}, pb.ResultCode_PERMISSION_DENY},
		{"publish", func() (*pb.CodeResponse, error) {
			return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: "t/1", Qos: 2, Payload: []byte("x")})
		}, pb.ResultCode_SUCCESS},
		{"publish qos 3", func() (*pb.CodeResponse, error) {
			return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: "t/1", Qos: 3})
		}, pb.ResultCode_PARAMS_TYPE_ERROR},
		{"publish empty topic", func() (*pb.CodeResponse, error) {
			return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: ""})
		}, pb.ResultCode_REQUIRED_PARAMS_MISSED},
		{"publish oversized", func() (*pb.CodeResponse, error) {
			return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: "t/1", Payload: bytes.Repeat([]byte("x"), 2048)})
		}, pb.ResultCode_PARAMS_TYPE_ERROR},
		{"publish wildcard", func() (*pb.CodeResponse, error) {
			return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: "t/#"})
		}, pb.ResultCode_PARAMS_TYPE_ERROR},
		{"subscribe", func() (*pb.CodeResponse, error) {
			return a.Subscribe(ctx, &pb.SubscribeRequest{Conn: conn, Topic: "t/#", Qos: 1})
		}, pb.ResultCode_SUCCESS},
		{"resubscribe updates qos", func() (*pb.CodeResponse, error) {
			return a.Subscribe(ctx, &pb.SubscribeRequest{Conn: conn, Topic: "t/#", Qos: 2})
		}, pb.ResultCode_SUCCESS},
		{"subscribe qos 3", func() (*pb.CodeResponse, error) {
			return a.Subscribe(ctx, &pb.SubscribeRequest{Conn: conn, Topic: "t/#", Qos: 3})
		}, pb.ResultCode_PARAMS_TYPE_ERROR},
		{"subscribe shared", func() (*pb.CodeResponse, error) {
			return a.Subscribe(ctx, &pb.SubscribeRequest{Conn: conn, Topic: "$share/g/s/+"})
		}, pb.ResultCode_SUCCESS},
		{"unsubscribe", func() (*pb.CodeResponse, error) {
			return a.Unsubscribe(ctx, &pb.UnsubscribeRequest{Conn: conn, Topic: "t/#"})
		}, pb.ResultCode_SUCCESS},
		{"raw publish", func() (*pb.CodeResponse, error) {
			return a.RawPublish(ctx, &pb.RawPublishRequest{Topic: "raw/1", Payload: []byte("x")})
		}, pb.ResultCode_SUCCESS},
		{"raw publish empty topic", func() (*pb.CodeResponse, error) {
			return a.RawPublish(ctx, &pb.RawPublishRequest{})
		}, pb.ResultCode_REQUIRED_PARAMS_MISSED},
		{"send unknown conn", func() (*pb.CodeResponse, error) {
			return a.Send(ctx, &pb.SendBytesRequest{Conn: "0000000000000001"})
		}, pb.ResultCode_CONN_PROCESS_NOT_ALIVE},
		{"send garbage conn", func() (*pb.CodeResponse, error) {
			return a.Send(ctx, &pb.SendBytesRequest{Conn: "g2gDZAANbm9ub2RlQG5vaG9zdA=="})
		}, pb.ResultCode_PARAMS_TYPE_ERROR},
		{"send empty conn", func() (*pb.CodeResponse, error) {
			return a.Send(ctx, &pb.SendBytesRequest{})
		}, pb.ResultCode_REQUIRED_PARAMS_MISSED},
		{"close", func() (*pb.CodeResponse, error) {
			return a.Close(ctx, &pb.CloseSocketRequest{Conn: conn})
		}, pb.ResultCode_SUCCESS},
	} {
		resp, err := tc.call()
		if got := code(t, resp, err); got != tc.want {
			t.Errorf("%s: code %v (%q), want %v", tc.name, got, resp.GetMessage(), tc.want)
		}
		if resp.GetCode() != pb.ResultCode_SUCCESS && resp.GetMessage() == "" {
			t.Errorf("%s: no message with code %v", tc.name, resp.GetCode())
		}
	}
	if reason := r.waitClosed(t, conn); reason != gateway.ReasonNormal {
		t.Errorf("close reason %q", reason)
	}
	// Once OnSocketClosed is delivered the handle is dead.
	deadline := time.Now().Add(wait)
	for {
		resp, err := a.Send(ctx, &pb.SendBytesRequest{Conn: conn, Bytes: []byte("late")})
		if code(t, resp, err) == pb.ResultCode_CONN_PROCESS_NOT_ALIVE {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Send on a closed conn: %v", resp.GetCode())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestSendReachesDevice(t *testing.T) {
	r := newRig(t, 5*time.Second)
	nc, conn := r.dial(t)
	resp, err := r.adapter.Send(context.Background(), &pb.SendBytesRequest{Conn: conn, Bytes: []byte("ping")})
	if code(t, resp, err) != pb.ResultCode_SUCCESS {
		t.Fatal(resp.GetMessage())
	}
	buf := make([]byte, 4)
	nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("device read %q, %v", buf, err)
	}
}

func TestHandlerHangClosesOnlyThatConnection(t *testing.T) {
	// The deadline also bounds OnSocketClosed; keep it roomy for a loaded machine.
	r := newRig(t, 2*time.Second)
	release := make(chan struct{})
	defer close(release)
	r.handler.mu.Lock()
	r.handler.onBytes = func(ctx context.Context, _ string, b []byte) error {
		if string(b) == "hang" {
			// A hung handler never answers success. Its own deadline (the
			// gateway's plus the transit time) can be processed before the
			// gateway's timer on a loaded machine; answering nil then would
			// make the call succeed and nothing would be closed.
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	r.handler.mu.Unlock()
	hung, hungConn := r.dial(t)
	ok, okConn := r.dial(t)
	hung.Write([]byte("hang"))
	reason := r.waitClosed(t, hungConn)
	if !strings.Contains(reason, "on_received_bytes") || !strings.Contains(reason, "DeadlineExceeded") {
		t.Errorf("reason %q does not name the callback and the deadline", reason)
	}
	// The other connection still works.
	resp, err := r.adapter.Send(context.Background(), &pb.SendBytesRequest{Conn: okConn, Bytes: []byte("ok")})
	if code(t, resp, err) != pb.ResultCode_SUCCESS {
		t.Fatalf("other connection: %v", resp.GetMessage())
	}
	buf := make([]byte, 2)
	ok.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(ok, buf); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerDownThenBack(t *testing.T) {
	r := newRig(t, 2*time.Second)
	r.stopHandler()
	// With the handler down, a new connection fails its first callback and
	// is closed; the gateway stays up.
	nc, err := net.DialTimeout("tcp", r.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := nc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection not closed while the handler is down: %v", err)
	}
	// Bring the handler back on the same address; new connections work
	// again within the reconnect backoff (at most 2 s).
	var hln net.Listener
	deadline := time.Now().Add(wait)
	for hln == nil {
		hln, err = net.Listen("tcp", r.hAddr)
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("relisten %s: %v", r.hAddr, err)
			}
			time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
		}
	}
	r.startHandler(t, hln)
	deadline = time.Now().Add(wait)
	for {
		nc, err := net.DialTimeout("tcp", r.addr, wait)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-r.handler.created:
			nc.Close()
			return
		case <-time.After(500 * time.Millisecond):
			nc.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("new connections do not reach the handler after it came back")
		}
	}
}
