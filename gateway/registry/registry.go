// Package registry keeps a client id on one connection across the nodes of
// a protogate cluster: the gateway.ClientRegistry implementations.
//
//   - Local is a single node: the gateway's own map is enough.
//   - KV keeps the owner of every client id in a replicated JetStream
//     key-value bucket and changes it with compare-and-set, so that one
//     claim wins however many race; it needs JetStream with a quorum (3 or
//     more nodes for 3 replicas).
//   - Notices needs no JetStream: a node that claims an id asks every
//     other node, over core NATS, to give it up, and a deterministic
//     tie-break settles claims that cross. It suits 2-node clusters and leaf
//     nodes, at the price of core NATS's at-most-once delivery.
//
// Both cluster implementations discard the older connection, through a
// request to the node that holds it, before the newer one's Authenticate
// returns, as EMQX does. The subjects they use start with "$PG.", which no
// device can publish to (device topics never map to "$" subjects) and which
// the broker denies to its outside NATS and MQTT clients.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/gateway"
)

// Policy is what a claim does when the cluster cannot answer within the
// claim timeout.
type Policy string

const (
	// Reject fails the Authenticate: no duplicate can appear, but no
	// device can log in while the registry is down (CP; nats-server's MQTT
	// behaves so).
	Reject Policy = "reject"
	// Allow accepts the client with uniqueness on this node only, and
	// claims the id cluster-wide once the registry is back, where the newer
	// claim wins (AP; EMQX behaves so). It is the config's "local".
	Allow Policy = "local"
)

// Config configures a cluster registry.
type Config struct {
	// Node names this node; unique in the cluster. Required.
	Node string
	// Conn is a connection to the embedded NATS server with the rights to
	// use the "$PG." subjects and, for KV, JetStream. Required; the
	// caller closes it after Close.
	Conn *nats.Conn
	// ClaimTimeout bounds one claim when the caller's context does not end
	// sooner. Default: 2s.
	ClaimTimeout time.Duration
	// OnUnavailable is what a claim does past its time. Default: Reject.
	OnUnavailable Policy
	// Replicas is the number of copies of the KV bucket, 1 to 5 (KV
	// only). Default: 3.
	Replicas int
	// Logger receives the registry's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Node == "" {
		return errors.New("registry: node name is empty")
	}
	if c.Conn == nil {
		return errors.New("registry: no nats connection")
	}
	if c.ClaimTimeout <= 0 {
		c.ClaimTimeout = 2 * time.Second
	}
	switch c.OnUnavailable {
	case "":
		c.OnUnavailable = Reject
	case Reject, Allow:
	default:
		return fmt.Errorf("registry: unknown on_unavailable policy %q", c.OnUnavailable)
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Replicas > 5 {
		return fmt.Errorf("registry: %d replicas; at most 5", c.Replicas)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// ErrUnavailable is wrapped by the errors of claims that could not reach
// the registry in time under the Reject policy.
var ErrUnavailable = errors.New("registry: client id registry unavailable")

// Stats are a registry's counters; all only grow.
type Stats struct {
	Claims      uint64 // claims that succeeded cluster-wide
	Takeovers   uint64 // claims that discarded a connection on another node
	Discarded   uint64 // connections of this node discarded by another's claim
	Unavailable uint64 // claims past their time (rejected, or allowed locally)
	Reclaimed   uint64 // claims allowed locally and later made cluster-wide
}

type counters struct {
	claims, takeovers, discarded, unavailable, reclaimed atomic.Uint64
}

func (c *counters) stats() Stats {
	return Stats{
		Claims: c.claims.Load(), Takeovers: c.takeovers.Load(), Discarded: c.discarded.Load(),
		Unavailable: c.unavailable.Load(), Reclaimed: c.reclaimed.Load(),
	}
}

// Local is the registry of a single node: every claim succeeds at once, and
// the gateway keeps the id on one of its connections. It is the zero value
// of a ClientRegistry for code that wants one.
type Local struct{}

// Claim implements gateway.ClientRegistry.
func (Local) Claim(context.Context, string, gateway.Claimant) (func(), error) { return func() {}, nil }

// keyOf is the key under which clientID is registered: client ids may hold
// any byte, keys and subject tokens may not.
func keyOf(clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return hex.EncodeToString(sum[:20])
}

// nodeToken is node as one subject token: node names may hold '.'.
func nodeToken(node string) string { return hex.EncodeToString([]byte(node)) }

// Subjects of the requests one node sends another.
func discardSubject(node string) string { return "$PG.reg." + nodeToken(node) + ".discard" }
func kickSubject(node string) string    { return "$PG.reg." + nodeToken(node) + ".kick" }

// owner is who holds a client id: the value of a KV entry, and the body of
// a notice.
type owner struct {
	ClientID string `json:"clientid"`
	Node     string `json:"node"`
	Epoch    string `json:"epoch"` // the node's start: a restarted node holds nothing
	Conn     string `json:"conn"`  // the connection's handle on its node
	Since    int64  `json:"since"` // claim time, Unix ns (notices: hybrid logical clock)
}

// held is a claim of this node.
type held struct {
	id    string
	key   string
	c     gateway.Claimant
	since int64

	// Guarded by the registry's mu.
	rev     uint64 // KV revision of the claim once written
	foreign uint64 // highest revision by another node seen while in flight
	lost    bool   // discarded by a newer claim elsewhere
	pending bool   // allowed locally; to be claimed cluster-wide
	// claimed is set once Claim returned it: its connection may have
	// been told SUCCESS. Before, discarding it must not wait for the
	// connection to finish: it is inside Authenticate, waiting for this
	// very claim, which may wait for the node asking (two claims that
	// cross would each wait for the other until they time out).
	claimed bool
}

// request is a discard or kick request: the client id's key and the
// connection the requester found holding it.
type request struct {
	Key  string `json:"key"`
	Conn string `json:"conn"`
	// Since is the requester's claim (notices): an older one is refused.
	Since int64  `json:"since,omitempty"`
	Node  string `json:"node,omitempty"`
	// Wait is how long, in ms, the requester can wait for the connection
	// to finish before its answer comes too late (see waitBudget).
	Wait int64 `json:"wait,omitempty"`
}

// waitBudget is the Wait of a request sent under ctx: half of what is left
// of it (the answer still has to travel), and at most kickWait. A node
// whose connection takes longer to finish answers when this is spent: the
// connection is closing and can no longer publish, and a claim that timed
// out waiting for it would leave the id to nobody.
func waitBudget(ctx context.Context) int64 {
	d := kickWait
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/2)
	}
	return max(d.Milliseconds(), 1)
}

