//go:build !linux

package gateway

import (
	"net"
	"syscall"
	"time"
)

// Elsewhere than on Linux, every socket is read and written through
// net.Conn (see raw_linux.go).

func rawSocket(net.Conn) syscall.RawConn { return nil }

type rawWriter struct{}

func newRawWriter(syscall.RawConn) *rawWriter { return nil }

func shutdownRaw(syscall.RawConn) {}

func (*rawWriter) write(net.Conn, []byte, time.Duration) error { panic("gateway: no raw sockets") }

func (c *Conn) readLoopRaw(syscall.RawConn, *streamReader) string { panic("gateway: no raw sockets") }
