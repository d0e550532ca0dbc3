package broker

// This file joins the embedded server to other servers: a cluster of
// protogate nodes (routes), and an existing NATS as a leaf node.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// ClusterConfig joins the embedded server to a cluster of protogate nodes
// (NATS routes). Every node of a cluster has the same Name and the same
// Routes, each node's own route included (nats-server ignores the route
// to itself), and a unique, stable Config.Node.
//
// A clustered node always listens for NATS clients (nats-server starts
// no routes without a client listener, nats-server#5174): with an empty
// Config.NATSListen it listens on 127.0.0.1 with a random port. It runs
// JetStream under Config.DataDir/nats, clustered with the other nodes.
type ClusterConfig struct {
	// Name is the cluster name, the same on every node: letters, digits,
	// '_' and '-' (CheckClusterName). Required.
	Name string
	// Listen is the host:port routes from other nodes connect to (port 0
	// picks a free port). Required.
	Listen string
	// Advertise is the host:port other nodes are told to reach this one
	// on, when Listen is not reachable as is (NAT, 0.0.0.0). Default: "".
	Advertise string
	// Routes are the route URLs of every node of the cluster, this one
	// included: nats-route://host:port (or nats:// or tls://), with
	// optional user info (CheckRouteURL).
	Routes []string
	// Username and Password, when set, are required of the routes that
	// connect to this node, and sent on the routes it opens whose URL
	// has no user info. Default: none.
	Username, Password string
	// TLS, when set, is required on routes, in both directions: its
	// Certificates are presented, ClientCAs verify the peers that
	// connect, RootCAs the peers this node connects to. Every node must
	// have TLS, or none. Default: nil.
	TLS *tls.Config
	// PoolSize is the number of route connections between two nodes,
	// the same on every node. Default: nats-server's (3).
	PoolSize int
}

// LeafConfig joins the embedded server, as a leaf node, to an existing
// NATS server or cluster (the hub).
type LeafConfig struct {
	// Remotes are the hubs to connect to. At least one.
	Remotes []LeafRemote
}

// LeafRemote is one hub of a LeafConfig.
type LeafRemote struct {
	// URLs are the hub's leaf node URLs: nats-leaf://host:port (or
	// nats://, tls://), with optional user info. At least one.
	URLs []string
	// Credentials is a NATS credentials file (JWT and seed). Default: "".
	Credentials string
	// Username and Password log in with a user name, when the URLs carry
	// none. Default: none.
	Username, Password string
	// NKeySeedFile is a file holding a user nkey seed ("SU..."), with
	// which the node signs the hub's nonce. Default: "".
	NKeySeedFile string
	// TLS, when set, makes the connection TLS. Default: nil.
	TLS *tls.Config
}

// clusterNameRE is what CheckClusterName accepts.
var clusterNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// CheckClusterName returns an error when name cannot be a cluster name:
// empty, or with characters other than letters, digits, '_' and '-'
// (nats-server refuses spaces; '.' would not be a valid JetStream domain).
func CheckClusterName(name string) error {
	if !clusterNameRE.MatchString(name) {
		return fmt.Errorf("broker: invalid cluster name %q (use letters, digits, '_' and '-')", name)
	}
	return nil
}

// CheckRouteURL parses a route URL: nats-route://, nats:// or tls://
// with a host and a port, and nothing after the port.
func CheckRouteURL(s string) (*url.URL, error) {
	return checkURL(s, "route", "nats-route", "nats", "tls")
}

// CheckLeafURL parses a leaf node URL: nats-leaf://, nats://, tls://,
// ws:// or wss:// with a host (and a port, but for ws and wss).
func CheckLeafURL(s string) (*url.URL, error) {
	return checkURL(s, "leaf node", "nats-leaf", "nats", "tls", "ws", "wss")
}

func checkURL(s, what string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("broker: invalid %s URL %q: %w", what, redact(s), err)
	}
	want := strings.Join(schemes, "://, ") + "://"
	switch {
	case !slices.Contains(schemes, u.Scheme):
		return nil, fmt.Errorf("broker: %s URL %q: scheme %q is not one of %s (want e.g. %s://10.0.0.1:%s)",
			what, u.Redacted(), u.Scheme, want, schemes[0], map[string]string{"route": "6222", "leaf node": "7422"}[what])
	case u.Hostname() == "":
		return nil, fmt.Errorf("broker: %s URL %q has no host", what, u.Redacted())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("broker: %s URL %q: nothing may follow host:port", what, u.Redacted())
	}
	if p := u.Port(); p != "" || !strings.HasPrefix(u.Scheme, "ws") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("broker: %s URL %q: want a port from 1 to 65535", what, u.Redacted())
		}
	}
	return u, nil
}

// redact hides the password of a URL that does not parse.
func redact(s string) string {
	if i := strings.Index(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "***" + s[i:]
		}
	}
	return s
}

