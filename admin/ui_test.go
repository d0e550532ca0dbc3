package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chromedp/chromedp"
	"golang.org/x/net/html"

	"github.com/protogate/protogate/internal/browser"
)

func TestUIHandler(t *testing.T) {
	h := uiHandler()
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
		body         string // a substring of the body
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"GET", "/index.html", 200, "text/html; charset=utf-8", "<!doctype html>"},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8", "api/v1/overview"},
		{"GET", "/style.css", 200, "text/css; charset=utf-8", ":root"},
		{"GET", "/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/nope.js", 404, "application/json", `"code":"NOT_FOUND"`},
		{"GET", "/ui/app.js", 404, "application/json", `"code":"NOT_FOUND"`},
		{"GET", "/api/v1/overview", 404, "application/json", `"code":"NOT_FOUND"`},
		{"POST", "/", 405, "application/json", `"code":"METHOD_NOT_ALLOWED"`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			res := rec.Result()
			if res.StatusCode != tc.status {
				t.Errorf("status %d, want %d", res.StatusCode, tc.status)
			}
			for k, want := range map[string]string{
				"Content-Type":            tc.contentType,
				"Content-Security-Policy": "default-src 'self'",
				"X-Content-Type-Options":  "nosniff",
				"Cache-Control":           "no-cache",
				"X-Frame-Options":         "DENY",
			} {
				if got := res.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			body, _ := io.ReadAll(res.Body)
			if !strings.Contains(string(body), tc.body) {
				t.Errorf("body has no %q:\n%.300s", tc.body, body)
			}
			if tc.method == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD: %d bytes of body", len(body))
			}
		})
	}
}

func TestUIHandlerRevalidates(t *testing.T) {
	h := uiHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/app.js", nil))
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req := httptest.NewRequest("GET", "/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", rec.Code)
	}
}

// uiGet returns the body of path as uiHandler serves it.
func uiGet(t *testing.T, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	uiHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d", path, rec.Code)
	}
	return rec.Body.String()
}

// TestUISameOriginOnly checks statically what the CSP enforces at run time
// (and what TestDashboardRendersOverview checks in a browser): the page loads
// nothing from another origin and has no inline script or style.
func TestUISameOriginOnly(t *testing.T) {
	index := uiGet(t, "/")
	z := html.NewTokenizer(strings.NewReader(index))
	var refs []string
	inScript := false
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if z.Err() != io.EOF {
				t.Fatalf("index.html: %v", z.Err())
			}
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			if tok.Data == "style" {
				t.Errorf("index.html: a <style> element (inline styles break under the CSP)")
			}
			inScript = tok.Data == "script"
			for _, a := range tok.Attr {
				switch {
				case a.Key == "style" || strings.HasPrefix(a.Key, "on"):
					t.Errorf("index.html: <%s %s=...> (inline style or script)", tok.Data, a.Key)
				case a.Key == "src" || a.Key == "href" || a.Key == "action" || a.Key == "srcset":
					refs = append(refs, a.Val)
					if !uiSameOrigin(a.Val) {
						t.Errorf("index.html: <%s %s=%q> is not a same-origin URL", tok.Data, a.Key, a.Val)
					}
				}
			}
		case html.TextToken:
			if inScript && strings.TrimSpace(tok.Data) != "" {
				t.Errorf("index.html: an inline script: %.80q", tok.Data)
			}
		case html.EndTagToken:
			inScript = false
		}
	}

	// Each file the page loads is served; links to the API are the API's.
	for _, ref := range refs {
		switch ref {
		case "metrics", "api/v1/openapi.json":
			continue
		}
		uiGet(t, "/"+ref)
	}
	for _, want := range []string{"app.js", "style.css", "metrics", "api/v1/openapi.json"} {
		if !slices.Contains(refs, want) {
			t.Errorf("index.html does not reference %s", want)
		}
	}

	// app.js and style.css name no other origin. The SVG namespace name is
	// an identifier, never fetched.
	absolute := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.\[-]`)
	for _, name := range []string{"/app.js", "/style.css"} {
		src := uiGet(t, name)
		for i, line := range strings.Split(src, "\n") {
			line = strings.ReplaceAll(line, `'http://www.w3.org/2000/svg'`, "")
			code, _, _ := strings.Cut(line, " // ") // a trailing comment
			if strings.HasPrefix(strings.TrimSpace(code), "//") || strings.HasPrefix(strings.TrimSpace(code), "/*") {
				continue
			}
			for _, m := range absolute.FindAllStringIndex(code, -1) {
				// "//" right after a quote, "(" or "=" starts a URL; elsewhere
				// it is a comment or a regular expression.
				if j := m[0]; strings.HasPrefix(code[j:], "http") || (j > 0 && strings.ContainsAny(code[j-1:j], "'\"`(=")) {
					t.Errorf("%s:%d: a URL of another origin: %s", name, i+1, strings.TrimSpace(line))
				}
			}
		}
		if strings.Contains(src, "new EventSource") {
			t.Errorf("%s uses EventSource (it cannot be relied on to send Basic credentials)", name)
		}
		for _, bad := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s uses %s (API values go in as text)", name, bad)
			}
		}
	}
}

