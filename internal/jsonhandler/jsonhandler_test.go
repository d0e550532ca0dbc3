package jsonhandler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/protogate/protogate/internal/jsonproto"
	"github.com/protogate/protogate/proto/exprotov1"
)

// fakeAdapter is a ConnectionAdapter that records every call as one line of
// text. Its answers depend only on the request, so tests stay deterministic:
//
//   - password "bad" is refused by Authenticate (PERMISSION_DENY);
//   - topics starting with "deny/" are refused by Publish, RawPublish,
//     Subscribe and Unsubscribe (PERMISSION_DENY);
//   - topic "fail" and clientid "fail" produce a transport error
//     (gRPC status UNAVAILABLE);
//   - conns starting with "dead" are refused by Send (CONN_PROCESS_NOT_ALIVE).
type fakeAdapter struct {
	exprotov1.UnimplementedConnectionAdapterServer

	mu    sync.Mutex
	calls []string
}

func (a *fakeAdapter) record(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf(format, args...))
}

// take returns and forgets the calls recorded so far.
func (a *fakeAdapter) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls
	a.calls = nil
	return c
}

func success() *exprotov1.CodeResponse { return &exprotov1.CodeResponse{} }

func deny() *exprotov1.CodeResponse {
	return &exprotov1.CodeResponse{Code: exprotov1.ResultCode_PERMISSION_DENY, Message: "Authorization deny"}
}

func topicAnswer(topic string) (*exprotov1.CodeResponse, error) {
	switch {
	case topic == "fail":
		return nil, status.Error(codes.Unavailable, "adapter down")
	case strings.HasPrefix(topic, "deny/"):
		return deny(), nil
	}
	return success(), nil
}

func (a *fakeAdapter) Send(_ context.Context, r *exprotov1.SendBytesRequest) (*exprotov1.CodeResponse, error) {
	a.record("Send %s %s", r.Conn, r.Bytes)
	if strings.HasPrefix(r.Conn, "dead") {
		return &exprotov1.CodeResponse{Code: exprotov1.ResultCode_CONN_PROCESS_NOT_ALIVE}, nil
	}
	return success(), nil
}

func (a *fakeAdapter) Close(_ context.Context, r *exprotov1.CloseSocketRequest) (*exprotov1.CodeResponse, error) {
	a.record("Close %s", r.Conn)
	return success(), nil
}

func (a *fakeAdapter) Authenticate(_ context.Context, r *exprotov1.AuthenticateRequest) (*exprotov1.CodeResponse, error) {
	ci := r.Clientinfo
	a.record("Authenticate %s proto_name=%s proto_ver=%s clientid=%s username=%s mountpoint=%s password=%s",
		r.Conn, ci.GetProtoName(), ci.GetProtoVer(), ci.GetClientid(), ci.GetUsername(), ci.GetMountpoint(), r.Password)
	switch {
	case ci.GetClientid() == "fail":
		return nil, status.Error(codes.Unavailable, "adapter down")
	case r.Password == "bad":
		return &exprotov1.CodeResponse{Code: exprotov1.ResultCode_PERMISSION_DENY, Message: "not_authorized"}, nil
	}
	return success(), nil
}

func (a *fakeAdapter) StartTimer(_ context.Context, r *exprotov1.TimerRequest) (*exprotov1.CodeResponse, error) {
	a.record("StartTimer %s %s %d", r.Conn, r.Type, r.Interval)
	return success(), nil
}

func (a *fakeAdapter) Publish(_ context.Context, r *exprotov1.PublishRequest) (*exprotov1.CodeResponse, error) {
	a.record("Publish %s %s %d %s", r.Conn, r.Topic, r.Qos, r.Payload)
	return topicAnswer(r.Topic)
}

func (a *fakeAdapter) RawPublish(_ context.Context, r *exprotov1.RawPublishRequest) (*exprotov1.CodeResponse, error) {
	a.record("RawPublish %s %d %s", r.Topic, r.Qos, r.Payload)
	return topicAnswer(r.Topic)
}

