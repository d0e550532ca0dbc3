package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/protogate/protogate/abi"
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/sdktest"
)

func setup(t *testing.T) (*sdktest.Host, *guest, protogate.Conn) {
	t.Helper()
	h := sdktest.New(t)
	g := newGuest()
	protogate.Register(g)
	c := h.Connect(protogate.ConnInfo{SockType: protogate.UDP})
	return h, g, c
}

// request encodes a request; uri is a path with an optional ?query
// (parameters separated by &).
func request(typ, code uint8, mid uint16, token, uri string, payload string, extra ...Option) []byte {
	path, query, _ := strings.Cut(uri, "?")
	var opts []Option
	opts = append(opts, extra...)
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		opts = append(opts, Option{Num: OptURIPath, Val: []byte(seg)})
	}
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			opts = append(opts, Option{Num: OptURIQuery, Val: []byte(kv)})
		}
	}
	slices.SortStableFunc(opts, func(a, b Option) int { return int(a.Num) - int(b.Num) })
	m := Message{Type: typ, Code: code, MID: mid, Token: []byte(token), Options: opts, Payload: []byte(payload)}
	return m.Append(nil)
}

// split returns the datagrams sent and the other host calls (but logs) as
// strings.
func split(t *testing.T, h *sdktest.Host) ([]Message, []string) {
	t.Helper()
	var sent []Message
	var other []string
	for _, c := range h.Calls() {
		switch c.Op {
		case abi.ImportSend:
			var m Message
			if err := Parse(c.Bytes, &m); err != nil {
				t.Fatalf("guest sent an invalid message %x: %v", c.Bytes, err)
			}
			m.Options = slices.Clone(m.Options)
			sent = append(sent, m)
		case abi.ImportLog:
		default:
			other = append(other, c.String())
		}
	}
	return sent, other
}

// one returns the single datagram sent.
func one(t *testing.T, h *sdktest.Host) (Message, []string) {
	t.Helper()
	sent, other := split(t, h)
	if len(sent) != 1 {
		t.Fatalf("sent %d datagrams, want 1 (other calls %q)", len(sent), other)
	}
	return sent[0], other
}

func option(m Message, num uint16) ([]byte, bool) {
	for _, o := range m.Options {
		if o.Num == num {
			return o.Val, true
		}
	}
	return nil, false
}

func observeOf(t *testing.T, m Message) (uint32, bool) {
	v, ok := option(m, OptObserve)
	if !ok {
		return 0, false
	}
	n, _ := Uint(v)
	return n, true
}

func expect(t *testing.T, m Message, typ, code uint8, mid uint16, token, payload string) {
	t.Helper()
	if m.Type != typ || m.Code != code || (mid != 0 && m.MID != mid) || string(m.Token) != token || string(m.Payload) != payload {
		t.Errorf("got type %d %s mid %04x token %q payload %q; want type %d %s mid %04x token %q payload %q",
			m.Type, CodeString(m.Code), m.MID, m.Token, m.Payload, typ, CodeString(code), mid, token, payload)
	}
}

func TestPublish(t *testing.T) {
	h, _, c := setup(t)
	h.Receive(c, request(CON, CodePOST, 0x100, "\x01", "/ps/t/a?clientid=dev1&username=u&password=pw", "hello"))
	m, other := one(t, h)
	expect(t, m, ACK, CodeChanged, 0x100, "\x01", "")
	want := []string{
		`authenticate 1 {ProtoName:coap ProtoVer:1 ClientID:dev1 Username:u} "pw"`,
		"start_timer 1 type0 90s",
		`publish 1 t/a qos1 "hello"`,
	}
	checkCalls(t, other, want, c)

	// NON PUT: a NON reply with a new message id, QoS 0; the identity is kept.
	h.Receive(c, request(NON, CodePUT, 0x101, "\x02", "/ps/t/a?c=dev1", "x"))
	m, other = one(t, h)
	expect(t, m, NON, CodeChanged, 0, "\x02", "")
	if m.MID == 0x101 {
		t.Error("NON reply reuses the request's message id")
	}
	checkCalls(t, other, []string{`publish 1 t/a qos0 "x"`}, c)

	// qos parameter, leading-slash topic.
	h.Receive(c, request(CON, CodePOST, 0x102, "", "/ps//abc?q=2", "y"))
	_, other = one(t, h)
	checkCalls(t, other, []string{`publish 1 /abc qos2 "y"`}, c)

	// Another clientid on the same connection.
	h.Receive(c, request(CON, CodePOST, 0x103, "", "/ps/t?clientid=other", "z"))
	m, other = one(t, h)
	expect(t, m, ACK, CodeUnauthorized, 0x103, "", "clientid differs from the connection's")
	checkCalls(t, other, nil, c)
}

