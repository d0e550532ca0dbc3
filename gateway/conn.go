package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/protogate/protogate/abi"
	"github.com/protogate/protogate/gateway/framing"
	"github.com/protogate/protogate/gateway/limit"
	"github.com/protogate/protogate/gateway/proxyproto"
	"github.com/protogate/protogate/gateway/topic"
)

// Close reasons, in the format EMQX used, so handlers that match on them keep
// working.
const (
	ReasonNormal           = "{shutdown,normal}"
	ReasonTCPClosed        = "{shutdown,tcp_closed}"
	ReasonSSLClosed        = "{shutdown,ssl_closed}"
	ReasonKeepaliveTimeout = "{shutdown,keepalive_timeout}"
	ReasonIdleTimeout      = "{shutdown,idle_timeout}"
	ReasonDiscarded        = "{shutdown,discarded}"
	ReasonKicked           = "{shutdown,kicked}"
)

// maxKeepalive caps StartTimer intervals, as MQTT and EMQX do.
const maxKeepalive = 65535

type connState uint8

const (
	stateOpen    connState = iota // serving
	stateClosing                  // socket closed or closing; events still drain
	stateDead                     // OnSocketClosed delivered; handle is dead
)

type eventKind uint8

const (
	evCreated eventKind = iota
	evBytes
	evTimeout
	evMessages
	evFlush // write what Queue buffered
	evClosed
)

// event is one entry of a connection's queue.
type event struct {
	kind  eventKind
	ack   bool // the socket reader waits for this event to be handled
	bytes []byte
	msgs  []*Message
}

// Conn is one device connection. Handlers act on it through its methods,
// which are safe for concurrent use and may be called from inside any
// callback: they never wait for the connection's event queue.
type Conn struct {
	id     uint64
	handle string
	srv    *Server
	l      *Listener
	ls     *lstate
	nc     net.Conn
	info   ConnInfo
	start  time.Time

	wmu sync.Mutex // serializes socket writes; taken before omu
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

	hstate any // the back end's per-connection state; see SetHandlerState

	// subMu serializes subscription changes; taken before mu.
	subMu sync.Mutex
	subs  map[string]*subEntry

	lastRecv  atomic.Int64 // nanoseconds since start of the last read; 0: none yet
	failed    atomic.Bool  // a callback failed: only OnSocketClosed remains
	published atomic.Bool  // Publish was called since the reader last looked
	ack       chan struct{}

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
	username    string
	mountpoint  string
	keepalive   time.Duration // max idle time: 1.5 x the StartTimer interval
	kaBase      time.Duration // since start: when the keepalive was started
	timer       *time.Timer
	closedEvent bool          // the evClosed event has been queued
	wake        chan struct{} // closed when the connection closes; made by wakeLocked
	// Delivery flow control (see Deliver): when the queue last started to
	// fill or was last taken by the handler, whether the subscriber is
	// slow, and a channel closed at the next take for deliveries waiting
	// for room.
	lastTake time.Duration // since start
	slow     bool
	space    chan struct{}
}

type subEntry struct {
	qos uint8
	sub Subscription
}

// ID returns the connection's unique 64-bit id. Ids are never reused.
func (c *Conn) ID() uint64 { return c.id }

// Handle returns the opaque conn string handlers use to name the connection.
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

// serveStream owns one connection: it reads a PROXY header and runs the TLS
// or DTLS handshake if the listener asks for them, creates the Conn, reads
// the socket and drains the queue inline. The caller has admitted the
// connection (reserved a slot in ls); serveStream, then the Conn, releases it.
func (s *Server) serveStream(nc net.Conn, ls *lstate) {
	defer s.wg.Done()
	// The goroutine lives as long as the connection, mostly idle in a
	// read: its stack stays small only if the frames below that read are
	// small, so establishing the connection (large frames) returns first.
	if c := s.establish(nc, ls); c != nil {
		c.serve()
	}
}

// serve runs an established connection until it closes.
func (c *Conn) serve() {
	c.armIdle()
	c.enqueueAndDrain(event{kind: evCreated})
	c.terminate(c.readLoop())
}

