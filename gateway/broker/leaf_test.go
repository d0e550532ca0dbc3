package broker_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/protogate/protogate/gateway/broker"
)

// TestLeafNKey joins a broker as a leaf to an in-process hub that takes
// one nkey for its leaf nodes, signing with a seed file: the hub's client
// gets what the broker publishes, and the broker reports the connection.
func TestLeafNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pubKey, _ := kp.PublicKey()
	seedFile := filepath.Join(t.TempDir(), "leaf.nk")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	leafPort := freePorts(t, 1)[0]
	hub, err := server.NewServer(&server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort, Nkey: pubKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	hub.Start()
	t.Cleanup(hub.Shutdown)
	if !hub.ReadyForConnections(waitTimeout) {
		t.Fatal("hub did not start")
	}
	leafAddr := fmt.Sprintf("127.0.0.1:%d", leafPort)

	b := startBroker(t, broker.Config{Node: "leaf-1", Leaf: &broker.LeafConfig{Remotes: []broker.LeafRemote{
		{URLs: []string{fmt.Sprintf("nats-leaf://%s", leafAddr)}, NKeySeedFile: seedFile},
	}}})
	deadline := time.Now().Add(waitTimeout)
	for len(b.Cluster().Leafs) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no leaf connection within %v: %+v", waitTimeout, b.Cluster())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := b.Cluster(); st.Leafs[0].Name != "hub" || st.LeafRemotes != 1 || st.Expected != 1 || b.NodeCount() != 1 {
		t.Errorf("state %+v, NodeCount %d", st, b.NodeCount())
	}
	nc, err := nats.Connect(hub.ClientURL(), nats.Timeout(waitTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe("up.>", got); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	deadline = time.Now().Add(waitTimeout)
	for {
		pub(t, b, "up/x", "hi")
		select {
		case m := <-got:
			if m.Subject != "up.x" || string(m.Data) != "hi" {
				t.Fatalf("hub got %s %q", m.Subject, m.Data)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the hub got nothing from the leaf")
		}
	}
}
