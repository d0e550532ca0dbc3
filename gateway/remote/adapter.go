package remote

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/protogate/protogate/gateway"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// Adapter serves emqx.exproto.v1.ConnectionAdapter for a gateway.Server: the
// calls remote handlers make on connections. Like EMQX, every rpc returns
// gRPC status OK and reports the outcome in CodeResponse; unlike EMQX it
// returns PARAMS_TYPE_ERROR (4) for malformed parameters instead of UNKNOWN.
// Adapter is safe for concurrent use.
//
// # Which connections a call reaches
//
// A call acts only on connections that a remote Handler of an ExProto
// service serves: those whose OnSocketCreated a Handler received, as a
// listener's handler or as a Wasm handler's fallback. A fast-lane
// Handler's connections are not among them: its calls come on its stream. Any other connection, a Wasm guest's above all, is
// answered CONN_PROCESS_NOT_ALIVE exactly as a connection that does not
// exist, so the adapter tells nothing of it. Handles are unguessable (see
// gateway.Conn.ID), so a caller reaches only connections whose handles a
// handler was given.
//
// A Handler with credentials (Config.AdapterToken, Config.AdapterClientCN)
// admits only the calls that carry all of them; any other call on one of its
// connections is answered PERMISSION_DENY, with a message saying what is
// missing. A call that carries all the credentials of a Handler passed to
// NewAdapter acts only on the connections of Handlers whose credentials it
// carries: it is refused on those of a Handler without credentials too. RawPublish, which names no connection, is refused to a call that
// carries no Handler's credentials when every Handler passed to NewAdapter
// has some. Tokens are compared in constant time, and never logged.
//
// A handler sends its token as gRPC metadata on every adapter call; for
// example, with EMQX's Python stubs:
//
//	stub.Send(req, metadata=[("authorization", "Bearer " + token)])
//
// in Go, on the call's context:
//
//	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
//
// and in Java, with a stub built by
// stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers)).
// A handler written for EMQX sends none, so credentials are opt-in; its
// calls keep working on the connections of Handlers without credentials.
type Adapter struct {
	pb.UnimplementedConnectionAdapterServer
	srv      *gateway.Server
	log      *slog.Logger
	handlers []*Handler // those passed to NewAdapter
	anyCreds bool       // some handler in handlers has credentials
	someOpen bool       // some handler in handlers has none, or handlers is empty

	warnedMountpoint atomic.Bool
	panics           atomic.Uint64
	denied           atomic.Uint64
	deniedLog        atomic.Int64 // when a refusal was last logged, in Unix nanoseconds
}

var _ pb.ConnectionAdapterServer = (*Adapter)(nil)

// NewAdapter returns an Adapter acting on the connections of srv that remote
// Handlers serve. handlers are the Handlers that call it: their credentials
// tell which calls come from which handler. A connection's own Handler
// checks its credentials whether it is listed or not; list every Handler
// so that one's credentials cannot act on another's connections.
func NewAdapter(srv *gateway.Server, log *slog.Logger, handlers ...*Handler) *Adapter {
	if log == nil {
		log = slog.Default()
	}
	a := &Adapter{srv: srv, log: log, handlers: handlers, someOpen: len(handlers) == 0}
	for _, h := range handlers {
		if h.hasCredentials() {
			a.anyCreds = true
		} else {
			a.someOpen = true
		}
	}
	return a
}

// Register registers the adapter service on s.
func (a *Adapter) Register(s *grpc.Server) { pb.RegisterConnectionAdapterServer(s, a) }

// Denied returns how many calls were answered PERMISSION_DENY for their
// credentials: missing or wrong ones, or another handler's.
func (a *Adapter) Denied() uint64 { return a.denied.Load() }

// Limits of CheckAdapterToken.
const (
	MinAdapterToken = 16
	MaxAdapterToken = 1024
)

// CheckAdapterToken reports whether tok can be a Config.AdapterToken: 16 to
// 1024 printable ASCII characters, without spaces, since it travels in a
// gRPC metadata value after "Bearer ". The error never quotes the token.
func CheckAdapterToken(tok string) error {
	if len(tok) < MinAdapterToken || len(tok) > MaxAdapterToken {
		return fmt.Errorf("remote: adapter token has %d characters; want %d to %d (make one with: openssl rand -hex 32)",
			len(tok), MinAdapterToken, MaxAdapterToken)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("remote: adapter token has a space, a control or a non-ASCII character at byte %d; "+
				"want printable ASCII only (make one with: openssl rand -hex 32)", i)
		}
	}
	return nil
}

// HasAdapterCredentials reports whether h admits only the adapter calls
// carrying its credentials (Config.AdapterToken, Config.AdapterClientCN).
func (h *Handler) HasAdapterCredentials() bool { return h.hasCredentials() }

// hasCredentials reports whether h admits only calls carrying credentials.
func (h *Handler) hasCredentials() bool {
	return h.cfg.AdapterToken != "" || h.cfg.AdapterClientCN != ""
}