// establish does what serveStream does before the connection reaches the
// handler and returns the registered Conn, or nil (having closed nc and
// released its slot) if the connection is not established.
//
//go:noinline
func (s *Server) establish(nc net.Conn, ls *lstate) *Conn {
	l := ls.l
	info := ConnInfo{SockType: l.Type, Listener: l.Name}
	info.Peer = addrPort(nc.RemoteAddr())
	info.Local = addrPort(nc.LocalAddr())
	fail := func(cause string, err error) {
		if cause != "" {
			ls.refuse(cause, nc.RemoteAddr())
		}
		s.log.Debug("gateway: connection not established", "listener", l.Name, "peer", info.Peer, "err", err)
		nc.Close()
		ls.release()
	}
	if l.ProxyProtocol {
		timeout := l.ProxyProtocolTimeout
		if timeout <= 0 {
			timeout = 3 * time.Second
		}
		nc.SetReadDeadline(time.Now().Add(timeout))
		br := bufio.NewReaderSize(nc, 256)
		h, err := proxyproto.Read(br)
		if err != nil {
			fail(CauseProxyProtocol, err)
			return nil
		}
		nc.SetReadDeadline(time.Time{})
		nc = proxyproto.NewConn(nc, br, h)
		info.Peer = addrPort(nc.RemoteAddr())
		info.Local = addrPort(nc.LocalAddr())
		if err := ls.checkAddr(info.Peer); err != nil {
			fail("", err)
			return nil
		}
	}
	switch l.Type {
	case SSL:
		tc := tls.Server(nc, l.TLSConfig)
		ctx, cancel := context.WithTimeout(s.stopCtx, s.opts.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			// A failed handshake never reaches the handler.
			fail(CauseHandshake, err)
			return nil
		}
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			info.PeerCert = &CertInfo{CN: certs[0].Subject.CommonName, DN: certs[0].Subject.String()}
		}
		nc = tc
	case DTLS:
		ctx, cancel := context.WithTimeout(s.stopCtx, s.opts.HandshakeTimeout)
		dc, id, err := l.Handshaker.Handshake(ctx, nc)
		cancel()
		if err != nil {
			fail(CauseHandshake, err)
			return nil
		}
		info.PeerCert, info.PSKIdentity = id.Cert, id.PSKIdentity
		nc = dc
	}
	c := s.newConn(nc, ls, info)
	if !s.register(c) {
		nc.Close()
		ls.release()
		return nil
	}
	return c
}

// readLoop reads the socket until it fails or the connection stops taking
// bytes, and returns the close reason the read error implies.
func (c *Conn) readLoop() string {
	l, ls := c.l, c.ls
	sr := c.newStreamReader()
	if c.rc != nil {
		return c.readLoopRaw(c.rc, sr)
	}
	size := c.srv.opts.ReadBufferSize
	if l.datagram() {
		// One more than the limit, to tell an oversized datagram.
		size = min(l.maxPacket(), 65535) + 1
	}
	buf := make([]byte, size)
	var bucket *limit.Bucket
	if l.MaxBytesRate > 0 && l.datagram() {
		bucket = limit.NewBucket(l.MaxBytesRate, max(l.MaxBytesRate, float64(size)))
	}
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			data := buf[:n]
			if !l.datagram() {
				if !c.consumeStream(sr, data) {
					return ""
				}
			} else {
				c.lastRecv.Store(int64(time.Since(c.start)) | 1)
				if n > l.maxPacket() || bucket != nil && !bucket.Allow(float64(n)) {
					ls.dropped.Add(1)
				} else if !c.enqueueBytes(data) || !c.pace() {
					return ""
				}
			}
		}
		if err != nil {
			if l.datagram() && errors.Is(err, io.ErrShortBuffer) {
				ls.dropped.Add(1) // longer than our buffer: oversized
				continue
			}
			return readErrReason(err, l.Type)
		}
	}
}

// streamReader is what a TCP or TLS read loop keeps across reads.
type streamReader struct {
	bucket *limit.Bucket    // MaxBytesRate
	dec    *framing.Decoder // Framing
}

func (c *Conn) newStreamReader() *streamReader {
	l := c.l
	sr := &streamReader{}
	if l.MaxBytesRate > 0 {
		size := float64(c.srv.opts.ReadBufferSize)
		sr.bucket = limit.NewBucket(l.MaxBytesRate, max(l.MaxBytesRate, size))
	}
	if l.Framing.Kind != framing.None {
		fc := l.Framing
		fc.MaxFrame = l.maxPacket()
		sr.dec, _ = framing.NewDecoder(fc) // validated by Listener.check
	}
	return sr
}

