// Package broker is the gateway's pub/sub: an embedded NATS server, reached
// through an in-process connection, that implements gateway.PubSub.
//
// Handler topics are MQTT-style and are mapped to NATS subjects with the
// rules nats-server applies to its own MQTT clients (package gateway/topic),
// so devices behind the gateway, NATS clients and MQTT clients of the same
// server see the same messages. Subscriptions are shared: however many
// connections subscribe to one filter, the broker holds one NATS
// subscription for it and fans deliveries out locally.
//
// NATS and MQTT clients outside the gateway reach the server only through
// Config.NATSListen and Config.MQTTListen, where they log in as
// Config.Users or Config.NKeys (or anonymously) with Permissions, over
// Config.TLS if set; whatever their permissions, the subjects nats-server
// uses internally are denied to them unless granted by name. The
// gateway's own connection is in-process, with full rights and a login
// that works nowhere else.
//
// Config.Cluster joins the server to other protogate nodes with NATS
// routes, into one pub/sub space with clustered JetStream; Config.Leaf
// joins it to an existing NATS as a leaf node. Broker.Cluster reports
// what the node sees of both, and Broker.NodeCount the cluster's size.
package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/topic"
)

// Message headers protogate sets on what it publishes, so that other
// protogate nodes and curious NATS clients can see who published and how.
const (
	HeaderFrom = "Protogate-From" // publisher's client id
	HeaderQoS  = "Protogate-Qos"  // QoS as published, omitted for 0
	HeaderID   = "Protogate-Id"   // message id
	HeaderTime = "Protogate-Time" // publish time, ms since the epoch
	// headerMQTTQoS is what nats-server sets on messages from its MQTT
	// clients.
	headerMQTTQoS = "Nmqtt-Pub"
	// headerRoom is added to the server's max_payload for the headers
	// above, which NATS counts against it: a payload of exactly
	// Config.MaxPayload bytes must still be accepted.
	headerRoom = 1024
	// inboxPrefix starts the reply subjects of the gateway's connection.
	inboxPrefix = "$PG.inbox"
)

// Config configures the embedded server. The zero value runs an in-process
// only server named "protogate".
type Config struct {
	// Node names the server (and Message.Node). Default: "protogate".
	Node string
	// DataDir holds JetStream data (under nats/) when MQTT is enabled or
	// the node is clustered. Default: "./data".
	DataDir string
	// NATSListen opens the server to NATS clients on host:port ("" keeps
	// it in-process only; port 0 picks a free port).
	NATSListen string
	// MQTTListen opens an MQTT 3.1.1 listener on host:port ("" for none).
	// MQTT needs JetStream, which is then enabled under DataDir.
	MQTTListen string
	// MaxPayload is the largest payload accepted. Default: 1 MiB.
	MaxPayload int
	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
	// Shards is the number of delivery queues, each with its own
	// goroutines; one subject's messages always use the same one, in
	// order. Default: 4.
	Shards int
	// MaxBufferedBytes bounds what the delivery queues hold, together,
	// while subscribers are behind publishers. Publishing connections of
	// the gateway pause long before it is reached (see Behind); only
	// publishers outside the gateway (NATS and MQTT clients) can fill it,
	// and what exceeds it is dropped and counted (Dropped).
	// Default: 64 MiB.
	MaxBufferedBytes int

	// Users and NKeys are the outside clients that may connect to the
	// NATS and MQTT listeners, each with its Permissions. When one is set,
	// a client must log in as one of them, unless AllowAnonymous.
	// Without listeners they are not used.
	Users []User
	// NKeys log NATS clients in with a signature (see NKey).
	NKeys []NKey
	// AllowAnonymous lets clients that send no credentials connect, as
	// an anonymous user with the default Permissions: every subject but
	// the reserved ones. It is implied when Users and NKeys are both
	// empty. A client that sends credentials that match no user is
	// refused either way.
	AllowAnonymous bool
	// TLS, when set, is required by both listeners (NATS and MQTT); with
	// ClientAuth tls.RequireAndVerifyClientCert every client must present
	// a certificate that ClientCAs verifies. The gateway's own in-process
	// connection does not use it. Default: nil (plain TCP).
	TLS *tls.Config

	// Cluster, when set, joins this node to a cluster of protogate nodes
	// (see ClusterConfig); it then also listens for NATS clients, and
	// runs clustered JetStream. Default: nil.
	Cluster *ClusterConfig
	// Leaf, when set, joins this node to an existing NATS as a leaf node
	// (see LeafConfig). Default: nil.
	Leaf *LeafConfig
}

