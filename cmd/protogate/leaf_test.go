package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/admin"
)

// natsServerBinary returns Debian's nats-server (scripts/deps.sh installs
// it), or skips the test.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/bin/nats-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("nats-server is not installed (make deps, or apt-get install nats-server): it is the hub of this test")
	return ""
}

// startHub runs nats-server as a hub with a leaf node port that takes the
// user leaf, and returns its client and leaf node addresses.
func startHub(t *testing.T) (client, leaf string) {
	t.Helper()
	bin := natsServerBinary(t)
	ports := freeTCPPorts(t, 2)
	client, leaf = ports[0], ports[1]
	conf := filepath.Join(t.TempDir(), "hub.conf")
	os.WriteFile(conf, []byte(`
server_name: hub
listen: `+client+`
leafnodes {
  listen: `+leaf+`
  authorization { user: leaf, password: s3cret }
}
`), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", conf)
	var mu sync.Mutex
	var out strings.Builder
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("hub log:\n%s", out.String())
			mu.Unlock()
		}
	})
	deadline := time.Now().Add(wait)
	for {
		c, err := net.Dial("tcp", leaf)
		if err == nil {
			c.Close()
			return client, leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub does not listen on %s: %v", leaf, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeafNode joins a protogate node, as a leaf, to a nats-server hub
// (Debian's, 2.9): a hub subscriber gets a device's publish, a hub publish
// reaches a subscribed device, and the leaf's MQTT listener (with a
// JetStream domain of its own) serves too.
func TestLeafNode(t *testing.T) {
	hubClient, hubLeaf := startHub(t)
	bin := protogateBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "leaf.yaml")
	os.WriteFile(cfg, []byte(`node: {name: leaf-1, data_dir: `+filepath.Join(dir, "data")+`}
log: {level: info, format: json}
adapter: {bind: "127.0.0.1:0"}
admin: {bind: "127.0.0.1:0"}
broker:
  mqtt_listen: "127.0.0.1:0"
  leafnode:
    remotes:
      - {url: "nats-leaf://`+hubLeaf+`", user: leaf, password: s3cret}
handlers:
  lines: {wasm: {path: "builtin:linepubsub", call_timeout: 5s}}
listeners:
  - {name: devices, type: tcp, bind: "127.0.0.1:0", handler: lines}
`), 0o644)
	n := startNode(t, bin, "leaf-1", cfg)
	st := n.cluster(func(st admin.ClusterStatus) bool { return len(st.Leafs) == 1 })
	if st.Leafs[0].Name != "hub" || st.LeafRemotes != 1 || st.Name != "" {
		t.Errorf("cluster state %+v", st)
	}

	var out strings.Builder
	if code := protogate([]string{"ctl", "--addr", n.admin, "cluster"}, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "leaf connections") || !strings.Contains(out.String(), "1 of 1") || !strings.Contains(out.String(), "hub (") {
		t.Errorf("ctl cluster: exit %d\n%s", code, out.String())
	}

	hub, err := nats.Connect("nats://"+hubClient, nats.Timeout(wait))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	up := make(chan *nats.Msg, 64)
	if _, err := hub.ChanSubscribe("up.>", up); err != nil {
		t.Fatal(err)
	}
	hub.FlushTimeout(wait)

	// Device to hub: interest crosses the leaf connection asynchronously.
	dev := dialLines(t, n.devices)
	deadline := time.Now().Add(wait)
	for got := false; !got; {
		if r := dev.cmd("PUB up/dev hello hub"); r != "OK" {
			t.Fatalf("PUB: %q", r)
		}
		select {
		case m := <-up:
			got = m.Subject == "up.dev" && string(m.Data) == "hello hub"
		case <-time.After(100 * time.Millisecond):
		}
		if !got && time.Now().After(deadline) {
			t.Fatal("the hub subscriber got nothing from the device")
		}
	}

	// Hub to device.
	sub := subscriber(t, n.devices, "down/#")
	deadline = time.Now().Add(wait)
	for got := false; !got; {
		hub.Publish("down.dev", []byte("hello device"))
		select {
		case l := <-sub.lines:
			if l != "MSG down/dev hello device" {
				t.Fatalf("device got %q", l)
			}
			got = true
		case <-time.After(100 * time.Millisecond):
		}
		if !got && time.Now().After(deadline) {
			t.Fatal("the device got nothing from the hub")
		}
	}

	// MQTT on the leaf: a subscriber gets a hub publish.
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Log("mosquitto_sub not installed: MQTT on the leaf not checked")
		return
	}
	mqtt := logAddr(t, n, "protogate: mqtt listening")
	host, port, _ := net.SplitHostPort(mqtt)
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	ms := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", host, "-p", port, "-i", "leafsub", "-t", "down/#", "-C", "1", "-v")
	var mout strings.Builder
	ms.Stdout = &mout
	if err := ms.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ms.Wait() }()
	for finished := false; !finished; {
		hub.Publish("down.mqtt", []byte("to mqtt"))
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("mosquitto_sub: %v", err)
			}
			finished = true
		case <-time.After(200 * time.Millisecond):
		}
		if !finished && ctx.Err() != nil {
			t.Fatal("the MQTT subscriber on the leaf got nothing from the hub")
		}
	}
	if got := strings.TrimSpace(mout.String()); got != "down/mqtt to mqtt" {
		t.Errorf("mosquitto_sub got %q", got)
	}
}

// logAddr returns the addr of the node's first log line with msg.
func logAddr(t *testing.T, n *node, msg string) string {
	t.Helper()
	for _, l := range strings.Split(n.log(), "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			_, rest, _ := strings.Cut(l, `"addr":"`)
			addr, _, _ := strings.Cut(rest, `"`)
			return addr
		}
	}
	t.Fatalf("%s: no %q in the log", n.name, msg)
	return ""
}
