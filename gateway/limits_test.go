package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway/framing"
	"github.com/protogate/protogate/gateway/limit"
	"github.com/protogate/protogate/gateway/proxyproto"
)

// expectRefused checks that the gateway closes nc without a handler ever
// seeing it.
func expectRefused(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("refused connection delivered bytes")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection was not refused")
	}
}

func TestMaxConnections(t *testing.T) {
	h := newChecker(t)
	s, addr := serve(t, h, Options{}, Listener{Name: "max", MaxConnections: 2})
	dial(t, addr)
	dial(t, addr)
	recv(t, h.created)
	recv(t, h.created)
	third := dial(t, addr)
	expectRefused(t, third)
	if st := s.ListenerStats("max"); st.Refused[CauseMaxConnections] != 1 || st.Active != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMaxConnectionsFreesSlots(t *testing.T) {
	h := newChecker(t)
	s, addr := serve(t, h, Options{}, Listener{Name: "max", MaxConnections: 1})
	a := dial(t, addr)
	recv(t, h.created)
	expectRefused(t, dial(t, addr))
	a.Close()
	recv(t, h.closed)
	deadline := time.Now().Add(wait)
	for s.ListenerStats("max").Active != 0 {
		if time.Now().After(deadline) {
			t.Fatal("slot not released")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	dial(t, addr)
	recv(t, h.created)
}

func TestMaxConnRate(t *testing.T) {
	// A rate of 2/s has a burst of one second's worth: two connections in
	// a row are admitted whatever the timing (the bucket starts full).
	h := newChecker(t)
	_, addr := serve(t, h, Options{}, Listener{Name: "burst", MaxConnRate: 2})
	dial(t, addr)
	dial(t, addr)
	recv(t, h.created)
	recv(t, h.created)

	// A rate of one a minute has a burst of one: the second connection is
	// refused. That holds as long as the two accepts are less than a
	// minute apart; every wait between them is bounded by wait (15 s), so
	// no stall the test survives can refill the bucket. (A rate of 2/s
	// refills in half a second, which a loaded machine can take between
	// two accepts.)
	h = newChecker(t)
	s, addr := serve(t, h, Options{}, Listener{Name: "rate", MaxConnRate: 1.0 / 60})
	dial(t, addr)
	recv(t, h.created)
	expectRefused(t, dial(t, addr))
	if st := s.ListenerStats("rate"); st.Refused[CauseMaxConnRate] != 1 || st.Active != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAccessRules(t *testing.T) {
	h := newChecker(t)
	deny, err := limit.ParseRules([]string{"deny 127.0.0.0/8", "allow all"})
	if err != nil {
		t.Fatal(err)
	}
	s, addr := serve(t, h, Options{}, Listener{Name: "acl", Access: deny})
	expectRefused(t, dial(t, addr))
	if st := s.ListenerStats("acl"); st.Refused[CauseAccessDenied] != 1 {
		t.Fatalf("stats %+v", st)
	}
	allow, _ := limit.ParseRules([]string{"allow 127.0.0.1", "deny all"})
	_, addr2 := serve(t, h, Options{}, Listener{Name: "acl2", Access: allow})
	dial(t, addr2)
	recv(t, h.created)
}

// TestMaxBytesRateSlowsWithoutLoss sends 96 KiB to a listener limited to
// 32 KiB/s: every byte arrives, in order, and it takes at least the time the
// rate implies beyond the first second's burst (a lower bound only: a slow
// machine makes it longer, never shorter).
func TestMaxBytesRateSlowsWithoutLoss(t *testing.T) {
	h := newChecker(t)
	var mu sync.Mutex
	var got bytes.Buffer
	done := make(chan struct{})
	const total = 96 << 10
	h.onBytes = func(c *Conn, b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		got.Write(b)
		if got.Len() == total {
			close(done)
		}
		return nil
	}
	_, addr := serve(t, h, Options{}, Listener{Name: "rate", MaxBytesRate: 32 << 10})
	nc := dial(t, addr)
	want := make([]byte, total)
	for i := range want {
		want[i] = byte(i * 7)
	}
	start := time.Now()
	go nc.Write(want)
	recv(t, done)
	elapsed := time.Since(start)
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("bytes lost or reordered")
	}
	// Burst: 32 KiB or one read buffer, whichever is larger; the other
	// 64 KiB need two seconds at 32 KiB/s.
	if elapsed < 1500*time.Millisecond {
		t.Fatalf("96 KiB at 32 KiB/s took only %v", elapsed)
	}
}

func TestFraming(t *testing.T) {
	for _, fc := range []framing.Config{
		{Kind: framing.Line},
		{Kind: framing.Length, LengthBytes: 2, BigEndian: true},
		{Kind: framing.Length, LengthBytes: 4},
	} {
		t.Run(fc.Kind.String(), func(t *testing.T) {
			h := newChecker(t)
			frames := make(chan string, 16)
			h.onBytes = func(c *Conn, b []byte) error {
				frames <- string(b)
				return nil
			}
			_, addr := serve(t, h, Options{}, Listener{Framing: fc, MaxPacketSize: 64})
			nc := dial(t, addr)
			enc := fc
			enc.MaxFrame = 64
			var stream []byte
			for _, f := range []string{"one", "", "three is longer"} {
				stream = framing.Append(stream, enc, []byte(f))
			}
			// Byte by byte, then all three at once.
			for _, b := range stream {
				nc.Write([]byte{b})
			}
			nc.Write(stream)
			for range 2 {
				for _, want := range []string{"one", "", "three is longer"} {
					if got := recv(t, frames); got != want {
						t.Fatalf("frame %q, want %q", got, want)
					}
				}
			}
			// A frame over max_packet_size closes the connection.
			nc.Write(framing.Append(nil, framing.Config{Kind: fc.Kind, LengthBytes: fc.LengthBytes, BigEndian: fc.BigEndian, MaxFrame: 1 << 20}, bytes.Repeat([]byte("x"), 100)))
			c := recv(t, h.closed)
			h.mu.Lock()
			r := h.reasons[c.ID()]
			h.mu.Unlock()
			if r != "{shutdown,frame_too_large}" {
				t.Fatalf("reason %q", r)
			}
		})
	}
}

func TestProxyProtocol(t *testing.T) {
	h := newChecker(t)
	infos := make(chan ConnInfo, 4)
	h.onCreated = func(c *Conn) error {
		infos <- *c.Info()
		return nil
	}
	deny, _ := limit.ParseRules([]string{"deny 203.0.113.9", "allow all"})
	s, addr := serve(t, h, Options{}, Listener{Name: "pp", ProxyProtocol: true, Access: deny})
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	dst := netip.MustParseAddrPort("192.0.2.1:7993")
	for _, hdr := range [][]byte{
		proxyproto.AppendV1(nil, proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Source: src, Destination: dst}),
		proxyproto.AppendV2(nil, proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Source: src, Destination: dst}),
	} {
		nc := dial(t, addr)
		nc.Write(append(hdr, "payload"...))
		info := recv(t, infos)
		if info.Peer != src || info.Local != dst {
			t.Fatalf("peer %v local %v, want %v %v", info.Peer, info.Local, src, dst)
		}
	}
	// No header: refused. A denied real client: refused.
	bare := dial(t, addr)
	bare.Write([]byte("hello without a header\r\n"))
	expectRefused(t, bare)
	denied := dial(t, addr)
	denied.Write(proxyproto.AppendV1(nil, proxyproto.Header{Version: 1, Command: proxyproto.Proxy,
		Source: netip.MustParseAddrPort("203.0.113.9:1"), Destination: dst}))
	expectRefused(t, denied)
	st := s.ListenerStats("pp")
	if st.Refused[CauseProxyProtocol] != 1 || st.Refused[CauseAccessDenied] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestListenerCheck(t *testing.T) {
	h := newChecker(t)
	for _, tc := range []struct {
		l    Listener
		want string
	}{
		{Listener{Type: UDP, Framing: framing.Config{Kind: framing.Line}}, "framing applies"},
		{Listener{Type: DTLS}, "dtls needs a handshaker"},
		{Listener{Type: UDP, ProxyProtocol: true}, "proxy_protocol applies"},
		{Listener{Type: SocketType(9)}, "unsupported type"},
	} {
		tc.l.Handler = h
		s := New(Options{Logger: quietLogger()})
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		if err := s.Serve(ln, &tc.l); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.l, err, tc.want)
		}
	}
}