// checkCalls compares host calls, with the connection's number written as 1.
func checkCalls(t *testing.T, got, want []string, c protogate.Conn) {
	t.Helper()
	for i := range want {
		op, rest, _ := strings.Cut(want[i], " 1")
		want[i] = op + " " + itoa(uint64(c)) + rest
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls\n%q\nwant\n%q", got, want)
	}
}

func itoa(n uint64) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func TestPublishErrors(t *testing.T) {
	h, _, c := setup(t)
	tests := []struct {
		req  []byte
		code uint8
		diag string
	}{
		{request(CON, CodePOST, 1, "", "/ps", "x"), CodeBadRequest, "invalid topic"},
		{request(CON, CodePOST, 2, "", "/ps/a/+", "x"), CodeBadRequest, "invalid topic"},
		{request(CON, CodePOST, 3, "", "/ps/a/#", "x"), CodeBadRequest, "invalid topic"},
		{request(CON, CodePOST, 4, "", "/ps/$SYS/x", "x"), CodeBadRequest, "invalid topic"},
		{request(CON, CodePOST, 5, "", "/ps/t?qos=3", "x"), CodeBadRequest, "invalid qos"},
		{request(CON, CodePOST, 6, "", "/ps/t", strings.Repeat("b", 1025)), CodeTooLarge, "body too large"},
		{request(CON, CodePOST, 7, "", "/ps/t", "x", Option{Num: OptBlock1, Val: []byte{0x0e}}), CodeTooLarge, "body too large"},
		{request(CON, CodePOST, 8, "", "/ps/t", "x", Option{Num: OptBlock1, Val: []byte{0x16}}), CodeIncomplete, "block1 not supported"},
		{request(CON, CodePOST, 9, "", "/ps/t", "x", Option{Num: OptBlock1, Val: []byte{0x07}}), CodeBadRequest, "invalid block size"},
		{request(CON, CodeDELETE, 10, "", "/ps/t", ""), CodeMethodNotAllowed, "method not allowed"},
		{request(CON, CodeGET, 11, "", "/ps/t", ""), CodeNotFound, "no retained value"},
		{request(CON, CodeGET, 12, "", "/nope", ""), CodeNotFound, "not found"},
		{request(CON, CodeGET, 13, "", "/ps/t", "", Option{Num: OptObserve, Val: []byte{0}}), CodeBadRequest, "observe without token"},
		{request(CON, CodeGET, 14, "k", "/ps/a/#/b", "", Option{Num: OptObserve, Val: []byte{}}), CodeBadRequest, "invalid topic"},
		{request(CON, CodeGET, 15, "k", "/ps/t", "", Option{Num: OptObserve, Val: []byte{5}}), CodeBadRequest, "invalid observe value"},
		{request(CON, 0x1f, 16, "", "/ps/t", ""), CodeMethodNotAllowed, "method not allowed"},
		{request(CON, CodeGET, 17, "", "/ps/t", "", Option{Num: 9, Val: []byte{1}}), CodeBadOption, "bad option 9"},
		{request(CON, CodeGET, 18, "", "/ps/t", "", Option{Num: OptBlock2, Val: []byte{0x16}}), CodeBadOption, "block2 not supported"},
	}
	for _, tt := range tests {
		h.Receive(c, tt.req)
		m, other := one(t, h)
		if m.Type != ACK || m.Code != tt.code || string(m.Payload) != tt.diag {
			t.Errorf("%x: got %s %q, want %s %q", tt.req, CodeString(m.Code), m.Payload, CodeString(tt.code), tt.diag)
		}
		if len(other) != 0 {
			t.Errorf("%x: host calls %q", tt.req, other)
		}
		if tt.code == CodeTooLarge {
			if v, _ := option(m, OptSize1); !bytes.Equal(v, []byte{4, 0}) {
				t.Errorf("Size1 %x", v)
			}
		}
	}
	// Elective unknown options, Uri-Host and Uri-Port are accepted.
	h.Receive(c, request(CON, CodePOST, 20, "", "/ps/t", "x", Option{Num: OptURIHost, Val: []byte("localhost")},
		Option{Num: OptURIPort, Val: []byte{0x16, 0x33}}, Option{Num: 2000, Val: []byte{1}}, Option{Num: OptRequestTag, Val: []byte{1}},
		Option{Num: OptContentFormat, Val: []byte{}}, Option{Num: OptBlock1, Val: []byte{0x06}}))
	m, _ := one(t, h)
	expect(t, m, ACK, CodeChanged, 20, "", "")
}

