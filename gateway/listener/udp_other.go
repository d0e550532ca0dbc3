//go:build !linux

package listener

import (
	"errors"
	"net"
	"net/netip"
)

// batchReader is not available outside Linux: the read loop reads one
// datagram per call.
type batchReader struct{}

func newBatchReader(*net.UDPConn, int) *batchReader { return nil }

func (*batchReader) readSome(func(netip.AddrPort, []byte)) error { return errNoRecvmmsg }

var errNoRecvmmsg = errors.New("listener: recvmmsg not supported")
