package broker_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
)

// natsConnect connects a plain NATS client to the broker's client port,
// with opts (credentials, TLS) if any.
func natsConnect(t *testing.T, b *broker.Broker, opts ...nats.Option) *nats.Conn {
	t.Helper()
	addr := b.NATSAddr()
	if addr == nil {
		t.Fatal("NATSAddr() = nil with NATSListen set")
	}
	nc, err := nats.Connect("nats://"+addr.String(), append([]nats.Option{nats.Timeout(waitTimeout), nats.MaxReconnects(0)}, opts...)...)
	if err != nil {
		t.Fatalf("nats.Connect(%s): %v", addr, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsSubscribe subscribes a plain NATS client and makes sure the server has
// the subscription before returning.
func natsSubscribe(t *testing.T, nc *nats.Conn, subject string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("nats subscribe %q: %v", subject, err)
	}
	if err := nc.FlushTimeout(waitTimeout); err != nil {
		t.Fatalf("nats flush: %v", err)
	}
	return sub
}

func natsNext(t *testing.T, sub *nats.Subscription) *nats.Msg {
	t.Helper()
	m, err := sub.NextMsg(waitTimeout)
	if err != nil {
		t.Fatalf("nats subscriber %q: %v", sub.Subject, err)
	}
	return m
}

func natsPublish(t *testing.T, nc *nats.Conn, subject, payload string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(payload)); err != nil {
		t.Fatalf("nats publish %q: %v", subject, err)
	}
}

func TestNATSAddr(t *testing.T) {
	b := startBroker(t, broker.Config{})
	if a := b.NATSAddr(); a != nil {
		t.Errorf("in-process broker: NATSAddr() = %v, want nil", a)
	}
	b = startBroker(t, broker.Config{NATSListen: "127.0.0.1:0"})
	a, ok := b.NATSAddr().(*net.TCPAddr)
	if !ok || a.Port <= 0 || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("NATSAddr() = %v, want 127.0.0.1 and a real port", b.NATSAddr())
	}
}

func TestNATSReceivesGatewayPublish(t *testing.T) {
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0", Node: "gw-1"})
	nc := natsConnect(t, b)
	sub := natsSubscribe(t, nc, "a.b")

	in := &gateway.Message{From: "dev-9", QoS: 1, Topic: "a/b", Payload: []byte("hello")}
	publish(t, b, in)
	m := natsNext(t, sub)
	if m.Subject != "a.b" || string(m.Data) != "hello" {
		t.Fatalf("NATS got %q %q, want a.b hello", m.Subject, m.Data)
	}
	for h, want := range map[string]string{
		broker.HeaderFrom: "dev-9",
		broker.HeaderQoS:  "1",
		broker.HeaderID:   in.ID,
		broker.HeaderTime: fmt.Sprint(in.Timestamp),
	} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	// Never the MQTT QoS marker: native MQTT QoS>=1 subscribers would
	// drop the message waiting for a JetStream copy (reference §2.4).
	if v := m.Header.Values("Nmqtt-Pub"); len(v) != 0 {
		t.Errorf("gateway publish carries Nmqtt-Pub %q", v)
	}
	if m.Reply != "" {
		t.Errorf("reply subject %q, want none", m.Reply)
	}

	// QoS 0 and an empty From leave their headers out.
	publish(t, b, &gateway.Message{Topic: "a/b", Payload: []byte("q0")})
	m = natsNext(t, sub)
	if v := m.Header.Values(broker.HeaderQoS); len(v) != 0 {
		t.Errorf("QoS 0 publish has %s %q", broker.HeaderQoS, v)
	}
	if v := m.Header.Values(broker.HeaderFrom); len(v) != 0 {
		t.Errorf("publish without From has %s %q", broker.HeaderFrom, v)
	}
}

