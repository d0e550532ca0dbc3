package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

// suite is one run of every case.
type suite struct {
	opts    options
	tmp     string
	jsonl   io.Writer
	started time.Time
	machine string

	results map[string]*loadstat.Result // by case name
	mem     map[string]memResult        // by case name
	numbers map[string]float64          // the handlers and startup groups' (see startup.go)
	rows    []row
}

// memResult is what the suite measured of a server process's memory.
type memResult struct {
	BaseKiB   float64 `json:"base_kib"`
	PeakKiB   float64 `json:"peak_kib"`
	PerConnKB float64 `json:"per_conn_kib,omitempty"`
	At1MKiB   float64 `json:"at_1m_kib,omitempty"`
	GrowthMiB float64 `json:"growth_after_1m_mib,omitempty"`
	// The langs group: the idle gateway's RSS with 1 and with 9 instances
	// of the module, the difference per instance, and the module's size.
	RSS1KiB     float64 `json:"rss_1_instance_kib,omitempty"`
	RSS9KiB     float64 `json:"rss_9_instances_kib,omitempty"`
	PerInstKiB  float64 `json:"per_instance_kib,omitempty"`
	ModuleBytes int64   `json:"module_bytes,omitempty"`
}

// row is one line of the table.
type row struct {
	name, measured, baseline, ratio, target string
	met                                     string // "yes", "NO" or "" (no target)
}

var groups = []string{"echo", "scale", "langs", "remote", "udp", "hold", "handlers", "startup", "tls", "fanout", "cluster", "coap", "long"}

func knownGroup(g string) bool {
	for _, k := range groups {
		if k == g {
			return true
		}
	}
	return false
}

func (s *suite) binPath(name string) string {
	p, err := filepath.Abs(filepath.Join(s.opts.bin, name))
	if err != nil {
		return filepath.Join(s.opts.bin, name)
	}
	return p
}

// dur picks the full or the -quick length of a phase.
func (s *suite) dur(full, quick time.Duration) string {
	if s.opts.quick {
		return quick.String()
	}
	return full.String()
}

func (s *suite) n(full, quick int) string {
	if s.opts.quick {
		return strconv.Itoa(quick)
	}
	return strconv.Itoa(full)
}

func (s *suite) runAll(ctx context.Context) error {
	s.results = make(map[string]*loadstat.Result)
	s.mem = make(map[string]memResult)
	s.numbers = make(map[string]float64)
	steps := []struct {
		group string
		run   func(context.Context) error
	}{
		{"echo", s.echoCases},
		{"scale", s.scaleCases},
		{"langs", s.langCases},
		{"remote", s.remoteCases},
		{"udp", s.udpCases},
		{"hold", s.holdCases},
		{"handlers", s.handlersCases},
		{"startup", s.startupCases},
		{"tls", s.tlsCases},
		{"fanout", s.fanoutCases},
		{"cluster", s.clusterCases},
		{"coap", s.coapCases},
		{"long", s.longCase},
	}
	for _, st := range steps {
		if s.opts.only != nil && !s.opts.only[st.group] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("protogate-bench: %w", err)
		}
		fmt.Fprintf(os.Stderr, "protogate-bench: %s (%s elapsed)\n", st.group, time.Since(s.started).Round(time.Second))
		if err := st.run(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "protogate-bench: %s: %v\n", st.group, err)
			s.rows = append(s.rows, row{name: st.group, measured: "failed: " + err.Error(), met: "NO"})
		}
	}
	return nil
}

// record keeps a load result under a case name and appends it to the
// JSON lines file.
func (s *suite) record(name string, r *loadstat.Result, mem *memResult) {
	s.results[name] = r
	if mem != nil {
		s.mem[name] = *mem
	}
	line := struct {
		Case string `json:"case"`
		*loadstat.Result
		Mem *memResult `json:"mem,omitempty"`
	}{name, r, mem}
	b, _ := json.Marshal(line)
	s.jsonl.Write(append(b, '\n'))
}

