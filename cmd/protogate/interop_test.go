package main

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/topic"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// The interop tests run a gateway with its NATS and MQTT listeners open and
// check, with real peers (Debian's mosquitto-clients, nats.go) and real
// devices on TCP sockets (builtin:linepubsub, and builtin:exproto-json where
// a QoS is needed), the contract README's "MQTT and NATS clients" section
// documents: topic <-> subject mapping, wildcards both ways, QoS and
// retained messages.

// interopNode is a gateway with NATS and MQTT listeners and two device
// listeners: "lines" (builtin:linepubsub) and "json" (builtin:exproto-json).
type interopNode struct {
	r        *running
	natsURL  string
	mqttHost string
	mqttPort string
	lines    string // address of the linepubsub listener
	json     string // address of the exproto-json listener
}

// startInteropNode starts a gateway named name, with its config changed by
// tweak if not nil (to add broker.cluster, say). The node's data_dir is
// its own (JetStream keeps MQTT sessions and retained messages there), but
// shares the compiled Wasm modules of the other tests.
func startInteropNode(t *testing.T, name string, tweak func(*config.Config)) *interopNode {
	t.Helper()
	dir := dataDirSharingCache(t)
	cfg, err := config.Parse([]byte(`
node: {name: ` + name + `, data_dir: ` + dir + `}
adapter: {bind: "127.0.0.1:0"}
broker:
  nats_listen: "127.0.0.1:0"
  mqtt_listen: "127.0.0.1:0"
handlers:
  lines: {wasm: {path: "builtin:linepubsub", call_timeout: 5s}}
  json: {wasm: {path: "builtin:exproto-json", call_timeout: 5s}}
listeners:
  - {name: lines, type: tcp, bind: "127.0.0.1:0", handler: lines}
  - {name: json, type: tcp, bind: "127.0.0.1:0", handler: json}
`))
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(cfg)
	}
	r := startRun(t, cfg)
	host, port, err := net.SplitHostPort(r.broker.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	return &interopNode{
		r:        r,
		natsURL:  "nats://" + r.broker.NATSAddr().String(),
		mqttHost: host,
		mqttPort: port,
		lines:    r.listeners["lines"].String(),
		json:     r.listeners["json"].String(),
	}
}

func needMosquitto(t *testing.T) {
	t.Helper()
	for _, c := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs mosquitto-clients)", c)
		}
	}
}

func (n *interopNode) natsConn(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.natsURL, nats.Timeout(wait))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsSub subscribes nc to subject and waits until the server has it.
func natsSub(t *testing.T, nc *nats.Conn, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.FlushTimeout(wait); err != nil {
		t.Fatal(err)
	}
	return ch
}

func natsNext(t *testing.T, ch chan *nats.Msg, what string) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(wait):
		t.Fatalf("%s: no NATS message", what)
	}
	return nil
}

// mqttMsg is one message mosquitto_sub printed.
type mqttMsg struct {
	qos    int
	retain bool
	topic  string
	data   string
}

// mqttSub is a running mosquitto_sub.
type mqttSub struct {
	t    *testing.T
	msgs chan mqttMsg
}