func TestAuthenticationRefused(t *testing.T) {
	h, _, c := setup(t)
	h.Fail(abi.ImportAuthenticate, abi.StatusPermissionDeny, "not_authorized")
	h.Receive(c, request(CON, CodePOST, 1, "", "/ps/t?clientid=x", "x"))
	m, _ := one(t, h)
	expect(t, m, ACK, CodeUnauthorized, 1, "", "authentication failed: not_authorized")
}

func TestWellKnownCore(t *testing.T) {
	h, _, c := setup(t)
	h.Receive(c, request(CON, CodeGET, 1, "t", "/.well-known/core", ""))
	m, _ := one(t, h)
	expect(t, m, ACK, CodeContent, 1, "t", `</ps>;rt="core.ps"`)
	if v, ok := option(m, OptContentFormat); !ok || !bytes.Equal(v, []byte{40}) {
		t.Errorf("Content-Format %x", v)
	}
	h.Receive(c, request(CON, CodeGET, 2, "t", "/.well-known/core", "", Option{Num: OptAccept, Val: []byte{50}}))
	m, _ = one(t, h)
	expect(t, m, ACK, CodeNotAcceptable, 2, "t", "only link-format")
}

func TestDedup(t *testing.T) {
	h, _, c := setup(t)
	req := request(CON, CodePOST, 0x200, "\x07", "/ps/t", "once")
	h.Receive(c, req)
	first, other := one(t, h)
	if len(other) != 3 { // authenticate, start_timer, publish
		t.Fatalf("calls %q", other)
	}
	h.Receive(c, req)
	again, other := one(t, h)
	if len(other) != 0 {
		t.Errorf("duplicate made calls %q", other)
	}
	if !bytes.Equal(first.Append(nil), again.Append(nil)) {
		t.Error("the duplicate's reply differs")
	}
	// A duplicate NON is ignored.
	non := request(NON, CodePOST, 0x201, "\x08", "/ps/t", "non")
	h.Receive(c, non)
	one(t, h)
	h.Receive(c, non)
	if sent, other := split(t, h); len(sent)+len(other) != 0 {
		t.Errorf("duplicate NON: sent %d, calls %q", len(sent), other)
	}
}

func TestMalformed(t *testing.T) {
	h, _, c := setup(t)
	tests := []struct {
		name, in string
		rst      bool
	}{
		{"version 2", "81 01 00 01 01", false},
		{"short", "40 01", false},
		{"TKL 9 CON", "49 01 00 02 010203040506070809", true},
		{"TKL 9 NON", "59 01 00 03 010203040506070809", false},
		{"marker without payload", "40 02 00 04 ff", true},
		{"empty CON with data", "40 00 00 05 ff 61", true},
		{"ping", "40 00 00 06", true},
		{"reserved class CON", "40 20 00 07", true},
		{"reserved class NON", "50 20 00 08", false},
		{"unexpected CON response", "40 45 00 09", true},
		{"unexpected ACK", "60 45 00 0a", false},
		{"unexpected RST", "70 00 00 0b", false},
		{"request in an ACK", "60 01 00 0c", false},
		{"critical option in a NON", "50 01 00 0d 91 01", false},
	}
	for _, tt := range tests {
		if err := h.Receive(c, unhex(t, tt.in)); err != nil {
			t.Fatalf("%s: callback failed: %v", tt.name, err)
		}
		sent, other := split(t, h)
		if len(other) != 0 {
			t.Errorf("%s: calls %q", tt.name, other)
		}
		switch {
		case !tt.rst && len(sent) != 0:
			t.Errorf("%s: sent %d datagrams, want none", tt.name, len(sent))
		case tt.rst && (len(sent) != 1 || sent[0].Type != RST || sent[0].Code != 0 || len(sent[0].Token) != 0):
			t.Errorf("%s: sent %+v, want one RST", tt.name, sent)
		case tt.rst:
			in := unhex(t, tt.in)
			if sent[0].MID != uint16(in[2])<<8|uint16(in[3]) {
				t.Errorf("%s: RST mid %04x", tt.name, sent[0].MID)
			}
		}
	}
	if _, closed := h.Closed(c); closed {
		t.Error("connection closed")
	}
}

