package listener

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/protocol/recordlayer"
)

// rec returns one DTLS 1.2 record.
func rec(contentType byte, epoch uint16, seq uint64, payload []byte) []byte {
	b := []byte{contentType, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch),
		byte(seq >> 40), byte(seq >> 32), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq),
		byte(len(payload) >> 8), byte(len(payload))}
	return append(b, payload...)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestParseRecordHeader(t *testing.T) {
	h, err := parseRecordHeader(cat(rec(23, 0x0102, 0x0a0b0c0d0e0f, []byte("abc")), []byte("next")))
	if err != nil {
		t.Fatal(err)
	}
	if want := (recordHeader{contentType: 23, version: 0xfefd, epoch: 0x0102, seq: 0x0a0b0c0d0e0f, length: 3}); h != want {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	if h, err := parseRecordHeader(rec(21, 1, 0, nil)); err != nil || h.length != 0 {
		t.Fatalf("empty record: %+v, %v", h, err)
	}
	for _, b := range [][]byte{nil, rec(23, 1, 1, []byte("abc"))[:12], rec(23, 1, 1, []byte("abc"))[:15]} {
		if _, err := parseRecordHeader(b); !errors.Is(err, errRecordTruncated) {
			t.Errorf("% x: %v, want errRecordTruncated", b, err)
		}
	}
}

func TestDropEpoch0(t *testing.T) {
	e1a, e1b := rec(23, 1, 7, []byte("data")), rec(22, 1, 8, []byte("finished"))
	cke, ccs := rec(22, 0, 3, []byte("client key exchange")), rec(20, 0, 4, []byte{1})
	for _, tc := range []struct {
		name     string
		in, want []byte
	}{
		{"empty", nil, nil},
		{"epoch 1 only", cat(e1a, e1b), cat(e1a, e1b)},
		{"epoch-0 alert", rec(21, 0, 9, []byte{1, 0}), nil},
		{"epoch-0 clienthello", rec(22, 0, 0, bytes.Repeat([]byte{1}, 100)), nil},
		{"interleaved", cat(rec(21, 0, 1, []byte{2, 40}), e1a, rec(23, 0, 2, nil), e1b, rec(99, 0, 3, []byte{0})), cat(e1a, e1b)},
		// The client's final flight, resent because the server's was lost:
		// its Finished is what makes the server resend.
		{"retransmitted final flight", cat(cke, ccs, e1b), e1b},
		{"truncated header", cat(e1a, e1b[:5]), nil},
		{"truncated fragment", cat(e1a, e1b[:len(e1b)-1]), nil},
		{"length beyond the datagram", rec(23, 1, 1, []byte("abc"))[:14], nil},
		{"later epoch", rec(23, 2, 1, []byte("x")), rec(23, 2, 1, []byte("x"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(tc.in)
			if got := b[:dropEpoch0(b)]; !bytes.Equal(got, tc.want) {
				t.Fatalf("got % x\nwant % x", got, tc.want)
			}
		})
	}
}

// FuzzDropEpoch0 checks dropEpoch0 and parseRecordHeader on any datagram:
//
//   - what is left is a sequence of whole records, none of epoch 0;
//   - for a datagram that is a sequence of whole records, it is exactly
//     the records of epoch 1 or later, in order; for any other, nothing;
//   - the record boundaries and headers agree with pion/dtls's own
//     decoder (recordlayer.UnpackDatagram and Header.Unmarshal) wherever
//     pion accepts the datagram.
func FuzzDropEpoch0(f *testing.F) {
	f.Add([]byte{})
	f.Add(rec(21, 0, 5000, []byte{1, 0}))
	f.Add(cat(rec(22, 0, 3, []byte("cke")), rec(20, 0, 4, []byte{1}), rec(22, 1, 0, []byte("finished"))))
	f.Add(cat(rec(23, 1, 7, []byte("data")), rec(99, 0, 1, nil), rec(23, 2, 8, []byte("more"))))
	f.Add(cat(rec(23, 1, 7, []byte("data")), []byte{22, 0xfe, 0xfd, 0, 0}))
	f.Add(rec(23, 1, 1, []byte("abc"))[:14])
	f.Fuzz(func(t *testing.T, in []byte) {
		// The reference: split into records with the header parser.
		var records [][]byte
		whole := true
		for off := 0; off < len(in); {
			h, err := parseRecordHeader(in[off:])
			if err != nil {
				whole = false
				break
			}
			if got := binary.BigEndian.Uint16(in[off+3:]); h.epoch != got {
				t.Fatalf("epoch %d, want %d", h.epoch, got)
			}
			end := off + recordHeaderLen + h.length
			records = append(records, in[off:end])
			off = end
		}
		var want []byte
		if whole {
			for _, r := range records {
				if binary.BigEndian.Uint16(r[3:]) != 0 {
					want = append(want, r...)
				}
			}
		}

		b := bytes.Clone(in)
		n := dropEpoch0(b)
		if n < 0 || n > len(in) {
			t.Fatalf("length %d of a %d-byte datagram", n, len(in))
		}
		if got := b[:n]; !bytes.Equal(got, want) {
			t.Fatalf("got % x\nwant % x", got, want)
		}
		for off := 0; off < n; {
			h, err := parseRecordHeader(b[off:n])
			if err != nil {
				t.Fatalf("what is left does not parse at %d: %v", off, err)
			}
			if h.epoch == 0 {
				t.Fatalf("an epoch-0 record is left at %d", off)
			}
			off += recordHeaderLen + h.length
		}

		pkts, err := recordlayer.UnpackDatagram(in)
		if err != nil {
			return
		}
		if !whole || len(pkts) != len(records) {
			t.Fatalf("pion splits % x into %d records, the parser into %d (whole %v)", in, len(pkts), len(records), whole)
		}
		for i, p := range pkts {
			if !bytes.Equal(p, records[i]) {
				t.Fatalf("record %d: pion % x, parser % x", i, p, records[i])
			}
			var ph recordlayer.Header
			if ph.Unmarshal(p) != nil {
				continue // a version pion refuses
			}
			h, _ := parseRecordHeader(p)
			if uint8(ph.ContentType) != h.contentType || ph.Epoch != h.epoch || ph.SequenceNumber != h.seq ||
				uint16(ph.Version.Major)<<8|uint16(ph.Version.Minor) != h.version {
				t.Fatalf("record %d: pion %+v, parser %+v", i, ph, h)
			}
		}
	})
}

// lossyConn is a client's socket that loses the server's final flight
// (every datagram with a ChangeCipherSpec record) and, after the client's
// own final flight (its first datagram with an epoch-1 record), every
// datagram the client sends, until release: then the client's
// retransmissions reach a server that has completed its side of the
// handshake.
type lossyConn struct {
	*net.UDPConn
	released  atomic.Bool
	finalSent atomic.Bool
	lost      chan struct{} // closed when a server datagram is first lost
	lostOnce  sync.Once
	resent    atomic.Bool // a final flight with epoch-0 records was sent after release
}

func records(b []byte) []recordHeader {
	var hs []recordHeader
	for off := 0; off < len(b); {
		h, err := parseRecordHeader(b[off:])
		if err != nil {
			return hs
		}
		hs = append(hs, h)
		off += recordHeaderLen + h.length
	}
	return hs
}

func (c *lossyConn) Write(b []byte) (int, error) {
	var epoch0, epoch1 bool
	for _, h := range records(b) {
		epoch0 = epoch0 || h.epoch == 0
		epoch1 = epoch1 || h.epoch == 1
	}
	switch {
	case c.released.Load():
		if epoch0 && epoch1 {
			c.resent.Store(true)
		}
	case c.finalSent.Load():
		return len(b), nil // lost
	case epoch1:
		c.finalSent.Store(true)
	}
	return c.UDPConn.Write(b)
}

func (c *lossyConn) Read(b []byte) (int, error) {
	for {
		n, err := c.UDPConn.Read(b)
		if err != nil || c.released.Load() {
			return n, err
		}
		lost := false
		for _, h := range records(b[:n]) {
			lost = lost || h.contentType == 20
		}
		if !lost {
			return n, err
		}
		c.lostOnce.Do(func() { close(c.lost) })
	}
}

// TestDTLSLostFinalFlight loses the server's final flight (ChangeCipherSpec
// and Finished) until the server has completed its handshake, and so drops
// the epoch-0 records of the client's retransmitted final flight (RFC 6347
// 4.2.4): the epoch-1 Finished of that flight must still make the server
// resend its own, so that the client completes too.
//
// The client keeps pion's default retransmission interval (1s), the
// server's: pion/dtls/v2 answers each retransmitted flight after its own
// interval, one at a time, so a client that retransmitted faster would
// queue flights (and its application data behind them) at the server.
func TestDTLSLostFinalFlight(t *testing.T) {
	p := getPKI(t)
	for _, tc := range []struct {
		name string
		cfg  *dtls.Config
	}{
		{"psk", pskClient("sensor-7", pskKey)},
		{"certificate", certClient(p, &p.client)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startDTLS(t, DTLSConfig{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, PSK: map[string][]byte{"sensor-7": pskKey}})
			pc, err := net.DialUDP("udp", nil, s.addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			lc := &lossyConn{UDPConn: pc, lost: make(chan struct{})}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			type result struct {
				c   *dtls.Conn
				err error
			}
			done := make(chan result, 1)
			go func() {
				c, err := dtls.ClientWithContext(ctx, lc, tc.cfg)
				done <- result{c, err}
			}()
			if id := mustSucceed(t, s.next(t)); id.Cert == nil && id.PSKIdentity == "" {
				t.Fatalf("identity %+v: the client did not authenticate", id)
			}
			select {
			case <-lc.lost:
			case <-time.After(wait):
				t.Fatal("the server's final flight did not reach the client")
			}
			// The server's side is complete: from now on it drops epoch-0
			// records.
			lc.released.Store(true)
			r := <-done
			if r.err != nil {
				t.Fatalf("client handshake: %v", r.err)
			}
			defer r.c.Close()
			if !lc.resent.Load() {
				t.Fatal("the client did not resend its final flight with its epoch-0 records")
			}
			echo(t, r.c, "after a lost final flight")
		})
	}
}