// consumeStream hands one chunk read from a stream to the handler, whole
// or frame by frame, and applies MaxBytesRate. It returns once the handler
// is done with data, so the reader can reuse its buffer, and reports false
// when the connection no longer takes bytes.
func (c *Conn) consumeStream(sr *streamReader, data []byte) bool {
	c.lastRecv.Store(int64(time.Since(c.start)) | 1)
	if dec := sr.dec; dec != nil {
		dec.Feed(data)
		for {
			frame, ok, ferr := dec.Next()
			if ferr != nil {
				c.ls.overflow.Add(1)
				c.srv.log.Info("gateway: frame too large; closing", "conn", c.handle, "listener", c.l.Name, "err", ferr)
				c.closeWith("{shutdown,frame_too_large}")
				return false
			}
			if !ok {
				break
			}
			if !c.enqueueBytes(frame) {
				return false
			}
		}
	} else if !c.enqueueBytes(data) {
		return false
	}
	if !c.pace() {
		return false
	}
	if sr.bucket != nil {
		// Backpressure: read no more until the rate allows it.
		if d := sr.bucket.Reserve(float64(len(data))); d > 0 && !c.pause(d) {
			return false
		}
	}
	return true
}

// pause sleeps for d unless the connection closes first; it reports whether
// the connection is still open.
func (c *Conn) pause(d time.Duration) bool {
	c.mu.Lock()
	wake := c.wakeLocked()
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return false
	case <-c.srv.stopCtx.Done():
		return false
	}
}

// wakeLocked returns a channel that is closed when the connection stops
// being open. c.mu is held.
func (c *Conn) wakeLocked() <-chan struct{} {
	if c.wake == nil {
		c.wake = make(chan struct{})
		if c.state != stateOpen {
			close(c.wake)
		}
	}
	return c.wake
}

// closingLocked moves an open connection to stateClosing with reason and
// wakes whatever waits for it to close. c.mu is held.
func (c *Conn) closingLocked(reason string) {
	c.state = stateClosing
	c.reason = reason
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.wake != nil {
		close(c.wake)
	}
}

// pace holds the reader of a connection that published while the
// gateway's deliveries are behind its publishers (Pacer), until they catch
// up, and reports whether the connection is still open. The device's
// further bytes wait in the socket meanwhile, so a burst is slowed down by
// TCP flow control instead of overflowing the queues of subscribers that
// keep up.
func (c *Conn) pace() bool {
	if !c.published.Load() {
		return true
	}
	c.published.Store(false)
	p := c.srv.pacer
	if p == nil {
		return true
	}
	var wake <-chan struct{}
	for {
		behind := p.Behind()
		if behind == nil {
			return true
		}
		if wake == nil {
			c.mu.Lock()
			wake = c.wakeLocked()
			c.mu.Unlock()
		}
		select {
		case <-behind:
		case <-wake:
			return false
		case <-c.srv.stopCtx.Done():
			return false
		}
	}
}

func (s *Server) newConn(nc net.Conn, ls *lstate, info ConnInfo) *Conn {
	id := s.nextID.Add(1)
	c := &Conn{
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

// readErrReason names why a read ended, as EMQX did.
func readErrReason(err error, t SocketType) string {
	switch {
	case errors.Is(err, io.EOF):
		switch t {
		case SSL:
			return ReasonSSLClosed
		case UDP:
			return "{shutdown,udp_closed}"
		case DTLS:
			return "{shutdown,dtls_closed}"
		}
		return ReasonTCPClosed
	case errors.Is(err, syscall.ECONNRESET):
		return "{shutdown,econnreset}"
	case errors.Is(err, net.ErrClosed):
		return ReasonNormal
	}
	return "{shutdown," + err.Error() + "}"
}

// enqueueAndDrain queues ev and, if no one is draining, drains the queue on
// the calling goroutine.
func (c *Conn) enqueueAndDrain(ev event) {
	c.mu.Lock()
	c.queue = append(c.queue, ev)
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	c.drain()
}

// enqueueBytes hands a read chunk to the handler and returns once the handler
// is done with it, so the reader can reuse its buffer. It reports false when
// the connection no longer takes bytes.
func (c *Conn) enqueueBytes(b []byte) bool {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return false
	}
	wait := c.draining
	c.queue = append(c.queue, event{kind: evBytes, ack: wait, bytes: b})
	c.draining = true
	c.mu.Unlock()
	if wait {
		<-c.ack
	} else {
		c.drain()
	}
	return true
}

// enqueueAsync queues ev from a goroutine that must not run handler code
// (timers, deliveries) and starts a drainer if needed.
func (c *Conn) enqueueAsyncLocked(ev event) {
	c.queue = append(c.queue, ev)
	if !c.draining {
		c.draining = true
		c.srv.goDrain(c)
	}
}

// drain runs queued events until the queue is empty. Only the goroutine that
// set draining calls it.
func (c *Conn) drain() {
	var batch []event
	for {
		c.mu.Lock()
		if batch != nil {
			for i := range batch {
				// The handler is done with the batch of messages:
				// keep one for the next delivery.
				if m := batch[i].msgs; m != nil && c.spareMsgs == nil && cap(m) <= 64 {
					clear(m)
					c.spareMsgs = m[:0]
				}
			}
			clear(batch)
			c.spare = batch[:0]
		}
		if len(c.queue) == 0 {
			c.draining = false
			c.mu.Unlock()
			return
		}
		batch = c.queue
		c.queue, c.spare = c.spare, nil
		taken := 0
		for i := range batch {
			if batch[i].kind == evMessages {
				taken += len(batch[i].msgs)
			}
		}
		if taken > 0 {
			c.tookLocked(taken)
		}
		c.mu.Unlock()
		for i := range batch {
			c.dispatch(&batch[i])
		}
	}
}

// dispatch delivers one event to the handler.
func (c *Conn) dispatch(ev *event) {
	h := c.l.Handler
	if ev.kind == evClosed {
		c.closed(h)
		return
	}
	if ev.kind == evFlush {
		c.flush()
		return
	}
	if !c.failed.Load() {
		if err := c.invoke(h, ev); err != nil {
			c.callbackFailed(callbackName(ev.kind), err)
		}
	}
	if ev.ack {
		c.ack <- struct{}{}
	}
}

// invoke calls the handler for ev. A panic in the handler is recovered
// here, as net/http recovers one per request: it fails the callback (so
// only this connection closes) instead of ending the process with every
// other device's connection.
func (c *Conn) invoke(h Handler, ev *event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.srv.handlerPanicked(c, callbackName(ev.kind), r)
		}
	}()
	ctx := c.srv.ctx
	switch ev.kind {
	case evCreated:
		return h.OnSocketCreated(ctx, c, &c.info)
	case evBytes:
		return h.OnReceivedBytes(ctx, c, ev.bytes)
	case evTimeout:
		return h.OnTimerTimeout(ctx, c, KeepAlive)
	case evMessages:
		return h.OnReceivedMessages(ctx, c, ev.msgs)
	}
	return nil
}