func observe(v byte) Option { return Option{Num: OptObserve, Val: AppendUint(nil, uint32(v))} }

func TestObserve(t *testing.T) {
	h, g, c := setup(t)
	h.Receive(c, request(CON, CodeGET, 1, "tok", "/ps/t/+", "", observe(0)))
	m, other := one(t, h)
	expect(t, m, ACK, CodeContent, 1, "tok", "")
	if seq, ok := observeOf(t, m); !ok || seq != 2 {
		t.Errorf("registration Observe %d %v", seq, ok)
	}
	if _, ok := option(m, OptContentFormat); ok {
		t.Error("Content-Format in the registration")
	}
	if len(other) != 3 || other[2] != "subscribe "+itoa(uint64(c))+" t/+ qos1" {
		t.Errorf("calls %q", other)
	}

	// Re-registration with the same token: one subscription.
	h.Receive(c, request(CON, CodeGET, 2, "tok", "/ps/t/+", "", observe(0)))
	m, other = one(t, h)
	if seq, _ := observeOf(t, m); seq != 3 || len(other) != 0 {
		t.Errorf("re-registration: Observe %d, calls %q", seq, other)
	}

	// QoS 0 -> NON notifications; a topic that does not match is ignored.
	h.Deliver(c, protogate.Message{Topic: "t/x", Payload: []byte("m1")}, protogate.Message{Topic: "u/x", Payload: []byte("no")},
		protogate.Message{Topic: "t/y", Payload: []byte("m2")})
	sent, _ := split(t, h)
	if len(sent) != 2 {
		t.Fatalf("%d notifications", len(sent))
	}
	for i, want := range []string{"m1", "m2"} {
		expect(t, sent[i], NON, CodeContent, 0, "tok", want)
		if seq, _ := observeOf(t, sent[i]); seq != uint32(4+i) {
			t.Errorf("notification %d: Observe %d", i, seq)
		}
	}

	// QoS 1 -> CON, one in flight, the rest queued until the ACK.
	h.Deliver(c, protogate.Message{Topic: "t/x", QoS: 1, Payload: []byte("c1")}, protogate.Message{Topic: "t/x", QoS: 1, Payload: []byte("c2")})
	sent, _ = split(t, h)
	if len(sent) != 1 {
		t.Fatalf("%d CON notifications in flight", len(sent))
	}
	expect(t, sent[0], CON, CodeContent, 0, "tok", "c1")
	h.Receive(c, unhex(t, "60 00"+hexMID(sent[0].MID)))
	sent, _ = split(t, h)
	if len(sent) != 1 {
		t.Fatalf("after the ACK: %d sent", len(sent))
	}
	expect(t, sent[0], CON, CodeContent, 0, "tok", "c2")
	// A response-ACK (EMQX's issue #189) counts as an ACK too.
	ack := Message{Type: ACK, Code: CodeChanged, MID: sent[0].MID, Token: []byte("tok")}
	h.Receive(c, ack.Append(nil))
	if len(g.conns[c].queue) != 0 || g.conns[c].inflight != nil {
		t.Error("still in flight")
	}
	split(t, h)

	// Deregistration: 2.05 without Observe, unsubscribe; idempotent.
	h.Receive(c, request(CON, CodeGET, 3, "tok", "/ps/t/+", "", observe(1)))
	m, other = one(t, h)
	expect(t, m, ACK, CodeContent, 3, "tok", "")
	if _, ok := observeOf(t, m); ok {
		t.Error("Observe in the deregistration reply")
	}
	checkCalls(t, other, []string{"unsubscribe 1 t/+"}, c)
	h.Receive(c, request(CON, CodeGET, 4, "tok", "/ps/t/+", "", observe(1)))
	m, other = one(t, h)
	expect(t, m, ACK, CodeContent, 4, "tok", "")
	if len(other) != 0 {
		t.Errorf("calls %q", other)
	}
	h.Deliver(c, protogate.Message{Topic: "t/x", Payload: []byte("late")})
	if sent, _ := split(t, h); len(sent) != 0 {
		t.Error("notification after deregistration")
	}
}

