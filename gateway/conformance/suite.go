package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// testCase is one behaviour of the suite; each runs on every transport.
type testCase struct {
	name string
	// slow cases wait for timers and run in parallel with each other.
	slow bool
	// stream cases run only on TCP and SSL, datagram cases only on UDP
	// and DTLS, onlyTCP, onlyUDP and onlyDTLS on one of them.
	stream, datagram, onlyTCP, onlyUDP, onlyDTLS bool
	opts                                         envOptions
	run                                          func(t *testing.T, env *Env)
}

var cases = []testCase{
	{name: "ConnectSubscribePublishEcho", run: testEcho},
	{name: "MessageFields", run: testMessageFields},
	{name: "PubSubRefusedBeforeAuthenticate", run: testBeforeAuth},
	{name: "SecondAuthenticateRefused", run: testSecondAuth},
	{name: "DuplicateClientIDDiscardsOlder", run: testDuplicateClientID},
	{name: "DuplicateClientIDJailed", run: testDuplicateJailed},
	{name: "Mountpoint", opts: envOptions{mountpoint: "ct/${clientid}/"}, run: testMountpoint},
	{name: "RawPublishIgnoresMountpoint", opts: envOptions{mountpoint: "ct/"}, run: testRawPublish},
	{name: "NATSInterop", run: testNATSInterop},
	{name: "WildcardFilters", run: testWildcards},
	{name: "Unsubscribe", run: testUnsubscribe},
	{name: "MaxSubscriptions", opts: envOptions{maxSubs: 2}, run: testMaxSubscriptions},
	{name: "BadRequests", opts: envOptions{maxPayload: 4096}, run: testBadRequests},
	{name: "AuthnDenied", opts: envOptions{auth: passwordAuth("s3cret")}, run: testAuthnDenied},
	{name: "AuthnDisabledOnListener", opts: envOptions{auth: passwordAuth("s3cret"), disableAuthn: true}, run: testAuthnDisabled},
	{name: "ConnInfo", opts: envOptions{clientCert: true}, run: testConnInfo},
	{name: "ConnInfoWithoutClientCert", run: testConnInfoNoCert},
	{name: "PeerCloseReason", stream: true, run: testPeerClose},
	{name: "SendAndCloseAtOnce", stream: true, run: testSendAndClose},
	{name: "SendAndCloseAtOnceFramed", stream: true, opts: envOptions{framing: true}, run: testSendAndClose},
	{name: "SendAndCloseAtOnceBehindProxy", stream: true, opts: envOptions{proxy: true}, run: testSendAndClose},
	{name: "BurstArrivesWhole", onlyTCP: true, opts: envOptions{maxPending: 32}, run: testBurst},
	{name: "BurstArrivesWholeBesideStalled", onlyTCP: true, opts: envOptions{maxPending: 32}, run: testBurstBesideStalled},
	{name: "DisconnectClosesSocket", run: testDisconnect},
	{name: "HandlerFaultClosesOnlyThatConnection", run: testHandlerFault},
	{name: "DeliveriesInOrder", run: testDeliveriesInOrder},
	{name: "ByteByByteAndCoalesced", run: testChunking},
	{name: "AnswersArriveByteExact", run: testAnswerBytes},
	{name: "StaleHandle", run: testStaleHandle},
	{name: "ShutdownClosesEveryConnection", run: testShutdown},
	{name: "AuthzDenied", opts: envOptions{authz: okOnly(), mountpoint: "m/"}, run: testAuthzDenied},
	{name: "AdminClients", run: testAdminClients},
	{name: "AdminKick", run: testAdminKick},
	{name: "AdminSubscriptions", opts: envOptions{mountpoint: "ct/${clientid}/"}, run: testAdminSubscriptions},
	{name: "AdminTrace", run: testAdminTrace},
	{name: "KeepaliveTimeout", slow: true, run: testKeepaliveTimeout},
	{name: "KeepaliveKeptByTraffic", slow: true, run: testKeepaliveKept},
	{name: "IdleTimeout", slow: true, stream: true, opts: envOptions{idle: idleWindow}, run: testIdleTimeout},
	{name: "DatagramReaping", slow: true, datagram: true, opts: envOptions{idle: idleWindow}, run: testReaping},
	{name: "HealthCheck", datagram: true, run: testHealthCheck},
	{name: "NewConnAfterClose", onlyUDP: true, run: testNewConnAfterClose},
	{name: "PeersIsolated", datagram: true, run: testPeersIsolated},
	{name: "KeepaliveNotKeptByOtherPeer", slow: true, datagram: true, run: testKeepaliveOtherPeer},
	{name: "PSKIdentity", onlyDTLS: true, opts: envOptions{psk: true}, run: testPSKIdentity},
}

