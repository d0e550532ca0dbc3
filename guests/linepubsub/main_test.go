package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/protogate/protogate/abi"
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/sdktest"
)

// setup installs a fake host and a fresh guest, and opens a connection.
func setup(t *testing.T) (*sdktest.Host, *guest, protogate.Conn) {
	t.Helper()
	h := sdktest.New(t)
	g := newGuest()
	protogate.Register(g)
	c := h.Connect(protogate.ConnInfo{})
	return h, g, c
}

// calls returns the host calls made since the last call, but for log and,
// if noSend, send.
func calls(h *sdktest.Host, noSend bool) []string {
	var out []string
	for _, c := range h.Calls() {
		if c.Op != abi.ImportLog && !(noSend && c.Op == abi.ImportSend) {
			out = append(out, c.String())
		}
	}
	return out
}

func TestAuthenticatesOnConnect(t *testing.T) {
	h, g, c := setup(t)
	want := fmt.Sprintf("authenticate %d {ProtoName:line ProtoVer:1 ClientID:line-%016x Username:} \"\"", c, uint64(c))
	if got := calls(h, false); !slices.Equal(got, []string{want}) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if id := ClientID(0x1234abcd); id != "line-000000001234abcd" {
		t.Errorf("ClientID = %q", id)
	}
	if len(g.conns) != 1 {
		t.Errorf("%d connections in the map", len(g.conns))
	}
	h.Disconnect(c, "")
	if len(g.conns) != 0 {
		t.Errorf("%d connections in the map after close", len(g.conns))
	}
}

func TestAuthenticationRefused(t *testing.T) {
	h := sdktest.New(t)
	g := newGuest()
	protogate.Register(g)
	h.Fail(abi.ImportAuthenticate, abi.StatusPermissionDeny, "not_authorized")
	c := h.Connect(protogate.ConnInfo{})
	if got := string(h.Sent(c)); got != "ERR authentication failed: not_authorized\n" {
		t.Errorf("sent %q", got)
	}
	if reason, closed := h.Closed(c); !closed || reason != sdktest.ReasonNormal {
		t.Errorf("Closed = %q, %v", reason, closed)
	}
	if len(g.conns) != 0 {
		t.Errorf("%d connections in the map after close", len(g.conns))
	}
}

func TestCommands(t *testing.T) {
	h, _, c := setup(t)
	h.Calls()
	for _, tc := range []struct {
		in, out string
		calls   []string
	}{
		{"PING\n", "PONG\n", nil},
		{"ping\r\n", "PONG\n", nil},
		{"\n\r\n", "", nil},
		{"SUB sensors/+/temp\n", "OK\n", []string{"subscribe C sensors/+/temp qos0"}},
		{"PUB sensors/d1/temp 21.5 degrees C\n", "OK\n", []string{`publish C sensors/d1/temp qos0 "21.5 degrees C"`}},
		{"PUB t\n", "OK\n", []string{`publish C t qos0 ""`}},
		{"PUB a/+ x\n", "ERR sdktest: invalid topic\n", []string{`publish C a/+ qos0 "x" = PARAMS_TYPE_ERROR`}},
		{"SUB\n", "ERR sdktest: topic is empty\n", []string{"subscribe C  qos0 = REQUIRED_PARAMS_MISSED"}},
		{"UNSUB sensors/+/temp\n", "OK\n", []string{"unsubscribe C sensors/+/temp"}},
		{"HELLO there\n", "ERR unknown command\n", nil},
		{"SUBX a\n", "ERR unknown command\n", nil},
		{"PING\nSUB a\nPUB a b\n", "PONG\nOK\nOK\n", []string{"subscribe C a qos0", `publish C a qos0 "b"`}},
		{"PI", "", nil},
		{"NG\nSUB", "PONG\n", nil},
		{" b\r", "", nil},
		{"\n", "OK\n", []string{"subscribe C b qos0"}},
	} {
		if err := h.Receive(c, []byte(tc.in)); err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := string(h.Sent(c)); got != tc.out {
			t.Errorf("%q: sent %q, want %q", tc.in, got, tc.out)
		}
		var want []string
		for _, s := range tc.calls {
			want = append(want, strings.Replace(s, " C ", fmt.Sprintf(" %d ", c), 1))
		}
		if got := calls(h, true); !slices.Equal(got, want) {
			t.Errorf("%q: calls %q, want %q", tc.in, got, want)
		}
	}
}

func TestHostErrorMessage(t *testing.T) {
	h, _, c := setup(t)
	h.Fail(abi.ImportPublish, abi.StatusUnknown, "broker down")
	h.Receive(c, []byte("PUB t x\n"))
	if got := string(h.Sent(c)); got != "ERR broker down\n" {
		t.Errorf("sent %q", got)
	}
	h.Fail(abi.ImportSubscribe, abi.StatusPermissionDeny, "")
	h.Receive(c, []byte("SUB t\n"))
	if got := string(h.Sent(c)); got != "ERR PERMISSION_DENY\n" {
		t.Errorf("sent %q", got)
	}
}

func TestDeliveries(t *testing.T) {
	h, _, c := setup(t)
	err := h.Deliver(c,
		protogate.Message{Topic: "a/b", Payload: []byte("hello world")},
		protogate.Message{Topic: "c", Payload: nil},
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(h.Sent(c)); got != "MSG a/b hello world\nMSG c \n" {
		t.Errorf("sent %q", got)
	}
}

func TestLineTooLong(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		ok     bool
	}{
		{"longest line", []string{strings.Repeat("x", MaxLine) + "\n"}, true},
		{"longest line in pieces", []string{strings.Repeat("x", MaxLine-1), "x\nPING\n"}, true},
		{"too long in one chunk", []string{strings.Repeat("x", MaxLine+1) + "\n"}, false},
		{"too long without newline", []string{strings.Repeat("x", MaxLine+1)}, false},
		{"too long in pieces", []string{strings.Repeat("x", MaxLine), "y"}, false},
		{"too long in pieces with newline", []string{strings.Repeat("x", 100), strings.Repeat("x", MaxLine-99) + "\n"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, g, c := setup(t)
			for _, ch := range tc.chunks {
				if err := h.Receive(c, []byte(ch)); err != nil {
					t.Fatal(err)
				}
			}
			sent := string(h.Sent(c))
			_, closed := h.Closed(c)
			if tc.ok {
				if !strings.HasPrefix(sent, "ERR unknown command\n") || closed {
					t.Errorf("sent %q, closed %v", sent, closed)
				}
				return
			}
			if sent != "ERR line too long\n" || !closed {
				t.Errorf("sent %q, closed %v", sent, closed)
			}
			if len(g.conns) != 0 {
				t.Error("state kept after close")
			}
		})
	}
}

func TestConnectionsAreIndependent(t *testing.T) {
	h, _, a := setup(t)
	b := h.Connect(protogate.ConnInfo{})
	h.Receive(a, []byte("PI"))
	h.Receive(b, []byte("PU"))
	h.Receive(a, []byte("NG\n"))
	h.Receive(b, []byte("B t x\n"))
	if got := string(h.Sent(a)); got != "PONG\n" {
		t.Errorf("a got %q", got)
	}
	if got := string(h.Sent(b)); got != "OK\n" {
		t.Errorf("b got %q", got)
	}
}

func TestPingAllocatesNothing(t *testing.T) {
	h, _, c := setup(t)
	allocs := testing.AllocsPerRun(1000, func() {
		h.Receive(c, []byte("PI"))
		h.Receive(c, []byte("NG\nPING\n"))
		h.Reset()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
}
