package authz

import (
	"context"
	"errors"
	"net/netip"
	"regexp"
	"testing"

	"github.com/protogate/protogate/gateway"
)

// TestMatchFilter follows emqx_topic:match for a requested topic or
// filter against a rule's filter.
func TestMatchFilter(t *testing.T) {
	for _, tc := range []struct {
		rule, req string
		want      bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},  // a subscribed "+" is covered by a rule "+"
		{"a/#", "a/+", true},  // and by a rule "#"
		{"a/b", "a/+", false}, // but not by a literal level
		{"a/+", "a/#", false}, // a subscribed "#" only by a rule "#"
		{"a/#", "a/#", true},
		{"a/#", "a", true}, // "#" covers the parent level
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/x/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false}, // a $ topic is not covered by a leading wildcard
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"", "a", false},
		{"a", "", false},
	} {
		if got := matchFilter(tc.rule, tc.req); got != tc.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tc.rule, tc.req, got, tc.want)
		}
	}
}

func req(action gateway.Action, topic, clientID, username string) *gateway.AuthzRequest {
	return &gateway.AuthzRequest{Action: action, Topic: topic,
		Client: gateway.ClientInfo{ClientID: clientID, Username: username},
		Peer:   netip.MustParseAddrPort("10.1.2.3:5000"), Listener: "tcp"}
}

func topics(t *testing.T, ss ...string) []Topic {
	t.Helper()
	var out []Topic
	for _, s := range ss {
		tp, err := ParseTopic(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tp)
	}
	return out
}

