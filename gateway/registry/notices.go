package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/gateway"
)

// Subjects of the notices registry, shared by every node.
const (
	claimSubject     = "$PG.reg.claim"
	helloSubject     = "$PG.reg.hello"
	kickAllSubject   = "$PG.reg.kick"
	helloEvery       = time.Second
	peerTimeout      = 3*helloEvery + helloEvery/2
	maxPendingResend = 1024 // pending claims re-announced per heartbeat
)

// hello announces a node, and answers a claim.
type hello struct {
	Node  string `json:"node"`
	Epoch string `json:"epoch"`
}

type peer struct {
	epoch string
	seen  time.Time
}

// claimReply answers a claim notice: reply, and who answers.
type claimReply struct {
	reply
	Node string `json:"node"`
}

// Notices is the registry without JetStream: a claim is a notice to every
// node, which answers it once it has discarded its own connection holding
// the id, or refuses it when its own claim is newer. Claims are ordered by
// a hybrid logical clock (the wall clock, never behind a time seen in
// another node's notice) and then by node name, so that two claims that
// cross settle on the same winner on both nodes.
//
// It knows the other nodes from their hellos, sent every second; a claim
// waits for the answers of the nodes it knows (bounded by the claim
// timeout). Core NATS delivers at most once: a notice lost to a route
// that flaps leaves a duplicate until that client id is claimed again.
// It is safe for concurrent use; create it with StartNotices and stop it
// with Close.
type Notices struct {
	cfg   Config
	epoch string
	nc    *nats.Conn
	ctr   counters
	cs    claims
	hlc   atomic.Int64

	mu    sync.Mutex
	peers map[string]peer

	// Answers arrive on one subscription, respPrefix + "*", and go to the
	// request waiting for them by the last token: a subscription per
	// request would send its interest to every node.
	respPrefix string
	respMu     sync.Mutex
	respSeq    uint64
	resp       map[string]chan claimReply

	subs   []*nats.Subscription
	ctx    context.Context
	cancel context.CancelFunc
	w      workers
}

var (
	_ gateway.ClientRegistry = (*Notices)(nil)
	_ gateway.ClientKicker   = (*Notices)(nil)
)

// StartNotices starts a notices registry.
func StartNotices(cfg Config) (*Notices, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var e [8]byte
	rand.Read(e[:])
	r := &Notices{cfg: cfg, epoch: hex.EncodeToString(e[:]), nc: cfg.Conn, peers: make(map[string]peer),
		respPrefix: cfg.Conn.NewInbox() + ".", resp: make(map[string]chan claimReply)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for subject, fn := range map[string]nats.MsgHandler{
		claimSubject:       func(m *nats.Msg) { r.w.spawn(func() { r.handleClaim(m) }) },
		helloSubject:       r.handleHello,
		kickAllSubject:     func(m *nats.Msg) { r.w.spawn(func() { r.handleKickAll(m) }) },
		r.respPrefix + "*": r.handleResponse,
	} {
		s, err := r.nc.Subscribe(subject, fn)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("registry: subscribe: %w", err)
		}
		r.subs = append(r.subs, s)
	}
	if err := r.nc.Flush(); err != nil {
		r.Close()
		return nil, fmt.Errorf("registry: %w", err)
	}
	r.w.spawn(r.heartbeat)
	return r, nil
}

// Close stops the registry.
func (r *Notices) Close() {
	r.w.close()
	r.cancel()
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
	r.w.wait()
}

// Stats returns the registry's counters.
func (r *Notices) Stats() Stats { return r.ctr.stats() }