// uiSameOrigin reports whether ref, a URL in the page, resolves to the
// page's own origin.
func uiSameOrigin(ref string) bool {
	base, _ := url.Parse("http://gateway.test/")
	u, err := base.Parse(ref)
	return err == nil && !strings.HasPrefix(ref, "//") && u.Scheme == base.Scheme && u.Host == base.Host
}

// dashAPI is a fake of the admin API for TestDashboardRendersOverview: the
// spec's shapes (/tmp/pg/api-spec.md, "GET /api/v1/overview" and the client
// and trace endpoints) with fixed values, and a record of what the page did.
type dashAPI struct {
	t *testing.T

	start time.Time

	mu      sync.Mutex
	ready   bool
	kicked  []string
	queries []url.Values // of GET /api/v1/clients

	traceAborted chan struct{} // closed when the page stops the trace
	traceOnce    sync.Once
}

const (
	dashConnDev1 = "00000000000000a1"
	dashConnAnon = "00000000000000b2"
)

func (a *dashAPI) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/overview", a.overview)
	mux.HandleFunc("GET /api/v1/clients", a.clients)
	mux.HandleFunc("GET /api/v1/clients/{id}/subscriptions", a.subscriptions)
	mux.HandleFunc("DELETE /api/v1/clients/{id}", a.kick)
	mux.HandleFunc("POST /api/v1/handlers/{name}/reload", a.reload)
	mux.HandleFunc("GET /api/v1/trace", a.trace)
}

func dashJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (a *dashAPI) overview(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ready := a.ready
	a.mu.Unlock()

	reasons := []string{}
	grpcState := "READY"
	if !ready {
		reasons = []string{"handler legacy: grpc channel TRANSIENT_FAILURE"}
		grpcState = "TRANSIENT_FAILURE"
	}
	msgs := int(10 * time.Since(a.start).Seconds()) // 10 msgs/s
	trap := "wasm trap: out of bounds memory access" + strings.Repeat(" at guest.handle_bytes (wasm-function[42])", 10)
	dashJSON(w, 200, map[string]any{
		"status": map[string]any{
			"node": "protogate@test", "version": "v0.9.0 (abc1234)", "started_at": "2026-12-01T10:00:00.000Z",
			"uptime_seconds": 3725, "ready": ready, "reasons": reasons, "connections": 3, "clients": 1,
		},
		"listeners": []any{map[string]any{
			"name": "tcp", "type": "tcp", "bind": "0.0.0.0:7993", "address": "0.0.0.0:7993", "handler": "echo",
			"running": true, "current_connections": 3, "max_connections": 1000, "accepted": 12,
			"refused":  map[string]any{"max_connections": 0, "max_conn_rate": 2, "access_denied": 1, "handshake_failed": 0, "proxy_protocol": 0},
			"recv_oct": 1 << 20, "send_oct": 2048, "recv_msg": msgs / 2, "send_msg": msgs / 2, "datagrams_dropped": 0,
		}},
		"handlers": []any{
			map[string]any{
				"name": "echo", "backend": "wasm+grpc", "ready": true, "reason": "",
				"grpc": map[string]any{"address": "127.0.0.1:9001", "service": "ConnectionUnaryHandler", "state": "READY"},
				"wasm": map[string]any{
					"module": "builtin:echo", "version": 2, "sha256": "ab12cd34ef56" + strings.Repeat("0", 52),
					"instances": 2, "versions": 1, "faults": 1, "breaker": "closed", "last_fault": trap, "last_error": "",
				},
				"callbacks": map[string]any{"total": 100, "failed": 1, "timeouts": 0, "panics": 0,
					"latency_seconds": map[string]any{"p50": 0.0001, "p90": 0.0002, "p99": 0.0012}},
			},
			map[string]any{
				"name": "legacy", "backend": "grpc", "ready": ready, "reason": strings.Join(reasons, ""),
				"grpc":      map[string]any{"address": "10.0.0.7:9001", "service": "ConnectionHandler", "state": grpcState},
				"callbacks": map[string]any{"total": 5, "failed": 0, "timeouts": 0, "panics": 0, "latency_seconds": map[string]any{"p50": 0.002, "p90": 0.003, "p99": 0.004}},
			},
			map[string]any{
				"name": "faulty", "backend": "wasm", "ready": true, "reason": "",
				"wasm": map[string]any{
					"module": "/etc/protogate/faulty.wasm", "version": 1, "sha256": strings.Repeat("f", 64),
					"instances": 0, "versions": 1, "faults": 5, "breaker": "open", "last_fault": "deadline exceeded", "last_error": "",
				},
				"callbacks": map[string]any{"total": 5, "failed": 5, "timeouts": 5, "panics": 0, "latency_seconds": map[string]any{"p50": 1.0, "p90": 1.0, "p99": 1.0}},
			},
		},
		"totals": map[string]any{"connections": 3, "recv_oct": 1 << 20, "send_oct": 2048, "recv_msg": msgs / 2, "send_msg": msgs / 2, "dropped": 0},
	})
}

func dashClient(conn, clientid, username string) map[string]any {
	state := "connected"
	var connectedAt any = "2026-12-01T10:00:01.000Z"
	if clientid == "" {
		state, connectedAt = "connecting", nil
	}
	return map[string]any{
		"clientid": clientid, "username": username, "conn": conn, "node": "protogate@test",
		"listener": "tcp", "handler": "echo", "backend": "wasm", "proto_name": "", "proto_ver": "",
		"ip_address": "127.0.0.1", "port": 40000, "conn_state": state, "connected": clientid != "",
		"created_at": "2026-12-01T10:00:00.123Z", "connected_at": connectedAt, "keepalive": 30,
		"mountpoint": "", "subscriptions_cnt": 1, "recv_oct": 5, "send_oct": 1500, "recv_msg": 1, "send_msg": 0,
		"mqueue_len": 0, "mqueue_dropped": 0,
	}
}

func (a *dashAPI) clients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a.mu.Lock()
	a.queries = append(a.queries, q)
	kicked := slices.Clone(a.kicked)
	a.mu.Unlock()
	if q.Get("limit") != "50" {
		dashJSON(w, 400, map[string]string{"code": "BAD_REQUEST", "message": "limit: want 50 from the dashboard"})
		return
	}
	data := []any{}
	for _, c := range []map[string]any{dashClient(dashConnDev1, "dev1", "alice"), dashClient(dashConnAnon, "", "")} {
		if slices.Contains(kicked, c["conn"].(string)) {
			continue
		}
		if like := q.Get("like_clientid"); like != "" && !strings.Contains(c["clientid"].(string), like) {
			continue
		}
		data = append(data, c)
	}
	dashJSON(w, 200, map[string]any{"data": data, "meta": map[string]any{"page": 1, "limit": 50, "hasnext": false}})
}

