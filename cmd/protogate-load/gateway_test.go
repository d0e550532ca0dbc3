package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The scenarios against a real gateway running the builtin guests.

func TestGatewayEcho(t *testing.T) {
	gw := startGateway(t)
	r, _, err := runEcho(context.Background(), EchoConfig{Addr: gw.echo, Conns: 4, Size: 64, Depth: 1, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Msgs == 0 {
		t.Fatalf("%+v", r)
	}
	r, _, err = runEcho(context.Background(), EchoConfig{Addr: gw.echo, Conns: 4, Size: 200, Depth: 4, Messages: 2000, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Msgs != 2000 {
		t.Fatalf("%+v", r)
	}
}

func TestGatewayHold(t *testing.T) {
	gw := startGateway(t)
	r, _, err := runHold(context.Background(), HoldConfig{Addr: gw.echo, Conns: 40, Hold: 20 * time.Millisecond, Sample: 10})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Held != 40 || r.SampleOK != 10 {
		t.Fatalf("%+v", r)
	}
}

func TestGatewayUDP(t *testing.T) {
	gw := startGateway(t)
	r, _, err := runUDP(context.Background(), UDPConfig{Addr: gw.echoUDP, Conns: 4, Size: 64, Messages: 400, Duration: time.Minute, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Msgs != 400 {
		t.Fatalf("%+v", r)
	}
}

func TestGatewayFanout(t *testing.T) {
	defer noLoadGoroutines(t)
	gw := startGateway(t)
	// Through linepubsub connections, then plain NATS subscribers of the
	// gateway's embedded server.
	for _, via := range []string{gw.line, ""} {
		r, _, err := runFanout(context.Background(), FanoutConfig{NATS: gw.nats, Gateway: via, Subs: 10, Messages: 100, Duration: time.Minute, Size: 64, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		complete(t, r)
		if r.Published != 100 {
			t.Fatalf("%+v", r)
		}
	}
}

// The echo guest is not linepubsub: it answers "SUB ..." with itself.
func TestGatewayFanoutWrongGuest(t *testing.T) {
	gw := startGateway(t)
	_, _, err := runFanout(context.Background(), FanoutConfig{NATS: gw.nats, Gateway: gw.echo, Subs: 2, Duration: time.Second, Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "linepubsub") {
		t.Fatalf("err = %v", err)
	}
}

// The publisher as a linepubsub device (-pubgateway), and subscribers
// spread over a list of listeners (-gateway a,b): here twice the same one.
func TestGatewayFanoutDevicePublisher(t *testing.T) {
	defer noLoadGoroutines(t)
	gw := startGateway(t)
	for _, subs := range []string{gw.line + "," + gw.line, ""} {
		r, notes, err := runFanout(context.Background(), FanoutConfig{NATS: gw.nats, PubGateway: gw.line, Gateway: subs, Subs: 10, Messages: 100, Duration: time.Minute, Size: 64, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		complete(t, r)
		if r.Published != 100 {
			t.Fatalf("%+v", r)
		}
		if len(notes) != 2 || !strings.Contains(notes[1], "answered OK, 0 ERR") {
			t.Fatalf("notes %q", notes)
		}
	}
	// The echo guest answers PING with itself.
	_, _, err := runFanout(context.Background(), FanoutConfig{NATS: gw.nats, PubGateway: gw.echo, Gateway: gw.line, Subs: 2, Duration: time.Second, Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "publisher") || !strings.Contains(err.Error(), "linepubsub") {
		t.Fatalf("err = %v", err)
	}
	_, _, err = runFanout(context.Background(), FanoutConfig{NATS: gw.nats, Gateway: gw.line + ",", Subs: 2, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "empty address") {
		t.Fatalf("err = %v", err)
	}
}
