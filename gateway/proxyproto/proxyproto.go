// Package proxyproto reads the PROXY protocol header, versions 1 and 2, that
// load balancers such as HAProxy, AWS NLB or nginx put at the start of a TCP
// connection to pass on the address of the client they accepted it from. It
// follows https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt.
//
// A listener behind such a load balancer sets a read deadline, calls Read on
// a bufio.Reader over the accepted connection, and serves NewConn's result
// instead of the connection, so that RemoteAddr reports the real client and
// no byte that followed the header is lost. A TLS listener does the same
// before the handshake: the header precedes the TLS records.
package proxyproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// Commands of a Header.
const (
	// Local marks a connection the proxy made on its own, such as a health
	// check: the connection's own addresses are the real ones. Only
	// version 2 has it.
	Local = 0
	// Proxy marks a connection relayed for a client.
	Proxy = 1
)

// Sentinel errors returned, wrapped, by Read. Use errors.Is to test for them.
var (
	// ErrNoHeader reports a stream that does not start with a PROXY protocol
	// signature. Read returns it as soon as the first bytes differ from both
	// signatures, without waiting for more, and consumes nothing.
	ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")
	// ErrMalformed reports a stream that starts with a PROXY protocol
	// signature but not with a valid header, including one that ends (or
	// times out) before the header does.
	ErrMalformed = errors.New("proxyproto: malformed PROXY protocol header")
)

const (
	sigV1 = "PROXY "
	sigV2 = "\r\n\r\n\x00\r\nQUIT\n"

	// maxV1 is the longest version 1 header, CRLF included.
	maxV1 = 107
	// maxV2Payload is the largest version 2 address and TLV block Read
	// accepts: 216 bytes of Unix addresses and plenty of TLVs.
	maxV2Payload = 4096
)

// Header is a parsed PROXY protocol header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Command is Local or Proxy. Version 1 headers are always Proxy.
	Command int
	// Source and Destination are the addresses of the client and of the
	// proxy's listener it connected to. Both are zero unless the header
	// carries IPv4 or IPv6 addresses: for Local, for version 1 UNKNOWN and
	// for version 2 UNSPEC and AF_UNIX headers, and the connection's own
	// addresses must be used instead.
	Source, Destination netip.AddrPort
}

// Read reads one PROXY protocol header, version 1 or 2 as its signature
// says, from the start of r. It consumes exactly the header: whatever the
// peer sent after it stays in r for the caller. The Header it returns is
// zero on error.
//
// Errors wrap ErrNoHeader if the stream does not start with a signature, in
// which case Read consumed nothing, or ErrMalformed otherwise; an error from
// r that ends the header early is wrapped too, with io.EOF turned into
// io.ErrUnexpectedEOF. An empty stream gives an error that wraps io.EOF and
// neither sentinel: load balancer health checks often connect and close.
//
// Read does no timing of its own: the caller sets a read deadline on the
// connection, and r must hold at least 16 bytes (any bufio.Reader does).
//
// Version 1 is parsed strictly: "PROXY TCP4 " or "PROXY TCP6 ", source and
// destination addresses of that family, source and destination ports in
// decimal without leading zeros, single spaces, and "\r\n", 107 bytes at
// most; or "PROXY UNKNOWN" and anything up to "\r\n". Version 2 accepts the
// LOCAL and PROXY commands; with PROXY, TCP or UDP over IPv4 or IPv6, UNSPEC
// and AF_UNIX. TLVs are skipped unread. A version 2 header whose address and
// TLV block is longer than 4096 bytes is refused as malformed: the format
// allows 65535, but real headers need far less, and the bound limits what a
// peer can make Read consume.
func Read(r *bufio.Reader) (Header, error) {
	version, err := detect(r)
	if err != nil {
		return Header{}, err
	}
	var h Header
	if version == 1 {
		h, err = readV1(r)
	} else {
		h, err = readV2(r)
	}
	if err != nil {
		return Header{}, err
	}
	return h, nil
}