func (a *dashAPI) subscriptions(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != dashConnDev1 {
		dashJSON(w, 200, []any{})
		return
	}
	dashJSON(w, 200, []any{map[string]any{"topic": "devices/dev1/in", "qos": 0, "nl": 0, "rap": 0, "rh": 0}})
}

func (a *dashAPI) kick(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kicked = append(a.kicked, r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

func (a *dashAPI) reload(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("name") {
	case "echo":
		dashJSON(w, 200, map[string]any{"name": "echo", "result": "ok", "version": 3, "sha256": "9f86d081884c" + strings.Repeat("1", 52)})
	case "faulty":
		dashJSON(w, 500, map[string]string{"code": "RELOAD_FAILED", "message": "faulty.wasm: compile: invalid magic number"})
	default:
		dashJSON(w, 404, map[string]string{"code": "NOT_FOUND", "message": "no such handler"})
	}
}

// trace streams three events, then holds the stream open until the page
// aborts it.
func (a *dashAPI) trace(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("conn") != dashConnDev1 || q.Get("format") != "jsonl" || q.Get("payload") != "32" {
		dashJSON(w, 400, map[string]string{"code": "BAD_REQUEST", "message": "unexpected query " + r.URL.RawQuery})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	events := []map[string]any{
		{"time": "2026-12-01T10:00:02.001Z", "conn": dashConnDev1, "clientid": "dev1", "kind": "callback", "name": "OnReceivedBytes", "size": 5, "code": "SUCCESS", "error": "", "duration_us": 12, "payload": "50494e470a"},
		{"time": "2026-12-01T10:00:02.002Z", "conn": dashConnDev1, "clientid": "dev1", "kind": "call", "name": "Publish", "size": 5, "code": "SUCCESS", "error": "", "duration_us": 3, "topic": "devices/dev1/out"},
		{"time": "2026-12-01T10:00:02.003Z", "conn": dashConnDev1, "clientid": "dev1", "kind": "call", "name": "Send", "size": 5, "code": "PERMISSION_DENY", "error": "", "duration_us": 4},
	}
	enc := json.NewEncoder(w)
	for _, ev := range events {
		enc.Encode(ev)
		w.(http.Flusher).Flush()
	}
	select {
	case <-r.Context().Done():
		a.traceOnce.Do(func() { close(a.traceAborted) })
	case <-time.After(time.Minute):
		a.t.Errorf("trace: the page did not stop the stream")
	}
}

// TestDashboardRendersOverview is a unit test of the page, not of the admin
// server: a fake API serves fixed JSON in the shapes of the API spec next to
// the real uiHandler, and a headless Chromium proves that the page renders
// those shapes and calls the API as the spec says. The end-to-end test
// against a running gateway lives with the server.
func TestDashboardRendersOverview(t *testing.T) {
	api := &dashAPI{t: t, start: time.Now(), ready: true, traceAborted: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /", uiHandler())
	api.routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close) // after the browser's cleanup, which ends its requests

	s := browser.New(t) // skips without a browser

	// step runs actions with a deadline of its own, so that a failure names
	// the step instead of the session's overall timeout.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(s.Ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(s.Ctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	// until waits for a JavaScript condition: polls come every 2 s.
	until := func(what, js string) {
		t.Helper()
		step(what, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(8*time.Second)))
	}
	tid := func(id string) string { return fmt.Sprintf(`[data-testid=%q]`, id) }

	// The overview: status bar, listener row, handler rows.
	step("load", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS(tid("listener-tcp"))))
	if got := text(tid("ready")); got != "READY" {
		t.Errorf("ready: %q, want READY", got)
	}
	for sel, want := range map[string]string{
		tid("node"):   "protogate@test",
		tid("uptime"): "1h 2m",
		tid("listener-tcp") + " " + tid("address"):   "0.0.0.0:7993",
		tid("listener-tcp") + " " + tid("conns"):     "3 / 1,000",
		tid("listener-tcp") + " " + tid("refused"):   "3",
		tid("handler-echo") + " " + tid("state"):     "READY",
		tid("handler-echo") + " " + tid("module"):    "v2 ab12cd34ef56",
		tid("handler-echo") + " " + tid("callbacks"): "100 / 1",
		tid("handler-echo") + " " + tid("p99"):       "1.2 ms",
		tid("handler-faulty") + " " + tid("breaker"): "open",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	refusedTip, err := chromedp.Run(s.Ctx, chromedp.AttributeValue(chromedp.CSS(tid("listener-tcp")+" "+tid("refused")), "title"))
	if err != nil || !strings.Contains(refusedTip.Value, "max_conn_rate: 2") {
		t.Errorf("refused tooltip: %q, %v", refusedTip.Value, err)
	}
	if fault := text(tid("handler-echo") + " " + tid("last-fault")); utf8.RuneCountInString(fault) != 200 || !strings.HasSuffix(fault, "…") {
		t.Errorf("last fault not truncated to 200 characters: %d %q", utf8.RuneCountInString(fault), fault)
	}
	// A rate needs two polls. The fake counts 10 msgs/s; the page measures
	// time between the responses it gets, so allow for a loaded machine.
	until("msgs/s", `(document.querySelector('[data-testid="listener-tcp"] [data-testid="rate"]')?.textContent ?? '–') !== '–'`)
	if r, err := strconv.ParseFloat(text(tid("listener-tcp")+" "+tid("rate")), 64); err != nil || r < 3 || r > 30 {
		t.Errorf("msgs/s: %v, %v; want about 10", r, err)
	}

	// NOT READY turns the status red and names the reason.
	api.mu.Lock()
	api.ready = false
	api.mu.Unlock()
	until("not ready", `document.querySelector('[data-testid="ready"]')?.textContent === 'NOT READY'`)
	bg, err := chromedp.Run(s.Ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('[data-testid="ready"]')).backgroundColor`))
	if err != nil || bg != "rgb(207, 34, 46)" {
		t.Errorf("NOT READY background: %q, %v; want red", bg, err)
	}
	if got := text(tid("reasons")); got != "handler legacy: grpc channel TRANSIENT_FAILURE" {
		t.Errorf("reasons: %q", got)
	}
	if got := text(tid("handler-legacy") + " " + tid("reason")); got != "handler legacy: grpc channel TRANSIENT_FAILURE" {
		t.Errorf("handler reason: %q", got)
	}

	// Reload: a success shows the result, a failure shows the API error.
	step("reload echo", chromedp.Click(chromedp.CSS(tid("reload-echo"))))
	until("reload result", `document.querySelector('[data-testid="reload-result"]')?.textContent.includes('echo: ok, version 3, sha256 9f86d081884c')`)
	step("reload faulty", chromedp.Click(chromedp.CSS(tid("reload-faulty"))), chromedp.WaitVisible(chromedp.CSS(tid("error"))))
	if got := text(tid("error")); !strings.Contains(got, "RELOAD_FAILED: faulty.wasm: compile: invalid magic number") {
		t.Errorf("error: %q", got)
	}
	if disabled, err := chromedp.Run(s.Ctx, chromedp.JavascriptAttribute[bool](chromedp.CSS(tid("reload-legacy")), "disabled")); err != nil || !disabled {
		t.Errorf("Reload of a gRPC-only handler enabled (%v)", err)
	}

	// Clients: the first page lists every connection, a search narrows it.
	step("client list", chromedp.WaitVisible(chromedp.CSS(tid("client-row-"+dashConnAnon))))
	if got := text(tid("client-row-"+dashConnAnon) + " " + tid("client")); got != "(not authenticated) "+dashConnAnon {
		t.Errorf("unauthenticated client: %q", got)
	}
	step("search",
		chromedp.SendKeys(chromedp.CSS(tid("client-search-text")), "dev"),
		chromedp.Click(chromedp.CSS(tid("client-search-submit"))),
		chromedp.WaitNotPresent(chromedp.CSS(tid("client-row-"+dashConnAnon))),
		chromedp.WaitVisible(chromedp.CSS(tid("client-row-"+dashConnDev1))),
	)
	api.mu.Lock()
	last := api.queries[len(api.queries)-1]
	api.mu.Unlock()
	if last.Encode() != "like_clientid=dev&limit=50" {
		t.Errorf("search query: %s", last.Encode())
	}
	row := tid("client-row-" + dashConnDev1)
	for sel, want := range map[string]string{
		row + " " + tid("client"):   "dev1 " + dashConnDev1,
		row + " " + tid("username"): "alice",
		row + " " + tid("peer"):     "127.0.0.1:40000",
		row + " " + tid("state"):    "connected",
		row + " " + tid("created"):  "2026-12-01 10:00:00",
		row + " " + tid("out"):      "1.5 KiB",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}

	// The detail panel, then a trace of that client.
	step("detail", chromedp.Click(chromedp.CSS(row+" "+tid("username"))),
		chromedp.WaitVisible(chromedp.CSS(tid("subscription-devices/dev1/in"))))
	if got := text(tid("field-keepalive")); got != "30" {
		t.Errorf("detail keepalive: %q", got)
	}
	step("trace", chromedp.Click(chromedp.CSS(tid("trace-start"))))
	until("trace lines", `document.querySelectorAll('[data-testid="trace-line"]').length === 3`)
	lines, err := chromedp.Run(s.Ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('[data-testid="trace-line"]')].map((e) => [...e.children].map((c) => c.textContent).join('|'))`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10:00:02.001|callback|OnReceivedBytes|5|SUCCESS|12|50 49 4e 47 0a",
		"10:00:02.002|call|Publish|5|SUCCESS|3|topic devices/dev1/out",
		"10:00:02.003|call|Send|5|PERMISSION_DENY|4|",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("trace lines:\n%q\nwant\n%q", lines, want)
	}
	if got := text(tid("trace-state")); got != "streaming" {
		t.Errorf("trace state: %q", got)
	}
	s.Screenshot(t, "dashboard")

	step("stop trace", chromedp.Click(chromedp.CSS(tid("trace-stop"))))
	select {
	case <-api.traceAborted:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not abort the trace request")
	}
	if got := text(tid("trace-state")); got != "stopped" {
		t.Errorf("trace state: %q", got)
	}

	// Kick asks first, sends DELETE with the connection handle, and the row
	// goes when the list is loaded again.
	step("kick", chromedp.Click(chromedp.CSS(tid("kick-"+dashConnDev1))),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS(tid("clients-empty"))),
		chromedp.WaitNotVisible(chromedp.CSS(tid("client-detail"))),
	)
	api.mu.Lock()
	kicked := slices.Clone(api.kicked)
	api.mu.Unlock()
	if !slices.Equal(kicked, []string{dashConnDev1}) {
		t.Errorf("DELETEs: %q, want [%s]", kicked, dashConnDev1)
	}
	if d := s.Dialogs(); len(d) != 1 || !strings.HasPrefix(d[0], "Kick dev1 ("+dashConnDev1) {
		t.Errorf("dialogs: %q", d)
	}

	if errs := s.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	if reqs := s.ForeignRequests(); len(reqs) > 0 {
		t.Errorf("requests to other origins: %q", reqs)
	}
}