func (a *fakeAdapter) Subscribe(_ context.Context, r *exprotov1.SubscribeRequest) (*exprotov1.CodeResponse, error) {
	a.record("Subscribe %s %s %d", r.Conn, r.Topic, r.Qos)
	return topicAnswer(r.Topic)
}

func (a *fakeAdapter) Unsubscribe(_ context.Context, r *exprotov1.UnsubscribeRequest) (*exprotov1.CodeResponse, error) {
	a.record("Unsubscribe %s %s", r.Conn, r.Topic)
	return topicAnswer(r.Topic)
}

// caller drives the handler through one of its two gRPC services.
type caller interface {
	created(ctx context.Context, conn string) error
	bytes(ctx context.Context, conn string, b []byte) error
	messages(ctx context.Context, conn string, msgs ...*exprotov1.Message) error
	timeout(ctx context.Context, conn string) error
	closed(ctx context.Context, conn, reason string) error
}

type unaryCaller struct {
	c exprotov1.ConnectionUnaryHandlerClient
}

func (u unaryCaller) created(ctx context.Context, conn string) error {
	_, err := u.c.OnSocketCreated(ctx, &exprotov1.SocketCreatedRequest{Conn: conn, Conninfo: &exprotov1.ConnInfo{}})
	return err
}

func (u unaryCaller) bytes(ctx context.Context, conn string, b []byte) error {
	_, err := u.c.OnReceivedBytes(ctx, &exprotov1.ReceivedBytesRequest{Conn: conn, Bytes: b})
	return err
}

func (u unaryCaller) messages(ctx context.Context, conn string, msgs ...*exprotov1.Message) error {
	_, err := u.c.OnReceivedMessages(ctx, &exprotov1.ReceivedMessagesRequest{Conn: conn, Messages: msgs})
	return err
}

func (u unaryCaller) timeout(ctx context.Context, conn string) error {
	_, err := u.c.OnTimerTimeout(ctx, &exprotov1.TimerTimeoutRequest{Conn: conn, Type: exprotov1.TimerType_KEEPALIVE})
	return err
}

func (u unaryCaller) closed(ctx context.Context, conn, reason string) error {
	_, err := u.c.OnSocketClosed(ctx, &exprotov1.SocketClosedRequest{Conn: conn, Reason: reason})
	return err
}

// streamCaller opens one client stream per call, sends the request(s) and
// closes it, waiting for the handler's EmptySuccess (or error).
type streamCaller struct {
	c exprotov1.ConnectionHandlerClient
}

func streamAll[Req any](ctx context.Context,
	open func(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[Req, exprotov1.EmptySuccess], error),
	reqs ...*Req,
) error {
	s, err := open(ctx)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the stream; CloseAndRecv has its status
			}
			return err
		}
	}
	_, err = s.CloseAndRecv()
	return err
}

func (s streamCaller) created(ctx context.Context, conn string) error {
	return streamAll(ctx, s.c.OnSocketCreated, &exprotov1.SocketCreatedRequest{Conn: conn, Conninfo: &exprotov1.ConnInfo{}})
}

func (s streamCaller) bytes(ctx context.Context, conn string, b []byte) error {
	return streamAll(ctx, s.c.OnReceivedBytes, &exprotov1.ReceivedBytesRequest{Conn: conn, Bytes: b})
}

func (s streamCaller) messages(ctx context.Context, conn string, msgs ...*exprotov1.Message) error {
	return streamAll(ctx, s.c.OnReceivedMessages, &exprotov1.ReceivedMessagesRequest{Conn: conn, Messages: msgs})
}

func (s streamCaller) timeout(ctx context.Context, conn string) error {
	return streamAll(ctx, s.c.OnTimerTimeout, &exprotov1.TimerTimeoutRequest{Conn: conn, Type: exprotov1.TimerType_KEEPALIVE})
}

