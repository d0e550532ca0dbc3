package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/admin"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// registryConfig writes the config of one node of a cluster whose devices
// speak the exproto-json protocol (they choose their client ids).
func registryConfig(t *testing.T, dir, name, listen string, routes []string, registry string) string {
	t.Helper()
	cfg := filepath.Join(dir, name+".yaml")
	body := `node: {name: ` + name + `, data_dir: ` + filepath.Join(dir, name) + `}
log: {level: info, format: json}
adapter: {bind: "127.0.0.1:0"}
admin: {bind: "127.0.0.1:0"}
broker:
  nats_listen: "127.0.0.1:0"
  cluster:
    name: regtest
    listen: ` + listen + `
    routes: [` + strings.Join(routes, ", ") + `]
registry: ` + registry + `
handlers:
  json: {wasm: {path: "builtin:exproto-json", call_timeout: 5s}}
listeners:
  - {name: devices, type: tcp, bind: "127.0.0.1:0", handler: json}
`
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tryConnect sends CONNECT and returns the CONNACK code and how long it
// took.
func (d *jsonDevice) tryConnect(clientID string) (int, time.Duration) {
	d.t.Helper()
	start := time.Now()
	f := d.call(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "p", ProtoVer: "1", ClientID: clientID}})
	if f.Type != jp.Connack {
		d.t.Fatalf("connect %s: %+v", clientID, f)
	}
	return f.Code, time.Since(start)
}

// race sends CONNECT from a goroutine of its own: it must not fail the
// test, and a connection that loses the race may be closed before its
// CONNACK. It returns the CONNACK code, or -1 for a closed connection.
func (d *jsonDevice) race(clientID string) int {
	d.nc.SetDeadline(time.Now().Add(wait))
	if _, err := d.nc.Write(jp.AppendLine(nil, jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "p", ProtoVer: "1", ClientID: clientID}})); err != nil {
		return -1
	}
	buf := make([]byte, 4096)
	for {
		f, ok, err := d.dec.Next()
		if err != nil {
			return -1
		}
		if ok {
			if f.Type != jp.Connack {
				return -1
			}
			return f.Code
		}
		n, err := d.nc.Read(buf)
		if err != nil {
			return -1
		}
		d.dec.Feed(buf[:n])
	}
}

// closed waits until the gateway closes the device's socket.
func (d *jsonDevice) closed() bool {
	d.nc.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, d.nc)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// hasClient reports whether the node's admin API shows clientID.
