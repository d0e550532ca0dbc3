package broker_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
)

// gateSub is a subscriber whose Deliver blocks while its gate is closed,
// as a gateway connection's does while its queue is full and its handler
// is busy.
type gateSub struct {
	mu   sync.Mutex
	open chan struct{}
	got  chan *gateway.Message
}

func newGateSub() *gateSub {
	return &gateSub{open: make(chan struct{}), got: make(chan *gateway.Message, 1<<16)}
}

func (s *gateSub) Deliver(m *gateway.Message) {
	s.mu.Lock()
	open := s.open
	s.mu.Unlock()
	<-open
	s.got <- m
}

func (s *gateSub) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.open)
}

// TestBehindWhileSubscriberWaits: while a subscriber makes deliveries wait,
// the broker reports itself behind once its backlog passes the high mark,
// and caught up once the subscriber takes the backlog; nothing is lost.
func TestBehindWhileSubscriberWaits(t *testing.T) {
	b := startBroker(t, broker.Config{})
	s := newGateSub()
	subscribe(t, b, "flow/#", s)
	if ch := b.Behind(); ch != nil {
		t.Fatal("behind before anything was published")
	}
	const n = 5000
	var behind <-chan struct{}
	for i := range n {
		publish(t, b, &gateway.Message{Topic: "flow/a", Payload: fmt.Appendf(nil, "%d", i)})
		if behind == nil {
			behind = b.Behind()
		}
	}
	// The delivery goroutine holds one message in Deliver; the rest are
	// queued. Publishes are asynchronous, so wait for the backlog to build.
	deadline := time.Now().Add(waitTimeout)
	for behind == nil {
		if time.Now().After(deadline) {
			t.Fatal("never behind with a subscriber that takes nothing")
		}
		time.Sleep(time.Millisecond)
		behind = b.Behind()
	}
	select {
	case <-behind:
		t.Fatal("caught up while the subscriber takes nothing")
	default:
	}
	s.release()
	select {
	case <-behind:
	case <-time.After(waitTimeout):
		t.Fatal("still behind after the subscriber took the backlog")
	}
	for i := range n {
		select {
		case m := <-s.got:
			if want := fmt.Sprint(i); string(m.Payload) != want {
				t.Fatalf("message %d is %q", i, m.Payload)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("got %d of %d messages", i, n)
		}
	}
	if d := b.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0", d)
	}
}

// TestOutsidePublisherBeyondBudget: a NATS client outside the gateway that
// outpaces a subscriber fills the delivery queue up to MaxBufferedBytes;
// what exceeds it is dropped and counted, the oldest messages are kept in
// order, and memory stays bounded.
func TestOutsidePublisherBeyondBudget(t *testing.T) {
	const budget = 256 << 10
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0", Shards: 1, MaxBufferedBytes: budget, MaxPayload: 4096})
	s := newGateSub()
	subscribe(t, b, "ext/#", s)
	nc := natsConnect(t, b)
	payload := make([]byte, 1024)
	const n = 2000 // about 2 MB: eight times the budget
	for i := range n {
		copy(payload, fmt.Sprintf("%08d", i))
		if err := nc.Publish("ext.a", payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// At most budget/1000 messages (each counts a little more than its
	// payload) fit the queue: wait until the rest have been dropped, so
	// that all but a few have reached the broker before the subscriber
	// takes the queue.
	fit := budget / 1000
	deadline := time.Now().Add(waitTimeout)
	for b.Dropped() < uint64(n-fit) {
		if time.Now().After(deadline) {
			t.Fatalf("Dropped() = %d after %d messages beyond a %d-byte budget", b.Dropped(), n, budget)
		}
		time.Sleep(time.Millisecond)
	}
	s.release()
	last := -1
	got := 0
	for got+int(b.Dropped()) < n {
		select {
		case m := <-s.got:
			var i int
			fmt.Sscanf(string(m.Payload[:8]), "%d", &i)
			if i <= last {
				t.Fatalf("message %d after %d", i, last)
			}
			last = i
			got++
		case <-time.After(waitTimeout):
			t.Fatalf("got %d, dropped %d, of %d", got, b.Dropped(), n)
		}
	}
	if got > fit+8 {
		t.Errorf("%d messages of 1 KiB were queued within a %d-byte budget", got, budget)
	}
}