func (s streamCaller) closed(ctx context.Context, conn, reason string) error {
	return streamAll(ctx, s.c.OnSocketClosed, &exprotov1.SocketClosedRequest{Conn: conn, Reason: reason})
}

type env struct {
	fake   *fakeAdapter
	h      *Handler
	unary  exprotov1.ConnectionUnaryHandlerClient
	stream exprotov1.ConnectionHandlerClient
}

// serve runs a gRPC server on 127.0.0.1:0 until the test ends and returns a
// client connection to it.
func serve(t *testing.T, register func(grpc.ServiceRegistrar)) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return cc
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fake := &fakeAdapter{}
	adapterConn := serve(t, func(s grpc.ServiceRegistrar) { exprotov1.RegisterConnectionAdapterServer(s, fake) })
	h := New(exprotov1.NewConnectionAdapterClient(adapterConn), nil)
	handlerConn := serve(t, h.Register)
	return &env{
		fake:   fake,
		h:      h,
		unary:  exprotov1.NewConnectionUnaryHandlerClient(handlerConn),
		stream: exprotov1.NewConnectionHandlerClient(handlerConn),
	}
}

func (e *env) callers() map[string]caller {
	return map[string]caller{
		"unary":     unaryCaller{e.unary},
		"streaming": streamCaller{e.stream},
	}
}

// forEachService runs fn as a subtest once per handler service, each with a
// fresh handler and fake adapter.
func forEachService(t *testing.T, fn func(t *testing.T, ctx context.Context, e *env, c caller)) {
	for _, name := range []string{"unary", "streaming"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e := newEnv(t)
			fn(t, ctx, e, e.callers()[name])
		})
	}
}

// enc is a frame as a device sends it; answer one as the handler sends it,
// ended by a newline.
func enc(f jsonproto.Frame) string    { return string(jsonproto.Encode(f)) }
func answer(f jsonproto.Frame) string { return string(jsonproto.AppendLine(nil, f)) }

var (
	connack0 = answer(jsonproto.Frame{Type: jsonproto.Connack, Code: 0})
	connack1 = answer(jsonproto.Frame{Type: jsonproto.Connack, Code: 1})
	puback0  = answer(jsonproto.Frame{Type: jsonproto.Puback, Code: 0})
	puback1  = answer(jsonproto.Frame{Type: jsonproto.Puback, Code: 1})
	suback0  = answer(jsonproto.Frame{Type: jsonproto.Suback, Code: 0})
	suback1  = answer(jsonproto.Frame{Type: jsonproto.Suback, Code: 1})
	unsuback = answer(jsonproto.Frame{Type: jsonproto.Unsuback, Code: 0})
	discFr   = enc(jsonproto.Frame{Type: jsonproto.Disconnect})
	discAns  = answer(jsonproto.Frame{Type: jsonproto.Disconnect})
)

func connectFrame(clientid, password string, keepalive uint32) []byte {
	return jsonproto.Encode(jsonproto.Frame{Type: jsonproto.Connect, Password: password, ClientInfo: jsonproto.ClientInfo{
		ProtoName: "exproto", ProtoVer: "1.0", ClientID: clientid, Username: "u", Mountpoint: "m/", Keepalive: keepalive,
	}})
}