// Broker is a running embedded NATS server and the gateway's connection to
// it. It is safe for concurrent use.
type Broker struct {
	cfg  Config
	log  *slog.Logger
	ns   *server.Server
	opts *server.Options
	nc   *nats.Conn
	// login is how in-process connections log in (nil without listeners).
	login []nats.Option
	// key is the nkey the gateway's own connection logs in with, or nil
	// when the server has no listener (and no authentication).
	key nkeys.KeyPair
	// routes are the configured route URLs, deduplicated; self[i] says
	// whether routes[i] is this node's own, and selfListed whether one
	// is. Set by Start.
	routes     []*url.URL
	self       []bool
	selfListed bool
	// probed caches the names route ports answered (see routeName).
	probeMu sync.Mutex
	probed  map[string]probed

	idPrefix string
	idSeq    atomic.Uint64

	mu       sync.Mutex
	subs     map[subKey]*natsSub
	retainWG sync.WaitGroup // goroutines delivering retained messages; added to under mu
	// bg ends with Shutdown, for what the broker does on its own.
	bg       context.Context
	bgCancel context.CancelFunc
	dropped  uint64 // by nats.go, on subscriptions since removed; guarded by mu

	shards []*shard
	quit   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
}

type subKey struct{ subject, queue string }

// natsSub is one NATS subscription and the local subscribers sharing it.
type natsSub struct {
	key     subKey
	sub     *nats.Subscription
	members atomic.Pointer[[]gateway.Subscriber] // copy-on-write
	next    atomic.Uint32                        // round robin for queue groups
}

var (
	_ gateway.PubSub = (*Broker)(nil)
	_ gateway.Pacer  = (*Broker)(nil)
)

