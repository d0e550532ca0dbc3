package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Answers of the fake admin API, in the shapes of the admin API contract.
const (
	statusJSON = `{"node":"protogate@gw1","version":"v0.3.0 (abc1234)","started_at":"2026-12-01T10:00:00.123Z","uptime_seconds":3725,"ready":false,` +
		`"reasons":["handler echo: grpc channel TRANSIENT_FAILURE"],"connections":3,"clients":2}`
	listenersJSON = `{"data":[` +
		`{"name":"tcp","type":"tcp","bind":"0.0.0.0:7993","address":"0.0.0.0:7993","handler":"echo","running":true,"current_connections":3,"max_connections":0,` +
		`"accepted":10,"refused":{"max_connections":1,"max_conn_rate":2,"access_denied":0,"handshake_failed":0,"proxy_protocol":0},` +
		`"recv_oct":100,"send_oct":200,"recv_msg":4,"send_msg":5,"datagrams_dropped":0},` +
		`{"name":"udp","type":"udp","bind":"127.0.0.1:0","address":"127.0.0.1:40001","handler":"lines","running":false,"current_connections":0,"max_connections":50000,` +
		`"accepted":0,"refused":{"max_connections":0,"max_conn_rate":0,"access_denied":0,"handshake_failed":0,"proxy_protocol":0},` +
		`"recv_oct":0,"send_oct":0,"recv_msg":0,"send_msg":0,"datagrams_dropped":7}]}`
	clientJSON = `{"clientid":"dev1","username":"u","conn":"00000000000000a1","node":"protogate@gw1","listener":"tcp","handler":"echo",` +
		`"backend":"wasm","proto_name":"demo","proto_ver":"1","ip_address":"127.0.0.1","port":40000,` +
		`"conn_state":"connected","connected":true,"created_at":"2026-12-01T10:00:01.000Z","connected_at":"2026-12-01T10:00:01.500Z",` +
		`"keepalive":60,"mountpoint":"","subscriptions_cnt":1,` +
		`"recv_oct":5,"send_oct":6,"recv_msg":1,"send_msg":2,"mqueue_len":0,"mqueue_dropped":0}`
	anonJSON = `{"clientid":"","username":"","conn":"00000000000000a2","node":"protogate@gw1","listener":"tcp","handler":"echo",` +
		`"backend":"wasm","proto_name":"","proto_ver":"","ip_address":"::1","port":40001,` +
		`"conn_state":"connecting","connected":false,"created_at":"2026-12-01T10:00:02.000Z","connected_at":null,` +
		`"keepalive":0,"mountpoint":"","subscriptions_cnt":0,` +
		`"recv_oct":0,"send_oct":0,"recv_msg":0,"send_msg":0,"mqueue_len":0,"mqueue_dropped":0}`
	clientsJSON       = `{"data":[` + clientJSON + `,` + anonJSON + `],"meta":{"page":1,"limit":2,"count":5,"hasnext":true}}`
	subscriptionsJSON = `[{"topic":"devices/dev1/cmd/#","qos":1,"nl":0,"rap":0,"rh":0},{"topic":"devices/dev1/cfg","qos":0,"nl":0,"rap":0,"rh":0}]`
	handlersJSON      = `{"data":[` +
		`{"name":"echo","backend":"wasm+grpc","ready":true,"reason":"",` +
		`"grpc":{"address":"127.0.0.1:9001","service":"ConnectionUnaryHandler","state":"READY"},` +
		`"wasm":{"module":"builtin:echo","version":2,"sha256":"ab12","instances":2,"versions":1,"faults":1,"breaker":"closed","last_fault":"2026-12-01T10:00:03.000Z","last_error":"wasm: call timeout"},` +
		`"callbacks":{"total":100,"failed":1,"timeouts":1,"panics":0,"latency_seconds":{"p50":0.0001,"p90":0.0002,"p99":0.001}}},` +
		`{"name":"remote","backend":"grpc","ready":false,"reason":"grpc channel CONNECTING",` +
		`"grpc":{"address":"10.0.0.1:9001","service":"ConnectionHandler","state":"CONNECTING"},` +
		`"callbacks":{"total":0,"failed":0,"timeouts":0,"panics":0,"latency_seconds":{"p50":0,"p90":0,"p99":0}}}]}`
	reloadJSON = `{"name":"echo","result":"ok","version":3,"sha256":"cd34"}`
)