// callbackName names the callback of an event kind as close reasons do.
func callbackName(k eventKind) string {
	switch k {
	case evCreated:
		return abi.CallbackSocketCreated
	case evBytes:
		return abi.CallbackReceivedBytes
	case evTimeout:
		return abi.CallbackTimerTimeout
	case evMessages:
		return abi.CallbackReceivedMessages
	case evClosed:
		return abi.CallbackSocketClosed
	}
	return "unknown"
}

// callbackFailed closes the connection after a handler callback failed.
// (Apart from dispatch, whose frame is on the stack of every callback.)
//
//go:noinline
func (c *Conn) callbackFailed(name string, err error) {
	c.failed.Store(true)
	c.srv.log.Warn("gateway: handler callback failed; closing connection",
		"conn", c.handle, "listener", c.l.Name, "callback", name, "err", err)
	c.closeWith(abi.ErrorReason(name, err.Error()))
}

// closed delivers OnSocketClosed and finishes the connection, even if the
// handler panics.
//
//go:noinline
func (c *Conn) closed(h Handler) {
	defer c.finish()
	defer func() {
		if r := recover(); r != nil {
			c.srv.handlerPanicked(c, abi.CallbackSocketClosed, r)
		}
	}()
	c.mu.Lock()
	reason := c.reason
	c.mu.Unlock()
	if err := h.OnSocketClosed(c.srv.ctx, c, reason); err != nil {
		c.srv.log.Warn("gateway: OnSocketClosed failed", "conn", c.handle, "err", err)
	}
}

// closeWith starts closing the connection with reason, unless it is already
// closing. It never waits for the handler.
func (c *Conn) closeWith(reason string) {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.closingLocked(reason)
	c.mu.Unlock()
	c.omu.Lock()
	linger := c.flushing
	c.lingering = linger
	c.omu.Unlock()
	if linger {
		// Bytes a handler queued before closing still go out: the pending
		// flush closes the socket once they are written.
		return
	}
	// Closing the socket ends the reader's Read; the reader then queues
	// OnSocketClosed behind whatever is still queued.
	c.closeSocket()
}

// closeSocket closes the socket so that its reader stops, from any
// goroutine. A raw socket (see raw_linux.go) is shut down instead: its
// reader may be inside its read callback, even on this goroutine, and
// closing waits for the callback to return. Its reader then reads the end
// of the stream, and the socket is closed for good once the reader is out
// of the callback (terminate, finish).
func (c *Conn) closeSocket() {
	if c.rc != nil {
		shutdownRaw(c.rc)
		return
	}
	c.nc.Close()
}