// mqttSub runs mosquitto_sub as client id with QoS qos on filters, until
// it has count messages, and returns once the server has its subscriptions.
func (n *interopNode) mqttSub(t *testing.T, id string, qos, count int, filters ...string) *mqttSub {
	t.Helper()
	needMosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	args := []string{"-V", "mqttv311", "-h", n.mqttHost, "-p", n.mqttPort, "-i", id, "-q", strconv.Itoa(qos),
		"-C", strconv.Itoa(count), "-W", strconv.Itoa(int(wait / time.Second)),
		"-F", "MSG %q %r %t %p"}
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	cmd := exec.CommandContext(ctx, "mosquitto_sub", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	s := &mqttSub{t: t, msgs: make(chan mqttMsg, 64)}
	go func() {
		defer close(s.msgs)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			rest, ok := strings.CutPrefix(sc.Text(), "MSG ")
			if !ok {
				continue
			}
			f := strings.SplitN(rest, " ", 4)
			if len(f) < 3 {
				continue
			}
			m := mqttMsg{topic: f[2], retain: f[1] == "1"}
			m.qos, _ = strconv.Atoi(f[0])
			if len(f) == 4 {
				m.data = f[3]
			}
			s.msgs <- m
		}
	}()
	// mosquitto_sub's output is buffered, so its "received SUBACK" comes
	// too late: ask the server for the client's subscriptions instead.
	var want []string
	for _, f := range filters {
		pf, err := topic.ParseFilter(f)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, pf.Subjects...)
	}
	deadline := time.Now().Add(wait)
	for !n.mqttSubscribed(t, id, want) {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub %s %v: not subscribed", id, filters)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

func (s *mqttSub) next(what string) mqttMsg {
	s.t.Helper()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			s.t.Fatalf("%s: mosquitto_sub exited", what)
		}
		return m
	case <-time.After(wait):
		s.t.Fatalf("%s: nothing from mosquitto_sub", what)
	}
	return mqttMsg{}
}

