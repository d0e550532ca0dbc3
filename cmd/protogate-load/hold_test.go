package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHold(t *testing.T) {
	addr := startServeEcho(t, false)
	r, notes, err := runHold(context.Background(), HoldConfig{Addr: addr, Conns: 50, Hold: 50 * time.Millisecond, Sample: 10, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Scenario != "hold" || r.Held != 50 || r.SampleOK != 10 || r.Msgs != 10 || r.AcceptPS <= 0 || r.Conns != 50 {
		t.Fatalf("%+v", r)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "opened 50 of 50") {
		t.Fatalf("notes %q", notes)
	}
}

// -rate paces the dials: 20 connections at 500/s take at least 38 ms.
func TestHoldRate(t *testing.T) {
	addr := startServeEcho(t, false)
	r, _, err := runHold(context.Background(), HoldConfig{Addr: addr, Conns: 20, Rate: 500, Sample: 1})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Held != 20 || r.AcceptPS > 20/0.038 || r.Seconds < 0.038 {
		t.Fatalf("%+v", r)
	}
}

// Connections the server closed are not held, and fail the sample.
func TestHoldServerCloses(t *testing.T) {
	var closed sync.WaitGroup
	closed.Add(10)
	addr := startTCP(t, func(i int, c net.Conn) {
		if i%2 == 0 {
			c.Close()
			closed.Done()
			return
		}
		echoBack(c)
	})
	r, _, err := runHold(context.Background(), HoldConfig{Addr: addr, Conns: 20, Sample: 20, opened: closed.Wait})
	if err != nil {
		t.Fatal(err)
	}
	if r.Held != 10 || r.SampleOK != 10 || r.Errors != 10 || r.Msgs != 10 || r.Mismatch != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestHoldLimits(t *testing.T) {
	if _, ok := fileLimit(); ok {
		_, _, err := runHold(context.Background(), HoldConfig{Addr: "127.0.0.1:1", Conns: 1 << 30})
		if err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
			t.Fatalf("err = %v", err)
		}
	}
	_, _, err := runHold(context.Background(), HoldConfig{Addr: closedPort(t), Conns: 3})
	if err == nil || !strings.Contains(err.Error(), "no connection") {
		t.Fatalf("err = %v", err)
	}
}
