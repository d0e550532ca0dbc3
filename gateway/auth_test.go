package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingAuthz allows topics under "ok/" and counts its calls.
type countingAuthz struct {
	calls atomic.Int64
	last  atomic.Pointer[AuthzRequest]
}

func (a *countingAuthz) Authorize(_ context.Context, req *AuthzRequest) (bool, bool) {
	a.calls.Add(1)
	a.last.Store(req)
	return strings.HasPrefix(req.Topic, "ok/"), true
}

// identityAuth lets every client in with a fixed identity.
type identityAuth struct{ id *Identity }

func (a identityAuth) Authenticate(context.Context, *AuthRequest) (*Identity, error) {
	return a.id, nil
}

// authedConn serves one connection and authenticates it as client id with
// id, returning the Conn.
func authedConn(t *testing.T, opts Options, id *Identity) (*Conn, *checker) {
	t.Helper()
	h := newChecker(t)
	opts.PubSub = &fakePubSub{}
	opts.Authenticator = identityAuth{id}
	_, addr := serve(t, h, opts, Listener{Type: TCP, Mountpoint: "m/"})
	dial(t, addr)
	c := recv(t, h.created)
	if err := c.Authenticate(context.Background(), &ClientInfo{ClientID: "dev", Username: "u"}, "pw"); err != nil {
		t.Fatal(err)
	}
	return c, h
}

// TestAuthorizeAndCache: every Publish and Subscribe is asked of the
// Authorizer with the unmounted topic, refusals answer PERMISSION_DENY,
// and a cached answer is not asked again until its TTL passes.
func TestAuthorizeAndCache(t *testing.T) {
	az := &countingAuthz{}
	c, _ := authedConn(t, Options{Authorizer: az, AuthzCache: AuthzCache{MaxSize: 3, TTL: time.Hour}}, nil)
	if err := c.Publish("ok/1", 0, nil); err != nil {
		t.Fatal(err)
	}
	if r := az.last.Load(); r.Topic != "ok/1" || r.Action != ActionPublish || r.Client.ClientID != "dev" || r.Listener != "test" {
		t.Errorf("request %+v", r)
	}
	if err := c.Publish("no/1", 0, nil); CodeOf(err) != CodePermissionDeny || !errors.Is(err, ErrAuthzDenied) {
		t.Errorf("denied publish: %v", err)
	}
	if err := c.Subscribe(context.Background(), "no/#", 0); CodeOf(err) != CodePermissionDeny {
		t.Errorf("denied subscribe: %v", err)
	}
	n := az.calls.Load()
	for range 3 {
		c.Publish("ok/1", 0, nil)
		c.Publish("no/1", 0, nil)
	}
	if got := az.calls.Load(); got != n {
		t.Errorf("cached answers asked again: %d calls, want %d", got, n)
	}
	// A fourth key evicts one of the three entries: asked once.
	c.Publish("ok/2", 0, nil)
	c.Publish("ok/2", 0, nil)
	if got := az.calls.Load(); got != n+1 {
		t.Errorf("%d calls after a new topic, want %d", got, n+1)
	}
	st := c.Server().AuthStats()
	if st.Deny["publish"] != 4 || st.Deny["subscribe"] != 1 || st.CacheHits == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestSuperuserSkipsAuthorization and the Authorizer never sees it.
func TestSuperuserSkipsAuthorization(t *testing.T) {
	az := &countingAuthz{}
	c, _ := authedConn(t, Options{Authorizer: az}, &Identity{Superuser: true})
	if err := c.Publish("anything", 0, nil); err != nil {
		t.Fatal(err)
	}
	if n := az.calls.Load(); n != 0 {
		t.Errorf("authorizer asked %d times", n)
	}
}

// TestExpireAtClosesConnection: credentials that expire close the
// connection with ReasonExpired; ones already expired are refused.
func TestExpireAtClosesConnection(t *testing.T) {
	c, h := authedConn(t, Options{}, &Identity{ExpireAt: time.Now().Add(50 * time.Millisecond)})
	if got := recv(t, h.closed); got != c {
		t.Fatal("another connection closed")
	}
	h.mu.Lock()
	reason := h.reasons[c.ID()]
	h.mu.Unlock()
	if reason != ReasonExpired {
		t.Errorf("reason %q, want %q", reason, ReasonExpired)
	}

	h2 := newChecker(t)
	_, addr := serve(t, h2, Options{Authenticator: identityAuth{&Identity{ExpireAt: time.Now().Add(-time.Second)}}}, Listener{Type: TCP})
	dial(t, addr)
	c2 := recv(t, h2.created)
	if err := c2.Authenticate(context.Background(), &ClientInfo{ClientID: "late"}, ""); CodeOf(err) != CodePermissionDeny {
		t.Errorf("expired credentials: %v", err)
	}
}

// TestAuthorizerPanicDenies: a panicking Authorizer denies that call and
// nothing else.
func TestAuthorizerPanicDenies(t *testing.T) {
	var once sync.Once
	az := authzFunc(func(req *AuthzRequest) bool {
		once.Do(func() { panic("boom") })
		return true
	})
	c, _ := authedConn(t, Options{Authorizer: az}, nil)
	if err := c.Publish("a", 0, nil); CodeOf(err) != CodePermissionDeny {
		t.Errorf("publish with a panicking authorizer: %v", err)
	}
	if err := c.Publish("a", 0, nil); err != nil {
		t.Errorf("next publish: %v", err)
	}
	if c.Server().Panics() != 1 {
		t.Errorf("panics %d", c.Server().Panics())
	}
}

type authzFunc func(*AuthzRequest) bool

func (f authzFunc) Authorize(_ context.Context, r *AuthzRequest) (bool, bool) { return f(r), false }
