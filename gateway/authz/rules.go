// Package authz holds the gateway's authorization: EMQX's ACL rules and
// the chain of sources that decides every Publish and Subscribe.
package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/protogate/protogate/gateway"
)

// Action is the action a rule covers.
type Action uint8

// The actions of a rule.
const (
	Publish Action = 1 << iota
	Subscribe
	All = Publish | Subscribe
)

// ParseAction parses publish (or pub), subscribe (or sub) and all.
func ParseAction(s string) (Action, error) {
	switch s {
	case "publish", "pub":
		return Publish, nil
	case "subscribe", "sub":
		return Subscribe, nil
	case "all", "":
		return All, nil
	}
	return 0, fmt.Errorf("authz: action %q: want publish, subscribe or all", s)
}

func (a Action) covers(ga gateway.Action) bool {
	switch ga {
	case gateway.ActionPublish:
		return a&Publish != 0
	case gateway.ActionSubscribe:
		return a&Subscribe != 0
	}
	return false
}

// Who selects the clients a rule applies to. Every condition set must
// hold (an empty Who matches every client). A client without a username
// never matches a username condition, nor one without a client id a
// client id condition.
type Who struct {
	Username   string
	UsernameRE *regexp.Regexp
	ClientID   string
	ClientIDRE *regexp.Regexp
	IPNets     []netip.Prefix // the peer is in one of them
	Listener   string
	// Attrs are client attributes (gateway.Identity.Attrs) that must
	// have these values; AttrsRE ones that must match these expressions.
	Attrs   map[string]string
	AttrsRE map[string]*regexp.Regexp
	// Any holds alternatives (EMQX's 'or'): one of them must match too.
	Any []Who
}

func (w *Who) match(req *gateway.AuthzRequest) bool {
	u, c := req.Client.Username, req.Client.ClientID
	switch {
	case w.Username != "" && u != w.Username,
		w.UsernameRE != nil && (u == "" || !w.UsernameRE.MatchString(u)),
		w.ClientID != "" && c != w.ClientID,
		w.ClientIDRE != nil && (c == "" || !w.ClientIDRE.MatchString(c)),
		w.Listener != "" && req.Listener != w.Listener:
		return false
	}
	if len(w.IPNets) > 0 {
		ip, in := req.Peer.Addr().Unmap(), false
		for _, n := range w.IPNets {
			in = in || n.Contains(ip)
		}
		if !in {
			return false
		}
	}
	for k, v := range w.Attrs {
		if got, ok := attr(req, k); !ok || got != v {
			return false
		}
	}
	for k, re := range w.AttrsRE {
		if got, ok := attr(req, k); !ok || !re.MatchString(got) {
			return false
		}
	}
	if len(w.Any) > 0 {
		for i := range w.Any {
			if w.Any[i].match(req) {
				return true
			}
		}
		return false
	}
	return true
}

func attr(req *gateway.AuthzRequest, name string) (string, bool) {
	if req.Identity == nil {
		return "", false
	}
	v, ok := req.Identity.Attrs[name]
	return v, ok
}

// Topic is one topic pattern of a rule: an MQTT filter, with
// placeholders, matched by MQTT rules, or (Eq) a filter the request must
// name literally.
type Topic struct {
	Filter string
	Eq     bool
}

// ParseTopic parses a rule's topic: "eq <filter>" is an exact filter;
// anything else a pattern.
func ParseTopic(s string) (Topic, error) {
	if f, ok := strings.CutPrefix(s, "eq "); ok {
		s = strings.TrimSpace(f)
		if s == "" {
			return Topic{}, errors.New("authz: topic \"eq\" without a filter")
		}
		return Topic{Filter: s, Eq: true}, nil
	}
	if s == "" {
		return Topic{}, errors.New("authz: empty topic")
	}
	if err := checkPattern(s); err != nil {
		return Topic{}, err
	}
	return Topic{Filter: s}, nil
}

