package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
)

// TestValidateOpenBroker: protogate validate refuses a broker listener
// open to the network without users, and says why and what to do.
func TestValidateOpenBroker(t *testing.T) {
	dir := t.TempDir()
	write := func(name, broker string) string {
		p := filepath.Join(dir, name)
		body := "broker: " + broker + `
handlers:
  h: {grpc: {address: "http://127.0.0.1:9001"}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := write("open.yaml", `{nats_listen: "0.0.0.0:4222", mqtt_listen: "127.0.0.1:1883"}`)
	for _, tc := range []struct {
		name string
		file string
		code int
		want []string
	}{
		{"open", open, 1, []string{
			open + `: line 1: broker.nats_listen: address "0.0.0.0:4222" is not a loopback address and the broker has no users: ` +
				"anyone on the network could read every device's traffic and publish to every device; " +
				"add broker.users (or broker.nkeys, or broker.tls with verify_client: true), bind to 127.0.0.1, " +
				"or set broker.allow_anonymous: true to accept the risk\n",
		}},
		{"anonymous accepted", write("anon.yaml", `{nats_listen: "0.0.0.0:4222", allow_anonymous: true}`), 0, []string{"ok"}},
		{"users", write("users.yaml", `{mqtt_listen: "0.0.0.0:1883", users: [{user: u, password: p}]}`), 0, []string{"ok"}},
		{"loopback", write("loopback.yaml", `{nats_listen: "127.0.0.1:4222", mqtt_listen: "[::1]:1883"}`), 0, []string{"ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := protogate([]string{"validate", "-c", tc.file}, &out, &out); code != tc.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not mention %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestRunBrokerUsers runs the gateway with broker users: outside clients
// need a password, and a device's publish reaches a NATS and an MQTT
// subscriber that logged in.
func TestRunBrokerUsers(t *testing.T) {
	cfg, err := config.Parse([]byte(`
node: {data_dir: ` + t.TempDir() + `}
adapter: {bind: "127.0.0.1:0"}
broker:
  nats_listen: "127.0.0.1:0"
  mqtt_listen: "127.0.0.1:0"
  users:
    - user: app
      password: "$2a$04$bp5PmIgNymJD0GJOWeU97.jhP4OLphzrfWp8tMkle7l9Edkpjj5wO"
      permissions:
        publish: {allow: ["cmd.>"]}
        subscribe: {allow: ["sensors.>", "sensors"]}
handlers:
  h: {wasm: {path: "builtin:linepubsub", call_timeout: 5s}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	natsURL := "nats://" + r.broker.NATSAddr().String()
	if nc, err := nats.Connect(natsURL, nats.Timeout(wait)); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("NATS without a password: %v, want %v", err, nats.ErrAuthorization)
	}
	nc, err := nats.Connect(natsURL, nats.UserInfo("app", "secret"), nats.Timeout(wait))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	up := make(chan *nats.Msg, 4)
	if _, err := nc.ChanSubscribe("sensors.>", up); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(wait); err != nil {
		t.Fatal(err)
	}

	// An MQTT subscriber, if mosquitto_sub is installed; its debug output
	// says when the SUBACK arrived.
	var mqttLines chan string
	if _, err := exec.LookPath("mosquitto_sub"); err == nil {
		host, port, _ := net.SplitHostPort(r.broker.MQTTAddr())
		ctx, cancel := context.WithTimeout(context.Background(), startWait)
		t.Cleanup(cancel)
		refused, err := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", host, "-p", port,
			"-u", "app", "-P", "wrong", "-t", "sensors/#", "-C", "1").CombinedOutput()
		if err == nil || !strings.Contains(string(refused), "not authorised") {
			t.Errorf("mosquitto_sub with a wrong password: %v: %s", err, refused)
		}
		cmd := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", host, "-p", port,
			"-u", "app", "-P", "secret", "-i", "msub", "-q", "1", "-t", "sensors/#", "-C", "1", "-v")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); cmd.Wait() })
		mqttLines = make(chan string, 16)
		go func() {
			defer close(mqttLines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				mqttLines <- sc.Text()
			}
		}()
		// Its subscription is live once the server holds the NATS
		// subscriptions "sensors/#" maps to ("sensors" only it has).
		deadline := time.Now().Add(wait)
		for !serverHasSub(t, r, "sensors") {
			if time.Now().After(deadline) {
				t.Fatal("mosquitto_sub did not subscribe")
			}
			time.Sleep(5 * time.Millisecond)
		}
	} else {
		t.Log("mosquitto_sub not installed (scripts/deps.sh installs mosquitto-clients): NATS only")
	}

	dev := dialLines(t, r.listeners["l"].String())
	if got := dev.cmd("PUB sensors/d1/temp 21.5"); got != "OK" {
		t.Fatalf("PUB: %q", got)
	}
	select {
	case m := <-up:
		if m.Subject != "sensors.d1.temp" || string(m.Data) != "21.5" {
			t.Errorf("NATS got %s %q", m.Subject, m.Data)
		}
	case <-time.After(wait):
		t.Fatal("no NATS delivery")
	}
	if mqttLines != nil {
		select {
		case l := <-mqttLines:
			if l != "sensors/d1/temp 21.5" {
				t.Errorf("mosquitto_sub printed %q", l)
			}
		case <-time.After(wait):
			t.Fatal("no MQTT delivery")
		}
	}
}

// serverHasSub reports whether the embedded NATS server holds a
// subscription on exactly subject.
func serverHasSub(t *testing.T, r *running, subject string) bool {
	t.Helper()
	sz, err := r.broker.Server().Subsz(&server.SubszOptions{Subscriptions: true, Account: "$G", Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range sz.Subs {
		if d.Subject == subject {
			return true
		}
	}
	return false
}
