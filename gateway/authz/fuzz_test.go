package authz

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/topic"
)

// validPattern reports whether f is a filter ParseTopic takes as a pattern
// without placeholders and whose meaning topic.Match shares (no
// "$share/").
func validPattern(f string) bool {
	return f != "" && !strings.Contains(f, "${") && checkPattern(f) == nil &&
		!strings.HasPrefix(f, "$share/") && f != "$share"
}

// FuzzMatchFilter checks matchFilter, the ACL's topic matching:
//
//   - it never panics, on any pair of strings;
//   - a rule "#" covers every topic and filter that does not start with
//     "$", and nothing else;
//   - for a valid rule and a topic name (no wildcard), it agrees with
//     topic.Match, the gateway's own MQTT matching;
//   - it is sound for subscriptions: when a rule covers a requested
//     filter, it covers every topic that filter matches, so a subscription
//     the rule allows receives nothing the rule would not let it publish.
func FuzzMatchFilter(f *testing.F) {
	for _, s := range [][3]string{
		{"a/b", "a/b", "a/b"}, {"a/+", "a/+", "a/x"}, {"a/#", "a/+", "a/b"}, {"a/+", "a/#", "a/b/c"},
		{"a/#", "a", "a"}, {"#", "$SYS/x", "$SYS/x"}, {"+/x", "+/x", "$SYS/x"}, {"$SYS/#", "$SYS/+", "$SYS/a"},
		{"a//b", "a/+/b", "a//b"}, {"", "a", "a"}, {"a", "", ""}, {"+", "#", "/"}, {"a/+/#", "a/+/+", "a/b/c"},
		{"#", "#", "a"}, {"a/${clientid}", "a/c", "a/c"}, {"a#", "a#", "a#"}, {"+/+", "/", "/"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, rule, req, name string) {
		got := matchFilter(rule, req)
		if hash := matchFilter("#", req); hash != (req != "" && req[0] != '$') {
			t.Fatalf("matchFilter(#, %q) = %v", req, hash)
		}
		if !validPattern(rule) {
			return
		}
		if name != "" && !strings.ContainsAny(name, "+#") {
			if m, want := matchFilter(rule, name), topic.Match(rule, name); m != want {
				t.Fatalf("matchFilter(%q, %q) = %v, topic.Match = %v", rule, name, m, want)
			}
		}
		if got && validPattern(req) && topic.Match(req, name) && !matchFilter(rule, name) {
			t.Fatalf("rule %q covers the subscription %q, which matches %q, but not %q itself", rule, req, name, name)
		}
	})
}

// FuzzParseTopic checks ParseTopic and the rendering of placeholders, with
// a one-rule ACL "allow all <topic>":
//
//   - errors say "authz: ", a pattern is kept as written, "eq " is cut off;
//   - a placeholder never widens a rule: the rule allows only when every
//     placeholder it names has a value, and no value holds "+", "#" or
//     "/" (a username "a/#" does not turn "users/${username}" into
//     "users/a/#");
//   - with such values, it allows exactly what the filter with the values
//     written in (in one pass) matches, or for "eq" names literally.
func FuzzParseTopic(f *testing.F) {
	for _, s := range [][4]string{
		{"users/${username}/#", "users/u/x", "c", "u"},
		{"users/${username}/#", "users/a/b/x", "c", "a/b"},
		{"dev/${clientid}/+", "dev/c/x", "c", ""},
		{"dev/${clientid}/+", "dev/+/x", "+", ""},
		{"eq dev/${clientid}/#", "dev/c/#", "c", "u"},
		{"eq #", "#", "c", "u"},
		{"a/${cert_common_name}", "a/cn", "c", "u"},
		{"a/${client_attrs.group}", "a/g", "c", "u"},
		{"a/${clientid", "a/c", "c", "u"},
		{"${username}${clientid}", "${clientid}c", "c", "${clientid}"},
		{"a/#/b", "a/x/b", "c", "u"},
		{"eq ", "", "", ""},
		{"eq  a ", "a", "c", "u"},
		{"a/${password}", "a/p", "c", "u"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, s, name, clientID, username string) {
		tp, err := ParseTopic(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "authz: ") {
				t.Fatalf("ParseTopic(%q): %v", s, err)
			}
			return
		}
		if tp.Filter == "" || tp.Eq != strings.HasPrefix(s, "eq ") || !tp.Eq && tp.Filter != s {
			t.Fatalf("ParseTopic(%q) = %+v", s, tp)
		}
		rs := Rules{{Allow: true, Action: All, Topics: []Topic{tp}}}
		req := &gateway.AuthzRequest{Action: gateway.ActionPublish, Topic: name,
			Client: gateway.ClientInfo{ClientID: clientID, Username: username}}
		d := rs.Match(req)
		if d == gateway.Deny {
			t.Fatalf("an allow rule denied")
		}
		for _, p := range []struct{ name, value string }{{"${clientid}", clientID}, {"${username}", username}} {
			if strings.Contains(tp.Filter, p.name) && d == gateway.Allow && (p.value == "" || strings.ContainsAny(p.value, "+#/")) {
				t.Fatalf("%q with %s = %q allows %q", s, p.name, p.value, name)
			}
		}
		if !simplePlaceholders(tp.Filter) || clientID == "" || username == "" ||
			strings.ContainsAny(clientID+username, "+#/") {
			return
		}
		rendered := strings.NewReplacer("${clientid}", clientID, "${username}", username).Replace(tp.Filter)
		want := tp.Eq && rendered == name || !tp.Eq && matchFilter(rendered, name)
		if (d == gateway.Allow) != want {
			t.Fatalf("%q as %q: %v for %q, want allowed=%v", s, rendered, d, name, want)
		}
	})
}

