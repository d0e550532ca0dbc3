// Package gateway is the core of protogate: it owns device sockets, turns
// what happens on them into the five ExProto callbacks of a Handler, and
// serves the calls a handler makes back (Send, Close, Authenticate,
// StartTimer, Publish, Subscribe, Unsubscribe) on top of a PubSub.
//
// The package knows its handler back ends (gateway/remote, wasmhost) and its
// pub/sub (gateway/broker) only through the Handler and PubSub interfaces;
// cmd/protogate wires them together.
//
// # Event model
//
// Each connection has one event queue. Socket reads, keepalive expiry, pub/sub
// deliveries and the final close all become events in that queue, and exactly
// one goroutine at a time drains it, calling the Handler in order. The
// goroutine that reads the socket drains inline, so a slow handler slows the
// reader (backpressure) instead of growing a queue; deliveries and timers
// start a short-lived drainer only when the queue is idle. Calls a handler
// makes on a connection never take the drain role, so a handler can call
// Authenticate or Send from inside any callback without deadlock.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protogate/protogate/gateway/framing"
	"github.com/protogate/protogate/gateway/limit"
)

// Options configures a Server. The zero value of every field but PubSub is a
// usable default.
type Options struct {
	// PubSub carries Publish, Subscribe and deliveries. Without it pub/sub
	// calls fail with ErrNoPubSub.
	PubSub PubSub
	// Authenticator checks credentials in Authenticate. Default: nil, which
	// allows every client.
	Authenticator Authenticator
	// Authorizer decides each Publish and Subscribe of an authenticated
	// connection, and RawPublish (as client id "exproto"). Default: nil,
	// which allows everything.
	Authorizer Authorizer
	// Registry keeps client ids unique across the nodes of a cluster.
	// Default: nil, unique on this Server only.
	Registry ClientRegistry
	// AuthzCache configures the per-connection cache of the Authorizer's
	// answers. Default: none.
	AuthzCache AuthzCache
	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
	// WriteTimeout bounds one socket write of Send; a write that cannot
	// finish in time closes the connection. Default: 15s.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds a TLS handshake. Default: 10s.
	HandshakeTimeout time.Duration
	// MaxPendingMessages bounds the deliveries queued for one connection
	// while its handler is busy. Default: 1000.
	MaxPendingMessages int
	// MaxDeliveryWait is how long a write to a subscriber's socket may
	// wait for the device to read while the subscriber's queue is full,
	// before the subscriber counts as slow: its deliveries beyond
	// MaxPendingMessages are then dropped and counted (Dropped). A
	// subscriber whose handler takes nothing for ten times as long is
	// slow too.
	// Subscribers that keep up lose nothing: their deliveries wait, and
	// publishing connections pause (Pacer). Default: 1s.
	MaxDeliveryWait time.Duration
	// MaxQueuedBytes bounds the bytes Conn.Queue may hold for one
	// connection; a Queue beyond it fails with ErrSendQueueFull.
	// Default: 4 MiB.
	MaxQueuedBytes int
	// ReadBufferSize is the size of each connection's read buffer, the
	// largest chunk one OnReceivedBytes carries on TCP and TLS. Default: 4096.
	ReadBufferSize int
}

