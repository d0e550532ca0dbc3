package gateway

import (
	"context"
	"fmt"
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
// than the handler loses nothing; a stalled subscriber beside it loses what
// exceeds its bound once it has taken nothing for MaxDeliveryWait, and does
// not hold the publisher longer than that.
func TestDeliverWaitsForSubscriberThatKeepsUp(t *testing.T) {
	ps := &fakePubSub{}
	h := newChecker(t)
	stall := make(chan struct{})
	h.onCreated = func(c *Conn) error {
		return c.Authenticate(context.Background(), &ClientInfo{ClientID: c.Handle()}, "")
	}
	var mu sync.Mutex
	got := make(map[string][]int)
	var stalled atomic.Pointer[Conn]
	h.onMessages = func(c *Conn, msgs []*Message) error {
		if stalled.Load() == c {
			<-stall
			return nil
		}
		time.Sleep(time.Millisecond) // slower than the publisher
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			var i int
			fmt.Sscan(string(m.Payload), &i)
			got[c.Handle()] = append(got[c.Handle()], i)
		}
		return nil
	}
	const bound = 16
	s, addr := serve(t, h, Options{PubSub: ps, MaxPendingMessages: bound, MaxDeliveryWait: 300 * time.Millisecond}, Listener{})
	var subs []*Conn
	for range 2 {
		dial(t, addr)
		c := recv(t, h.created)
		if err := c.Subscribe("t", 0); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, c)
	}
	fast, slow := subs[0], subs[1]
	stalled.Store(slow)
	defer close(stall)

	const n = 2000
	start := time.Now()
	for i := range n {
		ps.Publish(&Message{Topic: "t", Payload: fmt.Appendf(nil, "%d", i)})
	}
	// The fakePubSub delivers synchronously: the stalled subscriber held
	// the publisher once, for MaxDeliveryWait, not once per message.
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
	// The stalled one holds a first batch (1 to bound messages) in its
	// stuck callback and its bound in the queue; the rest was dropped and
	// counted.
	if d := s.Dropped(); d < n-2*bound || d > n-1-bound {
		t.Errorf("Dropped() = %d, want %d to %d", d, n-2*bound, n-1-bound)
	}
}
