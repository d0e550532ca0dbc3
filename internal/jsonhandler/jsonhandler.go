// Package jsonhandler is the reference remote ExProto handler: a gRPC
// implementation of the emqx.exproto.v1 handler services that speaks the
// JSON test protocol of package internal/jsonproto and handles frames as
// EMQX's echo handler (emqx_exproto_echo_svr.erl) does.
// cmd/exproto-json-handler serves it (the README quickstart), the remote
// back end's conformance test and cmd/protogate's end-to-end tests run it
// against the gateway, and it runs unchanged against EMQX. The
// guests/exproto-json Wasm guest is its twin.
//
// Frames from the device are handled as follows:
//
//	CONNECT      Authenticate; on SUCCESS StartTimer(KEEPALIVE) if keepalive > 0
//	             and CONNACK{code:0}; otherwise CONNACK{code:1} and Close
//	PUBLISH      Publish, then PUBACK{code: 0 on SUCCESS, else 1}
//	RAW_PUBLISH  RawPublish, then PUBACK
//	SUBSCRIBE    Subscribe, then SUBACK
//	UNSUBSCRIBE  Unsubscribe, then UNSUBACK
//	DISCONNECT   Close
//	anything else, or bytes that are not the protocol: Close
//
// Deliveries (OnReceivedMessages) are written to the device as one PUBLISH
// frame per message (the protocol's payload is a JSON string, so bytes that
// are not valid UTF-8 are replaced by U+FFFD), and a keepalive timeout
// (OnTimerTimeout) sends DISCONNECT and then Close. Each frame goes out in
// one Send, ended by a newline ([jsonproto.AppendLine]).
//
// A non-SUCCESS result from an adapter call is logged and the callback still
// succeeds, so the gateway keeps the connection; a transport error (a non-OK
// gRPC status from the adapter) is logged and returned by the callback, which
// makes the gateway close the connection.
package jsonhandler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/internal/jsonproto"
	"github.com/protogate/protogate/proto/exprotov1"
)

// Event kinds reported to the observer set with [Handler.SetObserver].
const (
	KindCreated  = "created"  // OnSocketCreated
	KindBytes    = "bytes"    // OnReceivedBytes
	KindTimeout  = "timeout"  // OnTimerTimeout
	KindMessages = "messages" // OnReceivedMessages
	KindClosed   = "closed"   // OnSocketClosed
)

// Event describes one callback the Handler received.
type Event struct {
	Conn     string // the connection handle
	Kind     string // one of KindCreated, KindBytes, KindTimeout, KindMessages, KindClosed
	Reason   string // KindClosed: SocketClosedRequest.reason
	Messages int    // KindMessages: number of messages in the batch
}

// Handler is the reference ExProto handler. It implements
// exprotov1.ConnectionUnaryHandlerServer directly; [Handler.Streaming] returns
// its implementation of the legacy client-streaming
// exprotov1.ConnectionHandlerServer (Go cannot give one type both, as the two
// services share method names with different signatures). [Handler.Register]
// registers both.
//
// Concurrency: a Handler is safe for concurrent use. Callbacks for different
// connections run fully in parallel. Per connection, the Handler keeps a frame
// decoder in a mutex-guarded map keyed by conn; OnReceivedBytes,
// OnReceivedMessages and OnTimerTimeout for one conn are serialized by a
// per-connection mutex that is held across the adapter calls they make, so the
// frames of one connection are handled, and answered, in the order they were
// received even if a gateway delivered callbacks for one connection
// concurrently (as the streaming service may). Adapter calls are made
// synchronously inside the callback, with the callback's context, which the
// ExProto contract allows (the gateway serves adapter calls while a callback is
// in flight). The observer is called synchronously, one call at a time.
type Handler struct {
	exprotov1.UnimplementedConnectionUnaryHandlerServer

	adapter exprotov1.ConnectionAdapterClient
	log     *slog.Logger

	mu    sync.Mutex
	conns map[string]*connState

	observer atomic.Pointer[func(Event)]
	obsMu    sync.Mutex // serializes observer calls
}

// connState is the per-connection state: the decoder that reassembles frames
// across OnReceivedBytes calls.
type connState struct {
	mu     sync.Mutex
	dec    jsonproto.Decoder
	closed bool // Close was requested; later bytes are ignored
}

var (
	_ exprotov1.ConnectionUnaryHandlerServer = (*Handler)(nil)
	_ exprotov1.ConnectionHandlerServer      = streamingHandler{}
)

