package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/admin"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// protogateBinary builds the protogate binary once for the tests that run
// it as a child process.
func protogateBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		builtBin = filepath.Join(sharedDataDir, "bin", "protogate")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// node is a protogate child process.
type node struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	exited chan error
	// devices, nats and admin are where it listens (set once started).
	devices, nats, admin string

	mu   sync.Mutex
	logs []string
}

// startNode runs "protogate run -c cfg" and waits until its device
// listener is up. The node is killed at the end of the test.
func startNode(t *testing.T, bin, name, cfg string) *node {
	t.Helper()
	n := &node{t: t, name: name, exited: make(chan error, 1)}
	n.cmd = exec.Command(bin, "run", "-c", cfg)
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{})
	go func() {
		found := map[string]string{}
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			n.mu.Lock()
			n.logs = append(n.logs, sc.Text())
			n.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			msg, _ := rec["msg"].(string)
			addr, _ := rec["addr"].(string)
			switch msg {
			case "protogate: nats listening":
				found["nats"] = addr
			case "protogate: admin API listening":
				u, _ := rec["url"].(string)
				found["admin"] = strings.TrimSuffix(u, "/")
			case "protogate: listening":
				found["devices"] = addr
				n.mu.Lock()
				n.devices, n.nats, n.admin = found["devices"], found["nats"], found["admin"]
				n.mu.Unlock()
				close(up)
			}
		}
		n.exited <- n.cmd.Wait()
	}()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", n.name, n.log())
		}
	})
	select {
	case <-up:
	case err := <-n.exited:
		t.Fatalf("%s exited early: %v\n%s", name, err, n.log())
	case <-time.After(startWait):
		t.Fatalf("%s did not start\n%s", name, n.log())
	}
	return n
}

func (n *node) log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.logs, "\n")
}

// kill ends the process with SIGKILL (no graceful shutdown) and waits for
// it.
func (n *node) kill() {
	if n.cmd.ProcessState != nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.exited:
	case <-time.After(wait):
	}
}

