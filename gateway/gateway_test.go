package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const wait = 15 * time.Second

// fakePubSub delivers synchronously to every subscriber of an exact filter.
// It is enough to exercise the core; the real broker has its own tests.
type fakePubSub struct {
	mu   sync.Mutex
	subs map[string][]Subscriber
}

func (f *fakePubSub) Publish(m *Message) error {
	f.mu.Lock()
	subs := append([]Subscriber(nil), f.subs[m.Topic]...)
	f.mu.Unlock()
	for _, s := range subs {
		s.Deliver(m)
	}
	return nil
}

func (f *fakePubSub) Subscribe(_ context.Context, filter string, s Subscriber) (Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = make(map[string][]Subscriber)
	}
	f.subs[filter] = append(f.subs[filter], s)
	return &fakeSub{f: f, filter: filter, s: s}, nil
}

type fakeSub struct {
	f      *fakePubSub
	filter string
	s      Subscriber
	once   sync.Once
}

func (fs *fakeSub) Unsubscribe() error {
	fs.once.Do(func() {
		fs.f.mu.Lock()
		defer fs.f.mu.Unlock()
		list := fs.f.subs[fs.filter]
		for i, s := range list {
			if s == fs.s {
				fs.f.subs[fs.filter] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	})
	return nil
}

// checker is a Handler that verifies the event model and lets tests hook
// callbacks.
type checker struct {
	t        testing.TB
	mu       sync.Mutex
	inflight map[uint64]bool
	seen     map[uint64][]string
	reasons  map[uint64]string
	closed   chan *Conn
	created  chan *Conn

	onCreated  func(c *Conn) error
	onBytes    func(c *Conn, b []byte) error
	onMessages func(c *Conn, msgs []*Message) error
}

func newChecker(t testing.TB) *checker {
	return &checker{
		t:        t,
		inflight: make(map[uint64]bool),
		seen:     make(map[uint64][]string),
		reasons:  make(map[uint64]string),
		closed:   make(chan *Conn, 1024),
		created:  make(chan *Conn, 1024),
	}
}

func (h *checker) enter(c *Conn, kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := c.ID()
	ev := h.seen[id]
	switch {
	case h.inflight[id]:
		h.t.Errorf("%s: %s while a callback is in flight", c, kind)
	case len(ev) == 0 && kind != "created":
		h.t.Errorf("%s: first callback %s", c, kind)
	case len(ev) > 0 && ev[len(ev)-1] == "closed":
		h.t.Errorf("%s: %s after closed", c, kind)
	}
	h.inflight[id] = true
	h.seen[id] = append(ev, kind)
}

func (h *checker) leave(c *Conn) {
	h.mu.Lock()
	h.inflight[c.ID()] = false
	h.mu.Unlock()
}

func (h *checker) OnSocketCreated(_ context.Context, c *Conn, _ *ConnInfo) error {
	h.enter(c, "created")
	defer h.leave(c)
	h.created <- c
	if h.onCreated != nil {
		return h.onCreated(c)
	}
	return nil
}

func (h *checker) OnReceivedBytes(_ context.Context, c *Conn, b []byte) error {
	h.enter(c, "bytes")
	defer h.leave(c)
	if h.onBytes != nil {
		return h.onBytes(c, b)
	}
	return nil
}

func (h *checker) OnTimerTimeout(_ context.Context, c *Conn, _ TimerType) error {
	h.enter(c, "timeout")
	defer h.leave(c)
	return nil
}

func (h *checker) OnReceivedMessages(_ context.Context, c *Conn, msgs []*Message) error {
	h.enter(c, "messages")
	defer h.leave(c)
	if h.onMessages != nil {
		return h.onMessages(c, msgs)
	}
	return nil
}

func (h *checker) OnSocketClosed(_ context.Context, c *Conn, reason string) error {
	h.enter(c, "closed")
	defer h.leave(c)
	h.mu.Lock()
	h.reasons[c.ID()] = reason
	h.mu.Unlock()
	h.closed <- c
	return nil
}

// finalCheck verifies every connection ended with exactly one closed.
func (h *checker) finalCheck() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, ev := range h.seen {
		n := 0
		for _, k := range ev {
			if k == "closed" {
				n++
			}
		}
		if n != 1 || ev[len(ev)-1] != "closed" {
			h.t.Errorf("conn %x: events %v", id, ev)
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serve starts a Server with h on a loopback listener and returns it with the
// listener's address. Cleanup shuts it down and checks the event model.
func serve(t *testing.T, h *checker, opts Options, l Listener) (*Server, string) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Handler = h
	if l.Name == "" {
		l.Name = "test"
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln, &l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		h.finalCheck()
	})
	return s, ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func recv[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatal("timed out")
		var zero T
		return zero
	}
}

func TestCallsFromInsideOnSocketCreated(t *testing.T) {
	ps := &fakePubSub{}
	h := newChecker(t)
	results := make(chan error, 8)
	h.onCreated = func(c *Conn) error {
		// Everything a handler may do, from inside the first callback.
		results <- c.Send([]byte("welcome\n"))
		results <- c.StartTimer(KeepAlive, 30)
		results <- c.Authenticate(context.Background(), &ClientInfo{ClientID: "in-created"}, "")
		results <- c.Subscribe(context.Background(), "greet", 1)
		results <- c.Publish("greet", 1, []byte("self"))
		return nil
	}
	got := make(chan string, 1)
	h.onMessages = func(c *Conn, msgs []*Message) error {
		got <- string(msgs[0].Payload) + " from " + msgs[0].From
		return c.Close()
	}
	_, addr := serve(t, h, Options{PubSub: ps}, Listener{})
	nc := dial(t, addr)
	for range 5 {
		if err := recv(t, results); err != nil {
			t.Fatal(err)
		}
	}
	if s := recv(t, got); s != "self from in-created" {
		t.Fatalf("delivery %q", s)
	}
	nc.SetReadDeadline(time.Now().Add(wait))
	b, _ := io.ReadAll(nc)
	if string(b) != "welcome\n" {
		t.Fatalf("device read %q", b)
	}
	c := recv(t, h.closed)
	if r := h.reasons[c.ID()]; r != ReasonNormal {
		t.Errorf("reason %q", r)
	}
}

func TestHammer(t *testing.T) {
	ps := &fakePubSub{}
	h := newChecker(t)
	var bytesSeen atomic.Int64
	h.onCreated = func(c *Conn) error {
		if err := c.Authenticate(context.Background(), &ClientInfo{ClientID: c.Handle()}, ""); err != nil {
			return err
		}
		return c.Subscribe(context.Background(), "all", 0)
	}
	h.onBytes = func(c *Conn, b []byte) error {
		bytesSeen.Add(int64(len(b)))
		if bytes.Contains(b, []byte("X")) {
			return c.Close()
		}
		return c.Publish("all", 0, b)
	}
	before := runtime.NumGoroutine()
	s, addr := serve(t, h, Options{PubSub: ps, MaxPendingMessages: 64}, Listener{})
	const conns, writes = 40, 50
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.DialTimeout("tcp", addr, wait)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			go io.Copy(io.Discard, nc)
			for j := range writes {
				msg := "m"
				if i%4 == 0 && j == writes/2 {
					msg = "X" // some connections close themselves midway
				}
				if _, err := nc.Write([]byte(msg)); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	// The devices are done writing, not the gateway reading: on a loaded
	// machine Shutdown could close every connection before a read. Shut
	// down once bytes have reached the handler, while the rest is still
	// being served.
	deadline := time.Now().Add(wait)
	for bytesSeen.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no bytes reached the handler")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if s.NumConns() != 0 {
		t.Errorf("%d connections still registered", s.NumConns())
	}
	// Every goroutine the server started is gone.
	deadline = time.Now().Add(wait)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestDeliveriesBoundedAndBatched(t *testing.T) {
	ps := &fakePubSub{}
	h := newChecker(t)
	release := make(chan struct{})
	batches := make(chan int, 64)
	subscribed := make(chan struct{})
	h.onCreated = func(c *Conn) error {
		if err := c.Authenticate(context.Background(), &ClientInfo{ClientID: "busy"}, ""); err != nil {
			return err
		}
		if err := c.Subscribe(context.Background(), "t", 0); err != nil {
			return err
		}
		close(subscribed)
		return nil
	}
	first := true
	entered := make(chan struct{})
	h.onMessages = func(c *Conn, msgs []*Message) error {
		if first {
			first = false
			close(entered)
			<-release // the handler is busy while deliveries pile up
		}
		batches <- len(msgs)
		return nil
	}
	s, addr := serve(t, h, Options{PubSub: ps, MaxPendingMessages: 10}, Listener{})
	dial(t, addr)
	// h.created is sent before onCreated runs; publishing then could
	// precede the subscription.
	recv(t, subscribed)
	ps.Publish(&Message{Topic: "t"}) // taken by the busy callback
	recv(t, entered)
	for range 10 {
		ps.Publish(&Message{Topic: "t"}) // fills the queue
	}
	// The next delivery waits for the busy handler instead of dropping:
	// its device is not the one that is slow.
	published := make(chan struct{})
	go func() {
		ps.Publish(&Message{Topic: "t"})
		close(published)
	}()
	close(release)
	recv(t, published)
	// What piled up arrives as one batch of MaxPendingMessages, and the
	// delivery that waited after it.
	for i, want := range []int{1, 10, 1} {
		if n := recv(t, batches); n != want {
			t.Fatalf("batch %d has %d messages, want %d", i, n, want)
		}
	}
	if d := s.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0", d)
	}
}

func TestHandlerErrorClosesWithReason(t *testing.T) {
	h := newChecker(t)
	h.onBytes = func(*Conn, []byte) error { return errors.New("boom") }
	_, addr := serve(t, h, Options{}, Listener{})
	nc := dial(t, addr)
	nc.Write([]byte("x"))
	c := recv(t, h.closed)
	h.mu.Lock()
	r := h.reasons[c.ID()]
	h.mu.Unlock()
	if r != "{shutdown,{error,{on_received_bytes,boom}}}" {
		t.Errorf("reason %q", r)
	}
}

func TestOnSocketCreatedErrorRefusesConnection(t *testing.T) {
	h := newChecker(t)
	h.onCreated = func(*Conn) error { return errors.New("module broken") }
	_, addr := serve(t, h, Options{}, Listener{})
	nc := dial(t, addr)
	nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v, want EOF", err)
	}
	c := recv(t, h.closed)
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.reasons[c.ID()]; !strings.Contains(r, "on_socket_created") {
		t.Errorf("reason %q", r)
	}
}

func TestCloseAfterDeathIsNotAlive(t *testing.T) {
	h := newChecker(t)
	s, addr := serve(t, h, Options{PubSub: &fakePubSub{}}, Listener{})
	nc := dial(t, addr)
	c := recv(t, h.created)
	nc.Close()
	recv(t, h.closed)
	deadline := time.Now().Add(wait)
	for {
		_, err := s.Lookup(c.Handle())
		if errors.Is(err, ErrNotAlive) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("handle still alive")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	for name, err := range map[string]error{
		"send":         c.Send([]byte("x")),
		"close":        c.Close(),
		"start timer":  c.StartTimer(KeepAlive, 1),
		"authenticate": c.Authenticate(context.Background(), &ClientInfo{}, ""),
		"publish":      c.Publish("t", 0, nil),
		"subscribe":    c.Subscribe(context.Background(), "t", 0),
		"unsubscribe":  c.Unsubscribe("t"),
	} {
		if CodeOf(err) != CodeNotAlive {
			t.Errorf("%s on a dead connection: %v, want CONN_PROCESS_NOT_ALIVE", name, err)
		}
	}
}

func TestHandles(t *testing.T) {
	for _, id := range []uint64{0, 1, 0xdeadbeef, 1<<64 - 1} {
		h := formatHandle(id)
		got, ok := parseHandle(h)
		if !ok || got != id || len(h) != 16 {
			t.Errorf("handle %q of %x parsed to %x, %v", h, id, got, ok)
		}
	}
	for _, h := range []string{"", "0", "000000000000000g", "00000000000000000", "ABCDEF0123456789", "+0000000000000001"} {
		if _, ok := parseHandle(h); ok {
			t.Errorf("parseHandle(%q) accepted", h)
		}
	}
}

func FuzzParseHandle(f *testing.F) {
	f.Add("0123456789abcdef")
	f.Add("g2gDZAANbm9ub2Rl")
	f.Fuzz(func(t *testing.T, h string) {
		id, ok := parseHandle(h)
		if ok && formatHandle(id) != h {
			t.Fatalf("%q parsed to %x which formats as %q", h, id, formatHandle(id))
		}
	})
}

func TestCodeStrings(t *testing.T) {
	for c, want := range map[Code]string{
		CodeSuccess: "SUCCESS", CodeUnknown: "UNKNOWN", CodeNotAlive: "CONN_PROCESS_NOT_ALIVE",
		CodeRequiredParamsMissed: "REQUIRED_PARAMS_MISSED", CodeParamsTypeError: "PARAMS_TYPE_ERROR",
		CodePermissionDeny: "PERMISSION_DENY", Code(42): "Code(42)",
	} {
		if c.String() != want {
			t.Errorf("%d: %q, want %q", c, c.String(), want)
		}
	}
	wrapped := fmt.Errorf("outer: %w", ErrBadTopic)
	if CodeOf(wrapped) != CodeParamsTypeError || CodeOf(nil) != CodeSuccess || CodeOf(io.EOF) != CodeUnknown {
		t.Error("CodeOf does not follow the error chain")
	}
}

func TestMountFilter(t *testing.T) {
	for _, tc := range []struct{ mp, filter, want string }{
		{"", "a/b", "a/b"},
		{"ct/", "a/#", "ct/a/#"},
		{"ct/", "$share/g/a/+", "$share/g/ct/a/+"},
		{"ct/", "$share/g", "ct/$share/g"},
	} {
		if got := mountFilter(tc.mp, tc.filter); got != tc.want {
			t.Errorf("mountFilter(%q, %q) = %q, want %q", tc.mp, tc.filter, got, tc.want)
		}
	}
}

func TestQueueThenCloseDeliversBytes(t *testing.T) {
	h := newChecker(t)
	h.onBytes = func(c *Conn, b []byte) error {
		// Queued bytes go out in order and before the close.
		for _, part := range []string{"one ", "two ", "three"} {
			if err := c.Queue([]byte(part)); err != nil {
				return err
			}
		}
		return c.Close()
	}
	_, addr := serve(t, h, Options{}, Listener{})
	nc := dial(t, addr)
	nc.Write([]byte("go"))
	nc.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(nc)
	if err != nil || string(b) != "one two three" {
		t.Fatalf("device read %q, %v", b, err)
	}
}

// TestQueueOverflowRefused checks MaxQueuedBytes: a Queue that would pass
// it is refused, whole, with ErrSendQueueFull (PERMISSION_DENY), what was
// queued is written, and the connection keeps working.
func TestQueueOverflowRefused(t *testing.T) {
	h := newChecker(t)
	results := make(chan []error, 2)
	h.onBytes = func(c *Conn, b []byte) error {
		chunk := bytes.Repeat(b[:1], 600)
		var errs []error
		for range 10 {
			errs = append(errs, c.Queue(chunk)) // more than MaxQueuedBytes within one callback
		}
		results <- errs
		return nil
	}
	_, addr := serve(t, h, Options{MaxQueuedBytes: 4096}, Listener{})
	nc := dial(t, addr)
	nc.SetReadDeadline(time.Now().Add(wait))
	for _, first := range []string{"a", "b"} {
		nc.Write([]byte(first))
		errs := recv(t, results)
		for i, err := range errs {
			switch {
			case i < 6 && err != nil:
				t.Errorf("%s: Queue %d: %v", first, i, err)
			case i >= 6 && (!errors.Is(err, ErrSendQueueFull) || CodeOf(err) != CodePermissionDeny):
				t.Errorf("%s: Queue %d past the bound: %v (%s)", first, i, err, CodeOf(err))
			}
		}
		// What fit is written; the connection stays open.
		got := make([]byte, 6*600)
		if _, err := io.ReadFull(nc, got); err != nil || !bytes.Equal(got, bytes.Repeat([]byte(first), 6*600)) {
			t.Fatalf("%s: device read %d bytes, %v", first, len(got), err)
		}
	}
}