// Start starts the embedded server and connects to it in-process.
func Start(cfg Config) (*Broker, error) {
	if cfg.Node == "" {
		cfg.Node = "protogate"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 4
	}
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = 64 << 20
	}
	opts := &server.Options{
		ServerName:             cfg.Node,
		NoSigs:                 true, // the gateway owns signals
		MaxPayload:             int32(cfg.MaxPayload + headerRoom),
		MaxPending:             max(64<<20, 2*int64(cfg.MaxPayload)),
		DisableJetStreamBanner: true,
	}
	if cfg.NATSListen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.NATSListen)
		if err != nil {
			return nil, fmt.Errorf("broker: nats_listen: %w", err)
		}
		opts.Host, opts.Port = host, port
		if cfg.TLS != nil {
			opts.TLSConfig = cfg.TLS.Clone()
			opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		}
	}
	if cfg.MQTTListen != "" {
		host, port, err := splitHostPort(cfg.MQTTListen)
		if err != nil {
			return nil, fmt.Errorf("broker: mqtt_listen: %w", err)
		}
		opts.MQTT.Host, opts.MQTT.Port = host, port
		if cfg.TLS != nil {
			opts.MQTT.TLSConfig = cfg.TLS.Clone()
		}
		opts.JetStream = true
		opts.StoreDir = filepath.Join(cfg.DataDir, "nats")
	}
	if err := checkAuth(&cfg); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	routes, err := clusterSetup(&cfg, opts)
	if err != nil {
		return nil, err
	}
	// Without a listener nobody but the gateway reaches the server, and
	// it needs no authentication.
	var (
		login []nats.Option
		key   nkeys.KeyPair
	)
	if !opts.DontListen || cfg.MQTTListen != "" {
		opt, kp, err := authSetup(&cfg, opts)
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		login, key = []nats.Option{opt}, kp
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		if key != nil {
			key.Wipe()
		}
		return nil, fmt.Errorf("broker: %w", err)
	}
	log := cfg.Logger.With("component", "nats")
	ns.SetLoggerV2(natsLogger{l: log, lim: &logLimiter{every: time.Minute}}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if key != nil {
			key.Wipe()
		}
		return nil, errors.New("broker: embedded nats server did not start (is a port in use?)")
	}
	nc, err := nats.Connect("", append(login,
		nats.InProcessServer(ns),
		// Replies to the gateway's requests (the JetStream API, for
		// retained messages) under "$": never delivered to devices or MQTT
		// clients subscribed to "#", and reserved for outside clients.
		nats.CustomInboxPrefix(inboxPrefix),
		nats.Name("protogate-"+cfg.Node),
		// The handshake is in-process, but on a loaded machine it can take
		// longer than nats.go's 2s default, which would fail the start.
		nats.Timeout(10*time.Second),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("broker: subscription error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("broker: connection error", "err", err)
		}),
	)...)
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		if key != nil {
			key.Wipe()
		}
		return nil, fmt.Errorf("broker: connect in-process: %w", err)
	}
	var p [8]byte
	rand.Read(p[:])
	b := &Broker{
		cfg:      cfg,
		log:      cfg.Logger,
		ns:       ns,
		opts:     opts,
		nc:       nc,
		login:    login,
		key:      key,
		routes:   routes,
		idPrefix: strings.ToUpper(hex.EncodeToString(p[:])),
		subs:     make(map[subKey]*natsSub),
		quit:     make(chan struct{}),
	}
	b.bg, b.bgCancel = context.WithCancel(context.Background())
	for _, u := range routes {
		own := b.isSelf(u)
		b.self = append(b.self, own)
		b.selfListed = b.selfListed || own
	}
	b.shards = make([]*shard, cfg.Shards)
	for i := range b.shards {
		sh := newShard(max(cfg.MaxBufferedBytes/cfg.Shards, 2*(cfg.MaxPayload+headerRoom)))
		b.shards[i] = sh
		b.wg.Add(2)
		go func() {
			defer b.wg.Done()
			sh.pump(b.quit)
		}()
		go func() {
			defer b.wg.Done()
			b.deliverLoop(sh)
		}()
	}
	return b, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// NATSAddr returns the address NATS clients connect to, or nil when the
// server is in-process only.
func (b *Broker) NATSAddr() net.Addr {
	if b.opts.DontListen {
		return nil
	}
	return b.ns.Addr()
}

// MQTTAddr returns the host:port of the MQTT listener, or "" when there is none.
func (b *Broker) MQTTAddr() string {
	if b.cfg.MQTTListen == "" {
		return ""
	}
	return net.JoinHostPort(b.opts.MQTT.Host, strconv.Itoa(b.opts.MQTT.Port))
}

// Connect opens another in-process connection to the embedded server with
// the gateway's own rights, for parts of the gateway that need a NATS
// connection of their own (the client-id registry). The caller closes it,
// before Shutdown.
func (b *Broker) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	if b.closed.Load() {
		return nil, errors.New("broker: closed")
	}
	all := append(slices.Clip(b.login),
		nats.InProcessServer(b.ns),
		nats.Name("protogate-"+b.cfg.Node+"-"+name),
		// Replies under $PG, as the gateway's own connection's: a device
		// subscribed to # must not see them.
		nats.CustomInboxPrefix(inboxPrefix),
		nats.Timeout(10*time.Second),
		nats.MaxReconnects(-1),
	)
	nc, err := nats.Connect("", append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect in-process: %w", err)
	}
	return nc, nil
}

// Server returns the embedded NATS server, for monitoring.
func (b *Broker) Server() *server.Server { return b.ns }

// MaxPayload returns the largest payload Publish accepts.
func (b *Broker) MaxPayload() int { return b.cfg.MaxPayload }