// TestRules covers EMQX's ACL semantics: first match wins, who, action,
// eq, placeholders that never widen a rule.
func TestRules(t *testing.T) {
	rules := Rules{
		{Allow: false, Who: Who{Username: "blocked"}, Action: All},
		{Allow: true, Who: Who{UsernameRE: regexp.MustCompile(`^dash`)}, Action: Subscribe, Topics: topics(t, "$SYS/#")},
		{Allow: true, Action: All, Topics: topics(t, "users/${username}/#", "dev/${clientid}/+")},
		{Allow: false, Action: Subscribe, Topics: topics(t, "eq #", "eq +/#")},
		{Allow: true, Action: Subscribe, Topics: topics(t, "#")},
		{Allow: true, Who: Who{IPNets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}, Action: Publish, Topics: topics(t, "lan/#")},
		{Allow: true, Who: Who{ClientID: "qos0"}, Action: Publish, QoS: []uint8{0}, Topics: topics(t, "q")},
	}
	P, S := gateway.ActionPublish, gateway.ActionSubscribe
	for _, tc := range []struct {
		name string
		req  *gateway.AuthzRequest
		want gateway.Decision
	}{
		{"blocked user first", req(S, "x", "c", "blocked"), gateway.Deny},
		{"dashboard $SYS", req(S, "$SYS/brokers", "c", "dashboard"), gateway.Allow},
		{"others no $SYS", req(S, "$SYS/brokers", "c", "bob"), gateway.NoMatch},
		{"own user tree", req(P, "users/bob/x", "c", "bob"), gateway.Allow},
		{"other user tree", req(P, "users/alice/x", "c", "bob"), gateway.NoMatch},
		{"no username, no placeholder match", req(P, "users//x", "c", ""), gateway.NoMatch},
		{"username with + does not widen", req(P, "users/+/x", "c", "+"), gateway.NoMatch},
		{"username with / does not widen", req(P, "users/a/b/x", "c", "a/b"), gateway.NoMatch},
		{"client tree", req(P, "dev/c1/up", "c1", ""), gateway.Allow},
		{"client tree, too deep", req(P, "dev/c1/up/x", "c1", ""), gateway.NoMatch},
		{"eq # denies subscribing to #", req(S, "#", "c", "u"), gateway.Deny},
		{"eq +/# denies it literally", req(S, "+/#", "c", "u"), gateway.Deny},
		{"other filters allowed", req(S, "a/+", "c", "u"), gateway.Allow},
		{"publish not covered by a subscribe rule", req(P, "a", "c", "u"), gateway.NoMatch},
		{"ip range", req(P, "lan/1", "c", "u"), gateway.Allow},
		{"qos allowed", &gateway.AuthzRequest{Action: P, Topic: "q", QoS: 0, Client: gateway.ClientInfo{ClientID: "qos0"}}, gateway.Allow},
		{"qos not allowed", &gateway.AuthzRequest{Action: P, Topic: "q", QoS: 1, Client: gateway.ClientInfo{ClientID: "qos0"}}, gateway.NoMatch},
	} {
		if got := rules.Match(tc.req); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseRaw(t *testing.T) {
	rs, err := ParseRaw([]byte(`[
		{"permission":"allow","action":"publish","topic":"up/${clientid}"},
		{"permission":"allow","action":"sub","topics":["down/#","eq all/#"],"qos":[0,1]},
		{"permission":"deny","action":"all","topic":"#"}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    *gateway.AuthzRequest
		want gateway.Decision
	}{
		{req(gateway.ActionPublish, "up/c", "c", ""), gateway.Allow},
		{req(gateway.ActionPublish, "up/d", "c", ""), gateway.Deny},
		{req(gateway.ActionSubscribe, "down/x", "c", ""), gateway.Allow},
		{req(gateway.ActionSubscribe, "all/#", "c", ""), gateway.Allow},
		{req(gateway.ActionSubscribe, "all/x", "c", ""), gateway.Deny},
	} {
		if got := rs.Match(tc.r); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.r.Action, tc.r.Topic, got, tc.want)
		}
	}
	for _, bad := range []string{
		`{"permission":"allow"}`,
		`[{"permission":"maybe","topic":"a"}]`,
		`[{"permission":"allow","action":"read","topic":"a"}]`,
		`[{"permission":"allow"}]`,
		`[{"permission":"allow","topic":"a/#/b"}]`,
		`[{"permission":"allow","topic":"a/${password}"}]`,
		`[{"permission":"allow","topic":"a","qos":3}]`,
		`[{"permission":"allow","topic":"a","clientid_re":"("}]`,
		`[{"permission":"allow","topic":"a","ipaddr":"10.0.0.300"}]`,
	} {
		if _, err := ParseRaw([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

type failing struct{}

func (failing) Name() string { return "http" }
func (failing) Authorize(context.Context, *gateway.AuthzRequest) (gateway.Decision, error) {
	return gateway.NoMatch, errors.New("connection refused")
}

func TestChain(t *testing.T) {
	allowA := Rules{{Allow: true, Action: All, Topics: topics(t, "a")}}
	denyAll := Rules{{Allow: false, Action: All}}
	clientACL := Rules{{Allow: true, Action: All, Topics: topics(t, "mine")}}
	for _, tc := range []struct {
		name           string
		chain          *Chain
		id             *gateway.Identity
		topic          string
		allow, caching bool
	}{
		{"source allows", &Chain{Sources: []Source{allowA}}, nil, "a", true, true},
		{"no match denies", &Chain{Sources: []Source{allowA}}, nil, "b", false, true},
		{"no match allows", &Chain{Sources: []Source{allowA}, NoMatchAllow: true}, nil, "b", true, true},
		{"client acl first", &Chain{Sources: []Source{denyAll}}, &gateway.Identity{ACL: clientACL}, "mine", true, true},
		{"client acl no match goes on", &Chain{Sources: []Source{denyAll}, NoMatchAllow: true}, &gateway.Identity{ACL: clientACL}, "x", false, true},
		{"failure skipped in legacy", &Chain{Sources: []Source{failing{}, allowA}}, nil, "a", true, false},
		{"failure denies in hardened", &Chain{Sources: []Source{failing{}, allowA}, FailureDenies: true}, nil, "a", false, false},
	} {
		r := req(gateway.ActionPublish, tc.topic, "c", "u")
		r.Identity = tc.id
		allow, cacheable := tc.chain.Authorize(context.Background(), r)
		if allow != tc.allow || cacheable != tc.caching {
			t.Errorf("%s: allow %v cacheable %v, want %v %v", tc.name, allow, cacheable, tc.allow, tc.caching)
		}
	}
}
