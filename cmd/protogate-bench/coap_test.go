package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestCoapObserveTooManySockets: coap-observe refuses, before opening any
// socket, more observers than the open-files limit allows.
func TestCoapObserveTooManySockets(t *testing.T) {
	if limit, ok := fileLimit(); !ok || limit >= 900000000 {
		t.Skipf("open-files limit %d, %v", limit, ok)
	}
	err := cmdCoapObserve(context.Background(), []string{"-addr", "127.0.0.1:9", "-peers", "900000000"},
		strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "do not fit in the limit") {
		t.Fatalf("coap-observe with 900000000 peers: %v", err)
	}
}

// TestCoapLoadFlags: coap-load wants as many labels and NATS URLs as
// addresses.
func TestCoapLoadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-addr", "127.0.0.1:9,127.0.0.1:10", "-label", "one"},
		{"-addr", "127.0.0.1:9", "-nats", ",nats://127.0.0.1:4222"},
		{"-addr", "127.0.0.1:9", "-rounds", "0"},
	} {
		if err := cmdCoapLoad(context.Background(), args, nil, io.Discard, io.Discard); err == nil {
			t.Errorf("coap-load %v: no error", args)
		}
	}
}