// caller is what an adapter call carries to say who makes it.
type caller struct {
	hasToken bool
	tokenSum [sha256.Size]byte // of the bearer token
	hasCN    bool
	cn       string // of the verified client certificate
}

// callerOf reads the credentials of the call of ctx: a bearer token in the
// "authorization" metadata, and the subject of a client certificate that
// the adapter's TLS verified.
func callerOf(ctx context.Context) *caller {
	cl := &caller{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			scheme, tok, ok := strings.Cut(v[0], " ")
			if tok = strings.TrimLeft(tok, " "); ok && strings.EqualFold(scheme, "bearer") && tok != "" {
				cl.hasToken, cl.tokenSum = true, sha256.Sum256([]byte(tok))
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			cl.hasCN, cl.cn = true, ti.State.VerifiedChains[0][0].Subject.CommonName
		}
	}
	return cl
}

// holds reports whether the call carries every credential of h; false
// when h has none.
func (cl *caller) holds(h *Handler) bool {
	if !h.hasCredentials() {
		return false
	}
	ok := true
	if h.cfg.AdapterToken != "" {
		// Digests of equal length: the comparison takes the same time
		// whatever the token sent.
		ok = cl.hasToken && subtle.ConstantTimeCompare(cl.tokenSum[:], h.tokenSum[:]) == 1
	}
	if cn := h.cfg.AdapterClientCN; cn != "" {
		ok = ok && cl.hasCN && cl.cn == cn
	}
	return ok
}

// lacks says what the call lacks of h's credentials.
func (cl *caller) lacks(h *Handler) string {
	var want []string
	if h.cfg.AdapterToken != "" {
		switch {
		case !cl.hasToken:
			want = append(want, `its adapter token (gRPC metadata "authorization: Bearer <token>"), which this call does not carry`)
		case subtle.ConstantTimeCompare(cl.tokenSum[:], h.tokenSum[:]) != 1:
			want = append(want, `its adapter token (gRPC metadata "authorization: Bearer <token>"); this call carries another`)
		}
	}
	if cn := h.cfg.AdapterClientCN; cn != "" {
		switch {
		case !cl.hasCN:
			want = append(want, fmt.Sprintf("a verified client certificate with CN %q; this call presents none", cn))
		case cl.cn != cn:
			want = append(want, fmt.Sprintf("a verified client certificate with CN %q; this call's is %q", cn, cl.cn))
		}
	}
	return strings.Join(want, ", and ")
}

// lookup returns the connection named by handle if the call of ctx may act
// on it: a remote Handler serves it, and the call carries that Handler's
// credentials, if it has any, and no other Handler's otherwise.
func (a *Adapter) lookup(ctx context.Context, handle string) (*gateway.Conn, error) {
	c, err := a.srv.Lookup(handle)
	if err != nil {
		return nil, err
	}
	h, _ := c.ServedBy().(*Handler)
	if h == nil || h.lane != nil {
		// A Wasm guest's connection, one a remote Handler has not been
		// told of, or a fast-lane handler's (whose calls come on its
		// stream, never here): the same answer as for no connection at
		// all.
		return nil, gateway.ErrNotAlive
	}
	if !h.hasCredentials() && !a.anyCreds {
		return c, nil
	}
	cl := callerOf(ctx)
	if h.hasCredentials() {
		if cl.holds(h) {
			return c, nil
		}
		return nil, a.deny("remote: conn %s: permission denied: the handler serving it accepts only calls with %s", handle, cl.lacks(h))
	}
	for _, o := range a.handlers {
		if cl.holds(o) {
			return nil, a.deny("remote: conn %s: permission denied: this call carries the adapter credentials of another handler, "+
				"which act only on that handler's connections", handle)
		}
	}
	return c, nil
}

// mayRawPublish checks that the call of ctx may publish without a
// connection: it carries some handler's credentials, or some handler has
// none.
func (a *Adapter) mayRawPublish(ctx context.Context) error {
	if a.someOpen {
		return nil
	}
	cl := callerOf(ctx)
	for _, h := range a.handlers {
		if cl.holds(h) {
			return nil
		}
	}
	return a.deny("remote: RawPublish: permission denied: every handler has adapter credentials, and this call carries none of them")
}

// deny counts a refused call, logs it at most once a second, and returns
// the PERMISSION_DENY error that answers it.
func (a *Adapter) deny(format string, args ...any) error {
	a.denied.Add(1)
	err := gateway.Errorf(gateway.CodePermissionDeny, format, args...)
	now := time.Now().UnixNano()
	if last := a.deniedLog.Load(); now-last >= int64(time.Second) && a.deniedLog.CompareAndSwap(last, now) {
		a.log.Warn("remote: adapter call refused", "err", err, "refused", a.denied.Load())
	}
	return err
}

var success = &pb.CodeResponse{}

