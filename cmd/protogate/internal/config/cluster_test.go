package config

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
)

// clusterDoc is a document with node.name and the given broker lines
// starting at line 3.
func clusterDoc(lines ...string) string {
	return withBase(append([]string{"node: {name: gw-1}", "broker:"}, lines...)...)
}

func TestClusterErrors(t *testing.T) {
	const routes = "    routes: [nats-route://10.0.0.1:6222, nats-route://10.0.0.2:6222]"
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"no node name", withBase("broker:", "  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", routes),
			`config: line 2: broker.cluster: node.name must be set explicitly with a cluster: every node needs its own name, unique in the cluster, and the default "protogate-1" would be every node's`},
		{"bad name", clusterDoc("  cluster:", "    name: my cluster", "    listen: 0.0.0.0:6222", routes),
			`config: line 4: broker.cluster.name: invalid cluster name "my cluster" (use letters, digits, '_' and '-')`},
		{"no name", clusterDoc("  cluster:", "    listen: 0.0.0.0:6222", routes),
			`config: line 3: broker.cluster.name: must not be empty (the cluster name, the same on every node)`},
		{"no listen", clusterDoc("  cluster:", "    name: gw", routes),
			`config: line 3: broker.cluster.listen: must not be empty (want host:port such as 0.0.0.0:6222)`},
		{"bad listen", clusterDoc("  cluster:", "    name: gw", "    listen: 6222", routes),
			`config: line 5: broker.cluster.listen: address "6222" is only a port; want host:port such as "0.0.0.0:6222"`},
		{"listen clash", clusterDoc("  nats_listen: 127.0.0.1:6222", "  cluster:", "    name: gw", "    listen: 127.0.0.1:6222", routes),
			`config: line 6: broker.cluster.listen: address "127.0.0.1:6222" clashes with broker.nats_listen ("127.0.0.1:6222")`},
		{"no routes", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222"),
			`config: line 3: broker.cluster.routes: must list the route of every node of the cluster, this one's included (e.g. nats-route://10.0.0.1:6222)`},
		{"route scheme", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", "    routes:", "      - nats-route://10.0.0.1:6222", "      - http://10.0.0.2:6222"),
			`config: line 8: broker.cluster.routes[1]: route URL "http://10.0.0.2:6222": scheme "http" is not one of nats-route://, nats://, tls:// (want e.g. nats-route://10.0.0.1:6222)`},
		{"route port", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", "    routes: [nats-route://10.0.0.1:6222, 'nats-route://10.0.0.2']"),
			`config: line 6: broker.cluster.routes[1]: route URL "nats-route://10.0.0.2": want a port from 1 to 65535`},
		{"route path", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", "    routes: [nats-route://10.0.0.1:6222/x]"),
			`config: line 6: broker.cluster.routes[0]: route URL "nats-route://10.0.0.1:6222/x": nothing may follow host:port`},
		{"route duplicate", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", "    routes: [nats-route://10.0.0.1:6222, nats://10.0.0.1:6222]"),
			`config: line 6: broker.cluster.routes[1]: duplicate route "nats://10.0.0.1:6222" (also broker.cluster.routes[0])`},
		{"route password hidden", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", "    routes: ['http://u:secret@10.0.0.1:6222']"),
			`config: line 6: broker.cluster.routes[0]: route URL "http://u:xxxxx@10.0.0.1:6222": scheme "http" is not one of nats-route://, nats://, tls:// (want e.g. nats-route://10.0.0.1:6222)`},
		{"user without password", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", routes, "    user: route"),
			`config: line 3: broker.cluster: user and password must be set together`},
		{"tls without ca", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", routes,
			"    tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}"),
			`config: line 7: broker.cluster.tls.ca_file: missing (routes need cert_file, key_file and ca_file: each node verifies the other)`},
		{"tls file", clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", routes,
			"    tls: {cert_file: testdata/certs/nope.pem, key_file: testdata/certs/server.key, ca_file: testdata/certs/ca.pem}"),
			`config: line 7: broker.cluster.tls.cert_file: file "testdata/certs/nope.pem" does not exist`},
		{"leaf no remotes", clusterDoc("  leafnode: {remotes: []}"),
			`config: line 3: broker.leafnode.remotes: must list at least one hub (url: nats-leaf://hub:7422)`},
		{"leaf url", clusterDoc("  leafnode:", "    remotes:", "      - url: nats-route://hub:7422"),
			`config: line 5: broker.leafnode.remotes[0].url: leaf node URL "nats-route://hub:7422": scheme "nats-route" is not one of nats-leaf://, nats://, tls://, ws://, wss:// (want e.g. nats-leaf://10.0.0.1:7422)`},
		{"leaf two logins", clusterDoc("  leafnode:", "    remotes:", "      - {url: 'nats-leaf://u:p@hub:7422', credentials: testdata/psk.txt}"),
			`config: line 5: broker.leafnode.remotes[0]: credentials, user (in the url or the user key) and nkey_seed_file are alternatives: set one`},
		{"leaf credentials file", clusterDoc("  leafnode:", "    remotes:", "      - {url: 'nats-leaf://hub:7422', credentials: testdata/none.creds}"),
			`config: line 5: broker.leafnode.remotes[0].credentials: file "testdata/none.creds" does not exist`},
		{"leaf bad seed", clusterDoc("  leafnode:", "    remotes:", "      - {url: 'nats-leaf://hub:7422', nkey_seed_file: testdata/psk.txt}"),
			`config: line 5: broker.leafnode.remotes[0].nkey_seed_file: nkey seed file testdata/psk.txt: no user seed (a line starting with SU)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse succeeded\n%s", numbered(tc.in))
			}
			if err.Error() != tc.want {
				t.Fatalf("error:\n got %s\nwant %s\n%s", err, tc.want, numbered(tc.in))
			}
		})
	}
}

func TestClusterAccepted(t *testing.T) {
	in := clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", "    advertise: 10.0.0.1:6222",
		"    routes: [nats-route://10.0.0.1:6222, nats-route://10.0.0.2:6222, 'nats-route://u:p@10.0.0.3:6222']",
		"    user: route", "    password: secret",
		"    tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key, ca_file: testdata/certs/ca.pem}",
		"  leafnode:", "    remotes:", "      - {url: 'nats-leaf://hub:7422', nkey_seed_file: testdata/leaf.nk}",
		"      - {url: 'tls://hub2:7422', user: leaf, password: pw}", "    tls: {ca_file: testdata/certs/ca.pem}")
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("%v\n%s", err, numbered(in))
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	bc, err := c.BrokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cl := bc.Cluster; cl == nil || cl.Name != "gw" || len(cl.Routes) != 3 || cl.Username != "route" || cl.TLS == nil || cl.TLS.RootCAs == nil {
		t.Errorf("cluster = %+v", bc.Cluster)
	}
	if l := bc.Leaf; l == nil || len(l.Remotes) != 2 || l.Remotes[0].NKeySeedFile != "testdata/leaf.nk" || l.Remotes[1].Username != "leaf" || l.Remotes[1].TLS == nil {
		t.Errorf("leaf = %+v", bc.Leaf)
	}
}

func TestClusterWarnsWithoutOwnRoute(t *testing.T) {
	in := clusterDoc("  cluster:", "    name: gw", "    listen: 0.0.0.0:6222", "    routes: [nats-route://10.0.0.2:6333]")
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0].Error(), "broker.cluster.routes: no route has the port of broker.cluster.listen (6222)") {
		t.Errorf("warnings = %v", w)
	}
}

// fakeRoute serves one INFO line to whoever connects, as a route port does.
func fakeRoute(t *testing.T, name, cluster string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "INFO {\"server_id\":\"NABC\",\"server_name\":%q,\"cluster\":%q}\r\n", name, cluster)
			bufio.NewReader(c).ReadString('\n') // until the prober hangs up
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestCheckProbesRoutes: protogate validate (Check) dials the routes and
// fails one whose node already has this node's name, or another cluster
// name; one it cannot reach is a warning.
func TestCheckProbesRoutes(t *testing.T) {
	same := fakeRoute(t, "gw-1", "gw")
	other := fakeRoute(t, "gw-2", "gw")
	wrong := fakeRoute(t, "gw-3", "other")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	// This node's own listen address is not dialled (it could be this
	// node, running).
	own := fakeRoute(t, "gw-1", "gw")
	_, ownPort, _ := net.SplitHostPort(own)
	in := clusterDoc("  cluster:", "    name: gw", "    listen: 127.0.0.1:"+ownPort, "    routes:",
		"      - nats-route://"+own, "      - nats-route://"+other, "      - nats-route://"+same, "      - nats-route://"+wrong, "      - nats-route://"+closed)
	file := writeFile(t, "c.yaml", []byte(in))
	_, err = Check(file)
	if err == nil {
		t.Fatalf("Check succeeded\n%s", numbered(in))
	}
	want := fmt.Sprintf("config: %[1]s: line 9: broker.cluster.routes[2]: the node at %[2]s (server_id NABC) already has node.name \"gw-1\": every node of a cluster needs its own name\n"+
		"config: %[1]s: line 10: broker.cluster.routes[3]: the node at %[3]s (gw-3) is in cluster \"other\", not \"gw\" (broker.cluster.name): the nodes would not join", file, same, wrong)
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
	// Without the bad ones: the closed port is a warning.
	in = clusterDoc("  cluster:", "    name: gw", "    listen: 127.0.0.1:"+ownPort, "    routes:",
		"      - nats-route://"+own, "      - nats-route://"+other, "      - nats-route://"+closed)
	file = writeFile(t, "c.yaml", []byte(in))
	c, err := Check(file)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0].Error(), "line 9: broker.cluster.routes[2]: cannot check the node at "+closed) {
		t.Errorf("warnings = %v", w)
	}
	// Parse (protogate run) does not dial.
	if c, err := Parse([]byte(in)); err != nil || len(c.Warnings()) != 0 {
		t.Errorf("Parse: %v, warnings %v", err, c.Warnings())
	}
}