// clusterSetup configures opts for cfg.Cluster and cfg.Leaf. It returns
// the route URLs as given (deduplicated, for NodeCount).
func clusterSetup(cfg *Config, opts *server.Options) (routes []*url.URL, err error) {
	if c := cfg.Cluster; c != nil {
		if err := CheckClusterName(c.Name); err != nil {
			return nil, err
		}
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("broker: cluster listen: %w", err)
		}
		opts.Cluster = server.ClusterOpts{
			Name: c.Name, Host: host, Port: port,
			Advertise: c.Advertise,
			Username:  c.Username, Password: c.Password,
			PoolSize: c.PoolSize,
			// The solicited side of a route must not time out on a
			// loaded machine.
			AuthTimeout: 5,
		}
		if c.TLS != nil {
			opts.Cluster.TLSConfig = c.TLS.Clone()
			opts.Cluster.TLSTimeout = 5
		}
		seen := map[string]bool{}
		for _, r := range c.Routes {
			u, err := CheckRouteURL(r)
			if err != nil {
				return nil, err
			}
			key := strings.ToLower(u.Host)
			if seen[key] {
				continue
			}
			seen[key] = true
			routes = append(routes, u)
			su := *u
			if su.User == nil && c.Username != "" {
				su.User = url.UserPassword(c.Username, c.Password)
			}
			opts.Routes = append(opts.Routes, &su)
		}
		// nats-server retries routes every second, and would log each
		// failed attempt of a route that was up: once a minute is enough.
		opts.ConnectErrorReports = 60
		opts.ReconnectErrorReports = 60
		opts.JetStream = true
		opts.StoreDir = filepath.Join(cfg.DataDir, "nats")
	}
	if l := cfg.Leaf; l != nil {
		if len(l.Remotes) == 0 {
			return nil, errors.New("broker: leafnode: no remotes")
		}
		for i, r := range l.Remotes {
			ro := &server.RemoteLeafOpts{}
			if len(r.URLs) == 0 {
				return nil, fmt.Errorf("broker: leafnode remotes[%d]: no url", i)
			}
			for _, s := range r.URLs {
				u, err := CheckLeafURL(s)
				if err != nil {
					return nil, fmt.Errorf("broker: leafnode remotes[%d]: %w", i, err)
				}
				if u.User == nil && r.Username != "" {
					u.User = url.UserPassword(r.Username, r.Password)
				}
				ro.URLs = append(ro.URLs, u)
			}
			ro.Credentials = r.Credentials
			if r.NKeySeedFile != "" {
				kp, err := readSeed(r.NKeySeedFile)
				if err != nil {
					return nil, fmt.Errorf("broker: leafnode remotes[%d]: %w", i, err)
				}
				// nats-server signs the hub's nonce with the seed it
				// is given (RemoteLeafOpts.Nkey holds a seed; a
				// SignatureCB would send a JWT, which a hub without
				// JWT auth refuses).
				seed, err := kp.Seed()
				if err == nil {
					ro.Nkey = string(seed) // a copy: Wipe clears seed
				}
				kp.Wipe()
				if err != nil {
					return nil, fmt.Errorf("broker: leafnode remotes[%d]: %w", i, err)
				}
			}
			if r.TLS != nil {
				ro.TLS, ro.TLSConfig, ro.TLSTimeout = true, r.TLS.Clone(), 5
			}
			opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, ro)
		}
		opts.LeafNode.ReconnectInterval = time.Second
		if opts.JetStream {
			// A leaf's JetStream would otherwise join the hub's (if it
			// has one): give it a domain of its own (the cluster's,
			// shared by its nodes), and MQTT sessions stay there.
			d := cfg.Node
			if cfg.Cluster != nil {
				d = cfg.Cluster.Name
			}
			opts.JetStreamDomain = strings.ReplaceAll(d, ".", "-")
			opts.MQTT.JsDomain = opts.JetStreamDomain
		}
	}
	if cfg.Cluster != nil && opts.DontListen {
		// nats-server starts no routes without a client listener
		// (nats-server#5174).
		opts.DontListen = false
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	}
	return routes, nil
}

// readSeed reads a user nkey seed from a file (the first line starting
// with "SU", or the whole file).
func readSeed(file string) (nkeys.KeyPair, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("nkey seed file: %w", err)
	}
	defer clear(data)
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "SU") {
			kp, err := nkeys.FromSeed([]byte(l))
			if err != nil {
				return nil, fmt.Errorf("nkey seed file %s: %w", file, err)
			}
			return kp, nil
		}
	}
	return nil, fmt.Errorf("nkey seed file %s: no user seed (a line starting with SU)", file)
}

// CheckNKeySeedFile returns an error when file holds no user nkey seed.
func CheckNKeySeedFile(file string) error {
	kp, err := readSeed(file)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	kp.Wipe()
	return nil
}