// traceLines are the events the fake trace serves, one JSON line each.
var traceLines = []string{
	`{"time":"2026-12-01T10:00:00.001Z","conn":"00000000000000a1","clientid":"dev1","kind":"callback","name":"OnReceivedBytes","size":5,"code":"SUCCESS","error":"","duration_us":12,"payload":"50494e47"}`,
	`{"time":"2026-12-01T10:00:00.002Z","conn":"00000000000000a1","clientid":"dev1","kind":"call","name":"Publish","size":4,"code":"SUCCESS","error":"","duration_us":30,"topic":"t/1"}`,
	`{"time":"2026-12-01T10:00:00.003Z","conn":"00000000000000a1","clientid":"dev1","kind":"call","name":"Send","size":5,"code":"UNKNOWN","error":"closed","duration_us":1500}`,
}

// fakeRequest is what the fake admin API saw of one request.
type fakeRequest struct {
	Method, Path, Query, Body string // Path escaped, as sent
	Vars                      map[string]string
	Accept                    string
	User, Password            string // HTTP Basic credentials, if any
}

// fakeAdmin serves the admin API contract with fixed answers and records
// the requests.
type fakeAdmin struct {
	*httptest.Server
	key, secret string // the credentials it requires, when key is set

	mu   sync.Mutex
	reqs []fakeRequest
	// trace serves GET /api/v1/trace; default: the events of traceLines,
	// then the stream stays open until the client goes.
	trace       http.HandlerFunc
	traceClosed chan struct{} // closed when a trace's client has gone
}

