package listener

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of UDPConfig.
const (
	DefaultQueueLen    = 64
	DefaultAcceptQueue = 1024
	DefaultMaxDatagram = 65535
)

// MaxWrite is the largest datagram a pseudo-connection writes: the UDP
// payload limit of IPv4 (65535 - 8 bytes of UDP header - 20 of IP header).
const MaxWrite = 65507

// dropLogEvery bounds the read loop's "datagrams dropped" log lines: at most
// one in this interval, with the counters at that time.
const dropLogEvery = 10 * time.Second

// UDPConfig configures ListenUDP. The zero value of every field is a usable
// default.
type UDPConfig struct {
	// QueueLen is how many datagrams are queued for one peer before further
	// datagrams of that peer are dropped (UDPStats.QueueDrops). Default 64.
	QueueLen int
	// AcceptQueue is how many new peers may wait for Accept before the
	// first datagrams of further new peers are dropped
	// (UDPStats.AcceptDrops). Default 1024.
	AcceptQueue int
	// MaxDatagram is the size of the read buffer. A longer datagram is
	// dropped and counted (UDPStats.Oversize); a truncated datagram is never
	// delivered. Default and maximum 65535, which no UDP datagram exceeds.
	MaxDatagram int
	// HealthCheck, if set, answers load-balancer probes. Default: none.
	HealthCheck *HealthCheck
	// Logger receives the listener's logs. Default: slog.Default().
	Logger *slog.Logger
}

// HealthCheck is ExProto's udp health_check: a datagram equal to Request is
// answered with Reply, from the listening socket, and creates no
// connection. It is checked before the peer table, so it is answered for
// peers with a live pseudo-connection too (and not delivered to it).
type HealthCheck struct {
	Request, Reply []byte
}

// UDPStats are the counters of a UDPListener.
type UDPStats struct {
	Peers        int    // live pseudo-connections, accepted or waiting for Accept
	Accepted     uint64 // pseudo-connections returned by Accept
	QueueDrops   uint64 // datagrams dropped because their peer's queue was full
	AcceptDrops  uint64 // first datagrams of new peers dropped because the accept queue was full
	Oversize     uint64 // datagrams dropped because they exceeded MaxDatagram
	Refused      uint64 // first datagrams of new peers refused by the admit function
	HealthChecks uint64 // health-check probes answered
}

// UDPListener demultiplexes one UDP socket into one pseudo-connection per
// peer ip:port. It implements net.Listener and is safe for concurrent use.
// It owns one goroutine, the read loop, which the first SetAdmit or Accept
// starts (see ListenUDP) and Close stops and waits for.
type UDPListener struct {
	pc          *net.UDPConn
	addr        *net.UDPAddr
	log         *slog.Logger
	health      *HealthCheck // a private copy; nil when off
	queueLen    int
	maxDatagram int

	admit atomic.Pointer[func(net.Addr) error]

	mu     sync.Mutex
	peers  map[netip.AddrPort]*udpConn // guarded by mu
	closed bool                        // guarded by mu

	// accept holds new pseudo-connections until Accept takes them. Only
	// deliver sends on it, and deliver runs on one goroutine at a time (the
	// read loop), which is what lets it check for room before admitting.
	accept    chan *udpConn
	done      chan struct{} // closed by Close
	startOnce sync.Once     // starts the read loop
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // the read loop

	accepted, queueDrops, acceptDrops, oversize, refused, healthChecks atomic.Uint64

	lastDropLog time.Time // read loop only
	loggedDrops uint64    // read loop only
}

// ListenUDP listens on addr ("host:port"; port 0 picks one). Close
// releases the socket.
//
// The read loop starts at the first call of SetAdmit or Accept, whichever
// comes first, not in ListenUDP: a caller that sets an admission function
// before its first Accept, as gateway.Server.Serve does, has it applied to
// every peer, those whose datagrams arrived between ListenUDP and SetAdmit
// included. Until then datagrams wait in the socket's receive buffer (the
// kernel drops what does not fit, as it does for any slow reader) and
// health-check probes are not answered yet. A listener used without the
// gateway starts at its first Accept.
func ListenUDP(addr string, cfg UDPConfig) (*UDPListener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listener: udp address %q: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listener: listen udp %s: %w", addr, err)
	}
	return newUDPListener(pc, cfg), nil
}

// start starts the read loop, once, unless the listener is closed or has no
// socket (tests of the demux).
func (l *UDPListener) start() {
	l.startOnce.Do(func() {
		// Under mu, which Close takes to set closed before it waits for
		// the read loop: the loop is either counted in wg before that
		// Wait or never started.
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed || l.pc == nil {
			return
		}
		l.wg.Add(1)
		go l.readLoop()
	})
}