func wantCalls(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("adapter calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestConnect(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []string
	}{
		{"success with keepalive", connectFrame("c1", "pw", 30), []string{
			"Authenticate C proto_name=exproto proto_ver=1.0 clientid=c1 username=u mountpoint=m/ password=pw",
			"StartTimer C KEEPALIVE 30",
			"Send C " + connack0,
		}},
		{"success without keepalive", connectFrame("c1", "pw", 0), []string{
			"Authenticate C proto_name=exproto proto_ver=1.0 clientid=c1 username=u mountpoint=m/ password=pw",
			"Send C " + connack0,
		}},
		{"refused", connectFrame("c1", "bad", 30), []string{
			"Authenticate C proto_name=exproto proto_ver=1.0 clientid=c1 username=u mountpoint=m/ password=bad",
			"Send C " + connack1,
			"Close C",
		}},
		{"bench client shape with ## delimiter", []byte(`{"type":1,"clientinfo":{"clientid":"b","username":"undefined"},"password":"undefined"}##`), []string{
			"Authenticate C proto_name= proto_ver= clientid=b username=undefined mountpoint= password=undefined",
			"Send C " + connack0,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
				must(t, c.created(ctx, "C"))
				wantCalls(t, e.fake.take(), nil)
				must(t, c.bytes(ctx, "C", tc.in))
				wantCalls(t, e.fake.take(), tc.want)
			})
		})
	}
}

func TestCoalescedFrames(t *testing.T) {
	forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
		must(t, c.created(ctx, "C"))
		var chunk []byte
		for _, f := range []jsonproto.Frame{
			{Type: jsonproto.Subscribe, Topic: "t/dn", QoS: 1},
			{Type: jsonproto.Subscribe, Topic: "deny/x", QoS: 0},
			{Type: jsonproto.Publish, Topic: "t/up", QoS: 1, Payload: "hello"},
			{Type: jsonproto.Publish, Topic: "deny/up", QoS: 0, Payload: "no"},
			{Type: jsonproto.RawPublish, Topic: "raw", QoS: 2, Payload: "r"},
			{Type: jsonproto.RawPublish, Topic: "deny/raw", QoS: 0, Payload: "r"},
			{Type: jsonproto.Unsubscribe, Topic: "t/dn"},
		} {
			chunk = jsonproto.AppendEncode(chunk, f)
			chunk = append(chunk, "##\n"...)
		}
		chunk = append(connectFrame("c1", "pw", 0), chunk...)
		must(t, c.bytes(ctx, "C", chunk))
		wantCalls(t, e.fake.take(), []string{
			"Authenticate C proto_name=exproto proto_ver=1.0 clientid=c1 username=u mountpoint=m/ password=pw",
			"Send C " + connack0,
			"Subscribe C t/dn 1",
			"Send C " + suback0,
			"Subscribe C deny/x 0",
			"Send C " + suback1,
			"Publish C t/up 1 hello",
			"Send C " + puback0,
			"Publish C deny/up 0 no",
			"Send C " + puback1,
			"RawPublish raw 2 r",
			"Send C " + puback0,
			"RawPublish deny/raw 0 r",
			"Send C " + puback1,
			"Unsubscribe C t/dn",
			"Send C " + unsuback,
		})
	})
}

func TestSplitFrames(t *testing.T) {
	forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
		must(t, c.created(ctx, "C"))
		in := append(connectFrame("c1", "pw", 0), jsonproto.Encode(jsonproto.Frame{Type: jsonproto.Publish, Topic: "t", Payload: "p"})...)
		// Byte by byte: nothing happens until a frame is complete.
		for i := range len(in) {
			must(t, c.bytes(ctx, "C", in[i:i+1]))
			calls := e.fake.take()
			switch i {
			case len(connectFrame("c1", "pw", 0)) - 1:
				wantCalls(t, calls, []string{
					"Authenticate C proto_name=exproto proto_ver=1.0 clientid=c1 username=u mountpoint=m/ password=pw",
					"Send C " + connack0,
				})
			case len(in) - 1:
				wantCalls(t, calls, []string{"Publish C t 0 p", "Send C " + puback0})
			default:
				if len(calls) != 0 {
					t.Fatalf("after byte %d: calls %v", i, calls)
				}
			}
		}
	})
}

