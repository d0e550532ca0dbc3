package gateway

// This file holds how a connection closes: close reasons, closing from
// any goroutine, and the final OnSocketClosed.

import (
	"time"

	"github.com/protogate/protogate/abi"
)

// Close reasons, in the format EMQX used, so handlers that match on them keep
// working.
const (
	ReasonNormal           = "{shutdown,normal}"
	ReasonTCPClosed        = "{shutdown,tcp_closed}"
	ReasonSSLClosed        = "{shutdown,ssl_closed}"
	ReasonKeepaliveTimeout = "{shutdown,keepalive_timeout}"
	ReasonIdleTimeout      = "{shutdown,idle_timeout}"
	ReasonDiscarded        = "{shutdown,discarded}"
	ReasonKicked           = "{shutdown,kicked}"
	ReasonExpired          = "{shutdown,expired}" // the credentials' expire_at passed
)

// wakeLocked returns a channel that is closed when the connection stops
// being open. c.mu is held.
func (c *Conn) wakeLocked() <-chan struct{} {
	if c.wake == nil {
		c.wake = make(chan struct{})
		if c.state != stateOpen {
			close(c.wake)
		}
	}
	return c.wake
}

// closingLocked moves an open connection to stateClosing with reason and
// wakes whatever waits for it to close. c.mu is held.
func (c *Conn) closingLocked(reason string) {
	c.state = stateClosing
	c.reason = reason
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	if c.wake != nil {
		close(c.wake)
	}
}

// closed delivers OnSocketClosed and finishes the connection, even if the
// handler panics.
//
//go:noinline
func (c *Conn) closed(h Handler) {
	defer c.finish()
	c.mu.Lock()
	reason := c.reason
	c.mu.Unlock()
	start := time.Now()
	if t := c.trace.Load(); t != nil {
		t.emit(callbackEvent(&event{kind: evClosed, reason: reason}, start))
	}
	var err error
	panicked := false
	defer func() {
		if r := recover(); r != nil {
			err = c.srv.handlerPanicked(c, abi.CallbackSocketClosed, r)
			panicked = true
		}
		c.observe(&event{kind: evClosed, reason: reason}, start, err, panicked)
	}()
	if err = h.OnSocketClosed(c.srv.ctx, c, reason); err != nil {
		c.srv.log.Warn("gateway: OnSocketClosed failed", "conn", c.handle, "err", err)
	}
}

// closeWith starts closing the connection with reason, unless it is already
// closing. It never waits for the handler.
func (c *Conn) closeWith(reason string) {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.closingLocked(reason)
	c.mu.Unlock()
	c.omu.Lock()
	linger := c.flushing
	c.lingering = linger
	c.omu.Unlock()
	if linger {
		// Bytes a handler queued before closing still go out: the pending
		// flush closes the socket once they are written.
		return
	}
	// Closing the socket ends the reader's Read; the reader then queues
	// OnSocketClosed behind whatever is still queued.
	c.closeSocket()
}

// closeSocket closes the socket so that its reader stops, from any
// goroutine. A raw socket (see raw_linux.go) is shut down instead: its
// reader may be inside its read callback, even on this goroutine, and
// closing waits for the callback to return. Its reader then reads the end
// of the stream, and the socket is closed for good once the reader is out
// of the callback (terminate, finish). Any other socket is closed by
// closeConn, which does not wait either.
func (c *Conn) closeSocket() {
	if c.rc != nil {
		shutdownRaw(c.rc)
		return
	}
	c.closeConn()
}

// closeConn closes a socket that is not raw on a goroutine of its own,
// once. Closing a TLS or DTLS connection sends close_notify, which waits up
// to 5s, and behind a write in progress, for a peer that does not read; no
// one who closes a connection (a handler's Close, a Wasm guest's call, a
// timer, Shutdown closing every connection) may wait for that. finish
// waits for the goroutine: it belongs to the connection.
func (c *Conn) closeConn() {
	c.ncCloseOnce.Do(func() {
		c.ncClosed = make(chan struct{})
		go func() {
			defer close(c.ncClosed)
			c.nc.Close()
		}()
	})
}

// terminate runs on the reader once it stops reading: it releases the
// connection's resources and queues the final OnSocketClosed.
func (c *Conn) terminate(readReason string) {
	if readReason != "" && c.srv.isClosing() {
		// A read that ends during Shutdown ends because of it (a datagram
		// transport can report its end before Shutdown reaches this
		// connection): handlers see the shutdown reason either way.
		readReason = ReasonShutdown
	}
	c.mu.Lock()
	if c.state == stateOpen {
		c.closingLocked(readReason)
	}
	if c.reason == "" {
		c.reason = ReasonNormal
	}
	clientID, authed, release := c.clientID, c.authed, c.release
	c.release = nil
	c.mu.Unlock()
	c.omu.Lock()
	linger := c.lingering
	c.omu.Unlock()
	if !linger {
		if c.rc != nil {
			// Out of its read callback, a plain TCP socket closes at
			// once.
			c.nc.Close()
		} else {
			c.closeConn()
		}
	}
	if authed {
		c.srv.releaseClientID(clientID, c)
	}
	if release != nil {
		release()
	}
	c.unsubscribeAll()

	c.mu.Lock()
	if c.closedEvent {
		c.mu.Unlock()
		return
	}
	c.closedEvent = true
	// Deliveries not yet started are dropped: nobody subscribed anymore.
	c.queue = dropMessages(c.queue)
	c.queue = append(c.queue, event{kind: evClosed})
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.mu.Unlock()
	c.drain()
}

func dropMessages(q []event) []event {
	out := q[:0]
	for _, ev := range q {
		if ev.kind != evMessages {
			out = append(out, ev)
		}
	}
	clear(q[len(out):])
	return out
}

// finish marks the connection dead once OnSocketClosed has been delivered.
func (c *Conn) finish() {
	if c.rc != nil {
		// A lingering flush only shut it down (closeSocket).
		c.nc.Close()
	} else {
		c.closeConn()
		<-c.ncClosed
	}
	c.mu.Lock()
	c.state = stateDead
	reason := c.reason
	if c.finished != nil {
		close(c.finished)
	}
	c.mu.Unlock()
	c.ls.closed[closeClassIndex(reason)].Add(1)
	c.traceEnd(reason)
	c.srv.unregister(c)
	c.ls.release()
}

// CloseWithReason closes the connection; its handler sees OnSocketClosed
// with reason. Back ends use it to name a fault, such as a Wasm trap.
func (c *Conn) CloseWithReason(reason string) { c.closeWith(reason) }

// Close closes the connection; the handler sees OnSocketClosed with
// ReasonNormal.
func (c *Conn) Close() (err error) {
	start := c.callStart()
	c.mu.Lock()
	dead := c.state == stateDead
	c.mu.Unlock()
	if dead {
		err = ErrNotAlive
	}
	// Counted and traced before closing: the close can end the trace
	// before this call returns.
	c.called(callClose, "", nil, start, &err)
	if dead {
		return err
	}
	c.closeWith(ReasonNormal)
	return nil
}

// Kick closes the connection with ReasonKicked, as an operator would.
func (c *Conn) Kick() { c.closeWith(ReasonKicked) }

// Finished returns a channel that is closed once the connection is
// finished: its handler has seen OnSocketClosed and its handle is dead.
func (c *Conn) Finished() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished == nil {
		c.finished = make(chan struct{})
		if c.state == stateDead {
			close(c.finished)
		}
	}
	return c.finished
}