// New returns a Handler that calls the gateway through adapter. A nil log
// discards log output.
func New(adapter exprotov1.ConnectionAdapterClient, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		adapter: adapter,
		log:     log,
		conns:   make(map[string]*connState),
	}
}

// Register registers both handler services, emqx.exproto.v1.ConnectionUnaryHandler
// and emqx.exproto.v1.ConnectionHandler, on s (typically a *grpc.Server).
func (h *Handler) Register(s grpc.ServiceRegistrar) {
	exprotov1.RegisterConnectionUnaryHandlerServer(s, h)
	exprotov1.RegisterConnectionHandlerServer(s, h.Streaming())
}

// Streaming returns the Handler's implementation of the legacy
// client-streaming service. Each rpc handles every request it receives, in
// order, exactly as the unary rpc of the same name would, and answers
// EmptySuccess when the gateway closes its side of the stream. A transport
// error talking to the adapter ends the stream with that error.
func (h *Handler) Streaming() exprotov1.ConnectionHandlerServer {
	return streamingHandler{h: h}
}

// SetObserver sets fn to be called with an Event for every callback, in the
// order the callbacks arrive, before the callback is handled. Calls are
// serialized; fn must not block for long. A nil fn removes the observer. It is
// meant for tests, such as the conformance suite's checks of callback order
// and close reasons.
func (h *Handler) SetObserver(fn func(Event)) {
	if fn == nil {
		h.observer.Store(nil)
		return
	}
	h.observer.Store(&fn)
}

// Conns returns the number of connections the Handler holds decoder state
// for: those created and not yet closed.
func (h *Handler) Conns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *Handler) notify(ev Event) {
	switch ev.Kind {
	case KindClosed:
		h.log.Debug("callback", "kind", ev.Kind, "conn", ev.Conn, "reason", ev.Reason)
	case KindMessages:
		h.log.Debug("callback", "kind", ev.Kind, "conn", ev.Conn, "messages", ev.Messages)
	default:
		h.log.Debug("callback", "kind", ev.Kind, "conn", ev.Conn)
	}
	fn := h.observer.Load()
	if fn == nil {
		return
	}
	h.obsMu.Lock()
	defer h.obsMu.Unlock()
	(*fn)(ev)
}

// state returns the state of conn, creating it if needed (with the streaming
// service, bytes may overtake OnSocketCreated).
func (h *Handler) state(conn string) *connState {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.conns[conn]
	if !ok {
		st = &connState{}
		h.conns[conn] = st
	}
	return st
}

func (h *Handler) lookup(conn string) *connState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[conn]
}

// OnSocketCreated creates the connection's decoder state. It makes no
// adapter calls: the device authenticates with a CONNECT frame.
func (h *Handler) OnSocketCreated(ctx context.Context, req *exprotov1.SocketCreatedRequest) (*exprotov1.EmptySuccess, error) {
	h.notify(Event{Conn: req.GetConn(), Kind: KindCreated})
	h.state(req.GetConn())
	return &exprotov1.EmptySuccess{}, nil
}

// OnSocketClosed drops the connection's decoder state.
func (h *Handler) OnSocketClosed(ctx context.Context, req *exprotov1.SocketClosedRequest) (*exprotov1.EmptySuccess, error) {
	h.notify(Event{Conn: req.GetConn(), Kind: KindClosed, Reason: req.GetReason()})
	h.mu.Lock()
	delete(h.conns, req.GetConn())
	h.mu.Unlock()
	return &exprotov1.EmptySuccess{}, nil
}

// OnReceivedBytes feeds the bytes to the connection's decoder and handles
// every complete frame. Bytes that are not the protocol close the connection.
// It returns an error only if an adapter call fails at the transport level.
func (h *Handler) OnReceivedBytes(ctx context.Context, req *exprotov1.ReceivedBytesRequest) (*exprotov1.EmptySuccess, error) {
	conn := req.GetConn()
	h.notify(Event{Conn: conn, Kind: KindBytes})
	st := h.state(conn)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		h.log.Debug("ignoring bytes after close", "conn", conn, "bytes", len(req.GetBytes()))
		return &exprotov1.EmptySuccess{}, nil
	}
	st.dec.Feed(req.GetBytes())
	for {
		f, ok, err := st.dec.Next()
		if err != nil {
			h.log.Warn("closing connection: bad frame", "conn", conn, "err", err)
			st.closed = true
			if err := h.close(ctx, conn); err != nil {
				return nil, err
			}
			return &exprotov1.EmptySuccess{}, nil
		}
		if !ok {
			return &exprotov1.EmptySuccess{}, nil
		}
		closed, err := h.handleFrame(ctx, conn, f)
		if closed {
			st.closed = true
		}
		if err != nil {
			return nil, err
		}
		if closed {
			return &exprotov1.EmptySuccess{}, nil
		}
	}
}

