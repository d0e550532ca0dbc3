package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/protogate/protogate/gateway"
)

// Buckets of the KV registry.
const (
	// ClientsBucket maps the key of a client id to its owner.
	ClientsBucket = "PG_CLIENTS"
	// NodesBucket holds one key per live node, renewed every
	// nodeHeartbeat and gone nodeTTL after its node stopped renewing it.
	NodesBucket = "PG_NODES"

	nodeHeartbeat = 3 * time.Second
	nodeTTL       = 10 * time.Second
	// casTries bounds the compare-and-set rounds of one claim that other
	// nodes keep winning.
	casTries = 4
)

// KV is the JetStream key-value registry. Its buckets are kept in memory,
// replicated (Config.Replicas): connections do not survive a restart of
// the whole cluster, and neither need their claims. It is safe for
// concurrent use; create it with StartKV and stop it with Close.
type KV struct {
	cfg   Config
	epoch string
	nc    *nats.Conn
	js    jetstream.JetStream
	ctr   counters
	cs    claims

	ready   chan struct{} // closed once both buckets are bound
	clients jetstream.KeyValue
	nodes   jetstream.KeyValue

	releases chan *held // claims to delete from the bucket
	subs     []*nats.Subscription
	ctx      context.Context
	cancel   context.CancelFunc
	w        workers
}

var (
	_ gateway.ClientRegistry = (*KV)(nil)
	_ gateway.ClientKicker   = (*KV)(nil)
)

// StartKV starts a KV registry. It returns at once: the buckets are created
// (or bound) in the background, and claims before that follow
// Config.OnUnavailable.
func StartKV(cfg Config) (*KV, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var e [8]byte
	rand.Read(e[:])
	r := &KV{
		cfg:      cfg,
		epoch:    hex.EncodeToString(e[:]),
		nc:       cfg.Conn,
		js:       js,
		ready:    make(chan struct{}),
		releases: make(chan *held, 4096),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for subject, fn := range map[string]nats.MsgHandler{
		discardSubject(cfg.Node): func(m *nats.Msg) { r.w.spawn(func() { r.handleDiscard(m) }) },
		kickSubject(cfg.Node):    func(m *nats.Msg) { r.w.spawn(func() { r.cs.handleKick(r.ctx, m) }) },
	} {
		s, err := r.nc.Subscribe(subject, fn)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("registry: subscribe: %w", err)
		}
		r.subs = append(r.subs, s)
	}
	r.w.spawn(r.bind)
	r.w.spawn(r.releaseLoop)
	return r, nil
}

// Close stops the registry. Claims of this node stay in the bucket until
// other nodes claim their ids: a stale claim never blocks a claim.
func (r *KV) Close() {
	r.w.close()
	r.cancel()
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
	r.w.wait()
}

// Stats returns the registry's counters.
func (r *KV) Stats() Stats { return r.ctr.stats() }

// Ready reports whether the buckets are bound.
func (r *KV) Ready() bool {
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

// bind creates or binds the buckets, retrying until it succeeds (the
// cluster may still be forming), then keeps this node's liveness key,
// watches claims and claims what was allowed locally.
func (r *KV) bind() {
	// A request to JetStream's API waits, unanswered, while the cluster
	// elects its meta leader: short tries, longer as they fail, find the
	// leader soon after it is there.
	backoff, try := 250*time.Millisecond, time.Second
	for {
		err := r.bindOnce(try)
		if err == nil {
			break
		}
		r.cfg.Logger.Debug("registry: buckets not ready; retrying", "err", err, "in", backoff)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff, try = min(2*backoff, time.Second), min(2*try, 5*time.Second)
	}
	close(r.ready)
	r.cfg.Logger.Info("registry: client id registry ready", "bucket", ClientsBucket, "replicas", r.cfg.Replicas)
	r.w.spawn(r.watch)
	t := time.NewTicker(nodeHeartbeat)
	defer t.Stop()
	for {
		r.heartbeat()
		r.reclaim()
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *KV) bindOnce(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	// The clients bucket is the stream a KV bucket is, made here rather
	// than by CreateOrUpdateKeyValue for one setting: no direct gets. A
	// direct get may be answered by a follower that has not applied the
	// last write yet (nats-server#4710), and a claim that reads a stale
	// owner retries its compare-and-set until it gives up; reads from the
	// stream leader see every write that succeeded.
	if _, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              "KV_" + ClientsBucket,
		Description:       "protogate: the node and connection holding each client id",
		Subjects:          []string{"$KV." + ClientsBucket + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.MemoryStorage,
		Replicas:          r.cfg.Replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		Discard:           jetstream.DiscardNew,
	}); err != nil {
		return fmt.Errorf("bucket %s: %w", ClientsBucket, err)
	}
	clients, err := r.js.KeyValue(ctx, ClientsBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", ClientsBucket, err)
	}
	nodes, err := r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      NodesBucket,
		Description: "protogate: live nodes, each renewing its key",
		History:     1,
		TTL:         nodeTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    r.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", NodesBucket, err)
	}
	r.clients, r.nodes = clients, nodes
	return nil
}

