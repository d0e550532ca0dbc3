package main

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// mallocs counts the heap allocations f makes (the whole process's).
func mallocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}

// The load goroutines allocate nothing per message: ten times the messages
// cost about the same allocations.
func TestAllocsPerMessage(t *testing.T) {
	tcp := startServeEcho(t, false)
	udp := startServeEcho(t, true)
	for _, tc := range []struct {
		name string
		run  func(n int64)
	}{
		{"pingpong", func(n int64) {
			runEcho(context.Background(), EchoConfig{Addr: tcp, Conns: 2, Depth: 1, Messages: n, Duration: time.Minute})
		}},
		{"pipelined", func(n int64) {
			runEcho(context.Background(), EchoConfig{Addr: tcp, Conns: 2, Depth: 4, Messages: n, Duration: time.Minute})
		}},
		{"udp", func(n int64) {
			runUDP(context.Background(), UDPConfig{Addr: udp, Conns: 2, Messages: n, Duration: time.Minute, Timeout: 10 * time.Second})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			small := mallocs(func() { tc.run(1000) })
			big := mallocs(func() { tc.run(11000) })
			t.Logf("%d allocations for 1000 messages, %d for 11000", small, big)
			if big > small+1000 {
				t.Errorf("%d allocations for 1000 messages, %d for 11000: more than 0.1 per message", small, big)
			}
		})
	}
}
