// Package echohandler is a minimal remote ExProto echo handler: a gRPC
// implementation of both emqx.exproto.v1 handler services
// (ConnectionUnaryHandler and the legacy client-streaming ConnectionHandler)
// that answers every OnReceivedBytes with one ConnectionAdapter.Send of the
// same bytes to the same connection, made inside the callback.
//
// It is the handler cmd/exproto-echo-handler serves and the one the remote
// benchmarks measure (the gateway's remote path and the bare gRPC floor of
// package grpcfloor), so it does as little as an echo can: no per-connection
// state, no logging on the hot path, one shared adapter client.
//
// Semantics, which hold against protogate and against EMQX's ExProto gateway:
//
//   - OnSocketCreated makes no adapter call, unless Options.Authenticate is
//     set: then it calls Authenticate with clientid = the conn handle, and a
//     refusal (non-SUCCESS) makes it Close the connection.
//   - OnReceivedBytes calls Send(conn, bytes). A non-SUCCESS result (the
//     connection is gone, for instance) is logged at debug level and the
//     callback still succeeds; a transport error (a non-OK gRPC status from
//     the adapter) fails the callback, which makes the gateway close the
//     connection.
//   - OnTimerTimeout, OnReceivedMessages and OnSocketClosed do nothing: the
//     handler starts no timer and subscribes to nothing.
//
// Adapter calls use the callback's context, so they inherit the gateway's
// deadline and cancellation; when the context has no deadline (EMQX sets
// none, and streams never have one) Options.CallTimeout bounds each call.
package echohandler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/proto/exprotov1"
)

// DefaultCallTimeout bounds an adapter call made from a context without a
// deadline, when Options.CallTimeout is zero.
const DefaultCallTimeout = 30 * time.Second

// DefaultStreamConcurrency is Options.StreamConcurrency when it is zero.
const DefaultStreamConcurrency = 64

// Options configures a Handler. The zero value is an echo handler that does
// not authenticate and discards its logs.
type Options struct {
	// Authenticate makes OnSocketCreated authenticate each connection with
	// clientid = its conn handle, proto_name "exproto" and proto_ver "1"
	// (EMQX picks its authenticator chain by proto_name, and only "exproto"
	// reaches the gateway's own chain).
	Authenticate bool
	// CallTimeout bounds an adapter call whose callback context carries no
	// deadline. Default: DefaultCallTimeout.
	CallTimeout time.Duration
	// StreamConcurrency is, on the streaming service, the most requests of
	// one stream handled at once, each for a different connection: the
	// requests of one connection are always handled one at a time, in the
	// order they arrived. 1 handles each stream strictly in order, one
	// request at a time. Default: DefaultStreamConcurrency.
	StreamConcurrency int
	// Logger receives the handler's logs. Default: discard.
	Logger *slog.Logger
}

// Handler is the echo handler. It implements
// exprotov1.ConnectionUnaryHandlerServer; [Handler.Streaming] returns its
// implementation of the legacy streaming exprotov1.ConnectionHandlerServer,
// and [Handler.Register] registers both.
//
// Concurrency: a Handler is safe for concurrent use and holds no
// per-connection state. Unary callbacks run fully in parallel. On the
// streaming service the requests of one connection on one stream are handled
// one at a time, in the order they arrived, each one's adapter calls
// finishing before the next starts, so the bytes of a connection are echoed
// in order; requests of different connections on one stream run
// concurrently, up to Options.StreamConcurrency at once.
type Handler struct {
	exprotov1.UnimplementedConnectionUnaryHandlerServer

	adapter exprotov1.ConnectionAdapterClient
	auth    bool
	timeout time.Duration
	streamN int
	log     *slog.Logger
}

var _ exprotov1.ConnectionUnaryHandlerServer = (*Handler)(nil)

// empty is the reply of every callback. Marshalling a message is safe from
// several goroutines at once, and nobody modifies it.
var empty = &exprotov1.EmptySuccess{}

// New returns a Handler that calls the gateway through adapter.
func New(adapter exprotov1.ConnectionAdapterClient, opts Options) *Handler {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.StreamConcurrency <= 0 {
		opts.StreamConcurrency = DefaultStreamConcurrency
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		adapter: adapter,
		auth:    opts.Authenticate,
		timeout: opts.CallTimeout,
		streamN: opts.StreamConcurrency,
		log:     opts.Logger,
	}
}