// heartbeat renews this node's liveness key.
func (r *KV) heartbeat() {
	ctx, cancel := context.WithTimeout(r.ctx, nodeHeartbeat)
	defer cancel()
	if _, err := r.nodes.Put(ctx, nodeToken(r.cfg.Node), []byte(r.epoch)); err != nil && r.ctx.Err() == nil {
		r.cfg.Logger.Debug("registry: node heartbeat failed", "err", err)
	}
}

// alive reports whether node's liveness key names epoch. When the bucket
// cannot say, the node counts as alive: asking it costs at most a timeout.
func (r *KV) alive(ctx context.Context, node, epoch string) bool {
	e, err := r.nodes.Get(ctx, nodeToken(node))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	return err != nil || string(e.Value()) == epoch
}

// Claim implements gateway.ClientRegistry.
func (r *KV) Claim(ctx context.Context, clientID string, c gateway.Claimant) (func(), error) {
	h := &held{id: clientID, key: keyOf(clientID), c: c, since: time.Now().UnixNano()}
	if prev := r.cs.add(h); prev != nil && prev.c != c {
		// The gateway discards its own older connection too; doing it
		// here as well keeps the bookkeeping of one claim per key.
		prev.c.Discard()
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ClaimTimeout)
	defer cancel()
	err := r.claim(ctx, h, false)
	release := func() { r.release(h) }
	if err != nil {
		if isConflict(err) || r.cfg.OnUnavailable == Reject || r.ctx.Err() != nil {
			r.cs.remove(h)
			if !isConflict(err) {
				r.ctr.unavailable.Add(1)
				err = fmt.Errorf("%w: claim of client id %q: %w", ErrUnavailable, clientID, err)
			}
			return nil, err
		}
		r.ctr.unavailable.Add(1)
		r.cfg.Logger.Warn("registry: claim not confirmed cluster-wide; client allowed on this node (on_unavailable: local)",
			"clientid", clientID, "err", err)
		r.cs.mu.Lock()
		h.pending = true
		r.cs.mu.Unlock()
		if !r.cs.confirm(h) {
			return nil, gateway.Errorf(gateway.CodePermissionDeny, "registry: client id %q was claimed by a newer connection on another node meanwhile", clientID)
		}
		return release, nil
	}
	r.cs.mu.Lock()
	lost := h.foreign > h.rev
	r.cs.mu.Unlock()
	if lost || !r.cs.confirm(h) {
		r.cs.remove(h)
		r.release(h)
		return nil, gateway.Errorf(gateway.CodePermissionDeny, "registry: client id %q was claimed by a newer connection on another node meanwhile", clientID)
	}
	r.ctr.claims.Add(1)
	return release, nil
}

// errContended ends a claim whose compare-and-set other claims kept
// winning.
var errContended = errors.New("registry: client id contended by other nodes; try again")

func isConflict(err error) bool {
	return errors.Is(err, errContended) || gateway.CodeOf(err) == gateway.CodePermissionDeny
}