// gateway writes a gateway config from body (YAML after the node, log and
// adapter blocks) and starts protogate with it.
func (s *suite) gateway(name, adapter, body string) (*proc, error) {
	return s.gatewayNode(name, "", adapter, body)
}

// gatewayNode is gateway with a node.name ("": the default).
func (s *suite) gatewayNode(name, node, adapter, body string) (*proc, error) {
	dir := filepath.Join(s.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("protogate-bench: %w", err)
	}
	if !strings.Contains(body, "admin:") {
		// The admin API on a port of its own, not the default 18083,
		// which another protogate on this machine may hold.
		ports, err := freePorts(1, false)
		if err != nil {
			return nil, err
		}
		body = fmt.Sprintf("admin:\n  bind: 127.0.0.1:%d\n", ports[0]) + body
	}
	nodeName := ""
	if node != "" {
		nodeName = "  name: " + node + "\n"
	}
	cfg := fmt.Sprintf("node:\n%s  data_dir: %s\nlog:\n  level: warn\nadapter:\n  bind: %s\n%s", nodeName, filepath.Join(dir, "data"), adapter, body)
	file := filepath.Join(dir, "protogate.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("protogate-bench: %w", err)
	}
	return s.start(name, s.binPath("protogate"), "run", "-c", file)
}

// listener is the YAML of one benchmark listener: no idle timeout (hold
// keeps connections silent) and no connection rate limit.
func listener(typ string, port int, handler string) string {
	return fmt.Sprintf(`  - name: bench-%s
    type: %s
    bind: 127.0.0.1:%d
    handler: %s
    idle_timeout: 0
    max_conn_rate: 0
`, typ, typ, port, handler)
}

const wasmEcho = "handlers:\n  echo:\n    wasm:\n      path: builtin:echo\n"

// withGateway starts a gateway, waits for its TCP port, runs f and stops
// the gateway, reporting a failed shutdown.
func (s *suite) withGateway(name, body string, tcpPort int, f func(*proc) error) error {
	ports, err := freePorts(1, false)
	if err != nil {
		return err
	}
	g, err := s.gateway(name, fmt.Sprintf("127.0.0.1:%d", ports[0]), body)
	if err != nil {
		return err
	}
	if tcpPort != 0 {
		if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", tcpPort), g, 20*time.Second); err != nil {
			g.stop(10 * time.Second)
			return err
		}
	}
	ferr := f(g)
	serr := g.stop(30 * time.Second)
	if ferr != nil {
		return ferr
	}
	return serr
}

func (s *suite) echoArgs(addr string, extra ...string) []string {
	a := []string{"echo", "-addr", addr, "-conns", "100", "-size", "64", "-depth", "1",
		"-duration", s.dur(10*time.Second, time.Second), "-warmup", s.dur(2*time.Second, 200*time.Millisecond)}
	return append(a, extra...)
}

// echoFloor measures the plain Go echo server (the case "floor").
func (s *suite) echoFloor(ctx context.Context) error {
	return s.echoFloorAs(ctx, "floor")
}