// recoverRPC, deferred by every rpc, turns a panic while serving it into an
// UNKNOWN reply: a bug reached through one handler's call must not end the
// process and every device's connection with it (grpc-go does not recover
// panics of services).
func (a *Adapter) recoverRPC(rpc string, resp **pb.CodeResponse, err *error) {
	r := recover()
	if r == nil {
		return
	}
	a.panics.Add(1)
	a.log.Error("remote: recovered a panic in an adapter rpc", "rpc", rpc,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*resp, *err = &pb.CodeResponse{Code: pb.ResultCode_UNKNOWN, Message: "remote: internal error in " + rpc}, nil
}

// Panics returns how many rpcs panicked and were answered UNKNOWN.
func (a *Adapter) Panics() uint64 { return a.panics.Load() }

// reply turns an error into a CodeResponse.
func (a *Adapter) reply(rpc, conn string, err error) (*pb.CodeResponse, error) {
	if err == nil {
		return success, nil
	}
	code := gateway.CodeOf(err)
	a.log.Debug("remote: adapter call refused", "rpc", rpc, "conn", conn, "code", code, "err", err)
	return &pb.CodeResponse{Code: pb.ResultCode(code), Message: err.Error()}, nil
}

// Send implements pb.ConnectionAdapterServer.
func (a *Adapter) Send(ctx context.Context, req *pb.SendBytesRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Send", &resp, &err)
	c, err := a.lookup(ctx, req.GetConn())
	if err == nil {
		err = c.Send(req.GetBytes())
	}
	return a.reply("Send", req.GetConn(), err)
}

// Close implements pb.ConnectionAdapterServer.
func (a *Adapter) Close(ctx context.Context, req *pb.CloseSocketRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Close", &resp, &err)
	c, err := a.lookup(ctx, req.GetConn())
	if err == nil {
		err = c.Close()
	}
	return a.reply("Close", req.GetConn(), err)
}

// Authenticate implements pb.ConnectionAdapterServer. The password is never
// logged.
func (a *Adapter) Authenticate(ctx context.Context, req *pb.AuthenticateRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Authenticate", &resp, &err)
	c, err := a.lookup(ctx, req.GetConn())
	if err == nil {
		ci := req.GetClientinfo()
		if ci == nil {
			err = gateway.Errorf(gateway.CodeRequiredParamsMissed, "remote: clientinfo is missing")
		} else {
			if ci.GetMountpoint() != "" && a.warnedMountpoint.CompareAndSwap(false, true) {
				a.log.Warn("remote: clientinfo.mountpoint is deprecated and ignored; set mountpoint on the listener",
					"conn", req.GetConn(), "mountpoint", ci.GetMountpoint())
			}
			err = c.Authenticate(ctx, &gateway.ClientInfo{
				ProtoName: ci.GetProtoName(),
				ProtoVer:  ci.GetProtoVer(),
				ClientID:  ci.GetClientid(),
				Username:  ci.GetUsername(),
			}, req.GetPassword())
		}
	}
	return a.reply("Authenticate", req.GetConn(), err)
}

// StartTimer implements pb.ConnectionAdapterServer.
func (a *Adapter) StartTimer(ctx context.Context, req *pb.TimerRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("StartTimer", &resp, &err)
	c, err := a.lookup(ctx, req.GetConn())
	if err == nil {
		err = c.StartTimer(gateway.TimerType(req.GetType()), req.GetInterval())
	}
	return a.reply("StartTimer", req.GetConn(), err)
}

// Publish implements pb.ConnectionAdapterServer.
func (a *Adapter) Publish(ctx context.Context, req *pb.PublishRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Publish", &resp, &err)
	c, err := a.lookup(ctx, req.GetConn())
	if err == nil {
		err = c.Publish(req.GetTopic(), req.GetQos(), req.GetPayload())
	}
	return a.reply("Publish", req.GetConn(), err)
}

// RawPublish implements pb.ConnectionAdapterServer.
func (a *Adapter) RawPublish(ctx context.Context, req *pb.RawPublishRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("RawPublish", &resp, &err)
	err = a.mayRawPublish(ctx)
	if err == nil {
		err = a.srv.RawPublish(req.GetTopic(), req.GetQos(), req.GetPayload())
	}
	return a.reply("RawPublish", "", err)
}

// Subscribe implements pb.ConnectionAdapterServer.
func (a *Adapter) Subscribe(ctx context.Context, req *pb.SubscribeRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Subscribe", &resp, &err)
	c, err := a.lookup(ctx, req.GetConn())
	if err == nil {
		err = c.Subscribe(ctx, req.GetTopic(), req.GetQos())
	}
	return a.reply("Subscribe", req.GetConn(), err)
}

// Unsubscribe implements pb.ConnectionAdapterServer.
func (a *Adapter) Unsubscribe(ctx context.Context, req *pb.UnsubscribeRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Unsubscribe", &resp, &err)
	c, err := a.lookup(ctx, req.GetConn())
	if err == nil {
		err = c.Unsubscribe(req.GetTopic())
	}
	return a.reply("Unsubscribe", req.GetConn(), err)
}
