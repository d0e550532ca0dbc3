// Package remote is protogate's gRPC back end: Handler calls a handler
// service written for EMQX's ExProto (emqx.exproto.v1.ConnectionUnaryHandler
// or the legacy streaming ConnectionHandler), and Adapter serves the
// ConnectionAdapter that such handlers call back; or Handler drives
// protogate's own fast lane, protogate.v1.StreamHandler, where one stream
// carries callbacks and calls both ways in batches.
package remote

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/internal/hostname"
	pb "github.com/protogate/protogate/proto/exprotov1"
	lpb "github.com/protogate/protogate/proto/protogatev1"
)

// Service names accepted in Config.ServiceName.
const (
	ServiceUnary     = "ConnectionUnaryHandler"
	ServiceStreaming = "ConnectionHandler"
)

// Config configures a Handler.
type Config struct {
	// Address is the handler's URL, http://host:port or https://host:port
	// (host names allowed; see ParseAddress).
	Address string
	// ServiceName selects ServiceUnary (default), ServiceStreaming or
	// ServiceLane.
	ServiceName string
	// Timeout bounds each callback. EMQX had none; a handler that hangs
	// then closes only the connection whose callback hung. Default: 30s.
	Timeout time.Duration
	// TLS configures https addresses. Default: system roots.
	TLS *tls.Config
	// Logger receives the handler's logs. Default: slog.Default().
	Logger *slog.Logger

	// AdapterToken, if set, is a secret the handler sends with each of its
	// ConnectionAdapter calls, as the gRPC metadata "authorization:
	// Bearer <token>" (see Adapter). Only calls carrying it may then act
	// on the connections this Handler serves. It is checked by
	// CheckAdapterToken. Default: "" (no token).
	AdapterToken string
	// AdapterClientCN, if set, is the common name of the client
	// certificate the handler presents to the ConnectionAdapter, which
	// must serve TLS and verify client certificates. Only calls from such
	// a certificate may then act on the connections this Handler serves.
	// With AdapterToken set too, a call must carry both. Default: "".
	AdapterClientCN string
}

// Handler implements gateway.Handler by calling a remote gRPC handler. It is
// safe for concurrent use. The gRPC connection is made lazily and re-made
// quickly after the handler restarts.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	tokenSum [sha256.Size]byte // of cfg.AdapterToken, if set
	cc       *grpc.ClientConn
	unary    pb.ConnectionUnaryHandlerClient
	stream   *streams // only for ServiceStreaming
	lane     *lane    // only for ServiceLane
}

var _ gateway.Handler = (*Handler)(nil)

// New returns a Handler for cfg. It does not wait for the handler to be up.
func New(cfg Config) (*Handler, error) {
	if cfg.ServiceName == "" {
		cfg.ServiceName = ServiceUnary
	}
	switch cfg.ServiceName {
	case ServiceUnary, ServiceStreaming, ServiceLane:
	default:
		return nil, fmt.Errorf("remote: unknown service_name %q (want %s, %s or %s)", cfg.ServiceName, ServiceUnary, ServiceStreaming, ServiceLane)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AdapterToken != "" {
		if err := CheckAdapterToken(cfg.AdapterToken); err != nil {
			return nil, err
		}
	}
	target, creds, err := dialTarget(cfg.Address, cfg.TLS)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		// Reconnect fast: a handler that restarts should serve new
		// connections within a second or two, not after gRPC's default
		// two-minute backoff ceiling.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("remote: %w", err)
	}
	h := &Handler{
		cfg:   cfg,
		log:   cfg.Logger,
		cc:    cc,
		unary: pb.NewConnectionUnaryHandlerClient(cc),
	}
	if cfg.AdapterToken != "" {
		h.tokenSum = sha256.Sum256([]byte(cfg.AdapterToken))
	}
	if cfg.ServiceName == ServiceStreaming {
		h.stream = newStreams(pb.NewConnectionHandlerClient(cc), cfg.Timeout, cfg.Logger)
	}
	if cfg.ServiceName == ServiceLane {
		h.lane = newLane(lpb.NewStreamHandlerClient(cc), h)
	}
	return h, nil
}

// Address is a parsed handler address: EMQX's handler.address, also the
// shape of the -adapter flag of the example handlers.
type Address struct {
	// Host is a host name or an IP address (an IPv6 address without
	// brackets).
	Host string
	// Port is the TCP port, 1 to 65535.
	Port uint16
	// TLS is true for an https:// address.
	TLS bool
}

// HostPort returns the host:port to dial ("[::1]:9001" for IPv6).
func (a Address) HostPort() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port)))
}