func newFakeAdmin(t *testing.T, tlsServer bool) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{traceClosed: make(chan struct{})}
	mux := http.NewServeMux()
	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if status == http.StatusNoContent {
				w.WriteHeader(status)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	notFound := func(what string) http.HandlerFunc {
		return answer(http.StatusNotFound, `{"code":"NOT_FOUND","message":"`+what+` not found"}`)
	}
	client := func(ok http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			switch id := r.PathValue("id"); id {
			case "dev1", "00000000000000a1", "dev/1 #x":
				ok(w, r)
			default:
				notFound("client "+id)(w, r)
			}
		}
	}
	mux.HandleFunc("GET /api/v1/status", answer(200, statusJSON))
	mux.HandleFunc("GET /api/v1/listeners", answer(200, listenersJSON))
	mux.HandleFunc("GET /api/v1/clients", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("limit") == "0" {
			answer(400, `{"code":"BAD_REQUEST","message":"limit: must be 1..10000"}`)(w, r)
			return
		}
		answer(200, clientsJSON)(w, r)
	})
	mux.HandleFunc("GET /api/v1/clients/{id}", client(answer(200, clientJSON)))
	mux.HandleFunc("DELETE /api/v1/clients/{id}", client(answer(204, "")))
	mux.HandleFunc("GET /api/v1/clients/{id}/subscriptions", client(answer(200, subscriptionsJSON)))
	mux.HandleFunc("POST /api/v1/clients/{id}/subscriptions", client(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Topic string `json:"topic"`
			QoS   int    `json:"qos"`
		}
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		if json.Unmarshal(b, &body) != nil || body.Topic == "" {
			answer(400, `{"code":"BAD_REQUEST","message":"topic: missing"}`)(w, r)
			return
		}
		sub, _ := json.Marshal(apiSubscription{Topic: "devices/dev1/" + body.Topic, QoS: body.QoS})
		answer(201, string(sub))(w, r)
	}))
	mux.HandleFunc("DELETE /api/v1/clients/{id}/subscriptions/{topic}", client(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("topic") == "nope" {
			notFound("subscription nope")(w, r)
			return
		}
		answer(204, "")(w, r)
	}))
	mux.HandleFunc("GET /api/v1/handlers", answer(200, handlersJSON))
	mux.HandleFunc("POST /api/v1/handlers/{name}/reload", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("name") {
		case "echo":
			answer(200, reloadJSON)(w, r)
		case "remote":
			answer(400, `{"code":"BAD_REQUEST","message":"handler remote has no wasm module to reload"}`)(w, r)
		case "broken":
			answer(500, `{"code":"RELOAD_FAILED","message":"broken.wasm: not a WebAssembly module"}`)(w, r)
		default:
			notFound("handler "+r.PathValue("name"))(w, r)
		}
	})
	mux.HandleFunc("GET /api/v1/trace", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		trace, closed := f.trace, f.traceClosed
		f.mu.Unlock()
		if trace != nil {
			trace(w, r)
			return
		}
		if r.URL.Query().Get("clientid") == "nobody" {
			notFound("client nobody")(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, l := range traceLines {
			io.WriteString(w, l+"\n")
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
		close(closed)
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := fakeRequest{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Accept: r.Header.Get("Accept")}
		req.User, req.Password, _ = r.BasicAuth()
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			req.Body = string(b)
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		if f.key != "" && (req.User != f.key || req.Password != f.secret) {
			w.Header().Set("WWW-Authenticate", `Basic realm="protogate"`)
			answer(401, `{"code":"UNAUTHORIZED","message":"missing or wrong api key"}`)(w, r)
		} else {
			mux.ServeHTTP(w, r)
		}
		// The wildcards that matched, unescaped.
		req.Vars = map[string]string{}
		for _, name := range []string{"id", "topic", "name"} {
			if v := r.PathValue(name); v != "" {
				req.Vars[name] = v
			}
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
	})
	f.Server = httptest.NewUnstartedServer(h)
	if tlsServer {
		// The handshakes a test makes fail on purpose.
		f.Config.ErrorLog = log.New(io.Discard, "", 0)
		f.StartTLS()
	} else {
		f.Start()
	}
	t.Cleanup(f.Close)
	return f
}

// last returns the last request the fake served.
func (f *fakeAdmin) last(t *testing.T) fakeRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeAdmin) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// ctl runs "protogate ctl" with args (after --addr of the fake) and the
// environment env, and returns its exit code, stdout and stderr.
func (f *fakeAdmin) ctl(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cmdCtl(context.Background(), append([]string{"--addr", f.URL}, args...), &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

// setTrace sets the trace handler and a fresh traceClosed, and returns it.
func (f *fakeAdmin) setTrace(h http.HandlerFunc) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trace, f.traceClosed = h, make(chan struct{})
	return f.traceClosed
}

// lines joins lines, each ended by "\n".
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func TestCtlCommands(t *testing.T) {
	f := newFakeAdmin(t, false)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // the whole output, if not ""
		has    []string
		stderr string // the whole of stderr, if not ""
		req    *fakeRequest
	}{
		{name: "status", args: []string{"status"}, stdout: lines(
			"node         protogate@gw1",
			"version      v0.3.0 (abc1234)",
			"started      2026-12-01T10:00:00.123Z",
			"uptime       1h2m5s",
			"ready        no",
			"             handler echo: grpc channel TRANSIENT_FAILURE",
			"connections  3",
			"clients      2",
		), req: &fakeRequest{Method: "GET", Path: "/api/v1/status", Accept: "application/json"}},
		{name: "listeners", args: []string{"listeners"}, stdout: lines(
			"NAME  TYPE  ADDRESS          HANDLER  RUNNING  CONNS  MAX    ACCEPTED  REFUSED  RECV_OCT  SEND_OCT  RECV_MSG  SEND_MSG  DROPPED",
			"tcp   tcp   0.0.0.0:7993     echo     yes      3      -      10        3        100       200       4         5         0",
			"udp   udp   127.0.0.1:40001  lines    no       0      50000  0         0        0         0         0         0         7",
		), req: &fakeRequest{Method: "GET", Path: "/api/v1/listeners"}},
		{name: "clients", args: []string{"clients"}, stdout: lines(
			"CLIENTID  USERNAME  CONN              LISTENER  HANDLER  PEER             STATE       CREATED                   SUBS  RECV_OCT  SEND_OCT  RECV_MSG  SEND_MSG",
			"dev1      u         00000000000000a1  tcp       echo     127.0.0.1:40000  connected   2026-12-01T10:00:01.000Z  1     5         6         1         2",
			"-         -         00000000000000a2  tcp       echo     [::1]:40001      connecting  2026-12-01T10:00:02.000Z  0     0         0         0         0",
			"page 1 of 3 (5 clients); next: --page 2",
		), req: &fakeRequest{Method: "GET", Path: "/api/v1/clients"}},
		{name: "clients filters", args: []string{"clients", "--clientid", "dev1", "--like-clientid", "de", "--username", "u", "--like-username", "x y",
			"--ip", "::1", "--conn-state", "connected", "--listener", "tcp", "--handler", "echo", "--page", "2", "--limit", "50"},
			req: &fakeRequest{Method: "GET", Path: "/api/v1/clients",
				Query: "clientid=dev1&conn_state=connected&handler=echo&ip_address=%3A%3A1&like_clientid=de&like_username=x+y&limit=50&listener=tcp&page=2&username=u"}},
		{name: "clients flags anywhere", args: []string{"--json", "clients", "--limit", "2", "--timeout", "5s"}, stdout: indent(t, clientsJSON),
			req: &fakeRequest{Method: "GET", Path: "/api/v1/clients", Query: "limit=2"}},
		{name: "clients bad limit", args: []string{"clients", "--limit", "0"}, code: 1,
			stderr: "protogate ctl: limit: must be 1..10000 (BAD_REQUEST, HTTP 400)\n"},
		{name: "client", args: []string{"client", "dev1"}, has: []string{"clientid        dev1\n", "peer            127.0.0.1:40000\n", "connected       2026-12-01T10:00:01.500Z\n", "keepalive       1m0s\n", "mountpoint      -\n", "handler         echo (wasm)\n"},
			req: &fakeRequest{Method: "GET", Path: "/api/v1/clients/dev1", Vars: map[string]string{"id": "dev1"}}},
		{name: "client by handle json", args: []string{"client", "--json", "00000000000000a1"}, stdout: indent(t, clientJSON)},
		{name: "client escaped", args: []string{"client", "dev/1 #x"}, has: []string{"clientid        dev1\n"},
			req: &fakeRequest{Method: "GET", Path: "/api/v1/clients/dev%2F1%20%23x", Vars: map[string]string{"id": "dev/1 #x"}}},
		{name: "client not found", args: []string{"client", "dev9"}, code: 1, stdout: "-",
			stderr: "protogate ctl: client dev9 not found (NOT_FOUND, HTTP 404)\n"},
		{name: "kick", args: []string{"kick", "dev1"}, stdout: "kicked dev1\n",
			req: &fakeRequest{Method: "DELETE", Path: "/api/v1/clients/dev1", Vars: map[string]string{"id": "dev1"}}},
		{name: "kick json", args: []string{"kick", "dev1", "--json"}, stdout: "-"},
		{name: "kick not found", args: []string{"kick", "dev9"}, code: 1, stderr: "protogate ctl: client dev9 not found (NOT_FOUND, HTTP 404)\n"},
		{name: "subscriptions", args: []string{"subscriptions", "dev1"}, stdout: lines(
			"TOPIC               QOS  NL  RAP  RH",
			"devices/dev1/cmd/#  1    0   0    0",
			"devices/dev1/cfg    0    0   0    0",
		), req: &fakeRequest{Method: "GET", Path: "/api/v1/clients/dev1/subscriptions"}},
		{name: "subscribe", args: []string{"subscribe", "dev1", "cmd/+", "--qos", "1"}, stdout: "subscribed dev1 to devices/dev1/cmd/+ (qos 1)\n",
			req: &fakeRequest{Method: "POST", Path: "/api/v1/clients/dev1/subscriptions", Body: `{"topic":"cmd/+","qos":1}`, Vars: map[string]string{"id": "dev1"}}},
		{name: "subscribe json", args: []string{"--json", "subscribe", "--qos", "2", "dev1", "a"}, stdout: indent(t, `{"topic":"devices/dev1/a","qos":2,"nl":0,"rap":0,"rh":0}`),
			req: &fakeRequest{Method: "POST", Path: "/api/v1/clients/dev1/subscriptions", Body: `{"topic":"a","qos":2}`, Vars: map[string]string{"id": "dev1"}}},
		{name: "subscribe after --", args: []string{"subscribe", "dev1", "--", "-x"}, stdout: "subscribed dev1 to devices/dev1/-x (qos 0)\n"},
		{name: "unsubscribe", args: []string{"unsubscribe", "dev1", "a/b/#"}, stdout: "unsubscribed dev1 from a/b/#\n",
			req: &fakeRequest{Method: "DELETE", Path: "/api/v1/clients/dev1/subscriptions/a%2Fb%2F%23", Vars: map[string]string{"id": "dev1", "topic": "a/b/#"}}},
		{name: "unsubscribe not found", args: []string{"unsubscribe", "dev1", "nope"}, code: 1, stderr: "protogate ctl: subscription nope not found (NOT_FOUND, HTTP 404)\n"},
		{name: "handlers", args: []string{"handlers"}, stdout: lines(
			"NAME    BACKEND    READY                         GRPC                      WASM                                                    CALLBACKS  FAILED  TIMEOUTS  PANICS  P50    P99",
			"echo    wasm+grpc  yes                           127.0.0.1:9001 READY      builtin:echo v2, 2 instances, breaker closed, 1 faults  100        1       1         0       100µs  1ms",
			"remote  grpc       no (grpc channel CONNECTING)  10.0.0.1:9001 CONNECTING  -                                                       0          0       0         0       0s     0s",
			"echo: last error: wasm: call timeout",
		), req: &fakeRequest{Method: "GET", Path: "/api/v1/handlers"}},
		{name: "reload", args: []string{"reload", "echo"}, stdout: "reloaded echo: ok, version 3, sha256 cd34\n",
			req: &fakeRequest{Method: "POST", Path: "/api/v1/handlers/echo/reload", Vars: map[string]string{"name": "echo"}}},
		{name: "reload grpc", args: []string{"reload", "remote"}, code: 1, stderr: "protogate ctl: handler remote has no wasm module to reload (BAD_REQUEST, HTTP 400)\n"},
		{name: "reload failed", args: []string{"reload", "broken"}, code: 1, stderr: "protogate ctl: broken.wasm: not a WebAssembly module (RELOAD_FAILED, HTTP 500)\n"},
		{name: "status json", args: []string{"status", "--json"}, stdout: indent(t, statusJSON)},

		// Usage errors: nothing is sent.
		{name: "no command", args: nil, code: 2, has: []string{}},
		{name: "unknown command", args: []string{"frob"}, code: 2, stderr: "protogate ctl: unknown command \"frob\"\nrun 'protogate ctl help' for usage\n"},
		{name: "missing argument", args: []string{"kick"}, code: 2, stderr: "protogate ctl: kick wants ID; got nothing\nrun 'protogate ctl help' for usage\n"},
		{name: "extra argument", args: []string{"status", "now"}, code: 2, stderr: "protogate ctl: status wants no arguments; got \"now\"\nrun 'protogate ctl help' for usage\n"},
		{name: "one topic too few", args: []string{"subscribe", "dev1"}, code: 2, stderr: "protogate ctl: subscribe wants ID TOPIC; got \"dev1\"\nrun 'protogate ctl help' for usage\n"},
		{name: "two names", args: []string{"reload", "a", "b c"}, code: 2, stderr: "protogate ctl: reload wants NAME; got \"a\" \"b c\"\nrun 'protogate ctl help' for usage\n"},
		{name: "empty id", args: []string{"client", ""}, code: 2},
		{name: "unknown flag", args: []string{"status", "--verbose"}, code: 2},
		{name: "flag of another command", args: []string{"status", "--qos", "1"}, code: 2},
		{name: "qos", args: []string{"subscribe", "dev1", "t", "--qos", "3"}, code: 2, stderr: "protogate ctl: --qos 3: want 0, 1 or 2\nrun 'protogate ctl help' for usage\n"},
		{name: "page", args: []string{"clients", "--page", "two"}, code: 2, stderr: "protogate ctl: --page \"two\" is not a number\nrun 'protogate ctl help' for usage\n"},
		{name: "duration", args: []string{"trace", "dev1", "--duration", "5"}, code: 2, stderr: "protogate ctl: --duration \"5\": want a duration such as 90s or 5m\nrun 'protogate ctl help' for usage\n"},
		{name: "key alone", args: []string{"--api-key", "ops", "status"}, code: 2},
		{name: "bad addr", args: []string{"--addr", "127.0.0.1:18083", "status"}, code: 2,
			stderr: "protogate ctl: --addr \"127.0.0.1:18083\" has no scheme; write \"http://127.0.0.1:18083\" (or https:// for TLS)\nrun 'protogate ctl help' for usage\n"},
		{name: "bad scheme", args: []string{"--addr", "ftp://h:1", "status"}, code: 2},
		{name: "cacert with http", args: []string{"--cacert", "ca.pem", "status"}, code: 2},
		{name: "help", args: []string{"help"}, has: []string{"usage: protogate ctl", "subscribe ID TOPIC [--qos N]", "$PROTOGATE_API_KEY"}},
		{name: "-h", args: []string{"-h"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count()
			code, stdout, stderr := f.ctl(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			switch tc.stdout {
			case "":
			case "-":
				if stdout != "" {
					t.Errorf("stdout = %q, want nothing", stdout)
				}
			default:
				if stdout != tc.stdout {
					t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tc.stdout)
				}
			}
			for _, h := range tc.has {
				if !strings.Contains(stdout, h) {
					t.Errorf("stdout does not contain %q:\n%s", h, stdout)
				}
			}
			if tc.stderr != "" && stderr != tc.stderr {
				t.Errorf("stderr = %q, want %q", stderr, tc.stderr)
			}
			if tc.code == 0 && stderr != "" && tc.name != "-h" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			sent := f.count() > before
			if tc.code == 2 && sent {
				t.Errorf("a usage error sent a request: %+v", f.last(t))
			}
			if w := tc.req; w != nil {
				if !sent {
					t.Fatal("no request sent")
				}
				got := f.last(t)
				if got.Method != w.Method || got.Path != w.Path || got.Query != w.Query || got.Body != w.Body || (w.Accept != "" && got.Accept != w.Accept) {
					t.Errorf("request %s %s?%s %s, want %s %s?%s %s", got.Method, got.Path, got.Query, got.Body, w.Method, w.Path, w.Query, w.Body)
				}
				for k, v := range w.Vars {
					if got.Vars[k] != v {
						t.Errorf("path value %s = %q, want %q", k, got.Vars[k], v)
					}
				}
				if got.User != "" {
					t.Errorf("credentials sent without a key: %q", got.User)
				}
			}
		})
	}
}

// indent returns the JSON s as --json prints it.
func indent(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(s), "", "  "); err != nil {
		t.Fatal(err)
	}
	return b.String() + "\n"
}