// Listener describes how the connections accepted from one net.Listener are
// served. It must not be modified once passed to Serve.
type Listener struct {
	// Name identifies the listener in logs and ConnInfo.
	Name string
	// Type is TCP or SSL.
	Type SocketType
	// Handler receives the events of every connection.
	Handler Handler
	// TLSConfig is required for SSL. Client certificates it verifies reach
	// the handler as ConnInfo.PeerCert.
	TLSConfig *tls.Config
	// IdleTimeout closes a connection that has not sent a single byte this
	// long after it was created. Default: 0, no limit.
	IdleTimeout time.Duration
	// Mountpoint prefixes every topic the connection publishes or
	// subscribes to. ${clientid} and ${username} are replaced at
	// Authenticate.
	Mountpoint string
	// DisableAuthn skips authentication for this listener: Authenticate
	// registers any client id.
	DisableAuthn bool
	// Authenticator replaces the Server's for this listener. Default: nil,
	// the Server's.
	Authenticator Authenticator
	// MaxSubscriptions bounds the filters one connection may be subscribed
	// to (EMQX max_subscriptions); Subscribe beyond it fails with
	// ErrTooManySubscriptions. Default: 0, no limit.
	MaxSubscriptions int

	// MaxConnections refuses connections beyond this many at once.
	// Default: 0, no limit.
	MaxConnections int
	// MaxConnRate refuses new connections beyond this many per second
	// (with a burst of one second's worth). Default: 0, no limit.
	MaxConnRate float64
	// Access decides by peer address (EMQX access_rules); with ProxyProtocol
	// it applies to the real client. Default: nil, allow all.
	Access *limit.Rules
	// MaxBytesRate caps the bytes a connection may send per second: TCP and
	// TLS readers slow down (backpressure, no loss); UDP and DTLS drop and
	// count the excess. Default: 0, no limit.
	MaxBytesRate float64
	// MaxPacketSize caps one frame (with Framing) or one datagram: a larger
	// frame closes the connection, a larger datagram is dropped and
	// counted. Default: 0, which means 65535.
	MaxPacketSize int
	// Framing splits a TCP or TLS stream into frames, one OnReceivedBytes
	// each. Default: none, raw chunks as EMQX delivers them.
	Framing framing.Config
	// ProxyProtocol reads a PROXY protocol v1 or v2 header first on TCP and
	// TLS connections, so that ConnInfo.Peer is the client behind a load
	// balancer. Connections without one are refused.
	ProxyProtocol bool
	// ProxyProtocolTimeout bounds reading the PROXY header. Default: 3s.
	ProxyProtocolTimeout time.Duration
	// Handshaker secures UDP connections as DTLS (Type DTLS).
	Handshaker Handshaker
}

// datagram reports whether the listener's connections carry datagrams.
func (l *Listener) datagram() bool { return l.Type == UDP || l.Type == DTLS }

// maxPacket returns MaxPacketSize or its default.
func (l *Listener) maxPacket() int {
	if l.MaxPacketSize > 0 {
		return l.MaxPacketSize
	}
	return 65535
}

// check validates l for Serve and ServeConn.
func (l *Listener) check() error {
	switch {
	case l == nil || l.Handler == nil:
		return errors.New("gateway: listener without a handler")
	case l.Type == SSL && l.TLSConfig == nil:
		return fmt.Errorf("gateway: listener %q: ssl needs a TLS config", l.Name)
	case l.Type == DTLS && l.Handshaker == nil:
		return fmt.Errorf("gateway: listener %q: dtls needs a handshaker", l.Name)
	case l.Type != TCP && l.Type != SSL && l.Type != UDP && l.Type != DTLS:
		return fmt.Errorf("gateway: listener %q: unsupported type %s", l.Name, l.Type)
	case l.Framing.Kind != framing.None && l.datagram():
		return fmt.Errorf("gateway: listener %q: framing applies to tcp and ssl; a datagram is already one frame", l.Name)
	case l.ProxyProtocol && l.datagram():
		return fmt.Errorf("gateway: listener %q: proxy_protocol applies to tcp and ssl", l.Name)
	}
	if l.Framing.Kind != framing.None {
		fc := l.Framing
		fc.MaxFrame = l.maxPacket()
		if err := fc.Validate(); err != nil {
			return fmt.Errorf("gateway: listener %q: %w", l.Name, err)
		}
	}
	return nil
}

// admitSetter is implemented by listeners that create connections from
// datagrams (gateway/listener's UDP listener): Serve hands them the
// admission check, run on the first datagram of a new peer.
type admitSetter interface {
	SetAdmit(func(remote net.Addr) error)
}

// Server serves connections from any number of listeners. It is safe for
// concurrent use; create it with New.
type Server struct {
	opts  Options
	log   *slog.Logger
	pacer Pacer // opts.PubSub, if it is one

	ctx    context.Context // canceled by Close: aborts handler calls
	cancel context.CancelFunc

	stopCtx context.Context // canceled by Shutdown: aborts handshakes
	stop    context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closing   bool

	conns  sync.Map // uint64 -> *Conn
	nconns atomic.Int64
	seq    atomic.Uint64 // connections created so far; see nextID
	ids    *idCipher     // turns seq into connection ids

	clientsMu sync.Mutex
	clients   map[string]*Conn     // client id -> authenticated connection
	jailed    map[string]time.Time // client id -> end of its jail; see JailTime
	jailSwept time.Time            // when jailed was last swept
	jailHits  atomic.Uint64        // Authenticate calls held by a jail
	jailLog   logLimiter

	lstates map[string]*lstate // by listener name; guarded by mu
	lorder  []*lstate          // lstates in the order Serve first saw them; guarded by mu
	started time.Time

	wg sync.WaitGroup // every goroutine the server starts

	calls     [len(CallNames)][len(codes)]atomic.Uint64 // handler calls by call and result code
	dropped   atomic.Uint64                             // deliveries dropped because a queue was full
	panics    atomic.Uint64                             // handler callbacks that panicked
	takeovers atomic.Uint64                             // connections discarded for their client id

	authz      authzStats
	denyLog    logLimiter
	authnAllow atomic.Uint64
	authnDeny  atomic.Uint64

	bufOnce sync.Once
	bufs    sync.Pool // read buffers of raw sockets (*rawRead)
}