func hexMID(mid uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[mid>>12], digits[mid>>8&15], digits[mid>>4&15], digits[mid&15]})
}

func TestTwoTokensOneFilter(t *testing.T) {
	h, _, c := setup(t)
	h.Receive(c, request(NON, CodeGET, 1, "a", "/ps/f", "", observe(0)))
	h.Receive(c, request(NON, CodeGET, 2, "b", "/ps/f", "", observe(0)))
	sent, other := split(t, h)
	if len(sent) != 2 || sent[0].Type != NON || len(other) != 3 {
		t.Fatalf("sent %d, calls %q", len(sent), other)
	}
	if other[2] != "subscribe "+itoa(uint64(c))+" f qos0" {
		t.Errorf("calls %q", other)
	}
	h.Deliver(c, protogate.Message{Topic: "f", Payload: []byte("m")})
	if sent, _ := split(t, h); len(sent) != 2 || string(sent[0].Token) != "a" || string(sent[1].Token) != "b" {
		t.Errorf("notifications %+v", sent)
	}
	// Removing one keeps the subscription.
	h.Receive(c, request(NON, CodeGET, 3, "a", "/ps/f", "", observe(1)))
	if _, other := split(t, h); len(other) != 0 {
		t.Errorf("calls %q", other)
	}
	h.Receive(c, request(NON, CodeGET, 4, "b", "/ps/f", "", observe(1)))
	_, other = split(t, h)
	checkCalls(t, other, []string{"unsubscribe 1 f"}, c)
}

func TestRSTEndsObservation(t *testing.T) {
	h, _, c := setup(t)
	h.Receive(c, request(CON, CodeGET, 1, "k", "/ps/t", "", observe(0)))
	h.Receive(c, request(CON, CodeGET, 2, "n", "/ps/u", "", observe(0)))
	split(t, h)
	// RST to a CON notification.
	h.Deliver(c, protogate.Message{Topic: "t", QoS: 1, Payload: []byte("1")}, protogate.Message{Topic: "t", QoS: 1, Payload: []byte("2")})
	sent, _ := split(t, h)
	h.Receive(c, unhex(t, "70 00"+hexMID(sent[0].MID)))
	sent, other := split(t, h)
	if len(sent) != 0 {
		t.Errorf("the queued notification of the cancelled observation was sent")
	}
	checkCalls(t, other, []string{"unsubscribe 1 t", "cancel_timer 1 " + other[len(other)-1][len("cancel_timer 1 "):]}, c)
	// RST to a NON notification.
	h.Deliver(c, protogate.Message{Topic: "u", Payload: []byte("1")})
	sent, _ = split(t, h)
	h.Receive(c, unhex(t, "70 00"+hexMID(sent[0].MID)))
	_, other = split(t, h)
	checkCalls(t, other, []string{"unsubscribe 1 u"}, c)
}

func TestRetransmission(t *testing.T) {
	h, g, c := setup(t)
	h.Receive(c, request(CON, CodeGET, 1, "k", "/ps/t", "", observe(0)))
	split(t, h)
	h.Deliver(c, protogate.Message{Topic: "t", QoS: 1, Payload: []byte("r")})
	sent, _ := split(t, h)
	first := sent[0].Append(nil)
	var delays []int64
	for i := 0; i < MaxRetransmit; i++ {
		ts := h.Timers(c)
		if len(ts) != 1 {
			t.Fatalf("%d timers armed", len(ts))
		}
		delays = append(delays, int64(g.conns[c].inflight.timeout))
		h.Fire(c, ts[0])
		sent, _ := split(t, h)
		if len(sent) != 1 || !bytes.Equal(sent[0].Append(nil), first) {
			t.Fatalf("retransmission %d: %+v", i+1, sent)
		}
	}
	if d := delays[0]; d < int64(AckTimeout) || d >= int64(AckTimeout*3/2) {
		t.Errorf("first timeout %d", d)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] != 2*delays[i-1] {
			t.Errorf("timeouts %v do not double", delays)
		}
	}
	ts := h.Timers(c)
	h.Fire(c, ts[0])
	sent, other := split(t, h)
	if len(sent) != 0 {
		t.Error("sent after the last retransmission")
	}
	checkCalls(t, other, []string{"unsubscribe 1 t"}, c)
	if len(h.Timers(c)) != 0 {
		t.Error("timer still armed")
	}
}