func TestNATSPublishReachesGateway(t *testing.T) {
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0", Node: "gw-2"})
	s := newChanSub(t, "s")
	subscribe(t, b, "sensors/+/temp", s)
	nc := natsConnect(t, b)

	before := time.Now().UnixMilli()
	natsPublish(t, nc, "sensors.d1.hum", "no")
	natsPublish(t, nc, "sensors.d1.temp", "21.5")
	natsPublish(t, nc, "sensors.d2.temp", "end")
	got := s.until(t, "end")
	after := time.Now().UnixMilli()
	if len(got) != 1 {
		t.Fatalf("sensors/+/temp got %q, want one message", topics(got))
	}
	m := got[0]
	if m.Topic != "sensors/d1/temp" || string(m.Payload) != "21.5" {
		t.Errorf("got %s=%s, want sensors/d1/temp=21.5", m.Topic, m.Payload)
	}
	// A plain NATS message has none of the protogate headers: the broker
	// makes up an ID and a timestamp.
	if !idRE.MatchString(m.ID) || m.Timestamp < before || m.Timestamp > after || m.QoS != 0 || m.From != "" || m.Node != "gw-2" {
		t.Errorf("message from NATS: %+v", m)
	}

	// Headers set by another protogate node are honoured.
	h := nats.Header{}
	h.Set(broker.HeaderFrom, "remote-dev")
	h.Set(broker.HeaderQoS, "2")
	h.Set(broker.HeaderID, "FEDCBA9876543210FEDCBA9876543210")
	h.Set(broker.HeaderTime, "1700000000000")
	if err := nc.PublishMsg(&nats.Msg{Subject: "sensors.d3.temp", Header: h, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	m = s.next(t)
	if m.From != "remote-dev" || m.QoS != 2 || m.ID != "FEDCBA9876543210FEDCBA9876543210" || m.Timestamp != 1700000000000 {
		t.Errorf("message with protogate headers: %+v", m)
	}
}

// mappingVectors are the topic/subject pairs of reference §2.3 (nats-server's
// own conversion, verified there against mosquitto).
var mappingVectors = []struct{ subject, topic string }{
	{"foo.bar", "foo/bar"},
	{"/.foo.bar", "/foo/bar"},
	{"foo.bar./", "foo/bar/"},
	{"foo./.bar", "foo//bar"},
	{"foo//bar", "foo.bar"},
	{"sensors.dev1.temp", "sensors/dev1/temp"},
	{"/./", "/"},
	{"/././", "//"},
	{"/././.foo././", "///foo//"},
	{"//", "."},
	{"////", ".."},
	{"//.foo.//", "./foo/."},
	{"foo//bar.baz", "foo.bar/baz"},
	{"spBv1//0.group.NBIRTH.edge1", "spBv1.0/group/NBIRTH/edge1"},
}

// TestNATSMappingVectors checks every vector end to end in both directions:
// a gateway publish on the topic reaches a NATS ">" subscriber on the subject,
// and a NATS publish on the subject reaches a gateway "#" subscriber as the
// topic.
func TestNATSMappingVectors(t *testing.T) {
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0"})
	nc := natsConnect(t, b)
	all := natsSubscribe(t, nc, ">")
	s := newChanSub(t, "#")
	subscribe(t, b, "#", s)

	for _, v := range mappingVectors {
		pub(t, b, v.topic, "from gateway")
		if m := natsNext(t, all); m.Subject != v.subject {
			t.Errorf("gateway publish on %q: NATS subject %q, want %q", v.topic, m.Subject, v.subject)
		}
		if m := s.next(t); m.Topic != v.topic {
			t.Errorf("gateway publish on %q came back as %q", v.topic, m.Topic)
		}

		natsPublish(t, nc, v.subject, "from nats")
		if m := natsNext(t, all); m.Subject != v.subject {
			t.Fatalf("NATS echo: %q, want %q", m.Subject, v.subject)
		}
		if m := s.next(t); m.Topic != v.topic || string(m.Payload) != "from nats" {
			t.Errorf("NATS publish on %q: gateway topic %q (%s), want %q", v.subject, m.Topic, m.Payload, v.topic)
		}
	}
}

// TestNATSFilterVectors checks the filter conversions of reference §2.3:
// the subjects the server holds, and what a NATS publisher reaches.
func TestNATSFilterVectors(t *testing.T) {
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0"})
	nc := natsConnect(t, b)
	for _, v := range []struct {
		filter   string
		subjects []string          // held by the server; the last one gets the sentinel
		match    map[string]string // NATS subject -> topic delivered
		noMatch  []string
	}{
		{"+", []string{"*"}, map[string]string{"x": "x", "//": "."}, []string{"x.y", "/./"}},
		{"/+", []string{"/.*"}, map[string]string{"/.x": "/x", "/./": "/"}, []string{"x", "x.y", "/.x.y"}},
		{"+/", []string{"*./"}, map[string]string{"x./": "x/", "/./": "/"}, []string{"x", "x.y", "/.x"}},
		{"foo//+//bar", []string{"foo./.*./.bar"}, map[string]string{"foo./.x./.bar": "foo//x//bar"}, []string{"foo.x.bar", "foo./.x.bar"}},
		{"/#", []string{"/.>"}, map[string]string{"/.a": "/a", "/.a.b": "/a/b"}, []string{"a.b", "a"}},
		{"#", []string{">"}, map[string]string{"a": "a", "a.b//c": "a/b.c"}, nil},
		{"foo/bar.baz/#", []string{"foo.bar//baz.>", "foo.bar//baz"}, map[string]string{"foo.bar//baz.q": "foo/bar.baz/q", "foo.bar//baz": "foo/bar.baz"}, nil},
		{"$share/grp/a.b/+", []string{"a//b.*"}, map[string]string{"a//b.c": "a.b/c"}, []string{"a.b.c"}},
	} {
		s := newChanSub(t, v.filter)
		sub := subscribe(t, b, v.filter, s)
		queue := ""
		if v.filter[0] == '$' {
			queue = "grp"
		}
		for _, subj := range v.subjects {
			if n := natsSubs(t, b, subj, queue); n != 1 {
				t.Errorf("filter %q: server holds %d subscriptions on %q, want 1", v.filter, n, subj)
			}
		}
		// Non-matching subjects first. The filters with non-matching
		// cases have one NATS subscription, so the messages arrive in
		// publish order and the sentinel proves the others were not
		// delivered.
		for _, subj := range v.noMatch {
			natsPublish(t, nc, subj, "no")
		}
		want := map[string]bool{}
		for subj, tp := range v.match {
			natsPublish(t, nc, subj, "yes")
			want[tp] = true
		}
		var got []*gateway.Message
		for range v.match {
			got = append(got, s.next(t))
		}
		if len(v.noMatch) > 0 {
			var sentinel string
			for subj := range v.match {
				sentinel = subj
			}
			natsPublish(t, nc, sentinel, "end")
			got = append(got, s.until(t, "end")...)
		}
		for _, m := range got {
			if !want[m.Topic] || string(m.Payload) != "yes" {
				t.Errorf("filter %q: got %s=%s, want each of %v once", v.filter, m.Topic, m.Payload, want)
			}
			delete(want, m.Topic)
		}
		if err := sub.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		for _, subj := range v.subjects {
			waitNATSSubs(t, b, subj, queue, 0)
		}
	}
}

// TestDollarSubjectsNotDelivered checks MQTT-4.7.2-1 for messages from plain
// NATS clients: subjects starting with "$" never reach wildcard subscribers.
// The client is granted the reserved subjects, which are denied by default.
func TestDollarSubjectsNotDelivered(t *testing.T) {
	all := []string{">", "$SYS.>", "$JS.>", "$MQTT.>", "$KV.>", "$PG.>"}
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0", Users: []broker.User{{
		Name: "ops", Password: "secret",
		Permissions: broker.Permissions{Publish: broker.Rules{Allow: all}, Subscribe: broker.Rules{Allow: all}},
	}}})
	hash, plus, plusBar := newChanSub(t, "#"), newChanSub(t, "+"), newChanSub(t, "+/bar")
	subscribe(t, b, "#", hash)
	subscribe(t, b, "+", plus)
	subscribe(t, b, "+/bar", plusBar)
	nc := natsConnect(t, b, nats.UserInfo("ops", "secret"))
	// Positive control: the server does route these subjects to ">".
	control := natsSubscribe(t, nc, ">")

	dollar := []string{"$foo", "$foo.bar", "$SYS.bar", "$JS.API.INFO", "$MQTT.msgs.x", "$KV.b.bar", "$share.g.bar"}
	for _, subj := range dollar {
		natsPublish(t, nc, subj, "internal")
	}
	natsPublish(t, nc, "end", "end")
	natsPublish(t, nc, "z.bar", "end")
	for _, subj := range append(dollar, "end", "z.bar") {
		if m := natsNext(t, control); m.Subject != subj {
			t.Fatalf("NATS > subscriber got %q, want %q", m.Subject, subj)
		}
	}

	// "#" is one NATS subscription (">") and gets both sentinels.
	if got := hash.until(t, "end"); len(got) != 0 {
		t.Errorf("# subscriber got %q", topics(got))
	}
	if got := hash.until(t, "end"); len(got) != 0 {
		t.Errorf("# subscriber got %q", topics(got))
	}
	if got := plus.until(t, "end"); len(got) != 0 {
		t.Errorf("+ subscriber got %q", topics(got))
	}
	if got := plusBar.until(t, "end"); len(got) != 0 {
		t.Errorf("+/bar subscriber got %q", topics(got))
	}
}

// TestNATSUnmappableSubjectsNotDelivered: a plain NATS client can publish on
// subjects that no MQTT topic maps to. TopicOf turns them into topics that
// are not valid MQTT topic names ("a.+" -> "a/+") or that name a different
// subject ("a/b.c" -> "ab/c", "x./y" -> "x/y"), and package topic leaves it
// to "callers delivering it to devices" to check them. Such messages must not
// reach subscribers.
func TestNATSUnmappableSubjectsNotDelivered(t *testing.T) {
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0"})
	s := newChanSub(t, "#")
	subscribe(t, b, "#", s)
	nc := natsConnect(t, b)
	for _, subj := range []string{"a.+", "a.#", "+", "a/b.c", "x./y", "a.*", "a.>"} {
		natsPublish(t, nc, subj, "bad")
	}
	natsPublish(t, nc, "end", "end")
	if got := s.until(t, "end"); len(got) != 0 {
		t.Fatalf("# subscriber got %q from unmappable NATS subjects", topics(got))
	}
}