// New returns a Server with opts.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 15 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.MaxPendingMessages <= 0 {
		opts.MaxPendingMessages = 1000
	}
	if opts.MaxDeliveryWait <= 0 {
		opts.MaxDeliveryWait = time.Second
	}
	if opts.MaxQueuedBytes <= 0 {
		opts.MaxQueuedBytes = 4 << 20
	}
	if opts.ReadBufferSize <= 0 {
		opts.ReadBufferSize = 4096
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		listeners: make(map[net.Listener]struct{}),
		clients:   make(map[string]*Conn),
		lstates:   make(map[string]*lstate),
		started:   time.Now(),
		ids:       newIDCipher(),
	}
	s.pacer, _ = opts.PubSub.(Pacer)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.stopCtx, s.stop = context.WithCancel(s.ctx)
	return s
}

// Serve accepts connections on ln and serves them as l describes, until
// Shutdown or Close. It always returns a non-nil error; after Shutdown or
// Close it is ErrServerClosed. Serve takes ownership of ln and closes it.
func (s *Server) Serve(ln net.Listener, l *Listener) error {
	if err := l.check(); err != nil {
		ln.Close()
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	ls := s.newLState(l)
	addr := ln.Addr().String()
	ls.addr.Store(&addr)
	ls.running.Store(true)
	defer ls.running.Store(false)
	// A datagram listener admits peers itself, before it creates their
	// connection; a stream listener's connections are admitted here.
	as, selfAdmitting := ln.(admitSetter)
	if selfAdmitting {
		as.SetAdmit(func(remote net.Addr) error { return ls.admit(remote, true) })
	}

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off and retry,
				// as net/http does, instead of spinning or giving up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("gateway: accept failed; retrying", "listener", l.Name, "err", err, "backoff", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.ctx.Done():
					t.Stop()
				}
				continue
			}
			return fmt.Errorf("gateway: listener %q: %w", l.Name, err)
		}
		backoff = 0
		if !selfAdmitting {
			// Behind a PROXY header the real client is known only after
			// reading it; the rules are checked then.
			if ls.admit(nc.RemoteAddr(), !l.ProxyProtocol) != nil {
				nc.Close()
				continue
			}
		}
		if !s.track() {
			// A datagram listener can hand over a connection (a finished
			// DTLS handshake) after Shutdown began.
			ls.release()
			nc.Close()
			return ErrServerClosed
		}
		go s.serveAccepted(nc, ls)
	}
}

// ServeConn serves one already-accepted connection as l describes and
// returns when it has closed (its handler has seen OnSocketClosed). It suits
// transports without a listener, such as net.Pipe in tests and benchmarks.
// Connection limits do not apply; access rules do.
func (s *Server) ServeConn(nc net.Conn, l *Listener) error {
	if err := l.check(); err != nil {
		nc.Close()
		return err
	}
	ls := &lstate{l: l, srv: s}
	if err := ls.checkRules(nc.RemoteAddr()); err != nil {
		nc.Close()
		return err
	}
	if !s.track() {
		nc.Close()
		return ErrServerClosed
	}
	ls.active.Add(1)
	s.serveStream(nc, ls)
	return nil
}

// isTemporary reports errors an accept loop should retry, such as EMFILE.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// track counts one more connection goroutine in s.wg unless the server is
// closing. Holding s.mu orders the Add before Shutdown's Wait, as
// sync.WaitGroup requires when the count may be zero.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Lookup returns the live connection named by handle, the opaque string a
// handler receives as conn. A malformed handle yields ErrBadHandle, an empty
// one ErrNoHandle, and the handle of a connection that is gone, or never
// was, ErrNotAlive. Handles are unguessable (see [Conn.ID]), so a handle
// reaches a connection only if it was learned from that connection's
// callbacks.
func (s *Server) Lookup(handle string) (*Conn, error) {
	if handle == "" {
		return nil, ErrNoHandle
	}
	id, ok := parseHandle(handle)
	if !ok {
		return nil, ErrBadHandle
	}
	if c := s.Conn(id); c != nil {
		return c, nil
	}
	return nil, ErrNotAlive
}

