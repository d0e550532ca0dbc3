package listener

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// wait bounds every blocking step of a test; reaching it is a failure, not a
// measurement.
const wait = 10 * time.Second

// listenUDP returns a listener whose read loop already runs, as these
// tests of the demux want (they probe it before any Accept); the tests of
// when it starts use ListenUDP.
func listenUDP(t *testing.T, cfg UDPConfig) *UDPListener {
	t.Helper()
	l, err := ListenUDP("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	l.start()
	return l
}

func dialUDP(t *testing.T, l *UDPListener) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, payload string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatal(err)
	}
}

// recv reads one datagram from c, failing the test after wait.
func recv(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read from %v: %v", c.RemoteAddr(), err)
	}
	c.SetReadDeadline(time.Time{})
	return string(buf[:n])
}

// accept returns the next pseudo-connection, failing the test after wait.
func accept(t *testing.T, l *UDPListener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(wait):
		t.Fatal("no connection accepted")
		return nil
	}
}

// barrier returns once the read loop has handled everything c sent before:
// it sends a health-check probe and waits for the reply, which the read loop
// sends after handling every earlier datagram of the socket's queue.
func barrier(t *testing.T, c *net.UDPConn) {
	t.Helper()
	send(t, c, "PING")
	if got := recv(t, c); got != "PONG" {
		t.Fatalf("barrier: got %q, want PONG", got)
	}
}

var probe = &HealthCheck{Request: []byte("PING"), Reply: []byte("PONG")}

func sameAddr(a, b net.Addr) bool { return a.String() == b.String() }