func TestSplitFramesArePerConnection(t *testing.T) {
	forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
		must(t, c.created(ctx, "A"))
		must(t, c.created(ctx, "B"))
		a := jsonproto.Encode(jsonproto.Frame{Type: jsonproto.Subscribe, Topic: "a", QoS: 1})
		b := jsonproto.Encode(jsonproto.Frame{Type: jsonproto.Subscribe, Topic: "b", QoS: 2})
		must(t, c.bytes(ctx, "A", a[:5]))
		must(t, c.bytes(ctx, "B", b[:7]))
		must(t, c.bytes(ctx, "A", a[5:]))
		must(t, c.bytes(ctx, "B", b[7:]))
		wantCalls(t, e.fake.take(), []string{
			"Subscribe A a 1", "Send A " + suback0,
			"Subscribe B b 2", "Send B " + suback0,
		})
		if n := e.h.Conns(); n != 2 {
			t.Fatalf("Conns() = %d, want 2", n)
		}
		// OnSocketClosed drops the state: a half frame is forgotten, so the
		// rest of it arriving under the same conn is garbage.
		must(t, c.bytes(ctx, "A", a[:5]))
		must(t, c.closed(ctx, "A", "{shutdown,tcp_closed}"))
		if n := e.h.Conns(); n != 1 {
			t.Fatalf("Conns() after close = %d, want 1", n)
		}
		must(t, c.bytes(ctx, "A", a[5:]))
		wantCalls(t, e.fake.take(), []string{"Close A"})
	})
}

func TestDisconnectAndGarbage(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"disconnect", discFr, []string{"Close C"}},
		{"frames after disconnect are ignored", discFr + `{"type":5,"topic":"t","qos":0}`, []string{"Close C"}},
		{"garbage", "GET / HTTP/1.1\r\n", []string{"Close C"}},
		{"garbage after a frame", `{"type":7,"topic":"t"}oops`, []string{"Unsubscribe C t", "Send C " + unsuback, "Close C"}},
		{"unknown type", `{"type":99}`, []string{"Close C"}},
		{"missing member", `{"type":3,"topic":"t"}`, []string{"Close C"}},
		{"frame the device should not send", `{"type":2,"code":0}`, []string{"Close C"}},
		{"refused connect stops the chunk", string(connectFrame("c", "bad", 0)) + discFr, []string{
			"Authenticate C proto_name=exproto proto_ver=1.0 clientid=c username=u mountpoint=m/ password=bad",
			"Send C " + connack1,
			"Close C",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
				must(t, c.created(ctx, "C"))
				must(t, c.bytes(ctx, "C", []byte(tc.in)))
				wantCalls(t, e.fake.take(), tc.want)
				// Once closed, further bytes make no calls.
				must(t, c.bytes(ctx, "C", []byte(`{"type":7,"topic":"t"}`)))
				wantCalls(t, e.fake.take(), nil)
			})
		})
	}
}

func TestReceivedMessages(t *testing.T) {
	forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
		must(t, c.created(ctx, "C"))
		must(t, c.messages(ctx, "C",
			&exprotov1.Message{Topic: "t/dn", Qos: 1, Payload: []byte("one"), From: "x", Id: "1"},
			&exprotov1.Message{Topic: "t/2", Qos: 0, Payload: []byte(`{"json":"inside"}`)},
		))
		wantCalls(t, e.fake.take(), []string{
			"Send C " + answer(jsonproto.Frame{Type: jsonproto.Publish, Topic: "t/dn", QoS: 1, Payload: "one"}),
			"Send C " + `{"type":3,"topic":"t/2","qos":0,"payload":"{\"json\":\"inside\"}"}` + "\n",
		})
		// A refused Send (the connection is gone) is logged, not fatal.
		must(t, c.messages(ctx, "dead1", &exprotov1.Message{Topic: "t", Payload: []byte("x")}))
		wantCalls(t, e.fake.take(), []string{"Send dead1 " + `{"type":3,"topic":"t","qos":0,"payload":"x"}` + "\n"})
	})
}