// String returns the address in the form ParseAddress reads,
// "http://host:port" or "https://host:port".
func (a Address) String() string {
	// A zone's "%" is escaped as a URL needs it ("[fe80::1%25eth0]").
	hp := strings.Replace(a.HostPort(), "%", "%25", 1)
	if a.TLS {
		return "https://" + hp
	}
	return "http://" + hp
}

// AddressError is the error ParseAddress returns.
type AddressError struct {
	// Msg says what is wrong with the address, quoting it; it has no
	// package prefix, so configuration errors can show it as it is.
	Msg string
}

// Error implements the error interface.
func (e *AddressError) Error() string { return "remote: " + e.Msg }

// ParseAddress parses a handler address as EMQX reads handler.address: a URL
// with the scheme http (plain HTTP/2) or https (TLS), case-insensitive, and
// a host that is an IP address or a host name. A missing port is 80 for http
// and 443 for https. The scheme is required: "127.0.0.1:9001" is refused,
// with a hint to write "http://127.0.0.1:9001", because EMQX users who left
// it out saw their handler silently never called. A path other than "/", a
// query, a fragment and user information are refused rather than ignored.
//
// The gateway's dialer, the configuration validator and the example
// handlers' -adapter flag all use it, so they accept the same addresses.
func ParseAddress(s string) (Address, error) {
	bad := func(format string, args ...any) (Address, error) {
		return Address{}, &AddressError{Msg: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return bad("missing address (want a URL such as http://127.0.0.1:9001)")
	}
	if !strings.Contains(s, "://") {
		return bad("address %q has no scheme; write %q (or https:// for TLS)", s, "http://"+s)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad("invalid address %q: %v", s, err)
	}
	var a Address
	switch u.Scheme { // url.Parse lowercases the scheme
	case "http":
	case "https":
		a.TLS = true
	default:
		return bad("unsupported scheme %q in %q (want http:// or https://)", u.Scheme, s)
	}
	switch {
	case u.Opaque != "":
		return bad("invalid address %q (want http://host:port or https://host:port)", s)
	case u.User != nil:
		return bad("address %q must not contain user information", s)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		return bad("address %q must be scheme://host:port without a path or query", s)
	case u.Hostname() == "":
		return bad("address %q has no host", s)
	}
	a.Host = u.Hostname()
	if _, err := netip.ParseAddr(a.Host); err != nil && !hostname.Valid(a.Host) {
		return bad("invalid host %q in address %q", a.Host, s)
	}
	switch p := u.Port(); p {
	case "":
		a.Port = 80
		if a.TLS {
			a.Port = 443
		}
	default:
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return bad("invalid port %q in address %q (want 1 to 65535)", p, s)
		}
		a.Port = uint16(n)
	}
	return a, nil
}

// dialTarget turns a handler address into a gRPC target and credentials.
func dialTarget(address string, tc *tls.Config) (string, credentials.TransportCredentials, error) {
	a, err := ParseAddress(address)
	if err != nil {
		return "", nil, err
	}
	target := "dns:///" + a.HostPort()
	if !a.TLS {
		return target, insecure.NewCredentials(), nil
	}
	if tc == nil {
		tc = &tls.Config{}
	} else {
		tc = tc.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = a.Host
	}
	return target, credentials.NewTLS(tc), nil
}

// Close closes the gRPC connection; callbacks in flight fail.
func (h *Handler) Close() error {
	if h.stream != nil {
		h.stream.close()
	}
	if h.lane != nil {
		h.lane.close()
	}
	return h.cc.Close()
}

// call runs one unary callback with the configured deadline.
func call[Req any](h *Handler, ctx context.Context, f func(context.Context, *Req, ...grpc.CallOption) (*pb.EmptySuccess, error), req *Req) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	_, err := f(ctx, req)
	if status.Code(err) == codes.DeadlineExceeded {
		return timeoutError{err}
	}
	return err
}

// timeoutError marks a call that ran past its deadline, keeping its text
// (close reasons show it) while stats count it as a timeout.
type timeoutError struct{ error }

func (timeoutError) Timeout() bool   { return true }
func (e timeoutError) Unwrap() error { return e.error }

// State returns the connectivity state of the channel to the handler:
// READY, CONNECTING, IDLE, TRANSIENT_FAILURE or SHUTDOWN. An IDLE channel
// (nothing called it for a while, or its connection broke) is asked to
// connect, so that a later look tells whether the handler is reachable.
func (h *Handler) State() string {
	st := h.cc.GetState()
	if st == connectivity.Idle {
		h.cc.Connect()
	}
	return st.String()
}

