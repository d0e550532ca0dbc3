package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The handlers group: the memory each further Wasm handler of the same
// module costs (1 against 10 handlers of builtin:echo, instances: 1, each
// with its own listener; the idle gateway's RSS after start).
//
// The startup group: `protogate run` to the first echoed byte, with a fresh
// data_dir (the wasm compile cache empty: cold), then again with the same
// data_dir (the cache filled by the first run: warm). The clock starts
// before the process is executed; a TCP client retries connecting every
// millisecond and, once connected, sends one byte and waits for its echo.

// handlersBody is the YAML of n builtin:echo handlers with one instance
// each, each on its own listener, on ports.
func handlersBody(ports []int) string {
	var b strings.Builder
	b.WriteString("handlers:\n")
	for i := range ports {
		fmt.Fprintf(&b, "  echo%d:\n    wasm:\n      path: builtin:echo\n      instances: 1\n", i)
	}
	b.WriteString("listeners:\n")
	for i, p := range ports {
		b.WriteString(strings.Replace(listener("tcp", p, fmt.Sprintf("echo%d", i)), "name: bench-tcp", fmt.Sprintf("name: bench-tcp-%d", i), 1))
	}
	return b.String()
}

// handlersCases measures the idle RSS of a gateway with 1 and with 10
// handlers.
func (s *suite) handlersCases(ctx context.Context) error {
	var rss [2]float64
	for i, n := range []int{1, 10} {
		ports, err := freePorts(n, false)
		if err != nil {
			return err
		}
		kib, err := s.idleRSSBody(fmt.Sprintf("gw-handlers-%d", n), handlersBody(ports), ports[n-1])
		if err != nil {
			return fmt.Errorf("%d handlers: %w", n, err)
		}
		rss[i] = kib
	}
	s.numbers["rss-1-handler-kib"] = rss[0]
	s.numbers["rss-10-handlers-kib"] = rss[1]
	s.recordNumbers("handlers", map[string]float64{"rss_1_handler_kib": rss[0], "rss_10_handlers_kib": rss[1]})
	return nil
}

// startupCases measures the time to the first echoed byte, cold then warm.
func (s *suite) startupCases(ctx context.Context) error {
	dir := filepath.Join(s.tmp, "startup")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	ports, err := freePorts(2, false)
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := fmt.Sprintf("node:\n  data_dir: %s\nlog:\n  level: warn\nadapter:\n  bind: 127.0.0.1:%d\n%slisteners:\n%s",
		filepath.Join(dir, "data"), ports[1], wasmEcho, listener("tcp", ports[0], "echo"))
	file := filepath.Join(dir, "protogate.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	for _, mode := range []string{"cold", "warm"} {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("protogate-bench: %w", err)
		}
		t0 := time.Now()
		g, err := s.start("gw-startup-"+mode, s.binPath("protogate"), "run", "-c", file)
		if err != nil {
			return err
		}
		d, err := firstEcho(addr, g, t0, 30*time.Second)
		if serr := g.stop(30 * time.Second); err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("%s start: %w", mode, err)
		}
		s.numbers["startup-"+mode+"-ms"] = float64(d) / float64(time.Millisecond)
		fmt.Fprintf(os.Stderr, "  startup %s: first echoed byte after %v\n", mode, d.Round(time.Millisecond))
	}
	s.recordNumbers("startup", map[string]float64{"cold_ms": s.numbers["startup-cold-ms"], "warm_ms": s.numbers["startup-warm-ms"]})
	return nil
}

// firstEcho connects to addr until it accepts (retrying every
// millisecond), sends one byte and returns the time from t0 to its echo.
func firstEcho(addr string, p *proc, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := t0.Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(deadline)
			_, err = c.Write([]byte{'x'})
			var b [1]byte
			if err == nil {
				_, err = io.ReadFull(c, b[:])
			}
			d := time.Since(t0)
			c.Close()
			if err != nil {
				return 0, fmt.Errorf("protogate-bench: %s: no echo: %w", p.name, err)
			}
			return d, nil
		}
		if perr := p.alive(); perr != nil {
			return 0, perr
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("protogate-bench: %s: %s not accepting after %v: %w", p.name, addr, timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// recordNumbers appends a case's numbers to the JSON lines file.
func (s *suite) recordNumbers(name string, v map[string]float64) {
	b, _ := json.Marshal(struct {
		Case    string             `json:"case"`
		Numbers map[string]float64 `json:"numbers"`
	}{name, v})
	s.jsonl.Write(append(b, '\n'))
}

// startupRows are the handlers and startup groups' rows.
func startupRows(n map[string]float64) []row {
	var rows []row
	if r1, ok := n["rss-1-handler-kib"]; ok {
		r10 := n["rss-10-handlers-kib"]
		per := (r10 - r1) / 9 / 1024
		rows = append(rows, row{name: "memory per additional Wasm handler of the same module (builtin:echo, instances: 1, a listener each)",
			measured: fmt.Sprintf("idle RSS %.1f MiB with 1 handler, %.1f MiB with 10", r1/1024, r10/1024),
			baseline: "1 handler", ratio: fmt.Sprintf("%.1f MiB/handler", per), target: "<= 4 MiB/handler", met: yes(per <= 4)})
	}
	if c, ok := n["startup-cold-ms"]; ok {
		w := n["startup-warm-ms"]
		rows = append(rows, row{name: "start-up: protogate run to the first echoed byte (builtin:echo), compile cache cold / warm",
			measured: fmt.Sprintf("cold %.0f ms, warm %.0f ms", c, w), baseline: "(absolute, this machine)",
			target: "cold <= 1500 ms, warm <= 150 ms", met: yes(c <= 1500 && w <= 150)})
	}
	return rows
}