// idleWindow is the idle_timeout of the cases where one connection must
// outlive it by sending and another be closed by it. A device that sends
// keeps its connection only if no gap between two of its datagrams (a round
// trip and 200 ms of pacing, or the first byte after OnSocketCreated) reaches
// it: on a loaded 2-core machine running -race, 1.5 s was reached. It is
// also how long those cases take.
const idleWindow = 6 * time.Second

// Run runs the suite against b on TCP, TLS, UDP and DTLS listeners.
func Run(t *testing.T, b Backend) {
	for _, typ := range []gateway.SocketType{gateway.TCP, gateway.SSL, gateway.UDP, gateway.DTLS} {
		t.Run(typ.String(), func(t *testing.T) {
			datagram := typ == gateway.UDP || typ == gateway.DTLS
			for _, tc := range cases {
				if tc.stream && datagram || tc.datagram && !datagram || tc.onlyTCP && typ != gateway.TCP ||
					tc.onlyUDP && typ != gateway.UDP || tc.onlyDTLS && typ != gateway.DTLS {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					if tc.slow {
						t.Parallel()
					}
					env := newEnv(t, b, typ, tc.opts)
					tc.run(t, env)
				})
			}
		})
	}
}

func testEcho(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("echo-1", 0, 0)
	c.subscribe("t/dn", 1, 0)
	c.publish("t/dn", 1, "hello", 0)
	// No-local is off: the connection receives its own publish.
	f := c.expect(jp.Publish, 0)
	if f.Topic != "t/dn" || f.Payload != "hello" || f.QoS != 1 {
		t.Fatalf("delivery = %+v, want t/dn hello qos 1", f)
	}
}

var msgID = regexp.MustCompile(`^[0-9A-F]{32}$`)

func testMessageFields(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("fields-1", 0, 0)
	c.subscribe("f/+", 2, 0)
	before := time.Now().UnixMilli()
	c.publish("f/x", 2, "p", 0)
	c.expect(jp.Publish, 0)
	evs := env.Rec.waitKind(t, c.handle, "messages", 1)
	m := evs[0].Messages[0]
	if m.Topic != "f/x" || m.From != "fields-1" || m.QoS != 2 || string(m.Payload) != "p" {
		t.Errorf("message = %+v", m)
	}
	if !msgID.MatchString(m.ID) {
		t.Errorf("id %q is not 32 uppercase hex digits", m.ID)
	}
	if m.Node == "" {
		t.Error("node is empty")
	}
	if now := time.Now().UnixMilli(); m.Timestamp < before-1000 || m.Timestamp > now+1000 {
		t.Errorf("timestamp %d not within [%d, %d]", m.Timestamp, before, now)
	}
}

func testBeforeAuth(t *testing.T, env *Env) {
	c := env.dial(t)
	// Send works before Authenticate (the acks arrive); pub/sub does not.
	c.subscribe("t/x", 0, 1)
	c.publish("t/x", 0, "early", 1)
	c.send(jp.Frame{Type: jp.Unsubscribe, Topic: "t/x"})
	c.expect(jp.Unsuback, 1)
	c.connect("late-1", 0, 0)
	c.subscribe("t/x", 0, 0)
}

func testSecondAuth(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("twice-1", 0, 0)
	// The second Authenticate is refused; the handler answers CONNACK 1
	// and closes.
	c.connect("twice-2", 0, 1)
	env.expectClosed(t, c)
	if r := env.Rec.waitClosed(t, c.handle); r != gateway.ReasonNormal {
		t.Errorf("reason %q, want %q", r, gateway.ReasonNormal)
	}
}