// TestCtlClientEscaping checks that ids and topics reach the server as one
// path segment each, whatever they hold.
func TestCtlClientEscaping(t *testing.T) {
	f := newFakeAdmin(t, false)
	c, err := newCtlClient(f.URL, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ topic, path string }{
		{"t/1", "t%2F1"},
		{"a/b/#", "a%2Fb%2F%23"},
		{"+/x/#", "+%2Fx%2F%23"},
		{"/lead", "%2Flead"},
		{"sp ace?q=1&%", "sp%20ace%3Fq=1&%25"},
		{"ü/€", "%C3%BC%2F%E2%82%AC"},
	} {
		if err := c.Unsubscribe(context.Background(), "dev/1 #x", tc.topic); err != nil {
			t.Errorf("Unsubscribe(%q): %v", tc.topic, err)
			continue
		}
		got := f.last(t)
		if want := "/api/v1/clients/dev%2F1%20%23x/subscriptions/" + tc.path; got.Path != want {
			t.Errorf("topic %q: path %s, want %s", tc.topic, got.Path, want)
		}
		if got.Vars["id"] != "dev/1 #x" || got.Vars["topic"] != tc.topic {
			t.Errorf("topic %q: the server read id %q, topic %q", tc.topic, got.Vars["id"], got.Vars["topic"])
		}
	}
}