func TestTimerTimeout(t *testing.T) {
	forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
		must(t, c.created(ctx, "C"))
		must(t, c.bytes(ctx, "C", connectFrame("c1", "pw", 5)))
		e.fake.take()
		must(t, c.timeout(ctx, "C"))
		wantCalls(t, e.fake.take(), []string{"Send C " + discAns, "Close C"})
		must(t, c.bytes(ctx, "C", []byte(discFr)))
		wantCalls(t, e.fake.take(), nil)
	})
}

func TestTransportErrorFailsCallback(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []string
	}{
		{"publish", jsonproto.Encode(jsonproto.Frame{Type: jsonproto.Publish, Topic: "fail"}), []string{"Publish C fail 0 "}},
		{"subscribe", jsonproto.Encode(jsonproto.Frame{Type: jsonproto.Subscribe, Topic: "fail"}), []string{"Subscribe C fail 0"}},
		{"authenticate", connectFrame("fail", "pw", 0), []string{
			"Authenticate C proto_name=exproto proto_ver=1.0 clientid=fail username=u mountpoint=m/ password=pw",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
				must(t, c.created(ctx, "C"))
				err := c.bytes(ctx, "C", tc.in)
				if got := status.Code(err); got != codes.Unavailable {
					t.Fatalf("callback error = %v (code %v), want Unavailable", err, got)
				}
				if !strings.Contains(err.Error(), "jsonhandler:") {
					t.Errorf("error %q does not say where it came from", err)
				}
				wantCalls(t, e.fake.take(), tc.want)
			})
		})
	}
}

func TestAdapterUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here any more
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h := New(exprotov1.NewConnectionAdapterClient(cc), nil)
	hc := serve(t, h.Register)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, c := range map[string]caller{
		"unary":     unaryCaller{exprotov1.NewConnectionUnaryHandlerClient(hc)},
		"streaming": streamCaller{exprotov1.NewConnectionHandlerClient(hc)},
	} {
		t.Run(name, func(t *testing.T) {
			conn := "conn-" + name
			must(t, c.created(ctx, conn))
			if err := c.bytes(ctx, conn, []byte(discFr)); status.Code(err) != codes.Unavailable {
				t.Fatalf("callback error = %v, want Unavailable", err)
			}
			if err := c.timeout(ctx, conn); status.Code(err) != codes.Unavailable {
				t.Fatalf("callback error = %v, want Unavailable", err)
			}
		})
	}
}

func TestObserver(t *testing.T) {
	forEachService(t, func(t *testing.T, ctx context.Context, e *env, c caller) {
		var mu sync.Mutex
		var events []Event
		e.h.SetObserver(func(ev Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
		})
		must(t, c.created(ctx, "C"))
		must(t, c.bytes(ctx, "C", connectFrame("c1", "pw", 0)))
		must(t, c.messages(ctx, "C", &exprotov1.Message{Topic: "a"}, &exprotov1.Message{Topic: "b"}, &exprotov1.Message{Topic: "c"}))
		must(t, c.timeout(ctx, "C"))
		must(t, c.closed(ctx, "C", "{shutdown,keepalive_timeout}"))
		e.h.SetObserver(nil)
		must(t, c.created(ctx, "D"))

		mu.Lock()
		defer mu.Unlock()
		want := []Event{
			{Conn: "C", Kind: KindCreated},
			{Conn: "C", Kind: KindBytes},
			{Conn: "C", Kind: KindMessages, Messages: 3},
			{Conn: "C", Kind: KindTimeout},
			{Conn: "C", Kind: KindClosed, Reason: "{shutdown,keepalive_timeout}"},
		}
		if !slices.Equal(events, want) {
			t.Fatalf("events = %+v\nwant     %+v", events, want)
		}
	})
}

