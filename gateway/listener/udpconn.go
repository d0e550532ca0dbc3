package listener

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/protogate/protogate/gateway"
)

// ErrDatagramTooLarge is wrapped by the error of a pseudo-connection Write
// of more than MaxWrite bytes.
var ErrDatagramTooLarge = errors.New("datagram too large")

// udpConn is the pseudo-connection of one peer of a UDPListener. Its methods
// are safe for concurrent use; concurrent Reads each get whole datagrams.
type udpConn struct {
	l     *UDPListener
	ap    netip.AddrPort // the peer, as the socket reports it: table key and write destination
	raddr *net.UDPAddr   // the peer, IPv4-mapped addresses unmapped

	q         chan datagram // filled by the read loop, under l.mu
	closed    chan struct{}
	closeOnce sync.Once

	rd deadline // read deadline

	wmu sync.Mutex
	wd  time.Time // write deadline; guarded by wmu
}

var (
	_ net.Conn               = (*udpConn)(nil)
	_ gateway.DatagramReader = (*udpConn)(nil)
)

func newUDPConn(l *UDPListener, ap netip.AddrPort, raddr *net.UDPAddr) *udpConn {
	return &udpConn{
		l:      l,
		ap:     ap,
		raddr:  raddr,
		q:      make(chan datagram, l.queueLen),
		closed: make(chan struct{}),
		rd:     deadline{ch: make(chan struct{})},
	}
}

// Read reads the next datagram of the peer into b and returns its length:
// exactly one datagram per call. If b is shorter than the datagram, Read
// copies what fits, discards the rest and returns len(b) with an error
// wrapping io.ErrShortBuffer; a reader that never wants that passes a
// buffer of UDPConfig.MaxDatagram bytes. An empty datagram reads as 0, nil.
// Read waits for a datagram until the read deadline (an error wrapping
// os.ErrDeadlineExceeded, a net.Error whose Timeout is true) or Close (an
// error wrapping net.ErrClosed).
func (c *udpConn) Read(b []byte) (int, error) {
	d, err := c.next()
	if err != nil {
		return 0, err
	}
	n := copy(b, d.bytes())
	short := n < d.n
	d.free()
	if short {
		return n, c.opError("read", io.ErrShortBuffer)
	}
	return n, nil
}

// ReadDatagram implements gateway.DatagramReader: it waits for the next
// datagram as Read does and calls f with it, in the storage it was queued
// in, which goes back to its pool when f returns. A peer's queued
// datagrams take storage of about their own size (see newDatagram) and a
// reader waiting in ReadDatagram none.
func (c *udpConn) ReadDatagram(f func(b []byte)) error {
	d, err := c.next()
	if err != nil {
		return err
	}
	f(d.bytes())
	d.free()
	return nil
}

// next waits for the peer's next datagram, the read deadline or Close.
func (c *udpConn) next() (datagram, error) {
	select {
	case <-c.closed:
		return datagram{}, c.opError("read", net.ErrClosed)
	default:
	}
	expired := c.rd.wait()
	select {
	case <-expired:
		return datagram{}, c.opError("read", os.ErrDeadlineExceeded)
	default:
	}
	select {
	case d := <-c.q:
		return d, nil
	case <-c.closed:
		return datagram{}, c.opError("read", net.ErrClosed)
	case <-expired:
		return datagram{}, c.opError("read", os.ErrDeadlineExceeded)
	}
}

// Write sends b to the peer as one datagram, from the listener's socket. A
// b longer than MaxWrite is refused with an error wrapping
// ErrDatagramTooLarge. The write deadline is checked when Write starts: the
// socket is shared, so a send in progress is not interrupted (it waits at
// most for room in the socket's send buffer).
func (c *udpConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, c.opError("write", net.ErrClosed)
	default:
	}
	if len(b) > MaxWrite {
		return 0, c.opError("write", fmt.Errorf("%w: %d bytes, more than the udp limit of %d", ErrDatagramTooLarge, len(b), MaxWrite))
	}
	c.wmu.Lock()
	wd := c.wd
	c.wmu.Unlock()
	if !wd.IsZero() && !time.Now().Before(wd) {
		return 0, c.opError("write", os.ErrDeadlineExceeded)
	}
	if c.l.pc == nil {
		return 0, c.opError("write", net.ErrClosed)
	}
	n, err := c.l.pc.WriteToUDPAddrPort(b, c.ap)
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// Close ends the pseudo-connection: the listener forgets the peer (its next
// datagram creates a new pseudo-connection), queued datagrams are
// discarded, and pending and later Reads and Writes fail with an error
// wrapping net.ErrClosed. The shared socket stays open. Close is idempotent
// and always returns nil.
func (c *udpConn) Close() error {
	c.closeOnce.Do(func() {
		c.l.remove(c)
		close(c.closed)
		c.rd.stop()
		c.drain()
	})
	return nil
}