// newID returns a unique message id of 32 uppercase hex digits.
func (b *Broker) newID() string {
	var buf [32]byte
	copy(buf[:16], b.idPrefix)
	n := b.idSeq.Add(1)
	const digits = "0123456789ABCDEF"
	for i := 31; i >= 16; i-- {
		buf[i] = digits[n&0xf]
		n >>= 4
	}
	return string(buf[:])
}

// Publish implements gateway.PubSub.
func (b *Broker) Publish(m *gateway.Message) error {
	subject, err := topic.PublishSubject(m.Topic)
	if err != nil {
		return fmt.Errorf("broker: publish to %q: %w: %w", m.Topic, gateway.ErrBadTopic, err)
	}
	if max := b.cfg.MaxPayload; len(m.Payload) > max {
		return fmt.Errorf("broker: %w: %d bytes, the limit is %d", gateway.ErrPayloadTooLarge, len(m.Payload), max)
	}
	if m.ID == "" {
		m.ID = b.newID()
	}
	if m.Timestamp == 0 {
		m.Timestamp = time.Now().UnixMilli()
	}
	h := nats.Header{
		HeaderID:   []string{m.ID},
		HeaderTime: []string{strconv.FormatInt(m.Timestamp, 10)},
	}
	if m.From != "" {
		h[HeaderFrom] = []string{m.From}
	}
	if m.QoS != 0 {
		h[HeaderQoS] = []string{strconv.Itoa(int(m.QoS))}
	}
	err = b.nc.PublishMsg(&nats.Msg{Subject: subject, Header: h, Data: m.Payload})
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("broker: %w: %w", gateway.ErrPayloadTooLarge, err)
	}
	if err != nil {
		return fmt.Errorf("broker: publish: %w", err)
	}
	return nil
}

// Subscribe implements gateway.PubSub. It returns once the server has the
// subscription, so a message published after it returns is delivered.
func (b *Broker) Subscribe(ctx context.Context, filter string, s gateway.Subscriber) (gateway.Subscription, error) {
	f, err := topic.ParseFilter(filter)
	if err != nil {
		return nil, fmt.Errorf("broker: subscribe to %q: %w: %w", filter, gateway.ErrBadTopic, err)
	}
	if b.closed.Load() {
		return nil, errors.New("broker: closed")
	}
	sub := &subscription{b: b, s: s}
	for _, subject := range f.Subjects {
		ns, err := b.join(subKey{subject, f.Queue}, s)
		if err != nil {
			sub.Unsubscribe()
			return nil, err
		}
		sub.joined = append(sub.joined, ns)
	}
	// Round trip to the server so the NATS subscription is in place before
	// the caller acknowledges it to its device. Even when this subscriber
	// joined an existing one: its creator may not have flushed yet.
	// The round trip is bounded by the caller's deadline (a Wasm guest's
	// call_timeout, a handler's rpc) and by 5s.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("broker: subscribe: %w", err)
	}
	// Retained messages of MQTT clients, fetched now that the subscription
	// is in place (so none published meanwhile is missed), on a goroutine:
	// the caller's answer does not wait for JetStream, and Deliver may
	// wait for the subscriber's handler, which may be the one calling
	// Subscribe.
	if b.cfg.MQTTListen != "" && f.Queue == "" {
		b.mu.Lock()
		if !b.closed.Load() {
			// Shutdown waits for it (after taking b.mu, so never while
			// it is being added).
			b.retainWG.Add(1)
			go b.deliverRetained(f, sub)
		}
		b.mu.Unlock()
	}
	return sub, nil
}

// deliverRetained hands sub's subscriber the retained messages of MQTT
// clients that match f.
func (b *Broker) deliverRetained(f topic.Filter, sub *subscription) {
	defer b.retainWG.Done()
	rms, err := b.retained(b.bg, f)
	if err != nil && !b.closed.Load() {
		b.log.Warn("broker: retained messages not delivered", "filter", f.Topic, "got", len(rms), "err", err)
	}
	for _, m := range rms {
		if sub.gone.Load() || b.closed.Load() {
			return
		}
		sub.s.Deliver(m)
	}
}

