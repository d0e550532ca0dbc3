package main

// The end-to-end test of "protogate ctl". The device and API helpers here
// are shared with dashboard_test.go; their names start with e2e.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/gateway/topic"
	"github.com/protogate/protogate/internal/jsonhandler"
	jp "github.com/protogate/protogate/internal/jsonproto"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// TestCtlAgainstGateway: a gateway with a Wasm handler (builtin:exproto-json)
// and a gRPC one (internal/jsonhandler), each behind its own listener with a
// mountpoint, and a device on each; ctl runs every command against it.
// Where a command touches a device it is run for both back ends, and its
// effect is checked on the device's socket.
func TestCtlAgainstGateway(t *testing.T) {
	const key, secret = "ops", "s3cret"
	sum := sha256.Sum256([]byte(secret))
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, `
node: {name: ctl-e2e, data_dir: `+sharedDataDir+`}
gateway: {idle_timeout: 0s} # the devices wait between steps, however slow the machine
broker: {nats_listen: "127.0.0.1:0"}
adapter: {bind: "127.0.0.1:0"}
admin:
  bind: "127.0.0.1:0"
  api_keys: [{key: `+key+`, secret: "sha256:`+hex.EncodeToString(sum[:])+`"}]
handlers:
  wasm: {wasm: {path: "builtin:exproto-json", instances: 1, call_timeout: 5s}}
  remote: {grpc: {address: "http://`+hln.Addr().String()+`", timeout: 10s}}
listeners:
  - {name: wl, type: tcp, bind: "127.0.0.1:0", handler: wasm, mountpoint: "dev/${clientid}/", max_connections: 100}
  - {name: gl, type: tcp, bind: "127.0.0.1:0", handler: remote, mountpoint: "dev/${clientid}/", max_connections: 200}
`)
	var stopHandler func()
	t.Cleanup(func() { // after the gateway has stopped
		if stopHandler != nil {
			stopHandler()
		}
	})
	r := startRun(t, cfg)
	stopHandler = e2eJSONHandler(t, hln, r)

	// One authenticated device per back end, subscribed to cmd/#, and one
	// that never authenticates. They connect one after the other, so that
	// the API's order (oldest first) is this one.
	ids := []string{"ctl-w", "ctl-g"}
	listenerOf := map[string]string{"ctl-w": "wl", "ctl-g": "gl"} // wasm, grpc
	devs := map[string]*e2eDevice{}
	for _, id := range ids {
		devs[id] = dialE2E(t, r.listeners[listenerOf[id]].String())
		devs[id].connect(t, id)
		devs[id].subscribe(t, "cmd/#")
	}
	dialE2E(t, r.listeners["gl"].String())
	api := e2eAPI(t, r, key, secret)
	var anon string // the unauthenticated connection's handle
	e2eEventually(t, "the unauthenticated device is listed", func(ctx context.Context) error {
		page, _, err := api.Clients(ctx, clientQuery{ConnState: "connecting"})
		if err != nil {
			return err
		}
		if len(page.Data) != 1 {
			return fmt.Errorf("%d connecting, want 1", len(page.Data))
		}
		anon = page.Data[0].Conn
		return nil
	})

	env := map[string]string{envAPIKey: key, envAPISecret: secret}
	base := "http://" + r.admin.String()
	ctl := func(t *testing.T, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		var out, errb bytes.Buffer
		code = cmdCtl(ctx, append([]string{"--addr", base}, args...), &out, &errb, func(k string) string { return env[k] })
		return code, out.String(), errb.String()
	}
	// ok runs a command that must succeed and returns its output.
	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out, errs := ctl(t, args...)
		if code != 0 || errs != "" {
			t.Fatalf("ctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	// has fails the test unless out has a line matching each pattern; a
	// space in a pattern stands for a table's column gap.
	has := func(t *testing.T, what, out string, patterns ...string) {
		t.Helper()
		for _, p := range patterns {
			re := regexp.MustCompile(`(?m)^` + strings.ReplaceAll(p, " ", `\s+`) + `\s*$`)
			if !re.MatchString(out) {
				t.Errorf("%s: no line matching %q in\n%s", what, p, out)
			}
		}
	}
	// jsonOf runs a command with --json and decodes its output into v.
	jsonOf := func(t *testing.T, v any, args ...string) {
		t.Helper()
		out := ok(t, append([]string{"--json"}, args...)...)
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("ctl --json %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	t.Run("status", func(t *testing.T) {
		has(t, "status", ok(t, "status"), "node ctl-e2e", "ready yes", "connections 3", "clients 2")
		var st apiStatus
		jsonOf(t, &st, "status")
		if st.Node != "ctl-e2e" || !st.Ready || st.Connections != 3 || st.Clients != 2 {
			t.Errorf("status --json: %+v", st)
		}
	})

	t.Run("listeners", func(t *testing.T) {
		has(t, "listeners", ok(t, "listeners"),
			`wl tcp `+regexp.QuoteMeta(r.listeners["wl"].String())+` wasm yes 1 100 1 0 \d+ \d+ 0 0 0`,
			`gl tcp `+regexp.QuoteMeta(r.listeners["gl"].String())+` remote yes 2 200 2 0 \d+ \d+ 0 0 0`)
		var ls struct{ Data []apiListener }
		jsonOf(t, &ls, "listeners")
		if len(ls.Data) != 2 || ls.Data[0].Name != "wl" || ls.Data[0].CurrentConnections != 1 || ls.Data[1].CurrentConnections != 2 {
			t.Errorf("listeners --json: %+v", ls.Data)
		}
	})

	t.Run("clients", func(t *testing.T) {
		row := func(id, conn, listener, handler, state string, subs int) string {
			return fmt.Sprintf(`%s %s %s %s 127\.0\.0\.1:\d+ %s \S+ %d \d+ \d+ 0 0`,
				regexp.QuoteMeta(id), conn, listener, handler, state, subs)
		}
		header := "CLIENTID USERNAME CONN LISTENER HANDLER PEER STATE CREATED SUBS RECV_OCT SEND_OCT RECV_MSG SEND_MSG"
		has(t, "clients --listener gl", ok(t, "clients", "--listener", "gl"), header,
			row("ctl-g u-ctl-g", `[0-9a-f]{16}`, "gl", "remote", "connected", 1),
			row("- -", anon, "gl", "remote", "connecting", 0),
			`page 1 of 1 \(2 clients\)`)
		out := ok(t, "clients", "--handler", "wasm")
		has(t, "clients --handler wasm", out, row("ctl-w u-ctl-w", `[0-9a-f]{16}`, "wl", "wasm", "connected", 1), `page 1 of 1 \(1 clients\)`)
		if strings.Contains(out, "ctl-g") {
			t.Errorf("clients --handler wasm lists ctl-g:\n%s", out)
		}
		has(t, "clients --like-clientid", ok(t, "clients", "--like-clientid", "ctl-", "--limit", "1"),
			row("ctl-w u-ctl-w", `[0-9a-f]{16}`, "wl", "wasm", "connected", 1), `page 1; next: --page 2`)
		var page apiClientPage
		jsonOf(t, &page, "clients", "--conn-state", "connected")
		var got []string
		for _, c := range page.Data {
			got = append(got, c.ClientID+"@"+c.Handler+"/"+c.Backend)
		}
		if !slices.Equal(got, []string{"ctl-w@wasm/wasm", "ctl-g@remote/grpc"}) || page.Meta.Count == nil || *page.Meta.Count != 2 {
			t.Errorf("clients --json --conn-state connected: %q, meta %+v", got, page.Meta)
		}
	})

	t.Run("client", func(t *testing.T) {
		for _, tc := range []struct{ id, listener, handler string }{
			{"ctl-w", "wl", "wasm \\(wasm\\)"},
			{"ctl-g", "gl", "remote \\(grpc\\)"},
		} {
			has(t, "client "+tc.id, ok(t, "client", tc.id), "clientid "+tc.id, "username u-"+tc.id, "listener "+tc.listener,
				"handler "+tc.handler, "protocol e2e 1", "state connected", "mountpoint dev/"+tc.id+"/", "subscriptions 1")
		}
		has(t, "client by handle", ok(t, "client", anon), "clientid -", "conn "+anon, "state connecting", "connected -")
		var c apiClient
		jsonOf(t, &c, "client", "ctl-g")
		if c.ClientID != "ctl-g" || c.Backend != "grpc" || c.Mountpoint != "dev/ctl-g/" || c.ConnectedAt == nil {
			t.Errorf("client --json: %+v", c)
		}
	})

	// subscriptions, subscribe and unsubscribe, with deliveries through the
	// broker from a NATS client, for both back ends.
	t.Run("subscriptions", func(t *testing.T) {
		nc, err := nats.Connect("nats://"+r.broker.NATSAddr().String(), nats.Timeout(wait))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		publish := func(mounted, payload string) {
			t.Helper()
			subject, err := topic.PublishSubject(mounted)
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Publish(subject, []byte(payload)); err != nil {
				t.Fatal(err)
			}
			if err := nc.FlushTimeout(wait); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range ids {
			dev := devs[id]
			mp := "dev/" + id + "/"
			has(t, "subscriptions "+id, ok(t, "subscriptions", id), "TOPIC QOS NL RAP RH", regexp.QuoteMeta(mp+"cmd/#")+" 0 0 0 0")

			has(t, "subscribe "+id, ok(t, "subscribe", id, "news/+", "--qos", "1"), regexp.QuoteMeta("subscribed "+id+" to "+mp+"news/+ (qos 1)"))
			var subs []apiSubscription
			jsonOf(t, &subs, "subscriptions", id)
			if want := []apiSubscription{{Topic: mp + "cmd/#"}, {Topic: mp + "news/+", QoS: 1}}; !slices.Equal(subs, want) {
				t.Errorf("%s: subscriptions --json: %+v, want %+v", id, subs, want)
			}
			publish(mp+"news/today", "hello "+id)
			if f := dev.next(t); f.Type != jp.Publish || f.Topic != "news/today" || f.Payload != "hello "+id {
				t.Errorf("%s: after subscribe, got %+v; want PUBLISH news/today", id, f)
			}

			has(t, "unsubscribe "+id, ok(t, "unsubscribe", id, "news/+"), regexp.QuoteMeta("unsubscribed "+id+" from news/+"))
			has(t, "subscriptions "+id, ok(t, "subscriptions", id), regexp.QuoteMeta(mp+"cmd/#")+" 0 0 0 0")
			// After the unsubscribe a message on news/today is not
			// delivered; one on cmd/ still is.
			publish(mp+"news/today", "gone")
			publish(mp+"cmd/reboot", "now")
			if f := dev.next(t); f.Type != jp.Publish || f.Topic != "cmd/reboot" {
				t.Errorf("%s: after unsubscribe, got %+v; want PUBLISH cmd/reboot", id, f)
			}
			if code, _, errs := ctl(t, "unsubscribe", id, "news/+"); code != 1 || !strings.Contains(errs, "(NOT_FOUND, HTTP 404)") {
				t.Errorf("%s: unsubscribe again: exit %d, %s", id, code, errs)
			}
		}
	})

	t.Run("handlers", func(t *testing.T) {
		has(t, "handlers", ok(t, "handlers"),
			"NAME BACKEND READY GRPC WASM CALLBACKS FAILED TIMEOUTS PANICS P50 P99",
			`remote grpc yes `+regexp.QuoteMeta("http://"+hln.Addr().String())+` READY - \d+ 0 0 0 \S+ \S+`,
			`wasm wasm yes - builtin:exproto-json v\d+, 1 instances, breaker closed \d+ 0 0 0 \S+ \S+`)
		var hs struct{ Data []apiHandler }
		jsonOf(t, &hs, "handlers")
		if len(hs.Data) != 2 || hs.Data[0].GRPC == nil || hs.Data[0].GRPC.State != "READY" || hs.Data[1].Wasm == nil || hs.Data[1].Callbacks.Total == 0 {
			t.Errorf("handlers --json: %+v", hs.Data)
		}
	})

	t.Run("reload", func(t *testing.T) {
		has(t, "reload wasm", ok(t, "reload", "wasm"), `reloaded wasm: ok, version \d+, sha256 [0-9a-f]+`)
		var rl apiReload
		jsonOf(t, &rl, "reload", "wasm")
		if rl.Name != "wasm" || rl.Result != "ok" || rl.Version < 1 {
			t.Errorf("reload --json: %+v", rl)
		}
		code, out, errs := ctl(t, "reload", "remote")
		if want := "protogate ctl: handler remote has no wasm module to reload (a grpc handler reconnects by itself) (BAD_REQUEST, HTTP 400)\n"; code != 1 || out != "" || errs != want {
			t.Errorf("reload remote: exit %d, stdout %q, stderr %q; want exit 1, %q", code, out, errs, want)
		}
		// The devices are still served after the reload.
		for _, id := range ids {
			devs[id].send(t, jp.Frame{Type: jp.Publish, Topic: "up", Payload: "x"})
			devs[id].expect(t, jp.Puback)
		}
	})

	t.Run("trace", func(t *testing.T) {
		for _, tc := range []struct {
			id   string
			json bool
		}{{"ctl-w", false}, {"ctl-g", true}} {
			events := e2eTrace(t, base, env, devs[tc.id], tc.id, tc.json)
			// The first whole callback the trace saw.
			i := slices.IndexFunc(events, func(ev traceEvent) bool { return ev.Kind == "callback" })
			var got []string
			for _, ev := range events[i : i+4] {
				got = append(got, ev.Kind+" "+ev.Name+" "+ev.Code)
			}
			want := []string{"callback on_received_bytes SUCCESS", "call publish SUCCESS", "call send SUCCESS", "return on_received_bytes SUCCESS"}
			if !slices.Equal(got, want) {
				t.Errorf("%s: trace %q, want %q", tc.id, got, want)
			}
			if tc.json {
				if ev := events[i]; ev.Size != int64(len(jp.AppendLine(nil, e2ePing))) || ev.Payload != hex.EncodeToString([]byte(`{"ty`)) || ev.Conn == "" || ev.ClientID != tc.id {
					t.Errorf("%s: trace --json callback %+v", tc.id, ev)
				}
				if ev := events[i+1]; ev.Topic != e2ePing.Topic || ev.Size != int64(len(e2ePing.Payload)) {
					t.Errorf("%s: trace --json publish %+v", tc.id, ev)
				}
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string // stderr
		}{
			{[]string{"--api-key", key, "--api-secret", "wrong", "status"},
				"protogate ctl: wrong or missing credentials: use HTTP Basic with an api key and its secret (UNAUTHORIZED, HTTP 401)\n" +
					"protogate ctl: give an admin.api_keys entry with --api-key and --api-secret, or $PROTOGATE_API_KEY and $PROTOGATE_API_SECRET\n"},
			{[]string{"client", "nobody"}, `protogate ctl: client "nobody" not found (give a client id or a connection handle) (NOT_FOUND, HTTP 404)` + "\n"},
			{[]string{"kick", "nobody"}, `protogate ctl: client "nobody" not found (give a client id or a connection handle) (NOT_FOUND, HTTP 404)` + "\n"},
			{[]string{"subscribe", "nobody", "t"}, `protogate ctl: client "nobody" not found (give a client id or a connection handle) (NOT_FOUND, HTTP 404)` + "\n"},
			{[]string{"trace", "nobody"}, "protogate ctl: no such client connected: nobody (NOT_FOUND, HTTP 404)\n"},
		} {
			if code, out, errs := ctl(t, tc.args...); code != 1 || out != "" || errs != tc.want {
				t.Errorf("ctl %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", strings.Join(tc.args, " "), code, out, errs, tc.want)
			}
		}
	})

	// Last: kick each device; its socket closes and the API forgets it:
	// at once by client id, from the list once its handler has seen
	// OnSocketClosed.
	t.Run("kick", func(t *testing.T) {
		for i, id := range ids {
			if out := ok(t, "kick", id); out != "kicked "+id+"\n" {
				t.Errorf("kick %s: %q", id, out)
			}
			devs[id].closed(t)
			e2eEventually(t, id+" gone", func(context.Context) error {
				var page apiClientPage
				jsonOf(t, &page, "clients")
				if len(page.Data) != 2-i {
					return fmt.Errorf("clients: %+v", page.Data)
				}
				for _, c := range page.Data {
					if c.ClientID == id {
						return fmt.Errorf("listed: %+v", c)
					}
				}
				return nil
			})
			if code, _, errs := ctl(t, "client", id); code != 1 || !strings.Contains(errs, "(NOT_FOUND, HTTP 404)") {
				t.Errorf("client %s after the kick: exit %d, %s", id, code, errs)
			}
		}
		has(t, "status after kicks", ok(t, "status"), "connections 1", "clients 0")
	})
}

// e2ePing is the frame a traced device sends.
var e2ePing = jp.Frame{Type: jp.Publish, Topic: "up", Payload: "ping"}

// e2eTrace runs "ctl trace id" (with --json if asJSON) until it has shown
// a whole callback of dev, from its start to its return: dev sends e2ePing
// frames until then, since nothing tells when the trace has started. Then
// it stops the trace as Ctrl-C does and returns the events shown.
func e2eTrace(t *testing.T, base string, env map[string]string, dev *e2eDevice, id string, asJSON bool) []traceEvent {
	t.Helper()
	args := []string{"--addr", base, "trace", id}
	if asJSON {
		args = append(args, "--json", "--payload", "4")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs e2eBuffer
	done := make(chan int, 1)
	go func() { done <- cmdCtl(ctx, args, &out, &errs, func(k string) string { return env[k] }) }()

	parse := func() []traceEvent {
		var evs []traceEvent
		for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			if line == "" {
				continue
			}
			var ev traceEvent
			if asJSON {
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("trace --json: %v: %q", err, line)
				}
			} else {
				// 2026-12-01T10:00:00.123Z callback on_received_bytes size=5 code=SUCCESS 12µs
				f := strings.Fields(line)
				if len(f) < 3 {
					t.Fatalf("trace: %q", line)
				}
				ev.Time, ev.Kind, ev.Name = f[0], f[1], f[2]
				for _, kv := range f[3:] {
					if c, ok := strings.CutPrefix(kv, "code="); ok {
						ev.Code = c
					}
				}
			}
			evs = append(evs, ev)
		}
		return evs
	}
	whole := func(evs []traceEvent) bool {
		i := slices.IndexFunc(evs, func(ev traceEvent) bool { return ev.Kind == "callback" })
		return i >= 0 && len(evs) >= i+4
	}
	// A ping every resend at most, so that the trace's buffer (256 events)
	// never overflows however slowly its events arrive.
	const resend = 250 * time.Millisecond
	deadline := time.Now().Add(wait)
	check := time.NewTicker(10 * time.Millisecond)
	defer check.Stop()
	var evs []traceEvent
	var sent time.Time
	for {
		if time.Since(sent) >= resend {
			dev.send(t, e2ePing)
			dev.expect(t, jp.Puback)
			sent = time.Now()
		}
		select {
		case code := <-done:
			t.Fatalf("trace %s ended: exit %d\n%s%s", id, code, out.String(), errs.String())
		case <-check.C:
		}
		if evs = parse(); whole(evs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: no whole callback after %v:\n%s%s", id, wait, out.String(), errs.String())
		}
	}
	t.Logf("ctl trace %s:\n%s", id, out.String())
	cancel()
	select {
	case code := <-done:
		if code != 0 || errs.String() != "" {
			t.Errorf("trace %s interrupted: exit %d, %s", id, code, errs.String())
		}
	case <-time.After(wait):
		t.Fatalf("trace %s did not stop when interrupted", id)
	}
	return evs
}

// e2eBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type e2eBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *e2eBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *e2eBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// e2eJSONHandler serves the reference gRPC handler on ln, calling r's
// adapter, and returns the function that stops it.
func e2eJSONHandler(t *testing.T, ln net.Listener, r *running) (stop func()) {
	t.Helper()
	cc, err := grpc.NewClient(r.adapter.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	jsonhandler.New(pb.NewConnectionAdapterClient(cc), slog.New(slog.DiscardHandler)).Register(gs)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(ln) }()
	return func() {
		gs.Stop()
		<-done
		cc.Close()
	}
}

// e2eDevice is a device speaking the JSON test protocol (internal/jsonproto)
// over TCP. Its methods take the test (or subtest) they run in.
type e2eDevice struct {
	nc  net.Conn
	dec *jp.Decoder
}

// dialE2E connects a device to addr; the test's end closes it.
func dialE2E(t *testing.T, addr string) *e2eDevice {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &e2eDevice{nc: nc, dec: jp.NewDecoder(0)}
}

// send writes one frame.
func (d *e2eDevice) send(t *testing.T, f jp.Frame) {
	t.Helper()
	d.nc.SetWriteDeadline(time.Now().Add(wait))
	if _, err := d.nc.Write(jp.AppendLine(nil, f)); err != nil {
		t.Fatalf("device: write %v: %v", f.Type, err)
	}
}

// next reads the next frame, failing the test after wait.
func (d *e2eDevice) next(t *testing.T) jp.Frame {
	t.Helper()
	f, err := d.read()
	if err != nil {
		t.Fatalf("device: read: %v", err)
	}
	return f
}

func (d *e2eDevice) read() (jp.Frame, error) {
	d.nc.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1024)
	for {
		f, ok, err := d.dec.Next()
		if err != nil || ok {
			return f, err
		}
		n, err := d.nc.Read(buf)
		if err != nil {
			return jp.Frame{}, err
		}
		d.dec.Feed(buf[:n])
	}
}

// expect reads a frame and fails the test unless it has type typ and code 0.
func (d *e2eDevice) expect(t *testing.T, typ jp.Type) jp.Frame {
	t.Helper()
	f := d.next(t)
	if f.Type != typ || f.Code != 0 {
		t.Fatalf("device: got %+v, want %v with code 0", f, typ)
	}
	return f
}

// connect authenticates the device as clientID, with user name
// "u-"+clientID.
func (d *e2eDevice) connect(t *testing.T, clientID string) {
	t.Helper()
	d.send(t, jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "e2e", ProtoVer: "1", ClientID: clientID, Username: "u-" + clientID}})
	d.expect(t, jp.Connack)
}

// subscribe subscribes the device to topic (before the mountpoint).
func (d *e2eDevice) subscribe(t *testing.T, topic string) {
	t.Helper()
	d.send(t, jp.Frame{Type: jp.Subscribe, Topic: topic})
	d.expect(t, jp.Suback)
}

// closed waits until the gateway closes the device's socket: a read
// returns io.EOF (or a reset) before the deadline, and no frame comes
// first.
func (d *e2eDevice) closed(t *testing.T) {
	t.Helper()
	f, err := d.read()
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("device: got %+v, want the socket closed", f)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("device: the socket is still open after %v", wait)
	}
}

// e2eAPI returns a client of the gateway's admin API with the given
// credentials.
func e2eAPI(t *testing.T, r *running, key, secret string) *ctlClient {
	t.Helper()
	c, err := newCtlClient("http://"+r.admin.String(), key, secret, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// e2eEventually calls cond until it returns nil, at most for wait, and
// fails the test with its last error otherwise.
func e2eEventually(t *testing.T, what string, cond func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		<-tick.C
	}
}