// simplePlaceholders reports whether every "${" of f starts ${clientid}
// or ${username}.
func simplePlaceholders(f string) bool {
	for i := strings.Index(f, "${"); i >= 0; i = strings.Index(f, "${") {
		rest := f[i:]
		switch {
		case strings.HasPrefix(rest, "${clientid}"):
			f = rest[len("${clientid}"):]
		case strings.HasPrefix(rest, "${username}"):
			f = rest[len("${username}"):]
		default:
			return false
		}
	}
	return true
}

// FuzzParseRaw checks ParseRaw, EMQX's raw JSON rules (what an HTTP
// authenticator's or a JWT's "acl" carries), and matching with what it
// returns:
//
//   - it never panics; errors say "authz: ";
//   - a parsed list has one rule per array element, each with a topic,
//     an action and QoS values of 0 to 2;
//   - Match never panics and is "first match wins": its answer is that
//     of the first rule that decides alone;
//   - with a rule {"permission": "deny", "topic": "#"} appended, every
//     request for a topic that does not start with "$" is decided (a rule
//     "#" covers every non-$ topic).
func FuzzParseRaw(f *testing.F) {
	for _, s := range []string{
		`[{"permission":"allow","action":"publish","topic":"up/${clientid}"},
		  {"permission":"allow","action":"sub","topics":["down/#","eq all/#"],"qos":[0,1]},
		  {"permission":"deny","action":"all","topic":"#"}]`,
		`[{"permission":"allow","topic":"a","qos":"0, 2","clientid_re":"^dev-","username_re":"^u","ipaddr":"10.0.0.0/8","listener":"tcp"}]`,
		`[{"permission":"deny","topic":"a","qos":1,"ipaddr":"::ffff:10.1.2.3","retain":true}]`,
		`[{"permission":"allow","topics":[],"topic":"x/+/y"}]`,
		`[]`, `null`, `{}`, `[{}]`, `[{"permission":"allow"}]`,
		`[{"permission":"allow","topic":"a","qos":3}]`,
		`[{"permission":"allow","topic":"a","qos":"x"}]`,
		`[{"permission":"allow","topic":"a","clientid_re":"("}]`,
		`[{"permission":"allow","topic":"a/#/b"}]`,
		`[{"permission":"allow","topic":"eq a/#/b"}]`,
	} {
		f.Add([]byte(s), "a", "dev-1", "u", "10.1.2.3:5000", uint8(0))
	}
	f.Add([]byte(`[{"permission":"allow","action":"subscribe","topic":"$SYS/#"}]`), "$SYS/x", "c", "", "[::1]:1", uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, name, clientID, username, peer string, bits uint8) {
		rs, err := ParseRaw(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "authz: ") {
				t.Fatalf("ParseRaw(%q): %v", data, err)
			}
			return
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil || len(elems) != len(rs) {
			t.Fatalf("ParseRaw(%q) gave %d rules from %d elements (%v)", data, len(rs), len(elems), err)
		}
		for i, r := range rs {
			if len(r.Topics) == 0 || r.Action == 0 || r.Action&^All != 0 {
				t.Fatalf("rule %d: %+v", i, r)
			}
			for _, q := range r.QoS {
				if q > 2 {
					t.Fatalf("rule %d: QoS %v", i, r.QoS)
				}
			}
		}

		req := &gateway.AuthzRequest{Action: gateway.ActionPublish, Topic: name, QoS: bits % 3,
			Client: gateway.ClientInfo{ClientID: clientID, Username: username}, Listener: "tcp"}
		if bits&4 != 0 {
			req.Action = gateway.ActionSubscribe
		}
		req.Peer, _ = netip.ParseAddrPort(peer)
		want := gateway.NoMatch
		for i := range rs {
			if d := rs[i : i+1].Match(req); d != gateway.NoMatch {
				want = d
				break
			}
		}
		if got := rs.Match(req); got != want {
			t.Fatalf("Match = %v, the first deciding rule says %v", got, want)
		}

		elems = append(elems, json.RawMessage(`{"permission":"deny","topic":"#"}`))
		more, _ := json.Marshal(elems)
		rs, err = ParseRaw(more)
		if err != nil {
			t.Fatalf("with a rule # appended: %v", err)
		}
		if d := rs.Match(req); name != "" && name[0] != '$' && d == gateway.NoMatch {
			t.Fatalf("%q is not decided with a rule # last", name)
		}
	})
}