// newUDPListener builds a listener around pc (nil in tests of the demux)
// without starting its read loop.
func newUDPListener(pc *net.UDPConn, cfg UDPConfig) *UDPListener {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.AcceptQueue <= 0 {
		cfg.AcceptQueue = DefaultAcceptQueue
	}
	if cfg.MaxDatagram <= 0 || cfg.MaxDatagram > DefaultMaxDatagram {
		cfg.MaxDatagram = DefaultMaxDatagram
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &UDPListener{
		pc:          pc,
		log:         cfg.Logger,
		queueLen:    cfg.QueueLen,
		maxDatagram: cfg.MaxDatagram,
		peers:       make(map[netip.AddrPort]*udpConn),
		accept:      make(chan *udpConn, cfg.AcceptQueue),
		done:        make(chan struct{}),
	}
	if pc != nil {
		l.addr, _ = pc.LocalAddr().(*net.UDPAddr)
	}
	if l.addr == nil {
		l.addr = &net.UDPAddr{}
	}
	if h := cfg.HealthCheck; h != nil {
		l.health = &HealthCheck{Request: bytes.Clone(h.Request), Reply: bytes.Clone(h.Reply)}
	}
	return l
}

// Accept returns the pseudo-connection of the next new peer, waiting for
// one. After Close it returns an error wrapping net.ErrClosed. It is safe to
// call from several goroutines. The first call starts the read loop, if
// SetAdmit has not.
//
// A pseudo-connection is a net.Conn whose methods are safe for concurrent
// use. Read returns exactly one datagram per call; a datagram longer than
// the buffer is cut, and Read returns what fits with an error wrapping
// io.ErrShortBuffer (read with a buffer of MaxDatagram bytes to avoid it).
// Write sends its whole argument as one datagram from the listener's socket
// and refuses more than MaxWrite bytes (ErrDatagramTooLarge). Read and
// write deadlines work as net.Conn specifies (a deadline in the past
// interrupts a pending Read); the write deadline is checked when a Write
// starts, since the socket is shared. Close forgets the peer, so its next
// datagram creates a new pseudo-connection; it discards queued datagrams,
// makes pending and later Reads fail with net.ErrClosed, leaves the socket
// open, and is idempotent. RemoteAddr is the peer's *net.UDPAddr, LocalAddr
// the listener's address.
func (l *UDPListener) Accept() (net.Conn, error) {
	l.start()
	select {
	case <-l.done:
		return nil, l.errClosed()
	default:
	}
	select {
	case c := <-l.accept:
		l.accepted.Add(1)
		return c, nil
	case <-l.done:
		return nil, l.errClosed()
	}
}

func (l *UDPListener) errClosed() error {
	return fmt.Errorf("listener: accept on udp %s: %w", l.addr, net.ErrClosed)
}

// Close closes the socket and every pseudo-connection, accepted or not, and
// waits for the read loop to end. Pending Accept and Read calls return
// errors wrapping net.ErrClosed. Pseudo-connections still waiting for
// Accept are closed without being handed out (an admit function that
// reserved a slot for them is not told). Close is idempotent; every call
// returns the error of closing the socket, if any.
func (l *UDPListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		if l.pc != nil {
			if err := l.pc.Close(); err != nil {
				l.closeErr = fmt.Errorf("listener: close udp %s: %w", l.addr, err)
			}
		}
		l.wg.Wait()
		l.mu.Lock()
		peers := l.peers
		l.peers = nil
		l.mu.Unlock()
		for _, c := range peers {
			c.Close()
		}
		// Every queued connection was in peers and is closed now.
	drain:
		for {
			select {
			case <-l.accept:
			default:
				break drain
			}
		}
	})
	return l.closeErr
}

// Addr returns the socket's address, a *net.UDPAddr.
func (l *UDPListener) Addr() net.Addr { return l.addr }

// SetAdmit sets the function that decides on a peer the listener does not
// know, from the read loop, before its pseudo-connection is created: a
// non-nil error drops the datagram (counted in UDPStats.Refused) and
// creates nothing, and the peer's next datagram asks again. f is called only
// when the accept queue has room, so an admitted peer is always handed to
// Accept (unless the listener closes first). f must be cheap and must not
// block: it runs in the loop that reads every peer's datagrams. A nil f
// admits every peer.
//
// The first call starts the read loop (see ListenUDP), after installing f:
// called before the first Accept, as the gateway core does, f decides on
// every peer, including those that sent before it was set. SetAdmit is safe
// to call at any time; a later call applies to the peers that are new from
// then on.
func (l *UDPListener) SetAdmit(f func(remote net.Addr) error) {
	if f == nil {
		l.admit.Store(nil)
	} else {
		l.admit.Store(&f)
	}
	l.start()
}

