package gateway

// This file holds the live trace of one connection: what its handler was
// called with and what the handler called back, as it happens.

import (
	"sync"
	"sync/atomic"
	"time"
)

// TraceKind says what a TraceEvent records.
type TraceKind uint8

// The kinds of trace events.
const (
	TraceCallback TraceKind = iota // the gateway calls the handler: the callback starts
	TraceReturn                    // the callback returned: its result and duration
	TraceCall                      // the handler called the gateway (Send, Publish, ...)
	TraceEnd                       // the connection finished: its last event
)

// String returns the kind's name in the admin API.
func (k TraceKind) String() string {
	switch k {
	case TraceCallback:
		return "callback"
	case TraceReturn:
		return "return"
	case TraceCall:
		return "call"
	case TraceEnd:
		return "end"
	}
	return "unknown"
}

// TraceEvent is one step of a traced connection. A callback is two
// events, TraceCallback when it starts (with what it carries) and
// TraceReturn when it returns (with its result), so that the calls the
// handler makes meanwhile appear between them.
type TraceEvent struct {
	Time     time.Time // when the step started
	Kind     TraceKind
	Name     string // the callback (on_received_bytes, ...) or call (send, publish, ...)
	Size     int    // bytes of payload, or messages of on_received_messages
	Topic    string // for publish, subscribe and unsubscribe, as the handler gave it
	Code     Code   // CodeSuccess, or the code of the error
	Err      string // the error's text, if any
	Reason   string // the close reason, for on_socket_closed and TraceEnd
	Duration time.Duration
	// Payload holds the first bytes of the payload, up to the trace's
	// PayloadBytes; a copy the receiver may keep.
	Payload []byte
}

// Trace receives the events of one connection. Create it with
// Conn.Trace; it is safe for concurrent use.
type Trace struct {
	c       *Conn
	payload int
	events  chan TraceEvent
	lost    atomic.Uint64
	once    sync.Once
	done    chan struct{}
}

// Trace starts tracing c: every callback and handler call of c from now on
// is sent to the returned Trace's Events, until Stop or the connection
// finishes (a TraceEnd event, then Events is closed). payload is how many
// bytes of each payload an event copies (0: none). A connection has at
// most one trace; a second Trace call fails with ErrTraced.
//
// Tracing costs a connection nothing while it is off (one atomic load per
// event). A receiver that falls behind loses events (Lost counts them):
// the connection never waits for its trace.
func (c *Conn) Trace(payload int) (*Trace, error) {
	t := &Trace{c: c, payload: payload, events: make(chan TraceEvent, 256), done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateDead {
		return nil, ErrNotAlive
	}
	if !c.trace.CompareAndSwap(nil, t) {
		return nil, ErrTraced
	}
	return t, nil
}

// Events returns the channel of events, closed when the trace ends.
func (t *Trace) Events() <-chan TraceEvent { return t.events }

// Lost returns how many events the receiver was too slow to take.
func (t *Trace) Lost() uint64 { return t.lost.Load() }

// Stop ends the trace. Events is closed once no event is being sent.
func (t *Trace) Stop() {
	t.c.mu.Lock()
	t.c.trace.CompareAndSwap(t, nil)
	t.c.mu.Unlock()
	t.end()
}

func (t *Trace) end() {
	t.once.Do(func() {
		close(t.done)
		// Writers hold c.traceMu for reading while they send; taking it
		// for writing waits them out, so that closing events is safe.
		t.c.traceMu.Lock()
		close(t.events)
		t.c.traceMu.Unlock()
	})
}

// emit sends ev without waiting.
func (t *Trace) emit(ev TraceEvent, payload []byte) {
	if n := min(len(payload), t.payload); n > 0 {
		ev.Payload = append([]byte(nil), payload[:n]...)
	}
	t.c.traceMu.RLock()
	select {
	case <-t.done:
	case t.events <- ev:
	default:
		t.lost.Add(1)
	}
	t.c.traceMu.RUnlock()
}

// traceCall records a call the handler made on c, if c is traced. start
// is when the call began.
func (c *Conn) traceCall(name, topic string, payload []byte, start time.Time, err error) {
	t := c.trace.Load()
	if t == nil {
		return
	}
	ev := TraceEvent{Time: start, Kind: TraceCall, Name: name, Size: len(payload), Topic: topic, Duration: time.Since(start)}
	if err != nil {
		ev.Code, ev.Err = CodeOf(err), err.Error()
	}
	t.emit(ev, payload)
}

// traceEnd ends c's trace with a TraceEnd event carrying the close reason.
func (c *Conn) traceEnd(reason string) {
	t := c.trace.Swap(nil)
	if t == nil {
		return
	}
	t.emit(TraceEvent{Time: time.Now(), Kind: TraceEnd, Name: "closed", Reason: reason}, nil)
	t.end()
}
