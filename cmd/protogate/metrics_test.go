package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/internal/jsonhandler"
	jp "github.com/protogate/protogate/internal/jsonproto"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// adminGet GETs path on r's admin API with the test key and returns the
// answer.
func adminGet(t *testing.T, r *running, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+r.admin.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ops", "s3cret")
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

// serveJSONHandler serves the reference gRPC handler on ln, calling r's
// adapter, until the returned function stops it.
func serveJSONHandler(t *testing.T, r *running, ln net.Listener) (stop func()) {
	t.Helper()
	cc, err := grpc.NewClient(r.adapter.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	jsonhandler.New(pb.NewConnectionAdapterClient(cc), nil).Register(gs)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(ln) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			gs.Stop()
			<-done
			cc.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

// jsonDevice is a device speaking the JSON test protocol.
type jsonDevice struct {
	t   *testing.T
	nc  net.Conn
	dec *jp.Decoder
}

func dialJSON(t *testing.T, network, addr string) *jsonDevice {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &jsonDevice{t: t, nc: nc, dec: jp.NewDecoder(0)}
}

// call sends f and returns the next frame.
func (d *jsonDevice) call(f jp.Frame) jp.Frame {
	d.t.Helper()
	d.nc.SetDeadline(time.Now().Add(wait))
	if _, err := d.nc.Write(jp.AppendLine(nil, f)); err != nil {
		d.t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		g, ok, err := d.dec.Next()
		if err != nil {
			d.t.Fatal(err)
		}
		if ok {
			return g
		}
		n, err := d.nc.Read(buf)
		if err != nil {
			d.t.Fatalf("read: %v", err)
		}
		d.dec.Feed(buf[:n])
	}
}

func (d *jsonDevice) connect(clientID string) {
	d.t.Helper()
	if f := d.call(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "p", ProtoVer: "1", ClientID: clientID}}); f.Type != jp.Connack || f.Code != 0 {
		d.t.Fatalf("connect %s: %+v", clientID, f)
	}
}

// opsYAML is the admin block with the test key.
const opsYAML = `admin: {bind: "127.0.0.1:0", api_keys: [{key: ops, secret: s3cret}]}
`

// TestMetricsScrape serves traffic on 4 listeners of 3 handlers (both back
// ends) and checks the scrape: the series expected are there with values
// that follow the traffic, labels carry no client id, address or topic,
// the whole stays under 1,000 series, and promtool accepts it.
func TestMetricsScrape(t *testing.T) {
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
node: {name: metrics-test, data_dir: ` + sharedDataDir + `}
broker: {nats_listen: "127.0.0.1:0"}
adapter: {bind: "127.0.0.1:0"}
` + opsYAML + `
handlers:
  echo: {wasm: {path: "builtin:echo", call_timeout: 5s}}
  json: {wasm: {path: "builtin:exproto-json", call_timeout: 5s}}
  remote: {grpc: {address: "http://` + hln.Addr().String() + `", timeout: 10s}}
  lane: {grpc: {address: "` + startNativeGuest(t, "echo") + `", service_name: protogate.v1.StreamHandler, timeout: 10s}}
listeners:
  - {name: echo-tcp, type: tcp, bind: "127.0.0.1:0", handler: echo}
  - {name: json-tcp, type: tcp, bind: "127.0.0.1:0", handler: json, max_connections: 100}
  - {name: json-udp, type: udp, bind: "127.0.0.1:0", handler: json}
  - {name: remote-tcp, type: tcp, bind: "127.0.0.1:0", handler: remote}
  - {name: lane-tcp, type: tcp, bind: "127.0.0.1:0", handler: lane}
`))
	if err != nil {
		t.Fatal(err)
	}
	// (The Wasm handlers' call_timeout is 5s, not 100ms: a loaded machine
	// running -race can take longer than that for one callback.)
	r := startRun(t, cfg)
	serveJSONHandler(t, r, hln)

	for _, l := range []string{"echo-tcp", "lane-tcp"} {
		echo, err := net.DialTimeout("tcp", r.listeners[l].String(), wait)
		if err != nil {
			t.Fatal(err)
		}
		defer echo.Close()
		echo.SetDeadline(time.Now().Add(wait))
		echo.Write([]byte("hello\n"))
		if line, err := bufio.NewReader(echo).ReadString('\n'); err != nil || line != "hello\n" {
			t.Fatalf("%s: %q %v", l, line, err)
		}
	}
	secret := map[string]bool{} // strings no label may carry
	for _, dev := range []struct{ network, listener, clientID string }{
		{"tcp", "json-tcp", "secret-client-1"},
		{"udp", "json-udp", "secret-client-2"},
		{"tcp", "remote-tcp", "secret-client-3"},
	} {
		d := dialJSON(t, dev.network, r.listeners[dev.listener].String())
		d.connect(dev.clientID)
		topic := "secret-topic/" + dev.clientID
		if f := d.call(jp.Frame{Type: jp.Publish, Topic: topic, Payload: "x"}); f.Type != jp.Puback || f.Code != 0 {
			t.Fatalf("%s publish: %+v", dev.listener, f)
		}
		secret[dev.clientID], secret[topic], secret[d.nc.LocalAddr().String()] = true, true, true
	}

	// A callback is counted when it returns, which can be after the
	// device has its answer (sent during the callback), and a write when
	// it is done: scrape until the counts catch up with the traffic.
	type expect struct {
		series string
		min    float64
	}
	expects := []expect{
		{`protogate_connections{listener="echo-tcp"}`, 1},
		{`protogate_connections_accepted_total{listener="json-udp"}`, 1},
		{`protogate_listener_max_connections{listener="json-tcp"}`, 100},
		{`protogate_listener_up{listener="remote-tcp"}`, 1},
		{`protogate_received_bytes_total{listener="echo-tcp"}`, 6},
		{`protogate_sent_bytes_total{listener="echo-tcp"}`, 6},
		{`protogate_messages_published_total{listener="remote-tcp"}`, 1},
		{`protogate_clients`, 3},
		{`protogate_handler_callbacks_total{backend="wasm",callback="on_received_bytes",handler="echo",outcome="ok"}`, 1},
		{`protogate_handler_callbacks_total{backend="grpc",callback="on_socket_created",handler="remote",outcome="ok"}`, 1},
		{`protogate_handler_callback_duration_seconds_count{backend="grpc",callback="on_received_bytes",handler="remote"}`, 2},
		{`protogate_handler_callback_duration_seconds_bucket{backend="wasm",callback="on_received_bytes",handler="json",le="+Inf"}`, 2},
		{`protogate_adapter_requests_total{code="SUCCESS",rpc="publish"}`, 3},
		{`protogate_adapter_requests_total{code="SUCCESS",rpc="authenticate"}`, 3},
		{`protogate_handler_up{handler="remote"}`, 1},
		{`protogate_lane_streams_total{handler="lane"}`, 1},
		{`protogate_lane_unknown_results_total{handler="lane"}`, 0},
		{`protogate_handler_callbacks_total{backend="grpc",callback="on_received_bytes",handler="lane",outcome="ok"}`, 1},
		{`protogate_wasm_instances{handler="json"}`, 1},
		{`protogate_ready`, 1},
		{`protogate_nats_connections`, 1},
		{`go_goroutines`, 1},
	}
	var body []byte
	var series int
	var missing []string
	deadline := time.Now().Add(wait)
	for {
		var resp *http.Response
		resp, body = adminGet(t, r, "/metrics")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("scrape: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		series = 0
		values := map[string]float64{}
		for line := range strings.Lines(string(body)) {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			series++
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			values[line[:i]] = v
		}
		missing = missing[:0]
		for _, e := range expects {
			if v, ok := values[e.series]; !ok || v < e.min {
				missing = append(missing, fmt.Sprintf("%s = %v (present %v), want >= %v", e.series, v, ok, e.min))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	for _, m := range missing {
		t.Error(m)
	}
	for line := range strings.Lines(string(body)) {
		for s := range secret {
			if strings.Contains(line, s) {
				t.Errorf("series %q carries %q", strings.TrimSpace(line), s)
			}
		}
	}
	t.Logf("%d series", series)
	if series >= 1000 {
		t.Errorf("%d series, want under 1,000", series)
	}
	if !regexp.MustCompile(`(?m)^protogate_wasm_module_info\{handler="echo",sha256="[0-9a-f]{12}",version="1"\} 1$`).Match(body) {
		t.Error("no protogate_wasm_module_info for echo")
	}
	if !bytes.Contains(body, []byte("process_resident_memory_bytes")) {
		t.Error("no process collector")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (scripts/deps.sh installs package prometheus); the scrape was not linted")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestReadinessFollowsGRPCHandler stops the gRPC handler: /readyz turns
// 503 naming it, and 200 again once the handler is back.
func TestReadinessFollowsGRPCHandler(t *testing.T) {
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	haddr := hln.Addr().String()
	cfg, err := config.Parse([]byte(`
node: {data_dir: ` + sharedDataDir + `}
adapter: {bind: "127.0.0.1:0"}
` + opsYAML + `
handlers:
  remote: {grpc: {address: "http://` + haddr + `", timeout: 10s}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: remote}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	stop := serveJSONHandler(t, r, hln)

	// readyz polls until it answers want, and returns the last answer.
	readyz := func(want int) []byte {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			resp, err := http.Get("http://" + r.admin.String() + "/readyz") // no credentials: probes have none
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				if want == 503 && resp.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz: %d %s, want %d", resp.StatusCode, b, want)
			}
			time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
		}
	}
	readyz(200)
	d := dialJSON(t, "tcp", r.listeners["l"].String())
	d.connect("ready-1")

	stop()
	var down struct {
		Ready   bool     `json:"ready"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal(readyz(503), &down); err != nil || down.Ready || len(down.Reasons) != 1 ||
		!strings.Contains(down.Reasons[0], "handler remote") || !strings.Contains(down.Reasons[0], "TRANSIENT_FAILURE") {
		t.Errorf("not ready answer: %+v %v", down, err)
	}
	if _, b := adminGet(t, r, "/api/v1/status"); !bytes.Contains(b, []byte(`"ready":false`)) {
		t.Errorf("status while down: %s", b)
	}

	ln, err := net.Listen("tcp", haddr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", haddr, err)
	}
	serveJSONHandler(t, r, ln)
	readyz(200)
	d2 := dialJSON(t, "tcp", r.listeners["l"].String())
	d2.connect("ready-2")
}