// Stats returns the listener's counters. It is safe to call at any time.
func (l *UDPListener) Stats() UDPStats {
	l.mu.Lock()
	peers := len(l.peers)
	l.mu.Unlock()
	return UDPStats{
		Peers:        peers,
		Accepted:     l.accepted.Load(),
		QueueDrops:   l.queueDrops.Load(),
		AcceptDrops:  l.acceptDrops.Load(),
		Oversize:     l.oversize.Load(),
		Refused:      l.refused.Load(),
		HealthChecks: l.healthChecks.Load(),
	}
}

// readLoop reads the socket until Close and hands each datagram to
// handle: through recvmmsg, several at a time, where the system has it
// (see udp_linux.go), else one per ReadFromUDPAddrPort.
func (l *UDPListener) readLoop() {
	defer l.wg.Done()
	// One byte more than the limit, to tell an oversized datagram from one
	// that just fits.
	size := l.maxDatagram + 1
	br := newBatchReader(l.pc, size)
	var buf []byte
	var backoff time.Duration
	for {
		var err error
		if br != nil {
			err = br.readSome(l.handle)
			if errors.Is(err, errNoRecvmmsg) {
				br, err = nil, nil
			}
		} else {
			if buf == nil {
				buf = make([]byte, size)
			}
			var n int
			var ap netip.AddrPort
			if n, ap, err = l.pc.ReadFromUDPAddrPort(buf); err == nil {
				l.handle(ap, buf[:n])
			}
		}
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP errors reported on the socket (some systems do) and the
			// like: log, back off briefly so a persistent error does not
			// spin, and keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Debug("listener: udp read failed; retrying", "addr", l.addr, "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
	}
}

// handle drops b (from ap) if it is oversized, or hands it to deliver and
// sends the health-check reply deliver may return. It runs on the read
// loop.
func (l *UDPListener) handle(ap netip.AddrPort, b []byte) {
	if len(b) > l.maxDatagram {
		l.oversize.Add(1)
		l.logDrops()
		return
	}
	if reply := l.deliver(ap, b); reply != nil {
		// A UDP send waits only for room in the socket's send buffer.
		if _, err := l.pc.WriteToUDPAddrPort(reply, ap); err != nil {
			l.log.Debug("listener: health-check reply failed", "addr", l.addr, "peer", ap, "err", err)
		}
	}
}

func (l *UDPListener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// deliver routes one datagram from ap: it answers a health check (returning
// the reply to send), queues the datagram for the peer's pseudo-connection,
// or creates one. It copies b and never blocks. Only one goroutine at a time
// may call it (the read loop; the fuzz test).
func (l *UDPListener) deliver(ap netip.AddrPort, b []byte) (reply []byte) {
	if h := l.health; h != nil && bytes.Equal(b, h.Request) {
		l.healthChecks.Add(1)
		return h.Reply
	}
	d := newDatagram(b)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		d.free()
		return nil
	}
	if c := l.peers[ap]; c != nil {
		// The send happens under mu, so that a pseudo-connection removed
		// from peers (closed) never receives another datagram.
		select {
		case c.q <- d:
			l.mu.Unlock()
		default:
			l.mu.Unlock()
			d.free()
			l.queueDrops.Add(1)
			l.logDrops()
		}
		return nil
	}
	l.mu.Unlock()

	// A new peer. Only this goroutine sends on accept, so room seen here is
	// still there below: an admitted peer is never dropped.
	if len(l.accept) == cap(l.accept) {
		d.free()
		l.acceptDrops.Add(1)
		l.logDrops()
		return nil
	}
	raddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	if f := l.admit.Load(); f != nil {
		if err := (*f)(raddr); err != nil {
			d.free()
			l.refused.Add(1)
			return nil
		}
	}
	c := newUDPConn(l, ap, raddr)
	c.q <- d // the queue is new and empty
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.drain()
		return nil
	}
	l.peers[ap] = c
	l.mu.Unlock()
	l.accept <- c
	return nil
}

// remove forgets c's peer, if c is still its pseudo-connection.
func (l *UDPListener) remove(c *udpConn) {
	l.mu.Lock()
	if l.peers[c.ap] == c {
		delete(l.peers, c.ap)
	}
	l.mu.Unlock()
}

// logDrops logs the drop counters, at most once per dropLogEvery, when they
// moved. It runs on the read loop.
func (l *UDPListener) logDrops() {
	now := time.Now()
	if now.Sub(l.lastDropLog) < dropLogEvery {
		return
	}
	q, a, o := l.queueDrops.Load(), l.acceptDrops.Load(), l.oversize.Load()
	if total := q + a + o; total != l.loggedDrops {
		l.loggedDrops = total
		l.lastDropLog = now
		l.log.Warn("listener: udp datagrams dropped", "addr", l.addr,
			"queue_full", q, "accept_queue_full", a, "oversize", o)
	}
}