// checkPattern refuses a filter whose wildcards are misplaced and
// unknown placeholders.
func checkPattern(f string) error {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("authz: topic %q: # must be the last level", f)
		}
		if l != "#" && l != "+" && strings.ContainsAny(l, "+#") {
			return fmt.Errorf("authz: topic %q: a wildcard must be a whole level", f)
		}
	}
	for rest := f; ; {
		i := strings.Index(rest, "${")
		if i < 0 {
			return nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("authz: topic %q: unclosed placeholder", f)
		}
		switch name := rest[i+2 : i+j]; {
		case name == "clientid", name == "username", name == "cert_common_name", strings.HasPrefix(name, "client_attrs."):
		default:
			return fmt.Errorf("authz: topic %q: unknown placeholder ${%s} (want clientid, username, cert_common_name or client_attrs.NAME)", f, name)
		}
		rest = rest[i+j+1:]
	}
}

// Rule is one ACL rule, as EMQX's {Permission, Who, Action, Topics}.
type Rule struct {
	Allow  bool
	Who    Who
	Action Action
	QoS    []uint8 // the request's QoS must be one of them; nil: any
	Topics []Topic // nil: every topic (EMQX's {Perm, Who} rules)
}

// Rules is an ACL: the first rule that matches a request decides it. It
// implements gateway.ACL.
type Rules []Rule

var _ gateway.ACL = Rules(nil)

// Match implements gateway.ACL.
func (rs Rules) Match(req *gateway.AuthzRequest) gateway.Decision {
	for i := range rs {
		if rs[i].matches(req) {
			if rs[i].Allow {
				return gateway.Allow
			}
			return gateway.Deny
		}
	}
	return gateway.NoMatch
}

func (r *Rule) matches(req *gateway.AuthzRequest) bool {
	if !r.Action.covers(req.Action) || !r.Who.match(req) {
		return false
	}
	if r.QoS != nil {
		ok := false
		for _, q := range r.QoS {
			ok = ok || q == req.QoS
		}
		if !ok {
			return false
		}
	}
	if r.Topics == nil {
		return true
	}
	for _, t := range r.Topics {
		f, ok := render(t.Filter, req)
		if !ok {
			continue
		}
		if t.Eq && f == req.Topic || !t.Eq && matchFilter(f, req.Topic) {
			return true
		}
	}
	return false
}

// render replaces the placeholders of f with the client's values. A
// placeholder without a value, or whose value holds +, # or /, makes the
// pattern match nothing: a username such as "a/#" must not widen
// "users/${username}".
func render(f string, req *gateway.AuthzRequest) (string, bool) {
	if !strings.Contains(f, "${") {
		return f, true
	}
	var b strings.Builder
	for {
		i := strings.Index(f, "${")
		if i < 0 {
			b.WriteString(f)
			return b.String(), true
		}
		j := strings.IndexByte(f[i:], '}')
		if j < 0 {
			return "", false
		}
		v := value(f[i+2:i+j], req)
		if v == "" || strings.ContainsAny(v, "+#/") {
			return "", false
		}
		b.WriteString(f[:i])
		b.WriteString(v)
		f = f[i+j+1:]
	}
}

func value(name string, req *gateway.AuthzRequest) string {
	switch name {
	case "clientid":
		return req.Client.ClientID
	case "username":
		return req.Client.Username
	case "cert_common_name":
		if req.PeerCert != nil {
			return req.PeerCert.CN
		}
		return ""
	}
	if a, ok := strings.CutPrefix(name, "client_attrs."); ok && req.Identity != nil {
		return req.Identity.Attrs[a]
	}
	return ""
}

// matchFilter reports whether the requested topic or filter req is
// covered by the rule's filter rule, as emqx_topic:match: level by level,
// the rule's "+" covers any one level (a "+" of the request too) and its
// "#" the rest; a "#" of the request is covered only by a "#". A request
// starting with "$" is not covered by a rule starting with a wildcard.
func matchFilter(rule, req string) bool {
	if req == "" || rule == "" {
		return false
	}
	if req[0] == '$' && (rule[0] == '+' || rule[0] == '#') {
		return false
	}
	for {
		rl, rrest, rmore := strings.Cut(rule, "/")
		if rl == "#" {
			return true
		}
		ql, qrest, qmore := strings.Cut(req, "/")
		if rl != "+" && rl != ql || ql == "#" {
			return false
		}
		switch {
		case !rmore && !qmore:
			return true
		case !qmore:
			return rrest == "#"
		case !rmore:
			return false
		}
		rule, req = rrest, qrest
	}
}