func testDuplicateClientID(t *testing.T, env *Env) {
	a := env.dial(t)
	a.connect("dup", 0, 0)
	b := env.dial(t)
	b.connect("dup", 0, 0)
	env.expectClosed(t, a)
	if r := env.Rec.waitClosed(t, a.handle); !strings.Contains(r, "discarded") {
		t.Errorf("older connection closed with %q, want discarded", r)
	}
	b.subscribe("dup/x", 0, 0)
	b.publish("dup/x", 0, "still here", 0)
	b.expect(jp.Publish, 0)
}

// testDuplicateJailed: a client id just taken over is jailed; the next
// Authenticate for it waits out the jail (these back ends give it the
// time) before it takes over in turn.
func testDuplicateJailed(t *testing.T, env *Env) {
	a := env.dial(t)
	a.connect("flap", 0, 0)
	b := env.dial(t)
	start := time.Now()
	b.connect("flap", 0, 0) // takes over a: the jail starts after start
	env.expectClosed(t, a)
	c := env.dial(t)
	c.connect("flap", 0, 0)
	if d := time.Since(start); d < gateway.JailTime {
		t.Errorf("a takeover %v after the last one; the jail is %v", d, gateway.JailTime)
	}
	env.expectClosed(t, b)
	if r := env.Rec.waitClosed(t, b.handle); !strings.Contains(r, "discarded") {
		t.Errorf("connection b closed with %q, want discarded", r)
	}
}

func testMountpoint(t *testing.T, env *Env) {
	up := env.natsSub(t, "ct.dev1.t.up")
	c := env.dial(t)
	c.connect("dev1", 0, 0)
	c.subscribe("t/dn", 0, 0)
	if err := env.NATS.Publish("ct.dev1.t.dn", []byte("down")); err != nil {
		t.Fatal(err)
	}
	f := c.expect(jp.Publish, 0)
	if f.Topic != "t/dn" || f.Payload != "down" {
		t.Errorf("delivery = %+v, want unmounted t/dn", f)
	}
	c.publish("t/up", 0, "up", 0)
	if m := recvNATS(t, up); string(m.Data) != "up" {
		t.Errorf("nats got %q", m.Data)
	}
}

func testRawPublish(t *testing.T, env *Env) {
	raw := env.natsSub(t, "raw.up")
	c := env.dial(t)
	c.connect("raw-1", 0, 0)
	c.send(jp.Frame{Type: jp.RawPublish, Topic: "raw/up", QoS: 0, Payload: "r"})
	c.expect(jp.Puback, 0)
	m := recvNATS(t, raw)
	if string(m.Data) != "r" || m.Header.Get("Protogate-From") != "exproto" {
		t.Errorf("raw publish = %q from %q", m.Data, m.Header.Get("Protogate-From"))
	}
}

func testNATSInterop(t *testing.T, env *Env) {
	ab := env.natsSub(t, "a.b")
	c := env.dial(t)
	c.connect("interop-1", 0, 0)
	c.publish("a/b", 1, "to nats", 0)
	if m := recvNATS(t, ab); string(m.Data) != "to nats" {
		t.Errorf("nats got %q", m.Data)
	}
	c.subscribe("sensors/+/temp", 0, 0)
	if err := env.NATS.Publish("sensors.d1.temp", []byte("21.5")); err != nil {
		t.Fatal(err)
	}
	f := c.expect(jp.Publish, 0)
	if f.Topic != "sensors/d1/temp" || f.Payload != "21.5" {
		t.Errorf("delivery = %+v", f)
	}
}

