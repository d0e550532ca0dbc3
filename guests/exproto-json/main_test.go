package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/protogate/protogate/abi"
	jp "github.com/protogate/protogate/internal/jsonproto"
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/sdktest"
)

// These tests mirror those of the reference handler
// (internal/jsonhandler) call for call. sdktest's host refuses
// pub/sub before Authenticate, so tests that publish connect first; denials
// are injected with Host.Fail.

// enc is a frame as a device sends it; answer one as the guest sends it,
// ended by a newline.
func enc(f jp.Frame) string    { return string(jp.Encode(f)) }
func answer(f jp.Frame) string { return string(jp.AppendLine(nil, f)) }

var (
	connack0  = answer(jp.Frame{Type: jp.Connack, Code: 0})
	connack1  = answer(jp.Frame{Type: jp.Connack, Code: 1})
	puback0   = answer(jp.Frame{Type: jp.Puback, Code: 0})
	puback1   = answer(jp.Frame{Type: jp.Puback, Code: 1})
	suback0   = answer(jp.Frame{Type: jp.Suback, Code: 0})
	suback1   = answer(jp.Frame{Type: jp.Suback, Code: 1})
	unsuback  = answer(jp.Frame{Type: jp.Unsuback, Code: 0})
	unsuback1 = answer(jp.Frame{Type: jp.Unsuback, Code: 1})
	discFr    = enc(jp.Frame{Type: jp.Disconnect})
	discAns   = answer(jp.Frame{Type: jp.Disconnect})
)

func connectFrame(clientid, password string, keepalive uint32) []byte {
	return jp.Encode(jp.Frame{Type: jp.Connect, Password: password, ClientInfo: jp.ClientInfo{
		ProtoName: "exproto", ProtoVer: "1.0", ClientID: clientid, Username: "u", Mountpoint: "m/", Keepalive: keepalive,
	}})
}

func setup(t *testing.T) (*sdktest.Host, *guest, protogate.Conn) {
	t.Helper()
	h := sdktest.New(t)
	g := newGuest()
	protogate.Register(g)
	return h, g, h.Connect(protogate.ConnInfo{})
}

