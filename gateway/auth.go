package gateway

// This file holds the authentication and authorization ports of the
// gateway: what an Authenticator decides on and returns, what an
// Authorizer checks, and the per-connection cache of its answers.

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// AuthRequest is what an Authenticator decides on: the handler's
// Authenticate call with what the gateway knows of the connection.
type AuthRequest struct {
	Client   ClientInfo
	Password string
	Peer     netip.AddrPort
	Listener string
	PeerCert *CertInfo // the verified client certificate, if any
}

// Identity is what authentication established about a client.
type Identity struct {
	// Superuser skips authorization.
	Superuser bool
	// Attrs are client attributes (EMQX's client_attrs).
	Attrs map[string]string
	// ExpireAt closes the connection with ReasonExpired when it passes;
	// zero means never.
	ExpireAt time.Time
	// ACL holds rules the authenticator returned (an HTTP answer's acl, a
	// JWT's acl claim), checked before any other authorization source.
	ACL ACL
}

// Authenticator checks a client's credentials. A nil error allows the
// client with the Identity returned (which may be nil: no privileges);
// an error denies it. Errors that carry no Code answer PERMISSION_DENY.
// Implementations must be safe for concurrent use and honour ctx.
type Authenticator interface {
	Authenticate(ctx context.Context, req *AuthRequest) (*Identity, error)
}

// Action is what a client asks authorization for.
type Action uint8

// The actions that are authorized.
const (
	ActionPublish Action = iota + 1
	ActionSubscribe
)

// String returns "publish" or "subscribe".
func (a Action) String() string {
	switch a {
	case ActionPublish:
		return "publish"
	case ActionSubscribe:
		return "subscribe"
	}
	return "unknown"
}

// AuthzRequest is one authorization question: may this client publish to
// (or subscribe to) Topic? Topic is as the client named it, before the
// mountpoint, as EMQX checks it.
type AuthzRequest struct {
	Action   Action
	Topic    string
	QoS      uint8
	Client   ClientInfo // the identity Authenticate registered
	Peer     netip.AddrPort
	Listener string
	PeerCert *CertInfo
	Identity *Identity // nil when the listener authenticates no one
}

// Decision is the answer of an ACL or an authorization source.
type Decision int8

// The decisions.
const (
	NoMatch Decision = iota // the rules say nothing: ask the next source
	Allow
	Deny
)

// String returns "nomatch", "allow" or "deny".
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "nomatch"
}

// ACL is a list of rules that decides some requests.
type ACL interface {
	Match(req *AuthzRequest) Decision
}

// Authorizer decides authorization requests. Implementations must be safe
// for concurrent use. Cacheable says whether the answer may be kept in
// the connection's cache (an answer from a backend failure must not).
type Authorizer interface {
	Authorize(ctx context.Context, req *AuthzRequest) (allow, cacheable bool)
}

// ErrAuthzDenied is what a refused Publish or Subscribe returns; its text
// is EMQX's.
var ErrAuthzDenied = &Error{Code: CodePermissionDeny, Err: errors.New("gateway: Authorization deny")}

// AuthzCache configures the per-connection cache of authorization
// answers (EMQX: 32 entries for one minute). An answer may be stale for
// up to TTL after the rules that gave it change.
type AuthzCache struct {
	MaxSize int           // entries per connection; 0 disables the cache
	TTL     time.Duration // how long an entry is used
}

// authzCache is one connection's cache. It is small: a linear scan is
// cheaper than a map for 32 entries.
type authzCache struct {
	mu      sync.Mutex
	entries []authzEntry
	next    int // the slot to replace when full
}

type authzEntry struct {
	action Action
	topic  string
	allow  bool
	until  time.Time
}

func (c *authzCache) get(a Action, topic string, now time.Time) (allow, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.entries {
		if e := &c.entries[i]; e.action == a && e.topic == topic && now.Before(e.until) {
			return e.allow, true
		}
	}
	return false, false
}

func (c *authzCache) put(a Action, topic string, allow bool, until time.Time, max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := authzEntry{action: a, topic: topic, allow: allow, until: until}
	for i := range c.entries {
		if c.entries[i].action == a && c.entries[i].topic == topic {
			c.entries[i] = e
			return
		}
	}
	if len(c.entries) < max {
		c.entries = append(c.entries, e)
		return
	}
	c.entries[c.next] = e
	c.next = (c.next + 1) % max
}

// authzStats counts authorization answers by action and result.
type authzStats struct {
	allow, deny [3]atomic.Uint64 // by Action
	cacheHits   atomic.Uint64
}