// drain frees the queued datagrams.
func (c *udpConn) drain() {
	for {
		select {
		case d := <-c.q:
			d.free()
		default:
			return
		}
	}
}

// LocalAddr returns the listener's address.
func (c *udpConn) LocalAddr() net.Addr { return c.l.addr }

// RemoteAddr returns the peer's address, a *net.UDPAddr.
func (c *udpConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets the read and write deadlines.
func (c *udpConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; a deadline in the past (or
// reached) makes pending and later Reads fail at once, as net.Conn
// requires. It is safe to call concurrently with Read.
func (c *udpConn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline, checked when Write starts.
func (c *udpConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	c.wd = t
	c.wmu.Unlock()
	return nil
}

// opError wraps err as the error of op on c.
func (c *udpConn) opError(op string, err error) error {
	return &connError{op: op, peer: c.raddr.AddrPort(), err: err}
}

// connError is the error of a pseudo-connection's I/O. It implements
// net.Error, so timeouts are recognized by type assertion as well as by
// errors.Is(err, os.ErrDeadlineExceeded).
type connError struct {
	op   string
	peer netip.AddrPort
	err  error
}

func (e *connError) Error() string {
	return "listener: " + e.op + " udp " + e.peer.String() + ": " + e.err.Error()
}

func (e *connError) Unwrap() error { return e.err }

// Timeout reports whether a deadline was exceeded.
func (e *connError) Timeout() bool { return errors.Is(e.err, os.ErrDeadlineExceeded) }

// Temporary is Timeout, as for the net package's errors.
func (e *connError) Temporary() bool { return e.Timeout() }

// deadline is a resettable deadline: a channel closed when it passes. The
// channel is replaced only when a deadline is set after the previous one
// passed, and the timer is reused, so setting and waiting in steady state
// do not allocate. It is safe for concurrent use.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer   // created on first use, then Reset
	when  time.Time     // the armed deadline; zero when none
	ch    chan struct{} // closed once when passes
}

// set arms the deadline for t; the zero t disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
	expired := isClosed(d.ch)
	d.when = t
	if t.IsZero() {
		if expired {
			d.ch = make(chan struct{})
		}
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		if !expired {
			close(d.ch)
		}
		return
	}
	if expired {
		d.ch = make(chan struct{})
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(dur, d.fire)
	} else {
		d.timer.Reset(dur)
	}
}

// fire runs on the timer. A run that finds the deadline still ahead (it was
// moved while the run started, or the wall clock was set back) re-arms the
// timer for it.
func (d *deadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.when.IsZero() || isClosed(d.ch) {
		return
	}
	if rem := time.Until(d.when); rem > 0 {
		d.timer.Reset(rem)
		return
	}
	close(d.ch)
}

// wait returns a channel that is closed when the current deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// stop releases the timer.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Datagram storage comes from pools by size class, so that a queued
// datagram holds about its own size, not a full read buffer.
var bufClasses = [...]int{512, 2048, 8192, 65536}

var bufPools [len(bufClasses)]sync.Pool // of *[]byte

// datagram is one queued datagram in pooled storage.
type datagram struct {
	p     *[]byte
	n     int
	class uint8
}

// newDatagram copies b (at most 65536 bytes) into pooled storage.
func newDatagram(b []byte) datagram {
	i := 0
	for i < len(bufClasses)-1 && bufClasses[i] < len(b) {
		i++
	}
	p, _ := bufPools[i].Get().(*[]byte)
	if p == nil {
		s := make([]byte, bufClasses[i])
		p = &s
	}
	return datagram{p: p, n: copy(*p, b), class: uint8(i)}
}

func (d datagram) bytes() []byte { return (*d.p)[:d.n] }

// free returns the storage to its pool; d must not be used afterwards.
func (d datagram) free() { bufPools[d.class].Put(d.p) }