// echoFloorAs measures the plain Go echo server and records it as case key:
// a case compared with the floor measures it next to itself, since the
// floor of this machine drifts by a third within minutes.
func (s *suite) echoFloorAs(ctx context.Context, key string) error {
	name := "floor-echo"
	if key != "floor" {
		name = key + "-echo"
	}
	plain, err := s.start(name, s.binPath("protogate-load"), "serve-echo", "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr, err := plain.listening(10 * time.Second)
	if err == nil {
		var r *loadstat.Result
		if r, err = s.load(ctx, "load-"+name, s.echoArgs(addr, "-label", key)...); err == nil {
			s.record(key, r, nil)
		}
	}
	plain.stop(10 * time.Second)
	return err
}

// echoCases: the plain Go echo server, then builtin:echo on the gateway,
// then both again in short alternating runs (echoAlternating).
func (s *suite) echoCases(ctx context.Context) error {
	if err := s.echoFloor(ctx); err != nil {
		return err
	}
	ports, err := freePorts(1, false)
	if err != nil {
		return err
	}
	return s.withGateway("gw-wasm-echo", wasmEcho+"listeners:\n"+listener("tcp", ports[0], "echo"), ports[0], func(*proc) error {
		r, err := s.load(ctx, "load-wasm-echo", s.echoArgs(fmt.Sprintf("127.0.0.1:%d", ports[0]), "-label", "builtin:echo")...)
		if err != nil {
			return err
		}
		s.record("wasm-echo", r, nil)
		return s.echoAlternating(ctx, fmt.Sprintf("127.0.0.1:%d", ports[0]))
	})
}

// remoteCases: the bare grpc-go loop, then the gateway with the remote echo
// handler over unary and streaming gRPC, and over the fast lane (whose
// baseline is the plain echo floor, measured right before it).
func (s *suite) remoteCases(ctx context.Context) error {
	ports, err := freePorts(3, false)
	if err != nil {
		return err
	}
	handlerAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	adapterAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	dev := fmt.Sprintf("127.0.0.1:%d", ports[2])

	// The floor: the load tool plays the gateway's two unary calls against
	// the same handler process the gateway will use.
	h, err := s.start("grpcfloor-handler", s.binPath("exproto-echo-handler"), "-listen", handlerAddr, "-adapter", "http://"+adapterAddr)
	if err != nil {
		return err
	}
	if err := waitTCP(handlerAddr, h, 10*time.Second); err != nil {
		h.stop(5 * time.Second)
		return err
	}
	r, err := s.load(ctx, "load-grpcfloor", "grpcfloor", "-handler", handlerAddr, "-adapter-listen", adapterAddr,
		"-conns", "100", "-size", "64", "-duration", s.dur(10*time.Second, time.Second), "-warmup", s.dur(2*time.Second, 200*time.Millisecond))
	h.stop(10 * time.Second)
	if err != nil {
		return err
	}
	s.record("grpcfloor", r, nil)

	for _, mode := range []string{"unary", "streaming", "lane"} {
		service := "ConnectionUnaryHandler"
		args := []string{"-listen", handlerAddr, "-adapter", "http://" + adapterAddr}
		switch mode {
		case "streaming":
			service = "ConnectionHandler"
		case "lane":
			service = "protogate.v1.StreamHandler"
			args = append(args, "-service", "stream")
			if err := s.echoFloorAs(ctx, "floor-lane"); err != nil {
				return err
			}
		}
		h, err := s.start("remote-"+mode+"-handler", s.binPath("exproto-echo-handler"), args...)
		if err != nil {
			return err
		}
		if err := waitTCP(handlerAddr, h, 10*time.Second); err != nil {
			h.stop(5 * time.Second)
			return err
		}
		body := fmt.Sprintf("handlers:\n  echo:\n    grpc:\n      address: http://%s\n      service_name: %s\n      timeout: 5s\nlisteners:\n%s",
			handlerAddr, service, listener("tcp", ports[2], "echo"))
		// The gateway's adapter must be where the handler calls it.
		g, err := s.gateway("gw-remote-"+mode, adapterAddr, body)
		if err == nil {
			if err = waitTCP(dev, g, 20*time.Second); err == nil {
				var r *loadstat.Result
				if r, err = s.load(ctx, "load-remote-"+mode, s.echoArgs(dev, "-label", "remote-"+mode)...); err == nil {
					s.record("remote-"+mode, r, nil)
				}
			}
			if serr := g.stop(30 * time.Second); err == nil {
				err = serr
			}
		}
		h.stop(10 * time.Second)
		if err != nil {
			return err
		}
	}
	return nil
}

// udpCases: datagram echo, plain Go server against builtin:echo.
func (s *suite) udpCases(ctx context.Context) error {
	args := func(addr, label string) []string {
		return []string{"udp", "-addr", addr, "-conns", "100", "-size", "64",
			"-duration", s.dur(5*time.Second, time.Second), "-warmup", s.dur(time.Second, 200*time.Millisecond), "-label", label}
	}
	plain, err := s.start("floor-udp", s.binPath("protogate-load"), "serve-echo", "-udp", "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr, err := plain.listening(10 * time.Second)
	if err == nil {
		var r *loadstat.Result
		if r, err = s.load(ctx, "load-floor-udp", args(addr, "floor-udp")...); err == nil {
			s.record("floor-udp", r, nil)
		}
	}
	plain.stop(10 * time.Second)
	if err != nil {
		return err
	}
	ports, err := freePorts(2, true)
	if err != nil {
		return err
	}
	// A TCP listener too, so the suite can tell when the gateway is up.
	body := wasmEcho + "listeners:\n" + listener("tcp", ports[0], "echo") + listener("udp", ports[1], "echo")
	return s.withGateway("gw-udp", body, ports[0], func(*proc) error {
		r, err := s.load(ctx, "load-wasm-udp", args(fmt.Sprintf("127.0.0.1:%d", ports[1]), "builtin:echo-udp")...)
		if err != nil {
			return err
		}
		s.record("wasm-udp", r, nil)
		return nil
	})
}

// holdCases opens many idle connections to the plain server and to the
// gateway (builtin:echo) and measures each server's RSS per connection.
func (s *suite) holdCases(ctx context.Context) error {
	conns := s.n(15000, 1000)
	args := func(addr string) []string {
		return []string{"hold", "-addr", addr, "-conns", conns, "-rate", "0",
			"-hold", s.dur(10*time.Second, 2*time.Second), "-sample", "100", "-size", "64"}
	}
	n, _ := strconv.Atoi(conns)
	measure := func(name string, p *proc, addr string) error {
		base, err := p.rssKiB()
		if err != nil {
			return err
		}
		sm := p.sample(200 * time.Millisecond)
		r, err := s.load(ctx, "load-"+name, args(addr)...)
		samples := sm.stop()
		if err != nil {
			return err
		}
		peak := maxKiB(samples, 0)
		s.record(name, r, &memResult{BaseKiB: float64(base), PeakKiB: peak, PerConnKB: (peak - float64(base)) / float64(n)})
		return nil
	}
	plain, err := s.start("floor-hold", s.binPath("protogate-load"), "serve-echo", "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr, err := plain.listening(10 * time.Second)
	if err == nil {
		err = measure("floor-hold", plain, addr)
	}
	plain.stop(30 * time.Second)
	if err != nil {
		return err
	}
	ports, err := freePorts(1, false)
	if err != nil {
		return err
	}
	return s.withGateway("gw-hold", wasmEcho+"listeners:\n"+listener("tcp", ports[0], "echo"), ports[0], func(g *proc) error {
		return measure("wasm-hold", g, fmt.Sprintf("127.0.0.1:%d", ports[0]))
	})
}

// fanoutCases: 1,000 plain NATS subscribers, then 1,000 builtin:linepubsub
// connections, on the same embedded server, fed by one NATS publisher.
func (s *suite) fanoutCases(ctx context.Context) error {
	ports, err := freePorts(2, false)
	if err != nil {
		return err
	}
	natsAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	body := fmt.Sprintf("broker:\n  nats_listen: %s\nhandlers:\n  line:\n    wasm:\n      path: builtin:linepubsub\nlisteners:\n%s",
		natsAddr, listener("tcp", ports[0], "line"))
	args := func(label string, extra ...string) []string {
		a := []string{"fanout", "-nats", "nats://" + natsAddr, "-subs", s.n(1000, 100), "-size", "64",
			"-duration", s.dur(10*time.Second, time.Second), "-warmup", s.dur(2*time.Second, 200*time.Millisecond),
			"-topic", "bench/fanout", "-label", label}
		return append(a, extra...)
	}
	return s.withGateway("gw-fanout", body, ports[0], func(*proc) error {
		if err := waitTCPNoProc(natsAddr, 10*time.Second); err != nil {
			return err
		}
		r, err := s.load(ctx, "load-fanout-nats", args("nats")...)
		if err != nil {
			return err
		}
		s.record("fanout-nats", r, nil)
		r, err = s.load(ctx, "load-fanout-gateway", args("builtin:linepubsub", "-gateway", fmt.Sprintf("127.0.0.1:%d", ports[0]))...)
		if err != nil {
			return err
		}
		s.record("fanout-gateway", r, nil)
		return nil
	})
}

// longCase pushes 5,000,000 messages through builtin:echo and watches the
// gateway's RSS.
func (s *suite) longCase(ctx context.Context) error {
	total := s.n(5_000_000, 100_000)
	n, _ := strconv.Atoi(total)
	ports, err := freePorts(1, false)
	if err != nil {
		return err
	}
	return s.withGateway("gw-long", wasmEcho+"listeners:\n"+listener("tcp", ports[0], "echo"), ports[0], func(g *proc) error {
		base, err := g.rssKiB()
		if err != nil {
			return err
		}
		sm := g.sample(500 * time.Millisecond)
		r, err := s.load(ctx, "load-long", "echo", "-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]), "-conns", "100", "-size", "64",
			"-depth", "4", "-messages", total, "-warmup", "0s", "-duration", "30m", "-progress", "10s", "-label", "builtin:echo long")
		samples := sm.stop()
		if err != nil {
			return err
		}
		// The load tool reports the whole run; the first million (a
		// fifth of the run when it is shorter, as with -quick) is placed
		// in time at its share of the messages.
		at1M := r.Seconds * min(1_000_000, float64(n)/5) / float64(n)
		m := memResult{BaseKiB: float64(base), PeakKiB: maxKiB(samples, 0), At1MKiB: atKiB(samples, at1M)}
		m.GrowthMiB = (maxKiB(samples, at1M) - m.At1MKiB) / 1024
		s.record("long", r, &m)
		return nil
	})
}

// waitTCPNoProc waits until addr accepts TCP connections.
func waitTCPNoProc(addr string, timeout time.Duration) error {
	return waitTCP(addr, &proc{name: addr, done: make(chan struct{})}, timeout)
}

// table renders the results with their ratios and targets.
func (s *suite) table() string {
	var b strings.Builder
	mode := ""
	if s.opts.quick {
		mode = " (-quick: the numbers mean nothing)"
	}
	fmt.Fprintf(&b, "protogate benchmark suite, %s%s\n", s.started.UTC().Format(time.RFC3339), mode)
	fmt.Fprintf(&b, "machine: %s\n\n", s.machine)
	b.WriteString("| case | measured | baseline | ratio | target | met |\n| --- | --- | --- | --- | --- | --- |\n")
	rows := append(s.derivedRows(), s.rows...)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.name, r.measured, r.baseline, r.ratio, r.target, r.met)
	}
	b.WriteString("\nmsgs/s: round trips (echo, udp, dtls), requests answered (coap), deliveries (fanout); latency p50/p99 in µs; errors/mismatches/lost counted by the load tool.\n")
	return b.String()
}

func (s *suite) failed() bool {
	for _, r := range append(s.derivedRows(), s.rows...) {
		if r.met == "NO" {
			return true
		}
	}
	return false
}

func perf(r *loadstat.Result) string {
	e := ""
	if r.Errors+r.Mismatch+r.Lost > 0 {
		e = fmt.Sprintf(", %d errors %d mismatches %d lost", r.Errors, r.Mismatch, r.Lost)
	}
	return fmt.Sprintf("%.0f msgs/s, p50 %.0f p99 %.0f µs%s", r.MsgsPerS, r.P50us, r.P99us, e)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

// clean is true when a run made no errors, mismatches or losses.
func clean(rs ...*loadstat.Result) bool {
	for _, r := range rs {
		if r.Errors+r.Mismatch+r.Lost > 0 || r.Msgs == 0 {
			return false
		}
	}
	return true
}

func (s *suite) derivedRows() []row {
	var rows []row
	res := s.results
	floor := res["floor"]
	if floor != nil {
		rows = append(rows, row{name: "floor: plain Go TCP echo, 100 conns x 64 B ping-pong", measured: perf(floor), met: yes(clean(floor))})
	}
	if r := res["wasm-echo"]; r != nil && floor != nil {
		tp, lat := r.MsgsPerS/floor.MsgsPerS, r.P99us/floor.P99us
		rows = append(rows, row{name: "echo via Wasm Go guest (builtin:echo)", measured: perf(r), baseline: "floor",
			ratio: fmt.Sprintf("%.2f x msgs/s, %.2f x p99", tp, lat), target: ">= 0.9 x msgs/s, <= 1.2 x p99",
			met: yes(tp >= 0.9 && lat <= 1.2 && clean(r))})
	}
	rows = append(rows, altRows(res)...)
	rows = append(rows, scaleRows(res, s.numbers)...)
	rows = append(rows, langRows(res, s.mem)...)
	gf := res["grpcfloor"]
	if gf != nil {
		rows = append(rows, row{name: "floor: bare grpc-go loop (OnReceivedBytes out, Send back), 100 callers", measured: perf(gf), met: yes(clean(gf))})
	}
	if r := res["remote-unary"]; r != nil && gf != nil {
		tp := r.MsgsPerS / gf.MsgsPerS
		fl := ""
		if floor != nil {
			fl = fmt.Sprintf(" (%.2f x floor)", r.MsgsPerS/floor.MsgsPerS)
		}
		rows = append(rows, row{name: "echo via remote gRPC handler, unary", measured: perf(r), baseline: "grpc loop",
			ratio: fmt.Sprintf("%.2f x%s", tp, fl), target: ">= 0.7 x", met: yes(tp >= 0.7 && clean(r))})
		if st := res["remote-streaming"]; st != nil {
			tp := st.MsgsPerS / gf.MsgsPerS
			vs := st.MsgsPerS / r.MsgsPerS
			rows = append(rows, row{name: "echo via remote gRPC handler, streaming", measured: perf(st), baseline: "grpc loop; unary",
				ratio: fmt.Sprintf("%.2f x; %.2f x unary", tp, vs), target: ">= 0.7 x; >= unary (within 5% noise)", met: yes(tp >= 0.7 && vs >= 0.95 && clean(st))})
		}
	}
	if r, fl := res["remote-lane"], res["floor-lane"]; r != nil && fl != nil {
		tp, lat := r.MsgsPerS/fl.MsgsPerS, r.P99us/fl.P99us
		rows = append(rows, row{name: "floor: plain Go TCP echo, measured before the fast lane", measured: perf(fl), met: yes(clean(fl))})
		rows = append(rows, row{name: "echo via the fast lane (protogate.v1.StreamHandler), 100 conns x 64 B", measured: perf(r), baseline: "floor before it",
			ratio: fmt.Sprintf("%.2f x msgs/s, %.2f x p99", tp, lat), target: ">= 0.5 x msgs/s, <= 3 x p99",
			met: yes(tp >= 0.5 && lat <= 3 && clean(r))})
	}
	if fu, r := res["floor-udp"], res["wasm-udp"]; fu != nil && r != nil {
		rows = append(rows, row{name: "floor: plain Go UDP echo, 100 peers x 64 B", measured: perf(fu)})
		tp := r.MsgsPerS / fu.MsgsPerS
		rows = append(rows, row{name: "UDP echo via Wasm Go guest", measured: perf(r), baseline: "UDP floor",
			ratio: fmt.Sprintf("%.2f x msgs/s, %.2f x p99", tp, r.P99us/fu.P99us), target: ">= 0.85 x msgs/s",
			met: yes(tp >= 0.85 && clean(r))})
	}
	fh, wh := res["floor-hold"], res["wasm-hold"]
	if fh != nil {
		m := s.mem["floor-hold"]
		rows = append(rows, row{name: fmt.Sprintf("floor: plain Go server holding %d idle conns", fh.Conns),
			measured: fmt.Sprintf("%.1f KiB/conn, %.0f conns/s, %d held, %d/%d sampled echo", m.PerConnKB, fh.AcceptPS, fh.Held, fh.SampleOK, min(100, fh.Conns))})
	}
	if wh != nil {
		m := s.mem["wasm-hold"]
		r := row{name: fmt.Sprintf("%d idle TCP conns, Wasm handler (builtin:echo)", wh.Conns),
			measured: fmt.Sprintf("%.1f KiB/conn (RSS %.0f -> %.0f MiB), %.0f conns/s, %d held, %d/%d sampled echo", m.PerConnKB, m.BaseKiB/1024, m.PeakKiB/1024, wh.AcceptPS, wh.Held, wh.SampleOK, min(100, wh.Conns)),
			target:   "<= 8 KiB/conn; <= 1.2 x memory, >= 0.6 x accept rate"}
		ok := m.PerConnKB <= 8 && wh.Held == wh.Conns && wh.Errors == 0 && wh.SampleOK == min(100, wh.Conns)
		if fh != nil {
			acc := wh.AcceptPS / fh.AcceptPS
			memRatio := m.PerConnKB / s.mem["floor-hold"].PerConnKB
			r.baseline = "plain server"
			r.ratio = fmt.Sprintf("%.2f x memory, %.2f x accept rate", memRatio, acc)
			ok = ok && acc >= 0.6 && memRatio <= 1.2
		}
		r.met = yes(ok)
		rows = append(rows, r)
	}
	rows = append(rows, tlsRows(res, s.mem)...)
	rows = append(rows, startupRows(s.numbers)...)
	fn, fg := res["fanout-nats"], res["fanout-gateway"]
	if fn != nil {
		rows = append(rows, row{name: fmt.Sprintf("floor: %d plain nats.go subscribers, 1 publisher", fn.Conns), measured: perf(fn), met: yes(clean(fn))})
	}
	if fg != nil && fn != nil {
		tp := fg.MsgsPerS / fn.MsgsPerS
		rows = append(rows, row{name: fmt.Sprintf("fan-out to %d builtin:linepubsub conns", fg.Conns), measured: perf(fg), baseline: "plain NATS subscribers",
			ratio: fmt.Sprintf("%.2f x deliveries/s", tp), target: ">= 0.5 x", met: yes(tp >= 0.5 && clean(fg))})
	}
	rows = append(rows, clusterRows(res)...)
	rows = append(rows, coapRows(res, s.mem)...)
	if r := res["long"]; r != nil {
		m := s.mem["long"]
		rows = append(rows, row{name: fmt.Sprintf("%d messages through builtin:echo (100 conns, depth 4)", r.Msgs),
			measured: fmt.Sprintf("%.0f msgs/s; RSS %.0f MiB at start, %.0f MiB at 1M, peak %.0f MiB", r.MsgsPerS, m.BaseKiB/1024, m.At1MKiB/1024, m.PeakKiB/1024),
			ratio:    fmt.Sprintf("growth after 1M: %.1f MiB", m.GrowthMiB), target: "< 50 MiB", met: yes(m.GrowthMiB < 50 && clean(r))})
	}
	return rows
}