// TestStreamManyRequests sends several requests for several connections on
// one stream, as EMQX v4.3 does with its shared streams.
func TestStreamManyRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv(t)
	must(t, streamAll(ctx, e.stream.OnSocketCreated,
		&exprotov1.SocketCreatedRequest{Conn: "A"}, &exprotov1.SocketCreatedRequest{Conn: "B"}))
	sub := jsonproto.Encode(jsonproto.Frame{Type: jsonproto.Subscribe, Topic: "t", QoS: 1})
	must(t, streamAll(ctx, e.stream.OnReceivedBytes,
		&exprotov1.ReceivedBytesRequest{Conn: "A", Bytes: sub[:4]},
		&exprotov1.ReceivedBytesRequest{Conn: "B", Bytes: sub},
		&exprotov1.ReceivedBytesRequest{Conn: "A", Bytes: sub[4:]},
	))
	wantCalls(t, e.fake.take(), []string{
		"Subscribe B t 1", "Send B " + suback0,
		"Subscribe A t 1", "Send A " + suback0,
	})
	must(t, streamAll(ctx, e.stream.OnSocketClosed,
		&exprotov1.SocketClosedRequest{Conn: "A", Reason: "r"}, &exprotov1.SocketClosedRequest{Conn: "B", Reason: "r"}))
	if n := e.h.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after closing all, want 0", n)
	}
	// An empty stream is answered too.
	must(t, streamAll[exprotov1.TimerTimeoutRequest](ctx, e.stream.OnTimerTimeout))
}

// TestConcurrentConnections drives many connections in parallel through both
// services; run with -race.
func TestConcurrentConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newEnv(t)
	var seen sync.Map
	e.h.SetObserver(func(ev Event) { seen.Store(ev.Conn+"/"+ev.Kind, true) })
	callers := e.callers()
	const conns, publishes = 12, 10

	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c := callers["unary"]
		if i%2 == 1 {
			c = callers["streaming"]
		}
		conn := fmt.Sprintf("conn%02d", i)
		wg.Go(func() {
			err := func() error {
				if err := c.created(ctx, conn); err != nil {
					return err
				}
				in := connectFrame(conn, "pw", 10)
				for j := range publishes {
					in = jsonproto.AppendEncode(in, jsonproto.Frame{Type: jsonproto.Publish, Topic: conn, Payload: fmt.Sprint(j)})
				}
				// Feed in odd-sized pieces to mix splitting and coalescing.
				for len(in) > 0 {
					n := min(len(in), 37)
					if err := c.bytes(ctx, conn, in[:n]); err != nil {
						return err
					}
					in = in[n:]
				}
				if err := c.messages(ctx, conn, &exprotov1.Message{Topic: conn, Payload: []byte("m")}); err != nil {
					return err
				}
				return c.closed(ctx, conn, "{shutdown,normal}")
			}()
			if err != nil {
				errs <- fmt.Errorf("%s: %w", conn, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	calls := e.fake.take()
	for i := range conns {
		conn := fmt.Sprintf("conn%02d", i)
		var got []string
		for _, c := range calls {
			if strings.Contains(c, " "+conn+" ") {
				got = append(got, c)
			}
		}
		want := []string{
			"Authenticate " + conn + " proto_name=exproto proto_ver=1.0 clientid=" + conn + " username=u mountpoint=m/ password=pw",
			"StartTimer " + conn + " KEEPALIVE 10",
			"Send " + conn + " " + connack0,
		}
		for j := range publishes {
			want = append(want, fmt.Sprintf("Publish %s %s 0 %d", conn, conn, j), "Send "+conn+" "+puback0)
		}
		want = append(want, "Send "+conn+" "+answer(jsonproto.Frame{Type: jsonproto.Publish, Topic: conn, Payload: "m"}))
		wantCalls(t, got, want)
		for _, k := range []string{KindCreated, KindBytes, KindMessages, KindClosed} {
			if _, ok := seen.Load(conn + "/" + k); !ok {
				t.Errorf("observer missed %s %s", conn, k)
			}
		}
	}
	if n := e.h.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after all closed, want 0", n)
	}
}
