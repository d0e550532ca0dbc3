package authz

import (
	"net/netip"
	"regexp"
	"testing"

	"github.com/protogate/protogate/gateway"
)

// TestEMQXMatchCases ports the match cases of EMQX's own rule suite
// (apps/emqx_auth/test/emqx_authz/emqx_authz_rule_SUITE.erl, t_match and
// t_match_client_attr) to these rules. The base client is client id
// "test", username "test", peer 127.0.0.1, as there. EMQX's retain
// conditions have no counterpart (an ExProto publish carries no retain
// flag), so the cases that differ only in retain are left out, and so is
// {ipaddrs, []}, which a rule here cannot say (an empty list is no
// condition).
func TestEMQXMatchCases(t *testing.T) {
	base := func(mod func(*gateway.AuthzRequest)) *gateway.AuthzRequest {
		r := &gateway.AuthzRequest{Client: gateway.ClientInfo{ClientID: "test", Username: "test"},
			Peer: netip.MustParseAddrPort("127.0.0.1:1883"), Listener: "tcp"}
		if mod != nil {
			mod(r)
		}
		return r
	}
	peer := func(ip string) func(*gateway.AuthzRequest) {
		return func(r *gateway.AuthzRequest) { r.Peer = netip.MustParseAddrPort(ip + ":1883") }
	}
	user := func(u string) func(*gateway.AuthzRequest) {
		return func(r *gateway.AuthzRequest) { r.Client.Username = u }
	}
	client := func(c string) func(*gateway.AuthzRequest) {
		return func(r *gateway.AuthzRequest) { r.Client.ClientID = c }
	}
	nobody := func(r *gateway.AuthzRequest) { r.Client.Username = ""; r.Peer = netip.AddrPort{} }
	tp := func(ss ...string) []Topic { return topics(t, ss...) }
	pfx := func(s string) netip.Prefix { p, _ := ParsePrefix(s); return p }

	denyAll := Rule{Allow: false, Action: All}
	eqWild := Rule{Allow: true, Who: Who{IPNets: []netip.Prefix{pfx("127.0.0.1")}}, Action: All, Topics: tp("eq #", "eq +")}
	ipsClient := Rule{Allow: true, Who: Who{IPNets: []netip.Prefix{pfx("127.0.0.1"), pfx("192.168.1.0/24")}}, Action: Subscribe, Topics: tp("${clientid}")}
	and := Rule{Allow: true, Who: Who{ClientID: "test", Username: "test"}, Action: Publish, Topics: tp("topic/test")}
	or := Rule{Allow: true, Who: Who{Any: []Who{{UsernameRE: regexp.MustCompile("^test")}, {ClientIDRE: regexp.MustCompile("test?")}}},
		Action: Publish, Topics: tp("${username}", "${clientid}")}
	inLevel := Rule{Allow: true, Who: Who{Username: "test"}, Action: Publish, Topics: tp("t/foo${username}boo")}
	qos1 := Rule{Allow: true, Who: Who{Username: "test"}, Action: Subscribe, QoS: []uint8{1}, Topics: tp("topic/test")}
	anySub := Rule{Allow: true, Who: Who{Username: "test"}, Action: Subscribe, Topics: tp("topic/test")}
	all2 := Rule{Allow: true, Who: Who{Username: "test"}, Action: All, QoS: []uint8{2}, Topics: tp("topic/test")}
	pubAll := Rule{Allow: true, Action: Publish, Topics: tp("#")}
	userRule := Rule{Allow: true, Who: Who{Username: "user"}, Action: All, Topics: tp("#")}
	ipRule := Rule{Allow: true, Who: Who{IPNets: []netip.Prefix{pfx("127.0.0.1")}}, Action: All, Topics: tp("#")}
	clientRE := Rule{Allow: true, Who: Who{ClientIDRE: regexp.MustCompile("^test")}, Action: All, Topics: tp("#")}

	S, P := gateway.ActionSubscribe, gateway.ActionPublish
	for i, tc := range []struct {
		rule   Rule
		action gateway.Action
		qos    uint8
		topic  string
		mod    func(*gateway.AuthzRequest)
		want   gateway.Decision
	}{
		{denyAll, S, 0, "#", nil, gateway.Deny},
		{denyAll, S, 0, "+", peer("192.168.1.10"), gateway.Deny},
		{denyAll, S, 0, "topic/test", user("fake"), gateway.Deny},
		{eqWild, S, 0, "#", nil, gateway.Allow},
		{eqWild, S, 0, "topic/test", nil, gateway.NoMatch},
		{eqWild, S, 0, "#", peer("192.168.1.10"), gateway.NoMatch},
		{ipsClient, S, 0, "test", nil, gateway.Allow},
		{ipsClient, S, 0, "test", peer("192.168.1.10"), gateway.Allow},
		{ipsClient, S, 0, "topic/test", peer("192.168.1.10"), gateway.NoMatch},
		{and, P, 0, "topic/test", nil, gateway.Allow},
		{and, P, 0, "topic/test", peer("192.168.1.10"), gateway.Allow},
		{and, P, 0, "topic/test", user("fake"), gateway.NoMatch},
		{and, P, 0, "topic/test", client("fake"), gateway.NoMatch},
		{or, P, 0, "test", nil, gateway.Allow},
		{or, P, 0, "test", peer("192.168.1.10"), gateway.Allow},
		{or, P, 0, "test", user("fake"), gateway.Allow},
		{or, P, 0, "fake", user("fake"), gateway.Allow},
		{or, P, 0, "test", client("fake"), gateway.Allow},
		{or, P, 0, "fake", client("fake"), gateway.Allow},
		{inLevel, P, 0, "t/foo${username}boo", nil, gateway.NoMatch},
		{inLevel, P, 0, "t/footestboo", client("fake"), gateway.Allow},
		{anySub, S, 0, "topic/test", client("fake"), gateway.Allow},
		{anySub, S, 2, "topic/test", client("fake"), gateway.Allow},
		{qos1, S, 1, "topic/test", client("fake"), gateway.Allow},
		{qos1, S, 0, "topic/test", client("fake"), gateway.NoMatch},
		{all2, S, 2, "topic/test", client("fake"), gateway.Allow},
		{all2, S, 0, "topic/test", client("fake"), gateway.NoMatch},
		{all2, P, 1, "topic/test", client("fake"), gateway.NoMatch},
		{all2, P, 2, "topic/test", client("fake"), gateway.Allow},
		{pubAll, P, 2, "topic/test", client("fake"), gateway.Allow},
		{pubAll, S, 2, "topic/test", client("fake"), gateway.NoMatch},
		{userRule, S, 2, "topic/test", nobody, gateway.NoMatch},
		{ipRule, S, 2, "topic/test", nobody, gateway.NoMatch},
		{clientRE, S, 2, "topic/test", client("fake"), gateway.NoMatch},
	} {
		r := base(tc.mod)
		r.Action, r.QoS, r.Topic = tc.action, tc.qos, tc.topic
		if got := (Rules{tc.rule}).Match(r); got != tc.want {
			t.Errorf("case %d (%s %s qos %d): %v, want %v", i, tc.action, tc.topic, tc.qos, got, tc.want)
		}
	}

	// t_match_client_attr: client id c1 and an attribute condition.
	attrRule := func(name, value string, re bool) Rules {
		w := Who{ClientID: "c1"}
		if re {
			w.AttrsRE = map[string]*regexp.Regexp{name: regexp.MustCompile(value)}
		} else {
			w.Attrs = map[string]string{name: value}
		}
		return Rules{{Allow: true, Who: w, Action: Publish, Topics: tp("test/topic")}}
	}
	for _, tc := range []struct {
		rn, rv string
		re     bool
		an, av string
		want   gateway.Decision
	}{
		{"a1", "v1", false, "a1", "v1", gateway.Allow},
		{"a1", "v1", false, "a1", "v2", gateway.NoMatch},
		{"a1", "v1", false, "a2", "v1", gateway.NoMatch},
		{"a1", "v1", true, "a1", "v1", gateway.Allow},
		{"a1", "^abc.+", true, "a1", "abcd", gateway.Allow},
		{"a1", "^abc.+", true, "a1", "abc", gateway.NoMatch},
		{"a1", "^abc.+", true, "a2", "abcd", gateway.NoMatch},
	} {
		r := &gateway.AuthzRequest{Action: P, Topic: "test/topic", Client: gateway.ClientInfo{ClientID: "c1"},
			Identity: &gateway.Identity{Attrs: map[string]string{tc.an: tc.av}}}
		if got := attrRule(tc.rn, tc.rv, tc.re).Match(r); got != tc.want {
			t.Errorf("client_attr %s=%s (re %v) against %s=%s: %v, want %v", tc.rn, tc.rv, tc.re, tc.an, tc.av, got, tc.want)
		}
	}
}