func (n *node) hasClient(clientID string) bool {
	n.t.Helper()
	resp, err := http.Get(n.admin + "/api/v1/clients/" + clientID)
	if err != nil {
		n.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// registryState polls the node's cluster state until ok accepts its
// registry.
func (n *node) registryState(ok func(admin.RegistryStatus) bool) admin.RegistryStatus {
	n.t.Helper()
	return *n.cluster(func(st admin.ClusterStatus) bool { return st.Registry != nil && ok(*st.Registry) }).Registry
}

// TestClusterClientIDs runs three protogate processes with the KV registry
// (auto picks it for 3 nodes): one client id, one connection, in the whole
// cluster.
func TestClusterClientIDs(t *testing.T) {
	bin := protogateBinary(t)
	start := time.Now()
	dir := t.TempDir()
	listens := freeTCPPorts(t, 3)
	var routes []string
	for _, l := range listens {
		routes = append(routes, "nats-route://"+l)
	}
	names := []string{"reg-a", "reg-b", "reg-c"}
	cfgs := make([]string, 3)
	for i, name := range names {
		cfgs[i] = registryConfig(t, dir, name, listens[i], routes, "{backend: auto, on_unavailable: reject, claim_timeout: 2s}")
	}
	nodes := make([]*node, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i] = startNode(t, bin, names[i], cfgs[i]) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range nodes {
		n.peers(2)
		if st := n.registryState(func(r admin.RegistryStatus) bool { return r.Available }); st.Backend != "kv" {
			t.Fatalf("%s: registry %+v, want kv", n.name, st)
		}
	}
	t.Logf("3 nodes up, registry available, in %v", time.Since(start))
	a, b, c := nodes[0], nodes[1], nodes[2]

	// The same id on node b discards node a's connection before node b's
	// device hears CONNACK 0: node a no longer shows it.
	onA := dialJSON(t, "tcp", a.devices)
	onA.connect("dev-1")
	onB := dialJSON(t, "tcp", b.devices)
	if code, _ := onB.tryConnect("dev-1"); code != 0 {
		t.Fatalf("takeover on node b: CONNACK %d", code)
	}
	if a.hasClient("dev-1") {
		t.Error("node a still shows dev-1 after node b's device was told SUCCESS")
	}
	if !onA.closed() {
		t.Error("node a's device socket is still open")
	}

	// Takeovers across nodes, measured (the jail holds an id taken over
	// less than a second ago: each round uses a new id).
	var lat []time.Duration
	for i := range 30 {
		id := "lat-" + strconv.Itoa(i)
		from, to := nodes[i%3], nodes[(i+1)%3]
		d1 := dialJSON(t, "tcp", from.devices)
		d1.connect(id)
		d2 := dialJSON(t, "tcp", to.devices)
		code, took := d2.tryConnect(id)
		if code != 0 {
			t.Fatalf("takeover %s: CONNACK %d", id, code)
		}
		lat = append(lat, took)
		if !d1.closed() {
			t.Fatalf("%s: the older device's socket stayed open", id)
		}
		d2.nc.Close()
	}
	slices.Sort(lat)
	t.Logf("Authenticate with a takeover on another node: p50 %v, max %v (30 rounds, CONNECT to CONNACK through a Wasm guest)", lat[len(lat)/2], lat[len(lat)-1])

	// Racing claims of one id on two nodes leave exactly one connection.
	raceIDs(t, nodes, a, c, "race", 10)

	// Kick through node c's admin API, for a client of node a.
	k := dialJSON(t, "tcp", a.devices)
	k.connect("kick-me")
	req, _ := http.NewRequest(http.MethodDelete, c.admin+"/api/v1/clients/kick-me", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("kick on node c of a client of node a: %d", resp.StatusCode)
	}
	if !k.closed() {
		t.Error("the kicked device's socket stayed open")
	}
	req, _ = http.NewRequest(http.MethodDelete, c.admin+"/api/v1/clients/nobody", nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("kick of an unknown client id: %d, want 404", resp.StatusCode)
	}

	// SIGKILL node a (it may lead the bucket): the other two keep
	// claiming, after a stall while a new leader is elected; a device of
	// node a reconnecting elsewhere is not blocked by its stale claim.
	gone := dialJSON(t, "tcp", a.devices)
	gone.connect("was-on-a")
	killed := time.Now()
	a.kill()
	var stall time.Duration
	for i := 0; ; i++ {
		d := dialJSON(t, "tcp", b.devices)
		if code, _ := d.tryConnect("after-kill-" + strconv.Itoa(i)); code == 0 {
			stall = time.Since(killed)
			break
		}
		d.nc.Close()
		if time.Since(killed) > wait {
			t.Fatal("no claim succeeded on node b after node a was killed")
		}
	}
	t.Logf("claims on node b resumed %v after SIGKILL of node a", stall)
	back := dialJSON(t, "tcp", c.devices)
	if code, _ := back.tryConnect("was-on-a"); code != 0 {
		t.Fatalf("node a's client reconnecting on node c: CONNACK %d", code)
	}

	// Restarted, node a rejoins and claims again.
	a = startNode(t, bin, "reg-a", cfgs[0])
	a.peers(2)
	a.registryState(func(r admin.RegistryStatus) bool { return r.Available })
	again := dialJSON(t, "tcp", a.devices)
	if code, _ := again.tryConnect("was-on-a"); code != 0 {
		t.Fatalf("restarted node a taking was-on-a back: CONNACK %d", code)
	}
	if !back.closed() {
		t.Error("node c's device kept was-on-a after node a took it back")
	}
	t.Logf("whole test: %v", time.Since(start))
}

// TestClusterClientIDsTwoNodes: two clustered nodes pick the notices
// registry (no JetStream quorum with 2), and keep one connection per
// client id too.
func TestClusterClientIDsTwoNodes(t *testing.T) {
	bin := protogateBinary(t)
	dir := t.TempDir()
	listens := freeTCPPorts(t, 2)
	routes := []string{"nats-route://" + listens[0], "nats-route://" + listens[1]}
	nodes := make([]*node, 2)
	var wg sync.WaitGroup
	for i, name := range []string{"duo-a", "duo-b"} {
		cfg := registryConfig(t, dir, name, listens[i], routes, "{backend: auto}")
		wg.Go(func() { nodes[i] = startNode(t, bin, name, cfg) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a, b := nodes[0], nodes[1]
	for _, n := range nodes {
		n.peers(1)
		if st := n.registryState(func(admin.RegistryStatus) bool { return true }); st.Backend != "notices" {
			t.Fatalf("%s: registry %+v, want notices", n.name, st)
		}
	}
	// The nodes hear each other's hellos within a second or so.
	firstTakeover(t, a, b, "duo")
	// Two devices fighting over one id across the nodes trade it once a
	// second at most: the first takeover is free, each next one waits out
	// the jail the one before started on the other node.
	if d := flap(t, a, b, "flapper", 3); d < 2*time.Second {
		t.Errorf("3 takeovers of one id across nodes took %v; the jail holds each for 1s", d)
	}

	raceIDs(t, nodes, a, b, "duo-race", 10)
}

// flap has two devices share one client id on nodes x and y, each
// reconnecting as soon as the other takes it, for rounds takeovers, and
// returns how long they took: the jail makes each take about a second.
func flap(t *testing.T, x, y *node, id string, rounds int) time.Duration {
	t.Helper()
	first := dialJSON(t, "tcp", x.devices)
	first.connect(id)
	start := time.Now()
	prev := first
	for i := range rounds {
		on := y
		if i%2 == 1 {
			on = x
		}
		d := dialJSON(t, "tcp", on.devices)
		if code, _ := d.tryConnect(id); code != 0 {
			t.Fatalf("takeover %d of %s: CONNACK %d", i, id, code)
		}
		if !prev.closed() {
			t.Fatalf("takeover %d of %s: the previous device stayed open", i, id)
		}
		prev = d
	}
	return time.Since(start)
}

// TestLeafClientIDs: two protogate nodes joined as leaf nodes to one
// nats-server hub (Debian's 2.9) keep one connection per client id with
// the notices registry, whose requests cross the hub.
func TestLeafClientIDs(t *testing.T) {
	_, hubLeaf := startHub(t)
	bin := protogateBinary(t)
	dir := t.TempDir()
	nodes := make([]*node, 2)
	var wg sync.WaitGroup
	for i, name := range []string{"leaf-a", "leaf-b"} {
		cfg := filepath.Join(dir, name+".yaml")
		os.WriteFile(cfg, []byte(`node: {name: `+name+`, data_dir: `+filepath.Join(dir, name)+`}
log: {level: info, format: json}
adapter: {bind: "127.0.0.1:0"}
admin: {bind: "127.0.0.1:0"}
broker:
  leafnode:
    remotes:
      - {url: "nats-leaf://`+hubLeaf+`", user: leaf, password: s3cret}
handlers:
  json: {wasm: {path: "builtin:exproto-json", call_timeout: 5s}}
listeners:
  - {name: devices, type: tcp, bind: "127.0.0.1:0", handler: json}
`), 0o644)
		wg.Go(func() { nodes[i] = startNode(t, bin, name, cfg) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a, b := nodes[0], nodes[1]
	for _, n := range nodes {
		n.cluster(func(st admin.ClusterStatus) bool { return len(st.Leafs) == 1 })
		if st := n.registryState(func(admin.RegistryStatus) bool { return true }); st.Backend != "notices" {
			t.Fatalf("%s: registry %+v, want notices", n.name, st)
		}
	}
	// The leaves hear each other's hellos through the hub.
	firstTakeover(t, a, b, "leafdev")
}

// firstTakeover waits until a claim on node b discards a connection of
// node a with the notices registry: until the nodes have heard each
// other's hellos, a claim does not know the other node. Each try uses a new
// id (out of any jail).
func firstTakeover(t *testing.T, a, b *node, prefix string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		id := prefix + "-" + strconv.Itoa(i)
		old := dialJSON(t, "tcp", a.devices)
		old.connect(id)
		cur := dialJSON(t, "tcp", b.devices)
		if code, _ := cur.tryConnect(id); code != 0 {
			t.Fatalf("takeover of %s on %s: CONNACK %d", id, b.name, code)
		}
		if !a.hasClient(id) {
			if !old.closed() {
				t.Fatalf("%s's device socket stayed open", a.name)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's claims never discarded %s's connection", b.name, a.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// raceIDs has a device of node x and one of node y claim each of n ids at
// once, and waits until exactly one connection in nodes holds each.
func raceIDs(t *testing.T, nodes []*node, x, y *node, prefix string, n int) {
	t.Helper()
	xs, ys := make([]*jsonDevice, n), make([]*jsonDevice, n)
	for i := range n {
		xs[i], ys[i] = dialJSON(t, "tcp", x.devices), dialJSON(t, "tcp", y.devices)
	}
	var wg sync.WaitGroup
	for i := range n {
		id := prefix + "-" + strconv.Itoa(i)
		wg.Go(func() { xs[i].race(id) })
		wg.Go(func() { ys[i].race(id) })
	}
	wg.Wait()
	for i := range n {
		id := prefix + "-" + strconv.Itoa(i)
		// Connections the registry discarded close; wait until only
		// the survivor is listed.
		deadline := time.Now().Add(wait)
		for {
			held := 0
			for _, nd := range nodes {
				if nd.hasClient(id) {
					held++
				}
			}
			if held == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is held by %d connections", id, held)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