// wantCalls checks the host calls made since the last check, but for log,
// writing conn c as "C".
func wantCalls(t *testing.T, h *sdktest.Host, c protogate.Conn, want ...string) {
	t.Helper()
	var got []string
	for _, call := range h.Calls() {
		if call.Op != abi.ImportLog {
			got = append(got, strings.Replace(call.String(), fmt.Sprintf(" %d", c), " C", 1))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("host calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func send(frame string) string { return fmt.Sprintf("send C %q", frame) }

const authC1 = `authenticate C {ProtoName:exproto ProtoVer:1.0 ClientID:c1 Username:u} "pw"`

func TestConnect(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		deny bool
		want []string
	}{
		{"success with keepalive", connectFrame("c1", "pw", 30), false, []string{
			authC1,
			"start_timer C type0 30s",
			send(connack0),
		}},
		{"success without keepalive", connectFrame("c1", "pw", 0), false, []string{
			authC1,
			send(connack0),
		}},
		{"refused", connectFrame("c1", "bad", 30), true, []string{
			`authenticate C {ProtoName:exproto ProtoVer:1.0 ClientID:c1 Username:u} "bad" = PERMISSION_DENY`,
			send(connack1),
			"close C",
		}},
		{"bench client shape with ## delimiter", []byte(`{"type":1,"clientinfo":{"clientid":"b","username":"undefined"},"password":"undefined"}##`), false, []string{
			`authenticate C {ProtoName: ProtoVer: ClientID:b Username:undefined} "undefined"`,
			send(connack0),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _, c := setup(t)
			wantCalls(t, h, c)
			if tc.deny {
				h.Fail(abi.ImportAuthenticate, abi.StatusPermissionDeny, "not_authorized")
			}
			if err := h.Receive(c, tc.in); err != nil {
				t.Fatal(err)
			}
			wantCalls(t, h, c, tc.want...)
		})
	}
}

func TestCoalescedFrames(t *testing.T) {
	h, _, c := setup(t)
	var chunk []byte
	for _, f := range []jp.Frame{
		{Type: jp.Subscribe, Topic: "t/dn", QoS: 1},
		{Type: jp.Subscribe, Topic: "t/+/#/x", QoS: 3},
		{Type: jp.Publish, Topic: "t/up", QoS: 1, Payload: "hello"},
		{Type: jp.Publish, Topic: "t/+", QoS: 0, Payload: "no"},
		{Type: jp.RawPublish, Topic: "raw", QoS: 2, Payload: "r"},
		{Type: jp.RawPublish, Topic: "", QoS: 0, Payload: "r"},
		{Type: jp.Unsubscribe, Topic: "t/dn"},
		{Type: jp.Publish, Topic: "q", QoS: 1000, Payload: "big qos"},
	} {
		chunk = jp.AppendEncode(chunk, f)
		chunk = append(chunk, "##\n"...)
	}
	chunk = append(connectFrame("c1", "pw", 0), chunk...)
	if err := h.Receive(c, chunk); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, h, c,
		authC1,
		send(connack0),
		"subscribe C t/dn qos1",
		send(suback0),
		"subscribe C t/+/#/x qos3 = PARAMS_TYPE_ERROR",
		send(suback1),
		`publish C t/up qos1 "hello"`,
		send(puback0),
		`publish C t/+ qos0 "no" = PARAMS_TYPE_ERROR`,
		send(puback1),
		`raw_publish raw qos2 "r"`,
		send(puback0),
		`raw_publish  qos0 "r" = REQUIRED_PARAMS_MISSED`,
		send(puback1),
		"unsubscribe C t/dn",
		send(unsuback),
		`publish C q qos255 "big qos" = PARAMS_TYPE_ERROR`,
		send(puback1),
	)
	want := connack0 + suback0 + suback1 + puback0 + puback1 + puback0 + puback1 + unsuback + puback1
	if got := string(h.Sent(c)); got != want {
		t.Errorf("device got %s, want %s", got, want)
	}
}

func TestPubSubBeforeConnect(t *testing.T) {
	h, _, c := setup(t)
	h.Receive(c, []byte(enc(jp.Frame{Type: jp.Subscribe, Topic: "t/x"})+enc(jp.Frame{Type: jp.Publish, Topic: "t/x", Payload: "early"})))
	if got, want := string(h.Sent(c)), suback1+puback1; got != want {
		t.Errorf("device got %s, want %s", got, want)
	}
}

func TestSplitFrames(t *testing.T) {
	h, _, c := setup(t)
	connect := connectFrame("c1", "pw", 0)
	in := append(connect, jp.Encode(jp.Frame{Type: jp.Publish, Topic: "t", Payload: "p"})...)
	// Byte by byte: nothing happens until a frame is complete.
	for i := range len(in) {
		if err := h.Receive(c, in[i:i+1]); err != nil {
			t.Fatal(err)
		}
		switch i {
		case len(connect) - 1:
			wantCalls(t, h, c, authC1, send(connack0))
		case len(in) - 1:
			wantCalls(t, h, c, `publish C t qos0 "p"`, send(puback0))
		default:
			wantCalls(t, h, c)
		}
	}
}

func TestSplitFramesArePerConnection(t *testing.T) {
	h, g, a := setup(t)
	b := h.Connect(protogate.ConnInfo{})
	h.Receive(a, connectFrame("a", "", 0))
	h.Receive(b, connectFrame("b", "", 0))
	h.Calls()
	fa := jp.Encode(jp.Frame{Type: jp.Subscribe, Topic: "a", QoS: 1})
	fb := jp.Encode(jp.Frame{Type: jp.Subscribe, Topic: "b", QoS: 2})
	h.Receive(a, fa[:5])
	h.Receive(b, fb[:7])
	h.Receive(a, fa[5:])
	h.Receive(b, fb[7:])
	var got []string
	for _, call := range h.Calls() {
		got = append(got, call.String())
	}
	want := []string{
		fmt.Sprintf("subscribe %d a qos1", a), fmt.Sprintf("send %d %q", a, suback0),
		fmt.Sprintf("subscribe %d b qos2", b), fmt.Sprintf("send %d %q", b, suback0),
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if len(g.conns) != 2 {
		t.Fatalf("%d connections, want 2", len(g.conns))
	}
	// OnSocketClosed drops the state.
	h.Receive(a, fa[:5])
	h.Disconnect(a, "")
	if len(g.conns) != 1 {
		t.Fatalf("%d connections after close, want 1", len(g.conns))
	}
}

func TestDisconnectAndGarbage(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"disconnect", discFr, []string{"close C"}},
		{"frames after disconnect are ignored", discFr + `{"type":5,"topic":"t","qos":0}`, []string{"close C"}},
		{"garbage", "GET / HTTP/1.1\r\n", []string{"close C"}},
		{"garbage after a frame", `{"type":7,"topic":"t"}oops`, []string{"unsubscribe C t = UNKNOWN", send(unsuback1), "close C"}},
		{"unknown type", `{"type":99}`, []string{"close C"}},
		{"missing member", `{"type":3,"topic":"t"}`, []string{"close C"}},
		{"frame the device should not send", `{"type":2,"code":0}`, []string{"close C"}},
		{"refused connect stops the chunk", string(connectFrame("c", "bad", 0)) + discFr, []string{
			`authenticate C {ProtoName:exproto ProtoVer:1.0 ClientID:c Username:u} "bad" = PERMISSION_DENY`,
			send(connack1),
			"close C",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, g, c := setup(t)
			if strings.Contains(tc.name, "refused") {
				h.Fail(abi.ImportAuthenticate, abi.StatusPermissionDeny, "not_authorized")
			}
			if err := h.Receive(c, []byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			wantCalls(t, h, c, tc.want...)
			if reason, closed := h.Closed(c); !closed || reason != sdktest.ReasonNormal {
				t.Errorf("Closed = %q, %v", reason, closed)
			}
			if len(g.conns) != 0 {
				t.Errorf("state kept after close")
			}
		})
	}
}

// Once the guest closed a connection, the rest of the chunk is ignored even
// if the host has not closed it yet.
func TestBytesAfterCloseIgnored(t *testing.T) {
	h, g, c := setup(t)
	h.Fail(abi.ImportClose, abi.StatusUnknown, "cannot close")
	h.Receive(c, []byte(discFr))
	h.Receive(c, []byte(`{"type":7,"topic":"t"}`))
	wantCalls(t, h, c, "close C = UNKNOWN")
	if !g.conns[c].closed {
		t.Error("not marked closed")
	}
}

func TestReceivedMessages(t *testing.T) {
	h, _, c := setup(t)
	err := h.Deliver(c,
		protogate.Message{Topic: "t/dn", QoS: 1, Payload: []byte("one"), From: "x", ID: "1"},
		protogate.Message{Topic: "t/2", QoS: 0, Payload: []byte(`{"json":"inside"}`)},
		protogate.Message{Topic: "t/3", QoS: 2, Payload: []byte("bad \xff utf-8")},
	)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, h, c,
		send(answer(jp.Frame{Type: jp.Publish, Topic: "t/dn", QoS: 1, Payload: "one"})),
		send(`{"type":3,"topic":"t/2","qos":0,"payload":"{\"json\":\"inside\"}"}`+"\n"),
		send(`{"type":3,"topic":"t/3","qos":2,"payload":"bad \ufffd utf-8"}`+"\n"),
	)
	// A refused Send is logged, not fatal.
	h.Fail(abi.ImportSend, abi.StatusNotAlive, "gone")
	if err := h.Deliver(c, protogate.Message{Topic: "t", Payload: []byte("x")}); err != nil {
		t.Errorf("Deliver with a refused Send: %v", err)
	}
}

func TestTimerTimeout(t *testing.T) {
	h, g, c := setup(t)
	h.Receive(c, connectFrame("c1", "pw", 5))
	h.Calls()
	h.Sent(c)
	if err := h.Timeout(c); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, h, c, send(discAns), "close C")
	// The gateway closes the connection with the keepalive reason; the
	// DISCONNECT sent while it is closing is dropped, as in the gateway.
	if reason, closed := h.Closed(c); !closed || reason != sdktest.ReasonKeepaliveTimeout {
		t.Errorf("Closed = %q, %v", reason, closed)
	}
	if len(g.conns) != 0 {
		t.Error("state kept after close")
	}
}

func TestLogsRefusals(t *testing.T) {
	h, _, c := setup(t)
	h.Fail(abi.ImportAuthenticate, abi.StatusPermissionDeny, "not_authorized")
	h.Receive(c, connectFrame("c1", "pw", 0))
	var logged []string
	for _, call := range h.Calls() {
		if call.Op == abi.ImportLog {
			logged = append(logged, call.Msg)
		}
	}
	want := fmt.Sprintf("conn=%x host call refused: Authenticate: protogate: PERMISSION_DENY: not_authorized", uint64(c))
	if len(logged) == 0 || logged[0] != want {
		t.Errorf("logged %q, want %q first", logged, want)
	}
}
