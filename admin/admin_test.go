package admin

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authn"
)

// lineHandler is a minimal handler for the package's own tests: it
// authenticates every connection with the client id its first line names
// and echoes what follows. Tests of the real back ends through the API
// are in gateway/conformance and cmd/protogate.
type lineHandler struct{}

func (lineHandler) OnSocketCreated(context.Context, *gateway.Conn, *gateway.ConnInfo) error {
	return nil
}

func (lineHandler) OnReceivedBytes(ctx context.Context, c *gateway.Conn, b []byte) error {
	if c.ClientID() == "" {
		return c.Authenticate(ctx, &gateway.ClientInfo{ClientID: strings.TrimSpace(string(b))}, "")
	}
	return c.Send(b)
}

func (lineHandler) OnTimerTimeout(context.Context, *gateway.Conn, gateway.TimerType) error {
	return nil
}

func (lineHandler) OnReceivedMessages(context.Context, *gateway.Conn, []*gateway.Message) error {
	return nil
}

func (lineHandler) OnSocketClosed(context.Context, *gateway.Conn, string) error { return nil }

// fixture is a gateway with one TCP listener and its admin API.
type fixture struct {
	gw   *gateway.Server
	addr string // the device listener
	api  *Server
	url  string
}

// keys parses "key", "secret" pairs as the config does.
func keys(t *testing.T, kv ...string) map[string]authn.Password {
	t.Helper()
	m := make(map[string]authn.Password)
	for i := 0; i < len(kv); i += 2 {
		p, err := authn.ParsePassword(kv[i+1])
		if err != nil {
			t.Fatal(err)
		}
		m[kv[i]] = p
	}
	return m
}

func newFixture(t *testing.T, keys map[string]authn.Password) *fixture {
	t.Helper()
	gw := gateway.New(gateway.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := lineHandler{}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln, &gateway.Listener{Name: "tcp", Type: gateway.TCP, Handler: h}) }()
	api, err := New(Config{
		Node: "test@local", Version: "v0-test", Gateway: gw,
		Listeners: []Listener{{Name: "tcp", Type: "tcp", Bind: "127.0.0.1:0", Handler: "line"}},
		Handlers:  []Handler{{Name: "line", Handler: h, GRPC: &fakeChannel{state: "READY"}}},
		APIKeys:   keys,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api)
	t.Cleanup(func() {
		api.Close()
		hs.Close()
		gw.Close()
		if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	f := &fixture{gw: gw, addr: ln.Addr().String(), api: api, url: hs.URL}
	f.waitReady(t)
	return f
}

// waitReady waits until the listener is serving.
func (f *fixture) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f.gw.ListenerStats("tcp").Running {
		if time.Now().After(deadline) {
			t.Fatal("listener not running")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
}

// fakeChannel stands for a gRPC channel in this package's unit tests.
type fakeChannel struct {
	mu    sync.Mutex
	state string
}

func (f *fakeChannel) set(state string) {
	f.mu.Lock()
	f.state = state
	f.mu.Unlock()
}

func (f *fakeChannel) State() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeChannel) Address() string     { return "http://127.0.0.1:1" }
func (f *fakeChannel) ServiceName() string { return "ConnectionUnaryHandler" }

func (f *fixture) get(t *testing.T, path string, user, pass string) (*http.Response, []byte) {
	t.Helper()
	return f.do(t, "GET", path, user, pass, "")
}

func (f *fixture) do(t *testing.T, method, path, user, pass, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestAuthentication(t *testing.T) {
	sum := sha256.Sum256([]byte("hashed-secret"))
	f := newFixture(t, keys(t, "plain", "s3cret", "hashed", "sha256:"+hex.EncodeToString(sum[:])))
	for _, tc := range []struct {
		name, path, user, pass string
		want                   int
	}{
		{"plain secret", "/api/v1/status", "plain", "s3cret", 200},
		{"hashed secret", "/api/v1/status", "hashed", "hashed-secret", 200},
		{"hash itself is no secret", "/api/v1/status", "hashed", hex.EncodeToString(sum[:]), 401},
		{"wrong secret", "/api/v1/status", "plain", "nope", 401},
		{"unknown key", "/api/v1/status", "nobody", "s3cret", 401},
		{"secret of another key", "/api/v1/status", "hashed", "s3cret", 401},
		{"no credentials", "/api/v1/clients", "", "", 401},
		{"metrics need them too", "/metrics", "", "", 401},
		{"healthz is open", "/healthz", "", "", 200},
		{"readyz is open", "/readyz", "", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, tc.path, tc.user, tc.pass)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == 401 {
				var e apiError
				if json.Unmarshal(body, &e) != nil || e.Code != "UNAUTHORIZED" || resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 answer: %s %v", body, resp.Header)
				}
			}
		})
	}
}

