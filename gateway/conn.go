package gateway

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type connState uint8

const (
	stateOpen    connState = iota // serving
	stateClosing                  // socket closed or closing; events still drain
	stateDead                     // OnSocketClosed delivered; handle is dead
)

// Conn is one device connection. Handlers act on it through its methods,
// which are safe for concurrent use and may be called from inside any
// callback: they never wait for the connection's event queue.
type Conn struct {
	seq    uint64 // creation order: 1 for the server's first connection
	id     uint64
	handle string
	srv    *Server
	l      *Listener
	ls     *lstate
	nc     net.Conn
	info   ConnInfo
	start  time.Time

	wmu sync.Mutex // serializes socket writes; taken before omu
	// wdeadline is the write deadline set on a TLS or DTLS socket (zero:
	// none yet); guarded by wmu. See armWriteDeadline.
	wdeadline time.Time

	ncCloseOnce sync.Once     // closeConn
	ncClosed    chan struct{} // closed once closeConn has closed nc
	// A plain TCP socket's RawConn, read and written directly; nil for
	// other sockets (see raw_linux.go).
	rc  syscall.RawConn
	raw *rawWriter

	omu       sync.Mutex // guards out, spareOut, flushing, lingering
	out       []byte     // bytes queued by Queue, not yet written
	spareOut  []byte
	outEnds   []int // datagram listeners: where each queued datagram ends in out
	spareEnds []int
	flushing  bool // an evFlush is queued or running
	lingering bool // closing: the flush closes the socket once out is written

	hstate   any                     // the back end's per-connection state; see SetHandlerState
	servedBy atomic.Pointer[Handler] // see SetServedBy

	// subMu serializes subscription changes; taken before mu.
	subMu sync.Mutex
	subs  map[string]*subEntry

	lastRecv  atomic.Int64 // nanoseconds since start of the last read; 0: none yet
	failed    atomic.Bool  // a callback failed: only OnSocketClosed remains
	published atomic.Bool  // Publish was called since the reader last looked
	// writeStart is when the socket write in progress started, in
	// nanoseconds since start (odd), or 0 when none is.
	writeStart atomic.Int64
	ack        chan struct{}

	mu          sync.Mutex
	state       connState
	reason      string // why the connection closes; set once
	queue       []event
	spare       []event
	spareMsgs   []*Message // for the next evMessages
	draining    bool
	pending     int // messages queued
	authing     bool
	authed      bool
	clientID    string
	release     func() // ends the Registry claim; nil without one
	username    string
	mountpoint  string
	keepalive   time.Duration // max idle time: 1.5 x the StartTimer interval
	kaBase      time.Duration // since start: when the keepalive was started
	timer       *time.Timer
	closedEvent bool          // the evClosed event has been queued
	wake        chan struct{} // closed when the connection closes; made by wakeLocked
	finished    chan struct{} // closed when the connection is dead; made by Finished
	// Delivery flow control (see Deliver): when the handler last took
	// messages (or the backlog began), whether the subscriber is slow,
	// and a channel closed at the next take for deliveries waiting for
	// room.
	takenAt time.Duration // since start
	slow    bool
	space   chan struct{}

	// What the admin API shows (see clients.go); guarded by mu.
	protoName, protoVer string
	connectedAt         time.Time // when Authenticate succeeded

	identity   *Identity   // what authentication established; guarded by mu
	expiry     *time.Timer // closes the connection at identity.ExpireAt; guarded by mu
	authzCache authzCache

	// Traffic of this connection, also counted per listener.
	traffic
	dropped atomic.Uint64 // deliveries dropped while it was slow

	trace   atomic.Pointer[Trace] // nil unless traced
	traceMu sync.RWMutex          // held for reading while an event is sent to trace
}

// ID returns the connection's 64-bit id, which is also its id in the Wasm
// ABI. Ids are opaque: unique and never reused within a run (a keyed
// permutation of a counter), never 0, and unguessable, since the
// permutation's key is a random secret of the Server: knowing some ids says
// nothing of the others, and ids are not in creation order. Across restarts
// ids are fresh random values, so a stale id meets a live connection with
// probability about (live connections)/2^64.
func (c *Conn) ID() uint64 { return c.id }

// Handle returns the opaque conn string handlers use to name the
// connection: its ID as 16 lowercase hex digits. Like the ID it is
// unguessable; handlers must not derive anything from it.
func (c *Conn) Handle() string { return c.handle }

// Info returns what is known of the connection's socket.
func (c *Conn) Info() *ConnInfo { return &c.info }

// ClientID returns the client id registered by Authenticate, or "".
func (c *Conn) ClientID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientID
}

// Server returns the server the connection belongs to.
func (c *Conn) Server() *Server { return c.srv }

// Listener returns the listener that accepted the connection.
func (c *Conn) Listener() *Listener { return c.l }

func (s *Server) newConn(nc net.Conn, ls *lstate, info ConnInfo) *Conn {
	seq, id := s.nextID()
	c := &Conn{
		seq:    seq,
		id:     id,
		handle: formatHandle(id),
		srv:    s,
		l:      ls.l,
		ls:     ls,
		nc:     nc,
		info:   info,
		start:  time.Now(),
		ack:    make(chan struct{}, 1),
	}
	if !ls.l.datagram() {
		if c.rc = rawSocket(nc); c.rc != nil {
			c.raw = newRawWriter(c.rc)
		}
	}
	return c
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return netip.AddrPortFrom(unmap(a.AddrPort().Addr()), uint16(a.Port))
	case *net.UDPAddr:
		return netip.AddrPortFrom(unmap(a.AddrPort().Addr()), uint16(a.Port))
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func unmap(a netip.Addr) netip.Addr { return a.Unmap() }

// SetHandlerState stores v with the connection for its handler back end,
// which typically sets it in OnSocketCreated and reads it in later
// callbacks. Callbacks of one connection never overlap, and the gateway
// orders them, so no further synchronization is needed between callbacks;
// other goroutines must not call it.
func (c *Conn) SetHandlerState(v any) { c.hstate = v }

// HandlerState returns what SetHandlerState stored.
func (c *Conn) HandlerState() any { return c.hstate }

// SetServedBy records h as the back end that serves c: the Handler that
// receives c's callbacks in the end, which is not the listener's Handler
// when that one delegates (a Wasm handler hands the connections it cannot
// serve to its gRPC fallback). A back end that acts on connections for
// callers outside the process calls it from OnSocketCreated, before
// anything outside can learn c's handle, so that it can later tell its own
// connections from the others: gateway/remote's Handler does, and its
// ConnectionAdapter acts only on the connections a remote Handler serves.
// It is safe for concurrent use.
func (c *Conn) SetServedBy(h Handler) { c.servedBy.Store(&h) }

// ServedBy returns the Handler recorded by SetServedBy, or nil if none was.
func (c *Conn) ServedBy() Handler {
	if p := c.servedBy.Load(); p != nil {
		return *p
	}
	return nil
}

// String returns the connection's handle and peer, for logs.
func (c *Conn) String() string {
	return c.handle + "@" + c.info.Peer.String()
}

// LogValue implements slog.LogValuer.
func (c *Conn) LogValue() slog.Value { return slog.StringValue(c.String()) }
