package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// TestObserveRequestDecodes: go-coap's codec reads the observers' hand-built
// request as the CON GET Observe:0 it is meant to be.
func TestObserveRequestDecodes(t *testing.T) {
	b := observeRequest(0x1234, []byte{0, 0, 0x27, 0x0f}, "/ps/bench/coap/a-long-topic-segment-over-13")
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(b, &m); err != nil {
		t.Fatalf("decode % x: %v", b, err)
	}
	if m.Type != message.Confirmable || m.Code != codes.GET || m.MessageID != 0x1234 || !bytes.Equal(m.Token, []byte{0, 0, 0x27, 0x0f}) {
		t.Errorf("decoded %v", m.String())
	}
	if obs, err := m.Options.Observe(); err != nil || obs != 0 {
		t.Errorf("observe = %d, %v", obs, err)
	}
	if p, err := m.Options.Path(); err != nil || p != "/ps/bench/coap/a-long-topic-segment-over-13" {
		t.Errorf("path = %q, %v", p, err)
	}
	if b := emptyACK(7); !bytes.Equal(b, []byte{0x60, 0, 0, 7}) {
		t.Errorf("emptyACK = % x", b)
	}
}

// TestParseCoap reads what go-coap's codec writes, extended option deltas
// and lengths included.
func TestParseCoap(t *testing.T) {
	buf := make([]byte, 256)
	opts, _, err := message.Options{}.SetPath(buf, "/ps/t")
	if err != nil {
		t.Fatal(err)
	}
	opts = opts.Add(message.Option{ID: message.Observe, Value: []byte{1, 2}})
	opts = opts.Add(message.Option{ID: message.URIQuery, Value: []byte(strings.Repeat("q", 300))})
	opts = opts.Add(message.Option{ID: message.Size1, Value: []byte{4, 0}})
	in := message.Message{Token: []byte("tok"), Options: opts, Code: codes.Content, Payload: []byte("hi"), MessageID: 0xbeef, Type: message.NonConfirmable}
	out := make([]byte, 1024)
	n, err := coder.DefaultCoder.Encode(in, out)
	if err != nil {
		t.Fatal(err)
	}
	var m coapMsg
	if err := parseCoap(out[:n], &m); err != nil {
		t.Fatalf("parse % x: %v", out[:n], err)
	}
	if m.typ != coapNON || m.code != coapContent || m.mid != 0xbeef || string(m.token) != "tok" || string(m.payload) != "hi" {
		t.Errorf("parsed %+v", m)
	}
	if v, ok := m.observe(); !ok || v != 0x102 {
		t.Errorf("observe = %#x, %v", v, ok)
	}
	var nums []uint16
	for _, o := range m.opts {
		nums = append(nums, o.num)
	}
	if want := []uint16{optObserve, optURIPath, optURIPath, optURIQuery, 60}; !slices.Equal(nums, want) || len(m.opts[3].val) != 300 {
		t.Errorf("options %v, want %v", nums, want)
	}
	if !m.underPS() {
		t.Error("underPS = false for /ps/t")
	}
	for _, bad := range [][]byte{{0x40}, {0x80, 1, 0, 0}, {0x49, 1, 0, 0}, {0x40, 1, 0, 0, 0xff}, {0x40, 1, 0, 0, 0xd1}} {
		if err := parseCoap(bad, &m); err == nil {
			t.Errorf("parseCoap(% x) = nil", bad)
		}
	}
}
