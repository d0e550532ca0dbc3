package gateway

// This file holds the writing side of a connection: Send, Queue and the
// flush of queued bytes.

import (
	"fmt"
	"time"
)

// Send writes b to the socket now, after any bytes queued by Queue, and
// returns when it is written (or WriteTimeout passed). Like EMQX it succeeds
// on a connection that is closing (the bytes are discarded); a write error
// closes the connection and is not reported to the caller.
func (c *Conn) Send(b []byte) (err error) {
	defer c.called(callSend, "", b, c.callStart(), &err)
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case stateDead:
		return ErrNotAlive
	case stateClosing:
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeQueued() {
		c.write(b)
	}
	return nil
}

// Queue appends b to the connection's output without blocking and without
// keeping b. The bytes are written by the connection's event goroutine:
// right after the current callback when called from one (so a callback's
// sends go out in one write), or soon otherwise. Bytes that would take the
// output past Options.MaxQueuedBytes are refused, whole, with
// ErrSendQueueFull; the connection stays open (one whose device does not
// read is closed by WriteTimeout). Handlers that must never block, such as
// Wasm guests, send with Queue.
func (c *Conn) Queue(b []byte) (err error) {
	defer c.called(callSend, "", b, c.callStart(), &err)
	c.mu.Lock()
	switch c.state {
	case stateDead:
		c.mu.Unlock()
		return ErrNotAlive
	case stateClosing:
		c.mu.Unlock()
		return nil
	}
	c.omu.Lock()
	if max := c.srv.opts.MaxQueuedBytes; len(c.out)+len(b) > max {
		n := len(c.out)
		c.omu.Unlock()
		c.mu.Unlock()
		return fmt.Errorf("%w: %d bytes would take the %d queued past max_queued_bytes (%d)", ErrSendQueueFull, len(b), n, max)
	}
	c.out = append(c.out, b...)
	if c.l.datagram() {
		c.outEnds = append(c.outEnds, len(c.out))
	}
	schedule := !c.flushing
	c.flushing = true
	c.omu.Unlock()
	if schedule {
		c.enqueueAsyncLocked(event{kind: evFlush})
	}
	c.mu.Unlock()
	return nil
}

// flush writes what Queue buffered, until nothing is left. It runs as an
// event, on the goroutine draining the connection's queue.
func (c *Conn) flush() {
	c.wmu.Lock()
	c.omu.Lock()
	for len(c.out) > 0 {
		c.writeOutLocked()
	}
	c.flushing = false
	closeNow := c.lingering
	c.lingering = false
	c.omu.Unlock()
	c.wmu.Unlock()
	if closeNow {
		c.closeSocket()
	}
}

// writeQueued writes what Queue buffered so far, under wmu, and reports
// whether writing worked (a failure discards the rest).
func (c *Conn) writeQueued() bool {
	c.omu.Lock()
	ok := true
	if len(c.out) > 0 {
		ok = c.writeOutLocked()
	}
	c.omu.Unlock()
	return ok
}

// writeOutLocked writes c.out, with omu released during the write, and
// keeps its storage for the next Queue unless it grew large. wmu and omu
// are held. A failure discards what Queue added meanwhile.
func (c *Conn) writeOutLocked() bool {
	data, ends := c.out, c.outEnds
	c.out, c.outEnds = c.spareOut[:0], c.spareEnds[:0]
	c.spareOut, c.spareEnds = nil, nil
	c.omu.Unlock()
	ok := true
	if ends == nil {
		// A stream: everything queued goes out in one write.
		ok = c.write(data)
	} else {
		// Datagrams keep their boundaries: one write each.
		start := 0
		for _, end := range ends {
			if ok = c.write(data[start:end]); !ok {
				break
			}
			start = end
		}
	}
	c.omu.Lock()
	if c.spareOut == nil && cap(data) <= 64<<10 {
		c.spareOut = data[:0]
	}
	if c.spareEnds == nil && ends != nil {
		c.spareEnds = ends[:0]
	}
	if !ok {
		c.out = c.out[:0]
		c.outEnds = c.outEnds[:0]
	}
	return ok
}

// armWriteDeadline bounds the next write on a TLS or DTLS socket by
// WriteTimeout, under wmu. Moving a socket's deadline updates a runtime
// timer (on DTLS, pion starts a goroutine per deadline), which costs about
// as much as the small write itself, so the deadline moves only once fewer
// than 7/8 of WriteTimeout are left of it: a write then fails after 7/8 of
// WriteTimeout at the earliest and WriteTimeout at the latest, and a busy
// connection moves its deadline once in WriteTimeout/8 instead of on every
// write.
func (c *Conn) armWriteDeadline() {
	now := time.Now()
	t := c.srv.opts.WriteTimeout
	if c.wdeadline.IsZero() || c.wdeadline.Sub(now) < t-t/8 {
		c.wdeadline = now.Add(t)
		c.nc.SetWriteDeadline(c.wdeadline)
	}
}

// write writes b under wmu and reports whether it worked; a failed write
// closes the connection.
func (c *Conn) write(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	var err error
	// Deliver tells a device that does not read by a write in progress
	// for long.
	c.writeStart.Store(int64(time.Since(c.start)) | 1)
	if c.raw != nil {
		err = c.raw.write(c.nc, b, c.srv.opts.WriteTimeout)
	} else {
		c.armWriteDeadline()
		_, err = c.nc.Write(b)
	}
	c.writeStart.Store(0)
	if err != nil {
		c.srv.log.Debug("gateway: write failed", "conn", c.handle, "err", err)
		c.closeWith("{shutdown,send_error}")
		return false
	}
	c.sendOct.Add(uint64(len(b)))
	c.ls.sendOct.Add(uint64(len(b)))
	return true
}