// Peers returns the names of the other nodes heard from lately, sorted.
func (r *Notices) Peers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	var out []string
	for n, p := range r.peers {
		if now.Sub(p.seen) < peerTimeout {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// heartbeat says hello every helloEvery, asking nodes that do not know
// this one yet to answer, and re-announces claims allowed locally.
func (r *Notices) heartbeat() {
	t := time.NewTicker(helloEvery)
	defer t.Stop()
	me, _ := json.Marshal(hello{Node: r.cfg.Node, Epoch: r.epoch})
	for {
		// The reply subject asks for a hello back: a node that starts
		// learns the others within a round trip.
		_ = r.nc.PublishRequest(helloSubject, helloSubject, me)
		r.reclaim()
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Notices) handleHello(m *nats.Msg) {
	var h hello
	if json.Unmarshal(m.Data, &h) != nil || h.Node == r.cfg.Node {
		return
	}
	r.mu.Lock()
	p, known := r.peers[h.Node]
	r.peers[h.Node] = peer{epoch: h.Epoch, seen: time.Now()}
	r.mu.Unlock()
	if m.Reply != "" && (!known || p.epoch != h.Epoch) {
		me, _ := json.Marshal(hello{Node: r.cfg.Node, Epoch: r.epoch})
		_ = r.nc.Publish(helloSubject, me)
	}
}

// now returns the next time of the hybrid logical clock.
func (r *Notices) now() int64 {
	for {
		last, wall := r.hlc.Load(), time.Now().UnixNano()
		next := max(wall, last+1)
		if r.hlc.CompareAndSwap(last, next) {
			return next
		}
	}
}

// observe moves the clock past t, a time seen in another node's notice.
func (r *Notices) observe(t int64) {
	for {
		last := r.hlc.Load()
		if t <= last || r.hlc.CompareAndSwap(last, t) {
			return
		}
	}
}

// newer reports whether claim (t1, n1) is newer than (t2, n2).
func newer(t1 int64, n1 string, t2 int64, n2 string) bool {
	return t1 > t2 || (t1 == t2 && n1 > n2)
}

// Claim implements gateway.ClientRegistry.
func (r *Notices) Claim(ctx context.Context, clientID string, c gateway.Claimant) (func(), error) {
	h := &held{id: clientID, key: keyOf(clientID), c: c, since: r.now()}
	if prev := r.cs.add(h); prev != nil && prev.c != c {
		prev.c.Discard()
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ClaimTimeout)
	defer cancel()
	keep, missing, err := r.announce(ctx, h)
	release := func() { r.cs.remove(h) }
	var lost bool
	if keep == "" {
		// Marked claimed now: a discard from here on waits for the
		// connection, which may be told SUCCESS.
		lost = !r.cs.confirm(h)
	}
	switch {
	case keep != "" || lost:
		r.cs.remove(h)
		if keep == "" {
			keep = "another node"
		}
		return nil, gateway.Errorf(gateway.CodePermissionDeny,
			"registry: client id %q is held by a newer connection on %s", clientID, keep)
	case err != nil || len(missing) > 0:
		r.ctr.unavailable.Add(1)
		if err == nil {
			err = fmt.Errorf("no answer from %v", missing)
		}
		if r.cfg.OnUnavailable == Reject {
			r.cs.remove(h)
			return nil, fmt.Errorf("%w: claim of client id %q: %w", ErrUnavailable, clientID, err)
		}
		r.cfg.Logger.Warn("registry: claim not confirmed by every node; client allowed on this node (on_unavailable: local)",
			"clientid", clientID, "err", err)
		r.cs.mu.Lock()
		h.pending = true
		r.cs.mu.Unlock()
		return release, nil
	}
	r.ctr.claims.Add(1)
	return release, nil
}

// announce sends h's notice and collects the answers of the nodes it
// knows. It returns the node that keeps the id (its claim is newer), if
// any, and the nodes that did not answer in time.
func (r *Notices) announce(ctx context.Context, h *held) (keep string, missing []string, err error) {
	req := request{Key: h.key, Conn: h.c.Handle(), Since: h.since, Node: r.cfg.Node}
	missing, err = r.gather(ctx, claimSubject, req, func(rep claimReply) bool {
		if rep.Found {
			r.ctr.takeovers.Add(1)
		}
		if rep.Keep {
			keep = rep.Node
		}
		return rep.Keep
	})
	return keep, missing, err
}

// gather sends req to every node and passes their answers to each until
// it returns true or every node known has answered. It returns the nodes
// that did not answer before ctx ended.
func (r *Notices) gather(ctx context.Context, subject string, req request, each func(claimReply) bool) ([]string, error) {
	want := make(map[string]bool)
	for _, p := range r.Peers() {
		want[p] = true
	}
	if len(want) == 0 {
		return nil, nil
	}
	ch := make(chan claimReply, len(want)+8)
	r.respMu.Lock()
	r.respSeq++
	token := strconv.FormatUint(r.respSeq, 36)
	r.resp[token] = ch
	r.respMu.Unlock()
	defer func() {
		r.respMu.Lock()
		delete(r.resp, token)
		r.respMu.Unlock()
	}()
	req.Wait = waitBudget(ctx)
	b, _ := json.Marshal(req)
	if err := r.nc.PublishRequest(subject, r.respPrefix+token, b); err != nil {
		return nil, err
	}
wait:
	for len(want) > 0 {
		select {
		case <-ctx.Done():
			break wait
		case rep := <-ch:
			delete(want, rep.Node)
			if each(rep) {
				return nil, nil
			}
		}
	}
	var missing []string
	for n := range want {
		missing = append(missing, n)
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		return missing, ctx.Err()
	}
	return nil, nil
}

// handleResponse passes an answer to the request waiting for it.
func (r *Notices) handleResponse(m *nats.Msg) {
	var rep claimReply
	if json.Unmarshal(m.Data, &rep) != nil {
		return
	}
	r.respMu.Lock()
	ch := r.resp[m.Subject[len(r.respPrefix):]]
	r.respMu.Unlock()
	if ch != nil {
		select {
		case ch <- rep:
		default: // more answers than nodes known: not needed
		}
	}
}

// handleClaim answers another node's claim notice.
func (r *Notices) handleClaim(m *nats.Msg) {
	var req request
	if json.Unmarshal(m.Data, &req) != nil || req.Node == r.cfg.Node {
		return
	}
	r.observe(req.Since)
	rep := claimReply{Node: r.cfg.Node}
	if h := r.cs.get(req.Key); h != nil {
		if newer(h.since, r.cfg.Node, req.Since, req.Node) {
			rep.Keep = true
		} else {
			if r.cs.lose(h, &r.ctr) {
				ctx, cancel := finishCtx(r.ctx, req)
				waitFinished(ctx, h.c)
				cancel()
			}
			rep.Found = true
		}
	}
	if m.Reply != "" {
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	}
}

// reclaim re-announces claims allowed locally until every node known
// answers; a newer claim elsewhere then discards them.
func (r *Notices) reclaim() {
	r.cs.mu.Lock()
	var todo []*held
	for _, h := range r.cs.held {
		if h.pending && len(todo) < maxPendingResend {
			todo = append(todo, h)
		}
	}
	r.cs.mu.Unlock()
	for _, h := range todo {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ClaimTimeout)
		keep, missing, err := r.announce(ctx, h)
		cancel()
		switch {
		case keep != "":
			r.cs.lose(h, &r.ctr)
		case err == nil && len(missing) == 0:
			r.cs.mu.Lock()
			h.pending = false
			r.cs.mu.Unlock()
			r.ctr.reclaimed.Add(1)
		}
	}
}

// handleKickAll answers a kick sent to every node.
func (r *Notices) handleKickAll(m *nats.Msg) {
	var req request
	if json.Unmarshal(m.Data, &req) != nil || req.Node == r.cfg.Node {
		return
	}
	rep := claimReply{Node: r.cfg.Node}
	if h := r.cs.get(req.Key); h != nil {
		h.c.Kick()
		ctx, cancel := finishCtx(r.ctx, req)
		waitFinished(ctx, h.c)
		cancel()
		rep.Found = true
	}
	b, _ := json.Marshal(rep)
	_ = m.Respond(b)
}

// Kick implements gateway.ClientKicker: every node known answers whether
// it held clientID.
func (r *Notices) Kick(ctx context.Context, clientID string) (bool, error) {
	key := keyOf(clientID)
	if h := r.cs.get(key); h != nil {
		h.c.Kick()
		waitFinished(ctx, h.c)
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ClaimTimeout+kickWait)
	defer cancel()
	found := false
	missing, err := r.gather(ctx, kickAllSubject, request{Key: key, Node: r.cfg.Node}, func(rep claimReply) bool {
		found = found || rep.Found
		return found
	})
	if !found && len(missing) > 0 {
		return false, fmt.Errorf("registry: kick: no answer from %v: %w", missing, err)
	}
	return found, nil
}
