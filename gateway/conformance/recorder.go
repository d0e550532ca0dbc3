package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
)

// FailMarker makes the recorder fail an OnReceivedBytes call whose bytes
// contain it, without calling the handler: the suite's way to inject a
// handler fault.
const FailMarker = "FAIL-CALLBACK"

// Event is one callback as the recorder saw it.
type Event struct {
	Kind     string // created, bytes, timeout, messages, closed
	Info     *gateway.ConnInfo
	Bytes    []byte
	Messages []gateway.Message
	Reason   string
}

// Recorder sits between the gateway and the handler under test, records
// every callback and checks the ordering guarantees of the event model. It is
// safe for concurrent use.
type Recorder struct {
	h gateway.Handler

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every change
	events     map[string][]Event
	byPeer     map[string]string // peer address -> handle
	inflight   map[string]bool
	violations []string
}

var _ gateway.Handler = (*Recorder)(nil)

func newRecorder(h gateway.Handler) *Recorder {
	return &Recorder{
		h:        h,
		changed:  make(chan struct{}),
		events:   make(map[string][]Event),
		byPeer:   make(map[string]string),
		inflight: make(map[string]bool),
	}
}

func (r *Recorder) begin(c *gateway.Conn, ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := c.Handle()
	evs := r.events[h]
	switch {
	case r.inflight[h]:
		r.violations = append(r.violations, fmt.Sprintf("%s: %s while another callback is in flight", h, ev.Kind))
	case len(evs) == 0 && ev.Kind != "created":
		r.violations = append(r.violations, fmt.Sprintf("%s: first callback is %s, not OnSocketCreated", h, ev.Kind))
	case len(evs) > 0 && evs[len(evs)-1].Kind == "closed":
		r.violations = append(r.violations, fmt.Sprintf("%s: %s after OnSocketClosed", h, ev.Kind))
	case len(evs) > 0 && ev.Kind == "created":
		r.violations = append(r.violations, fmt.Sprintf("%s: second OnSocketCreated", h))
	}
	r.inflight[h] = true
	r.events[h] = append(evs, ev)
	if ev.Kind == "created" {
		r.byPeer[ev.Info.Peer.String()] = h
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Recorder) end(c *gateway.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight[c.Handle()] = false
	close(r.changed)
	r.changed = make(chan struct{})
}

// OnSocketCreated implements gateway.Handler.
func (r *Recorder) OnSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	cp := *info
	r.begin(c, Event{Kind: "created", Info: &cp})
	defer r.end(c)
	return r.h.OnSocketCreated(ctx, c, info)
}

// OnReceivedBytes implements gateway.Handler.
func (r *Recorder) OnReceivedBytes(ctx context.Context, c *gateway.Conn, b []byte) error {
	r.begin(c, Event{Kind: "bytes", Bytes: bytes.Clone(b)})
	defer r.end(c)
	if bytes.Contains(b, []byte(FailMarker)) {
		return errors.New("injected fault")
	}
	return r.h.OnReceivedBytes(ctx, c, b)
}

// OnTimerTimeout implements gateway.Handler.
func (r *Recorder) OnTimerTimeout(ctx context.Context, c *gateway.Conn, t gateway.TimerType) error {
	r.begin(c, Event{Kind: "timeout"})
	defer r.end(c)
	return r.h.OnTimerTimeout(ctx, c, t)
}

// OnReceivedMessages implements gateway.Handler.
func (r *Recorder) OnReceivedMessages(ctx context.Context, c *gateway.Conn, msgs []*gateway.Message) error {
	ev := Event{Kind: "messages"}
	for _, m := range msgs {
		ev.Messages = append(ev.Messages, *m)
	}
	r.begin(c, ev)
	defer r.end(c)
	return r.h.OnReceivedMessages(ctx, c, msgs)
}

// OnSocketClosed implements gateway.Handler.
func (r *Recorder) OnSocketClosed(ctx context.Context, c *gateway.Conn, reason string) error {
	r.begin(c, Event{Kind: "closed", Reason: reason})
	defer r.end(c)
	return r.h.OnSocketClosed(ctx, c, reason)
}

// Events returns a copy of the events recorded for the connection.
func (r *Recorder) Events(handle string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events[handle]...)
}

// wait calls cond under the lock until it returns true or Timeout passes.
func (r *Recorder) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitCreated waits for OnSocketCreated of the connection from peer and
// returns its handle.
func (r *Recorder) waitCreated(t testing.TB, peer string) string {
	t.Helper()
	var h string
	r.wait(t, "OnSocketCreated from "+peer, func() bool {
		h = r.byPeer[peer]
		return h != ""
	})
	return h
}

// waitClosed waits until the connection's OnSocketClosed returned and
// returns its reason.
func (r *Recorder) waitClosed(t testing.TB, handle string) string {
	t.Helper()
	var reason string
	r.wait(t, "OnSocketClosed of "+handle, func() bool {
		evs := r.events[handle]
		if len(evs) == 0 || r.inflight[handle] {
			return false
		}
		last := evs[len(evs)-1]
		reason = last.Reason
		return last.Kind == "closed"
	})
	return reason
}

// waitClosedNoFail is waitClosed for a goroutine: it returns "" on timeout
// instead of failing the test.
func (r *Recorder) waitClosedNoFail(handle string) string {
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		evs := r.events[handle]
		ch := r.changed
		done := len(evs) > 0 && !r.inflight[handle] && evs[len(evs)-1].Kind == "closed"
		var reason string
		if done {
			reason = evs[len(evs)-1].Reason
		}
		r.mu.Unlock()
		if done {
			return reason
		}
		select {
		case <-ch:
		case <-deadline.C:
			return ""
		}
	}
}

// handleOf returns the handle of the latest connection from peer.
func (r *Recorder) handleOf(peer string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.byPeer[peer]
	return h, ok
}

// waitNewHandle waits until peer has a connection other than old.
func (r *Recorder) waitNewHandle(t testing.TB, peer, old string) string {
	t.Helper()
	var h string
	r.wait(t, "a new connection from "+peer, func() bool {
		h = r.byPeer[peer]
		return h != "" && h != old
	})
	return h
}

// waitKind waits until the connection has at least n events of kind.
func (r *Recorder) waitKind(t testing.TB, handle, kind string, n int) []Event {
	t.Helper()
	var out []Event
	r.wait(t, fmt.Sprintf("%d %s event(s) of %s", n, kind, handle), func() bool {
		out = out[:0]
		for _, ev := range r.events[handle] {
			if ev.Kind == kind {
				out = append(out, ev)
			}
		}
		return len(out) >= n
	})
	return out
}

// check reports every violation and, once the gateway has shut down, that
// each connection ended with exactly one OnSocketClosed.
func (r *Recorder) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Errorf("event model violated: %s", v)
	}
	for h, evs := range r.events {
		closed := 0
		for _, ev := range evs {
			if ev.Kind == "closed" {
				closed++
			}
		}
		if closed != 1 || evs[len(evs)-1].Kind != "closed" {
			t.Errorf("%s: %d OnSocketClosed, last event %s; want exactly one, last", h, closed, evs[len(evs)-1].Kind)
		}
	}
}
