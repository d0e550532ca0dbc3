package broker_test

// Authentication, permissions and TLS of the broker's NATS and MQTT
// listeners, tried with real clients: nats.go for NATS, the MQTT client of
// mqtt_test.go and mosquitto_pub/mosquitto_sub for MQTT.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
)

// asyncErrs collects the asynchronous errors of a nats.go connection (the
// server's permission violations arrive that way).
type asyncErrs chan error

func (e asyncErrs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	select {
	case e <- err:
	default:
	}
}

// next waits for the next error and returns its message.
func (e asyncErrs) next(t *testing.T) string {
	t.Helper()
	select {
	case err := <-e:
		return err.Error()
	case <-time.After(waitTimeout):
		t.Fatal("no asynchronous error from the server")
		return ""
	}
}

// none checks that no error has arrived, after a round trip to the server
// (which answers a violation before the PONG).
func (e asyncErrs) none(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.FlushTimeout(waitTimeout); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-e:
		t.Fatalf("unexpected error: %v", err)
	default:
	}
}

// natsDial connects to the broker's NATS port and returns the error.
func natsDial(b *broker.Broker, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect("nats://"+b.NATSAddr().String(),
		append([]nats.Option{nats.Timeout(waitTimeout), nats.MaxReconnects(0), nats.NoReconnect()}, opts...)...)
}

func mustHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestNATSAuthentication(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	other, _ := nkeys.CreateUser()
	hash := mustHash(t, "bcrypt-secret")
	if !strings.HasPrefix(hash, "$2a$") {
		t.Fatalf("bcrypt hash %q", hash)
	}
	b := startBroker(t, broker.Config{
		NATSListen: "127.0.0.1:0",
		Users: []broker.User{
			{Name: "alice", Password: "plain-secret"},
			{Name: "bob", Password: hash},
			{Name: "bob2b", Password: "$2b$" + strings.TrimPrefix(hash, "$2a$")},
		},
		NKeys: []broker.NKey{{PublicKey: pub}},
	})
	for _, tc := range []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"no credentials", nil, false},
		{"no password", []nats.Option{nats.UserInfo("alice", "")}, false},
		{"wrong password", []nats.Option{nats.UserInfo("alice", "plain-secreT")}, false},
		{"unknown user", []nats.Option{nats.UserInfo("carol", "plain-secret")}, false},
		{"plain password", []nats.Option{nats.UserInfo("alice", "plain-secret")}, true},
		{"bcrypt $2a$", []nats.Option{nats.UserInfo("bob", "bcrypt-secret")}, true},
		{"bcrypt $2b$", []nats.Option{nats.UserInfo("bob2b", "bcrypt-secret")}, true},
		{"bcrypt wrong password", []nats.Option{nats.UserInfo("bob", "plain-secret")}, false},
		{"the hash as password", []nats.Option{nats.UserInfo("bob", hash)}, false},
		{"token", []nats.Option{nats.Token("plain-secret")}, false},
		{"nkey", []nats.Option{nats.Nkey(pub, kp.Sign)}, true},
		{"nkey signed by another key", []nats.Option{nats.Nkey(pub, other.Sign)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := natsDial(b, tc.opts...)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				defer nc.Close()
				if err := nc.FlushTimeout(waitTimeout); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatal("connected, want refused")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("err = %v, want %v", err, nats.ErrAuthorization)
			}
		})
	}
}

