package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// v2 builds a version 2 header: signature, version and command byte, family
// and protocol byte, the payload's length, and the payload.
func v2(verCmd, fam byte, payload ...[]byte) string {
	p := bytes.Join(payload, nil)
	b := append([]byte(sigV2), verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	return string(append(b, p...))
}

// declared is a version 2 header that declares n payload bytes and carries
// none.
func declared(fam byte, n int) string {
	b := append([]byte(sigV2), 0x21, fam)
	return string(binary.BigEndian.AppendUint16(b, uint16(n)))
}

var (
	ipv4Payload = []byte{192, 0, 2, 1, 198, 51, 100, 7, 0xdc, 0x04, 0x01, 0xbb}
	ipv6Payload = append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice()...), 0x30, 0x39, 0x22, 0xb3)
	tlvs        = []byte{0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00, 0xea, 0x00, 0x03, 0x01, 0x02, 0x03}
	unixPayload = make([]byte, 216)
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestRead(t *testing.T) {
	h4 := Header{Version: 1, Command: Proxy, Source: ap("192.168.0.1:56324"), Destination: ap("192.168.0.11:443")}
	h6 := Header{Version: 1, Command: Proxy, Source: ap("[2001:db8::1]:1"), Destination: ap("[2001:db8::2]:65535")}
	unknown1 := Header{Version: 1, Command: Proxy}
	v2ip4 := Header{Version: 2, Command: Proxy, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.7:443")}
	v2ip6 := Header{Version: 2, Command: Proxy, Source: ap("[2001:db8::1]:12345"), Destination: ap("[2001:db8::2]:8883")}
	local2 := Header{Version: 2, Command: Local}
	proxy2 := Header{Version: 2, Command: Proxy}
	max1 := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	if len(max1) != 107 {
		t.Fatalf("max1 is %d bytes", len(max1))
	}

	const (
		ok        = iota
		noHeader  // ErrNoHeader
		malformed // ErrMalformed
		eof       // io.EOF and no sentinel
	)
	tests := []struct {
		name  string
		in    string
		want  Header
		rest  string // what remains readable after a successful Read
		err   int
		trunc bool   // the error wraps io.ErrUnexpectedEOF
		msg   string // a substring of the error message
	}{
		// Version 1.
		{name: "v1 tcp4", in: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n", want: h4, rest: "GET / HTTP/1.1\r\n"},
		{name: "v1 tcp6", in: "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n\x16\x03\x01", want: h6, rest: "\x16\x03\x01"},
		{name: "v1 tcp6 ipv4-mapped", in: "PROXY TCP6 ::ffff:10.0.0.1 ::1 0 1\r\n", want: Header{Version: 1, Command: Proxy, Source: ap("[::ffff:10.0.0.1]:0"), Destination: ap("[::1]:1")}},
		{name: "v1 unknown", in: "PROXY UNKNOWN\r\nrest", want: unknown1, rest: "rest"},
		{name: "v1 unknown ignores the rest", in: "PROXY UNKNOWN whatever \t\r junk\r\nx", want: unknown1, rest: "x"},
		{name: "v1 longest", in: max1 + "x", want: unknown1, rest: "x"},
		{name: "v1 108 bytes", in: max1[:14] + "f" + max1[14:], err: malformed, msg: "without CRLF in 107 bytes"},
		{name: "v1 no CR", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", err: malformed, msg: "LF without CR"},
		{name: "v1 bare LF right after signature", in: "PROXY \n", err: malformed},
		{name: "v1 empty", in: "PROXY \r\n", err: malformed},
		{name: "v1 no addresses", in: "PROXY TCP4\r\n", err: malformed},
		{name: "v1 missing port", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", err: malformed},
		{name: "v1 extra field", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", err: malformed},
		{name: "v1 trailing space", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", err: malformed},
		{name: "v1 double space", in: "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", err: malformed},
		{name: "v1 tab", in: "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", err: malformed},
		{name: "v1 unknown protocol", in: "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", err: malformed, msg: `protocol "UDP4"`},
		{name: "v1 lowercase protocol", in: "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", err: malformed},
		{name: "v1 unknownx", in: "PROXY UNKNOWNX\r\n", err: malformed},
		{name: "v1 tcp4 with ipv6", in: "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", err: malformed, msg: `address "::1"`},
		{name: "v1 tcp6 with ipv4", in: "PROXY TCP6 ::1 5.6.7.8 1 2\r\n", err: malformed},
		{name: "v1 ipv4 leading zero", in: "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", err: malformed},
		{name: "v1 zone", in: "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", err: malformed},
		{name: "v1 host name", in: "PROXY TCP4 localhost 5.6.7.8 1 2\r\n", err: malformed},
		{name: "v1 port too large", in: "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", err: malformed, msg: `port "65536"`},
		{name: "v1 port leading zero", in: "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", err: malformed},
		{name: "v1 port sign", in: "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", err: malformed},
		{name: "v1 port hex", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n", err: malformed},
		{name: "v1 port zero", in: "PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n", want: Header{Version: 1, Command: Proxy, Source: ap("1.2.3.4:0"), Destination: ap("5.6.7.8:0")}},
		{name: "v1 truncated line", in: "PROXY TCP4 1.2.3.4", err: malformed, trunc: true},
		{name: "v1 truncated before LF", in: "PROXY UNKNOWN\r", err: malformed, trunc: true},
		{name: "v1 truncated signature", in: "PROX", err: malformed, trunc: true},
		{name: "v1 signature mismatch", in: "PROXX", err: noHeader},
		{name: "v1 lowercase signature", in: "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", err: noHeader},
		{name: "v1 signature without space", in: "PROXY\r\n", err: noHeader},

		// Version 2.
		{name: "v2 tcp4", in: v2(0x21, 0x11, ipv4Payload) + "data", want: v2ip4, rest: "data"},
		{name: "v2 udp4", in: v2(0x21, 0x12, ipv4Payload), want: v2ip4},
		{name: "v2 tcp6", in: v2(0x21, 0x21, ipv6Payload) + "data", want: v2ip6, rest: "data"},
		{name: "v2 udp6", in: v2(0x21, 0x22, ipv6Payload), want: v2ip6},
		{name: "v2 tcp4 with TLVs", in: v2(0x21, 0x11, ipv4Payload, tlvs) + "\r\n\r\n", want: v2ip4, rest: "\r\n\r\n"},
		{name: "v2 tcp6 with TLVs", in: v2(0x21, 0x21, ipv6Payload, tlvs), want: v2ip6},
		{name: "v2 local", in: v2(0x20, 0x00) + "x", want: local2, rest: "x"},
		{name: "v2 local ignores family and payload", in: v2(0x20, 0x11, ipv4Payload) + "x", want: local2, rest: "x"},
		{name: "v2 local with any family byte", in: v2(0x20, 0xff, tlvs), want: local2},
		{name: "v2 unspec", in: v2(0x21, 0x00, tlvs) + "x", want: proxy2, rest: "x"},
		{name: "v2 unix stream", in: v2(0x21, 0x31, unixPayload) + "x", want: proxy2, rest: "x"},
		{name: "v2 unix datagram with TLVs", in: v2(0x21, 0x32, unixPayload, tlvs), want: proxy2},
		{name: "v2 unix short", in: v2(0x21, 0x31, unixPayload[:215]), err: malformed, msg: "AF_UNIX payload of 215 bytes"},
		{name: "v2 largest payload", in: v2(0x21, 0x11, ipv4Payload, make([]byte, 4096-12)) + "x", want: v2ip4, rest: "x"},
		{name: "v2 payload too large", in: declared(0x11, 4097), err: malformed, msg: "payload of 4097 bytes, limit 4096"},
		{name: "v2 payload max uint16", in: declared(0x00, 0xffff), err: malformed},
		{name: "v2 tcp4 short payload", in: v2(0x21, 0x11, ipv4Payload[:11]), err: malformed, msg: "want at least 12"},
		{name: "v2 tcp6 with ipv4 payload", in: v2(0x21, 0x21, ipv4Payload), err: malformed},
		{name: "v2 version 1", in: v2(0x11, 0x11, ipv4Payload), err: malformed, msg: "with version 1"},
		{name: "v2 version 3", in: v2(0x31, 0x11, ipv4Payload), err: malformed},
		{name: "v2 command 2", in: v2(0x22, 0x11, ipv4Payload), err: malformed, msg: "command 2"},
		{name: "v2 family 4", in: v2(0x21, 0x41, ipv4Payload), err: malformed, msg: "0x41"},
		{name: "v2 inet unspec protocol", in: v2(0x21, 0x10, ipv4Payload), err: malformed},
		{name: "v2 inet protocol 3", in: v2(0x21, 0x13, ipv4Payload), err: malformed},
		{name: "v2 truncated fixed header", in: sigV2 + "\x21\x11\x00", err: malformed, trunc: true},
		{name: "v2 truncated addresses", in: v2(0x21, 0x11, ipv4Payload)[:20], err: malformed, trunc: true},
		{name: "v2 truncated TLVs", in: v2(0x21, 0x11, ipv4Payload, tlvs)[:30], err: malformed, trunc: true},
		{name: "v2 only the signature", in: sigV2, err: malformed, trunc: true},
		{name: "v2 truncated signature", in: sigV2[:7], err: malformed, trunc: true},
		{name: "v2 signature mismatch", in: sigV2[:11] + "X" + "\x21\x00\x00\x00", err: noHeader},

		// No header.
		{name: "empty", in: "", err: eof},
		{name: "http", in: "GET / HTTP/1.1\r\n\r\n", err: noHeader, msg: `stream starts with 'G'`},
		{name: "tls client hello", in: "\x16\x03\x01\x02\x00\x01", err: noHeader},
		{name: "crlf", in: "\r\n\r\nhello", err: noHeader, msg: `"\r\n\r\nh"`},
		{name: "single P", in: "P", err: malformed, trunc: true},
		{name: "binary", in: "\x00\x01\x02", err: noHeader},
	}
	readers := map[string]func(string) io.Reader{
		"whole":       func(s string) io.Reader { return strings.NewReader(s) },
		"byte a read": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half a read": func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				br := bufio.NewReaderSize(mk(tt.in), 16)
				h, err := Read(br)
				rest, _ := io.ReadAll(br)
				switch tt.err {
				case ok:
					if err != nil {
						t.Fatalf("Read: %v", err)
					}
					if h != tt.want {
						t.Fatalf("Read = %+v, want %+v", h, tt.want)
					}
					if string(rest) != tt.rest {
						t.Fatalf("after the header: %q, want %q", rest, tt.rest)
					}
					return
				case noHeader:
					if !errors.Is(err, ErrNoHeader) || errors.Is(err, ErrMalformed) {
						t.Fatalf("error %v, want ErrNoHeader", err)
					}
					if string(rest) != tt.in {
						t.Fatalf("consumed %d bytes before ErrNoHeader", len(tt.in)-len(rest))
					}
				case malformed:
					if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrNoHeader) {
						t.Fatalf("error %v, want ErrMalformed", err)
					}
				case eof:
					if !errors.Is(err, io.EOF) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrNoHeader) {
						t.Fatalf("error %v, want io.EOF", err)
					}
				}
				if h != (Header{}) {
					t.Errorf("Read returned %+v with its error", h)
				}
				if errors.Is(err, io.ErrUnexpectedEOF) != tt.trunc {
					t.Errorf("error %v: wraps io.ErrUnexpectedEOF: %v, want %v", err, !tt.trunc, tt.trunc)
				}
				if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "proxyproto: ") {
					t.Errorf("error %q, want it to contain %q", err, tt.msg)
				}
			})
		}
	}
}

func TestAppend(t *testing.T) {
	tests := []struct {
		h      Header
		v1, v2 string
	}{
		{
			Header{Command: Proxy, Source: ap("192.168.0.1:56324"), Destination: ap("192.168.0.11:443")},
			"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
			v2(0x21, 0x11, []byte{192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb}),
		},
		{
			Header{Command: Proxy, Source: ap("[2001:db8::1]:12345"), Destination: ap("[2001:db8::2]:8883")},
			"PROXY TCP6 2001:db8::1 2001:db8::2 12345 8883\r\n",
			v2(0x21, 0x21, ipv6Payload),
		},
		{
			// Mixed families: the IPv4 address is written IPv4-mapped.
			Header{Command: Proxy, Source: ap("10.0.0.1:1"), Destination: ap("[2001:db8::2]:2")},
			"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1 2\r\n",
			v2(0x21, 0x21, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice(), []byte{0, 1, 0, 2}),
		},
		{
			Header{Command: Proxy, Source: ap("[fe80::1%eth0]:1"), Destination: ap("[fe80::2]:2")},
			"PROXY TCP6 fe80::1 fe80::2 1 2\r\n",
			v2(0x21, 0x21, netip.MustParseAddr("fe80::1").AsSlice(), netip.MustParseAddr("fe80::2").AsSlice(), []byte{0, 1, 0, 2}),
		},
		{Header{Command: Proxy}, "PROXY UNKNOWN\r\n", v2(0x21, 0x00)},
		{Header{Command: Proxy, Source: ap("10.0.0.1:1")}, "PROXY UNKNOWN\r\n", v2(0x21, 0x00)},
		{Header{Command: Local, Source: ap("10.0.0.1:1"), Destination: ap("10.0.0.2:2")}, "PROXY UNKNOWN\r\n", v2(0x20, 0x00)},
	}
	for i, tt := range tests {
		if got := string(AppendV1([]byte("x"), tt.h)); got != "x"+tt.v1 {
			t.Errorf("%d: AppendV1 = %q, want %q", i, got, tt.v1)
		}
		if got := string(AppendV2([]byte("x"), tt.h)); got != "x"+tt.v2 {
			t.Errorf("%d: AppendV2 = %q, want %q", i, got, tt.v2)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	headers := []Header{
		{Command: Proxy, Source: ap("192.0.2.1:0"), Destination: ap("255.255.255.255:65535")},
		{Command: Proxy, Source: ap("[::]:1"), Destination: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")},
		{Command: Proxy, Source: ap("[::ffff:1.2.3.4]:5"), Destination: ap("[::ffff:5.6.7.8]:6")},
		{Command: Proxy},
		{Command: Local},
	}
	for _, h := range headers {
		for version, enc := range map[int]func([]byte, Header) []byte{1: AppendV1, 2: AppendV2} {
			want := h
			want.Version = version
			if version == 1 {
				want.Command = Proxy // version 1 has no LOCAL
				if h.Command == Local {
					want.Source, want.Destination = netip.AddrPort{}, netip.AddrPort{}
				}
			}
			br := bufio.NewReader(bytes.NewReader(enc(nil, h)))
			got, err := Read(br)
			if err != nil || got != want || br.Buffered() != 0 {
				t.Errorf("v%d round trip of %+v: %+v, %v, %d left", version, h, got, err, br.Buffered())
			}
		}
	}
}

func TestDoesNotWaitWithoutSignature(t *testing.T) {
	for _, first := range []string{"GE", "\r\nX", "PROXX", "\x16"} {
		client, server := net.Pipe()
		go func() {
			client.Write([]byte(first)) // and keep the connection open
		}()
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := Read(bufio.NewReader(server))
		if !errors.Is(err, ErrNoHeader) {
			t.Errorf("%q: error %v, want ErrNoHeader at once", first, err)
		}
		client.Close()
		server.Close()
	}
}

func TestDeadline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	// The deadline is set once the partial header has been read (a pipe's
	// Write returns then), so it cuts the wait for the rest of the line,
	// never the wait for the start of the header, however late the writer
	// runs.
	go func() {
		client.Write([]byte("PROXY TCP4 1.2.3.4 "))
		server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	}()
	_, err := Read(bufio.NewReader(server))
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("error %v, want ErrMalformed wrapping the deadline", err)
	}
}

func TestNewConn(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	h := Header{Command: Proxy, Source: ap("[2001:db8::7]:40000"), Destination: ap("192.0.2.10:8883")}
	go func() {
		// Header and the start of the payload in one write, so that the
		// bufio.Reader holds payload bytes once the header is read.
		client.Write(append(AppendV2(nil, h), payload[:100]...))
		client.Write(payload[100:])
		client.Close()
	}()
	br := bufio.NewReader(server)
	got, err := Read(br)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(server, br, got)
	if a, ok := c.RemoteAddr().(*net.TCPAddr); !ok || a.AddrPort() != ap("[2001:db8::7]:40000") {
		t.Errorf("RemoteAddr() = %#v, want a *net.TCPAddr of the source", c.RemoteAddr())
	}
	if s := c.LocalAddr().String(); s != "192.0.2.10:8883" {
		t.Errorf("LocalAddr() = %s", s)
	}
	read, err := io.ReadAll(iotest.OneByteReader(c))
	if err != nil || !bytes.Equal(read, payload) {
		t.Fatalf("read %d bytes, %v; want the %d-byte payload", len(read), err, len(payload))
	}
	if c.(*conn).r != nil {
		t.Error("the bufio.Reader is still held after it was drained")
	}

	// Writes go to the connection.
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	wc := NewConn(c1, bufio.NewReader(c1), Header{Version: 2, Command: Local, Source: ap("10.0.0.1:1"), Destination: ap("10.0.0.2:2")})
	go wc.Write([]byte("pong"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("write through the conn: %q, %v", buf, err)
	}
	// Local: the connection's own addresses.
	if wc.RemoteAddr() != c1.RemoteAddr() || wc.LocalAddr() != c1.LocalAddr() {
		t.Errorf("Local header: addresses %v %v, want the pipe's", wc.RemoteAddr(), wc.LocalAddr())
	}
}

func TestNewConnConcurrentReads(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		client.Write([]byte("PROXY UNKNOWN\r\n" + strings.Repeat("x", 4000)))
		client.Close()
	}()
	br := bufio.NewReader(server)
	h, err := Read(br)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(server, br, h)
	if c.RemoteAddr() != server.RemoteAddr() {
		t.Errorf("UNKNOWN: RemoteAddr() = %v, want the pipe's", c.RemoteAddr())
	}
	total := make(chan int)
	for range 4 {
		go func() {
			n := 0
			buf := make([]byte, 7)
			for {
				m, err := c.Read(buf)
				n += m
				if err != nil {
					total <- n
					return
				}
			}
		}()
	}
	sum := 0
	for range 4 {
		sum += <-total
	}
	if sum != 4000 {
		t.Fatalf("read %d bytes in all, want 4000", sum)
	}
}
