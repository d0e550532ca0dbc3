package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/gateway"
)

// wait bounds every wait for a condition: generous, for a loaded machine.
const wait = 30 * time.Second

// fakeConn is a gateway.Claimant that finishes as soon as it is closed.
type fakeConn struct {
	handle    string
	discarded atomic.Bool
	kicked    atomic.Bool
	once      sync.Once
	done      chan struct{}
}

func newConn(handle string) *fakeConn { return &fakeConn{handle: handle, done: make(chan struct{})} }

func (c *fakeConn) Handle() string            { return c.handle }
func (c *fakeConn) Finished() <-chan struct{} { return c.done }
func (c *fakeConn) Discard()                  { c.discarded.Store(true); c.once.Do(func() { close(c.done) }) }
func (c *fakeConn) Kick()                     { c.kicked.Store(true); c.once.Do(func() { close(c.done) }) }
func (c *fakeConn) open() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

var _ gateway.Claimant = (*fakeConn)(nil)

// freePorts returns n ports free on 127.0.0.1 a moment ago.
func freePorts(t testing.TB, n int) []int {
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

// cluster is n embedded NATS servers joined by routes, with JetStream.
type cluster struct {
	t      testing.TB
	ports  []int
	dirs   []string
	js     bool
	srv    []*server.Server
	routes string
}

func newCluster(t testing.TB, n int, js bool) *cluster {
	cl := &cluster{t: t, ports: freePorts(t, n), js: js, srv: make([]*server.Server, n)}
	for i := range n {
		cl.dirs = append(cl.dirs, t.TempDir())
		if i > 0 {
			cl.routes += ","
		}
		cl.routes += "nats-route://127.0.0.1:" + strconv.Itoa(cl.ports[i])
	}
	t.Cleanup(func() {
		for i := range cl.srv {
			cl.stop(i)
		}
	})
	return cl
}

func (cl *cluster) start(i int) *server.Server {
	cl.t.Helper()
	opts := &server.Options{
		ServerName: fmt.Sprintf("n%d", i),
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoSigs:     true,
		JetStream:  cl.js,
		StoreDir:   cl.dirs[i],
		Cluster:    server.ClusterOpts{Name: "pg", Host: "127.0.0.1", Port: cl.ports[i]},
		Routes:     server.RoutesFromStr(cl.routes),
	}
	s, err := server.NewServer(opts)
	if err != nil {
		cl.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(wait) {
		cl.t.Fatalf("node %d did not start", i)
	}
	cl.srv[i] = s
	return s
}

func (cl *cluster) stop(i int) {
	if s := cl.srv[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		cl.srv[i] = nil
	}
}

func (cl *cluster) connect(i int) *nats.Conn {
	cl.t.Helper()
	nc, err := nats.Connect(cl.srv[i].ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		cl.t.Fatal(err)
	}
	cl.t.Cleanup(nc.Close)
	return nc
}

// registry is what the shared tests need of a cluster registry.
type registry interface {
	gateway.ClientRegistry
	gateway.ClientKicker
	Stats() Stats
	Close()
}

// kind builds the registries of one implementation on a running cluster.
type kind struct {
	name  string
	js    bool
	start func(t testing.TB, cfg Config) registry
	// ready waits until the registry answers claims.
	ready func(t testing.TB, r registry)
}

var kinds = []kind{
	{
		name: "kv", js: true,
		start: func(t testing.TB, cfg Config) registry {
			r, err := StartKV(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
		ready: func(t testing.TB, r registry) {
			waitFor(t, "kv registry ready", func() bool { return r.(*KV).Ready() })
		},
	},
	{
		name: "notices",
		start: func(t testing.TB, cfg Config) registry {
			r, err := StartNotices(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
		ready: func(t testing.TB, r registry) {
			waitFor(t, "notices registry hears both peers", func() bool { return len(r.(*Notices).Peers()) == 2 })
		},
	},
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startNodes starts a cluster of n nodes and a registry on each.
func startNodes(t testing.TB, k kind, n int) (*cluster, []registry) {
	cl := newCluster(t, n, k.js)
	for i := range n {
		cl.start(i)
	}
	regs := make([]registry, n)
	for i := range n {
		regs[i] = k.start(t, Config{Node: fmt.Sprintf("n%d", i), Conn: cl.connect(i), Replicas: min(3, n), Logger: slog.New(slog.DiscardHandler)})
		t.Cleanup(regs[i].Close)
	}
	for _, r := range regs {
		k.ready(t, r)
	}
	return cl, regs
}

func claim(t testing.TB, r registry, id string, c *fakeConn) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	release, err := r.Claim(ctx, id, c)
	if err != nil {
		t.Fatalf("claim %q as %s: %v", id, c.handle, err)
	}
	return release
}

// TestClusterRegistries runs the behaviours every cluster registry
// promises against each implementation.
func TestClusterRegistries(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			_, regs := startNodes(t, k, 3)
			a, b, c := regs[0], regs[1], regs[2]

			t.Run("TakeoverDiscardsBeforeClaimReturns", func(t *testing.T) {
				old, cur := newConn("a1"), newConn("b1")
				claim(t, a, "dev-1", old)
				claim(t, b, "dev-1", cur)
				// Discarded and finished before b's claim returned.
				if old.open() || !old.discarded.Load() {
					t.Fatal("the older connection on node a is still open after the claim on node b returned")
				}
				if !cur.open() {
					t.Fatal("the new connection was closed")
				}
			})

			t.Run("ReleaseKeepsNewerOwner", func(t *testing.T) {
				c1, c2, c3 := newConn("a2"), newConn("b2"), newConn("c2")
				rel1 := claim(t, a, "dev-2", c1)
				claim(t, b, "dev-2", c2)
				rel1() // the discarded one's release must not remove b's claim
				claim(t, c, "dev-2", c3)
				if c2.open() {
					t.Fatal("node b's connection survived a claim on node c: its claim was lost")
				}
			})

			t.Run("KickOnAnyNode", func(t *testing.T) {
				d := newConn("c3")
				claim(t, c, "dev-3", d)
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				found, err := a.Kick(ctx, "dev-3")
				if err != nil || !found {
					t.Fatalf("kick from node a: found %v, %v", found, err)
				}
				if d.open() || !d.kicked.Load() {
					t.Fatal("the connection on node c was not kicked")
				}
				if found, err := a.Kick(ctx, "nobody"); err != nil || found {
					t.Fatalf("kick of an unknown id: found %v, %v", found, err)
				}
			})

			t.Run("RacingClaimsLeaveOne", func(t *testing.T) {
				const ids = 50
				var wg sync.WaitGroup
				conns := make([][2]*fakeConn, ids)
				errs := make([][2]error, ids)
				for i := range ids {
					id := fmt.Sprintf("race-%d", i)
					conns[i] = [2]*fakeConn{newConn("ra" + strconv.Itoa(i)), newConn("rb" + strconv.Itoa(i))}
					for j, r := range []registry{a, b} {
						wg.Go(func() {
							ctx, cancel := context.WithTimeout(context.Background(), wait)
							defer cancel()
							_, errs[i][j] = r.Claim(ctx, id, conns[i][j])
						})
					}
				}
				wg.Wait()
				for i := range ids {
					// Exactly one survives: a claim that failed never
					// reached SUCCESS, and its connection counts as gone.
					alive := 0
					for j := range 2 {
						if errs[i][j] == nil && conns[i][j].open() {
							alive++
						}
					}
					if alive != 1 {
						t.Errorf("race-%d: %d connections hold the id (errors %v, %v)", i, alive, errs[i][0], errs[i][1])
					}
				}
			})

			if s := b.Stats(); s.Discarded == 0 || s.Claims == 0 {
				t.Errorf("node b's counters did not move: %+v", s)
			}
		})
	}
}

// TestKVNodeLoss: a node that dies leaves claims that never block a claim
// elsewhere, once the cluster has elected a new leader for the bucket.
func TestKVNodeLoss(t *testing.T) {
	cl, regs := startNodes(t, kinds[0], 3)
	gone := newConn("a1")
	claim(t, regs[0], "dev", gone)
	regs[0].Close()
	cl.stop(0)
	cur := newConn("b1")
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := regs[1].Claim(ctx, "dev", cur)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no claim succeeded after node loss: %v", err)
		}
	}
}

// TestKVUnavailable: without a quorum, reject refuses a claim within the
// claim timeout, and local allows it and makes it cluster-wide once the
// cluster is there, where a newer claim wins.
func TestKVUnavailable(t *testing.T) {
	cl := newCluster(t, 3, true)
	cl.start(0)
	log := slog.New(slog.DiscardHandler)
	rej, err := StartKV(Config{Node: "n0", Conn: cl.connect(0), ClaimTimeout: 300 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rej.Close)
	start := time.Now()
	_, err = rej.Claim(context.Background(), "x", newConn("r1"))
	if err == nil {
		t.Fatal("a claim without a quorum succeeded under reject")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the rejected claim took %v; claim_timeout is 300ms", d)
	}
	if s := rej.Stats(); s.Unavailable != 1 {
		t.Errorf("unavailable = %d, want 1", s.Unavailable)
	}

	loc, err := StartKV(Config{Node: "n0b", Conn: cl.connect(0), ClaimTimeout: 300 * time.Millisecond, OnUnavailable: Allow, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(loc.Close)
	early := newConn("l1")
	if _, err := loc.Claim(context.Background(), "y", early); err != nil {
		t.Fatalf("local policy refused a claim: %v", err)
	}
	cl.start(1)
	cl.start(2)
	waitFor(t, "the locally allowed claim made cluster-wide", func() bool { return loc.Stats().Reclaimed == 1 })
	// The claim is in the bucket now: a claim on another node discards it.
	other, err := StartKV(Config{Node: "n1", Conn: cl.connect(1), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	waitFor(t, "registry on n1", other.Ready)
	claim(t, other, "y", newConn("o1"))
	if early.open() {
		t.Fatal("the reclaimed connection survived a newer claim")
	}
}