func TestFailedLoginsAreRateLimited(t *testing.T) {
	f := newFixture(t, keys(t, "k", "s"))
	// The earlier cases of this test's fixture spent none of the burst.
	for i := range failBurst {
		if resp, _ := f.get(t, "/api/v1/status", "k", "wrong"); resp.StatusCode != 401 {
			t.Fatalf("attempt %d: %d, want 401", i, resp.StatusCode)
		}
	}
	resp, body := f.get(t, "/api/v1/status", "k", "wrong")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after the burst: %d %s, want 429 with Retry-After", resp.StatusCode, body)
	}
	// Even the right secret waits: guessing must not go on.
	if resp, _ := f.get(t, "/api/v1/status", "k", "s"); resp.StatusCode != 429 {
		t.Errorf("right secret during the lockout: %d, want 429", resp.StatusCode)
	}
	// Probes are never locked out.
	if resp, _ := f.get(t, "/healthz", "", ""); resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
}

func TestFailLimiterForgets(t *testing.T) {
	l := newFailLimiter()
	for range failBurst {
		l.fail("192.0.2.1")
	}
	if l.allow("192.0.2.1") {
		t.Fatal("allowed after the burst")
	}
	// A full bucket after failEvery x failBurst: time passes by editing
	// the state's clock.
	l.mu.Lock()
	st := l.fails["192.0.2.1"]
	st.at = st.at.Add(-failEvery * failBurst)
	l.fails["192.0.2.1"] = st
	l.mu.Unlock()
	if !l.allow("192.0.2.1") {
		t.Fatal("not allowed after the refill")
	}
	if !l.allow("192.0.2.2") {
		t.Fatal("another address is limited")
	}
}

func TestJSONErrors(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/api/v1/nothing", 404, "NOT_FOUND"},
		{"GET", "/api/v1/listeners/nope", 404, "NOT_FOUND"},
		{"GET", "/api/v1/handlers/nope", 404, "NOT_FOUND"},
		{"POST", "/api/v1/handlers/nope/reload", 404, "NOT_FOUND"},
		{"POST", "/api/v1/handlers/line/reload", 400, "BAD_REQUEST"},
		{"GET", "/api/v1/handlers/line/reload", 405, "METHOD_NOT_ALLOWED"},
		{"POST", "/api/v1/clients", 405, "METHOD_NOT_ALLOWED"},
		{"DELETE", "/api/v1/clients/nobody", 404, "NOT_FOUND"},
		{"GET", "/api/v1/trace", 400, "BAD_REQUEST"},
		{"GET", "/api/v1/trace?clientid=a&conn=b", 400, "BAD_REQUEST"},
		{"GET", "/api/v1/trace?clientid=a&duration=forever", 400, "BAD_REQUEST"},
		{"GET", "/api/v1/trace?clientid=a&payload=9999", 400, "BAD_REQUEST"},
		{"GET", "/api/v1/trace?clientid=a&format=xml", 400, "BAD_REQUEST"},
		{"GET", "/api/v1/trace?clientid=nobody", 404, "NOT_FOUND"},
	} {
		resp, body := f.do(t, tc.method, tc.path, "", "", "")
		var e apiError
		if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.code)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: content type %q", tc.method, tc.path, ct)
		}
	}
}

