package echohandler

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/proto/exprotov1"
)

// fakeAdapter records the adapter calls the handler makes.
type fakeAdapter struct {
	exprotov1.ConnectionAdapterClient // nil: other calls panic

	mu       sync.Mutex
	calls    []string
	sent     []*exprotov1.SendBytesRequest
	auth     []*exprotov1.AuthenticateRequest
	deadline bool // the last call's context had a deadline

	code exprotov1.ResultCode // returned by every call
	err  error                // returned by every call
}

func (f *fakeAdapter) record(ctx context.Context, call string) (*exprotov1.CodeResponse, error) {
	_, f.deadline = ctx.Deadline()
	f.calls = append(f.calls, call)
	if f.err != nil {
		return nil, f.err
	}
	return &exprotov1.CodeResponse{Code: f.code}, nil
}

func (f *fakeAdapter) Send(ctx context.Context, req *exprotov1.SendBytesRequest, _ ...grpc.CallOption) (*exprotov1.CodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, req)
	return f.record(ctx, "Send")
}

func (f *fakeAdapter) Authenticate(ctx context.Context, req *exprotov1.AuthenticateRequest, _ ...grpc.CallOption) (*exprotov1.CodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, req)
	return f.record(ctx, "Authenticate")
}

func (f *fakeAdapter) Close(ctx context.Context, _ *exprotov1.CloseSocketRequest, _ ...grpc.CallOption) (*exprotov1.CodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.record(ctx, "Close")
}

func TestReceivedBytesSends(t *testing.T) {
	f := &fakeAdapter{}
	h := New(f, Options{})
	b := []byte("hello")
	if _, err := h.OnReceivedBytes(context.Background(), &exprotov1.ReceivedBytesRequest{Conn: "00000000000000ff", Bytes: b}); err != nil {
		t.Fatal(err)
	}
	if len(f.sent) != 1 || f.sent[0].GetConn() != "00000000000000ff" || !bytes.Equal(f.sent[0].GetBytes(), b) {
		t.Fatalf("sent %v, want one Send of %q to 00000000000000ff", f.sent, b)
	}
	if !f.deadline {
		t.Error("Send without a deadline although the callback had none")
	}
}

func TestReceivedBytesKeepsCallerDeadline(t *testing.T) {
	f := &fakeAdapter{}
	h := New(f, Options{CallTimeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, _ := ctx.Deadline()
	h.adapter = deadlineChecker{t: t, want: want, ConnectionAdapterClient: f}
	if _, err := h.OnReceivedBytes(ctx, &exprotov1.ReceivedBytesRequest{Conn: "0000000000000001", Bytes: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}

// deadlineChecker checks that Send sees the caller's deadline.
type deadlineChecker struct {
	exprotov1.ConnectionAdapterClient
	t    *testing.T
	want time.Time
}

func (d deadlineChecker) Send(ctx context.Context, req *exprotov1.SendBytesRequest, opts ...grpc.CallOption) (*exprotov1.CodeResponse, error) {
	if got, ok := ctx.Deadline(); !ok || !got.Equal(d.want) {
		d.t.Errorf("Send deadline = %v, %v; want the callback's %v", got, ok, d.want)
	}
	return d.ConnectionAdapterClient.Send(ctx, req, opts...)
}

func TestReceivedBytesRefusedSucceeds(t *testing.T) {
	f := &fakeAdapter{code: exprotov1.ResultCode_CONN_PROCESS_NOT_ALIVE}
	h := New(f, Options{})
	if _, err := h.OnReceivedBytes(context.Background(), &exprotov1.ReceivedBytesRequest{Conn: "0000000000000001", Bytes: []byte("x")}); err != nil {
		t.Fatalf("a refused Send failed the callback: %v", err)
	}
}

func TestReceivedBytesTransportErrorFails(t *testing.T) {
	boom := errors.New("boom")
	f := &fakeAdapter{err: boom}
	h := New(f, Options{})
	_, err := h.OnReceivedBytes(context.Background(), &exprotov1.ReceivedBytesRequest{Conn: "0000000000000001", Bytes: []byte("x")})
	if !errors.Is(err, boom) {
		t.Fatalf("error = %v, want wrapping %v", err, boom)
	}
}

func TestSocketCreated(t *testing.T) {
	const conn = "0123456789abcdef"
	req := &exprotov1.SocketCreatedRequest{Conn: conn}
	t.Run("no authentication", func(t *testing.T) {
		f := &fakeAdapter{}
		if _, err := New(f, Options{}).OnSocketCreated(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 0 {
			t.Fatalf("adapter calls %v, want none", f.calls)
		}
	})
	t.Run("authenticate", func(t *testing.T) {
		f := &fakeAdapter{}
		if _, err := New(f, Options{Authenticate: true}).OnSocketCreated(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if len(f.auth) != 1 || f.auth[0].GetConn() != conn || f.auth[0].GetClientinfo().GetClientid() != conn ||
			f.auth[0].GetClientinfo().GetProtoName() != "exproto" {
			t.Fatalf("authenticate requests %v, want one with clientid %s", f.auth, conn)
		}
		if len(f.calls) != 1 {
			t.Fatalf("adapter calls %v, want Authenticate only", f.calls)
		}
	})
	t.Run("refused", func(t *testing.T) {
		f := &fakeAdapter{code: exprotov1.ResultCode_PERMISSION_DENY}
		if _, err := New(f, Options{Authenticate: true}).OnSocketCreated(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 2 || f.calls[1] != "Close" {
			t.Fatalf("adapter calls %v, want Authenticate then Close", f.calls)
		}
	})
	t.Run("transport error", func(t *testing.T) {
		boom := errors.New("boom")
		f := &fakeAdapter{err: boom}
		_, err := New(f, Options{Authenticate: true}).OnSocketCreated(context.Background(), req)
		if !errors.Is(err, boom) {
			t.Fatalf("error = %v, want wrapping %v", err, boom)
		}
	})
}

func TestOtherCallbacksDoNothing(t *testing.T) {
	f := &fakeAdapter{}
	h := New(f, Options{Authenticate: true})
	ctx := context.Background()
	if _, err := h.OnTimerTimeout(ctx, &exprotov1.TimerTimeoutRequest{Conn: "0000000000000001"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.OnReceivedMessages(ctx, &exprotov1.ReceivedMessagesRequest{Conn: "0000000000000001"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.OnSocketClosed(ctx, &exprotov1.SocketClosedRequest{Conn: "0000000000000001"}); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Fatalf("adapter calls %v, want none", f.calls)
	}
}