// ClusterState is what a node sees of its cluster and leaf connections.
type ClusterState struct {
	// Name is the cluster name, "" when the node is not clustered.
	Name string `json:"name"`
	// Node is this node's name.
	Node string `json:"node"`
	// Listen is the address routes connect to, "" without a cluster.
	Listen string `json:"listen"`
	// Expected is the number of nodes of the cluster, this one included
	// (NodeCount).
	Expected int `json:"expected"`
	// Peers are the names of the nodes this one has a route to, sorted.
	Peers []string `json:"peers"`
	// Routes are the configured route URLs (passwords hidden), but this
	// node's own.
	Routes []string `json:"routes"`
	// Unreachable are the Routes this node has no connection to, while
	// fewer than Expected-1 peers are connected: those whose route port
	// cannot be reached, or answers with a name that is not a peer's.
	Unreachable []string `json:"unreachable"`
	// Leafs are the leaf node connections to hubs.
	Leafs []LeafState `json:"leafs"`
	// LeafRemotes is the number of configured leaf remotes.
	LeafRemotes int `json:"leaf_remotes"`
	// JetStreamLeader is the node leading the clustered JetStream
	// meta group, "" when there is none (yet, or without a cluster).
	JetStreamLeader string `json:"jetstream_leader"`
}

// LeafState is one connected leaf node connection.
type LeafState struct {
	// Name is the hub server's name.
	Name string `json:"name"`
	// Addr is its host:port.
	Addr string `json:"addr"`
}

// NodeCount returns the number of nodes of the cluster: the configured
// routes, deduplicated by host:port, this node's own included; 1 without
// a cluster. It is safe for concurrent use.
func (b *Broker) NodeCount() int {
	if b.cfg.Cluster == nil {
		return 1
	}
	n := len(b.routes)
	if !b.selfListed {
		n++
	}
	return max(n, 1)
}

// Cluster returns the cluster and leaf node state the embedded server
// sees now. It is safe for concurrent use.
func (b *Broker) Cluster() ClusterState {
	st := ClusterState{Node: b.cfg.Node, Expected: b.NodeCount(), Peers: []string{}, Routes: []string{}, Unreachable: []string{}, Leafs: []LeafState{}}
	if b.cfg.Leaf != nil {
		st.LeafRemotes = len(b.cfg.Leaf.Remotes)
		if lz, err := b.ns.Leafz(nil); err == nil {
			for _, l := range lz.Leafs {
				st.Leafs = append(st.Leafs, LeafState{Name: l.Name, Addr: net.JoinHostPort(l.IP, strconv.Itoa(l.Port))})
			}
		}
	}
	if b.cfg.Cluster == nil {
		return st
	}
	st.Name = b.ns.ClusterName()
	if a := b.ClusterAddr(); a != nil {
		st.Listen = a.String()
	}
	// A route this node opened connects to the peer's listen address,
	// which names the peer; a route the peer opened does not.
	byAddr := map[string]string{}
	peers := map[string]bool{}
	if rz, err := b.ns.Routez(nil); err == nil {
		for _, r := range rz.Routes {
			if r.RemoteName != "" {
				peers[r.RemoteName] = true
			}
			if r.DidSolicit {
				byAddr[net.JoinHostPort(r.IP, strconv.Itoa(r.Port))] = r.RemoteName
			}
		}
	}
	for p := range peers {
		st.Peers = append(st.Peers, p)
	}
	slices.Sort(st.Peers)
	missing := len(st.Peers) < st.Expected-1
	for i, u := range b.routes {
		if b.self[i] {
			continue
		}
		st.Routes = append(st.Routes, u.Redacted())
		if missing && !peers[b.routeName(u, byAddr)] {
			st.Unreachable = append(st.Unreachable, u.Redacted())
		}
	}
	if b.ns.JetStreamIsClustered() {
		if jz, err := b.ns.Jsz(&server.JSzOptions{LeaderOnly: false}); err == nil && jz.Meta != nil {
			st.JetStreamLeader = jz.Meta.Leader
		}
	}
	return st
}

// routeName returns the name of the node at route u: that of the route
// this node opened to it, else what the route port says in its INFO
// (asked at most every probeEvery, or probeFailedEvery after a failure),
// or "" when it cannot be reached.
func (b *Broker) routeName(u *url.URL, byAddr map[string]string) string {
	if ips, err := net.LookupIP(u.Hostname()); err == nil {
		for _, ip := range ips {
			if name := byAddr[net.JoinHostPort(ip.String(), u.Port())]; name != "" {
				return name
			}
		}
	}
	b.probeMu.Lock()
	defer b.probeMu.Unlock()
	if p, ok := b.probed[u.Host]; ok && (p.name != "" && time.Since(p.at) < probeEvery || time.Since(p.at) < probeFailedEvery) {
		return p.name
	}
	info, err := ProbeRoute(u.Host, probeTimeout)
	name := ""
	if err == nil {
		name = info.Name
	}
	if b.probed == nil {
		b.probed = map[string]probed{}
	}
	b.probed[u.Host] = probed{name: name, at: time.Now()}
	return name
}