func TestUDPPeersInterleaved(t *testing.T) {
	l := listenUDP(t, UDPConfig{})
	a, b := dialUDP(t, l), dialUDP(t, l)
	send(t, a, "a0")
	ca := accept(t, l)
	send(t, b, "b0")
	cb := accept(t, l)
	if !sameAddr(ca.RemoteAddr(), a.LocalAddr()) || !sameAddr(cb.RemoteAddr(), b.LocalAddr()) {
		t.Fatalf("remote addrs %v %v, want %v %v", ca.RemoteAddr(), cb.RemoteAddr(), a.LocalAddr(), b.LocalAddr())
	}
	if _, ok := ca.RemoteAddr().(*net.UDPAddr); !ok {
		t.Fatalf("RemoteAddr is %T, want *net.UDPAddr", ca.RemoteAddr())
	}
	if !sameAddr(ca.LocalAddr(), l.Addr()) {
		t.Fatalf("LocalAddr %v, want %v", ca.LocalAddr(), l.Addr())
	}
	for i := 1; i < 20; i++ {
		send(t, a, fmt.Sprint("a", i))
		send(t, b, fmt.Sprint("b", i))
	}
	for i := range 20 {
		if got, want := recv(t, ca), fmt.Sprint("a", i); got != want {
			t.Fatalf("peer a: got %q, want %q", got, want)
		}
		if got, want := recv(t, cb), fmt.Sprint("b", i); got != want {
			t.Fatalf("peer b: got %q, want %q", got, want)
		}
	}
	// One Write is one datagram to its own peer.
	send(t, ca, "to-a")
	send(t, cb, "to-b")
	if got := recv(t, a); got != "to-a" {
		t.Fatalf("client a got %q", got)
	}
	if got := recv(t, b); got != "to-b" {
		t.Fatalf("client b got %q", got)
	}
	if st := l.Stats(); st.Peers != 2 || st.Accepted != 2 || st.QueueDrops != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUDPPerPeerOrder(t *testing.T) {
	// Batches small enough for the kernel's default socket receive buffer,
	// which drops datagrams the read loop has not taken yet.
	const batches, batch = 10, 40
	l := listenUDP(t, UDPConfig{QueueLen: batch})
	a := dialUDP(t, l)
	var c net.Conn
	for b := range batches {
		for i := range batch {
			send(t, a, fmt.Sprint(b*batch+i))
		}
		if c == nil {
			c = accept(t, l)
		}
		for i := range batch {
			if got, want := recv(t, c), fmt.Sprint(b*batch+i); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
	}
	if st := l.Stats(); st.QueueDrops != 0 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUDPQueueFullDropsOnlyTheSlowPeer(t *testing.T) {
	const queue, sent = 4, 20
	l := listenUDP(t, UDPConfig{QueueLen: queue, HealthCheck: probe})
	slow, fast := dialUDP(t, l), dialUDP(t, l)
	for i := range sent {
		send(t, slow, fmt.Sprint("s", i))
	}
	barrier(t, slow)
	cs := accept(t, l) // nobody reads it yet
	if st := l.Stats(); st.QueueDrops != sent-queue {
		t.Fatalf("queue drops %d, want %d", st.QueueDrops, sent-queue)
	}
	// The other peer is served while the slow one's queue stays full.
	send(t, fast, "f0")
	cf := accept(t, l)
	for i := range 10 {
		if i > 0 {
			send(t, fast, fmt.Sprint("f", i))
		}
		if got, want := recv(t, cf), fmt.Sprint("f", i); got != want {
			t.Fatalf("fast peer: got %q, want %q", got, want)
		}
	}
	// The slow peer gets the first datagrams, in order, and no more.
	for i := range queue {
		if got, want := recv(t, cs), fmt.Sprint("s", i); got != want {
			t.Fatalf("slow peer: got %q, want %q", got, want)
		}
	}
	cs.SetReadDeadline(time.Now())
	if _, err := cs.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of the drained queue: %v, want a timeout", err)
	}
	if st := l.Stats(); st.QueueDrops != sent-queue || st.HealthChecks != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUDPCloseThenNewConn(t *testing.T) {
	l := listenUDP(t, UDPConfig{})
	a := dialUDP(t, l)
	send(t, a, "one")
	c1 := accept(t, l)
	if got := recv(t, c1); got != "one" {
		t.Fatalf("got %q", got)
	}

	// Close unblocks a pending Read.
	errc := make(chan error, 1)
	go func() {
		_, err := c1.Read(make([]byte, 100))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the Read block; not needed for correctness
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("pending Read: %v, want net.ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := c1.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}

	send(t, a, "two")
	c2 := accept(t, l)
	if c2 == c1 {
		t.Fatal("same pseudo-connection after Close")
	}
	if got := recv(t, c2); got != "two" {
		t.Fatalf("new conn got %q", got)
	}
	if _, err := c1.Read(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closed conn Read: %v", err)
	}
	if st := l.Stats(); st.Accepted != 2 || st.Peers != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUDPHealthCheck(t *testing.T) {
	l := listenUDP(t, UDPConfig{HealthCheck: probe})
	a := dialUDP(t, l)
	send(t, a, "PING")
	if got := recv(t, a); got != "PONG" {
		t.Fatalf("reply %q", got)
	}
	if st := l.Stats(); st.Peers != 0 || st.HealthChecks != 1 {
		t.Fatalf("a probe created a connection: %+v", st)
	}
	send(t, a, "hello")
	c := accept(t, l)
	if got := recv(t, c); got != "hello" {
		t.Fatalf("first datagram of the connection %q, want hello (not the probe)", got)
	}
	// A probe from a connected peer is answered, not delivered.
	send(t, a, "PING")
	if got := recv(t, a); got != "PONG" {
		t.Fatalf("reply %q", got)
	}
	send(t, a, "after")
	if got := recv(t, c); got != "after" {
		t.Fatalf("got %q, want after", got)
	}
	if st := l.Stats(); st.Peers != 1 || st.HealthChecks != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestUDPAdmit(t *testing.T) {
	l := listenUDP(t, UDPConfig{HealthCheck: probe})
	bad, good := dialUDP(t, l), dialUDP(t, l)
	refused := bad.LocalAddr().String()
	errRefused := errors.New("refused")
	l.SetAdmit(func(remote net.Addr) error {
		if remote.String() == refused {
			return errRefused
		}
		return nil
	})
	send(t, bad, "x")
	send(t, bad, "y")
	barrier(t, bad)
	send(t, good, "ok")
	c := accept(t, l)
	if !sameAddr(c.RemoteAddr(), good.LocalAddr()) {
		t.Fatalf("accepted %v, want %v", c.RemoteAddr(), good.LocalAddr())
	}
	if st := l.Stats(); st.Refused != 2 || st.Peers != 1 {
		t.Fatalf("stats %+v", st)
	}
	l.SetAdmit(nil)
	send(t, bad, "z")
	c2 := accept(t, l)
	if got := recv(t, c2); got != "z" {
		t.Fatalf("got %q: refused datagrams must not be delivered", got)
	}
}

// never fails the test if cond holds at any time within d. It checks that
// something does not happen, so it takes d when all is well.
func never(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	end := time.NewTimer(d)
	defer end.Stop()
	for {
		if cond() {
			t.Fatal(what)
		}
		select {
		case <-tick.C:
		case <-end.C:
			return
		}
	}
}

// TestUDPAdmissionAppliesToEarlyPeers sends datagrams before the admission
// function is set, as devices do while the gateway starts (ListenUDP, then
// Serve, which calls SetAdmit): they must wait for it and be admitted or
// refused by it, not turned into connections that bypass it.
func TestUDPAdmissionAppliesToEarlyPeers(t *testing.T) {
	l, err := ListenUDP("127.0.0.1:0", UDPConfig{HealthCheck: probe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	bad, good := dialUDP(t, l), dialUDP(t, l)
	send(t, bad, "early-bad")
	send(t, good, "early-good")
	never(t, 100*time.Millisecond, "datagrams became connections before the admission function was set", func() bool {
		st := l.Stats()
		return st.Peers != 0 || st.Refused != 0
	})

	refused := bad.LocalAddr().String()
	var mu sync.Mutex
	var asked []string
	l.SetAdmit(func(remote net.Addr) error {
		mu.Lock()
		asked = append(asked, remote.String())
		mu.Unlock()
		if remote.String() == refused {
			return errors.New("refused")
		}
		return nil
	})
	barrier(t, good)
	if st := l.Stats(); st.Refused != 1 || st.Peers != 1 {
		t.Fatalf("stats %+v, want one peer refused and one admitted", st)
	}
	mu.Lock()
	got := fmt.Sprint(asked)
	mu.Unlock()
	if want := fmt.Sprint([]string{refused, good.LocalAddr().String()}); got != want {
		t.Fatalf("admit asked about %s, want %s", got, want)
	}
	c := accept(t, l)
	if !sameAddr(c.RemoteAddr(), good.LocalAddr()) {
		t.Fatalf("accepted %v, want %v", c.RemoteAddr(), good.LocalAddr())
	}
	if got := recv(t, c); got != "early-good" {
		t.Fatalf("got %q, want early-good", got)
	}
}

// TestUDPReadLoopStartsOnAccept checks that a listener used without the
// gateway (no SetAdmit) serves datagrams sent before its first Accept, and
// that one closed before it ever started closes cleanly.
func TestUDPReadLoopStartsOnAccept(t *testing.T) {
	l, err := ListenUDP("127.0.0.1:0", UDPConfig{HealthCheck: probe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a := dialUDP(t, l)
	send(t, a, "early")
	c := accept(t, l)
	if got := recv(t, c); got != "early" {
		t.Fatalf("got %q, want early", got)
	}
	barrier(t, a)

	before := runtime.NumGoroutine()
	unused, err := ListenUDP("127.0.0.1:0", UDPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unused.Close(); err != nil {
		t.Fatal(err)
	}
	unused.SetAdmit(nil) // after Close: starts nothing
	if _, err := unused.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	waitGoroutines(t, before)
}

func TestUDPAcceptQueueFull(t *testing.T) {
	l := listenUDP(t, UDPConfig{AcceptQueue: 1, HealthCheck: probe})
	a, b, c := dialUDP(t, l), dialUDP(t, l), dialUDP(t, l)
	var admitted atomic.Int32
	l.SetAdmit(func(net.Addr) error { admitted.Add(1); return nil })
	send(t, a, "a")
	send(t, b, "b")
	barrier(t, b)
	if st := l.Stats(); st.AcceptDrops != 1 || st.Peers != 1 {
		t.Fatalf("stats %+v", st)
	}
	ca := accept(t, l)
	if !sameAddr(ca.RemoteAddr(), a.LocalAddr()) {
		t.Fatalf("accepted %v, want %v", ca.RemoteAddr(), a.LocalAddr())
	}
	send(t, c, "c")
	cc := accept(t, l)
	if got := recv(t, cc); got != "c" {
		t.Fatalf("got %q", got)
	}
	barrier(t, c)
	if n := admitted.Load(); n != 2 {
		t.Fatalf("admit called %d times, want 2: a peer dropped for a full accept queue must not be admitted", n)
	}
}

func TestUDPOversizeAndShortBuffer(t *testing.T) {
	l := listenUDP(t, UDPConfig{MaxDatagram: 100, HealthCheck: probe})
	a := dialUDP(t, l)
	send(t, a, string(bytes.Repeat([]byte("x"), 101)))
	barrier(t, a)
	if st := l.Stats(); st.Oversize != 1 || st.Peers != 0 {
		t.Fatalf("stats %+v", st)
	}
	full := string(bytes.Repeat([]byte("y"), 100))
	send(t, a, full)
	c := accept(t, l)
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 10)
	n, err := c.Read(buf)
	if n != 10 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("short read: %d, %v", n, err)
	}
	send(t, a, "next")
	if got := recv(t, c); got != "next" {
		t.Fatalf("the rest of a short read leaked: got %q", got)
	}
	send(t, a, "")
	if got := recv(t, c); got != "" {
		t.Fatalf("empty datagram read as %q", got)
	}
}

func TestUDPDeadlinesAndWrites(t *testing.T) {
	l := listenUDP(t, UDPConfig{})
	a := dialUDP(t, l)
	send(t, a, "first")
	c := accept(t, l)
	recv(t, c)

	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v", err)
	}
	if _, ok := err.(net.Error); !ok {
		t.Fatalf("the timeout is a %T, not a net.Error", err)
	}

	// A deadline moved to the past unblocks a pending Read, as pion/dtls
	// relies on to cancel its reads.
	c.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the Read block; not needed for correctness
	c.SetReadDeadline(time.Unix(0, 1))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v, want a timeout", err)
		}
	case <-time.After(wait):
		t.Fatal("a past deadline did not unblock Read")
	}
	// Clearing it serves the next datagram, and a later deadline extends.
	c.SetReadDeadline(time.Now().Add(time.Hour))
	c.SetReadDeadline(time.Time{})
	send(t, a, "second")
	if got := recv(t, c); got != "second" {
		t.Fatalf("got %q", got)
	}

	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.Write([]byte("late")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline: %v", err)
	}
	c.SetWriteDeadline(time.Time{})
	if _, err := c.Write(make([]byte, MaxWrite+1)); !errors.Is(err, ErrDatagramTooLarge) {
		t.Fatalf("oversized Write: %v", err)
	}
	big := bytes.Repeat([]byte("z"), MaxWrite)
	if n, err := c.Write(big); err != nil || n != MaxWrite {
		t.Fatalf("Write of %d bytes: %d, %v", MaxWrite, n, err)
	}
	a.SetReadBuffer(1 << 20)
	if got := recv(t, a); len(got) != MaxWrite {
		t.Fatalf("client got %d bytes", len(got))
	}
}

func TestUDPCloseListener(t *testing.T) {
	before := runtime.NumGoroutine()
	l, err := ListenUDP("127.0.0.1:0", UDPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := net.DialUDP("udp", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	send(t, a, "hi")
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// A second peer waits in the accept queue, never accepted.
	b, err := net.DialUDP("udp", nil, l.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	send(t, b, "queued")

	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 10)
		for {
			if _, err := c.Read(buf); err != nil {
				readErr <- err
				return
			}
		}
	}()
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			c.Close()
		}
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, ch := range []chan error{readErr, acceptErr} {
		select {
		case err := <-ch:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("got %v, want net.ErrClosed", err)
			}
		case <-time.After(wait):
			t.Fatal("Close did not unblock Read and Accept")
		}
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if st := l.Stats(); st.Peers != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
	waitGoroutines(t, before)
}

// waitGoroutines fails unless the number of goroutines drops back to at
// most want within wait.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", n, want, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUDPListenErrors(t *testing.T) {
	if _, err := ListenUDP("not an address", UDPConfig{}); err == nil {
		t.Fatal("want an error")
	}
	l := listenUDP(t, UDPConfig{})
	if _, err := ListenUDP(l.Addr().String(), UDPConfig{}); err == nil {
		t.Fatal("want an error for a port in use")
	}
}

// TestUDPNoAllocsSteadyState checks that queuing and reading a datagram
// with a read deadline does not allocate once the pools are warm.
func TestUDPNoAllocsSteadyState(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	l := newUDPListener(nil, UDPConfig{})
	defer l.Close()
	ap := netipAddrPort("127.0.0.1:9")
	payload := []byte("payload of a datagram")
	l.deliver(ap, payload)
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	read := func() {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		if n, err := c.Read(buf); err != nil || n != len(payload) {
			t.Fatalf("read %d, %v", n, err)
		}
	}
	read()
	allocs := testing.AllocsPerRun(1000, func() {
		l.deliver(ap, payload)
		read()
	})
	if allocs > 0 {
		t.Fatalf("%.2f allocations per datagram", allocs)
	}
}

// TestUDPConcurrentClose has peers send without pause while their
// pseudo-connections are read and closed concurrently, every few
// datagrams: each datagram must arrive on a connection of its own peer, in
// order, and the race detector must stay quiet.
func TestUDPConcurrentClose(t *testing.T) {
	const peers, target = 4, 1000
	l, err := ListenUDP("127.0.0.1:0", UDPConfig{QueueLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	clients := make(map[string]int)
	var conns []*net.UDPConn
	for i := range peers {
		c := dialUDP(t, l)
		clients[c.LocalAddr().String()] = i
		conns = append(conns, c)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	var delivered atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				want, ok := clients[c.RemoteAddr().String()]
				if !ok {
					errs <- fmt.Errorf("unknown peer %v", c.RemoteAddr())
					return
				}
				buf := make([]byte, 64)
				last := -1
				for k := 0; k < 5; k++ {
					n, err := c.Read(buf)
					if err != nil {
						return // the listener closed
					}
					var peer, seq int
					if _, err := fmt.Sscanf(string(buf[:n]), "%d:%d", &peer, &seq); err != nil || peer != want || seq <= last {
						errs <- fmt.Errorf("conn of peer %d got %q after seq %d", want, buf[:n], last)
						return
					}
					last = seq
					delivered.Add(1)
				}
			}()
		}
	}()
	// Send until enough has been delivered, then stop everything. The
	// bound is a deadline, not a number of datagrams: on a loaded machine
	// the senders can outrun the readers by any factor.
	deadline := time.Now().Add(wait)
	var senders sync.WaitGroup
	for i, c := range conns {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for seq := 0; ; seq++ {
				if delivered.Load() >= target || time.Now().After(deadline) {
					return
				}
				c.Write([]byte(fmt.Sprintf("%d:%d", i, seq)))
				if seq%50 == 49 {
					time.Sleep(time.Millisecond) // let the readers keep up a little
				}
			}
		}()
	}
	senders.Wait()
	l.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := l.Stats()
	// Each connection delivers at most 5 datagrams: target deliveries
	// took at least target/5 connections.
	if delivered.Load() < target || st.Accepted < target/5 {
		t.Fatalf("delivered %d of %d within %v, stats %+v", delivered.Load(), target, wait, st)
	}
	t.Logf("delivered %d, stats %+v", delivered.Load(), st)
}