// rawRule is EMQX's raw JSON rule (emqx_authz_rule_raw): what an HTTP
// authenticator's "acl" or a JWT's acl claim carries.
type rawRule struct {
	Permission string          `json:"permission"`
	Action     string          `json:"action"`
	Topic      string          `json:"topic"`
	Topics     []string        `json:"topics"`
	QoS        json.RawMessage `json:"qos"`
	Retain     json.RawMessage `json:"retain"`
	ClientIDRE string          `json:"clientid_re"`
	UsernameRE string          `json:"username_re"`
	IPAddr     string          `json:"ipaddr"`
	Listener   string          `json:"listener"`
}

// ParseRaw parses EMQX's raw rule format: a JSON array of rule objects
// ({"permission": "allow|deny", "action": "publish|subscribe|all",
// "topic": "t" or "topics": [...], "qos": ...}). Unknown rules fail the
// whole list, so that a typo cannot turn into a wider permission.
func ParseRaw(data []byte) (Rules, error) {
	var raw []rawRule
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("authz: acl: want a JSON array of rules: %w", err)
	}
	return fromRaw(raw)
}

// ParseRawValue is ParseRaw for an already decoded JSON value.
func ParseRawValue(v any) (Rules, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("authz: acl: %w", err)
	}
	return ParseRaw(b)
}

func fromRaw(raw []rawRule) (Rules, error) {
	rs := make(Rules, 0, len(raw))
	for i, r := range raw {
		var rule Rule
		switch r.Permission {
		case "allow":
			rule.Allow = true
		case "deny":
		default:
			return nil, fmt.Errorf("authz: acl rule %d: permission %q: want allow or deny", i+1, r.Permission)
		}
		var err error
		if rule.Action, err = ParseAction(r.Action); err != nil {
			return nil, fmt.Errorf("authz: acl rule %d: %w", i+1, err)
		}
		topics := r.Topics
		if r.Topic != "" {
			topics = append(topics, r.Topic)
		}
		if len(topics) == 0 {
			return nil, fmt.Errorf("authz: acl rule %d: no topic", i+1)
		}
		for _, s := range topics {
			t, err := ParseTopic(s)
			if err != nil {
				return nil, fmt.Errorf("authz: acl rule %d: %w", i+1, err)
			}
			rule.Topics = append(rule.Topics, t)
		}
		if rule.QoS, err = parseQoS(r.QoS); err != nil {
			return nil, fmt.Errorf("authz: acl rule %d: %w", i+1, err)
		}
		if r.ClientIDRE != "" {
			if rule.Who.ClientIDRE, err = regexp.Compile(r.ClientIDRE); err != nil {
				return nil, fmt.Errorf("authz: acl rule %d: clientid_re: %w", i+1, err)
			}
		}
		if r.UsernameRE != "" {
			if rule.Who.UsernameRE, err = regexp.Compile(r.UsernameRE); err != nil {
				return nil, fmt.Errorf("authz: acl rule %d: username_re: %w", i+1, err)
			}
		}
		if r.IPAddr != "" {
			p, err := ParsePrefix(r.IPAddr)
			if err != nil {
				return nil, fmt.Errorf("authz: acl rule %d: %w", i+1, err)
			}
			rule.Who.IPNets = []netip.Prefix{p}
		}
		rule.Who.Listener = r.Listener
		rs = append(rs, rule)
	}
	return rs, nil
}

// parseQoS reads 0, [0,1] or "0,1".
func parseQoS(m json.RawMessage) ([]uint8, error) {
	if len(m) == 0 || string(m) == "null" {
		return nil, nil
	}
	var list []int
	var one int
	var s string
	switch {
	case json.Unmarshal(m, &one) == nil:
		list = []int{one}
	case json.Unmarshal(m, &list) == nil:
	case json.Unmarshal(m, &s) == nil:
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("qos %q", s)
			}
			list = append(list, n)
		}
	default:
		return nil, fmt.Errorf("qos %s: want 0, 1, 2 or a list of them", m)
	}
	out := make([]uint8, 0, len(list))
	for _, q := range list {
		if q < 0 || q > 2 {
			return nil, fmt.Errorf("qos %d: want 0, 1 or 2", q)
		}
		out = append(out, uint8(q))
	}
	return out, nil
}

// ParsePrefix parses an IP address or a CIDR prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("authz: ipaddr %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("authz: ipaddr %q: not an IP address or CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