func TestOversizedNotification(t *testing.T) {
	h, _, c := setup(t)
	h.Receive(c, request(CON, CodeGET, 1, "k", "/ps/t", "", observe(0)))
	split(t, h)
	h.Deliver(c, protogate.Message{Topic: "t", Payload: bytes.Repeat([]byte("x"), 1500)}, protogate.Message{Topic: "t", Payload: []byte("ok")})
	sent, other := split(t, h)
	if len(sent) != 1 || string(sent[0].Payload) != "ok" || len(other) != 0 {
		t.Errorf("sent %d, calls %q", len(sent), other)
	}
}

func TestConnectionMode(t *testing.T) {
	h, _, c := setup(t)
	h.Receive(c, request(CON, CodePOST, 1, "", "/mqtt/connection?username=u", ""))
	m, _ := one(t, h)
	expect(t, m, ACK, CodeBadRequest, 1, "", "Login Failed: clientid is required")

	h.Receive(c, request(CON, CodePOST, 2, "", "/mqtt/connection?clientid=c1&username=u&password=p", ""))
	m, other := one(t, h)
	if m.Code != CodeCreated || len(m.Payload) == 0 {
		t.Fatalf("create: %s %q", CodeString(m.Code), m.Payload)
	}
	token := string(m.Payload)
	checkCalls(t, other, []string{`authenticate 1 {ProtoName:coap ProtoVer:1 ClientID:c1 Username:u} "p"`, "start_timer 1 type0 90s"}, c)

	tests := []struct {
		req  []byte
		code uint8
		diag string
	}{
		{request(CON, CodePOST, 3, "", "/mqtt/connection?clientid=c1", ""), CodeBadRequest, "client has connected"},
		{request(CON, CodePUT, 4, "", "/mqtt/connection?clientid=c1", ""), CodeBadRequest, "Missing token or clientid in connection mode"},
		{request(CON, CodePUT, 5, "", "/mqtt/connection?clientid=c1&token=x"+token, ""), CodeUnauthorized, "Invalid token or clientid in connection mode"},
		{request(CON, CodePUT, 6, "", "/mqtt/connection?clientid=c1&token="+token, ""), CodeChanged, ""},
		{request(CON, CodePOST, 7, "", "/ps/t?clientid=c1", "x"), CodeBadRequest, "Missing token or clientid in connection mode"},
		{request(CON, CodePOST, 8, "", "/ps/t?clientid=c2&token="+token, "x"), CodeUnauthorized, "Invalid token or clientid in connection mode"},
		{request(CON, CodePOST, 9, "", "/ps/t?clientid=c1&token="+token, "x"), CodeChanged, ""},
		{request(CON, CodeGET, 10, "", "/mqtt/connection", ""), CodeMethodNotAllowed, "method not allowed"},
	}
	for _, tt := range tests {
		h.Receive(c, tt.req)
		m, _ := one(t, h)
		if m.Code != tt.code || string(m.Payload) != tt.diag {
			t.Errorf("%x: got %s %q, want %s %q", tt.req, CodeString(m.Code), m.Payload, CodeString(tt.code), tt.diag)
		}
	}
	h.Receive(c, request(CON, CodeDELETE, 11, "", "/mqtt/connection?clientid=c1&token="+token, ""))
	m, other = one(t, h)
	expect(t, m, ACK, CodeDeleted, 11, "", "")
	checkCalls(t, other, []string{"close 1"}, c)
	if reason, closed := h.Closed(c); !closed || reason != sdktest.ReasonNormal {
		t.Errorf("closed %v %q", closed, reason)
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false},
		{"a/#", "a", true}, {"a/#", "a/b/c", true}, {"#", "x/y", true}, {"+", "x", true}, {"+", "x/y", false},
		{"a", "a/b", false}, {"a/b", "a", false}, {"/abc", "/abc", true}, {"+/abc", "/abc", true},
		{"#", "$SYS/x", false}, {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true}, {"a/+/c", "a//c", true},
	}
	for _, tt := range tests {
		if got := matches(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matches(%q, %q) = %v", tt.filter, tt.topic, got)
		}
	}
}