func TestCtlAuth(t *testing.T) {
	f := newFakeAdmin(t, false)
	f.key, f.secret = "ops", "s3cret:with colon"
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"flags", map[string]string{}, []string{"--api-key", "ops", "--api-secret", "s3cret:with colon", "status"}, 0},
		{"flags after the command", map[string]string{}, []string{"status", "--api-key=ops", "--api-secret=s3cret:with colon"}, 0},
		{"env", map[string]string{envAPIKey: "ops", envAPISecret: "s3cret:with colon"}, []string{"status"}, 0},
		{"flags win over env", map[string]string{envAPIKey: "ci", envAPISecret: "other"}, []string{"--api-key", "ops", "--api-secret", "s3cret:with colon", "status"}, 0},
		{"secret from env", map[string]string{envAPISecret: "s3cret:with colon"}, []string{"--api-key", "ops", "status"}, 0},
		{"wrong secret", map[string]string{envAPIKey: "ops", envAPISecret: "nope"}, []string{"status"}, 1},
		{"none", map[string]string{}, []string{"status"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := f.ctl(t, tc.env, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, stdout, stderr)
			}
			got := f.last(t)
			if tc.code == 0 {
				if got.User != "ops" || got.Password != "s3cret:with colon" || !strings.Contains(stdout, "protogate@gw1") {
					t.Errorf("sent %q:%q; stdout %q", got.User, got.Password, stdout)
				}
				return
			}
			want := "protogate ctl: missing or wrong api key (UNAUTHORIZED, HTTP 401)\n" +
				"protogate ctl: give an admin.api_keys entry with --api-key and --api-secret, or $PROTOGATE_API_KEY and $PROTOGATE_API_SECRET\n"
			if stderr != want {
				t.Errorf("stderr = %q, want %q", stderr, want)
			}
		})
	}
}

