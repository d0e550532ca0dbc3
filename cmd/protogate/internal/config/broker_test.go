package config

import (
	"context"
	"crypto/tls"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/protogate/protogate/gateway/broker"
)

// fullBroker is the broker block of testdata/full.yaml.
var fullBroker = Broker{
	NATSListen: "127.0.0.1:4222", MQTTListen: "0.0.0.0:1883", MaxPayload: 8 * MiB, MaxBuffered: 64 * MiB,
	Users: []BrokerUser{
		{User: "dashboard", Password: "$2a$04$bp5PmIgNymJD0GJOWeU97.jhP4OLphzrfWp8tMkle7l9Edkpjj5wO", ConnectionTypes: []string{"nats"},
			Permissions: BrokerPermissions{
				Publish:   SubjectRules{Allow: []string{"cmd.>"}},
				Subscribe: SubjectRules{Allow: []string{"sensors.>", "_INBOX.>"}, Deny: []string{"sensors.*.secret"}},
			}},
		{User: "meter-0001", Password: "secret", Permissions: BrokerPermissions{
			Publish:   SubjectRules{Allow: []string{"meters.0001.>"}},
			Subscribe: SubjectRules{Allow: []string{"cmd.meters.0001", "cmd.meters.0001.>"}},
		}},
	},
	NKeys: []BrokerNKey{{NKey: "UCL2TCR45LEPIYZ2URFZCG7MUV77ICJAEWLUKO724FCRWE5MZJB573GY",
		Permissions: BrokerPermissions{Publish: SubjectRules{Deny: []string{">"}}}}},
	TLS: &ServerTLS{CertFile: "testdata/certs/server.pem", KeyFile: "testdata/certs/server.key", CAFile: "testdata/certs/ca.pem"},
}

// openBroker is the message of a broker listener at addr that is not a
// loopback address, without authentication.
func openBroker(addr string) string {
	return `address "` + addr + `" is not a loopback address and the broker has no users: ` +
		"anyone on the network could read every device's traffic and publish to every device; " +
		"add broker.users (or broker.nkeys, or broker.tls with verify_client: true), bind to 127.0.0.1, " +
		"or set broker.allow_anonymous: true to accept the risk"
}

const (
	testNKey     = "UCL2TCR45LEPIYZ2URFZCG7MUV77ICJAEWLUKO724FCRWE5MZJB573GY"
	testSeed     = "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"
	testBcrypt   = "$2a$04$bp5PmIgNymJD0GJOWeU97.jhP4OLphzrfWp8tMkle7l9Edkpjj5wO" // "secret"
	badNKeyShape = `is not a public user nkey (want the 56 characters starting with U that "nk -gen user -pubout" or "nsc" print)`
)

func TestBrokerErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"open nats", withBase("broker:", "  nats_listen: 0.0.0.0:4222"), "config: line 2: broker.nats_listen: " + openBroker("0.0.0.0:4222")},
		{"open mqtt", withBase("broker:", "  mqtt_listen: ':1883'"), "config: line 2: broker.mqtt_listen: " + openBroker(":1883")},
		{"open ipv6", withBase("broker:", "  mqtt_listen: '[::]:1883'"), "config: line 2: broker.mqtt_listen: " + openBroker("[::]:1883")},
		{"open lan", withBase("broker:", "  nats_listen: 192.168.1.10:4222"), "config: line 2: broker.nats_listen: " + openBroker("192.168.1.10:4222")},
		{"open name", withBase("broker:", "  nats_listen: gw.example.com:4222"), "config: line 2: broker.nats_listen: " + openBroker("gw.example.com:4222")},
		{"open both", withBase("broker:", "  nats_listen: 0.0.0.0:4222", "  mqtt_listen: 0.0.0.0:1883", "  allow_anonymous: false"),
			"config: line 2: broker.nats_listen: " + openBroker("0.0.0.0:4222") + "\nconfig: line 3: broker.mqtt_listen: " + openBroker("0.0.0.0:1883")},
		{"tls without verify_client", withBase("broker:", "  nats_listen: 0.0.0.0:4222",
			"  tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}"), "config: line 2: broker.nats_listen: " + openBroker("0.0.0.0:4222")},
		{"empty user", withBase("broker:", "  users:", "    - {password: secret}"), "config: line 3: broker.users[0].user: must not be empty"},
		{"duplicate user", withBase("broker:", "  users:", "    - {user: a, password: secret}", "    - {user: a, password: other}"),
			`config: line 4: broker.users[1].user: duplicate user "a" (also used by broker.users[0])`},
		{"empty password", withBase("broker:", "  users:", "    - user: a", "      password: ''"), "config: line 4: broker.users[0].password: must not be empty"},
		{"no password", withBase("broker:", "  users:", "    - user: a"), "config: line 3: broker.users[0].password: must not be empty"},
		{"bad bcrypt", withBase("broker:", "  users:", "    - user: a", "      password: $2b$10$tooShort"),
			"config: line 4: broker.users[0].password: password starts as a bcrypt hash but is not one (crypto/bcrypt: hashedSecret too short to be a bcrypted password): " +
				"nats-server would compare it as a hash and no password would match; give a complete hash or another password"},
		{"connection type", withBase("broker:", "  users:", "    - user: a", "      password: p", "      connection_types: [nats, websocket]"),
			`config: line 5: broker.users[0].connection_types[1]: unknown connection type "websocket" (want nats or mqtt)`},
		{"bad subject", withBase("broker:", "  users:", "    - user: a", "      password: p", "      permissions:", "        publish: {allow: [a.b, 'a..b']}"),
			`config: line 6: broker.users[0].permissions.publish.allow[1]: "a..b" is not a valid NATS subject (tokens separated by '.', the wildcards '*' and '>' as whole tokens, '>' last)`},
		{"queue on publish", withBase("broker:", "  users:", "    - user: a", "      password: p", "      permissions:", "        publish: {deny: ['a q']}"),
			`config: line 6: broker.users[0].permissions.publish.deny[0]: "a q" is not a valid NATS subject (tokens separated by '.', the wildcards '*' and '>' as whole tokens, '>' last)`},
		{"bad queue", withBase("broker:", "  nkeys:", "    - nkey: "+testNKey, "      permissions:", "        subscribe: {allow: ['a q..x']}"),
			`config: line 5: broker.nkeys[0].permissions.subscribe.allow[0]: "q..x" is not a valid queue group name`},
		{"seed as nkey", withBase("broker:", "  nkeys:", "    - nkey: "+testSeed), `config: line 3: broker.nkeys[0].nkey: "` + testSeed + `" ` + badNKeyShape},
		{"empty nkey", withBase("broker:", "  nkeys:", "    - {}"), `config: line 3: broker.nkeys[0].nkey: "" ` + badNKeyShape},
		{"duplicate nkey", withBase("broker:", "  nkeys:", "    - nkey: "+testNKey, "    - nkey: "+testNKey),
			`config: line 4: broker.nkeys[1].nkey: duplicate nkey "` + testNKey + `" (also used by broker.nkeys[0])`},
		{"tls no key", withBase("broker:", "  tls: {cert_file: testdata/certs/server.pem}"), "config: line 2: broker.tls.key_file: missing (cert_file and key_file must be set together)"},
		{"tls verify without ca", withBase("broker:", "  tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key, verify_client: true}"),
			"config: line 2: broker.tls.ca_file: missing; verify_client needs a ca_file to verify client certificates against"},
		{"unknown key", withBase("broker:", "  users:", "    - {name: a, password: p}"), `config: line 3: broker.users[0]: unknown key "name"` + "\nconfig: line 3: broker.users[0].user: must not be empty"},
		{"anonymous not bool", withBase("broker:", "  allow_anonymous: yes please"), `config: line 2: broker.allow_anonymous: want true or false, got "yes please"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse succeeded\n%s", numbered(tc.in))
			}
			if err.Error() != tc.want {
				t.Fatalf("error:\n got %s\nwant %s\n%s", err, tc.want, numbered(tc.in))
			}
		})
	}
}

func TestBrokerAccepted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
	}{
		{"loopback open", []string{"broker: {nats_listen: 127.0.0.1:4222, mqtt_listen: '[::1]:1883'}"}},
		{"localhost open", []string{"broker: {nats_listen: 'localhost:4222'}"}},
		{"allow_anonymous", []string{"broker: {nats_listen: 0.0.0.0:4222, mqtt_listen: 0.0.0.0:1883, allow_anonymous: true}"}},
		{"users", []string{"broker: {mqtt_listen: 0.0.0.0:1883, users: [{user: a, password: '" + testBcrypt + "'}]}"}},
		{"nkeys", []string{"broker: {nats_listen: 0.0.0.0:4222, nkeys: [{nkey: " + testNKey + "}]}"}},
		{"verify_client", []string{"broker:", "  nats_listen: 0.0.0.0:4222",
			"  tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key, ca_file: testdata/certs/ca.pem, verify_client: true}"}},
		{"users without listeners", []string{"broker: {users: [{user: a, password: p}]}"}},
		{"queue group", []string{"broker: {users: [{user: a, password: p, permissions: {subscribe: {allow: ['jobs.* workers']}}}]}"}},
		{"granted reserved", []string{"broker: {users: [{user: a, password: p, permissions: {publish: {allow: ['$JS.API.>']}}}]}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := withBase(tc.lines...)
			c, err := Parse([]byte(in))
			if err != nil {
				t.Fatalf("%v\n%s", err, numbered(in))
			}
			if w := c.Warnings(); len(w) != 0 {
				t.Errorf("warnings: %v", w)
			}
		})
	}
}

func TestBrokerWarnings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"mqtt topic in permissions", []string{"broker:", "  users:", "    - user: a", "      password: p", "      permissions: {subscribe: {allow: ['sensors/+/temp']}}"},
			`config: line 5: broker.users[0].permissions.subscribe.allow[0]: "sensors/+/temp" looks like an MQTT topic, but permissions take NATS subjects: MQTT a/b/# is a.b.> (and a.b), a/+/c is a.*.c`},
		{"mqtt without mqtt users", []string{"broker:", "  mqtt_listen: 0.0.0.0:1883", "  users: [{user: a, password: p, connection_types: [nats]}]", "  nkeys: [{nkey: " + testNKey + "}]"},
			"config: line 2: broker.mqtt_listen: no MQTT client can log in: nkeys and users limited to connection_types [nats] are for NATS clients; add a user that may use mqtt, or set broker.allow_anonymous: true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := withBase(tc.lines...)
			c, err := Parse([]byte(in))
			if err != nil {
				t.Fatalf("%v\n%s", err, numbered(in))
			}
			w := c.Warnings()
			if len(w) != 1 || w[0].Error() != tc.want {
				t.Fatalf("warnings %v, want %s", w, tc.want)
			}
		})
	}
}

