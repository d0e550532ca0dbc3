package broker_test

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
)

// freePorts returns n TCP ports that were free a moment ago on 127.0.0.1.
// Routes must be known before the nodes start, so port 0 cannot do.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startCluster starts n clustered brokers named node-a, node-b, ... in
// one process, each listing every node's route, itself included.
func startCluster(t *testing.T, n int, edit func(i int, c *broker.Config)) []*broker.Broker {
	t.Helper()
	ports := freePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var bs []*broker.Broker
	for i := range n {
		cfg := broker.Config{
			Node: fmt.Sprintf("node-%c", 'a'+i),
			Cluster: &broker.ClusterConfig{
				Name:   "test",
				Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
				Routes: routes,
			},
		}
		if edit != nil {
			edit(i, &cfg)
		}
		bs = append(bs, startBroker(t, cfg))
	}
	return bs
}

// waitPeers polls until b has want connected peers.
func waitPeers(t *testing.T, b *broker.Broker, want int) broker.ClusterState {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st := b.Cluster()
		if len(st.Peers) == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: peers %v, want %d within %v (state %+v)", st.Node, st.Peers, want, waitTimeout, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitJetStreamLeader polls until every node names the same JetStream
// meta leader.
func waitJetStreamLeader(t *testing.T, bs []*broker.Broker) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var ls []string
		for _, b := range bs {
			ls = append(ls, b.Cluster().JetStreamLeader)
		}
		if ls[0] != "" && len(slices.Compact(slices.Clone(ls))) == 1 {
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no JetStream meta leader all nodes agree on within %v: %q", waitTimeout, ls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitInterest polls until b's server knows of at least want
// subscriptions (local or from routes, queue groups included) matching
// the literal subject.
func waitInterest(t *testing.T, b *broker.Broker, subject string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := b.Server().GlobalAccount().Interest(subject)
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server sees %d subscriptions matching %q, want %d", n, subject, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCluster(t *testing.T) {
	bs := startCluster(t, 3, nil)
	a, b, c := bs[0], bs[1], bs[2]
	for _, n := range bs {
		st := waitPeers(t, n, 2)
		if st.Name != "test" || st.Expected != 3 || len(st.Routes) != 2 || len(st.Unreachable) != 0 {
			t.Errorf("node %s: state %+v, want cluster test, 3 expected, 2 routes (self left out), none unreachable", st.Node, st)
		}
		if n.NodeCount() != 3 {
			t.Errorf("node %s: NodeCount %d, want 3", st.Node, n.NodeCount())
		}
	}
	if got := a.Cluster().Peers; !slices.Equal(got, []string{"node-b", "node-c"}) {
		t.Errorf("node-a peers %v", got)
	}
	// JetStream is clustered: the nodes elect one meta leader.
	waitJetStreamLeader(t, bs)

	t.Run("PublishReachesOtherNode", func(t *testing.T) {
		s := newChanSub(t, "on-c")
		subscribe(t, c, "cl/+/temp", s)
		waitInterest(t, a, "cl.x.temp", 1)
		pub(t, a, "cl/x/temp", "21")
		m := s.next(t)
		if m.Topic != "cl/x/temp" || string(m.Payload) != "21" || m.Node != "node-c" || m.From != "test" {
			t.Errorf("got %+v", m)
		}
	})

	t.Run("ShareGroupOnceClusterWide", func(t *testing.T) {
		m1, m2 := newChanSub(t, "member-a"), newChanSub(t, "member-b")
		subscribe(t, a, "$share/g/jobs/+", m1)
		subscribe(t, b, "$share/g/jobs/+", m2)
		// c sees both members' interest (one per node).
		waitInterest(t, c, "jobs.run", 2)
		const n = 200
		for i := range n {
			pub(t, c, "jobs/run", fmt.Sprint(i))
		}
		seen := map[string]int{}
		per := map[string]int{}
		total := 0
		deadline := time.Now().Add(waitTimeout)
		for total < n {
			select {
			case m := <-m1.ch:
				seen[string(m.Payload)]++
				per["a"]++
				total++
			case m := <-m2.ch:
				seen[string(m.Payload)]++
				per["b"]++
				total++
			case <-time.After(time.Until(deadline)):
				t.Fatalf("group got %d of %d messages within %v", total, n, waitTimeout)
			}
		}
		for i := range n {
			if k := seen[fmt.Sprint(i)]; k != 1 {
				t.Errorf("message %d delivered %d times to the group, want exactly 1", i, k)
			}
		}
		// A message after the n: nothing else came (a duplicate would
		// arrive before it on its route).
		s := newChanSub(t, "sentinel")
		subscribe(t, a, "jobs/+", s)
		subscribe(t, b, "jobs/+", s)
		waitInterest(t, c, "jobs.run", 4)
		pub(t, c, "jobs/run", "end")
		s.next(t)
		s.next(t)
		if extra := len(m1.pending()) + len(m2.pending()); extra > 1 {
			t.Errorf("group got %d more messages after the %d (only the end was due)", extra, n)
		}
		t.Logf("deliveries per node: %v", per)
	})
}

// TestClusterUnreachableRoute starts a node whose peers are not there: it
// serves locally, reports them unreachable, and joins when they come up.
func TestClusterUnreachableRoute(t *testing.T) {
	ports := freePorts(t, 2)
	routes := []string{fmt.Sprintf("nats-route://127.0.0.1:%d", ports[0]), fmt.Sprintf("nats-route://127.0.0.1:%d", ports[1])}
	a := startBroker(t, broker.Config{Node: "node-a", Cluster: &broker.ClusterConfig{Name: "test", Listen: fmt.Sprintf("127.0.0.1:%d", ports[0]), Routes: routes}})
	st := a.Cluster()
	if len(st.Peers) != 0 || !slices.Equal(st.Unreachable, routes[1:]) || st.Expected != 2 {
		t.Errorf("alone: state %+v, want no peers and %s unreachable", st, routes[1])
	}
	if err := a.Ready(); err != nil {
		t.Errorf("alone: Ready: %v", err)
	}
	s := newChanSub(t, "local")
	subscribe(t, a, "loc", s)
	pub(t, a, "loc", "x")
	s.next(t)

	b := startBroker(t, broker.Config{Node: "node-b", Cluster: &broker.ClusterConfig{Name: "test", Listen: fmt.Sprintf("127.0.0.1:%d", ports[1]), Routes: routes}})
	waitPeers(t, a, 1)
	waitPeers(t, b, 1)
	if st := a.Cluster(); len(st.Unreachable) != 0 {
		t.Errorf("joined: unreachable %v", st.Unreachable)
	}
}

// TestClusterNameMismatch: nodes of different clusters never join, each
// serves its own subscribers, and the log names the problem.
func TestClusterNameMismatch(t *testing.T) {
	ports := freePorts(t, 2)
	routes := []string{fmt.Sprintf("nats-route://127.0.0.1:%d", ports[0]), fmt.Sprintf("nats-route://127.0.0.1:%d", ports[1])}
	logA := &captureLog{}
	a := startBroker(t, broker.Config{Node: "node-a", Logger: logA.logger(), Cluster: &broker.ClusterConfig{Name: "one", Listen: fmt.Sprintf("127.0.0.1:%d", ports[0]), Routes: routes}})
	b := startBroker(t, broker.Config{Node: "node-b", Cluster: &broker.ClusterConfig{Name: "two", Listen: fmt.Sprintf("127.0.0.1:%d", ports[1]), Routes: routes}})
	logA.wait(t, "Cluster Name Conflict")
	logA.wait(t, "hint=\"the peer has another broker.cluster.name")
	waitNoPeers(t, a)
	for _, n := range []*broker.Broker{a, b} {
		servesLocally(t, n)
	}
}

// servesLocally checks that b delivers its own publishes to its own
// subscribers.
func servesLocally(t *testing.T, b *broker.Broker) {
	t.Helper()
	if err := b.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	s := newChanSub(t, "local")
	sub := subscribe(t, b, "loc", s)
	defer sub.Unsubscribe()
	pub(t, b, "loc", "x")
	if m := s.next(t); string(m.Payload) != "x" {
		t.Errorf("local delivery %q", m.Payload)
	}
}

// waitNoPeers waits until b lists no peer: a refused route may still be
// listed for a moment while it closes (and again while a retry is
// refused).
func waitNoPeers(t *testing.T, b *broker.Broker) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for p := b.Cluster().Peers; len(p) != 0; p = b.Cluster().Peers {
		if time.Now().After(deadline) {
			t.Fatalf("%s joined %v", b.Cluster().Node, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterDuplicateName: a node whose name another node already has
// is refused by it, and the log says so.
func TestClusterDuplicateName(t *testing.T) {
	logs := []*captureLog{{}, {}}
	bs := startCluster(t, 2, func(i int, c *broker.Config) {
		c.Node = "same"
		c.Logger = logs[i].logger()
	})
	deadline := time.Now().Add(waitTimeout)
	for !logs[0].has("node.name: every node of a cluster needs its own") && !logs[1].has("node.name: every node of a cluster needs its own") {
		if time.Now().After(deadline) {
			t.Fatalf("no duplicate name in the logs:\n%s\n%s", logs[0], logs[1])
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range bs {
		waitNoPeers(t, n)
		servesLocally(t, n)
	}
	t.Logf("logs:\n%s\n%s", logs[0], logs[1])
}

// TestClusterTLSMismatch: a node with route TLS and one without do not
// join, and the log says why.
func TestClusterTLSMismatch(t *testing.T) {
	pki := newTestPKI(t)
	logs := []*captureLog{{}, {}}
	bs := startCluster(t, 2, func(i int, c *broker.Config) {
		c.Logger = logs[i].logger()
		if i == 0 {
			c.Cluster.TLS = pki.routeTLS()
		}
	})
	deadline := time.Now().Add(waitTimeout)
	for !logs[0].has("broker.cluster.tls must be set on every node") && !logs[1].has("broker.cluster.tls must be set on every node") {
		if time.Now().After(deadline) {
			t.Fatalf("no TLS problem in the logs:\n%s\n%s", logs[0], logs[1])
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range bs {
		waitNoPeers(t, n)
		servesLocally(t, n)
	}
	t.Logf("logs:\n%s\n%s", logs[0], logs[1])
}

// TestClusterTLS: two nodes with route TLS from the same CA join.
func TestClusterTLS(t *testing.T) {
	pki := newTestPKI(t)
	bs := startCluster(t, 2, func(i int, c *broker.Config) {
		c.Cluster.TLS = pki.routeTLS()
	})
	waitPeers(t, bs[0], 1)
	s := newChanSub(t, "on-b")
	subscribe(t, bs[1], "t", s)
	waitInterest(t, bs[0], "t", 1)
	pub(t, bs[0], "t", "over tls")
	if m := s.next(t); string(m.Payload) != "over tls" {
		t.Errorf("got %q", m.Payload)
	}
}

func TestClusterConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cl   broker.ClusterConfig
		want string
	}{
		{"bad name", broker.ClusterConfig{Name: "a b", Listen: "127.0.0.1:0"}, "invalid cluster name"},
		{"bad scheme", broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:0", Routes: []string{"http://127.0.0.1:1"}}, "scheme \"http\""},
		{"no port", broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:0", Routes: []string{"nats-route://host"}}, "want a port"},
		{"bad listen", broker.ClusterConfig{Name: "c", Listen: "nowhere"}, "cluster listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := tc.cl
			_, err := broker.Start(broker.Config{Cluster: &cl, DataDir: t.TempDir(), Logger: testLogger(t)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

var _ gateway.PubSub = (*broker.Broker)(nil)

// captureLog keeps the broker's warnings and errors for a test to look at.
type captureLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (c *captureLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *captureLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func (c *captureLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// has reports whether the log holds s, in any case.
func (c *captureLog) has(s string) bool {
	return strings.Contains(strings.ToLower(c.String()), strings.ToLower(s))
}

// wait polls until the log holds s.
func (c *captureLog) wait(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !c.has(s) {
		if time.Now().After(deadline) {
			t.Fatalf("log has no %q within %v:\n%s", s, waitTimeout, c)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterRouteAuth: nodes with the same route credentials join; a
// node with another password is refused, and the log says what to fix.
func TestClusterRouteAuth(t *testing.T) {
	logs := []*captureLog{{}, {}, {}}
	bs := startCluster(t, 3, func(i int, c *broker.Config) {
		c.Logger = logs[i].logger()
		c.Cluster.Username, c.Cluster.Password = "route", "secret"
		if i == 2 {
			c.Cluster.Password = "other"
		}
	})
	waitPeers(t, bs[0], 1)
	deadline := time.Now().Add(waitTimeout)
	const hint = "broker.cluster.user and password must be the same on every node"
	for !logs[0].has(hint) && !logs[1].has(hint) && !logs[2].has(hint) {
		if time.Now().After(deadline) {
			t.Fatalf("no hint about route credentials in the logs:\n%s\n%s\n%s", logs[0], logs[1], logs[2])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := bs[0].Cluster().Peers; !slices.Equal(p, []string{"node-b"}) {
		t.Errorf("node-a peers %v, want node-b only", p)
	}
}

// dialMQTTRetry connects as dialMQTT does, again and again until
// mqttTimeout, as MQTT clients do: a node's first CONNECT waits for the
// replicated MQTT streams, which a loaded machine may not give it within
// nats-server's 5s (the JetStream API of a cluster that just formed).
func dialMQTTRetry(t *testing.T, addr, clientID string) *mqttClient {
	t.Helper()
	deadline := time.Now().Add(mqttTimeout)
	for {
		c, code, err := connectMQTT(addr, clientID, mqttLogin{})
		if err == nil && code == 0 {
			c.t = t
			t.Cleanup(func() { c.conn.Close() })
			return c
		}
		if c != nil {
			c.conn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("mqtt %s: no accepted CONNECT within %v: code %d, %v", clientID, mqttTimeout, code, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterMQTT runs MQTT on three clustered nodes (JetStream clustered,
// the MQTT streams replicated): an MQTT QoS 1 publish on node-a reaches a
// QoS 1 MQTT subscriber on node-c and a gateway subscriber on node-b.
func TestClusterMQTT(t *testing.T) {
	bs := startCluster(t, 3, func(i int, c *broker.Config) {
		c.MQTTListen = "127.0.0.1:0"
	})
	for _, n := range bs {
		waitPeers(t, n, 2)
	}
	// MQTT clients are refused until JetStream has a meta leader (a few
	// seconds after the nodes start).
	waitJetStreamLeader(t, bs)
	gs := newChanSub(t, "gateway-on-b")
	subscribe(t, bs[1], "m/+", gs)
	// The first CONNECT of a node creates the MQTT streams, replicated.
	sub := dialMQTTRetry(t, bs[2].MQTTAddr(), "sub-c")
	defer sub.close()
	sub.subscribe("m/+", 1)
	pubc := dialMQTTRetry(t, bs[0].MQTTAddr(), "pub-a")
	defer pubc.close()
	waitInterest(t, bs[0], "m.x", 2)
	pubc.publish("m/x", 1, []byte("over the cluster"))
	if p := sub.readPublish(); p.topic != "m/x" || string(p.payload) != "over the cluster" || p.qos != 1 {
		t.Errorf("MQTT subscriber on node-c got %q %q QoS %d", p.topic, p.payload, p.qos)
	}
	if m := gs.next(t); m.Topic != "m/x" || string(m.Payload) != "over the cluster" || m.QoS != 1 {
		t.Errorf("gateway subscriber on node-b got %+v", m)
	}
}

// TestClusterMQTTRetained: a wildcard subscription on node-a, made right
// after an MQTT client on node-b has its PUBACK for a retained message,
// gets that message, not an older one and not nothing, round after round.
// The consumer that reads the retained stream lands on any of the three
// nodes: on another node its pull subscription may not have reached
// node-a yet, and its replica of the stream may lag the stream leader's.
func TestClusterMQTTRetained(t *testing.T) {
	bs := startCluster(t, 3, func(i int, c *broker.Config) {
		c.MQTTListen = "127.0.0.1:0"
	})
	for _, n := range bs {
		waitPeers(t, n, 2)
	}
	waitJetStreamLeader(t, bs)
	pubc := dialMQTTRetry(t, bs[1].MQTTAddr(), "retainer-b")
	defer pubc.close()
	for i := range 20 {
		want := fmt.Sprintf("v%d", i)
		pubc.publishRetained("x/b/c", []byte(want))
		s := newChanSub(t, "x/+/c")
		sub := subscribe(t, bs[0], "x/+/c", s)
		if m := s.next(t); m.Topic != "x/b/c" || string(m.Payload) != want {
			t.Errorf("round %d: got %s=%q, want x/b/c=%q", i, m.Topic, m.Payload, want)
		}
		sub.Unsubscribe()
	}
}
