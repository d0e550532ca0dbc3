package config

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/protogate/protogate/gateway"
)

// TestAuthnForms parses both forms of authentication and checks who gets
// in through the chain they build.
func TestAuthnForms(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.csv")
	os.WriteFile(users, []byte("user_id,password,is_superuser\ncarol,c-pw,true\n"), 0o644)
	list := withBase(
		"authentication:",
		"  - type: built_in_database",
		"    password_hash_algorithm: {name: pbkdf2, mac_fun: sha256, iterations: 10}",
		"    users:",
		"      - {user_id: alice, password: a-pw}",
		"      - {user_id: bob, password_hash: 7a37b85c8918eac19a9089c0fa5a2ab4dce3f90528dcdeec108b23ddf3607b99, salt: salt}",
		"  - type: built_in_database",
		"    user_id_type: clientid",
		"    password_hash_algorithm: {name: sha256, salt_position: suffix}",
		"    users: [{user_id: dev-1, password_hash: 7a37b85c8918eac19a9089c0fa5a2ab4dce3f90528dcdeec108b23ddf3607b99, salt: salt}]",
		"    users_file: "+users,
	)
	legacy := withBase(
		"authentication:",
		"  users: {alice: a-pw}",
	)
	for _, tc := range []struct {
		name, doc string
		in, out   [][3]string // client id, username, password
	}{
		{"list", list,
			[][3]string{{"x", "alice", "a-pw"}, {"dev-1", "", "password"}, {"carol", "", "c-pw"}},
			[][3]string{{"x", "alice", "wrong"}, {"x", "bob", "password"}, {"dev-2", "", "password"}, {"x", "nobody", "x"}}},
		{"legacy map", legacy,
			[][3]string{{"x", "alice", "a-pw"}},
			[][3]string{{"x", "alice", "b"}, {"x", "bob", "a-pw"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			a, err := c.Authenticator(nil, nil)
			if err != nil || a == nil {
				t.Fatalf("authenticator %v, %v", a, err)
			}
			try := func(v [3]string) error {
				_, err := a.Authenticate(context.Background(), &gateway.AuthRequest{Client: gateway.ClientInfo{ClientID: v[0], Username: v[1]}, Password: v[2]})
				return err
			}
			for _, v := range tc.in {
				if err := try(v); err != nil {
					t.Errorf("%v refused: %v", v, err)
				}
			}
			for _, v := range tc.out {
				if try(v) == nil {
					t.Errorf("%v let in", v)
				}
			}
		})
	}
}

func TestAuthzRulesConfig(t *testing.T) {
	doc := withBase(
		"security_profile: hardened",
		"authorization:",
		"  rules:",
		"    - {permission: allow, action: publish, topics: ['up/${clientid}/#']}",
		"    - {permission: allow, who: {ipaddr: 10.0.0.0/8}, action: subscribe, topics: ['eq down/#']}",
		"    - {permission: allow, who: {any: [{clientid: d9}, {username_re: '^ops'}]}, action: publish, topics: ['ops/#']}",
	)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	az, cache, err := c.Authorizer(nil)
	if err != nil || cache.MaxSize != 32 {
		t.Fatalf("%v %+v %v", az, cache, err)
	}
	ask := func(a gateway.Action, topic, peer string) bool {
		r := &gateway.AuthzRequest{Action: a, Topic: topic, Client: gateway.ClientInfo{ClientID: "d1"}}
		if peer != "" {
			r.Peer = mustAddrPort(t, peer)
		}
		ok, _ := az.Authorize(context.Background(), r)
		return ok
	}
	if !ask(gateway.ActionPublish, "up/d1/x", "") || ask(gateway.ActionPublish, "up/d2/x", "") {
		t.Error("publish rule")
	}
	if !ask(gateway.ActionSubscribe, "down/#", "10.1.1.1:1") || ask(gateway.ActionSubscribe, "down/x", "10.1.1.1:1") ||
		ask(gateway.ActionSubscribe, "down/#", "192.0.2.1:1") {
		t.Error("subscribe rule")
	}
	r := &gateway.AuthzRequest{Action: gateway.ActionPublish, Topic: "ops/x", Client: gateway.ClientInfo{ClientID: "zz", Username: "ops-1"}}
	if ok, _ := az.Authorize(context.Background(), r); !ok {
		t.Error("any: username_re alternative refused")
	}
	r.Client = gateway.ClientInfo{ClientID: "d9"}
	if ok, _ := az.Authorize(context.Background(), r); !ok {
		t.Error("any: clientid alternative refused")
	}
	r.Client = gateway.ClientInfo{ClientID: "d1", Username: "bob"}
	if ok, _ := az.Authorize(context.Background(), r); ok {
		t.Error("any: neither alternative, yet allowed")
	}
	// Hardened: no match denies; hardened without authentication denies.
	if ask(gateway.ActionPublish, "other", "") {
		t.Error("no match allowed in hardened")
	}
	a, err := c.Authenticator(nil, nil)
	if err != nil || a == nil {
		t.Fatalf("hardened authenticator %v %v", a, err)
	}
	if _, err := a.Authenticate(context.Background(), &gateway.AuthRequest{}); err == nil {
		t.Error("hardened with no authenticator let a client in")
	}
}

func TestAuthConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"profile", []string{"security_profile: paranoid"}, "security_profile: unknown security profile"},
		{"type", []string{"authentication:", "  - {type: ldap}"}, `authentication[0].type: unknown authenticator type "ldap"`},
		{"no users", []string{"authentication:", "  - {type: built_in_database}"}, "authentication[0]: a built_in_database needs users or users_file"},
		{"hash", []string{"authentication:", "  - {type: built_in_database, password_hash_algorithm: {name: argon2}, users: [{user_id: a, password: b}]}"}, "authentication[0].password_hash_algorithm: unknown password hash algorithm"},
		{"user", []string{"authentication:", "  - {type: built_in_database, users: [{password: b}]}"}, "authentication[0].users[0].user_id: must not be empty"},
		{"users file", []string{"authentication:", "  - {type: built_in_database, users_file: /nonexistent/u.csv}"}, "authentication[0].users_file:"},
		{"permission", []string{"authorization:", "  rules: [{permission: maybe}]"}, `authorization.rules[0].permission: "maybe": want allow or deny`},
		{"topic", []string{"authorization:", "  rules: [{permission: allow, topics: ['a/#/b']}]"}, "authorization.rules[0].topics[0]: topic \"a/#/b\": # must be the last level"},
		{"placeholder", []string{"authorization:", "  rules: [{permission: allow, topics: ['a/${password}']}]"}, "unknown placeholder ${password}"},
		{"regexp", []string{"authorization:", "  rules: [{permission: allow, who: {clientid_re: '('}}]"}, "authorization.rules[0].who.clientid_re:"},
		{"no_match", []string{"authorization:", "  no_match: perhaps"}, `authorization.no_match: "perhaps": want allow or deny`},
		{"cache", []string{"authorization:", "  cache: {max_size: 0}"}, "authorization.cache.max_size: 0 is out of range (want 1 to 1024)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(withBase(tc.lines...)))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// TestAuthnBackendsFromConfig builds the http and jwt authenticators and
// the http authorization source from YAML and asks them for real.
func TestAuthnBackendsFromConfig(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/authn":
			var body map[string]string
			json.NewDecoder(r.Body).Decode(&body)
			w.Header().Set("Content-Type", "application/json")
			switch {
			case body["username"] != "http-user":
				w.Write([]byte(`{"result":"ignore"}`))
			case body["password"] == "pw":
				w.Write([]byte(`{"result":"allow","is_superuser":true}`))
			default:
				w.Write([]byte(`{"result":"deny"}`))
			}
		case "/authz":
			if r.URL.Query().Get("topic") == "ok" {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"result":"deny"}`))
		}
	}))
	defer svc.Close()
	doc := withBase(
		"authentication:",
		"  - type: http",
		"    url: "+svc.URL+"/authn",
		"    body: {username: '${username}', password: '${password}'}",
		"    request_timeout: 5s",
		"  - type: jwt",
		"    from: password",
		"    algorithm: hmac-based",
		"    secret: hmac-secret",
		"    verify_claims: {sub: '${username}'}",
		"authorization:",
		"  sources:",
		"    - {type: http, method: get, url: "+svc.URL+"/authz, body: {topic: '${topic}'}}",
	)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := c.Authenticator(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "jwt-user", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("hmac-secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"http-user", "pw", true},
		{"http-user", "nope", false},     // the http service denies: the chain stops
		{"jwt-user", token, true},        // the http service ignores it, the jwt allows
		{"jwt-user", token + "x", false}, // a bad signature fails; nothing allows
		{"other", token, false},          // sub is not ${username}
	} {
		_, err := a.Authenticate(context.Background(), &gateway.AuthRequest{Client: gateway.ClientInfo{Username: tc.user}, Password: tc.pw})
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.user, err, tc.ok)
		}
	}
	az, _, err := c.Authorizer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]bool{"ok": true, "no": false} {
		if got, _ := az.Authorize(context.Background(), &gateway.AuthzRequest{Action: gateway.ActionPublish, Topic: topic}); got != want {
			t.Errorf("authorize %s: %v, want %v", topic, got, want)
		}
	}
	for _, bad := range []struct {
		lines []string
		want  string
	}{
		{[]string{"authentication:", "  - {type: http}"}, "authentication[0]:"},
		{[]string{"authentication:", "  - {type: jwt, algorithm: hmac-based}"}, "authentication[0]:"},
		{[]string{"authentication:", "  - {type: jwt, algorithm: public-key, public_key: /nonexistent.pem}"}, "authentication[0].public_key:"},
		{[]string{"authorization:", "  sources: [{type: ldap}]"}, `authorization.sources[0].type: unknown source type "ldap"`},
	} {
		c, err := Parse([]byte(withBase(bad.lines...)))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v, want %q", bad.lines, err, bad.want)
		}
	}
}
