package gateway

// This file holds a connection's event queue and the delivery of its
// events to the handler.

import (
	"time"

	"github.com/protogate/protogate/abi"
)

type eventKind uint8

const (
	evCreated eventKind = iota
	evBytes
	evTimeout
	evMessages
	evFlush // write what Queue buffered
	evClosed
)

// event is one entry of a connection's queue.
type event struct {
	kind  eventKind
	ack   bool // the socket reader waits for this event to be handled
	bytes []byte
	msgs  []*Message
	// reason is the close reason, for tracing OnSocketClosed.
	reason string
}

// enqueueAndDrain queues ev and, if no one is draining, drains the queue on
// the calling goroutine.
func (c *Conn) enqueueAndDrain(ev event) {
	c.mu.Lock()
	c.queue = append(c.queue, ev)
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	c.drain()
}

// enqueueBytes hands a read chunk to the handler and returns once the handler
// is done with it, so the reader can reuse its buffer. It reports false when
// the connection no longer takes bytes.
func (c *Conn) enqueueBytes(b []byte) bool {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return false
	}
	wait := c.draining
	c.queue = append(c.queue, event{kind: evBytes, ack: wait, bytes: b})
	c.draining = true
	c.mu.Unlock()
	if wait {
		<-c.ack
	} else {
		c.drain()
	}
	return true
}

// enqueueAsyncLocked queues ev from a goroutine that must not run handler
// code (timers, deliveries) and starts a drainer if needed. c.mu is held.
func (c *Conn) enqueueAsyncLocked(ev event) {
	c.queue = append(c.queue, ev)
	if !c.draining {
		c.draining = true
		c.srv.goDrain(c)
	}
}

// drain runs queued events until the queue is empty. Only the goroutine that
// set draining calls it.
func (c *Conn) drain() {
	var batch []event
	for {
		c.mu.Lock()
		if batch != nil {
			for i := range batch {
				// The handler is done with the batch of messages:
				// keep one for the next delivery.
				if m := batch[i].msgs; m != nil && c.spareMsgs == nil && cap(m) <= 64 {
					clear(m)
					c.spareMsgs = m[:0]
				}
			}
			clear(batch)
			c.spare = batch[:0]
		}
		if len(c.queue) == 0 {
			c.draining = false
			c.mu.Unlock()
			return
		}
		batch = c.queue
		c.queue, c.spare = c.spare, nil
		taken := 0
		for i := range batch {
			if batch[i].kind == evMessages {
				taken += len(batch[i].msgs)
			}
		}
		if taken > 0 {
			c.tookLocked(taken)
		}
		c.mu.Unlock()
		for i := range batch {
			c.dispatch(&batch[i])
		}
	}
}

// dispatch delivers one event to the handler.
func (c *Conn) dispatch(ev *event) {
	h := c.l.Handler
	if ev.kind == evClosed {
		c.closed(h)
		return
	}
	if ev.kind == evFlush {
		c.flush()
		return
	}
	if !c.failed.Load() {
		if err := c.invoke(h, ev); err != nil {
			c.callbackFailed(callbackName(ev.kind), err)
		}
	}
	if ev.ack {
		c.ack <- struct{}{}
	}
}

// invoke calls the handler for ev, counts the call in the listener's
// stats and records it in the connection's trace. A panic in the handler
// is recovered here, as net/http recovers one per request: it fails the
// callback (so only this connection closes) instead of ending the process
// with every other device's connection.
func (c *Conn) invoke(h Handler, ev *event) (err error) {
	start := time.Now()
	if t := c.trace.Load(); t != nil {
		t.emit(callbackEvent(ev, start))
	}
	panicked := false
	defer func() {
		if r := recover(); r != nil {
			err = c.srv.handlerPanicked(c, callbackName(ev.kind), r)
			panicked = true
		}
		c.observe(ev, start, err, panicked)
	}()
	ctx := c.srv.ctx
	switch ev.kind {
	case evCreated:
		return h.OnSocketCreated(ctx, c, &c.info)
	case evBytes:
		return h.OnReceivedBytes(ctx, c, ev.bytes)
	case evTimeout:
		return h.OnTimerTimeout(ctx, c, KeepAlive)
	case evMessages:
		c.sendMsg.Add(uint64(len(ev.msgs)))
		c.ls.sendMsg.Add(uint64(len(ev.msgs)))
		return h.OnReceivedMessages(ctx, c, ev.msgs)
	}
	return nil
}

// observe counts a callback of kind ev.kind that started at start and
// traces its return.
func (c *Conn) observe(ev *event, start time.Time, err error, panicked bool) {
	d := time.Since(start)
	cb := callbackIndex(ev.kind)
	c.ls.cb.observe(cb, d, outcomeIndex(err, panicked))
	t := c.trace.Load()
	if t == nil {
		return
	}
	te := TraceEvent{Time: start.Add(d), Kind: TraceReturn, Name: Callbacks[cb], Duration: d}
	if err != nil {
		te.Code, te.Err = CodeOf(err), err.Error()
	}
	t.emit(te, nil)
}

// callbackEvent returns the trace event of a callback for ev starting, and
// the payload it carries.
func callbackEvent(ev *event, start time.Time) (TraceEvent, []byte) {
	te := TraceEvent{Time: start, Kind: TraceCallback, Name: Callbacks[callbackIndex(ev.kind)]}
	var payload []byte
	switch ev.kind {
	case evBytes:
		te.Size, payload = len(ev.bytes), ev.bytes
	case evMessages:
		te.Size = len(ev.msgs)
		if len(ev.msgs) > 0 {
			te.Topic, payload = ev.msgs[0].Topic, ev.msgs[0].Payload
		}
	case evClosed:
		te.Reason = ev.reason
	}
	return te, payload
}

// callbackIndex returns the index of k's callback in Callbacks.
func callbackIndex(k eventKind) int {
	switch k {
	case evCreated:
		return 0
	case evBytes:
		return 1
	case evTimeout:
		return 2
	case evMessages:
		return 3
	}
	return 4
}

// callbackName names the callback of an event kind as close reasons do.
func callbackName(k eventKind) string {
	switch k {
	case evCreated:
		return abi.CallbackSocketCreated
	case evBytes:
		return abi.CallbackReceivedBytes
	case evTimeout:
		return abi.CallbackTimerTimeout
	case evMessages:
		return abi.CallbackReceivedMessages
	case evClosed:
		return abi.CallbackSocketClosed
	}
	return "unknown"
}

// callbackFailed closes the connection after a handler callback failed.
// (Apart from dispatch, whose frame is on the stack of every callback.)
//
//go:noinline
func (c *Conn) callbackFailed(name string, err error) {
	c.failed.Store(true)
	c.srv.log.Warn("gateway: handler callback failed; closing connection",
		"conn", c.handle, "listener", c.l.Name, "callback", name, "err", err)
	c.closeWith(abi.ErrorReason(name, err.Error()))
}
