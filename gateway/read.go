package gateway

// This file holds the reading side of a connection: establishing it
// (PROXY header, TLS or DTLS handshake), the read loops, and pacing.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/protogate/protogate/gateway/framing"
	"github.com/protogate/protogate/gateway/limit"
	"github.com/protogate/protogate/gateway/proxyproto"
)

// serveStream owns one connection: it reads a PROXY header and runs the TLS
// or DTLS handshake if the listener asks for them, creates the Conn, reads
// the socket and drains the queue inline. The caller has admitted the
// connection (reserved a slot in ls); serveStream, then the Conn, releases it.
func (s *Server) serveStream(nc net.Conn, ls *lstate) {
	defer s.wg.Done()
	// The goroutine lives as long as the connection, mostly idle in a
	// read: its stack stays small only if the frames below that read are
	// small, so establishing the connection (large frames) returns first.
	if c := s.establish(nc, ls); c != nil {
		c.serve()
	}
}

// serve runs an established connection until it closes.
func (c *Conn) serve() {
	c.begin()
	c.readUntilClosed()
}

// serveAccepted is serveStream for a connection Serve accepted: it
// establishes the connection and runs OnSocketCreated on the goroutine
// Serve started, then hands the rest of the connection's life to a new
// goroutine and returns. Establishing the connection and the first
// callback take the deepest stacks (a TLS handshake, the handler's
// OnSocketCreated), and a goroutine's stack never shrinks below what it
// grew to until a garbage collection finds it mostly unused: the goroutine
// that waits, often idle for hours, for the device's bytes starts afresh
// with the runtime's smallest stack (2 KiB) instead of keeping the 4 KiB
// or more those took. The caller has counted the goroutine in s.wg; the
// count passes to the new goroutine.
func (s *Server) serveAccepted(nc net.Conn, ls *lstate) {
	c := s.establish(nc, ls)
	if c == nil {
		s.wg.Done()
		return
	}
	c.begin()
	go func() {
		defer s.wg.Done()
		c.readUntilClosed()
	}()
}

// begin arms the idle timer and delivers OnSocketCreated.
func (c *Conn) begin() {
	c.armIdle()
	c.enqueueAndDrain(event{kind: evCreated})
}

// readUntilClosed reads the socket until the connection closes, then
// finishes it.
func (c *Conn) readUntilClosed() {
	c.terminate(c.readLoop())
}

// establish does what serveStream does before the connection reaches the
// handler and returns the registered Conn, or nil (having closed nc and
// released its slot) if the connection is not established.
//
//go:noinline
func (s *Server) establish(nc net.Conn, ls *lstate) *Conn {
	l := ls.l
	info := ConnInfo{SockType: l.Type, Listener: l.Name}
	info.Peer = addrPort(nc.RemoteAddr())
	info.Local = addrPort(nc.LocalAddr())
	fail := func(cause string, err error) {
		if cause != "" {
			ls.refuse(cause, nc.RemoteAddr())
		}
		s.log.Debug("gateway: connection not established", "listener", l.Name, "peer", info.Peer, "err", err)
		nc.Close()
		ls.release()
	}
	if l.ProxyProtocol {
		timeout := l.ProxyProtocolTimeout
		if timeout <= 0 {
			timeout = 3 * time.Second
		}
		nc.SetReadDeadline(time.Now().Add(timeout))
		br := bufio.NewReaderSize(nc, 256)
		h, err := proxyproto.Read(br)
		if err != nil {
			fail(CauseProxyProtocol, err)
			return nil
		}
		nc.SetReadDeadline(time.Time{})
		nc = proxyproto.NewConn(nc, br, h)
		info.Peer = addrPort(nc.RemoteAddr())
		info.Local = addrPort(nc.LocalAddr())
		if err := ls.checkAddr(info.Peer); err != nil {
			fail("", err)
			return nil
		}
	}
	switch l.Type {
	case SSL:
		tc := tls.Server(nc, l.TLSConfig)
		ctx, cancel := context.WithTimeout(s.stopCtx, s.opts.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			// A failed handshake never reaches the handler.
			fail(CauseHandshake, err)
			return nil
		}
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			info.PeerCert = &CertInfo{CN: certs[0].Subject.CommonName, DN: certs[0].Subject.String()}
		}
		nc = tc
	case DTLS:
		ctx, cancel := context.WithTimeout(s.stopCtx, s.opts.HandshakeTimeout)
		dc, id, err := l.Handshaker.Handshake(ctx, nc)
		cancel()
		if err != nil {
			fail(CauseHandshake, err)
			return nil
		}
		info.PeerCert, info.PSKIdentity = id.Cert, id.PSKIdentity
		nc = dc
	}
	c := s.newConn(nc, ls, info)
	if !s.register(c) {
		nc.Close()
		ls.release()
		return nil
	}
	ls.accepted.Add(1)
	return c
}