// finishCtx bounds a wait for a discarded connection by what the request
// allows.
func finishCtx(parent context.Context, req request) (context.Context, context.CancelFunc) {
	d := kickWait
	if req.Wait > 0 {
		d = min(d, time.Duration(req.Wait)*time.Millisecond)
	}
	return context.WithTimeout(parent, d)
}

// reply answers a request.
type reply struct {
	// Found is true when this node held the key (and has let it go).
	Found bool `json:"found"`
	// Keep is true when this node keeps the key: its claim is newer
	// (notices' tie-break).
	Keep bool `json:"keep,omitempty"`
}

// kickWait bounds how long a request waits for the connection it closes to
// finish: EMQX's T_KICK.
const kickWait = 5 * time.Second

// waitFinished waits for c to finish, at most until ctx ends.
func waitFinished(ctx context.Context, c gateway.Claimant) {
	select {
	case <-c.Finished():
	case <-ctx.Done():
	}
}

// respond sends v as the reply to m, if m wants one.
func respond(m *nats.Msg, v reply) {
	if m.Reply == "" {
		return
	}
	b, _ := json.Marshal(v)
	_ = m.Respond(b)
}

// ask sends a request to subject and decodes the reply. A node that is
// gone has no subscription, and NATS says so at once (no responders).
func ask(ctx context.Context, nc *nats.Conn, subject string, req request) (reply, error) {
	req.Wait = waitBudget(ctx)
	b, err := json.Marshal(req)
	if err != nil {
		return reply{}, err
	}
	m, err := nc.RequestWithContext(ctx, subject, b)
	if err != nil {
		return reply{}, err
	}
	var r reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return reply{}, fmt.Errorf("registry: bad reply from %s: %w", subject, err)
	}
	return r, nil
}

// workers owns the goroutines of a registry: its loops and the request
// handlers, which may wait for a connection to finish and so do not run on
// the NATS subscription's goroutine.
type workers struct {
	mu      sync.Mutex
	closing bool // guarded by mu
	wg      sync.WaitGroup
}

// spawn runs f on a goroutine of its own, unless the registry is closing.
func (w *workers) spawn(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f()
	}()
}

// close refuses new goroutines; wait waits for those running, which the
// caller has told to stop.
func (w *workers) close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
}

func (w *workers) wait() { w.wg.Wait() }

// claims is the bookkeeping both cluster registries share: this node's
// claims by key.
type claims struct {
	mu   sync.Mutex
	held map[string]*held
}

// add records a claim of c, returning the claim it replaces on this node.
func (cs *claims) add(h *held) *held {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.held == nil {
		cs.held = make(map[string]*held)
	}
	prev := cs.held[h.key]
	cs.held[h.key] = h
	return prev
}

// remove forgets h, unless a newer claim replaced it; it reports whether h
// was still the claim of its key.
func (cs *claims) remove(h *held) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.held[h.key] != h {
		return false
	}
	delete(cs.held, h.key)
	return true
}

// get returns the claim of key, if any.
func (cs *claims) get(key string) *held {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.held[key]
}

// lose marks h lost and discards its connection: a newer claim elsewhere
// took its id. It reports whether the connection may have been told
// SUCCESS, and is worth waiting for (see held.claimed).
func (cs *claims) lose(h *held, ctr *counters) (claimed bool) {
	cs.mu.Lock()
	already := h.lost
	h.lost = true
	claimed = h.claimed
	if cs.held[h.key] == h {
		delete(cs.held, h.key)
	}
	cs.mu.Unlock()
	if !already {
		ctr.discarded.Add(1)
		h.c.Discard()
	}
	return claimed
}

// confirm marks h claimed, unless it was lost meanwhile; it reports
// whether it was not.
func (cs *claims) confirm(h *held) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if h.lost {
		return false
	}
	h.claimed = true
	return true
}

// handleKick answers a kick request for a connection of this node.
func (cs *claims) handleKick(ctx context.Context, m *nats.Msg) {
	var req request
	if json.Unmarshal(m.Data, &req) != nil {
		return
	}
	h := cs.get(req.Key)
	if h == nil {
		respond(m, reply{})
		return
	}
	h.c.Kick()
	ctx, cancel := finishCtx(ctx, req)
	defer cancel()
	waitFinished(ctx, h.c)
	respond(m, reply{Found: true})
}