// TestBrokerConfig: what the broker block validates to is what
// broker.Start runs with.
func TestBrokerConfig(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := c.BrokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if bc.Node != "edge-gw.eu-1" || bc.NATSListen != "127.0.0.1:4222" || bc.MQTTListen != "0.0.0.0:1883" || bc.MaxPayload != 8<<20 || bc.MaxBufferedBytes != 64<<20 {
		t.Errorf("BrokerConfig = %+v", bc)
	}
	wantUsers := []broker.User{
		{Name: "dashboard", Password: fullBroker.Users[0].Password, ConnectionTypes: []string{"nats"}, Permissions: broker.Permissions{
			Publish:   broker.Rules{Allow: []string{"cmd.>"}},
			Subscribe: broker.Rules{Allow: []string{"sensors.>", "_INBOX.>"}, Deny: []string{"sensors.*.secret"}},
		}},
		{Name: "meter-0001", Password: "secret", Permissions: broker.Permissions{
			Publish:   broker.Rules{Allow: []string{"meters.0001.>"}},
			Subscribe: broker.Rules{Allow: []string{"cmd.meters.0001", "cmd.meters.0001.>"}},
		}},
	}
	if !reflect.DeepEqual(bc.Users, wantUsers) {
		t.Errorf("users = %+v\nwant %+v", bc.Users, wantUsers)
	}
	if want := []broker.NKey{{PublicKey: testNKey, Permissions: broker.Permissions{Publish: broker.Rules{Deny: []string{">"}}}}}; !reflect.DeepEqual(bc.NKeys, want) {
		t.Errorf("nkeys = %+v", bc.NKeys)
	}
	if bc.TLS == nil || len(bc.TLS.Certificates) != 1 || bc.TLS.ClientCAs == nil || bc.TLS.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("tls = %+v", bc.TLS)
	}
}