// TestCtlErrors checks the errors that are not the API's, through
// protogate's command dispatch.
func TestCtlErrors(t *testing.T) {
	t.Setenv(envAPIKey, "")
	t.Setenv(envAPISecret, "")
	// An address nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := protogate([]string{"ctl", "--addr", addr, "status"}, &stdout, &stderr)
	if want := "protogate ctl: cannot reach the admin API at " + addr + " (is protogate running, with admin.bind at this address? --addr sets the address): "; code != 1 ||
		!strings.HasPrefix(stderr.String(), want) || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("exit %d, stderr %q; want exit 1 and %q...connection refused", code, stderr.String(), want)
	}

	// A server that does not answer in time, or answers what is not the
	// API's.
	release := make(chan struct{})
	defer close(release)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/status":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/api/v1/listeners":
			io.WriteString(w, "<html>hello</html>")
		default:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "upstream down\n")
		}
	}))
	defer slow.Close()
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--timeout", "100ms", "status"}, "protogate ctl: no answer within --timeout\n"},
		{[]string{"listeners"}, "protogate ctl: bad answer from " + slow.URL + "/api/v1/listeners: invalid character '<' looking for beginning of value\n"},
		{[]string{"handlers"}, "protogate ctl: upstream down (HTTP 502)\n"},
	} {
		stdout.Reset()
		stderr.Reset()
		code := protogate(append([]string{"ctl", "--addr", slow.URL}, tc.args...), &stdout, &stderr)
		if code != 1 || stderr.String() != tc.stderr {
			t.Errorf("%q: exit %d, stderr %q; want 1, %q", tc.args, code, stderr.String(), tc.stderr)
		}
	}
}