// Conn returns the connection with the given id, or nil when there is none.
func (s *Server) Conn(id uint64) *Conn {
	v, ok := s.conns.Load(id)
	if !ok {
		return nil
	}
	return v.(*Conn)
}

// NumConns returns the number of connections currently registered.
func (s *Server) NumConns() int { return int(s.nconns.Load()) }

// Dropped returns how many deliveries were dropped because a slow
// subscriber's queue was full (see Options.MaxDeliveryWait).
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// Takeovers returns how many connections were closed because another one
// authenticated with their client id (ReasonDiscarded).
func (s *Server) Takeovers() uint64 { return s.takeovers.Load() }

// Panics returns how many panics of handler callbacks and authenticators
// the server recovered. Each cost only the connection it happened on.
func (s *Server) Panics() uint64 { return s.panics.Load() }

// handlerPanicked records a panic recovered from callback (or the
// authenticator) on c: it counts it, logs it once with the stack, and
// returns the error that fails the call.
func (s *Server) handlerPanicked(c *Conn, callback string, r any) error {
	s.panics.Add(1)
	s.log.Error("gateway: recovered a panic; failing the call",
		"conn", c.handle, "listener", c.l.Name, "callback", callback,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return fmt.Errorf("panic: %v", r)
}

// RawPublisher is the client id of RawPublish's messages, and the identity
// its authorization is asked for.
const RawPublisher = "exproto"

// RawPublish publishes without a connection: no mountpoint, From
// RawPublisher, as ExProto's RawPublish. It is authorized as a client
// with client id RawPublisher, no username and no privileges, so rules
// for that client id govern what handlers may publish this way.
func (s *Server) RawPublish(topic string, qos uint32, payload []byte) (err error) {
	defer func() { s.calls[callRawPublish][codeIndex(err)].Add(1) }()
	if topic == "" {
		return Errorf(CodeRequiredParamsMissed, "gateway: topic is empty")
	}
	if qos > 2 {
		return Errorf(CodeParamsTypeError, "gateway: qos %d is not 0, 1 or 2", qos)
	}
	if s.opts.PubSub == nil {
		return ErrNoPubSub
	}
	if err := s.authorizeRaw(topic, uint8(qos)); err != nil {
		return err
	}
	return s.opts.PubSub.Publish(&Message{QoS: uint8(qos), From: RawPublisher, Topic: topic, Payload: payload})
}

// ReasonShutdown is the close reason handlers see when the gateway shuts down.
const ReasonShutdown = "{shutdown,gateway_shutdown}"

// Shutdown stops the server gracefully: it closes every listener, closes
// every connection with ReasonShutdown, and waits until their handlers have
// seen OnSocketClosed. If ctx ends first, Shutdown aborts the remaining
// handler calls as Close does and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	s.mu.Lock()
	s.closing = true
	var datagram []net.Listener
	for ln := range s.listeners {
		if _, ok := ln.(admitSetter); ok {
			// Closing a datagram listener closes its connections; close
			// them first, with the shutdown reason.
			datagram = append(datagram, ln)
			continue
		}
		ln.Close()
	}
	s.mu.Unlock()

	s.conns.Range(func(_, v any) bool {
		v.(*Conn).closeWith(ReasonShutdown)
		return true
	})
	for _, ln := range datagram {
		ln.Close()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and connections are closed and
// handler calls in flight are canceled. Handlers still see OnSocketClosed,
// with a canceled context. Close waits for every goroutine of the server.
func (s *Server) Close() error {
	s.cancel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// register makes c reachable by its handle.
func (s *Server) register(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns.Store(c.id, c)
	s.nconns.Add(1)
	return true
}

func (s *Server) unregister(c *Conn) {
	if _, ok := s.conns.LoadAndDelete(c.id); ok {
		s.nconns.Add(-1)
	}
}

// claimClientID makes c the owner of id and returns the connection it took
// the id from, if any.
func (s *Server) claimClientID(id string, c *Conn) *Conn {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	old := s.clients[id]
	s.clients[id] = c
	if old == c {
		return nil
	}
	if old != nil {
		s.takeovers.Add(1)
	}
	return old
}

func (s *Server) releaseClientID(id string, c *Conn) {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	if s.clients[id] == c {
		delete(s.clients, id)
	}
}

// goDrain runs c's queue on a new goroutine owned by the server.
func (s *Server) goDrain(c *Conn) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.drain()
	}()
}
