package gateway

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pacedPubSub is fakePubSub with a Pacer the test controls.
type pacedPubSub struct {
	fakePubSub
	mu     sync.Mutex
	behind chan struct{} // non-nil: behind until closed
	calls  atomic.Int64
}

func (p *pacedPubSub) Behind() <-chan struct{} {
	p.calls.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.behind == nil {
		return nil
	}
	return p.behind
}

func (p *pacedPubSub) catchUp() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.behind)
	p.behind = nil
}

// TestPublisherPausesWhileBehind: a connection that published reads no
// more while the PubSub is behind, and reads on once it has caught up.
func TestPublisherPausesWhileBehind(t *testing.T) {
	ps := &pacedPubSub{behind: make(chan struct{})}
	h := newChecker(t)
	h.onCreated = func(c *Conn) error {
		return c.Authenticate(context.Background(), &ClientInfo{ClientID: "pub"}, "")
	}
	var caughtUp atomic.Bool
	chunks := make(chan string, 4)
	h.onBytes = func(c *Conn, b []byte) error {
		chunks <- fmt.Sprintf("%s caughtUp=%v", b, caughtUp.Load())
		return c.Publish("t", 0, b)
	}
	_, addr := serve(t, h, Options{PubSub: ps}, Listener{})
	nc := dial(t, addr)
	nc.Write([]byte("1"))
	if got := recv(t, chunks); got != "1 caughtUp=false" {
		t.Fatalf("first chunk: %s", got)
	}
	// The reader asks whether deliveries are behind once the chunk is
	// handled; it is, so the reader waits.
	deadline := time.Now().Add(wait)
	for ps.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the publishing connection never asked the Pacer")
		}
		time.Sleep(time.Millisecond)
	}
	nc.Write([]byte("2"))
	caughtUp.Store(true)
	ps.catchUp()
	if got := recv(t, chunks); got != "2 caughtUp=true" {
		t.Fatalf("second chunk: %s (read while behind)", got)
	}
}

// TestDeliverWaitsForSubscriberThatKeepsUp: deliveries to a connection whose
// queue is full wait while its handler takes them, so a publisher faster
// than the handler loses nothing; a subscriber beside it whose device reads
// nothing loses what exceeds its bound once a write to it has waited
// MaxDeliveryWait, and does not hold the publisher longer than that.
func TestDeliverWaitsForSubscriberThatKeepsUp(t *testing.T) {
	ps := &fakePubSub{}
	h := newChecker(t)
	subscribed := make(chan *Conn, 2)
	h.onCreated = func(c *Conn) error {
		if err := c.Authenticate(context.Background(), &ClientInfo{ClientID: c.Handle()}, ""); err != nil {
			return err
		}
		if err := c.Subscribe(context.Background(), "t", 0); err != nil {
			return err
		}
		subscribed <- c
		return nil
	}
	var mu sync.Mutex
	got := make(map[string][]int)
	var stalled atomic.Pointer[Conn]
	h.onMessages = func(c *Conn, msgs []*Message) error {
		if stalled.Load() == c {
			// Its device reads nothing: these writes fill the socket
			// buffers, then wait.
			for _, m := range msgs {
				c.Send(m.Payload)
			}
			return nil
		}
		time.Sleep(time.Millisecond) // slower than the publisher
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			i, _ := strconv.Atoi(string(m.Payload[:8]))
			got[c.Handle()] = append(got[c.Handle()], i)
		}
		return nil
	}
	const bound = 16
	s, addr := serve(t, h, Options{PubSub: ps, MaxPendingMessages: bound, MaxDeliveryWait: 300 * time.Millisecond,
		WriteTimeout: time.Minute}, Listener{})
	var subs []*Conn
	for i := range 2 {
		nc := dial(t, addr)
		if i == 1 {
			nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		subs = append(subs, recv(t, subscribed))
	}
	fast, slow := subs[0], subs[1]
	stalled.Store(slow)

	// 16 KiB messages: the stalled device's socket buffers fill within
	// the first few hundred.
	const n = 2000
	payload := make([]byte, 16<<10)
	start := time.Now()
	for i := range n {
		p := fmt.Appendf(nil, "%08d", i)
		ps.Publish(&Message{Topic: "t", Payload: append(p, payload[len(p):]...)})
	}
	// The fakePubSub delivers synchronously: the stalled subscriber held
	// the publisher once, for about MaxDeliveryWait, not once per message.
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("publishing %d messages took %v", n, el)
	}
	deadline := time.Now().Add(wait)
	for {
		mu.Lock()
		k := len(got[fast.Handle()])
		mu.Unlock()
		if k == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber that keeps up got %d of %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	for i, v := range got[fast.Handle()] {
		if v != i {
			t.Fatalf("message %d is %d", i, v)
		}
	}
	mu.Unlock()
	// All the drops are the stalled subscriber's: it cannot have taken
	// more than its socket buffers hold.
	if d := s.Dropped(); d < n/2 || d >= n {
		t.Errorf("Dropped() = %d, want most of %d", d, n)
	}
	slow.Close()
}

// TestDeliverGivesUpOnStuckHandler: a handler stuck in a callback (its
// device reads, its handler takes nothing) holds deliveries, and with them
// the publishers, for ten times MaxDeliveryWait at most; then its
// deliveries beyond the bound are dropped, counted, without waiting.
func TestDeliverGivesUpOnStuckHandler(t *testing.T) {
	ps := &fakePubSub{}
	h := newChecker(t)
	stuck := make(chan struct{})
	defer close(stuck)
	subscribed := make(chan struct{})
	h.onCreated = func(c *Conn) error {
		if err := c.Authenticate(context.Background(), &ClientInfo{ClientID: "stuck"}, ""); err != nil {
			return err
		}
		if err := c.Subscribe(context.Background(), "t", 0); err != nil {
			return err
		}
		close(subscribed)
		return nil
	}
	entered := make(chan struct{}, 1)
	h.onMessages = func(*Conn, []*Message) error {
		entered <- struct{}{}
		<-stuck
		return nil
	}
	const bound, patience = 4, 20 * time.Millisecond
	s, addr := serve(t, h, Options{PubSub: ps, MaxPendingMessages: bound, MaxDeliveryWait: patience}, Listener{})
	dial(t, addr)
	recv(t, subscribed)
	ps.Publish(&Message{Topic: "t"}) // taken by the stuck callback
	recv(t, entered)
	start := time.Now()
	const n = 100
	for range n {
		ps.Publish(&Message{Topic: "t"})
	}
	if el := time.Since(start); el < stuckFactor*patience {
		t.Errorf("gave up after %v, before %v without a take", el, stuckFactor*patience)
	}
	if d := s.Dropped(); d != n-bound {
		t.Errorf("Dropped() = %d, want %d", d, n-bound)
	}
}