// join adds s to the NATS subscription for k, creating it if needed.
func (b *Broker) join(k subKey, s gateway.Subscriber) (*natsSub, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ns := b.subs[k]
	if ns == nil {
		ns = &natsSub{key: k}
		ch := b.shards[shardOf(k.subject, len(b.shards))].in
		var err error
		if k.queue != "" {
			ns.sub, err = b.nc.ChanQueueSubscribe(k.subject, k.queue, ch)
		} else {
			ns.sub, err = b.nc.ChanSubscribe(k.subject, ch)
		}
		if err != nil {
			return nil, fmt.Errorf("broker: subscribe %q: %w", k.subject, err)
		}
		b.subs[k] = ns
	}
	var members []gateway.Subscriber
	if p := ns.members.Load(); p != nil {
		members = append(members, *p...)
	}
	members = append(members, s)
	ns.members.Store(&members)
	return ns, nil
}

// leave removes s from ns, dropping the NATS subscription with its last member.
func (b *Broker) leave(ns *natsSub, s gateway.Subscriber) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := ns.members.Load()
	if p == nil {
		return nil
	}
	members := make([]gateway.Subscriber, 0, len(*p))
	removed := false
	for _, m := range *p {
		if m == s && !removed {
			removed = true
			continue
		}
		members = append(members, m)
	}
	if len(members) > 0 {
		ns.members.Store(&members)
		return nil
	}
	ns.members.Store(nil)
	if b.subs[ns.key] == ns {
		delete(b.subs, ns.key)
	}
	if b.closed.Load() {
		return nil
	}
	err := ns.sub.Unsubscribe()
	if n, derr := ns.sub.Dropped(); derr == nil {
		b.dropped += uint64(n)
	}
	return err
}