// readLoop reads the socket until it fails or the connection stops taking
// bytes, and returns the close reason the read error implies.
func (c *Conn) readLoop() string {
	l, ls := c.l, c.ls
	sr := c.newStreamReader()
	if c.rc != nil {
		return c.readLoopRaw(c.rc, sr)
	}
	if dr, ok := c.nc.(DatagramReader); ok && l.datagram() {
		return c.readDatagrams(dr)
	}
	size := c.srv.opts.ReadBufferSize
	switch l.Type {
	case UDP:
		// One more than the limit, to tell an oversized datagram.
		size = min(l.maxPacket(), 65535) + 1
	case DTLS:
		// A DTLS read returns one record's plaintext, at most 2^14 bytes
		// (RFC 6347 4.1, RFC 5246 6.2.1): a larger buffer never fills,
		// and each connection would hold (and each handshake zero) 64 KiB
		// for nothing.
		size = min(l.maxPacket(), maxDTLSPlaintext) + 1
	}
	buf := make([]byte, size)
	var bucket *limit.Bucket
	if l.MaxBytesRate > 0 && l.datagram() {
		// The burst of the largest datagram, as before DTLS had its
		// smaller buffer.
		bucket = limit.NewBucket(l.MaxBytesRate, max(l.MaxBytesRate, float64(min(l.maxPacket(), 65535)+1)))
	}
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			data := buf[:n]
			if !l.datagram() {
				if !c.consumeStream(sr, data) {
					return ""
				}
			} else {
				c.lastRecv.Store(int64(time.Since(c.start)) | 1)
				c.received(n)
				if n > l.maxPacket() || bucket != nil && !bucket.Allow(float64(n)) {
					ls.dropped.Add(1)
				} else if !c.enqueueBytes(data) || !c.pace() {
					return ""
				}
			}
		}
		if err != nil {
			if l.datagram() && errors.Is(err, io.ErrShortBuffer) {
				ls.dropped.Add(1) // longer than our buffer: oversized
				continue
			}
			return readErrReason(err, l.Type)
		}
	}
}

// DatagramReader is implemented by datagram connections that lend each
// datagram to their reader in storage of their own (the pseudo-connections
// of listener.UDPListener, and listener.DTLS's sessions), so that the
// reader holds no buffer while it waits: with thousands of quiet peers, a
// read buffer of max_packet_size bytes each would be most of what a peer
// costs. The gateway reads a udp or dtls connection whose net.Conn
// implements it through ReadDatagram, and any other through Read.
type DatagramReader interface {
	// ReadDatagram waits for the next datagram as Read would (the same
	// deadlines, the same errors) and calls f with all of it, once, on the
	// calling goroutine; b is valid only until f returns, and f must not
	// keep it. A datagram longer than the connection can hold is dropped
	// before f is called, as the connection documents. It is safe to call
	// from several goroutines; each datagram goes to one of them.
	ReadDatagram(f func(b []byte)) error
}

// readDatagrams is readLoop for a connection that lends its datagrams
// (DatagramReader): between datagrams it holds no read buffer.
func (c *Conn) readDatagrams(dr DatagramReader) string {
	l, ls := c.l, c.ls
	maxPacket := l.maxPacket()
	var bucket *limit.Bucket
	if l.MaxBytesRate > 0 {
		size := min(maxPacket, 65535) + 1
		bucket = limit.NewBucket(l.MaxBytesRate, max(l.MaxBytesRate, float64(size)))
	}
	stop := false
	// One closure for the connection's life, not one per datagram.
	handle := func(b []byte) {
		n := len(b)
		if n == 0 {
			return // as Read's 0 bytes: nothing to hand over
		}
		c.lastRecv.Store(int64(time.Since(c.start)) | 1)
		c.received(n)
		if n > maxPacket || bucket != nil && !bucket.Allow(float64(n)) {
			ls.dropped.Add(1)
			return
		}
		// enqueueBytes returns once the handler is done with b.
		stop = !c.enqueueBytes(b)
	}
	for {
		err := dr.ReadDatagram(handle)
		if stop {
			return ""
		}
		if err != nil {
			return readErrReason(err, l.Type)
		}
		// Paced after the datagram went back to the connection, so a
		// paused reader holds no buffer either.
		if !c.pace() {
			return ""
		}
	}
}

