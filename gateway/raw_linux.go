//go:build linux

package gateway

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Plain TCP sockets (no TLS, no PROXY header) are read and written through
// their syscall.RawConn, for three savings over net.Conn's Read and Write:
//
//   - An idle connection holds no read buffer. The reader waits for the
//     socket to become readable without one, takes a buffer from the
//     server's pool to read, and gives it back once the socket is drained.
//     With thousands of idle devices, that is the largest part of what a
//     connection costs.
//   - A read shorter than the buffer drained the socket (TCP returns all
//     it has, up to the buffer), so the reader waits for the next
//     readiness event instead of reading again to see EAGAIN: one system
//     call per message instead of two. This is safe because the whole
//     connection runs in one RawConn.Read, whose readiness state is never
//     reset between reads (every new Read resets it).
//   - A write sets no deadline unless it would block: SetWriteDeadline arms
//     a runtime timer, and re-arming it on every write costs more than the
//     write itself when the socket buffer has room, as it nearly always
//     has.

// rawSocket returns the RawConn of a plain TCP socket, or nil.
func rawSocket(nc net.Conn) syscall.RawConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// readBufPool returns the server's pool of read buffers for raw sockets.
func (s *Server) readBufPool() *sync.Pool {
	s.bufOnce.Do(func() {
		size := s.opts.ReadBufferSize
		s.bufs.New = func() any {
			b := make([]byte, size)
			return &b
		}
	})
	return &s.bufs
}

// readLoopRaw is readLoop for a plain TCP socket. The whole connection runs
// in one rc.Read: its callback reads and hands the bytes to the handler
// until the socket is drained, then returns false to wait for more.
func (c *Conn) readLoopRaw(rc syscall.RawConn, sr *streamReader) string {
	pool := c.srv.readBufPool()
	var (
		buf     *[]byte
		reason  string
		drained bool // the last read emptied the socket: wait before reading
	)
	read := func(fd uintptr) bool {
		for {
			if drained {
				drained = false
				pool.Put(buf)
				buf = nil
				return false
			}
			if buf == nil {
				buf = pool.Get().(*[]byte)
			}
			n, err := syscall.Read(int(fd), *buf)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				// Woken without data: wait again.
				drained = true
				continue
			case err != nil:
				reason = readErrReason(os.NewSyscallError("read", err), c.l.Type)
				return true
			case n == 0:
				reason = readErrReason(io.EOF, c.l.Type)
				return true
			}
			if !c.consumeStream(sr, (*buf)[:n]) {
				return true
			}
			drained = n < len(*buf)
		}
	}
	err := rc.Read(read)
	if buf != nil {
		pool.Put(buf)
	}
	if err != nil {
		return readErrReason(err, c.l.Type)
	}
	return reason
}

// rawWriter writes to a plain TCP socket. Its fields are used under the
// connection's wmu.
type rawWriter struct {
	rc       syscall.RawConn
	write1   func(fd uintptr) bool // made once: a closure per write would allocate
	b        []byte                // what is left to write
	err      error
	deadline bool // a write deadline is set
	nc       net.Conn
	timeout  time.Duration
}

func newRawWriter(rc syscall.RawConn) *rawWriter {
	w := &rawWriter{rc: rc}
	w.write1 = w.writeSome
	return w
}

// writeSome is the callback of rc.Write: it writes until b is empty, or
// until the socket buffer is full, when it sets the write deadline (once
// per write) and returns false to wait.
func (w *rawWriter) writeSome(fd uintptr) bool {
	for len(w.b) > 0 {
		n, err := syscall.Write(int(fd), w.b)
		if n > 0 {
			w.b = w.b[n:]
		}
		switch err {
		case nil, syscall.EINTR:
		case syscall.EAGAIN:
			if !w.deadline {
				w.deadline = true
				w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
			}
			return false
		default:
			w.err = os.NewSyscallError("write", err)
			return true
		}
	}
	return true
}

// write writes all of b, waiting at most timeout for room in the socket
// buffer.
func (w *rawWriter) write(nc net.Conn, b []byte, timeout time.Duration) error {
	w.b, w.err, w.nc, w.timeout = b, nil, nc, timeout
	err := w.rc.Write(w.write1)
	if w.deadline {
		// An expired deadline would fail the next write before it starts.
		w.deadline = false
		nc.SetWriteDeadline(time.Time{})
	}
	w.b, w.nc = nil, nil
	if err == nil {
		err = w.err
	}
	return err
}

// shutdownRaw shuts a raw socket down in both directions without closing
// it: its reader wakes and reads the end of the stream, a blocked writer
// fails.
func shutdownRaw(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
}