func TestStatusListenersHandlers(t *testing.T) {
	f := newFixture(t, nil)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("dev-1\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.gw.ClientConn("dev-1") == nil {
		if time.Now().After(deadline) {
			t.Fatal("not authenticated")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}

	var st statusJSON
	if _, b := f.get(t, "/api/v1/status", "", ""); json.Unmarshal(b, &st) != nil || st.Node != "test@local" || !st.Ready ||
		st.Connections != 1 || st.Clients != 1 || st.Version != "v0-test" {
		t.Errorf("status: %s", b)
	}
	var ls struct{ Data []listenerJSON }
	if _, b := f.get(t, "/api/v1/listeners", "", ""); json.Unmarshal(b, &ls) != nil || len(ls.Data) != 1 {
		t.Fatalf("listeners: %s", b)
	}
	if l := ls.Data[0]; l.Name != "tcp" || !l.Running || l.CurrentConnections != 1 || l.Accepted != 1 ||
		l.RecvOct != 6 || l.Address != f.addr || len(l.Refused) != len(gateway.Causes()) {
		t.Errorf("listener: %+v", l)
	}
	var hs struct{ Data []handlerJSON }
	if _, b := f.get(t, "/api/v1/handlers", "", ""); json.Unmarshal(b, &hs) != nil || len(hs.Data) != 1 {
		t.Fatalf("handlers: %s", b)
	}
	if h := hs.Data[0]; h.Backend != "grpc" || !h.Ready || h.GRPC == nil || h.GRPC.State != "READY" ||
		h.Callbacks.Total < 2 || h.Callbacks.Failed != 0 || h.Callbacks.Latency["p99"] <= 0 {
		t.Errorf("handler: %+v", h)
	}
}

func TestReadiness(t *testing.T) {
	f := newFixture(t, nil)
	ch := f.api.cfg.Handlers[0].GRPC.(*fakeChannel)
	ch.set("TRANSIENT_FAILURE")
	resp, body := f.get(t, "/readyz", "", "")
	var r struct {
		Ready   bool
		Reasons []string
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || json.Unmarshal(body, &r) != nil || r.Ready ||
		len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "handler line") || !strings.Contains(r.Reasons[0], "TRANSIENT_FAILURE") {
		t.Errorf("readyz with the handler down: %d %s", resp.StatusCode, body)
	}
	ch.set("CONNECTING")
	if resp, body := f.get(t, "/readyz", "", ""); resp.StatusCode != 200 {
		t.Errorf("readyz while connecting: %d %s", resp.StatusCode, body)
	}
}

func TestClose(t *testing.T) {
	f := newFixture(t, nil)
	if err := f.api.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.api.Close(); err != nil {
		t.Fatal(err)
	}
}

// dialClient connects a device to f's listener and authenticates it as id.
func (f *fixture) dialClient(t *testing.T, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(id + "\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.gw.ClientConn(id) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s not authenticated", id)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	return c
}

func TestTraceServerSentEvents(t *testing.T) {
	f := newFixture(t, nil)
	dev := f.dialClient(t, "sse-1")
	req, err := http.NewRequest("GET", f.url+"/api/v1/trace?clientid=sse-1&payload=2&duration=1m", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("trace: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	dev.Write([]byte("ping"))
	// Read the echo first: closing with it unread would reset.
	dev.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(dev, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	var events []traceEventJSON
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		var ev traceEventJSON
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	var seq []string
	for _, ev := range events {
		seq = append(seq, ev.Kind+" "+ev.Name)
	}
	want := "callback on_received_bytes, call send, return on_received_bytes, callback on_socket_closed, return on_socket_closed, end closed"
	if got := strings.Join(seq, ", "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	if ev := events[0]; ev.Payload != "7069" || ev.Size != 4 || ev.ClientID != "sse-1" {
		t.Errorf("first event %+v, want 4 bytes, payload 7069", ev)
	}
	if ev := events[len(events)-1]; ev.Reason != gateway.ReasonTCPClosed {
		t.Errorf("end %+v, want reason %s", ev, gateway.ReasonTCPClosed)
	}
	if n := f.api.NumTraces(); n != 0 {
		t.Errorf("%d traces still running", n)
	}
}

func TestTracesAreBounded(t *testing.T) {
	f := newFixture(t, nil)
	f.api.cfg.MaxTraces = 1
	f.dialClient(t, "a")
	f.dialClient(t, "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url+"/api/v1/trace?clientid=a", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if r, body := f.get(t, "/api/v1/trace?clientid=b", "", ""); r.StatusCode != 429 {
		t.Errorf("second trace: %d %s, want 429", r.StatusCode, body)
	}
	// A trace ends by itself after its duration.
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for f.api.NumTraces() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("canceled trace still counted")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	r, err := http.Get(f.url + "/api/v1/trace?clientid=b&duration=50ms")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(body), `"name":"trace_duration_elapsed"`) {
		t.Errorf("short trace: %s", body)
	}
}

// TestHugePageRefused: a page whose offset would wrap around is a 400,
// not page 1 again.
func TestHugePageRefused(t *testing.T) {
	f := newFixture(t, nil)
	for _, q := range []string{"page=9223372036854775807&limit=2", "page=1152921504606846977&limit=16"} {
		resp, body := f.get(t, "/api/v1/clients?"+q, "", "")
		if resp.StatusCode != 400 || !strings.Contains(string(body), `"page: `) {
			t.Errorf("%s: %d %s", q, resp.StatusCode, body)
		}
	}
}