func testWildcards(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("wild-1", 0, 0)
	c.subscribe("a/#", 0, 0)
	// a/# matches the parent level a too.
	for _, subj := range []string{"a", "a.x", "a.x.y", "b.x"} {
		if err := env.NATS.Publish(subj, []byte(subj)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "a/x", "a/x/y"} {
		if f := c.expect(jp.Publish, 0); f.Topic != want {
			t.Errorf("got %q, want %q", f.Topic, want)
		}
	}
}

func testUnsubscribe(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("unsub-1", 0, 0)
	c.subscribe("u/1", 0, 0)
	c.subscribe("u/2", 0, 0)
	c.send(jp.Frame{Type: jp.Unsubscribe, Topic: "u/1"})
	c.expect(jp.Unsuback, 0)
	// Unsubscribing what is not subscribed succeeds, as in EMQX.
	c.send(jp.Frame{Type: jp.Unsubscribe, Topic: "never/subscribed"})
	c.expect(jp.Unsuback, 0)
	c.publish("u/1", 0, "gone", 0)
	c.publish("u/2", 0, "kept", 0)
	if f := c.expect(jp.Publish, 0); f.Topic != "u/2" {
		t.Errorf("got delivery on %q after unsubscribing it", f.Topic)
	}
}

// testMaxSubscriptions checks the listener's max_subscriptions: a new
// filter beyond it is refused with PERMISSION_DENY, the connection keeps
// working, a filter it has may still change QoS, and one unsubscribed
// frees room.
func testMaxSubscriptions(t *testing.T, env *Env) {
	denied := func() uint64 { return env.subscribeCalls(gateway.CodePermissionDeny) }
	before := denied()
	c := env.dial(t)
	c.connect("maxsubs-1", 0, 0)
	c.subscribe("m/1", 0, 0)
	c.subscribe("m/2", 0, 0)
	c.subscribe("m/3", 0, 1)
	if n := denied() - before; n != 1 {
		t.Errorf("%d subscribe calls answered PERMISSION_DENY, want 1", n)
	}
	c.subscribe("m/1", 1, 0) // already there: a QoS change
	c.publish("m/2", 0, "kept", 0)
	if f := c.expect(jp.Publish, 0); f.Topic != "m/2" || f.Payload != "kept" {
		t.Errorf("delivery = %+v, want m/2 kept", f)
	}
	c.send(jp.Frame{Type: jp.Unsubscribe, Topic: "m/1"})
	c.expect(jp.Unsuback, 0)
	c.subscribe("m/3", 0, 0)
	c.publish("m/3", 0, "room", 0)
	if f := c.expect(jp.Publish, 0); f.Topic != "m/3" || f.Payload != "room" {
		t.Errorf("delivery = %+v, want m/3 room", f)
	}
	// Another connection has a bound of its own.
	d := env.dial(t)
	d.connect("maxsubs-2", 0, 0)
	d.subscribe("m/1", 0, 0)
	d.subscribe("m/2", 0, 0)
}

// subscribeCalls returns how many Subscribe calls handlers made on the
// gateway that answered code.
func (env *Env) subscribeCalls(code gateway.Code) uint64 {
	calls := env.Server.Calls()
	for i, name := range gateway.CallNames {
		if name != "subscribe" {
			continue
		}
		for j, cd := range gateway.Codes() {
			if cd == code {
				return calls[i][j]
			}
		}
	}
	return 0
}

func testBadRequests(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("bad-1", 0, 0)
	for _, tc := range []struct {
		name   string
		frame  jp.Frame
		answer jp.Type
	}{
		{"qos 3", jp.Frame{Type: jp.Publish, Topic: "a", QoS: 3, Payload: "x"}, jp.Puback},
		{"empty topic", jp.Frame{Type: jp.Publish, Topic: "", Payload: "x"}, jp.Puback},
		{"wildcard publish", jp.Frame{Type: jp.Publish, Topic: "a/+", Payload: "x"}, jp.Puback},
		{"reserved topic", jp.Frame{Type: jp.Publish, Topic: "$SYS/x", Payload: "x"}, jp.Puback},
		{"space in topic", jp.Frame{Type: jp.Publish, Topic: "a b", Payload: "x"}, jp.Puback},
		{"oversized payload", jp.Frame{Type: jp.Publish, Topic: "a", Payload: strings.Repeat("x", 5000)}, jp.Puback},
		{"subscribe qos 3", jp.Frame{Type: jp.Subscribe, Topic: "a", QoS: 3}, jp.Suback},
		{"subscribe bad filter", jp.Frame{Type: jp.Subscribe, Topic: "a/#/b"}, jp.Suback},
		{"subscribe reserved", jp.Frame{Type: jp.Subscribe, Topic: "$JS/API/#"}, jp.Suback},
		{"unsubscribe empty", jp.Frame{Type: jp.Unsubscribe, Topic: ""}, jp.Unsuback},
		{"raw publish reserved", jp.Frame{Type: jp.RawPublish, Topic: "$SYS/x", Payload: "x"}, jp.Puback},
	} {
		c.send(tc.frame)
		c.expect(tc.answer, 1)
	}
	// Nothing broke: the connection still works.
	c.subscribe("ok/1", 0, 0)
	c.publish("ok/1", 0, "fine", 0)
	c.expect(jp.Publish, 0)
}

// passwordAuth accepts any client whose password is pw.
type passwordAuth string

func (p passwordAuth) Authenticate(_ context.Context, req *gateway.AuthRequest) (*gateway.Identity, error) {
	if req.Password != string(p) {
		return nil, errors.New("not_authorized")
	}
	return nil, nil
}

func testAuthnDenied(t *testing.T, env *Env) {
	c := env.dial(t)
	ci := jp.ClientInfo{ProtoName: "exproto", ProtoVer: "1.0", ClientID: "authn-1"}
	c.connectAs(ci, "wrong", 1)
	// The handler closes after a refused CONNECT.
	env.expectClosed(t, c)
	c2 := env.dial(t)
	c2.connectAs(ci, "s3cret", 0)
	c2.alive(0)
}

func testAuthnDisabled(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connectAs(jp.ClientInfo{ProtoName: "any-proto", ProtoVer: "9", ClientID: "noauthn-1"}, "wrong", 0)
	c.alive(0)
}

func testConnInfo(t *testing.T, env *Env) {
	c := env.dial(t)
	info := env.Rec.Events(c.handle)[0].Info
	if info.SockType != env.Type {
		t.Errorf("socktype %v, want %v", info.SockType, env.Type)
	}
	if want := netip.MustParseAddrPort(c.nc.LocalAddr().String()); info.Peer != want {
		t.Errorf("peer %v, want %v", info.Peer, want)
	}
	if want := netip.MustParseAddrPort(env.Addr); info.Local != want {
		t.Errorf("local %v, want %v", info.Local, want)
	}
	if env.Type == gateway.SSL || env.Type == gateway.DTLS {
		if info.PeerCert == nil || info.PeerCert.CN != ClientCN || info.PeerCert.DN != ClientDN {
			t.Errorf("peercert %+v, want CN %q DN %q", info.PeerCert, ClientCN, ClientDN)
		}
	} else if info.PeerCert != nil {
		t.Errorf("peercert %+v on plain %s", info.PeerCert, env.Type)
	}
}

func testConnInfoNoCert(t *testing.T, env *Env) {
	c := env.dial(t)
	if info := env.Rec.Events(c.handle)[0].Info; info.PeerCert != nil {
		t.Errorf("peercert %+v without a client certificate", info.PeerCert)
	}
}

func testPeerClose(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("peer-close", 0, 0)
	c.nc.Close()
	want := gateway.ReasonTCPClosed
	if env.Type == gateway.SSL {
		want = gateway.ReasonSSLClosed
	}
	if r := env.Rec.waitClosed(t, c.handle); r != want {
		t.Errorf("reason %q, want %q", r, want)
	}
}

func testDisconnect(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("bye-1", 0, 0)
	c.send(jp.Frame{Type: jp.Disconnect})
	env.expectClosed(t, c)
	if r := env.Rec.waitClosed(t, c.handle); r != gateway.ReasonNormal {
		t.Errorf("reason %q, want %q", r, gateway.ReasonNormal)
	}
	env.waitGone(t, c.handle)
}

func testHandlerFault(t *testing.T, env *Env) {
	bad := env.dial(t)
	good := env.dial(t)
	good.connect("good-1", 0, 0)
	bad.write([]byte(FailMarker))
	env.expectClosed(t, bad)
	if r := env.Rec.waitClosed(t, bad.handle); !strings.Contains(r, "on_received_bytes") || !strings.Contains(r, "injected fault") {
		t.Errorf("reason %q does not name the callback and the fault", r)
	}
	good.subscribe("still/ok", 0, 0)
	good.publish("still/ok", 0, "yes", 0)
	good.expect(jp.Publish, 0)
}

func testDeliveriesInOrder(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("order-1", 0, 0)
	c.subscribe("seq", 0, 0)
	n := 300
	if c.datagram {
		// A burst of datagrams beyond the client's socket receive buffer
		// (about 200 small ones by default) is lost on the way, as UDP may.
		n = 100
	}
	for i := range n {
		if err := env.NATS.Publish("seq", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		f := c.expect(jp.Publish, 0)
		if want := fmt.Sprint(i); f.Payload != want {
			t.Fatalf("delivery %d has payload %q", i, f.Payload)
		}
	}
}

func testChunking(t *testing.T, env *Env) {
	c := env.dial(t)
	// One frame written byte by byte, then three frames in one write: the
	// gateway passes bytes through unframed and the handler reassembles.
	connect := jp.Encode(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "exproto", ProtoVer: "1.0", ClientID: "chunks"}})
	if c.datagram {
		// Datagram transports keep a bounded queue per peer and drop
		// beyond it, by design: a frame a byte per datagram would overrun
		// it. One frame per datagram.
		c.write(connect)
	} else {
		for _, b := range connect {
			c.write([]byte{b})
		}
	}
	c.expect(jp.Connack, 0)
	var burst []byte
	burst = append(burst, jp.Encode(jp.Frame{Type: jp.Subscribe, Topic: "c/1"})...)
	burst = append(burst, jp.Encode(jp.Frame{Type: jp.Subscribe, Topic: "c/2"})...)
	burst = append(burst, jp.Encode(jp.Frame{Type: jp.Publish, Topic: "c/2", Payload: "x"})...)
	c.write(burst)
	c.expect(jp.Suback, 0)
	c.expect(jp.Suback, 0)
	c.expect(jp.Puback, 0)
	c.expect(jp.Publish, 0)
	var got []byte
	for i, ev := range env.Rec.Events(c.handle) {
		if ev.Kind == "bytes" && !(c.primed && i == 1) {
			got = append(got, ev.Bytes...)
		}
	}
	want := append(jp.Encode(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "exproto", ProtoVer: "1.0", ClientID: "chunks"}}), burst...)
	if string(got) != string(want) {
		t.Errorf("handler received %q, want %q", got, want)
	}
}