// Address returns the handler's address, as configured.
func (h *Handler) Address() string { return h.cfg.Address }

// ServiceName returns the ExProto service the handler implements.
func (h *Handler) ServiceName() string { return h.cfg.ServiceName }

// OnSocketCreated implements gateway.Handler. It first records h as the
// back end serving c (gateway.Conn.SetServedBy), before the handler can
// learn c's handle: the ConnectionAdapter acts only on connections so
// marked.
func (h *Handler) OnSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	c.SetServedBy(h)
	if h.lane != nil {
		return h.lane.onSocketCreated(ctx, c, info)
	}
	req := &pb.SocketCreatedRequest{Conn: c.Handle(), Conninfo: ConnInfo(info)}
	if h.stream != nil {
		return h.stream.send(c.ID(), kindCreated, req)
	}
	return call(h, ctx, h.unary.OnSocketCreated, req)
}

// OnReceivedBytes implements gateway.Handler.
func (h *Handler) OnReceivedBytes(ctx context.Context, c *gateway.Conn, b []byte) error {
	if h.lane != nil {
		return h.lane.onReceivedBytes(ctx, c, b)
	}
	req := &pb.ReceivedBytesRequest{Conn: c.Handle(), Bytes: b}
	if h.stream != nil {
		return h.stream.send(c.ID(), kindBytes, req)
	}
	return call(h, ctx, h.unary.OnReceivedBytes, req)
}

// OnTimerTimeout implements gateway.Handler.
func (h *Handler) OnTimerTimeout(ctx context.Context, c *gateway.Conn, t gateway.TimerType) error {
	if h.lane != nil {
		return h.lane.onTimerTimeout(ctx, c, t)
	}
	req := &pb.TimerTimeoutRequest{Conn: c.Handle(), Type: pb.TimerType(t)}
	if h.stream != nil {
		return h.stream.send(c.ID(), kindTimeout, req)
	}
	return call(h, ctx, h.unary.OnTimerTimeout, req)
}

// OnReceivedMessages implements gateway.Handler.
func (h *Handler) OnReceivedMessages(ctx context.Context, c *gateway.Conn, msgs []*gateway.Message) error {
	if h.lane != nil {
		return h.lane.onReceivedMessages(ctx, c, msgs)
	}
	req := &pb.ReceivedMessagesRequest{Conn: c.Handle(), Messages: Messages(msgs)}
	if h.stream != nil {
		return h.stream.send(c.ID(), kindMessages, req)
	}
	return call(h, ctx, h.unary.OnReceivedMessages, req)
}

// OnSocketClosed implements gateway.Handler.
func (h *Handler) OnSocketClosed(ctx context.Context, c *gateway.Conn, reason string) error {
	if h.lane != nil {
		return h.lane.onSocketClosed(ctx, c, reason)
	}
	req := &pb.SocketClosedRequest{Conn: c.Handle(), Reason: reason}
	if h.stream != nil {
		return h.stream.send(c.ID(), kindClosed, req)
	}
	err := call(h, ctx, h.unary.OnSocketClosed, req)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// ConnInfo converts connection details to their wire form.
func ConnInfo(info *gateway.ConnInfo) *pb.ConnInfo {
	ci := &pb.ConnInfo{
		Socktype: pb.SocketType(info.SockType),
		Peername: address(info.Peer),
		Sockname: address(info.Local),
	}
	switch {
	case info.PeerCert != nil:
		ci.Peercert = &pb.CertificateInfo{Cn: info.PeerCert.CN, Dn: info.PeerCert.DN}
	case info.PSKIdentity != "":
		// ConnInfo has no field for a DTLS PSK identity; peercert.cn with an
		// empty dn carries it.
		ci.Peercert = &pb.CertificateInfo{Cn: info.PSKIdentity}
	}
	return ci
}

func address(ap netip.AddrPort) *pb.Address {
	return &pb.Address{Host: ap.Addr().String(), Port: uint32(ap.Port())}
}

// Messages converts deliveries to their wire form.
func Messages(msgs []*gateway.Message) []*pb.Message {
	out := make([]*pb.Message, len(msgs))
	for i, m := range msgs {
		out[i] = &pb.Message{
			Node:      m.Node,
			Id:        m.ID,
			Qos:       uint32(m.QoS),
			From:      m.From,
			Topic:     m.Topic,
			Payload:   m.Payload,
			Timestamp: uint64(m.Timestamp),
		}
	}
	return out
}