// detect returns the version whose signature starts r, without consuming it.
// It waits for more bytes only while those it has match a signature.
func detect(r *bufio.Reader) (int, error) {
	b, err := r.Peek(1)
	if len(b) == 0 {
		return 0, fmt.Errorf("proxyproto: reading header: %w", err)
	}
	var sig string
	var version int
	switch b[0] {
	case sigV1[0]:
		sig, version = sigV1, 1
	case sigV2[0]:
		sig, version = sigV2, 2
	default:
		return 0, fmt.Errorf("%w: stream starts with %q", ErrNoHeader, b[0])
	}
	for n := 1; n < len(sig); {
		b, err := r.Peek(max(n+1, min(r.Buffered(), len(sig))))
		for i := n; i < len(b); i++ {
			if b[i] != sig[i] {
				return 0, fmt.Errorf("%w: stream starts with %q", ErrNoHeader, b[:i+1])
			}
		}
		if err != nil {
			return 0, truncated(err)
		}
		n = len(b)
	}
	return version, nil
}

func truncated(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: truncated: %w", ErrMalformed, err)
}

func readV1(r *bufio.Reader) (Header, error) {
	var buf [maxV1]byte
	n := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return Header{}, truncated(err)
		}
		buf[n] = c
		n++
		if c == '\n' {
			break
		}
		if n == maxV1 {
			return Header{}, fmt.Errorf("%w: version 1 header without CRLF in %d bytes", ErrMalformed, maxV1)
		}
	}
	if n < 2 || buf[n-2] != '\r' {
		return Header{}, fmt.Errorf("%w: version 1 header ends in LF without CR", ErrMalformed)
	}
	line := string(buf[len(sigV1) : n-2])
	if line == "UNKNOWN" || strings.HasPrefix(line, "UNKNOWN ") {
		return Header{Version: 1, Command: Proxy}, nil
	}
	f := strings.Split(line, " ")
	if len(f) != 5 {
		return Header{}, fmt.Errorf("%w: version 1 header %q: want protocol, 2 addresses and 2 ports separated by single spaces", ErrMalformed, line)
	}
	var want4 bool
	switch f[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, fmt.Errorf("%w: version 1 protocol %q, want TCP4, TCP6 or UNKNOWN", ErrMalformed, f[0])
	}
	var addrs [2]netip.Addr
	for i, s := range f[1:3] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is4() != want4 || a.Zone() != "" {
			return Header{}, fmt.Errorf("%w: version 1 %s address %q", ErrMalformed, f[0], s)
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i, s := range f[3:5] {
		p, ok := parsePort(s)
		if !ok {
			return Header{}, fmt.Errorf("%w: version 1 port %q", ErrMalformed, s)
		}
		ports[i] = p
	}
	return Header{
		Version:     1,
		Command:     Proxy,
		Source:      netip.AddrPortFrom(addrs[0], ports[0]),
		Destination: netip.AddrPortFrom(addrs[1], ports[1]),
	}, nil
}

// parsePort parses a decimal port from 0 to 65535 without sign or leading
// zeros.
func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 || s[0] == '0' && len(s) > 1 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	if v > 0xffff {
		return 0, false
	}
	return uint16(v), true
}

func readV2(r *bufio.Reader) (Header, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Header{}, truncated(err)
	}
	if v := hdr[12] >> 4; v != 2 {
		return Header{}, fmt.Errorf("%w: version 2 signature with version %d", ErrMalformed, v)
	}
	cmd := int(hdr[12] & 0xf)
	if cmd != Local && cmd != Proxy {
		return Header{}, fmt.Errorf("%w: version 2 command %d", ErrMalformed, cmd)
	}
	fam := hdr[13]
	size := int(binary.BigEndian.Uint16(hdr[14:]))
	if size > maxV2Payload {
		return Header{}, fmt.Errorf("%w: version 2 payload of %d bytes, limit %d", ErrMalformed, size, maxV2Payload)
	}
	h := Header{Version: 2, Command: cmd}
	// LOCAL: the family and the addresses are to be ignored.
	need := 0
	if cmd == Proxy {
		switch fam {
		case 0x00: // UNSPEC
		case 0x11, 0x12: // TCP, UDP over IPv4
			need = 12
		case 0x21, 0x22: // TCP, UDP over IPv6
			need = 36
		case 0x31, 0x32: // AF_UNIX stream, datagram
		default:
			return Header{}, fmt.Errorf("%w: version 2 address family and protocol 0x%02x", ErrMalformed, fam)
		}
		if fam>>4 == 3 && size < 216 {
			return Header{}, fmt.Errorf("%w: version 2 AF_UNIX payload of %d bytes, want at least 216", ErrMalformed, size)
		}
		if size < need {
			return Header{}, fmt.Errorf("%w: version 2 payload of %d bytes, want at least %d for family 0x%02x", ErrMalformed, size, need, fam)
		}
	}
	var a [36]byte
	if _, err := io.ReadFull(r, a[:need]); err != nil {
		return Header{}, truncated(err)
	}
	if _, err := r.Discard(size - need); err != nil {
		return Header{}, truncated(err)
	}
	switch need {
	case 12:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:]))
	case 36:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:]))
	}
	return h, nil
}