// mqttSubscribed reports whether MQTT client id holds subscriptions on
// all the subjects. It looks only at connections that hold a subscription
// on the first subject: Connz over all of them reads the client ID of
// every MQTT connection, which nats-server writes without its lock while
// it parses a CONNECT (a data race when mosquitto_sub is connecting). A
// client with a subscription is past its CONNECT.
func (n *interopNode) mqttSubscribed(t *testing.T, id string, subjects []string) bool {
	t.Helper()
	srv := n.r.broker.Server()
	sz, err := srv.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cids := map[uint64]bool{}
	for _, d := range sz.Subs {
		if d.Subject == subjects[0] {
			cids[d.Cid] = true
		}
	}
	for cid := range cids {
		cz, err := srv.Connz(&server.ConnzOptions{CID: cid, MQTTClient: id, Subscriptions: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cz.Conns {
			if !slices.ContainsFunc(subjects, func(s string) bool { return !slices.Contains(c.Subs, s) }) {
				return true
			}
		}
	}
	return false
}

// waitSubs waits until node n's server has interest in each of subjects
// (the exact subscription subjects): from one of its own clients, or from
// a route, for subscriptions made on another node of its cluster.
func (n *interopNode) waitSubs(t *testing.T, subjects ...string) {
	t.Helper()
	srv := n.r.broker.Server()
	deadline := time.Now().Add(wait)
	for {
		have := map[string]bool{}
		sz, err := srv.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range sz.Subs {
			have[d.Subject] = true
		}
		rz, err := srv.Routez(&server.RoutezOptions{Subscriptions: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rz.Routes {
			for _, sub := range r.Subs {
				if f := strings.Fields(sub); len(f) > 0 {
					have[f[0]] = true // "subject [queue]"
				}
			}
		}
		missing := slices.DeleteFunc(slices.Clone(subjects), func(s string) bool { return have[s] })
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node has no subscription on %q", missing)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mqttPub runs mosquitto_pub to completion (for QoS 1 that is after the
// PUBACK).
func (n *interopNode) mqttPub(t *testing.T, qos int, retain bool, topic, payload string) {
	t.Helper()
	needMosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	args := []string{"-V", "mqttv311", "-h", n.mqttHost, "-p", n.mqttPort, "-q", strconv.Itoa(qos), "-t", topic}
	if payload == "" {
		args = append(args, "-n")
	} else {
		args = append(args, "-m", payload)
	}
	if retain {
		args = append(args, "-r")
	}
	if out, err := exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v: %s", args, err, out)
	}
}

// msgs reads a linepubsub device's deliveries until it has n of them.
func (c *lineClient) msgs(n int) []string {
	c.t.Helper()
	var got []string
	for len(got) < n {
		l := c.line()
		if m, ok := strings.CutPrefix(l, "MSG "); ok {
			got = append(got, m)
		} else {
			c.t.Fatalf("expected a MSG line, got %q (after %q)", l, got)
		}
	}
	return got
}

// quiet checks that nothing more was delivered to c than it read: what
// arrives before the answer to a PING is a surplus.
func (c *lineClient) quiet() {
	c.t.Helper()
	if _, err := c.nc.Write([]byte("PING\n")); err != nil {
		c.t.Fatal(err)
	}
	for {
		l := c.line()
		if l == "PONG" {
			return
		}
		c.t.Errorf("unexpected delivery %q", l)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// mappings are device (= MQTT) topics and the NATS subjects they map to,
// per nats-server's rules (nats-server/v2 server/mqtt.go, mqttToNATSSubjectConversion; README).
var mappings = []struct{ topic, subject string }{
	{"sensors/d1/temp", "sensors.d1.temp"},
	{"/lead/slash", "/.lead.slash"},
	{"trail/slash/", "trail.slash./"},
	{"empty//level", "empty./.level"},
	{"fw/v1.2/notes", "fw.v1//2.notes"},
	{"a.b", "a//b"},
}

func mappingSubjects() []string {
	var s []string
	for _, m := range mappings {
		s = append(s, m.subject)
	}
	return s
}

func TestInterop(t *testing.T) {
	needMosquitto(t)
	n := startInteropNode(t, "interop", nil)
	runInterop(t, n, n)
}

// TestInteropCluster runs the same checks with the devices on one node of
// a 3-node cluster and the MQTT and NATS clients on another.
func TestInteropCluster(t *testing.T) {
	needMosquitto(t)
	start := time.Now()
	listens := freeTCPPorts(t, 3)
	var routes []string
	for _, l := range listens {
		routes = append(routes, "nats-route://"+l)
	}
	nodes := make([]*interopNode, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			nodes[i] = startInteropNode(t, "interop-"+strconv.Itoa(i), func(c *config.Config) {
				c.Broker.Cluster = &config.BrokerCluster{Name: "interop", Listen: listens[i], Routes: routes}
			})
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// MQTT needs JetStream's meta leader, and devices' logins the
	// client-id registry (kv with 3 nodes).
	deadline := time.Now().Add(startWait)
	for _, n := range nodes {
		for {
			st := n.r.broker.Cluster()
			reg := registryStatus(n.r.registryBackend, "reject", n.r.registry, n.r.server)()
			if len(st.Peers) == 2 && st.JetStreamLeader != "" && reg.Available {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ready: %+v, registry %+v", st, reg)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("3 nodes ready in %v", time.Since(start))
	runInterop(t, nodes[0], nodes[1])
	t.Logf("checks done at %v", time.Since(start))
}

// runInterop checks the contract between devices of node dev and MQTT and
// NATS clients of node peer (the same node, or another of its cluster).
// Before a side publishes, it waits until the node it publishes to has
// the other side's subscriptions (waitSubs), which across a cluster means
// until routes have carried them.
func runInterop(t *testing.T, dev, peer *interopNode) {
	nc := peer.natsConn(t)
	// 1. A device's publishes reach mosquitto_sub and NATS subscribers,
	// with the topic <-> subject mapping.
	t.Run("device to MQTT and NATS", func(t *testing.T) {
		var filters []string
		subs := map[string]chan *nats.Msg{}
		for _, m := range mappings {
			filters = append(filters, m.topic)
			subs[m.topic] = natsSub(t, nc, m.subject)
		}
		ms := peer.mqttSub(t, "map-sub", 0, len(mappings), filters...)
		dev.waitSubs(t, mappingSubjects()...)
		d := dialLines(t, dev.lines)
		for i, m := range mappings {
			if got := d.cmd("PUB " + m.topic + " up " + strconv.Itoa(i)); got != "OK" {
				t.Fatalf("PUB %s: %q", m.topic, got)
			}
		}
		for i, m := range mappings {
			want := "up " + strconv.Itoa(i)
			got := ms.next(m.topic)
			if got.topic != m.topic || got.data != want {
				t.Errorf("mosquitto_sub got %q %q, want %q %q", got.topic, got.data, m.topic, want)
			}
			nm := natsNext(t, subs[m.topic], m.topic)
			if nm.Subject != m.subject || string(nm.Data) != want {
				t.Errorf("NATS got %q %q, want %q %q", nm.Subject, nm.Data, m.subject, want)
			}
			if nm.Header.Get(broker.HeaderFrom) == "" || nm.Header.Get(broker.HeaderID) == "" {
				t.Errorf("NATS message without the gateway's headers: %v", nm.Header)
			}
		}
	})

	// 2. mosquitto_pub and NATS publishes reach a subscribed device, with
	// the topic it subscribed to.
	t.Run("MQTT and NATS to device", func(t *testing.T) {
		d := dialLines(t, dev.lines)
		for _, m := range mappings {
			if got := d.cmd("SUB " + m.topic); got != "OK" {
				t.Fatalf("SUB %s: %q", m.topic, got)
			}
		}
		peer.waitSubs(t, mappingSubjects()...)
		for _, m := range mappings {
			peer.mqttPub(t, 0, false, m.topic, "from mqtt")
			if got := d.msgs(1)[0]; got != m.topic+" from mqtt" {
				t.Errorf("device got %q from MQTT, want topic %q", got, m.topic)
			}
			if err := nc.Publish(m.subject, []byte("from nats")); err != nil {
				t.Fatal(err)
			}
			if got := d.msgs(1)[0]; got != m.topic+" from nats" {
				t.Errorf("device got %q from NATS subject %q, want topic %q", got, m.subject, m.topic)
			}
		}
		d.quiet()
	})

	// 3. Wildcards both ways.
	t.Run("device wildcards", func(t *testing.T) {
		plus, hash := dialLines(t, dev.lines), dialLines(t, dev.lines)
		if got := plus.cmd("SUB w/+/c"); got != "OK" {
			t.Fatal(got)
		}
		if got := hash.cmd("SUB w/#"); got != "OK" {
			t.Fatal(got)
		}
		peer.waitSubs(t, "w.*.c", "w.>", "w")
		peer.mqttPub(t, 0, false, "w/b/d", "m1") // w/# only
		peer.mqttPub(t, 0, false, "w", "m2")     // w/# only: # includes the parent
		peer.mqttPub(t, 0, false, "w/b/c", "m3") // both
		for _, p := range []struct{ subject, data string }{
			{"w.x.y.z", "n1"}, // w/# only
			{"w", "n2"},       // w/# only
			{"w.x.c", "n3"},   // both
			{"wx.x.c", "n4"},  // neither
		} {
			if err := nc.Publish(p.subject, []byte(p.data)); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := plus.msgs(2), []string{"w/b/c m3", "w/x/c n3"}; !sameSet(got, want) {
			t.Errorf("w/+/c got %q, want %q", got, want)
		}
		if got, want := hash.msgs(6), []string{"w/b/d m1", "w m2", "w/b/c m3", "w/x/y/z n1", "w n2", "w/x/c n3"}; !sameSet(got, want) {
			t.Errorf("w/# got %q, want %q", got, want)
		}
		plus.quiet()
		hash.quiet()
	})

	t.Run("MQTT and NATS wildcards", func(t *testing.T) {
		// One publisher (the gateway's connection) to one subscriber keeps
		// its order, so "exactly these, in this order" is checkable.
		star := natsSub(t, nc, "v.*.c")
		fwc := natsSub(t, nc, "v.>")
		mplus := peer.mqttSub(t, "wc-plus", 0, 1, "v/+/c")
		mhash := peer.mqttSub(t, "wc-hash", 0, 3, "v/#")
		dev.waitSubs(t, "v.*.c", "v.>", "v")
		d := dialLines(t, dev.lines)
		for _, p := range []string{"v/b/d m1", "v m2", "v/b/c m3"} {
			if got := d.cmd("PUB " + p); got != "OK" {
				t.Fatalf("PUB %s: %q", p, got)
			}
		}
		if got := mplus.next("v/+/c"); got.topic != "v/b/c" || got.data != "m3" {
			t.Errorf("v/+/c got %+v, want v/b/c m3", got)
		}
		for _, want := range []string{"v/b/d m1", "v m2", "v/b/c m3"} {
			if got := mhash.next("v/#"); got.topic+" "+got.data != want {
				t.Errorf("v/# got %+v, want %q", got, want)
			}
		}
		if got := natsNext(t, star, "v.*.c"); got.Subject != "v.b.c" {
			t.Errorf("v.*.c got %q", got.Subject)
		}
		// NATS ">" needs at least one more token: "v" is not for it.
		for _, want := range []string{"v.b.d", "v.b.c"} {
			if got := natsNext(t, fwc, "v.>"); got.Subject != want {
				t.Errorf("v.> got %q, want %q", got.Subject, want)
			}
		}
	})

	// 4. QoS 1, both ways.
	t.Run("QoS 1 from MQTT to device", func(t *testing.T) {
		d := dialJSON(t, "tcp", dev.json)
		d.connect("qos-dn")
		if f := d.call(jp.Frame{Type: jp.Subscribe, Topic: "q/dn", QoS: 1}); f.Type != jp.Suback || f.Code != 0 {
			t.Fatalf("subscribe: %+v", f)
		}
		peer.waitSubs(t, "q.dn")
		// The device sees each message's QoS as the MQTT client published
		// it (nats-server's Nmqtt-Pub header), not downgraded to its
		// subscription's: ExProto does not downgrade either.
		// (mosquitto_pub returns after the PUBACK or PUBCOMP, which the
		// server sends after it delivered the message: the order holds.
		// QoS 0 goes last, having no such answer.)
		peer.mqttPub(t, 1, false, "q/dn", "one")
		peer.mqttPub(t, 2, false, "q/dn", "two")
		peer.mqttPub(t, 0, false, "q/dn", "zero")
		for _, want := range []jp.Frame{
			{Type: jp.Publish, Topic: "q/dn", QoS: 1, Payload: "one"},
			{Type: jp.Publish, Topic: "q/dn", QoS: 2, Payload: "two"},
			{Type: jp.Publish, Topic: "q/dn", QoS: 0, Payload: "zero"},
		} {
			if f := d.next(); f != want {
				t.Errorf("device got %+v, want %+v", f, want)
			}
		}
		// A NATS publish is QoS 0 unless it says otherwise in the
		// gateway's header.
		if err := nc.Publish("q.dn", []byte("plain")); err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: "q.dn", Data: []byte("marked"), Header: nats.Header{broker.HeaderQoS: []string{"1"}}}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []jp.Frame{
			{Type: jp.Publish, Topic: "q/dn", QoS: 0, Payload: "plain"},
			{Type: jp.Publish, Topic: "q/dn", QoS: 1, Payload: "marked"},
		} {
			if f := d.next(); f != want {
				t.Errorf("device got %+v, want %+v", f, want)
			}
		}
	})

	t.Run("QoS 1 from device to MQTT", func(t *testing.T) {
		ms := peer.mqttSub(t, "qos-up", 1, 1, "q/up")
		ns := natsSub(t, nc, "q.up")
		dev.waitSubs(t, "q.up")
		d := dialJSON(t, "tcp", dev.json)
		d.connect("qos-up-dev")
		if f := d.call(jp.Frame{Type: jp.Publish, Topic: "q/up", QoS: 1, Payload: "one"}); f.Type != jp.Puback || f.Code != 0 {
			t.Fatalf("publish: %+v", f)
		}
		// It arrives, as QoS 0 (README: the gateway's QoS travels in
		// Protogate-Qos; nats-server delivers such messages to MQTT
		// subscribers as QoS 0, as it does every NATS publish).
		if got := ms.next("q/up"); got.topic != "q/up" || got.data != "one" || got.qos != 0 {
			t.Errorf("mosquitto_sub -q 1 got %+v, want q/up one at QoS 0", got)
		}
		nm := natsNext(t, ns, "q.up")
		if q := nm.Header.Get(broker.HeaderQoS); q != "1" {
			t.Errorf("NATS header %s = %q, want 1", broker.HeaderQoS, q)
		}
		if q := nm.Header.Get("Nmqtt-Pub"); q != "" {
			t.Errorf("NATS header Nmqtt-Pub = %q: a QoS 1 MQTT subscriber would drop it", q)
		}
	})

	// 5. Retained messages of MQTT clients reach devices that subscribe
	// later (not NATS subscribers: core NATS has no retained messages).
	t.Run("retained", func(t *testing.T) {
		// At QoS 1, mosquitto_pub returns after the PUBACK, which
		// nats-server sends once it has stored the retained message.
		peer.mqttPub(t, 1, true, "ret/a", "one")
		peer.mqttPub(t, 1, true, "ret/b/c", "two")
		peer.mqttPub(t, 1, true, "ret/b/c", "three") // replaces two

		lit := dialLines(t, dev.lines)
		if got := lit.cmd("SUB ret/a"); got != "OK" {
			t.Fatal(got)
		}
		if got := lit.msgs(1); got[0] != "ret/a one" {
			t.Errorf("ret/a got %q", got)
		}
		hash := dialLines(t, dev.lines)
		if got := hash.cmd("SUB ret/#"); got != "OK" {
			t.Fatal(got)
		}
		if got, want := hash.msgs(2), []string{"ret/a one", "ret/b/c three"}; !sameSet(got, want) {
			t.Errorf("ret/# got %q, want %q", got, want)
		}
		plus := dialLines(t, dev.lines)
		if got := plus.cmd("SUB ret/+/c"); got != "OK" {
			t.Fatal(got)
		}
		if got := plus.msgs(1); got[0] != "ret/b/c three" {
			t.Errorf("ret/+/c got %q", got)
		}
		// A retained message keeps its QoS.
		jd := dialJSON(t, "tcp", dev.json)
		jd.connect("ret-json")
		if f := jd.call(jp.Frame{Type: jp.Subscribe, Topic: "ret/a", QoS: 1}); f.Type != jp.Suback || f.Code != 0 {
			t.Fatalf("subscribe: %+v", f)
		}
		if f, want := jd.next(), (jp.Frame{Type: jp.Publish, Topic: "ret/a", QoS: 1, Payload: "one"}); f != want {
			t.Errorf("json device got %+v, want %+v", f, want)
		}

		// An empty retained publish clears it.
		peer.waitSubs(t, "ret.a", "ret.>")
		peer.mqttPub(t, 1, true, "ret/a", "")
		// The empty publish itself reaches the subscribers, with no payload.
		for _, d := range []*lineClient{lit, hash} {
			if got := d.msgs(1); got[0] != "ret/a " {
				t.Errorf("clearing ret/a delivered %q", got)
			}
		}
		again := dialLines(t, dev.lines)
		if got := again.cmd("SUB ret/#"); got != "OK" {
			t.Fatal(got)
		}
		if got := again.msgs(1); got[0] != "ret/b/c three" {
			t.Errorf("ret/# after clearing ret/a got %q", got)
		}
		again.quiet()
		lit.quiet()
	})
}

// next reads the next frame the device is sent.
func (d *jsonDevice) next() jp.Frame {
	d.t.Helper()
	d.nc.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	for {
		g, ok, err := d.dec.Next()
		if err != nil {
			d.t.Fatal(err)
		}
		if ok {
			return g
		}
		n, err := d.nc.Read(buf)
		if err != nil {
			d.t.Fatalf("read: %v", err)
		}
		d.dec.Feed(buf[:n])
	}
}