// claim writes h as the owner of its key, discarding the owner it
// replaces. With yield (a late claim of a client allowed locally), an
// owner that claimed later wins instead, and h's connection is discarded.
func (r *KV) claim(ctx context.Context, h *held, yield bool) error {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return fmt.Errorf("buckets not ready: %w", ctx.Err())
	}
	val, err := json.Marshal(owner{ClientID: h.id, Node: r.cfg.Node, Epoch: r.epoch, Conn: h.c.Handle(), Since: h.since})
	if err != nil {
		return err
	}
	for range casTries {
		rev, err := r.clients.Create(ctx, h.key, val)
		if err == nil {
			r.setRev(h, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, err := r.clients.Get(ctx, h.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return err
		}
		var o owner
		if json.Unmarshal(e.Value(), &o) == nil {
			if yield && o.Since > h.since && !(o.Node == r.cfg.Node && o.Conn == h.c.Handle()) {
				r.cs.lose(h, &r.ctr)
				return nil
			}
			if o.Node != r.cfg.Node || o.Epoch != r.epoch {
				r.discardRemote(ctx, h, o)
			}
		}
		rev, err = r.clients.Update(ctx, h.key, val, e.Revision())
		if err == nil {
			r.setRev(h, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
	}
	return errContended
}

func (r *KV) setRev(h *held, rev uint64) {
	r.cs.mu.Lock()
	h.rev = rev
	r.cs.mu.Unlock()
}

// discardRemote asks the node of o to discard its connection, and waits
// for it, unless that node is gone. A node that does not answer in time
// still sees the new owner through its watcher.
func (r *KV) discardRemote(ctx context.Context, h *held, o owner) {
	if o.Node == r.cfg.Node || !r.alive(ctx, o.Node, o.Epoch) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, kickWait)
	defer cancel()
	rep, err := ask(rctx, r.nc, discardSubject(o.Node), request{Key: h.key, Conn: o.Conn})
	switch {
	case errors.Is(err, nats.ErrNoResponders):
	case err != nil:
		r.cfg.Logger.Warn("registry: node did not confirm the discard; its watcher will see the new owner",
			"clientid", h.id, "node", o.Node, "err", err)
	case rep.Found:
		r.ctr.takeovers.Add(1)
	}
}

// handleDiscard answers another node's claim of a key this node holds.
func (r *KV) handleDiscard(m *nats.Msg) {
	var req request
	if json.Unmarshal(m.Data, &req) != nil {
		return
	}
	h := r.cs.get(req.Key)
	if h == nil || h.c.Handle() != req.Conn {
		respond(m, reply{})
		return
	}
	if r.cs.lose(h, &r.ctr) {
		ctx, cancel := finishCtx(r.ctx, req)
		defer cancel()
		waitFinished(ctx, h.c)
	}
	respond(m, reply{Found: true})
}

// watch is the backstop of discard requests: a put naming another owner
// for a key this node holds, newer than this node's claim, discards its
// connection.
func (r *KV) watch() {
	for r.ctx.Err() == nil {
		w, err := r.clients.WatchAll(r.ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
		if err != nil {
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			r.seen(e)
		}
		_ = w.Stop()
	}
}

// seen handles one put seen by the watcher.
func (r *KV) seen(e jetstream.KeyValueEntry) {
	var o owner
	if json.Unmarshal(e.Value(), &o) != nil || (o.Node == r.cfg.Node && o.Epoch == r.epoch) {
		return
	}
	r.cs.mu.Lock()
	h := r.cs.held[e.Key()]
	lose := false
	if h != nil {
		switch {
		case h.rev == 0:
			h.foreign = max(h.foreign, e.Revision())
		case e.Revision() > h.rev:
			lose = true
		}
	}
	r.cs.mu.Unlock()
	if lose {
		r.cs.lose(h, &r.ctr)
	}
}

// reclaim claims cluster-wide the ids allowed locally while the registry
// was unavailable.
func (r *KV) reclaim() {
	r.cs.mu.Lock()
	var todo []*held
	for _, h := range r.cs.held {
		if h.pending {
			todo = append(todo, h)
		}
	}
	r.cs.mu.Unlock()
	for _, h := range todo {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ClaimTimeout)
		err := r.claim(ctx, h, true)
		cancel()
		if err != nil {
			continue
		}
		r.cs.mu.Lock()
		h.pending = false
		r.cs.mu.Unlock()
		r.ctr.reclaimed.Add(1)
	}
}

// release deletes h's key, on the release loop, unless a newer claim
// replaced it: it is called where connections end and must not wait.
func (r *KV) release(h *held) {
	r.cs.remove(h)
	r.cs.mu.Lock()
	rev, lost := h.rev, h.lost
	r.cs.mu.Unlock()
	if rev == 0 || lost {
		return
	}
	select {
	case r.releases <- h:
	default:
		// Full: the claim stays in the bucket, to be overwritten by the
		// next claim of that id.
	}
}

func (r *KV) releaseLoop() {
	for {
		select {
		case <-r.ctx.Done():
			return
		case h := <-r.releases:
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ClaimTimeout)
			r.cs.mu.Lock()
			rev := h.rev
			r.cs.mu.Unlock()
			// Conditional on the revision: a newer owner's claim stays.
			_ = r.clients.Delete(ctx, h.key, jetstream.LastRevision(rev))
			cancel()
		}
	}
}

// Kick implements gateway.ClientKicker.
func (r *KV) Kick(ctx context.Context, clientID string) (bool, error) {
	if !r.Ready() {
		return false, ErrUnavailable
	}
	key := keyOf(clientID)
	if h := r.cs.get(key); h != nil {
		h.c.Kick()
		waitFinished(ctx, h.c)
		return true, nil
	}
	e, err := r.clients.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("registry: kick: %w", err)
	}
	var o owner
	if err := json.Unmarshal(e.Value(), &o); err != nil || o.Node == r.cfg.Node {
		return false, nil
	}
	rep, err := ask(ctx, r.nc, kickSubject(o.Node), request{Key: key, Conn: o.Conn})
	if errors.Is(err, nats.ErrNoResponders) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("registry: kick on node %s: %w", o.Node, err)
	}
	return rep.Found, nil
}