// family returns the address family AppendV1 and AppendV2 encode h's
// addresses with: 4 if both are IPv4, 6 if both are valid and one is not
// (an IPv4 address is then written IPv4-mapped), 0 for none.
func family(h Header) int {
	s, d := h.Source.Addr(), h.Destination.Addr()
	switch {
	case h.Command == Local || !s.IsValid() || !d.IsValid():
		return 0
	case s.Is4() && d.Is4():
		return 4
	}
	return 6
}

func as16(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
}

// AppendV1 appends h encoded as a version 1 header to dst and returns the
// extended slice. It ignores h.Version. A header without both addresses, or
// with the Local command that version 1 lacks, is written "PROXY UNKNOWN";
// IPv6 zones are dropped.
func AppendV1(dst []byte, h Header) []byte {
	dst = append(dst, sigV1...)
	s, d := h.Source, h.Destination
	switch family(h) {
	case 0:
		return append(dst, "UNKNOWN\r\n"...)
	case 4:
		dst = append(dst, "TCP4 "...)
	case 6:
		dst = append(dst, "TCP6 "...)
		s, d = as16(s), as16(d)
	}
	dst = s.Addr().WithZone("").AppendTo(dst)
	dst = append(dst, ' ')
	dst = d.Addr().WithZone("").AppendTo(dst)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(s.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(d.Port()), 10)
	return append(dst, "\r\n"...)
}

// AppendV2 appends h encoded as a version 2 header, without TLVs, to dst and
// returns the extended slice. It ignores h.Version. Any Command other than
// Local is written as PROXY; a PROXY header without both addresses is
// written with the UNSPEC family, and one with addresses as TCP.
func AppendV2(dst []byte, h Header) []byte {
	dst = append(dst, sigV2...)
	if h.Command == Local {
		return append(dst, 0x20, 0x00, 0, 0)
	}
	s, d := h.Source, h.Destination
	switch family(h) {
	case 0:
		return append(dst, 0x21, 0x00, 0, 0)
	case 4:
		dst = append(dst, 0x21, 0x11, 0, 12)
		dst = append(dst, s.Addr().AsSlice()...)
		dst = append(dst, d.Addr().AsSlice()...)
	case 6:
		dst = append(dst, 0x21, 0x21, 0, 36)
		s16, d16 := s.Addr().As16(), d.Addr().As16()
		dst = append(dst, s16[:]...)
		dst = append(dst, d16[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, s.Port())
	return binary.BigEndian.AppendUint16(dst, d.Port())
}

// NewConn returns nc as the PROXY protocol header h describes it. r is the
// reader Read took h from, and it must read from nc: reads of the returned
// connection return what r buffered first, then read nc directly, and r is
// released. RemoteAddr and LocalAddr report h.Source and h.Destination, as
// *net.TCPAddr, when h is a Proxy header with addresses; otherwise those of
// nc. Every other method is nc's. Like any net.Conn, the result is safe for
// concurrent use.
func NewConn(nc net.Conn, r *bufio.Reader, h Header) net.Conn {
	c := &conn{Conn: nc, r: r}
	if h.Command == Proxy && h.Source.IsValid() && h.Destination.IsValid() {
		c.remote = net.TCPAddrFromAddrPort(h.Source)
		c.local = net.TCPAddrFromAddrPort(h.Destination)
	}
	return c
}

type conn struct {
	net.Conn
	remote, local net.Addr // nil: nc's

	mu sync.Mutex    // guards r
	r  *bufio.Reader // nil once drained
}

func (c *conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	r := c.r
	if r != nil && r.Buffered() == 0 {
		c.r, r = nil, nil
	}
	if r == nil {
		c.mu.Unlock()
		return c.Conn.Read(b)
	}
	defer c.mu.Unlock()
	// Only what is buffered: a read of nc through r would copy twice.
	n, _ := r.Read(b[:min(len(b), r.Buffered())])
	return n, nil
}

func (c *conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}
