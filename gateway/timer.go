package gateway

// This file holds the idle timeout and the keepalive timer.

import (
	"time"
)

// maxKeepalive caps StartTimer intervals, as MQTT and EMQX do.
const maxKeepalive = 65535

// armIdle starts the idle timer if the listener has an idle timeout.
func (c *Conn) armIdle() {
	if c.l.IdleTimeout <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateOpen {
		c.timer = time.AfterFunc(c.l.IdleTimeout, c.onTimer)
	}
}

// onTimer checks the idle timeout and the keepalive, and re-arms itself for
// the earliest deadline still pending. It runs on the timer's goroutine.
func (c *Conn) onTimer() {
	now := time.Since(c.start)
	last := time.Duration(c.lastRecv.Load())
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	next := time.Duration(-1)
	expired := ""
	if idle := c.l.IdleTimeout; idle > 0 && (last == 0 || c.l.datagram() && c.keepalive == 0) {
		// A stream connection must send a first byte in time. A datagram
		// pseudo-connection has no close of its own, so it is reaped after
		// idle_timeout without a datagram, unless the handler started a
		// keepalive, which then decides.
		since := now - last
		if last == 0 {
			since = now
		}
		if since >= idle {
			expired = ReasonIdleTimeout
		}
		next = idle - since
	}
	if c.keepalive > 0 && expired == "" {
		base := max(last, c.kaBase)
		if now-base >= c.keepalive {
			expired = ReasonKeepaliveTimeout
			// The handler hears of it first; the gateway closes the
			// socket itself either way.
			c.enqueueAsyncLocked(event{kind: evTimeout})
		} else if d := base + c.keepalive - now; next < 0 || d < next {
			next = d
		}
	}
	if expired != "" {
		c.closingLocked(expired)
		c.mu.Unlock()
		c.closeSocket()
		return
	}
	if next >= 0 {
		c.timer.Reset(next)
	}
	c.mu.Unlock()
}

// StartTimer starts or updates the keepalive: when no bytes arrive for 1.5 x
// interval seconds, the handler gets OnTimerTimeout and the gateway closes
// the connection. It is allowed before Authenticate.
func (c *Conn) StartTimer(t TimerType, interval uint32) (err error) {
	defer c.called(callStartTimer, "", nil, c.callStart(), &err)
	if t != KeepAlive {
		return Errorf(CodeParamsTypeError, "gateway: unknown timer type %d", t)
	}
	if interval == 0 {
		return Errorf(CodeParamsTypeError, "gateway: keepalive interval must be > 0")
	}
	interval = min(interval, maxKeepalive)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateDead:
		return ErrNotAlive
	case stateClosing:
		return nil
	}
	c.keepalive = time.Duration(interval) * 1500 * time.Millisecond
	c.kaBase = time.Since(c.start)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.keepalive, c.onTimer)
	} else {
		c.timer.Stop()
		// onTimer computes the earliest pending deadline and re-arms.
		c.timer.Reset(0)
	}
	return nil
}