// terminate runs on the reader once it stops reading: it releases the
// connection's resources and queues the final OnSocketClosed.
func (c *Conn) terminate(readReason string) {
	if readReason != "" && c.srv.isClosing() {
		// A read that ends during Shutdown ends because of it (a datagram
		// transport can report its end before Shutdown reaches this
		// connection): handlers see the shutdown reason either way.
		readReason = ReasonShutdown
	}
	c.mu.Lock()
	if c.state == stateOpen {
		c.closingLocked(readReason)
	}
	if c.reason == "" {
		c.reason = ReasonNormal
	}
	clientID, authed := c.clientID, c.authed
	c.mu.Unlock()
	c.omu.Lock()
	linger := c.lingering
	c.omu.Unlock()
	if !linger {
		c.nc.Close()
	}
	if authed {
		c.srv.releaseClientID(clientID, c)
	}
	c.unsubscribeAll()

	c.mu.Lock()
	if c.closedEvent {
		c.mu.Unlock()
		return
	}
	c.closedEvent = true
	// Deliveries not yet started are dropped: nobody subscribed anymore.
	c.queue = dropMessages(c.queue)
	c.queue = append(c.queue, event{kind: evClosed})
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	c.drain()
}

func dropMessages(q []event) []event {
	out := q[:0]
	for _, ev := range q {
		if ev.kind != evMessages {
			out = append(out, ev)
		}
	}
	clear(q[len(out):])
	return out
}

// finish marks the connection dead once OnSocketClosed has been delivered.
func (c *Conn) finish() {
	if c.rc != nil {
		// A lingering flush only shut it down (closeSocket).
		c.nc.Close()
	}
	c.mu.Lock()
	c.state = stateDead
	c.mu.Unlock()
	c.srv.unregister(c)
	c.ls.release()
}

// armIdle starts the idle timer if the listener has an idle timeout.
func (c *Conn) armIdle() {
	if c.l.IdleTimeout <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateOpen {
		c.timer = time.AfterFunc(c.l.IdleTimeout, c.onTimer)
	}
}

// onTimer checks the idle timeout and the keepalive, and re-arms itself for
// the earliest deadline still pending. It runs on the timer's goroutine.
func (c *Conn) onTimer() {
	now := time.Since(c.start)
	last := time.Duration(c.lastRecv.Load())
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	next := time.Duration(-1)
	expired := ""
	if idle := c.l.IdleTimeout; idle > 0 && (last == 0 || c.l.datagram() && c.keepalive == 0) {
		// A stream connection must send a first byte in time. A datagram
		// pseudo-connection has no close of its own, so it is reaped after
		// idle_timeout without a datagram, unless the handler started a
		// keepalive, which then decides.
		since := now - last
		if last == 0 {
			since = now
		}
		if since >= idle {
			expired = ReasonIdleTimeout
		}
		next = idle - since
	}
	if c.keepalive > 0 && expired == "" {
		base := max(last, c.kaBase)
		if now-base >= c.keepalive {
			expired = ReasonKeepaliveTimeout
			// The handler hears of it first; the gateway closes the
			// socket itself either way.
			c.enqueueAsyncLocked(event{kind: evTimeout})
		} else if d := base + c.keepalive - now; next < 0 || d < next {
			next = d
		}
	}
	if expired != "" {
		c.closingLocked(expired)
		c.mu.Unlock()
		c.closeSocket()
		return
	}
	if next >= 0 {
		c.timer.Reset(next)
	}
	c.mu.Unlock()
}

// Send writes b to the socket now, after any bytes queued by Queue, and
// returns when it is written (or WriteTimeout passed). Like EMQX it succeeds
// on a connection that is closing (the bytes are discarded); a write error
// closes the connection and is not reported to the caller.
func (c *Conn) Send(b []byte) error {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case stateDead:
		return ErrNotAlive
	case stateClosing:
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeQueued() {
		c.write(b)
	}
	return nil
}

// Queue appends b to the connection's output without blocking and without
// keeping b. The bytes are written by the connection's event goroutine:
// right after the current callback when called from one (so a callback's
// sends go out in one write), or soon otherwise. More than
// Options.MaxQueuedBytes pending closes the connection as a slow consumer.
// Handlers that must never block, such as Wasm guests, send with Queue.
func (c *Conn) Queue(b []byte) error {
	c.mu.Lock()
	switch c.state {
	case stateDead:
		c.mu.Unlock()
		return ErrNotAlive
	case stateClosing:
		c.mu.Unlock()
		return nil
	}
	c.omu.Lock()
	if len(c.out)+len(b) > c.srv.opts.MaxQueuedBytes {
		c.omu.Unlock()
		c.mu.Unlock()
		c.closeWith("{shutdown,send_queue_full}")
		return nil
	}
	c.out = append(c.out, b...)
	if c.l.datagram() {
		c.outEnds = append(c.outEnds, len(c.out))
	}
	schedule := !c.flushing
	c.flushing = true
	c.omu.Unlock()
	if schedule {
		c.enqueueAsyncLocked(event{kind: evFlush})
	}
	c.mu.Unlock()
	return nil
}