// FuzzReceive checks that no datagram fails a callback, and that the guest
// only ever sends valid messages, also when it has an observation.
func FuzzReceive(f *testing.F) {
	f.Add(request(CON, CodePOST, 1, "t", "/ps/a", "x"))
	f.Add(request(CON, CodeGET, 2, "t", "/ps/a/+", "", observe(0)))
	f.Add(request(CON, CodePOST, 3, "", "/mqtt/connection?clientid=c", ""))
	f.Add([]byte{0x40, 0, 0, 1})
	f.Add([]byte{0x70, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, _, c := setup(t)
		h.Receive(c, request(CON, CodeGET, 0xffff, "o", "/ps/#", "", observe(0)))
		h.Deliver(c, protogate.Message{Topic: "a", QoS: 1, Payload: []byte("q")})
		if err := h.Receive(c, b); err != nil {
			t.Fatalf("callback failed: %v", err)
		}
		h.Deliver(c, protogate.Message{Topic: "a", Payload: []byte("q")})
		split(t, h)
	})
}

func TestDTLSIdentity(t *testing.T) {
	h := sdktest.New(t)
	protogate.Register(newGuest())
	c := h.Connect(protogate.ConnInfo{SockType: protogate.DTLS, PeerCert: &protogate.CertInfo{CN: "dev1"}})
	h.Receive(c, request(CON, CodePOST, 1, "", "/ps/t?clientid=other", "x"))
	m, other := one(t, h)
	expect(t, m, ACK, CodeUnauthorized, 1, "", "clientid differs from the DTLS identity")
	if len(other) != 0 {
		t.Errorf("calls %q", other)
	}
	h.Receive(c, request(CON, CodePOST, 2, "", "/ps/t", "x"))
	m, other = one(t, h)
	expect(t, m, ACK, CodeChanged, 2, "", "")
	checkCalls(t, other, []string{`authenticate 1 {ProtoName:coap ProtoVer:1 ClientID:dev1 Username:} ""`, "start_timer 1 type0 90s", `publish 1 t qos1 "x"`}, c)

	c2 := h.Connect(protogate.ConnInfo{SockType: protogate.DTLS, PeerCert: &protogate.CertInfo{CN: "dev2"}})
	h.Receive(c2, request(CON, CodePOST, 1, "", "/mqtt/connection", ""))
	m, other = one(t, h)
	if m.Code != CodeCreated {
		t.Errorf("create: %s %q", CodeString(m.Code), m.Payload)
	}
	checkCalls(t, other, []string{`authenticate 1 {ProtoName:coap ProtoVer:1 ClientID:dev2 Username:} ""`, "start_timer 1 type0 90s"}, c2)
}

// Deregistration stops the retransmission of the observation's CON
// notification in flight, and the next one (of another observation) goes.
func TestDeregisterStopsRetransmission(t *testing.T) {
	h, g, c := setup(t)
	h.Receive(c, request(CON, CodeGET, 1, "a", "/ps/a", "", observe(0)))
	h.Receive(c, request(CON, CodeGET, 2, "b", "/ps/b", "", observe(0)))
	h.Deliver(c, protogate.Message{Topic: "a", QoS: 1, Payload: []byte("1")}, protogate.Message{Topic: "a", QoS: 1, Payload: []byte("2")},
		protogate.Message{Topic: "b", QoS: 1, Payload: []byte("3")})
	split(t, h)
	h.Receive(c, request(CON, CodeGET, 3, "a", "/ps/a", "", observe(1)))
	sent, _ := split(t, h)
	// The next notification goes out while the request runs, before its
	// reply.
	if len(sent) != 2 || sent[1].Type != ACK || string(sent[0].Payload) != "3" || string(sent[0].Token) != "b" {
		t.Fatalf("sent %+v", sent)
	}
	if p := g.conns[c].inflight; p == nil || p.obs.token != "b" || len(h.Timers(c)) != 1 {
		t.Errorf("in flight %+v, timers %v", p, h.Timers(c))
	}
}

func TestConnectionModeLoginFailed(t *testing.T) {
	h, _, c := setup(t)
	h.Fail(abi.ImportAuthenticate, abi.StatusPermissionDeny, "bad password")
	h.Receive(c, request(CON, CodePOST, 1, "", "/mqtt/connection?clientid=c1&password=x", ""))
	m, _ := one(t, h)
	expect(t, m, ACK, CodeBadRequest, 1, "", "Login Failed: bad password")
}