// TestCtlHTTPS checks --cacert against a server whose certificate only it
// vouches for.
func TestCtlHTTPS(t *testing.T) {
	f := newFakeAdmin(t, true)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
	if err := os.WriteFile(ca, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := f.ctl(t, nil, "--cacert", ca, "status")
	if code != 0 || !strings.Contains(stdout, "protogate@gw1") {
		t.Errorf("with --cacert: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = f.ctl(t, nil, "status")
	if code != 1 || !strings.Contains(stderr, "cannot reach the admin API at "+f.URL+": ") || !strings.Contains(stderr, "certificate") {
		t.Errorf("without --cacert: exit %d, stderr %q; want a certificate error", code, stderr)
	}
	code, _, stderr = f.ctl(t, nil, "--cacert", filepath.Join(t.TempDir(), "nope.pem"), "status")
	if code != 2 || !strings.Contains(stderr, "--cacert: open ") {
		t.Errorf("missing --cacert file: exit %d, stderr %q", code, stderr)
	}
}

func TestCtlTrace(t *testing.T) {
	f := newFakeAdmin(t, false)
	want := []string{
		"2026-12-01T10:00:00.001Z callback OnReceivedBytes size=5 code=SUCCESS 12µs payload=50494e47",
		"2026-12-01T10:00:00.002Z call Publish topic=t/1 size=4 code=SUCCESS 30µs",
		`2026-12-01T10:00:00.003Z call Send size=5 code=UNKNOWN error="closed" 1.5ms`,
	}
	for _, tc := range []struct {
		name  string
		args  []string
		query string
		want  []string
	}{
		{"human", []string{"trace", "dev1", "--payload", "4", "--duration", "90s", "--timeout", "1ms"}, "clientid=dev1&duration=90s&format=jsonl&payload=4", want},
		{"conn json", []string{"trace", "--json", "--conn", "00000000000000a1"}, "conn=00000000000000a1&format=jsonl", traceLines},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closed := f.setTrace(nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			var stderr bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- cmdCtl(ctx, append([]string{"--addr", f.URL}, tc.args...), pw, &stderr, func(string) string { return "" })
				pw.Close()
			}()
			sc := bufio.NewScanner(pr)
			for i, w := range tc.want {
				if !sc.Scan() {
					t.Fatalf("line %d: the output ended: %v; stderr %q", i, sc.Err(), stderr.String())
				}
				if sc.Text() != w {
					t.Errorf("line %d = %q, want %q", i, sc.Text(), w)
				}
			}
			// The stream stays open (past --timeout, which a trace
			// ignores) until ctl is interrupted.
			select {
			case code := <-done:
				t.Fatalf("ctl returned %d before it was interrupted", code)
			case <-time.After(50 * time.Millisecond):
			}
			cancel()
			go io.Copy(io.Discard, pr)
			select {
			case code := <-done:
				if code != 0 || stderr.Len() != 0 {
					t.Errorf("interrupted: exit %d, stderr %q; want 0 and nothing", code, stderr.String())
				}
			case <-time.After(wait):
				t.Fatal("ctl did not stop when interrupted")
			}
			select {
			case <-closed:
			case <-time.After(wait):
				t.Error("the server did not see the client go")
			}
			if got := f.last(t); got.Query != tc.query || got.Accept != "application/x-ndjson" {
				t.Errorf("query %q, Accept %q; want %q, application/x-ndjson", got.Query, got.Accept, tc.query)
			}
		})
	}

	t.Run("ends", func(t *testing.T) {
		// A stream that ends by itself (the connection closed), here as
		// server-sent events, as a server that ignores format might send.
		f.setTrace(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, ": hello\n\ndata: %s\n\n", traceLines[0])
			fmt.Fprintf(w, "data: %s\n\n", `{"time":"2026-12-01T10:00:01.000Z","conn":"00000000000000a1","clientid":"dev1","kind":"end","name":"OnSocketClosed","code":"SUCCESS","error":"normal"}`)
		})
		defer f.setTrace(nil)
		code, stdout, stderr := f.ctl(t, nil, "trace", "dev1")
		if code != 0 || stdout != lines(want[0], `2026-12-01T10:00:01.000Z end OnSocketClosed code=SUCCESS error="normal"`) {
			t.Errorf("exit %d, stdout:\n%s\nstderr %q", code, stdout, stderr)
		}
	})

	t.Run("not found", func(t *testing.T) {
		code, stdout, stderr := f.ctl(t, nil, "trace", "nobody")
		if code != 1 || stdout != "" || stderr != "protogate ctl: client nobody not found (NOT_FOUND, HTTP 404)\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})

	t.Run("too many", func(t *testing.T) {
		f.setTrace(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"code":"TOO_MANY_REQUESTS","message":"4 traces already run"}`)
		})
		defer f.setTrace(nil)
		code, _, stderr := f.ctl(t, nil, "trace", "dev1")
		if code != 1 || stderr != "protogate ctl: 4 traces already run (TOO_MANY_REQUESTS, HTTP 429)\n" {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}