// testAnswerBytes checks that what the handler sends reaches the device
// byte for byte, one datagram per Send on datagram transports. The reference
// handlers end every frame with a newline, so that a person typing frames
// into nc sees one answer per line.
func testAnswerBytes(t *testing.T, env *Env) {
	c := env.dial(t)
	c.send(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "exproto", ProtoVer: "1.0", ClientID: "bytes-1"}})
	c.expectBytes(`{"type":2,"code":0}` + "\n")
	c.send(jp.Frame{Type: jp.Subscribe, Topic: "b/1"})
	c.expectBytes(`{"type":6,"code":0}` + "\n")
	c.send(jp.Frame{Type: jp.Publish, Topic: "b/1", Payload: "x"})
	c.expectBytes(`{"type":4,"code":0}` + "\n")
	c.expectBytes(`{"type":3,"topic":"b/1","qos":0,"payload":"x"}` + "\n")
}

func testStaleHandle(t *testing.T, env *Env) {
	a := env.dial(t)
	b := env.dial(t)
	if a.handle == b.handle {
		t.Fatalf("two connections share handle %q", a.handle)
	}
	a.send(jp.Frame{Type: jp.Disconnect})
	env.expectClosed(t, a)
	env.Rec.waitClosed(t, a.handle)
	c := env.dial(t)
	if c.handle == a.handle || c.handle == b.handle {
		t.Fatalf("handle %q reused", c.handle)
	}
	env.waitGone(t, a.handle)
	for _, h := range []string{"garbage", "zzzzzzzzzzzzzzzz", strings.Repeat("f", 17)} {
		if _, err := env.Server.Lookup(h); gateway.CodeOf(err) != gateway.CodeParamsTypeError {
			t.Errorf("handle %q: %v, want PARAMS_TYPE_ERROR", h, err)
		}
	}
	c.connect("fresh", 0, 0)
}

