package broker

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// A shard carries the deliveries of the NATS subscriptions that hash to it,
// in order, from nats.go to the local subscribers. It has two goroutines
// and a queue between them:
//
//   - pump takes what nats.go pushes on in and appends it to the queue. It
//     never waits for a subscriber, so in (a channel nats.go writes
//     without waiting, dropping when it is full) stays short.
//   - deliver takes messages off the queue and hands them to subscribers.
//     gateway.Conn.Deliver may wait while a subscriber that keeps up has a
//     full queue; deliver waits with it, and the shard's queue grows.
//
// The queue is bounded in bytes (Config.MaxBufferedBytes split across the
// shards): beyond it a message is dropped and counted, which can only
// happen when publishers outside the gateway outpace it, since publishing
// connections of the gateway pause while any shard is behind (Behind).
type shard struct {
	in     chan *nats.Msg
	budget int // bytes the queue may hold

	mu      sync.Mutex
	q       []*nats.Msg // q[head:] is queued
	head    int
	bytes   int
	ready   chan struct{} // capacity 1: the queue became non-empty
	caught  chan struct{} // closed once the queue is short again; made by behind
	dropped atomic.Uint64
}

// Watermarks of a shard's queue: past either high mark publishers of the
// gateway pause, and they resume once it is below both low marks.
const (
	highMessages = 1024
	lowMessages  = 256
)

// inCap is the capacity of a shard's channel from nats.go. pump empties it
// as fast as it is filled, but on a loaded machine pump may not run for a
// while; a generous channel (128 KiB of pointers) absorbs that, and
// publishers of the gateway pause when it holds more than highMessages.
const inCap = 16384

func newShard(budget int) *shard {
	return &shard{
		in:     make(chan *nats.Msg, inCap),
		budget: budget,
		ready:  make(chan struct{}, 1),
	}
}

func msgSize(m *nats.Msg) int { return len(m.Subject) + len(m.Data) + 64 }

// pump moves messages from in to the queue until quit is closed.
func (sh *shard) pump(quit <-chan struct{}) {
	for {
		select {
		case m := <-sh.in:
			sh.push(m)
		case <-quit:
			return
		}
	}
}

func (sh *shard) push(m *nats.Msg) {
	n := msgSize(m)
	sh.mu.Lock()
	if sh.bytes+n > sh.budget && sh.head < len(sh.q) {
		// Full: the newest message is the one lost, so that what a
		// subscriber gets is still in publish order.
		sh.mu.Unlock()
		sh.dropped.Add(1)
		return
	}
	if sh.head > 0 && sh.head == len(sh.q) {
		// Empty: start again at the front of the slice.
		clear(sh.q)
		sh.q, sh.head = sh.q[:0], 0
	}
	sh.q = append(sh.q, m)
	sh.bytes += n
	sh.mu.Unlock()
	select {
	case sh.ready <- struct{}{}:
	default:
	}
}

// next waits for the next queued message; it returns nil once quit is
// closed.
func (sh *shard) next(quit <-chan struct{}) *nats.Msg {
	for {
		sh.mu.Lock()
		if sh.head < len(sh.q) {
			m := sh.q[sh.head]
			sh.q[sh.head] = nil
			sh.head++
			sh.bytes -= msgSize(m)
			if sh.caught != nil && sh.shortLocked() {
				close(sh.caught)
				sh.caught = nil
			}
			if sh.head >= 1024 && sh.head*2 >= len(sh.q) {
				// Most of the slice is consumed: move the rest to the
				// front so that a long backlog does not keep it growing.
				n := copy(sh.q, sh.q[sh.head:])
				clear(sh.q[n:])
				sh.q, sh.head = sh.q[:n], 0
			}
			sh.mu.Unlock()
			return m
		}
		sh.mu.Unlock()
		select {
		case <-sh.ready:
		case <-quit:
			return nil
		}
	}
}

// shortLocked reports whether the queue is below both low marks.
func (sh *shard) shortLocked() bool {
	return len(sh.q)-sh.head+len(sh.in) <= lowMessages && sh.bytes <= sh.budget/16
}

// behind returns nil when the queue is below both high marks, or a channel
// that is closed once it is short again.
func (sh *shard) behind() <-chan struct{} {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.caught == nil {
		if len(sh.q)-sh.head+len(sh.in) < highMessages && sh.bytes < sh.budget/4 {
			return nil
		}
		sh.caught = make(chan struct{})
	}
	return sh.caught
}

// release wakes whoever waits on the shard, for Shutdown.
func (sh *shard) release() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.caught != nil {
		close(sh.caught)
		sh.caught = nil
	}
}