// TestNATSPermissions: a publish or subscribe outside a user's permissions
// is answered with a permissions violation and has no effect.
func TestNATSPermissions(t *testing.T) {
	b := startBroker(t, broker.Config{
		NATSListen: "127.0.0.1:0",
		Users: []broker.User{{Name: "dev1", Password: "secret", Permissions: broker.Permissions{
			Publish:   broker.Rules{Allow: []string{"sensors.dev1.>"}, Deny: []string{"sensors.dev1.secret"}},
			Subscribe: broker.Rules{Allow: []string{"cmd.dev1.>", "_INBOX.>"}},
		}}},
	})
	gw := newChanSub(t, "#")
	subscribe(t, b, "#", gw)
	errs := make(asyncErrs, 10)
	nc := natsConnect(t, b, nats.UserInfo("dev1", "secret"), nats.ErrorHandler(errs.handler))

	natsPublish(t, nc, "sensors.dev1.temp", "ok")
	if m := gw.next(t); m.Topic != "sensors/dev1/temp" {
		t.Fatalf("gateway got %q", m.Topic)
	}
	errs.none(t, nc)

	for _, subj := range []string{"sensors.dev2.temp", "sensors.dev1.secret", "other"} {
		natsPublish(t, nc, subj, "denied")
		if got, want := errs.next(t), `nats: permissions violation: Permissions Violation for Publish to "`+subj+`"`; got != want {
			t.Errorf("publish %s: error %q, want %q", subj, got, want)
		}
	}
	natsPublish(t, nc, "sensors.dev1.end", "end")
	if got := gw.until(t, "end"); len(got) != 0 {
		t.Errorf("denied publishes reached the gateway: %q", topics(got))
	}

	// A subscription outside the permissions: the server refuses it, and
	// nats.go hands the error to the handler with the subscription.
	ok := natsSubscribe(t, nc, "cmd.dev1.>")
	sub, err := nc.SubscribeSync("sensors.>")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := errs.next(t), `nats: permissions violation: Permissions Violation for Subscription to "sensors.>"`; got != want {
		t.Errorf("subscribe: error %q, want %q", got, want)
	}
	// The gateway's publish on sensors/dev2/temp would reach this
	// connection before the one on cmd/dev1/reboot, published after it.
	pub(t, b, "sensors/dev2/temp", "not for dev1")
	pub(t, b, "cmd/dev1/reboot", "now")
	if m := natsNext(t, ok); m.Subject != "cmd.dev1.reboot" || string(m.Data) != "now" {
		t.Errorf("allowed subscription got %s %q", m.Subject, m.Data)
	}
	if n, _, _ := sub.Pending(); n != 0 {
		t.Errorf("denied subscription got %d messages", n)
	}
}

// TestReservedSubjectsDenied: outside clients, with users or anonymous,
// cannot use the JetStream API, the system account or the MQTT streams;
// a user whose allow list names them can.
func TestReservedSubjectsDenied(t *testing.T) {
	admin := broker.User{Name: "admin", Password: "admin",
		Permissions: broker.Permissions{Publish: broker.Rules{Allow: []string{">", "$JS.API.>"}}}}
	user := broker.User{Name: "u", Password: "p"}
	for _, tc := range []struct {
		name  string
		cfg   broker.Config
		login mqttLogin // for the MQTT client that creates the streams
		opts  []nats.Option
	}{
		{"user", broker.Config{Users: []broker.User{user, admin}}, mqttLogin{user: "u", password: "p"}, []nats.Option{nats.UserInfo("u", "p")}},
		{"nats-only user", broker.Config{Users: []broker.User{{Name: "u", Password: "p", ConnectionTypes: []string{broker.ConnNATS}}, admin}},
			mqttLogin{user: "admin", password: "admin"}, []nats.Option{nats.UserInfo("u", "p")}},
		{"anonymous next to users", broker.Config{AllowAnonymous: true, Users: []broker.User{user, admin}}, mqttLogin{}, nil},
		{"anonymous without users", broker.Config{}, mqttLogin{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.NATSListen, cfg.MQTTListen = "127.0.0.1:0", "127.0.0.1:0" // JetStream on
			b := startBroker(t, cfg)
			// An MQTT client makes the server create the $MQTT_* streams.
			dialMQTTAs(t, b.MQTTAddr(), "streams", tc.login).close()

			// Positive control: the JetStream API answers a granted user.
			var adm *nats.Conn
			if len(cfg.Users) > 0 {
				adm = natsConnect(t, b, nats.UserInfo("admin", "admin"))
				if m, err := adm.Request("$JS.API.STREAM.NAMES", nil, waitTimeout); err != nil || !strings.Contains(string(m.Data), "$MQTT_sess") {
					t.Fatalf("granted user: $JS.API.STREAM.NAMES: %v %v", err, m)
				}
			}

			errs := make(asyncErrs, 20)
			nc := natsConnect(t, b, append(tc.opts, nats.ErrorHandler(errs.handler))...)
			for _, subj := range []string{"$JS.API.STREAM.DELETE.$MQTT_sess", "$JS.API.INFO", "$JS.ACK.x", "$SYS.REQ.SERVER.PING", "$KV.b.k", "$MQTT.sess.x", "$MQTT.msgs.a", "$MQTT.sub.x", "$PG.reg.claim"} {
				natsPublish(t, nc, subj, "")
				if got, want := errs.next(t), `nats: permissions violation: Permissions Violation for Publish to "`+subj+`"`; got != want {
					t.Errorf("publish %s: error %q, want %q", subj, got, want)
				}
			}
			denied := []string{"$JS.API.>", "$SYS.>", "$JS.EVENT.>", "$KV.b.>", "$PG.reg.>", "$MQTT.sess.>", "$MQTT.msgs.>", "$MQTT.rmsgs", "$MQTT.JSA.>"}
			if tc.name == "nats-only user" {
				denied = append(denied, "$MQTT.sub.>", "$MQTT.>")
			}
			for _, subj := range denied {
				if _, err := nc.SubscribeSync(subj); err != nil {
					t.Fatal(err)
				}
				if got, want := errs.next(t), `nats: permissions violation: Permissions Violation for Subscription to "`+subj+`"`; got != want {
					t.Errorf("subscribe %s: error %q, want %q", subj, got, want)
				}
			}
			// The streams are all still there.
			if adm != nil {
				m, err := adm.Request("$JS.API.STREAM.NAMES", nil, waitTimeout)
				if err != nil || !strings.Contains(string(m.Data), "$MQTT_sess") {
					t.Fatalf("$JS.API.STREAM.NAMES after the denied delete: %v %v", err, m)
				}
			}
			// Ordinary subjects stay open.
			s := natsSubscribe(t, nc, "a.>")
			pub(t, b, "a/b", "x")
			if m := natsNext(t, s); m.Subject != "a.b" {
				t.Errorf("got %q", m.Subject)
			}
			errs.none(t, nc)
		})
	}
}