func testShutdown(t *testing.T, env *Env) {
	a := env.dial(t)
	b := env.dial(t)
	a.connect("shut-a", 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := env.Server.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	env.expectClosed(t, a)
	env.expectClosed(t, b)
	for _, c := range []*client{a, b} {
		if r := env.Rec.waitClosed(t, c.handle); r != gateway.ReasonShutdown {
			t.Errorf("reason %q, want %q", r, gateway.ReasonShutdown)
		}
	}
}

func testKeepaliveTimeout(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("ka-1", 1, 0)
	// Silence: after about 1.5 s the handler hears OnTimerTimeout and the
	// gateway closes the socket itself.
	env.expectClosed(t, c)
	r := env.Rec.waitClosed(t, c.handle)
	if r != gateway.ReasonKeepaliveTimeout {
		t.Errorf("reason %q, want %q", r, gateway.ReasonKeepaliveTimeout)
	}
	evs := env.Rec.Events(c.handle)
	if len(evs) < 2 || evs[len(evs)-2].Kind != "timeout" {
		t.Errorf("OnTimerTimeout did not come right before OnSocketClosed: %v", kinds(evs))
	}
	if n := len(env.Rec.waitKind(t, c.handle, "timeout", 1)); n != 1 {
		t.Errorf("%d OnTimerTimeout, want 1", n)
	}
}

func testKeepaliveKept(t *testing.T, env *Env) {
	c := env.dial(t)
	// Keepalive 4 s: the limit is 6 s (see idleWindow for why not less).
	// Traffic for longer than the limit keeps the connection alive.
	c.connect("ka-2", 4, 0)
	end := time.Now().Add(8 * time.Second)
	for time.Now().Before(end) {
		c.alive(0)
		time.Sleep(200 * time.Millisecond) // pacing the device, not waiting for a result
	}
	c.alive(0)
	for _, ev := range env.Rec.Events(c.handle) {
		if ev.Kind == "timeout" || ev.Kind == "closed" {
			t.Fatalf("keepalive fired despite traffic: %v", kinds(env.Rec.Events(c.handle)))
		}
	}
}

func testIdleTimeout(t *testing.T, env *Env) {
	talker := env.dial(t)
	talker.alive(1) // one byte is enough to disarm the idle timer
	// silent was created after talker, so once it is closed for idleness
	// talker's own idle deadline has passed too.
	silent := env.dial(t)
	env.expectClosed(t, silent)
	if r := env.Rec.waitClosed(t, silent.handle); r != gateway.ReasonIdleTimeout {
		t.Errorf("reason %q, want %q", r, gateway.ReasonIdleTimeout)
	}
	// The talker outlives the idle timeout although it never authenticated.
	talker.alive(1)
	for _, ev := range env.Rec.Events(talker.handle) {
		if ev.Kind == "closed" {
			t.Fatalf("a connection that sent bytes was closed: %q", ev.Reason)
		}
	}
}

func kinds(evs []Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Kind
	}
	return out
}

