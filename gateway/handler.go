package gateway

import (
	"context"
	"net"
	"net/netip"
)

// Handler is a protocol handler back end: the remote gRPC client in
// gateway/remote or the Wasm host in wasmhost. The gateway calls it with the
// events of every connection it serves.
//
// For one connection the gateway makes at most one call at a time and in
// event order: OnSocketCreated first, OnSocketClosed last and exactly once,
// the others in between. Calls for different connections may run
// concurrently, so implementations must be safe for concurrent use. A handler
// may call the connection's methods (Send, Authenticate, Subscribe, ...) from
// inside a callback; they never wait for a callback to finish. Slices passed
// in (b, msgs) are valid only until the call returns.
//
// A non-nil error from any callback but OnSocketClosed closes the connection;
// its reason names the callback and the error. The context carries no deadline:
// each back end applies its own (remote: timeout, wasm: call_timeout).
//
// A panic in a callback is a bug of the back end, and the gateway contains
// it to the connection, as net/http does for a request: it is recovered,
// logged once with its stack, counted (Server.Panics), and treated as an
// error of that callback, so that connection closes with a reason naming
// the callback and the panic while every other connection is served on. A
// panic in OnSocketClosed is logged and counted; the connection is finished
// as usual. Back ends must still not panic on purpose: what a panicking
// callback had locked or started is left as the panic left it, and only
// the back end can know whether that harms other connections.
type Handler interface {
	OnSocketCreated(ctx context.Context, c *Conn, info *ConnInfo) error
	OnReceivedBytes(ctx context.Context, c *Conn, b []byte) error
	OnTimerTimeout(ctx context.Context, c *Conn, t TimerType) error
	OnReceivedMessages(ctx context.Context, c *Conn, msgs []*Message) error
	OnSocketClosed(ctx context.Context, c *Conn, reason string) error
}

// SocketType is the transport of a connection. Its values are those of
// emqx.exproto.v1.SocketType.
type SocketType int32

// The socket types of ExProto v1.
const (
	TCP  SocketType = 0
	SSL  SocketType = 1
	UDP  SocketType = 2
	DTLS SocketType = 3
)

// String returns the lowercase name used in config files.
func (t SocketType) String() string {
	switch t {
	case TCP:
		return "tcp"
	case SSL:
		return "ssl"
	case UDP:
		return "udp"
	case DTLS:
		return "dtls"
	}
	return "unknown"
}

// TimerType names a connection timer. ExProto v1 defines only KEEPALIVE.
type TimerType int32

// KeepAlive is the keepalive timer started by StartTimer.
const KeepAlive TimerType = 0

// ConnInfo describes a new connection; it is passed to OnSocketCreated.
type ConnInfo struct {
	SockType SocketType
	Peer     netip.AddrPort
	Local    netip.AddrPort
	// PeerCert is set only when the peer presented a certificate.
	PeerCert *CertInfo
	// PSKIdentity is the identity a DTLS client authenticated with in PSK
	// mode; "" otherwise. On the ExProto wire it travels as peercert.cn
	// (with an empty dn), the only field ConnInfo has for it.
	PSKIdentity string
	// Listener is the name of the listener that accepted the connection.
	Listener string
}

// CertInfo is the subject of a peer certificate.
type CertInfo struct {
	CN string // common name
	DN string // distinguished name, RFC 2253 form
}

// ClientInfo is what a handler passes to Authenticate.
type ClientInfo struct {
	ProtoName string
	ProtoVer  string
	ClientID  string
	Username  string
}

// Message is one pub/sub delivery. Messages handed to a Handler or a
// Subscriber may be shared between connections and must not be modified.
type Message struct {
	Node      string // the node that delivers it
	ID        string // unique message id, 32 uppercase hex digits
	QoS       uint8  // 0, 1 or 2, as published
	From      string // publisher's client id; "exproto" for RawPublish
	Topic     string // MQTT-style topic; unmounted when handed to a Handler
	Payload   []byte
	Timestamp int64 // milliseconds since the Unix epoch
}

// PubSub is the pub/sub port of the gateway; gateway/broker implements it on
// an embedded NATS server. Topics are MQTT-style and already carry the
// connection's mountpoint. Implementations must be safe for concurrent use.
type PubSub interface {
	// Publish publishes m on m.Topic. Invalid topics are reported with an
	// error wrapping ErrBadTopic, oversized payloads with ErrPayloadTooLarge.
	Publish(m *Message) error
	// Subscribe delivers every message matching filter to s until the
	// returned Subscription is removed. A filter may be a shared
	// subscription ($share/group/filter).
	// It returns once a message published after it returns is delivered,
	// or with ctx's error if ctx ends first.
	Subscribe(ctx context.Context, filter string, s Subscriber) (Subscription, error)
}

// Subscriber receives deliveries. Deliver must not modify m. It may wait
// while the subscriber's queue is full and the subscriber is taking
// messages, which is how a PubSub learns that its subscribers are behind;
// it never waits longer than the subscriber's own bound (for a Conn,
// Options.MaxDeliveryWait). A PubSub must therefore not call Deliver while
// holding anything a subscriber's handler may need, and must tolerate
// one delivery goroutine waiting on one subscriber.
type Subscriber interface {
	Deliver(m *Message)
}

// Pacer is implemented by a PubSub whose deliveries can fall behind its
// publishers (gateway/broker). A connection that published pauses before
// it reads more while Behind returns a channel, until that channel is
// closed and Behind returns nil: a device's burst is slowed down to the
// rate at which subscribers take the messages. Behind must be cheap; it is
// called after every read of a connection that published.
type Pacer interface {
	// Behind returns nil when deliveries keep up, or a channel that is
	// closed once the delivery backlog has shrunk.
	Behind() <-chan struct{}
}

// Subscription is an active subscription.
type Subscription interface {
	// Unsubscribe stops deliveries. It is safe to call more than once.
	Unsubscribe() error
}

// PeerIdentity is what a handshake learned about the peer.
type PeerIdentity struct {
	Cert        *CertInfo // the verified client certificate, if any
	PSKIdentity string    // the PSK identity, in PSK mode
}

// Handshaker secures a connection before its handler sees it, for
// transports whose security the gateway does not implement itself (DTLS,
// in gateway/listener). Handshake must give up when ctx ends. The
// connection it returns replaces nc. Implementations must be safe for
// concurrent use: handshakes of different peers run at the same time.
type Handshaker interface {
	Handshake(ctx context.Context, nc net.Conn) (net.Conn, PeerIdentity, error)
}