// maxDTLSPlaintext is the largest plaintext a DTLS record carries.
const maxDTLSPlaintext = 1 << 14

// streamReader is what a TCP or TLS read loop keeps across reads.
type streamReader struct {
	bucket *limit.Bucket    // MaxBytesRate
	dec    *framing.Decoder // Framing
}

func (c *Conn) newStreamReader() *streamReader {
	l := c.l
	sr := &streamReader{}
	if l.MaxBytesRate > 0 {
		size := float64(c.srv.opts.ReadBufferSize)
		sr.bucket = limit.NewBucket(l.MaxBytesRate, max(l.MaxBytesRate, size))
	}
	if l.Framing.Kind != framing.None {
		fc := l.Framing
		fc.MaxFrame = l.maxPacket()
		sr.dec, _ = framing.NewDecoder(fc) // validated by Listener.check
	}
	return sr
}

// consumeStream hands one chunk read from a stream to the handler, whole
// or frame by frame, and applies MaxBytesRate. It returns once the handler
// is done with data, so the reader can reuse its buffer, and reports false
// when the connection no longer takes bytes.
func (c *Conn) consumeStream(sr *streamReader, data []byte) bool {
	c.lastRecv.Store(int64(time.Since(c.start)) | 1)
	c.received(len(data))
	if dec := sr.dec; dec != nil {
		dec.Feed(data)
		for {
			frame, ok, ferr := dec.Next()
			if ferr != nil {
				c.ls.overflow.Add(1)
				c.srv.log.Info("gateway: frame too large; closing", "conn", c.handle, "listener", c.l.Name, "err", ferr)
				c.closeWith("{shutdown,frame_too_large}")
				return false
			}
			if !ok {
				break
			}
			if !c.enqueueBytes(frame) {
				return false
			}
		}
	} else if !c.enqueueBytes(data) {
		return false
	}
	if !c.pace() {
		return false
	}
	if sr.bucket != nil {
		// Backpressure: read no more until the rate allows it.
		if d := sr.bucket.Reserve(float64(len(data))); d > 0 && !c.pause(d) {
			return false
		}
	}
	return true
}

// pause sleeps for d unless the connection closes first; it reports whether
// the connection is still open.
func (c *Conn) pause(d time.Duration) bool {
	c.mu.Lock()
	wake := c.wakeLocked()
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return false
	case <-c.srv.stopCtx.Done():
		return false
	}
}

// pace holds the reader of a connection that published while the
// gateway's deliveries are behind its publishers (Pacer), until they catch
// up, and reports whether the connection is still open. The device's
// further bytes wait in the socket meanwhile, so a burst is slowed down by
// TCP flow control instead of overflowing the queues of subscribers that
// keep up.
func (c *Conn) pace() bool {
	if !c.published.Load() {
		return true
	}
	c.published.Store(false)
	p := c.srv.pacer
	if p == nil {
		return true
	}
	var wake <-chan struct{}
	for {
		behind := p.Behind()
		if behind == nil {
			return true
		}
		if wake == nil {
			c.mu.Lock()
			wake = c.wakeLocked()
			c.mu.Unlock()
		}
		select {
		case <-behind:
		case <-wake:
			return false
		case <-c.srv.stopCtx.Done():
			return false
		}
	}
}

// readErrReason names why a read ended, as EMQX did.
func readErrReason(err error, t SocketType) string {
	switch {
	case errors.Is(err, io.EOF):
		switch t {
		case SSL:
			return ReasonSSLClosed
		case UDP:
			return "{shutdown,udp_closed}"
		case DTLS:
			return "{shutdown,dtls_closed}"
		}
		return ReasonTCPClosed
	case errors.Is(err, syscall.ECONNRESET):
		return "{shutdown,econnreset}"
	case errors.Is(err, net.ErrClosed):
		return ReasonNormal
	}
	return "{shutdown," + err.Error() + "}"
}