// flush writes what Queue buffered, until nothing is left. It runs as an
// event, on the goroutine draining the connection's queue.
func (c *Conn) flush() {
	c.wmu.Lock()
	c.omu.Lock()
	for len(c.out) > 0 {
		c.writeOutLocked()
	}
	c.flushing = false
	closeNow := c.lingering
	c.lingering = false
	c.omu.Unlock()
	c.wmu.Unlock()
	if closeNow {
		c.closeSocket()
	}
}

// writeQueued writes what Queue buffered so far, under wmu, and reports
// whether writing worked (a failure discards the rest).
func (c *Conn) writeQueued() bool {
	c.omu.Lock()
	ok := true
	if len(c.out) > 0 {
		ok = c.writeOutLocked()
	}
	c.omu.Unlock()
	return ok
}

// writeOutLocked writes c.out, with omu released during the write, and
// keeps its storage for the next Queue unless it grew large. wmu and omu
// are held. A failure discards what Queue added meanwhile.
func (c *Conn) writeOutLocked() bool {
	data, ends := c.out, c.outEnds
	c.out, c.outEnds = c.spareOut[:0], c.spareEnds[:0]
	c.spareOut, c.spareEnds = nil, nil
	c.omu.Unlock()
	ok := true
	if ends == nil {
		// A stream: everything queued goes out in one write.
		ok = c.write(data)
	} else {
		// Datagrams keep their boundaries: one write each.
		start := 0
		for _, end := range ends {
			if ok = c.write(data[start:end]); !ok {
				break
			}
			start = end
		}
	}
	c.omu.Lock()
	if c.spareOut == nil && cap(data) <= 64<<10 {
		c.spareOut = data[:0]
	}
	if c.spareEnds == nil && ends != nil {
		c.spareEnds = ends[:0]
	}
	if !ok {
		c.out = c.out[:0]
		c.outEnds = c.outEnds[:0]
	}
	return ok
}

// write writes b under wmu and reports whether it worked; a failed write
// closes the connection.
func (c *Conn) write(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	var err error
	if c.raw != nil {
		err = c.raw.write(c.nc, b, c.srv.opts.WriteTimeout)
	} else {
		c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
		_, err = c.nc.Write(b)
	}
	if err != nil {
		c.srv.log.Debug("gateway: write failed", "conn", c.handle, "err", err)
		c.closeWith("{shutdown,send_error}")
		return false
	}
	return true
}

// SetHandlerState stores v with the connection for its handler back end,
// which typically sets it in OnSocketCreated and reads it in later
// callbacks. Callbacks of one connection never overlap, and the gateway
// orders them, so no further synchronization is needed between callbacks;
// other goroutines must not call it.
func (c *Conn) SetHandlerState(v any) { c.hstate = v }

// HandlerState returns what SetHandlerState stored.
func (c *Conn) HandlerState() any { return c.hstate }

// CloseWithReason closes the connection; its handler sees OnSocketClosed
// with reason. Back ends use it to name a fault, such as a Wasm trap.
func (c *Conn) CloseWithReason(reason string) { c.closeWith(reason) }

// Close closes the connection; the handler sees OnSocketClosed with
// ReasonNormal.
func (c *Conn) Close() error {
	c.mu.Lock()
	dead := c.state == stateDead
	c.mu.Unlock()
	if dead {
		return ErrNotAlive
	}
	c.closeWith(ReasonNormal)
	return nil
}

// Kick closes the connection with ReasonKicked, as an operator would.
func (c *Conn) Kick() { c.closeWith(ReasonKicked) }

// StartTimer starts or updates the keepalive: when no bytes arrive for 1.5 x
// interval seconds, the handler gets OnTimerTimeout and the gateway closes
// the connection. It is allowed before Authenticate.
func (c *Conn) StartTimer(t TimerType, interval uint32) error {
	if t != KeepAlive {
		return Errorf(CodeParamsTypeError, "gateway: unknown timer type %d", t)
	}
	if interval == 0 {
		return Errorf(CodeParamsTypeError, "gateway: keepalive interval must be > 0")
	}
	interval = min(interval, maxKeepalive)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateDead:
		return ErrNotAlive
	case stateClosing:
		return nil
	}
	c.keepalive = time.Duration(interval) * 1500 * time.Millisecond
	c.kaBase = time.Since(c.start)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.keepalive, c.onTimer)
	} else {
		c.timer.Stop()
		// onTimer computes the earliest pending deadline and re-arms.
		c.timer.Reset(0)
	}
	return nil
}