// AuthzStats counts authorization answers.
type AuthzStats struct {
	Allow, Deny map[string]uint64 // by action
	CacheHits   uint64
	AuthnAllow  uint64 // Authenticate calls the authenticator allowed
	AuthnDeny   uint64 // and refused
}

// AuthStats returns the authentication and authorization counters.
func (s *Server) AuthStats() AuthzStats {
	st := AuthzStats{Allow: map[string]uint64{}, Deny: map[string]uint64{}, CacheHits: s.authz.cacheHits.Load(),
		AuthnAllow: s.authnAllow.Load(), AuthnDeny: s.authnDeny.Load()}
	for _, a := range []Action{ActionPublish, ActionSubscribe} {
		st.Allow[a.String()] = s.authz.allow[a].Load()
		st.Deny[a.String()] = s.authz.deny[a].Load()
	}
	return st
}

// authorize checks that c may act on topic (unmounted). A superuser, and
// every client when the server has no Authorizer, may.
func (c *Conn) authorize(ctx context.Context, a Action, topic string, qos uint8) error {
	az := c.srv.opts.Authorizer
	if az == nil {
		return nil
	}
	c.mu.Lock()
	id := c.identity
	req := &AuthzRequest{Action: a, Topic: topic, QoS: qos, Client: ClientInfo{
		ProtoName: c.protoName, ProtoVer: c.protoVer, ClientID: c.clientID, Username: c.username}}
	c.mu.Unlock()
	if id != nil && id.Superuser {
		return nil
	}
	s := c.srv
	cc := s.opts.AuthzCache
	now := time.Now()
	if cc.MaxSize > 0 {
		if allow, ok := c.authzCache.get(a, topic, now); ok {
			s.authz.cacheHits.Add(1)
			return s.authzAnswer(c, a, topic, allow)
		}
	}
	req.Peer, req.Listener, req.PeerCert, req.Identity = c.info.Peer, c.l.Name, c.info.PeerCert, id
	allow, cacheable := c.authorizeSafe(ctx, az, req)
	if cacheable && cc.MaxSize > 0 {
		c.authzCache.put(a, topic, allow, now.Add(cc.TTL), cc.MaxSize)
	}
	return s.authzAnswer(c, a, topic, allow)
}

// authorizeSafe runs the Authorizer; a panic in it denies.
func (c *Conn) authorizeSafe(ctx context.Context, az Authorizer, req *AuthzRequest) (allow, cacheable bool) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.handlerPanicked(c, "authorize", r)
			allow, cacheable = false, false
		}
	}()
	return az.Authorize(ctx, req)
}

// authzAnswer counts an answer and turns a denial into ErrAuthzDenied,
// logging it at a bounded rate.
func (s *Server) authzAnswer(c *Conn, a Action, topic string, allow bool) error {
	if allow {
		s.authz.allow[a].Add(1)
		return nil
	}
	s.authz.deny[a].Add(1)
	if s.denyLog.allow(time.Now()) {
		s.log.Info("gateway: authorization denied", "conn", c.handle, "clientid", c.ClientID(), "action", a.String(), "topic", topic)
	}
	return ErrAuthzDenied
}

// logLimiter allows one log line per interval; the rest are dropped.
type logLimiter struct {
	last atomic.Int64 // unix nanoseconds of the last line
}

// denyLogEvery bounds the authorization-denied log lines: a device that
// publishes where it may not, in a loop, must not flood the log.
const denyLogEvery = time.Second

func (l *logLimiter) allow(now time.Time) bool {
	last := l.last.Load()
	n := now.UnixNano()
	return n-last >= int64(denyLogEvery) && l.last.CompareAndSwap(last, n)
}

// authorizeRaw authorizes a RawPublish, as client RawPublisher.
func (s *Server) authorizeRaw(topic string, qos uint8) error {
	az := s.opts.Authorizer
	if az == nil {
		return nil
	}
	req := &AuthzRequest{Action: ActionPublish, Topic: topic, QoS: qos, Client: ClientInfo{ClientID: RawPublisher}}
	allow, _ := az.Authorize(s.ctx, req)
	if allow {
		s.authz.allow[ActionPublish].Add(1)
		return nil
	}
	s.authz.deny[ActionPublish].Add(1)
	if s.denyLog.allow(time.Now()) {
		s.log.Info("gateway: authorization denied", "clientid", RawPublisher, "action", "publish", "topic", topic)
	}
	return ErrAuthzDenied
}