// OnTimerTimeout sends DISCONNECT to the device and closes the connection.
func (h *Handler) OnTimerTimeout(ctx context.Context, req *exprotov1.TimerTimeoutRequest) (*exprotov1.EmptySuccess, error) {
	conn := req.GetConn()
	h.notify(Event{Conn: conn, Kind: KindTimeout})
	if st := h.lookup(conn); st != nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.closed = true
	}
	h.log.Info("keepalive timeout", "conn", conn, "type", req.GetType())
	if err := h.send(ctx, conn, jsonproto.Frame{Type: jsonproto.Disconnect}); err != nil {
		return nil, err
	}
	if err := h.close(ctx, conn); err != nil {
		return nil, err
	}
	return &exprotov1.EmptySuccess{}, nil
}

// OnReceivedMessages sends one PUBLISH frame per delivered message.
func (h *Handler) OnReceivedMessages(ctx context.Context, req *exprotov1.ReceivedMessagesRequest) (*exprotov1.EmptySuccess, error) {
	conn := req.GetConn()
	msgs := req.GetMessages()
	h.notify(Event{Conn: conn, Kind: KindMessages, Messages: len(msgs)})
	if st := h.lookup(conn); st != nil {
		st.mu.Lock()
		defer st.mu.Unlock()
	}
	for _, m := range msgs {
		f := jsonproto.Frame{Type: jsonproto.Publish, Topic: m.GetTopic(), QoS: m.GetQos(), Payload: string(m.GetPayload())}
		if err := h.send(ctx, conn, f); err != nil {
			return nil, err
		}
	}
	return &exprotov1.EmptySuccess{}, nil
}

// handleFrame handles one frame from the device. closed reports that the
// handler asked the gateway to close the connection.
func (h *Handler) handleFrame(ctx context.Context, conn string, f jsonproto.Frame) (closed bool, err error) {
	h.log.Debug("frame", "conn", conn, "type", f.Type, "topic", f.Topic, "qos", f.QoS)
	switch f.Type {
	case jsonproto.Connect:
		return h.connect(ctx, conn, f)
	case jsonproto.Publish:
		resp, err := h.adapter.Publish(ctx, &exprotov1.PublishRequest{Conn: conn, Topic: f.Topic, Qos: f.QoS, Payload: []byte(f.Payload)})
		return false, h.ack(ctx, conn, "Publish", jsonproto.Puback, resp, err)
	case jsonproto.RawPublish:
		resp, err := h.adapter.RawPublish(ctx, &exprotov1.RawPublishRequest{Topic: f.Topic, Qos: f.QoS, Payload: []byte(f.Payload)})
		return false, h.ack(ctx, conn, "RawPublish", jsonproto.Puback, resp, err)
	case jsonproto.Subscribe:
		resp, err := h.adapter.Subscribe(ctx, &exprotov1.SubscribeRequest{Conn: conn, Topic: f.Topic, Qos: f.QoS})
		return false, h.ack(ctx, conn, "Subscribe", jsonproto.Suback, resp, err)
	case jsonproto.Unsubscribe:
		resp, err := h.adapter.Unsubscribe(ctx, &exprotov1.UnsubscribeRequest{Conn: conn, Topic: f.Topic})
		return false, h.ack(ctx, conn, "Unsubscribe", jsonproto.Unsuback, resp, err)
	case jsonproto.Disconnect:
		return true, h.close(ctx, conn)
	default:
		// EMQX's echo handler has no clause for these and crashes, which
		// makes the gateway close the connection; close it cleanly instead.
		h.log.Warn("closing connection: unexpected frame", "conn", conn, "type", f.Type)
		return true, h.close(ctx, conn)
	}
}

