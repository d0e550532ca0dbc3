package protogate

// Handler is a protocol handler: the five callbacks of an ExProto handler.
// A callback that returns an error fails, and the host then closes the
// connection (see the package documentation for the status it reports).
// Embed [Base] to implement only the callbacks you need.
//
// Concurrency: the host calls one callback at a time per instance, never
// concurrently, so implementations need no locks.
type Handler interface {
	// OnSocketCreated is the first callback of a connection.
	OnSocketCreated(c Conn, info ConnInfo) error
	// OnReceivedBytes delivers bytes read from the connection. b is valid
	// only during the call.
	OnReceivedBytes(c Conn, b []byte) error
	// OnTimerTimeout reports that the keepalive started with
	// [Conn.StartTimer] expired. The host closes the connection after it.
	OnTimerTimeout(c Conn, t TimerType) error
	// OnReceivedMessages delivers messages of the connection's
	// subscriptions, in order. msgs and their payloads are valid only during
	// the call.
	OnReceivedMessages(c Conn, msgs []Message) error
	// OnSocketClosed is the last callback of a connection; reason says why
	// it closed, in EMQX's words ("{shutdown,tcp_closed}", ...). The
	// connection is gone: host calls on c fail with abi.StatusNotAlive.
	OnSocketClosed(c Conn, reason string) error
}

// TimerHandler is implemented by a [Handler] that arms timers with
// [Conn.SetTimer].
//
// Concurrency: called like the Handler callbacks, one at a time.
type TimerHandler interface {
	// OnTimer reports that timer t of connection c fired. A timer fires
	// once; timers end with their connection.
	OnTimer(c Conn, t Timer) error
}

// Initializer is implemented by a [Handler] that prepares an instance
// before its first connection.
//
// Concurrency: Init runs once per instance, before any other callback.
type Initializer interface {
	// Init runs once when the host creates an instance. An error refuses
	// the instance.
	Init() error
}

// Base implements every [Handler] callback by doing nothing and
// succeeding. Embed it in a handler to implement only some callbacks.
//
// Concurrency: Base has no state.
type Base struct{}

// OnSocketCreated does nothing.
func (Base) OnSocketCreated(Conn, ConnInfo) error { return nil }

// OnReceivedBytes does nothing.
func (Base) OnReceivedBytes(Conn, []byte) error { return nil }

// OnTimerTimeout does nothing.
func (Base) OnTimerTimeout(Conn, TimerType) error { return nil }

// OnReceivedMessages does nothing.
func (Base) OnReceivedMessages(Conn, []Message) error { return nil }

// OnSocketClosed does nothing.
func (Base) OnSocketClosed(Conn, string) error { return nil }

var _ Handler = Base{}

// The registered handler and the optional interfaces it implements.
var (
	handler     Handler
	timerH      TimerHandler
	initializer Initializer
)

// Register makes h the handler of this module. Call it from an init
// function; a second call replaces the handler. It panics if h is nil.
//
// Concurrency: call it only from init functions or, in native tests, while
// no callback runs.
func Register(h Handler) {
	if h == nil {
		panic("protogate: Register(nil)")
	}
	handler = h
	timerH, _ = h.(TimerHandler)
	initializer, _ = h.(Initializer)
}

// Conn is the handle of a connection: its 64-bit id, opaque (unguessable,
// not in creation order) and never reused. The zero Conn names no
// connection.
//
// Concurrency: call its methods only from a callback.
type Conn uint64

// Timer is the id of a timer armed with [Conn.SetTimer]. Ids are positive.
type Timer int64

// TimerType names an ExProto timer; ExProto v1 has only [KeepAlive].
type TimerType int32

// KeepAlive is the ExProto keepalive timer (abi.TimerKeepalive).
const KeepAlive TimerType = 0

// SocketType is the transport of a connection; its values are those of
// emqx.exproto.v1.SocketType.
type SocketType int32

// The socket types.
const (
	TCP  SocketType = 0
	SSL  SocketType = 1
	UDP  SocketType = 2
	DTLS SocketType = 3
)

// String returns the lowercase name of t: "tcp", "ssl", "udp" or "dtls".
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

// ConnInfo describes a new connection; OnSocketCreated receives it.
type ConnInfo struct {
	SockType SocketType
	Peer     Address // the device's address
	Local    Address // the listener's address
	// PeerCert is the subject of the device's certificate, or nil if it
	// presented none.
	PeerCert *CertInfo
}

// Address is a host (an IP address in text form) and a port.
type Address struct {
	Host string
	Port uint16
}

// CertInfo is the subject of a certificate.
type CertInfo struct {
	CN string // common name
	DN string // distinguished name
}

// ClientInfo is what [Conn.Authenticate] registers for a connection.
type ClientInfo struct {
	ProtoName string
	ProtoVer  string
	ClientID  string
	Username  string
}

// Message is one delivery of a subscription.
type Message struct {
	Node      string // the node that delivered it
	ID        string // unique message id
	QoS       uint8
	From      string // the publisher's client id
	Topic     string // the topic, without the connection's mountpoint
	Payload   []byte // valid only during the callback
	Timestamp int64  // milliseconds since the Unix epoch
}

// Level is the severity of a [Log] message, with the values of log/slog.
type Level int32

// The log levels.
const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)
