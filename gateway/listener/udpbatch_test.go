package listener

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// TestUDPBatchedReads queues more datagrams than one batch holds, from
// three peers, interleaved and with an oversized one among them, before the
// read loop starts, so that its first reads each take several: every peer
// gets its own datagrams, whole and in order, and the oversized one is
// counted and dropped. It runs on IPv4 and, where the host has it, IPv6.
func TestUDPBatchedReads(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			l, err := ListenUDP(host+":0", UDPConfig{MaxDatagram: 1000, HealthCheck: probe})
			if err != nil {
				if host == "[::1]" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			peers := []*net.UDPConn{dialUDP(t, l), dialUDP(t, l), dialUDP(t, l)}
			const each = 2*readBatch + 3
			for i := range each {
				for p, c := range peers {
					send(t, c, fmt.Sprintf("%d-%d", p, i))
					if p == 1 && i == readBatch/2 {
						send(t, c, string(bytes.Repeat([]byte("x"), 1001)))
					}
				}
			}
			conns := map[string]net.Conn{}
			for range peers {
				c := accept(t, l)
				conns[c.RemoteAddr().String()] = c
			}
			for p, pc := range peers {
				c := conns[pc.LocalAddr().String()]
				if c == nil {
					t.Fatalf("peer %d (%v) not accepted; have %v", p, pc.LocalAddr(), conns)
				}
				for i := range each {
					if got, want := recv(t, c), fmt.Sprintf("%d-%d", p, i); got != want {
						t.Fatalf("peer %d: got %q, want %q", p, got, want)
					}
				}
			}
			barrier(t, peers[0])
			if st := l.Stats(); st.Oversize != 1 || st.QueueDrops != 0 || st.Peers != 3 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestUDPReadDatagram: ReadDatagram hands over the whole datagram in the
// queue's storage, honours the read deadline and Close, and an empty
// datagram arrives as an empty slice.
func TestUDPReadDatagram(t *testing.T) {
	l := listenUDP(t, UDPConfig{})
	a := dialUDP(t, l)
	send(t, a, "one")
	c := accept(t, l).(*udpConn)
	read := func() (string, error) {
		var got []byte
		calls := 0
		err := c.ReadDatagram(func(b []byte) {
			calls++
			got = append(got, b...)
		})
		if err == nil && calls != 1 || err != nil && calls != 0 {
			t.Fatalf("f called %d times, err %v", calls, err)
		}
		return string(got), err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	if got, err := read(); got != "one" || err != nil {
		t.Fatalf("got %q, %v", got, err)
	}
	big := string(bytes.Repeat([]byte("z"), 3000))
	send(t, a, big)
	send(t, a, "")
	if got, err := read(); got != big || err != nil {
		t.Fatalf("got %d bytes, %v; want 3000", len(got), err)
	}
	if got, err := read(); got != "" || err != nil {
		t.Fatalf("empty datagram: got %q, %v", got, err)
	}
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}
	c.Close()
	if _, err := read(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
