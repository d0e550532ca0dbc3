package listener

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v2/pkg/protocol"
	"github.com/pion/dtls/v2/pkg/protocol/handshake"
	"github.com/pion/dtls/v2/pkg/protocol/recordlayer"
)

// FuzzParsePSK checks the parser of DTLS pre-shared key files on any
// content:
//
//   - it never panics; errors say "listener: psk file";
//   - every identity it returns is non-empty without surrounding spaces,
//     every key non-empty;
//   - the table written back as "identity:hexkey" lines parses to the same
//     table.
func FuzzParsePSK(f *testing.F) {
	for _, s := range []string{
		"# comment\ndev-1:000102030405060708090a0b0c0d0e0f\n\n  dev-2 : ABCDEF \n",
		"\uFEFFa:00\r\nb:c:0102\r\n  # indented comment\n",
		"a#b:01\n", "a:0\n", "a:\n", ":01\n", "a:01\na:02\n", "no colon\n", "a:zz\n",
		"a:01", "\xff\xfe:01\n", strings.Repeat("x", 5000) + ":01\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		table, err := parsePSK("f", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "listener: psk file f:") {
				t.Fatalf("parsePSK: %v", err)
			}
			return
		}
		var b bytes.Buffer
		b.WriteString("# written back\n") // so that an identity starting with a BOM keeps it
		for id, key := range table {
			if id == "" || strings.TrimSpace(id) != id || len(key) == 0 {
				t.Fatalf("identity %q, key % x", id, key)
			}
			b.WriteString(id + ":" + hex.EncodeToString(key) + "\n")
		}
		again, err := parsePSK("f", b.Bytes())
		if err != nil || len(again) != len(table) {
			t.Fatalf("written back as %q: %d identities, %v", b.Bytes(), len(again), err)
		}
		for id, key := range table {
			if !bytes.Equal(again[id], key) {
				t.Fatalf("identity %q: key % x, written back % x", id, key, again[id])
			}
		}
	})
}

// datagramConn is a net.Conn whose Read returns one datagram as the UDP
// listener's pseudo-connections do: what fits, and io.ErrShortBuffer when
// it does not all fit.
type datagramConn struct {
	net.Conn
	b []byte
}

func (c *datagramConn) Read(p []byte) (int, error) {
	n := copy(p, c.b)
	if n < len(c.b) {
		return n, io.ErrShortBuffer
	}
	return n, nil
}

func (*datagramConn) SetReadDeadline(time.Time) error { return nil }

// FuzzReadClientHello checks the DTLS listener's first-datagram filter,
// which refuses anything but a ClientHello before pion/dtls sees it:
//
//   - it accepts only a datagram of at most maxRecord bytes whose first
//     record is an epoch-0 handshake record holding a ClientHello header,
//     and returns it unchanged;
//   - it refuses nothing pion/dtls would take as a ClientHello: when pion
//     splits the datagram into records and reads the first as an epoch-0
//     handshake record carrying a client_hello handshake header, it is
//     accepted;
//   - every refusal wraps ErrNotClientHello.
func FuzzReadClientHello(f *testing.F) {
	hs := func(typ byte, body []byte) []byte {
		n := len(body)
		h := []byte{typ, 0, byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)}
		return append(h, body...)
	}
	f.Add(rec(22, 0, 0, hs(1, []byte{0xfe, 0xfd, 1, 2, 3})))
	f.Add(rec(22, 0, 0, hs(1, nil)))
	f.Add(cat(rec(22, 0, 0, hs(1, []byte("hello"))), rec(23, 1, 1, []byte("x"))))
	f.Add(rec(22, 0, 1, hs(2, []byte("server hello"))))
	f.Add(rec(22, 1, 0, hs(1, []byte("epoch 1"))))
	f.Add(rec(23, 0, 0, hs(1, []byte("application data"))))
	f.Add(rec(22, 0, 0, hs(1, nil))[:24])
	f.Add(append([]byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 11)...)) // record length 0
	f.Add(rec(22, 0, 0, hs(1, make([]byte, maxRecord))))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, dg []byte) {
		got, err := readClientHello(context.Background(), &datagramConn{b: dg})
		if err != nil {
			if !errors.Is(err, ErrNotClientHello) {
				t.Fatalf("error %v wraps no ErrNotClientHello", err)
			}
		} else {
			if !bytes.Equal(got, dg) || len(dg) > maxRecord || len(dg) < 25 ||
				dg[0] != 22 || dg[1] != 0xfe || dg[3] != 0 || dg[4] != 0 || dg[13] != 1 {
				t.Fatalf("accepted % x as % x", dg, got)
			}
		}
		if len(dg) > maxRecord {
			return
		}
		pkts, perr := recordlayer.UnpackDatagram(dg)
		if perr != nil || len(pkts) == 0 {
			return
		}
		var rh recordlayer.Header
		var hh handshake.Header
		if rh.Unmarshal(pkts[0]) != nil || rh.ContentType != protocol.ContentTypeHandshake || rh.Epoch != 0 ||
			hh.Unmarshal(pkts[0][recordlayer.HeaderSize:]) != nil || hh.Type != handshake.TypeClientHello {
			return
		}
		if err != nil {
			t.Fatalf("pion takes % x as a ClientHello (%+v, %+v), the filter refuses it: %v", dg, rh, hh, err)
		}
		if !slices.Equal(got, dg) {
			t.Fatal("changed")
		}
	})
}
