package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// readAll runs Read on data and returns the header, the number of bytes
// Read consumed and the error.
func readAll(data []byte, oneByte bool) (Header, int, error) {
	var src io.Reader = bytes.NewReader(data)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	br := bufio.NewReaderSize(src, 16)
	h, err := Read(br)
	rest, _ := io.ReadAll(br)
	return h, len(data) - len(rest), err
}

func FuzzRead(f *testing.F) {
	seeds := []string{
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET",
		"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
		"PROXY UNKNOWN\r\n", "PROXY UNKNOWN x\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "PROX", "PROXY \r\n",
		v2(0x21, 0x11, ipv4Payload) + "data", v2(0x21, 0x21, ipv6Payload, tlvs), v2(0x20, 0x00),
		v2(0x21, 0x31, unixPayload), v2(0x21, 0x00, tlvs), v2(0x22, 0x11, ipv4Payload), declared(0x11, 4097),
		sigV2, "", "GET / HTTP/1.1\r\n", "\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := readAll(data, false)
		h1, n1, err1 := readAll(data, true)
		if h != h1 || (err == nil) != (err1 == nil) || n != n1 && err == nil {
			t.Fatalf("whole and byte-by-byte reads differ: %+v %v %d; %+v %v %d", h, err, n, h1, err1, n1)
		}
		if err != nil {
			switch {
			case errors.Is(err, ErrNoHeader):
				if n != 0 || n1 != 0 {
					t.Fatalf("%v after consuming %d bytes", err, n)
				}
			case errors.Is(err, ErrMalformed):
			case len(data) == 0 && errors.Is(err, io.EOF):
			default:
				t.Fatalf("error %v wraps no sentinel", err)
			}
			if h != (Header{}) {
				t.Fatalf("header %+v with error %v", h, err)
			}
			return
		}

		// The header is exactly data[:n]: it parses alone, and not one
		// byte shorter.
		if h2, n2, err2 := readAll(data[:n], false); err2 != nil || h2 != h || n2 != n {
			t.Fatalf("header %q alone: %+v, %v, %d", data[:n], h2, err2, n2)
		}
		if _, _, err2 := readAll(data[:n-1], false); err2 == nil {
			t.Fatalf("header %q parses without its last byte", data[:n])
		}

		if h.Version != 1 && h.Version != 2 || h.Command != Local && h.Command != Proxy {
			t.Fatalf("header %+v", h)
		}
		if h.Source.IsValid() != h.Destination.IsValid() || h.Command == Local && h.Source.IsValid() {
			t.Fatalf("header %+v: addresses", h)
		}
		if h.Source.Addr().Zone() != "" || h.Destination.Addr().Zone() != "" {
			t.Fatalf("header %+v: zone", h)
		}
		if h.Source.IsValid() && h.Source.Addr().Is4() != h.Destination.Addr().Is4() {
			t.Fatalf("header %+v: mixed families", h)
		}

		// It encodes back to itself.
		enc := AppendV2
		if h.Version == 1 {
			enc = AppendV1
		}
		again := enc(nil, h)
		if h2, n2, err2 := readAll(again, false); err2 != nil || h2 != h || n2 != len(again) {
			t.Fatalf("re-encoded %+v as %q: %+v, %v", h, again, h2, err2)
		}
	})
}
