//go:build linux

package gateway

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Plain TCP sockets (no TLS, no PROXY header) are read and written through
// their syscall.RawConn, for three savings over net.Conn's Read and Write:
//
//   - An idle connection holds no read buffer. The reader waits for the
//     socket to become readable without one, takes a buffer from the
//     server's pool to read, and gives it back once the socket is drained.
//     With thousands of idle devices, that is the largest part of what a
//     connection costs.
//   - One system call per message instead of two. net.Conn reads until
//     EAGAIN before it waits for readiness; here each read is a recvmsg
//     that also returns the kernel's TCP_INQ hint: the bytes left in the
//     receive queue, or a non-zero value when the peer's FIN is queued.
//     A hint of zero means the socket is drained and no close is pending,
//     so the reader waits for the next readiness event without the read
//     that would only say EAGAIN. The hint is what makes this safe: a
//     short read alone cannot tell a drained socket from one whose FIN
//     arrived with the data (readiness is edge-triggered, so that FIN
//     raises no further event and the connection would wait forever in
//     CLOSE-WAIT). Where TCP_INQ is unavailable (Linux before 4.18), the
//     reader reads until EAGAIN.
//   - A write sets no deadline unless it would block: SetWriteDeadline arms
//     a runtime timer, and re-arming it on every write costs more than the
//     write itself when the socket buffer has room, as it nearly always
//     has.
//
// The whole connection runs in one RawConn.Read, whose readiness state is
// never reset between reads (every new Read resets it).

// tcpINQ is Linux's TCP_INQ socket option (linux/tcp.h), also the type of
// the TCP_CM_INQ control message that carries the hint.
const tcpINQ = 36

// noINQ makes readers do without the TCP_INQ hint, as on kernels that lack
// it; tests set it to exercise that path.
var noINQ bool

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

// rawRead is a pooled read buffer with the recvmsg header that points at
// it, so that a read allocates nothing and an idle connection holds
// neither.
type rawRead struct {
	buf []byte
	iov syscall.Iovec
	msg syscall.Msghdr
	// ctl receives the TCP_CM_INQ control message: a cmsghdr and an int32.
	ctl [syscall.SizeofCmsghdr + 8]byte
}

func newRawRead(size int) *rawRead {
	r := &rawRead{buf: make([]byte, size)}
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(size)
	r.msg.Iov = &r.iov
	r.msg.Iovlen = 1
	return r
}

// recv reads once from fd. inq is the kernel's hint of what is left to
// read (bytes, or non-zero for a pending FIN), or -1 when it is unknown.
func (r *rawRead) recv(fd int, hint bool) (n, inq int, err error) {
	if !hint {
		n, err = syscall.Read(fd, r.buf)
		return n, -1, err
	}
	r.msg.Control = &r.ctl[0]
	r.msg.SetControllen(len(r.ctl))
	m, _, errno := syscall.Syscall(syscall.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.msg)), 0)
	if errno != 0 {
		return -1, -1, errno
	}
	inq = -1
	if r.msg.Controllen >= syscall.SizeofCmsghdr+4 {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&r.ctl[0]))
		if h.Level == syscall.SOL_TCP && h.Type == tcpINQ {
			inq = int(*(*int32)(unsafe.Pointer(&r.ctl[syscall.SizeofCmsghdr])))
		}
	}
	return int(m), inq, nil
}

// readBufPool returns the server's pool of read buffers for raw sockets.
func (s *Server) readBufPool() *sync.Pool {
	s.bufOnce.Do(func() {
		size := s.opts.ReadBufferSize
		s.bufs.New = func() any { return newRawRead(size) }
	})
	return &s.bufs
}

// enableINQ asks the kernel for the TCP_INQ hint on every recvmsg of rc's
// socket and reports whether it will give it.
func enableINQ(rc syscall.RawConn) bool {
	if noINQ {
		return false
	}
	var err error
	cerr := rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_TCP, tcpINQ, 1)
	})
	return cerr == nil && err == nil
}

// readLoopRaw is readLoop for a plain TCP socket. The whole connection runs
// in one rc.Read: its callback reads and hands the bytes to the handler
// until the socket is drained, then returns false to wait for more.
func (c *Conn) readLoopRaw(rc syscall.RawConn, sr *streamReader) string {
	pool := c.srv.readBufPool()
	hint := enableINQ(rc)
	var (
		rd      *rawRead
		reason  string
		drained bool // the socket is empty and not closed: wait before reading
	)
	read := func(fd uintptr) bool {
		for {
			if drained {
				drained = false
				pool.Put(rd)
				rd = nil
				return false
			}
			if rd == nil {
				rd = pool.Get().(*rawRead)
			}
			n, inq, err := rd.recv(int(fd), hint)
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
			if !c.consumeStream(sr, rd.buf[:n]) {
				return true
			}
			// Only the kernel's hint may skip the read that sees EAGAIN
			// (or the end of the stream).
			drained = inq == 0
		}
	}
	err := rc.Read(read)
	if rd != nil {
		pool.Put(rd)
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