// testReaping: a datagram pseudo-connection has no close of its own, so one
// that stops sending is reaped after idle_timeout, while one that keeps
// sending stays.
func testReaping(t *testing.T, env *Env) {
	busy := env.dial(t)
	busy.connect("busy", 0, 0)
	quiet := env.dial(t)
	quiet.connect("quiet", 0, 0)
	done := make(chan string, 1)
	go func() { done <- env.Rec.waitClosedNoFail(quiet.handle) }()
	// Keep busy talking until quiet is reaped.
	for {
		select {
		case r := <-done:
			if r != gateway.ReasonIdleTimeout {
				t.Fatalf("quiet reaped with %q, want %q", r, gateway.ReasonIdleTimeout)
			}
			busy.alive(0)
			for _, ev := range env.Rec.Events(busy.handle) {
				if ev.Kind == "closed" {
					t.Fatalf("a peer that kept sending was reaped: %q", ev.Reason)
				}
			}
			return
		case <-time.After(200 * time.Millisecond): // pacing the device
			busy.alive(0)
		}
	}
}

// testHealthCheck: the listener answers a probe on the listening socket
// without creating a connection, even for a peer that has one.
func testHealthCheck(t *testing.T, env *Env) {
	probe, err := net.Dial("udp", env.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	probe.SetDeadline(time.Now().Add(Timeout))
	buf := make([]byte, 64)
	for range 3 {
		if _, err := probe.Write([]byte(HealthRequest)); err != nil {
			t.Fatal(err)
		}
		n, err := probe.Read(buf)
		if err != nil || string(buf[:n]) != HealthReply {
			t.Fatalf("health check answered %q, %v", buf[:n], err)
		}
	}
	if _, ok := env.Rec.handleOf(probe.LocalAddr().String()); ok {
		t.Fatal("a health probe created a connection")
	}
	// Real clients are unaffected.
	c := env.dial(t)
	c.connect("after-probe", 0, 0)
}

// testNewConnAfterClose: after the gateway closes a UDP pseudo-connection,
// the same peer's next datagram opens a new one with a new handle.
func testNewConnAfterClose(t *testing.T, env *Env) {
	c := env.dial(t)
	c.connect("reborn", 0, 0)
	old := c.handle
	c.send(jp.Frame{Type: jp.Disconnect})
	env.Rec.waitClosed(t, old)
	c.connect("reborn", 0, 0)
	c.handle = env.Rec.waitNewHandle(t, c.nc.LocalAddr().String(), old)
	if c.handle == old {
		t.Fatal("handle reused")
	}
	c.alive(0)
}

// testPeersIsolated: two peers of one datagram listener (one socket on the
// gateway's side) are two connections: their own handles and state, and
// closing one leaves the other served.
func testPeersIsolated(t *testing.T, env *Env) {
	a := env.dial(t)
	b := env.dial(t)
	if a.handle == b.handle {
		t.Fatalf("two peers share handle %s", a.handle)
	}
	a.connect("iso-a", 0, 0)
	b.connect("iso-b", 0, 0)
	b.subscribe("iso/b", 0, 0)
	a.send(jp.Frame{Type: jp.Disconnect})
	env.Rec.waitClosed(t, a.handle)
	b.publish("iso/b", 0, "still here", 0)
	f := b.expect(jp.Publish, 0)
	if f.Payload != "still here" {
		t.Fatalf("b got %+v", f)
	}
	b.alive(0)
}

// testKeepaliveOtherPeer: another peer's traffic does not keep a
// pseudo-connection alive (EMQX bug #8575).
func testKeepaliveOtherPeer(t *testing.T, env *Env) {
	silent := env.dial(t)
	silent.connect("ka-silent", 1, 0)
	chatty := env.dial(t)
	chatty.connect("ka-chatty", 0, 0)
	done := make(chan string, 1)
	go func() { done <- env.Rec.waitClosedNoFail(silent.handle) }()
	for {
		select {
		case r := <-done:
			if r != gateway.ReasonKeepaliveTimeout {
				t.Fatalf("reason %q, want %q", r, gateway.ReasonKeepaliveTimeout)
			}
			return
		case <-time.After(200 * time.Millisecond): // pacing the device
			chatty.alive(0)
		}
	}
}

// testPSKIdentity: a DTLS client in PSK mode (TLS_PSK_WITH_AES_128_CCM_8,
// the suite CoAP mandates) is served, and its identity reaches the handler.
func testPSKIdentity(t *testing.T, env *Env) {
	c := env.dial(t)
	info := env.Rec.Events(c.handle)[0].Info
	if info.SockType != gateway.DTLS || info.PSKIdentity != PSKIdentity || info.PeerCert != nil {
		t.Fatalf("conninfo %+v, want DTLS with PSK identity %q", info, PSKIdentity)
	}
	c.connect("psk-client", 0, 0)
	c.subscribe("psk/t", 0, 0)
}
