package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// TestAuthFromConfig runs a gateway whose config has an authenticator
// chain and ACL rules, with a Wasm and a gRPC handler: through each back
// end a wrong password is refused, the right one gets in, a publish or
// subscribe outside the ACL is refused and reaches no subscriber, and one
// inside it works. The refusals count in the metrics.
func TestAuthFromConfig(t *testing.T) {
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
node: {data_dir: ` + sharedDataDir + `}
broker: {nats_listen: "127.0.0.1:0"}
adapter: {bind: "127.0.0.1:0"}
` + opsYAML + `
security_profile: hardened
authentication:
  - type: built_in_database
    password_hash_algorithm: {name: bcrypt, salt_rounds: 5}
    users:
      - {user_id: alice, password: a-secret}
      - {user_id: root, password: r-secret, is_superuser: true}
authorization:
  rules:
    - {permission: allow, action: all, topics: ["users/${username}/#"]}
handlers:
  wasm: {wasm: {path: "builtin:exproto-json", instances: 1, call_timeout: 5s}}
  remote: {grpc: {address: "http://` + hln.Addr().String() + `", timeout: 10s}}
listeners:
  - {name: wasm-tcp, type: tcp, bind: "127.0.0.1:0", handler: wasm}
  - {name: remote-tcp, type: tcp, bind: "127.0.0.1:0", handler: remote}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	serveJSONHandler(t, r, hln)
	nc, err := nats.Connect("nats://"+r.broker.NATSAddr().String(), nats.Timeout(wait))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	leaked := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("elsewhere.>", leaked); err != nil {
		t.Fatal(err)
	}
	mine := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("users.alice.>", mine); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	connect := func(d *jsonDevice, user, password string) int {
		f := d.call(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "p", ProtoVer: "1", ClientID: "c-" + user, Username: user}, Password: password})
		if f.Type != jp.Connack {
			t.Fatalf("connect: %+v", f)
		}
		return f.Code
	}
	for _, listener := range []string{"wasm-tcp", "remote-tcp"} {
		t.Run(listener, func(t *testing.T) {
			addr := r.listeners[listener].String()
			if code := connect(dialJSON(t, "tcp", addr), "alice", "wrong"); code == 0 {
				t.Error("wrong password let in")
			}
			if code := connect(dialJSON(t, "tcp", addr), "mallory", "a-secret"); code == 0 {
				t.Error("unknown user let in (hardened: every authenticator ignored it)")
			}
			d := dialJSON(t, "tcp", addr)
			if code := connect(d, "alice", "a-secret"); code != 0 {
				t.Fatalf("alice refused: %d", code)
			}
			if f := d.call(jp.Frame{Type: jp.Publish, Topic: "elsewhere/x", Payload: "leak"}); f.Code == 0 {
				t.Errorf("publish outside the ACL: %+v", f)
			}
			if f := d.call(jp.Frame{Type: jp.Subscribe, Topic: "elsewhere/#"}); f.Code == 0 {
				t.Errorf("subscribe outside the ACL: %+v", f)
			}
			if f := d.call(jp.Frame{Type: jp.Publish, Topic: "users/alice/up", Payload: listener}); f.Code != 0 {
				t.Errorf("publish inside the ACL: %+v", f)
			}
			select {
			case m := <-mine:
				if string(m.Data) != listener {
					t.Errorf("got %q", m.Data)
				}
			case <-time.After(wait):
				t.Fatal("allowed publish did not arrive")
			}
			// The superuser skips authorization.
			root := dialJSON(t, "tcp", addr)
			if code := connect(root, "root", "r-secret"); code != 0 {
				t.Fatalf("root refused: %d", code)
			}
			if f := root.call(jp.Frame{Type: jp.Subscribe, Topic: "elsewhere/#"}); f.Code != 0 {
				t.Errorf("superuser subscribe: %+v", f)
			}
		})
	}
	// The allowed messages arrived after the denied ones were refused:
	// a leak would be queued by now.
	select {
	case m := <-leaked:
		t.Errorf("denied publish reached a subscriber: %q", m.Data)
	default:
	}
	_, body := adminGet(t, r, "/metrics")
	for _, want := range []string{
		`protogate_authz_total{action="publish",result="deny"} 2`,
		`protogate_authz_total{action="subscribe",result="deny"} 2`,
		`protogate_authn_total{authenticator="built_in_database",result="deny"} 2`,
		`protogate_authn_total{authenticator="built_in_database",result="ignore"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
