//go:build linux

package listener

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The read loop of a UDPListener reads with recvmmsg on Linux: one system
// call takes every datagram already queued on the socket, up to
// readBatch, where ReadFromUDPAddrPort takes one. Under load, when the
// socket holds datagrams of many peers at once, that saves most of the
// read side's system calls; when it holds one, recvmmsg costs what
// recvfrom does. golang.org/x/net/ipv4's ReadBatch does the same, but
// allocates a net.UDPAddr (and its IP) for every datagram; reading into
// our own headers gives the peer as a netip.AddrPort with no allocation.

// readBatch is how many datagrams one recvmmsg takes at most. Each slot
// has a buffer of MaxDatagram + 1 bytes: 512 KiB per listener at the
// default MaxDatagram, whatever the number of peers.
const readBatch = 8

// batchReader reads a socket's datagrams with recvmmsg. It is used by one
// goroutine, the read loop.
type batchReader struct {
	rc    syscall.RawConn
	bufs  [][]byte
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	hdrs  []unix.Mmsghdr

	// Results of the last recvmmsg, set by doRead.
	n     int
	errno syscall.Errno
	read  func(fd uintptr) bool // doRead, as a func value made once
}

// newBatchReader returns a reader of pc with buffers of size bytes, or
// nil if pc has no RawConn.
func newBatchReader(pc *net.UDPConn, size int) *batchReader {
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &batchReader{
		rc:    rc,
		bufs:  make([][]byte, readBatch),
		iovs:  make([]unix.Iovec, readBatch),
		names: make([]unix.RawSockaddrAny, readBatch),
		hdrs:  make([]unix.Mmsghdr, readBatch),
	}
	for i := range readBatch {
		r.bufs[i] = make([]byte, size)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(size)
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	r.read = r.doRead
	return r
}

// doRead runs one non-blocking recvmmsg; it returns false to wait for the
// socket to become readable when nothing is queued.
func (r *batchReader) doRead(fd uintptr) bool {
	for i := range r.hdrs {
		r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrAny
		r.hdrs[i].Hdr.Flags = 0
		r.hdrs[i].Len = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), errno
		return true
	}
}

// errNoRecvmmsg reports a kernel without recvmmsg (before 2.6.33).
var errNoRecvmmsg = errors.New("listener: recvmmsg not supported")

// readSome waits for datagrams and calls f with each one read (at most
// readBatch), in the order the socket received them. b is valid until f
// returns; n is the datagram's length as the buffer holds it (longer
// datagrams are cut at the buffer's size).
func (r *batchReader) readSome(f func(ap netip.AddrPort, b []byte)) error {
	if err := r.rc.Read(r.read); err != nil {
		return err
	}
	if r.errno != 0 {
		if r.errno == unix.ENOSYS {
			return errNoRecvmmsg
		}
		return &net.OpError{Op: "read", Net: "udp", Err: r.errno}
	}
	for i := range r.n {
		h := &r.hdrs[i]
		ap, ok := sockaddrAddrPort(&r.names[i])
		if !ok {
			continue // not an IP peer: cannot happen on a udp socket
		}
		f(ap, r.bufs[i][:h.Len])
	}
	return nil
}

// sockaddrAddrPort returns the address in sa as ReadFromUDPAddrPort
// would: an IPv4 address for an AF_INET socket, an IPv6 (or IPv4-mapped)
// one for an AF_INET6 socket, its zone named by its index.
func sockaddrAddrPort(sa *unix.RawSockaddrAny) (netip.AddrPort, bool) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port), true
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		a := netip.AddrFrom16(p.Addr)
		if p.Scope_id != 0 {
			// The index, not the interface's name that the net
			// package would look up: writes resolve either.
			a = a.WithZone(strconv.FormatUint(uint64(p.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port), true
	}
	return netip.AddrPort{}, false
}
