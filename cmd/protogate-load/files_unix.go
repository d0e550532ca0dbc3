//go:build unix

package main

import (
	"syscall"
)

// fileLimit returns the soft RLIMIT_NOFILE, which Go raised to the hard
// limit at start.
func fileLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}

// peekClosed reports whether the peer of nc has closed it (or reset it),
// without blocking and without consuming data; false when it cannot tell.
func peekClosed(nc syscall.Conn) bool {
	rc, err := nc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		case err != nil:
			closed = true // ECONNRESET and the like
		case n == 0:
			closed = true // EOF
		}
		return true
	})
	return closed
}
