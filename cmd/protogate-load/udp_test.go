package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestUDP(t *testing.T) {
	defer noLoadGoroutines(t)
	addr := startServeEcho(t, true)
	r, _, err := runUDP(context.Background(), UDPConfig{Addr: addr, Conns: 4, Size: 64, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Scenario != "udp" || r.Msgs == 0 || r.MsgsPerS <= 0 || r.P99us <= 0 || r.Conns != 4 {
		t.Fatalf("%+v", r)
	}
}

func TestUDPMessages(t *testing.T) {
	addr := startServeEcho(t, true)
	r, _, err := runUDP(context.Background(), UDPConfig{Addr: addr, Conns: 3, Size: 1000, Messages: 500, Duration: time.Minute, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Msgs != 500 {
		t.Fatalf("%+v", r)
	}
}

// Datagrams that are not answered are lost, and the sockets move on.
func TestUDPLost(t *testing.T) {
	// Answer the probes (sequence numbers below 3), drop every other
	// datagram after them.
	addr := startUDP(t, func(n int, b []byte) []byte {
		if _, seq, _ := header(b); seq < probes || seq%2 == 0 {
			return b
		}
		return nil
	})
	// Timeout also bounds each probe: at 50 ms, three answers 60 ms late,
	// as on a loaded machine, failed the run. Every odd datagram waits it
	// out, so the run is short: 6 datagrams, at least 3 of them odd
	// (sequence numbers start at 3 on each socket).
	r, _, err := runUDP(context.Background(), UDPConfig{Addr: addr, Conns: 2, Size: 32, Messages: 6, Duration: time.Minute, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Lost < 3 || r.Msgs+r.Lost != 6 || r.Errors != 0 || r.Mismatch != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestUDPMismatches(t *testing.T) {
	addr := startUDP(t, func(_ int, b []byte) []byte {
		b[20] ^= 0x55
		return b
	})
	r, _, err := runUDP(context.Background(), UDPConfig{Addr: addr, Conns: 2, Size: 64, Messages: 50, Duration: time.Minute, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Msgs != 50 || r.Mismatch != 50 || r.Errors != 0 || r.Lost != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestUDPNoServer(t *testing.T) {
	// A server that never answers.
	silent := startUDP(t, func(int, []byte) []byte { return nil })
	// A port nothing listens on: Linux answers with ICMP port
	// unreachable, which a connected socket reports as refused.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()
	for _, addr := range []string{silent, closed} {
		_, _, err := runUDP(context.Background(), UDPConfig{Addr: addr, Conns: 2, Duration: time.Second, Timeout: 20 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "no answer") {
			t.Fatalf("%s: err = %v", addr, err)
		}
	}
}