// probeEvery (probeFailedEvery after a failure) and probeTimeout bound
// how often and how long Cluster asks a peer's route port for its name.
const (
	probeEvery       = 5 * time.Second
	probeFailedEvery = time.Second
	probeTimeout     = 500 * time.Millisecond
)

type probed struct {
	name string
	at   time.Time
}

// RouteInfo is what a route port says first (INFO {...}).
type RouteInfo struct {
	// ID and Name are the server's id and name (a protogate node's
	// node.name).
	ID   string `json:"server_id"`
	Name string `json:"server_name"`
	// Cluster is its cluster name.
	Cluster string `json:"cluster"`
}

// ProbeRoute dials the route port at hostport and reads its INFO line,
// within timeout. It is safe for concurrent use.
func ProbeRoute(hostport string, timeout time.Duration) (RouteInfo, error) {
	conn, err := net.DialTimeout("tcp", hostport, timeout)
	if err != nil {
		return RouteInfo{}, fmt.Errorf("broker: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReaderSize(conn, 64<<10).ReadString('\n')
	if err != nil {
		return RouteInfo{}, fmt.Errorf("broker: no INFO from %s: %w", hostport, err)
	}
	rest, ok := strings.CutPrefix(line, "INFO ")
	if !ok {
		return RouteInfo{}, fmt.Errorf("broker: %s is not a NATS route port: it sent %.40q", hostport, line)
	}
	var info RouteInfo
	if err := json.Unmarshal([]byte(rest), &info); err != nil {
		return RouteInfo{}, fmt.Errorf("broker: %s is not a NATS route port: bad INFO: %w", hostport, err)
	}
	return info, nil
}

// isSelf reports whether route u is this node's own: its port is the
// cluster port and its host one of this machine's addresses.
func (b *Broker) isSelf(u *url.URL) bool {
	a := b.ns.ClusterAddr()
	if a == nil || u.Port() != strconv.Itoa(a.Port) {
		return false
	}
	if adv := b.cfg.Cluster.Advertise; adv != "" && strings.EqualFold(adv, u.Host) {
		return true
	}
	ips, err := net.LookupIP(u.Hostname())
	if err != nil {
		return false
	}
	local := localIPs()
	for _, ip := range ips {
		if ip.IsLoopback() || local[ip.String()] || (!a.IP.IsUnspecified() && a.IP.Equal(ip)) {
			return true
		}
	}
	return false
}

var (
	localOnce sync.Once
	localSet  map[string]bool
)

// localIPs returns the addresses of this machine's interfaces.
func localIPs() map[string]bool {
	localOnce.Do(func() {
		localSet = map[string]bool{}
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				localSet[n.IP.String()] = true
			}
		}
	})
	return localSet
}

// ClusterAddr returns the address routes connect to, or nil without a
// cluster.
func (b *Broker) ClusterAddr() net.Addr {
	if b.cfg.Cluster == nil {
		return nil
	}
	if a := b.ns.ClusterAddr(); a != nil {
		return a
	}
	return nil
}

// routeProblem matches the nats-server log lines about route and leaf
// node connections that an operator must see: name and cluster
// conflicts, TLS and authentication failures.
var routeProblem = regexp.MustCompile(`(?i)(duplicate (server )?name|cluster name conflict|cluster name .* does not match|tls|authorization|authentication|handshake)`)

// connPrefix matches the "ip:port - rid:N - " prefix of a connection's
// log lines, whose port and id change with every attempt.
var connPrefix = regexp.MustCompile(`:\d+ - (rid|lid|cid):\d+`)

// attemptRE matches the attempt counter of connect errors.
var attemptRE = regexp.MustCompile(`\(attempt \d+\)`)

// logLimiter lets one log line through per key and interval, and counts
// the ones it holds back. It is safe for concurrent use.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]limited
}

type limited struct {
	at         time.Time
	suppressed int
}

// allow reports whether msg may be logged now, and how many like it were
// held back since the last one.
func (l *logLimiter) allow(msg string) (bool, int) {
	key := attemptRE.ReplaceAllString(connPrefix.ReplaceAllString(msg, ""), "")
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]limited{}
	}
	e, ok := l.last[key]
	if ok && now.Sub(e.at) < l.every {
		e.suppressed++
		l.last[key] = e
		return false, 0
	}
	if len(l.last) > 1000 {
		clear(l.last)
	}
	l.last[key] = limited{at: now}
	return true, e.suppressed
}