func TestConfigRefused(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	for _, tc := range []struct {
		name string
		cfg  broker.Config
		want string
	}{
		{"empty user", broker.Config{Users: []broker.User{{Password: "p"}}}, "users[0]: user name must not be empty"},
		{"duplicate user", broker.Config{Users: []broker.User{{Name: "a", Password: "p"}, {Name: "a", Password: "q"}}}, `users[1]: duplicate user "a"`},
		{"empty password", broker.Config{Users: []broker.User{{Name: "a"}}}, "users[0]: broker: password must not be empty"},
		{"truncated bcrypt", broker.Config{Users: []broker.User{{Name: "a", Password: "$2a$10$abc"}}}, "users[0]: broker: password starts as a bcrypt hash but is not one"},
		{"connection type", broker.Config{Users: []broker.User{{Name: "a", Password: "p", ConnectionTypes: []string{"ws"}}}}, `users[0]: broker: unknown connection type "ws" (want nats or mqtt)`},
		{"subject", broker.Config{Users: []broker.User{{Name: "a", Password: "p", Permissions: broker.Permissions{Publish: broker.Rules{Allow: []string{"a.>.b"}}}}}}, `users[0]: broker: "a.>.b" is not a valid NATS subject`},
		{"queue on publish", broker.Config{Users: []broker.User{{Name: "a", Password: "p", Permissions: broker.Permissions{Publish: broker.Rules{Deny: []string{"a q"}}}}}}, `users[0]: broker: "a q" is not a valid NATS subject`},
		{"nkey seed", broker.Config{NKeys: []broker.NKey{{PublicKey: string(seed)}}}, "nkeys[0]: broker: " + `"` + string(seed) + `" is not a public user nkey`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.NATSListen, cfg.Logger = "127.0.0.1:0", testLogger(t)
			b, err := broker.Start(cfg)
			if err == nil {
				b.Shutdown(t.Context())
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCheckSubject(t *testing.T) {
	for _, tc := range []struct {
		s          string
		queue, bad bool
	}{
		{"a.b", false, false}, {"a.*.c", false, false}, {">", false, false}, {"$JS.API.>", false, false},
		{"a q", true, false}, {"a.> q", true, false},
		{"a q", false, true}, {"a..b", false, true}, {"a.>.b", false, true}, {"", false, true}, {"a b c", true, true},
	} {
		if err := broker.CheckSubject(tc.s, tc.queue); (err != nil) != tc.bad {
			t.Errorf("CheckSubject(%q, %v) = %v", tc.s, tc.queue, err)
		}
	}
	for s, want := range map[string]bool{
		"a/b/#": true, "a.+.b": true, "a/b": true, "a.b": false, "/.a": false, "a./": false, "a.b//c": false, "a.> q": false, "x/y q": true,
	} {
		if got := broker.LooksLikeMQTT(s); got != want {
			t.Errorf("LooksLikeMQTT(%q) = %v", s, got)
		}
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate.
type testPKI struct {
	pool           *x509.CertPool
	caDER          []byte
	server, client tls.Certificate
	// route is for 127.0.0.1 as both server and client (routes).
	route tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &testPKI{pool: x509.NewCertPool(), caDER: caDER}
	p.pool.AddCert(caCert)
	leaf := func(serial int64, cn string, usage []x509.ExtKeyUsage, ips ...net.IP) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	p.server = leaf(2, "127.0.0.1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, net.IPv4(127, 0, 0, 1))
	p.client = leaf(3, "client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	p.route = leaf(4, "127.0.0.1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, net.IPv4(127, 0, 0, 1))
	return p
}

// serverTLS is the broker's TLS configuration, as config.ServerTLS builds
// it.
func (p *testPKI) serverTLS(verifyClient bool) *tls.Config {
	tc := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12, ClientCAs: p.pool, ClientAuth: tls.VerifyClientCertIfGiven}
	if verifyClient {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc
}

// routeTLS is a route TLS configuration, as config builds it: the route
// certificate, peers verified both ways.
func (p *testPKI) routeTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.route}, MinVersion: tls.VersionTLS12,
		ClientCAs: p.pool, RootCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	tc := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if withCert {
		tc.Certificates = []tls.Certificate{p.client}
	}
	return tc
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	for _, verify := range []bool{false, true} {
		name := "server-only"
		if verify {
			name = "verify_client"
		}
		t.Run(name, func(t *testing.T) {
			b := startBroker(t, broker.Config{
				NATSListen: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", TLS: pki.serverTLS(verify),
				Users: []broker.User{{Name: "u", Password: "p"}},
			})
			gw := newChanSub(t, "t/#")
			subscribe(t, b, "t/#", gw)

			// NATS.
			if nc, err := natsDial(b, nats.UserInfo("u", "p")); err == nil {
				nc.Close()
				t.Error("NATS without TLS connected")
			}
			if nc, err := natsDial(b, nats.UserInfo("u", "p"), nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12})); err == nil {
				nc.Close()
				t.Error("NATS trusting the system roots only connected")
			}
			nc, err := natsDial(b, nats.UserInfo("u", "p"), nats.Secure(pki.clientTLS(false)))
			if verify {
				if err == nil {
					nc.Close()
					t.Error("NATS without a client certificate connected")
				}
				nc, err = natsDial(b, nats.UserInfo("u", "p"), nats.Secure(pki.clientTLS(true)))
			}
			if err != nil {
				t.Fatalf("NATS with the test CA: %v", err)
			}
			defer nc.Close()
			natsPublish(t, nc, "t.nats", "over tls")
			if m := gw.next(t); m.Topic != "t/nats" {
				t.Errorf("gateway got %q", m.Topic)
			}
			if nc, err := natsDial(b, nats.Secure(pki.clientTLS(true))); err == nil {
				nc.Close()
				t.Error("NATS over TLS without a password connected")
			}

			// MQTT.
			login := mqttLogin{user: "u", password: "p"}
			if _, err := tryMQTT(b.MQTTAddr(), "plain", login); err == nil {
				t.Error("MQTT without TLS connected")
			}
			l := login
			l.tls = pki.clientTLS(false)
			code, err := tryMQTT(b.MQTTAddr(), "no-cert", l)
			if verify {
				if err == nil {
					t.Errorf("MQTT without a client certificate: CONNACK %d", code)
				}
				l.tls = pki.clientTLS(true)
			} else if err != nil || code != 0 {
				t.Errorf("MQTT with the test CA: CONNACK %d, %v", code, err)
			}
			mc := dialMQTTAs(t, b.MQTTAddr(), "tls", l)
			defer mc.close()
			mc.publish("t/mqtt", 1, []byte("over tls"))
			if m := gw.next(t); m.Topic != "t/mqtt" {
				t.Errorf("gateway got %q", m.Topic)
			}
			l.password = "wrong"
			if code, err := tryMQTT(b.MQTTAddr(), "tls-wrong", l); err != nil || code != 5 {
				t.Errorf("MQTT over TLS with a wrong password: CONNACK %d, %v; want 5 (not authorized)", code, err)
			}
		})
	}
}

// TestInProcessWithTLS: the gateway's own connection is in-process and
// needs no certificate, even with verify_client.
func TestInProcessWithTLS(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, broker.Config{NATSListen: "127.0.0.1:0", TLS: pki.serverTLS(true), Users: []broker.User{{Name: "u", Password: "p"}}})
	s := newChanSub(t, "x")
	subscribe(t, b, "x", s)
	pub(t, b, "x", "in-process")
	if m := s.next(t); string(m.Payload) != "in-process" {
		t.Fatalf("got %q", m.Payload)
	}
	if err := b.Ready(); err != nil {
		t.Fatal(err)
	}
}

// TestMQTTAuthentication: MQTT clients log in as the broker's users, with
// their permissions, and get gateway publishes at QoS 0 and 1.
func TestMQTTAuthentication(t *testing.T) {
	b := startBroker(t, broker.Config{
		NATSListen: "127.0.0.1:0", MQTTListen: "127.0.0.1:0",
		Users: []broker.User{
			{Name: "dev1", Password: mustHash(t, "secret"), Permissions: broker.Permissions{
				Publish:   broker.Rules{Allow: []string{"sensors.dev1.>"}},
				Subscribe: broker.Rules{Allow: []string{"cmd.dev1.>"}},
			}},
			{Name: "ops", Password: "ops-secret", ConnectionTypes: []string{broker.ConnNATS}},
		},
	})
	addr := b.MQTTAddr()
	for _, tc := range []struct {
		name  string
		login mqttLogin
		code  byte
	}{
		{"no credentials", mqttLogin{}, 5},
		{"no password", mqttLogin{user: "dev1"}, 5},
		{"wrong password", mqttLogin{user: "dev1", password: "Secret"}, 5},
		{"unknown user", mqttLogin{user: "dev2", password: "secret"}, 5},
		{"NATS-only user", mqttLogin{user: "ops", password: "ops-secret"}, 5},
		{"right password", mqttLogin{user: "dev1", password: "secret"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := tryMQTT(addr, "c-"+strings.ReplaceAll(tc.name, " ", "-"), tc.login)
			if err != nil || code != tc.code {
				t.Fatalf("CONNACK %d, %v; want %d", code, err, tc.code)
			}
		})
	}
	// The NATS-only user does log in over NATS.
	natsConnect(t, b, nats.UserInfo("ops", "ops-secret"))

	gw := newChanSub(t, "sensors/#")
	subscribe(t, b, "sensors/#", gw)
	mc := dialMQTTAs(t, addr, "dev1", mqttLogin{user: "dev1", password: "secret"})
	defer mc.close()

	// Subscriptions at QoS 0 and 1 (the latter delivered through
	// nats-server's $MQTT.sub subscription, outside the allow list).
	mc.subscribe("cmd/dev1/+", 1)
	mc.subscribe("cmd/dev1/qos0/#", 0)
	for _, topic := range []string{"cmd/dev1/reboot", "cmd/dev1/qos0/x"} {
		publish(t, b, &gateway.Message{From: "device-7", QoS: 1, Topic: topic, Payload: []byte("from a device")})
		if p := mc.readPublish(); p.topic != topic || string(p.payload) != "from a device" {
			t.Errorf("MQTT subscriber got %q %q, want %q", p.topic, p.payload, topic)
		}
	}
	// Publishes at QoS 0 and 1.
	for _, qos := range []byte{0, 1} {
		mc.publish("sensors/dev1/temp", qos, []byte("21"))
		if m := gw.next(t); m.Topic != "sensors/dev1/temp" || m.QoS != qos {
			t.Errorf("gateway got %q QoS %d", m.Topic, m.QoS)
		}
	}

	// A denied subscription is refused in the SUBACK; a denied publish
	// is acknowledged (MQTT 3.1.1 has no negative PUBACK) and dropped.
	if code := mc.trySubscribe("sensors/#", 1); code != 0x80 {
		t.Errorf("denied subscription: SUBACK %#x, want 0x80", code)
	}
	mc.publish("sensors/dev2/temp", 1, []byte("spoofed"))
	mc.publish("sensors/dev1/end", 1, []byte("end"))
	if got := gw.until(t, "end"); len(got) != 0 {
		t.Errorf("denied publish reached the gateway: %q", topics(got))
	}
	// "cmd/dev1/#" is "cmd.dev1.>" and "cmd.dev1", and the allow list
	// lacks the latter: the whole filter is refused.
	if code := mc.trySubscribe("cmd/dev1/#", 0); code != 0x80 {
		t.Errorf("cmd/dev1/# without cmd.dev1 allowed: SUBACK %#x, want 0x80", code)
	}
	// So is one of a reserved topic.
	if code := mc.trySubscribe("$SYS/#", 0); code != 0x80 {
		t.Errorf("$SYS/# subscription: SUBACK %#x, want 0x80", code)
	}
}

// writePEM writes the test CA and client certificate as PEM files for
// command-line clients and returns their names.
func (p *testPKI) writePEM(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	ca = write("ca.pem", "CERTIFICATE", p.caDER)
	cert = write("client.pem", "CERTIFICATE", p.client.Certificate[0])
	kd, err := x509.MarshalPKCS8PrivateKey(p.client.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	key = write("client.key", "PRIVATE KEY", kd)
	return ca, cert, key
}

// TestMQTTMosquittoAuth logs mosquitto_pub and mosquitto_sub in, over TLS
// with client certificates: no password and a wrong one are refused, the
// right one publishes to the gateway, and a device publish through the
// gateway reaches a mosquitto_sub subscribed at QoS 2.
func TestMQTTMosquittoAuth(t *testing.T) {
	for _, bin := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs mosquitto-clients)", bin)
		}
	}
	pki := newTestPKI(t)
	caFile, certFile, keyFile := pki.writePEM(t)
	b := startBroker(t, broker.Config{
		MQTTListen: "127.0.0.1:0", TLS: pki.serverTLS(true),
		Users: []broker.User{{Name: "dev1", Password: mustHash(t, "secret"), Permissions: broker.Permissions{
			Publish:   broker.Rules{Allow: []string{"sensors.dev1.>"}},
			Subscribe: broker.Rules{Allow: []string{"cmd.dev1", "cmd.dev1.>"}},
		}}},
	})
	host, port, err := net.SplitHostPort(b.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mqttTimeout)
	defer cancel()
	common := []string{"-V", "mqttv311", "-h", host, "-p", port, "--cafile", caFile, "--cert", certFile, "--key", keyFile}
	gw := newChanSub(t, "sensors/#")
	subscribe(t, b, "sensors/#", gw)

	for _, tc := range []struct {
		name  string
		creds []string
		ok    bool
	}{
		{"no password", nil, false},
		{"wrong password", []string{"-u", "dev1", "-P", "Secret"}, false},
		{"right password", []string{"-u", "dev1", "-P", "secret"}, true},
	} {
		args := append(append(append([]string{}, common...), tc.creds...), "-i", "mpub", "-q", "1", "-t", "sensors/dev1/temp", "-m", tc.name)
		out, err := exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput()
		if tc.ok != (err == nil) {
			t.Fatalf("mosquitto_pub %s: %v\n%s", tc.name, err, out)
		}
		if !tc.ok && !strings.Contains(string(out), "not authorised") {
			t.Errorf("mosquitto_pub %s: %s, want a refusal", tc.name, out)
		}
	}
	if m := gw.next(t); m.Topic != "sensors/dev1/temp" || string(m.Payload) != "right password" || m.QoS != 1 {
		t.Errorf("gateway got %s %q QoS %d", m.Topic, m.Payload, m.QoS)
	}
	if got := gw.pending(); len(got) != 0 {
		t.Errorf("refused publishers reached the gateway: %q", topics(got))
	}

	// gateway -> mosquitto_sub at QoS 2 (nats-server then subscribes the
	// client to its PUBREL subject too, which the default denies leave).
	args := append(append([]string{}, common...), "-u", "dev1", "-P", "secret", "-i", "msub", "-q", "2", "-t", "cmd/dev1/#", "-C", "1", "-v")
	cmd := exec.CommandContext(ctx, "mosquitto_sub", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			cancel()
			cmd.Wait()
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	waitNATSSubs(t, b, "cmd.dev1.>", "", 1)
	publish(t, b, &gateway.Message{From: "device-7", QoS: 1, Topic: "cmd/dev1/reboot", Payload: []byte("now")})
	var l string
	select {
	case l = <-lines:
	case <-ctx.Done():
	}
	if l != "cmd/dev1/reboot now" {
		t.Fatalf("mosquitto_sub printed %q, want %q: %v\n%s", l, "cmd/dev1/reboot now", ctx.Err(), stderr.String())
	}
	for range lines {
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Errorf("mosquitto_sub: %v\n%s", err, stderr.String())
	}
}

// TestReservedMQTTSubjectsCovered watches "$MQTT.>" while MQTT clients
// use QoS 1 and 2, retained messages and sessions, and checks that every
// subject nats-server uses there is either denied to MQTT-capable users
// (ReservedSubscribeMQTT) or one of the two it delivers to its MQTT
// clients on: a new nats-server that adds a subtree fails here.
func TestReservedMQTTSubjectsCovered(t *testing.T) {
	b := startBroker(t, broker.Config{
		NATSListen: "127.0.0.1:0", MQTTListen: "127.0.0.1:0",
		Users: []broker.User{
			{Name: "watch", Password: "w", Permissions: broker.Permissions{Publish: broker.Rules{Allow: []string{"$MQTT.>"}}, Subscribe: broker.Rules{Allow: []string{"$MQTT.>"}}}},
			{Name: "dev", Password: "d"},
		},
	})
	watch := natsConnect(t, b, nats.UserInfo("watch", "w"))
	seen := natsSubscribe(t, watch, "$MQTT.>")
	login := mqttLogin{user: "dev", password: "d"}

	sub := dialMQTTAs(t, b.MQTTAddr(), "reserved-sub", login)
	sub.subscribe("r/#", 1)
	pubc := dialMQTTAs(t, b.MQTTAddr(), "reserved-pub", login)
	pubc.publish("r/x", 1, []byte("qos1"))
	if p := sub.readPublish(); p.topic != "r/x" || p.qos != 1 {
		t.Fatalf("got %q QoS %d", p.topic, p.qos)
	}
	// A retained QoS 1 message, then a new subscriber that gets it.
	var body bytes.Buffer
	writeString(&body, "r/retained")
	id := pubc.nextID()
	body.Write(id)
	body.WriteString("kept")
	pubc.write(mqttPUBLISH<<4|1<<1|1, body.Bytes())
	pubc.await(mqttPUBACK, time.Now().Add(mqttTimeout))
	late := awaitRetained(t, b.MQTTAddr(), "reserved-late", login, "r/retained")
	if p := sub.readPublish(); p.topic != "r/retained" {
		t.Fatalf("got %q", p.topic)
	}
	// QoS 2 both ways, with mosquitto when it is installed.
	if _, err := exec.LookPath("mosquitto_pub"); err == nil {
		host, port, _ := net.SplitHostPort(b.MQTTAddr())
		ctx, cancel := context.WithTimeout(context.Background(), mqttTimeout)
		defer cancel()
		q2 := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", host, "-p", port, "-u", "dev", "-P", "d",
			"-i", "reserved-q2", "-q", "2", "-t", "q2/x", "-C", "1")
		out := make(chan []byte, 1)
		stdout, err := q2.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := q2.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { b, _ := io.ReadAll(stdout); out <- b }()
		waitNATSSubs(t, b, "q2.x", "", 1)
		if o, err := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv311", "-h", host, "-p", port, "-u", "dev", "-P", "d",
			"-i", "reserved-q2p", "-q", "2", "-t", "q2/x", "-m", "qos2").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub -q 2: %v\n%s", err, o)
		}
		if got := <-out; string(got) != "qos2\n" {
			t.Errorf("mosquitto_sub -q 2 printed %q", got)
		}
		if err := q2.Wait(); err != nil {
			t.Error(err)
		}
	} else {
		t.Log("mosquitto not installed: QoS 2 not covered")
	}
	sub.close()
	late.close()
	pubc.close()

	natsPublish(t, watch, "$MQTT.zz.end", "")
	subjects := map[string]bool{}
	for {
		m := natsNext(t, seen)
		if m.Subject == "$MQTT.zz.end" {
			break
		}
		subjects[m.Subject] = true
	}
	if len(subjects) < 4 {
		t.Fatalf("saw only %d $MQTT subjects: %v", len(subjects), subjects)
	}
	for s := range subjects {
		if strings.HasPrefix(s, "$MQTT.sub.") || strings.HasPrefix(s, "$MQTT.deliver.") {
			continue
		}
		denied := false
		for _, d := range broker.ReservedSubscribeMQTT {
			if server.SubjectMatchesFilter(s, d) {
				denied = true
			}
		}
		if !denied {
			t.Errorf("nats-server uses %q, which the default subscribe denies do not cover", s)
		}
	}
	t.Logf("%d $MQTT subjects seen", len(subjects))
}