// cluster polls the node's /api/v1/cluster until ok accepts it.
func (n *node) cluster(ok func(admin.ClusterStatus) bool) admin.ClusterStatus {
	n.t.Helper()
	deadline := time.Now().Add(startWait)
	var st admin.ClusterStatus
	for {
		resp, err := http.Get(n.admin + "/api/v1/cluster")
		if err == nil {
			st = admin.ClusterStatus{}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && ok(st) {
				return st
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: cluster state %+v (err %v), not the one awaited", n.name, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready polls the node's /readyz until it answers 200: its listeners,
// handlers and, in a cluster, its client-id registry are up.
func (n *node) ready() {
	n.t.Helper()
	deadline := time.Now().Add(startWait)
	for {
		resp, err := http.Get(n.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not ready within %v (last: %v)", n.name, startWait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// peers waits until the node has want peers.
func (n *node) peers(want int) admin.ClusterStatus {
	n.t.Helper()
	return n.cluster(func(st admin.ClusterStatus) bool { return len(st.Peers) == want })
}

// lineReader reads a linepubsub device's lines in the background, so a
// test can wait for a delivery while it publishes.
type lineReader struct {
	c     *lineClient
	lines chan string
}

func subscriber(t *testing.T, addr, filter string) *lineReader {
	t.Helper()
	c := dialLines(t, addr)
	if got := c.cmd("SUB " + filter); got != "OK" {
		t.Fatalf("SUB %s: %q", filter, got)
	}
	r := &lineReader{c: c, lines: make(chan string, 64)}
	go func() {
		br := c.r
		for {
			c.nc.SetReadDeadline(time.Time{})
			s, err := br.ReadString('\n')
			if err != nil {
				close(r.lines)
				return
			}
			r.lines <- strings.TrimRight(s, "\r\n")
		}
	}()
	return r
}

// publishUntil has pub publish "PUB topic payload-N" every 100ms until r
// gets one of them (interest crosses routes asynchronously), and returns
// it. Other lines r gets (late deliveries of earlier rounds) are skipped.
func publishUntil(t *testing.T, pub *lineClient, r *lineReader, topic, payload string) string {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	want := "MSG " + topic + " " + payload + "-"
	for i := 0; ; i++ {
		if got := pub.cmd(fmt.Sprintf("PUB %s %s-%d", topic, payload, i)); got != "OK" {
			t.Fatalf("PUB: %q", got)
		}
		for waiting := true; waiting; {
			select {
			case l, ok := <-r.lines:
				if !ok {
					t.Fatal("subscriber connection closed")
				}
				if strings.HasPrefix(l, want) {
					return l
				}
			case <-tick.C:
				waiting = false
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery of %s within %v", topic, wait)
		}
	}
}

// waitLine waits until r gets want, skipping other lines.
func waitLine(t *testing.T, r *lineReader, want string) {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				t.Fatal("subscriber connection closed")
			}
			if l == want {
				return
			}
		case <-timer.C:
			t.Fatalf("no %q within %v", want, wait)
		}
	}
}

// clusterConfig writes the config of one node of a cluster.
func clusterConfig(t *testing.T, dir, name, listen string, routes []string, extra string) string {
	t.Helper()
	data := filepath.Join(dir, name)
	cfg := filepath.Join(dir, name+".yaml")
	body := `node: {name: ` + name + `, data_dir: ` + data + `}
log: {level: info, format: json}
adapter: {bind: "127.0.0.1:0"}
admin: {bind: "127.0.0.1:0"}
broker:
  nats_listen: "127.0.0.1:0"
  cluster:
    name: itest
    listen: ` + listen + `
    routes: [` + strings.Join(routes, ", ") + `]
` + extra + `handlers:
  lines: {wasm: {path: "builtin:linepubsub", call_timeout: 5s}}
listeners:
  - {name: devices, type: tcp, bind: "127.0.0.1:0", handler: lines}
`
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// freeTCPPorts returns n ports that were free a moment ago on 127.0.0.1.
func freeTCPPorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// TestClusterProcesses runs three protogate processes clustered on
// 127.0.0.1: devices on different nodes talk, a NATS client of a third
// node sees both directions, a node killed with SIGKILL leaves the others
// serving, and rejoins when restarted.
func TestClusterProcesses(t *testing.T) {
	bin := protogateBinary(t)
	start := time.Now()
	dir := t.TempDir()
	listens := freeTCPPorts(t, 3)
	var routes []string
	for _, l := range listens {
		routes = append(routes, "nats-route://"+l)
	}
	names := []string{"node-a", "node-b", "node-c"}
	cfgs := make([]string, 3)
	for i, name := range names {
		cfgs[i] = clusterConfig(t, dir, name, listens[i], routes, "")
	}
	// protogate validate dials the routes: nothing there yet, a warning.
	var out strings.Builder
	if code := protogate([]string{"validate", "-c", cfgs[0]}, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "warning: ") || !strings.Contains(out.String(), "broker.cluster.routes[1]: cannot check the node at "+listens[1]) {
		t.Errorf("validate before the cluster runs: exit %d\n%s", code, out.String())
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
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, n := range nodes {
		st := n.peers(2)
		if st.Name != "itest" || st.Expected != 3 || len(st.Unreachable) != 0 {
			t.Errorf("%s: %+v", n.name, st)
		}
		n.ready() // the client-id registry too: devices log in
	}
	t.Logf("3 nodes up and joined in %v", time.Since(start))
	// JetStream is clustered across the processes: a meta leader.
	leader := a.cluster(func(st admin.ClusterStatus) bool { return st.JetStreamLeader != "" }).JetStreamLeader
	t.Logf("JetStream meta leader %s after %v", leader, time.Since(start))

	// With node-a up, validating a config that reuses its name fails.
	dup := clusterConfig(t, t.TempDir(), "node-a", "127.0.0.1:1", routes, "")
	out.Reset()
	if code := protogate([]string{"validate", "-c", dup}, &out, &out); code != 1 ||
		!strings.Contains(out.String(), `broker.cluster.routes[0]: the node at `+listens[0]+` (server_id `) ||
		!strings.Contains(out.String(), `already has node.name "node-a"`) {
		t.Errorf("validate with a duplicate node name: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := protogate([]string{"validate", "-c", cfgs[0]}, &out, &out); code != 0 || strings.Contains(out.String(), "warning") {
		t.Errorf("validate with the cluster up: exit %d\n%s", code, out.String())
	}

	// A device on node-c gets what a device on node-a publishes.
	onC := subscriber(t, c.devices, "chat/#")
	pubA := dialLines(t, a.devices)
	if got := publishUntil(t, pubA, onC, "chat/a", "hello"); !strings.HasPrefix(got, "MSG chat/a hello-") {
		t.Fatalf("node-c device got %q", got)
	}

	// A NATS client of node-b sees the devices' publishes, and its
	// publishes reach node-c's device.
	nc, err := nats.Connect("nats://"+b.nats, nats.Timeout(wait))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fromDevices := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe("chat.>", fromDevices); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(wait); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for got := false; !got; {
		if r := pubA.cmd("PUB chat/to-nats ping"); r != "OK" {
			t.Fatalf("PUB: %q", r)
		}
		select {
		case m := <-fromDevices:
			got = m.Subject == "chat.to-nats" && string(m.Data) == "ping"
		case <-time.After(100 * time.Millisecond):
		}
		if !got && time.Now().After(deadline) {
			t.Fatal("the NATS client on node-b got nothing from node-a's device")
		}
	}
	// node-c's device also gets node-a's retries: waitLine skips them.
	if err := nc.Publish("chat.from-nats", []byte("pong")); err != nil {
		t.Fatal(err)
	}
	waitLine(t, onC, "MSG chat/from-nats pong")
	nc.Close()

	// SIGKILL node-b: node-a and node-c keep serving, and see it gone.
	b.kill()
	for _, n := range []*node{a, c} {
		st := n.peers(1)
		if len(st.Unreachable) != 1 || st.Unreachable[0] != "nats-route://"+listens[1] {
			t.Errorf("%s without node-b: %+v", n.name, st)
		}
	}
	if got := publishUntil(t, pubA, onC, "chat/a", "still"); !strings.HasPrefix(got, "MSG chat/a still-") {
		t.Fatalf("node-c device got %q after node-b died", got)
	}
	// protogate ctl cluster says the same.
	out.Reset()
	if code := protogate([]string{"ctl", "--addr", a.admin, "cluster"}, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "peers") || !strings.Contains(out.String(), "1 of 2") ||
		!strings.Contains(out.String(), "nats-route://"+listens[1]) {
		t.Errorf("ctl cluster without node-b: exit %d\n%s", code, out.String())
	}
	// /readyz stays ready, with the state.
	resp, err := http.Get(a.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Ready   bool                `json:"ready"`
		Cluster admin.ClusterStatus `json:"cluster"`
	}
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if resp.StatusCode != 200 || !ready.Ready || len(ready.Cluster.Peers) != 1 {
		t.Errorf("readyz without node-b: %d %+v", resp.StatusCode, ready)
	}

	// Restarted (same data_dir and route port), node-b rejoins.
	restart := time.Now()
	b = startNode(t, bin, "node-b", cfgs[1])
	for _, n := range []*node{a, b, c} {
		n.peers(2)
	}
	b.ready()
	t.Logf("node-b rejoined %v after its restart", time.Since(restart))
	onB := subscriber(t, b.devices, "chat/#")
	if got := publishUntil(t, pubA, onB, "chat/a", "back"); !strings.HasPrefix(got, "MSG chat/a back-") {
		t.Fatalf("restarted node-b's device got %q", got)
	}
	t.Logf("whole test: %v", time.Since(start))
}

// TestClusterBadConfig: protogate run refuses a bad route URL, naming the
// key, before it starts anything.
func TestClusterBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := clusterConfig(t, dir, "node-x", "127.0.0.1:0", []string{"nats-route://127.0.0.1:6222", "http://127.0.0.1:6223"}, "")
	var out strings.Builder
	if code := protogate([]string{"run", "-c", cfg}, &out, &out); code != 1 ||
		!strings.Contains(out.String(), `line 10: broker.cluster.routes[1]: route URL "http://127.0.0.1:6223": scheme "http" is not one of nats-route://, nats://, tls://`) {
		t.Errorf("run: exit %d\n%s", code, out.String())
	}
}