// Authenticate registers ci.ClientID for the connection after the Server's
// Authenticator (if any, and unless the listener disables it) accepts the
// credentials. Another connection holding the same client id is closed with
// ReasonDiscarded. A failed Authenticate leaves the connection open and may be
// retried; a second successful one is refused.
func (c *Conn) Authenticate(ctx context.Context, ci *ClientInfo, password string) error {
	if ci == nil {
		return Errorf(CodeRequiredParamsMissed, "gateway: clientinfo is missing")
	}
	c.mu.Lock()
	switch {
	case c.state == stateDead:
		c.mu.Unlock()
		return ErrNotAlive
	case c.state != stateOpen:
		c.mu.Unlock()
		return ErrDisconnected
	case c.authed || c.authing:
		c.mu.Unlock()
		return ErrAlreadyAuthenticated
	}
	c.authing = true
	c.mu.Unlock()

	if a := c.srv.opts.Authenticator; a != nil && !c.l.DisableAuthn {
		if err := a.Authenticate(ctx, ci, password); err != nil {
			c.mu.Lock()
			c.authing = false
			c.mu.Unlock()
			if CodeOf(err) == CodeUnknown {
				err = &Error{Code: CodePermissionDeny, Err: err}
			}
			return err
		}
	}
	mp := topic.ExpandMountpoint(c.l.Mountpoint, ci.ClientID, ci.Username)
	old := c.srv.claimClientID(ci.ClientID, c)
	if old != nil {
		c.srv.log.Info("gateway: client id taken over; discarding older connection",
			"clientid", ci.ClientID, "old", old.handle, "new", c.handle)
		old.closeWith(ReasonDiscarded)
	}
	c.mu.Lock()
	c.authing = false
	if c.state != stateOpen {
		c.mu.Unlock()
		c.srv.releaseClientID(ci.ClientID, c)
		return ErrDisconnected
	}
	c.authed = true
	c.clientID = ci.ClientID
	c.username = ci.Username
	c.mountpoint = mp
	c.mu.Unlock()
	return nil
}

// pubsubState returns the mountpoint and client id for a pub/sub call, or
// the error refusing it.
func (c *Conn) pubsubState() (mountpoint, clientID string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == stateDead:
		return "", "", ErrNotAlive
	case c.state != stateOpen:
		return "", "", ErrClosing
	case !c.authed:
		return "", "", ErrNotAuthenticated
	}
	if c.srv.opts.PubSub == nil {
		return "", "", ErrNoPubSub
	}
	return c.mountpoint, c.clientID, nil
}

func checkTopicQoS(t string, qos uint32) error {
	if t == "" {
		return Errorf(CodeRequiredParamsMissed, "gateway: topic is empty")
	}
	if qos > 2 {
		return Errorf(CodeParamsTypeError, "gateway: qos %d is not 0, 1 or 2", qos)
	}
	return nil
}

// Publish publishes payload on the mounted topic, From the connection's
// client id. The connection must be authenticated. Like all subscribers, the
// connection itself receives the message if it is subscribed.
func (c *Conn) Publish(t string, qos uint32, payload []byte) error {
	if err := checkTopicQoS(t, qos); err != nil {
		return err
	}
	mp, clientID, err := c.pubsubState()
	if err != nil {
		return err
	}
	c.published.Store(true)
	return c.srv.opts.PubSub.Publish(&Message{
		QoS:     uint8(qos),
		From:    clientID,
		Topic:   topic.Mount(mp, t),
		Payload: payload,
	})
}

// Subscribe subscribes the connection to the mounted filter. Subscribing
// again to the same filter updates its QoS. Deliveries arrive as
// OnReceivedMessages with the mountpoint stripped from their topics.
func (c *Conn) Subscribe(filter string, qos uint32) error {
	if err := checkTopicQoS(filter, qos); err != nil {
		return err
	}
	mp, _, err := c.pubsubState()
	if err != nil {
		return err
	}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if e, ok := c.subs[filter]; ok {
		e.qos = uint8(qos)
		return nil
	}
	sub, err := c.srv.opts.PubSub.Subscribe(mountFilter(mp, filter), c)
	if err != nil {
		return err
	}
	c.mu.Lock()
	open := c.state == stateOpen
	c.mu.Unlock()
	if !open {
		// Lost a race with close: terminate may already have run
		// unsubscribeAll, so undo here.
		sub.Unsubscribe()
		return ErrClosing
	}
	if c.subs == nil {
		c.subs = make(map[string]*subEntry)
	}
	c.subs[filter] = &subEntry{qos: uint8(qos), sub: sub}
	return nil
}