// Register registers both handler services,
// emqx.exproto.v1.ConnectionUnaryHandler and emqx.exproto.v1.ConnectionHandler,
// on s (typically a *grpc.Server).
func (h *Handler) Register(s grpc.ServiceRegistrar) {
	exprotov1.RegisterConnectionUnaryHandlerServer(s, h)
	exprotov1.RegisterConnectionHandlerServer(s, h.Streaming())
}

// Streaming returns the Handler's implementation of the legacy
// client-streaming service. Each rpc handles the requests of its stream
// exactly as the unary rpc of the same name would, those of one connection
// in order (see the concurrency note on Handler), and answers EmptySuccess
// once the gateway has closed its side of the stream and every request has
// been handled. A transport error talking to the adapter ends the stream
// with that error: at once with StreamConcurrency 1, else when the stream's
// next request arrives or the gateway closes its side.
func (h *Handler) Streaming() exprotov1.ConnectionHandlerServer {
	return streamingHandler{h: h}
}

// bounded returns ctx, given a deadline of h.timeout if it has none.
func (h *Handler) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, h.timeout)
}

// OnSocketCreated implements exprotov1.ConnectionUnaryHandlerServer. With
// Options.Authenticate it authenticates the connection with clientid = conn
// and closes it if the gateway refuses.
func (h *Handler) OnSocketCreated(ctx context.Context, req *exprotov1.SocketCreatedRequest) (*exprotov1.EmptySuccess, error) {
	if !h.auth {
		return empty, nil
	}
	ctx, cancel := h.bounded(ctx)
	defer cancel()
	conn := req.GetConn()
	resp, err := h.adapter.Authenticate(ctx, &exprotov1.AuthenticateRequest{
		Conn: conn,
		Clientinfo: &exprotov1.ClientInfo{
			ProtoName: "exproto",
			ProtoVer:  "1",
			Clientid:  conn,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("echohandler: Authenticate: %w", err)
	}
	if code := resp.GetCode(); code != exprotov1.ResultCode_SUCCESS {
		h.log.Info("authentication refused; closing", "conn", conn, "code", code, "message", resp.GetMessage())
		resp, err := h.adapter.Close(ctx, &exprotov1.CloseSocketRequest{Conn: conn})
		if err != nil {
			return nil, fmt.Errorf("echohandler: Close: %w", err)
		}
		if code := resp.GetCode(); code != exprotov1.ResultCode_SUCCESS {
			h.log.Debug("close refused", "conn", conn, "code", code, "message", resp.GetMessage())
		}
	}
	return empty, nil
}

// OnReceivedBytes implements exprotov1.ConnectionUnaryHandlerServer: it sends
// the bytes back to the connection and returns once the adapter has answered.
func (h *Handler) OnReceivedBytes(ctx context.Context, req *exprotov1.ReceivedBytesRequest) (*exprotov1.EmptySuccess, error) {
	ctx, cancel := h.bounded(ctx)
	defer cancel()
	resp, err := h.adapter.Send(ctx, &exprotov1.SendBytesRequest{Conn: req.GetConn(), Bytes: req.GetBytes()})
	if err != nil {
		return nil, fmt.Errorf("echohandler: Send: %w", err)
	}
	if code := resp.GetCode(); code != exprotov1.ResultCode_SUCCESS {
		h.log.Debug("send refused", "conn", req.GetConn(), "code", code, "message", resp.GetMessage())
	}
	return empty, nil
}

// OnTimerTimeout implements exprotov1.ConnectionUnaryHandlerServer. The
// handler starts no timer, so there is nothing to do.
func (h *Handler) OnTimerTimeout(context.Context, *exprotov1.TimerTimeoutRequest) (*exprotov1.EmptySuccess, error) {
	return empty, nil
}

// OnReceivedMessages implements exprotov1.ConnectionUnaryHandlerServer. The
// handler subscribes to nothing, so there is nothing to do.
func (h *Handler) OnReceivedMessages(context.Context, *exprotov1.ReceivedMessagesRequest) (*exprotov1.EmptySuccess, error) {
	return empty, nil
}

// OnSocketClosed implements exprotov1.ConnectionUnaryHandlerServer. The
// handler keeps no per-connection state, so there is nothing to release.
func (h *Handler) OnSocketClosed(context.Context, *exprotov1.SocketClosedRequest) (*exprotov1.EmptySuccess, error) {
	return empty, nil
}