func (h *Handler) connect(ctx context.Context, conn string, f jsonproto.Frame) (closed bool, err error) {
	ci := f.ClientInfo
	resp, err := h.adapter.Authenticate(ctx, &exprotov1.AuthenticateRequest{
		Conn: conn,
		Clientinfo: &exprotov1.ClientInfo{
			ProtoName:  ci.ProtoName,
			ProtoVer:   ci.ProtoVer,
			Clientid:   ci.ClientID,
			Username:   ci.Username,
			Mountpoint: ci.Mountpoint,
		},
		Password: f.Password,
	})
	ok, err := h.check(conn, "Authenticate", resp, err)
	if err != nil {
		return false, err
	}
	if !ok {
		if err := h.send(ctx, conn, jsonproto.Frame{Type: jsonproto.Connack, Code: 1}); err != nil {
			return true, err
		}
		return true, h.close(ctx, conn)
	}
	if ci.Keepalive > 0 {
		resp, err := h.adapter.StartTimer(ctx, &exprotov1.TimerRequest{Conn: conn, Type: exprotov1.TimerType_KEEPALIVE, Interval: ci.Keepalive})
		if _, err := h.check(conn, "StartTimer", resp, err); err != nil {
			return false, err
		}
	}
	return false, h.send(ctx, conn, jsonproto.Frame{Type: jsonproto.Connack, Code: 0})
}

// ack checks the result of a Publish, RawPublish, Subscribe or Unsubscribe
// call and answers the device with an ack frame of type t: code 0 on SUCCESS,
// 1 otherwise.
func (h *Handler) ack(ctx context.Context, conn, rpc string, t jsonproto.Type, resp *exprotov1.CodeResponse, err error) error {
	ok, err := h.check(conn, rpc, resp, err)
	if err != nil {
		return err
	}
	code := 0
	if !ok {
		code = 1
	}
	return h.send(ctx, conn, jsonproto.Frame{Type: t, Code: code})
}

func (h *Handler) send(ctx context.Context, conn string, f jsonproto.Frame) error {
	resp, err := h.adapter.Send(ctx, &exprotov1.SendBytesRequest{Conn: conn, Bytes: jsonproto.AppendLine(nil, f)})
	_, err = h.check(conn, "Send", resp, err)
	return err
}

func (h *Handler) close(ctx context.Context, conn string) error {
	resp, err := h.adapter.Close(ctx, &exprotov1.CloseSocketRequest{Conn: conn})
	_, err = h.check(conn, "Close", resp, err)
	return err
}

// check interprets the result of an adapter call. A non-SUCCESS code is
// logged and reported as ok == false; a transport error (a non-OK gRPC
// status) is logged and returned, wrapped, so that the callback fails with it.
func (h *Handler) check(conn, rpc string, resp *exprotov1.CodeResponse, err error) (ok bool, _ error) {
	if err != nil {
		h.log.Warn("adapter call failed", "rpc", rpc, "conn", conn, "err", err)
		return false, fmt.Errorf("jsonhandler: %s: %w", rpc, err)
	}
	if code := resp.GetCode(); code != exprotov1.ResultCode_SUCCESS {
		h.log.Info("adapter call refused", "rpc", rpc, "conn", conn, "code", code, "message", resp.GetMessage())
		return false, nil
	}
	h.log.Debug("adapter call", "rpc", rpc, "conn", conn)
	return true, nil
}

// streamingHandler implements the legacy client-streaming ConnectionHandler
// service on top of the Handler's unary methods.
type streamingHandler struct {
	exprotov1.UnimplementedConnectionHandlerServer
	h *Handler
}

func (s streamingHandler) OnSocketCreated(stream grpc.ClientStreamingServer[exprotov1.SocketCreatedRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.OnSocketCreated)
}

func (s streamingHandler) OnSocketClosed(stream grpc.ClientStreamingServer[exprotov1.SocketClosedRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.OnSocketClosed)
}

func (s streamingHandler) OnReceivedBytes(stream grpc.ClientStreamingServer[exprotov1.ReceivedBytesRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.OnReceivedBytes)
}

func (s streamingHandler) OnTimerTimeout(stream grpc.ClientStreamingServer[exprotov1.TimerTimeoutRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.OnTimerTimeout)
}

func (s streamingHandler) OnReceivedMessages(stream grpc.ClientStreamingServer[exprotov1.ReceivedMessagesRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.OnReceivedMessages)
}

// serveStream receives requests until the client closes its side, handling
// each with fn and the stream's context, then answers EmptySuccess.
func serveStream[Req any](stream grpc.ClientStreamingServer[Req, exprotov1.EmptySuccess], fn func(context.Context, *Req) (*exprotov1.EmptySuccess, error)) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&exprotov1.EmptySuccess{})
		}
		if err != nil {
			return err
		}
		if _, err := fn(ctx, req); err != nil {
			return err
		}
	}
}