// TestBrokerConfigRuns starts the broker a validated configuration
// describes and logs in as its user.
func TestBrokerConfigRuns(t *testing.T) {
	in := withBase("node: {data_dir: "+t.TempDir()+"}", "broker:", "  nats_listen: 127.0.0.1:0",
		"  users: [{user: ops, password: '"+testBcrypt+"', permissions: {publish: {allow: [a.>]}}}]")
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	bc, err := c.BrokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(bc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	url := "nats://" + b.NATSAddr().String()
	if nc, err := nats.Connect(url, nats.UserInfo("ops", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("wrong password: %v", err)
	}
	nc, err := nats.Connect(url, nats.UserInfo("ops", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

// TestDefaultFileBrokerBlocks uncomments the broker examples of
// default.yaml, as TestDefaultFileCommentedBlocks does, and checks them.
func TestDefaultFileBrokerBlocks(t *testing.T) {
	keys := knownKeys()
	var lines []string
	inBroker := false
	for _, l := range strings.Split(string(Default()), "\n") {
		trimmed := strings.TrimLeft(l, " ")
		indent := l[:len(l)-len(trimmed)]
		if l != "" && indent == "" {
			inBroker = l == "broker:"
		}
		if rest, ok := strings.CutPrefix(trimmed, "# "); ok && inBroker {
			key, _, _ := strings.Cut(strings.TrimLeft(strings.TrimPrefix(strings.TrimLeft(rest, " "), "- "), " "), ":")
			if keys[key] {
				l = indent + rest
			}
		}
		if strings.HasPrefix(l, "  nats_listen:") {
			l = "  nats_listen: 0.0.0.0:4222" // accepted: there are users
		}
		lines = append(lines, l)
	}
	in := strings.NewReplacer(
		"/etc/protogate/server.pem", "testdata/certs/server.pem",
		"/etc/protogate/server.key", "testdata/certs/server.key",
		"/etc/protogate/ca.pem", "testdata/certs/ca.pem",
		"/etc/protogate/route.pem", "testdata/certs/server.pem",
		"/etc/protogate/route.key", "testdata/certs/server.key",
		"/etc/protogate/leaf.creds", "testdata/leaf.nk",
		"/etc/protogate/leaf.nk", "testdata/leaf.nk",
	).Replace(strings.Join(lines, "\n"))
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("%v\n%s", err, numbered(in))
	}
	b := c.Broker
	if len(b.Users) != 2 || len(b.NKeys) != 1 || b.TLS == nil || b.NATSListen != "0.0.0.0:4222" {
		t.Fatalf("broker blocks were not all uncommented: %+v", b)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(b.Users[0].Password), []byte("secret")); err != nil {
		t.Errorf("the example hash is not that of secret: %v", err)
	}
	if _, err := c.BrokerConfig(); err != nil {
		t.Error(err)
	}
}
