package main

import (
	"bytes"
	"testing"

	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/sdktest"
)

func TestEcho(t *testing.T) {
	h := sdktest.New(t)
	a := h.Connect(protogate.ConnInfo{})
	b := h.Connect(protogate.ConnInfo{})
	big := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	for _, chunk := range [][]byte{[]byte("hello\n"), {0, 0xff, '\r'}, big, []byte("x")} {
		if err := h.Receive(a, chunk); err != nil {
			t.Fatal(err)
		}
		if got := h.Sent(a); !bytes.Equal(got, chunk) {
			t.Errorf("echoed %.40q, want %.40q", got, chunk)
		}
	}
	if got := h.Sent(b); len(got) != 0 {
		t.Errorf("the other connection got %q", got)
	}
	if err := h.Disconnect(a, ""); err != nil {
		t.Fatal(err)
	}
	if err := h.Receive(b, []byte("still here")); err != nil || string(h.Sent(b)) != "still here" {
		t.Errorf("second connection: %v", err)
	}
}

func TestEchoAllocatesNothing(t *testing.T) {
	h := sdktest.New(t)
	c := h.Connect(protogate.ConnInfo{})
	msg := bytes.Repeat([]byte("m"), 512)
	allocs := testing.AllocsPerRun(1000, func() {
		h.Receive(c, msg)
		h.Reset()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
}