func shardOf(s string, n int) int {
	// FNV-1a: cheap, and keeps one subject's messages on one shard so they
	// stay in order.
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// subscription is what Subscribe returns: one subscriber's membership in one
// or two NATS subscriptions (a/# needs a.> and a).
type subscription struct {
	b      *Broker
	s      gateway.Subscriber
	once   sync.Once
	joined []*natsSub
	gone   atomic.Bool // unsubscribed
}

func (sub *subscription) Unsubscribe() error {
	var err error
	sub.gone.Store(true)
	sub.once.Do(func() {
		for _, ns := range sub.joined {
			err = errors.Join(err, sub.b.leave(ns, sub.s))
		}
	})
	return err
}

// deliverLoop turns NATS messages of one shard into gateway messages and hands
// them to the local subscribers.
func (b *Broker) deliverLoop(sh *shard) {
	for {
		nm := sh.next(b.quit)
		if nm == nil {
			return
		}
		if strings.HasPrefix(nm.Subject, "$") {
			// Internal traffic ($JS, $MQTT, $SYS) seen through a wildcard:
			// never for devices (MQTT-4.7.2-1).
			continue
		}
		t := topic.TopicOf(nm.Subject)
		if subj, err := topic.PublishSubject(t); err != nil || subj != nm.Subject {
			// A NATS client published on a subject no MQTT topic maps to
			// (a.*, a.>, a.+): a device could not tell what it is.
			continue
		}
		ns := b.lookup(nm.Sub)
		if ns == nil {
			continue
		}
		p := ns.members.Load()
		if p == nil || len(*p) == 0 {
			continue
		}
		m := b.toMessage(nm, t)
		members := *p
		if ns.key.queue != "" {
			// NATS picked this node for the group; pick one member here.
			members[ns.next.Add(1)%uint32(len(members))].Deliver(m)
			continue
		}
		for _, s := range members {
			s.Deliver(m)
		}
	}
}

func (b *Broker) lookup(s *nats.Subscription) *natsSub {
	if s == nil {
		return nil
	}
	k := subKey{s.Subject, s.Queue}
	b.mu.Lock()
	ns := b.subs[k]
	b.mu.Unlock()
	if ns == nil || ns.sub != s {
		return nil
	}
	return ns
}

func (b *Broker) toMessage(nm *nats.Msg, t string) *gateway.Message {
	m := &gateway.Message{
		Node:    b.cfg.Node,
		Topic:   t,
		Payload: nm.Data,
	}
	if h := nm.Header; h != nil {
		m.ID = h.Get(HeaderID)
		m.From = h.Get(HeaderFrom)
		if q := h.Get(HeaderQoS); q != "" {
			n, _ := strconv.Atoi(q)
			m.QoS = uint8(min(max(n, 0), 2))
		} else if q := h.Get(headerMQTTQoS); q != "" {
			m.QoS = uint8(min(max(int(q[0]-'0'), 0), 2))
		}
		if t := h.Get(HeaderTime); t != "" {
			m.Timestamp, _ = strconv.ParseInt(t, 10, 64)
		}
	}
	if m.ID == "" {
		m.ID = b.newID()
	}
	if m.Timestamp == 0 {
		m.Timestamp = time.Now().UnixMilli()
	}
	return m
}

// Behind implements gateway.Pacer: it returns nil while deliveries keep up
// with publishers, or a channel that is closed once the delivery queue
// that was behind is short again. Publishing connections of the gateway
// wait on it before they read more, so a burst from a device slows that
// device down (TCP flow control) instead of overflowing the queues of
// subscribers that keep up.
func (b *Broker) Behind() <-chan struct{} {
	if b.closed.Load() {
		return nil
	}
	for _, sh := range b.shards {
		if ch := sh.behind(); ch != nil {
			return ch
		}
	}
	return nil
}

// Dropped returns how many messages the broker dropped before they reached
// the subscribers' queues, because deliveries were further behind than
// Config.MaxBufferedBytes. Drops at a subscriber's own bound are counted
// by the gateway (gateway.Server.Dropped).
func (b *Broker) Dropped() uint64 {
	var n uint64
	for _, sh := range b.shards {
		n += sh.dropped.Load()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n += b.dropped
	for _, ns := range b.subs {
		if d, err := ns.sub.Dropped(); err == nil {
			n += uint64(d)
		}
	}
	return n
}

// Shutdown drains the in-process connection (pending publishes are
// flushed, subscriptions end), stops the delivery goroutines and shuts the
// server down. It is safe to call more than once.
func (b *Broker) Shutdown(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	// No retained delivery starts after this (Subscribe checks closed
	// under mu); those running end, or give up at the subscriber's bound.
	b.mu.Lock()
	//lint:ignore SA2001 a barrier: Subscribe adds to retainWG under mu
	b.mu.Unlock()
	b.bgCancel()
	b.retainWG.Wait()
	done := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if derr := b.nc.Drain(); derr != nil {
		b.nc.Close()
	}
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		b.nc.Close()
	}
	// nats.go may still hold a shard channel, so stop the loops with quit
	// rather than by closing the channels.
	close(b.quit)
	for _, sh := range b.shards {
		sh.release()
	}
	b.wg.Wait()
	b.ns.Shutdown()
	b.ns.WaitForShutdown()
	if b.key != nil {
		b.key.Wipe()
	}
	return err
}

// natsLogger sends nats-server's logs to slog. Its Fatalf only logs: the
// standard logger's Fatalf would exit the whole gateway. Notices are
// debug, but for route and leaf node connections closed for a problem an
// operator must fix (a duplicate node name, a cluster name conflict, TLS
// or authentication), which are warnings. Warnings and errors, which
// nats-server repeats at every attempt while a peer is unreachable or
// refuses (every second or two), are logged once a minute each (the same
// message but for the connection's port and id), with the count of those
// held back.
type natsLogger struct {
	l   *slog.Logger
	lim *logLimiter
}

// connLine matches the log lines of route and leaf node connections.
var connLine = regexp.MustCompile(`(?i)route|leafnode|leaf node| - (rid|lid):\d+ - `)

func (n natsLogger) Noticef(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	if connLine.MatchString(msg) && strings.Contains(msg, "connection closed") && routeProblem.MatchString(msg) {
		n.limited(slog.LevelWarn, msg)
		return
	}
	n.l.Debug(msg)
}
func (n natsLogger) Warnf(f string, a ...any)  { n.limited(slog.LevelWarn, fmt.Sprintf(f, a...)) }
func (n natsLogger) Fatalf(f string, a ...any) { n.l.Error("fatal: " + fmt.Sprintf(f, a...)) }
func (n natsLogger) Errorf(f string, a ...any) { n.limited(slog.LevelError, fmt.Sprintf(f, a...)) }
func (n natsLogger) Debugf(f string, a ...any) { n.l.Debug(fmt.Sprintf(f, a...)) }
func (n natsLogger) Tracef(f string, a ...any) { n.l.Debug(fmt.Sprintf(f, a...)) }

func (n natsLogger) limited(level slog.Level, msg string) {
	ok, held := n.lim.allow(msg)
	if !ok {
		return
	}
	var attrs []any
	if held > 0 {
		attrs = append(attrs, "repeated", held)
	}
	if h := connHint(msg); h != "" {
		attrs = append(attrs, "hint", h)
	}
	n.l.Log(context.Background(), level, msg, attrs...)
}

// connHint returns what the operator can do about a route or leaf node
// problem that msg reports, or "".
func connHint(msg string) string {
	if !connLine.MatchString(msg) {
		return ""
	}
	lower := strings.ToLower(msg)
	leaf := strings.Contains(lower, "leafnode") || strings.Contains(lower, " - lid:")
	switch {
	case strings.Contains(lower, "duplicate name") || strings.Contains(lower, "duplicate server name"):
		return "a peer has this node's node.name: every node of a cluster needs its own (protogate validate dials the routes and names it)"
	case strings.Contains(lower, "cluster name"):
		return "the peer has another broker.cluster.name: every node of a cluster needs the same"
	case strings.Contains(lower, "tls") && leaf:
		return "check broker.leafnode.tls against the hub's leafnodes tls"
	case strings.Contains(lower, "tls"):
		return "broker.cluster.tls must be set on every node or on none, with certificates the other nodes' ca_file verifies"
	case (strings.Contains(lower, "authorization") || strings.Contains(lower, "authentication")) && leaf:
		return "check the credentials of broker.leafnode.remotes against the hub's leafnodes authorization"
	case strings.Contains(lower, "authorization") || strings.Contains(lower, "authentication"):
		if strings.Contains(lower, "rid:") || strings.Contains(lower, "route") {
			return "broker.cluster.user and password must be the same on every node"
		}
	}
	return ""
}

// Ready returns nil while the broker serves: its embedded server accepts
// clients and the gateway's own connection to it is up.
func (b *Broker) Ready() error {
	switch {
	case b.closed.Load():
		return errors.New("broker: closed")
	case !b.ns.Running():
		return errors.New("broker: nats server not running")
	case !b.nc.IsConnected():
		return fmt.Errorf("broker: gateway's nats connection is %s", b.nc.Status())
	}
	return nil
}

// Stats are the embedded NATS server's counters.
type Stats struct {
	Connections, Subscriptions, Routes uint64
	InMsgs, OutMsgs, InBytes, OutBytes uint64
	SlowConsumers                      uint64
}

// Stats returns the embedded server's counters.
func (b *Broker) Stats() Stats {
	v, err := b.ns.Varz(nil)
	if err != nil {
		return Stats{}
	}
	return Stats{
		Connections: uint64(v.Connections), Subscriptions: uint64(v.Subscriptions), Routes: uint64(v.Routes),
		InMsgs: uint64(v.InMsgs), OutMsgs: uint64(v.OutMsgs), InBytes: uint64(v.InBytes), OutBytes: uint64(v.OutBytes),
		SlowConsumers: uint64(v.SlowConsumers),
	}
}