// Unsubscribe removes a subscription. Removing a filter the connection is not
// subscribed to succeeds.
func (c *Conn) Unsubscribe(filter string) error {
	if filter == "" {
		return Errorf(CodeRequiredParamsMissed, "gateway: topic is empty")
	}
	if _, _, err := c.pubsubState(); err != nil {
		return err
	}
	c.subMu.Lock()
	e, ok := c.subs[filter]
	delete(c.subs, filter)
	c.subMu.Unlock()
	if ok {
		return e.sub.Unsubscribe()
	}
	return nil
}

func (c *Conn) unsubscribeAll() {
	c.subMu.Lock()
	subs := c.subs
	c.subs = nil
	c.subMu.Unlock()
	for _, e := range subs {
		e.sub.Unsubscribe()
	}
}

// mountFilter applies the mountpoint to a filter, inside a $share/group/
// prefix when there is one.
func mountFilter(mp, filter string) string {
	if mp == "" {
		return filter
	}
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if group, f, ok := strings.Cut(rest, "/"); ok {
			return "$share/" + group + "/" + mp + f
		}
	}
	return mp + filter
}

// Deliver queues m for the handler. While the connection has
// MaxPendingMessages queued, Deliver waits for its handler to take them, up
// to MaxDeliveryWait since the handler last took messages: a subscriber
// that keeps up loses nothing, and its deliveries slow the publishers
// down instead (see Pacer). A subscriber that took nothing for that long
// is slow: it loses what exceeds its bound (counted in Server.Dropped)
// without making deliveries wait, until it takes a batch that shows it
// caught up (less than half the bound).
func (c *Conn) Deliver(m *Message) {
	c.mu.Lock()
	max := c.srv.opts.MaxPendingMessages
	for c.pending >= max {
		if c.state != stateOpen {
			c.mu.Unlock()
			return
		}
		wait := c.lastTake + c.srv.opts.MaxDeliveryWait - time.Since(c.start)
		if c.slow || wait <= 0 {
			if !c.slow {
				c.slow = true
				c.srv.log.Info("gateway: subscriber is slow; dropping its deliveries beyond its bound",
					"conn", c.handle, "listener", c.l.Name, "max_pending_messages", max)
			}
			c.mu.Unlock()
			c.srv.dropped.Add(1)
			return
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space, wake := c.space, c.wakeLocked()
		c.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-space:
		case <-wake:
		case <-t.C:
		case <-c.srv.stopCtx.Done():
			t.Stop()
			return
		}
		t.Stop()
		c.mu.Lock()
	}
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	if c.mountpoint != "" {
		t, ok := topic.Unmount(c.mountpoint, m.Topic)
		if ok {
			cp := *m
			cp.Topic = t
			m = &cp
		}
	}
	if c.pending == 0 {
		// The clock of MaxDeliveryWait starts with the first message
		// waiting, not at the last take, however long ago that was.
		c.lastTake = time.Since(c.start)
	}
	c.pending++
	// Deliveries that queue up while the handler is busy go out as one
	// OnReceivedMessages batch.
	if n := len(c.queue); n > 0 && c.queue[n-1].kind == evMessages {
		c.queue[n-1].msgs = append(c.queue[n-1].msgs, m)
		c.mu.Unlock()
		return
	}
	msgs := append(c.spareMsgs, m)
	c.spareMsgs = nil
	c.enqueueAsyncLocked(event{kind: evMessages, msgs: msgs})
	c.mu.Unlock()
}

// tookLocked records that the handler took n queued messages. c.mu is held.
func (c *Conn) tookLocked(n int) {
	if c.slow && n < c.srv.opts.MaxPendingMessages/2 {
		c.slow = false
	}
	c.pending -= n
	c.lastTake = time.Since(c.start)
	if c.space != nil {
		close(c.space)
		c.space = nil
	}
}

// String returns the connection's handle and peer, for logs.
func (c *Conn) String() string {
	return c.handle + "@" + c.info.Peer.String()
}

// LogValue implements slog.LogValuer.
func (c *Conn) LogValue() slog.Value { return slog.StringValue(c.String()) }
