package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/internal/loadstat"
)

// The langs group: the echo guest of each language's SDK on the gateway,
// under the echo group's load, as a ratio to the plain echo floor of the
// same run; the module's size; and the memory an instance of it costs.

// guestLang is one language's echo guest.
type guestLang struct {
	key, name string // "c", "C"
	file      string // under -bin/guests; "" for the builtin Go guest
}

var guestLangs = []guestLang{
	{"go", "Go", ""},
	{"c", "C", "echo-c.wasm"},
	{"rust", "Rust", "echo-rust.wasm"},
	{"as", "AssemblyScript", "echo-as.wasm"},
}

// path is the handler's wasm.path: builtin:echo, or the module under the
// -bin directory's guests/ (built by make sdk-guests).
func (l guestLang) path(s *suite) string {
	if l.file == "" {
		return "builtin:echo"
	}
	return s.binPath(filepath.Join("guests", l.file))
}

// moduleBytes is the size of the module the gateway loads: for Go, the
// embedded guests/builtin/echo.wasm (the same bytes the gateway of this
// checkout embeds).
func (l guestLang) moduleBytes(s *suite) (int64, error) {
	if l.file == "" {
		b, ok := builtin.Lookup("echo")
		if !ok {
			return 0, errors.New("protogate-bench: no builtin echo guest")
		}
		return int64(len(b)), nil
	}
	st, err := os.Stat(l.path(s))
	if err != nil {
		return 0, fmt.Errorf("protogate-bench: %s guest: %w (run make sdk-guests)", l.name, err)
	}
	return st.Size(), nil
}

// wasmHandler is the YAML of an echo handler on module path with n
// instances (0: the default, GOMAXPROCS).
func wasmHandler(path string, n int) string {
	h := fmt.Sprintf("handlers:\n  echo:\n    wasm:\n      path: %s\n", path)
	if n > 0 {
		h += fmt.Sprintf("      instances: %d\n", n)
	}
	return h
}

// langCases runs, for each language, the echo load against its guest (with
// the default number of instances, as the echo group's builtin:echo), then
// measures the idle gateway's RSS with 1 and with 9 instances. The floor is
// the echo group's when it ran; otherwise this group measures it.
func (s *suite) langCases(ctx context.Context) error {
	sizes := make(map[string]int64)
	for _, l := range guestLangs {
		n, err := l.moduleBytes(s)
		if err != nil {
			return err
		}
		sizes[l.key] = n
	}
	if s.results["floor"] == nil {
		if err := s.echoFloor(ctx); err != nil {
			return err
		}
	}
	for _, l := range guestLangs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("protogate-bench: %w", err)
		}
		var rss [2]float64
		for i, n := range []int{1, 9} {
			kib, err := s.idleRSS(fmt.Sprintf("gw-lang-%s-%d", l.key, n), wasmHandler(l.path(s), n))
			if err != nil {
				return fmt.Errorf("%s guest, %d instances: %w", l.name, n, err)
			}
			rss[i] = kib
		}
		ports, err := freePorts(1, false)
		if err != nil {
			return err
		}
		name := "lang-" + l.key
		body := wasmHandler(l.path(s), 0) + "listeners:\n" + listener("tcp", ports[0], "echo")
		err = s.withGateway("gw-"+name, body, ports[0], func(*proc) error {
			r, err := s.load(ctx, "load-"+name, s.echoArgs(fmt.Sprintf("127.0.0.1:%d", ports[0]), "-label", "echo-"+l.key)...)
			if err != nil {
				return err
			}
			s.record(name, r, &memResult{RSS1KiB: rss[0], RSS9KiB: rss[1], PerInstKiB: (rss[1] - rss[0]) / 8, ModuleBytes: sizes[l.key]})
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s guest: %w", l.name, err)
		}
	}
	return nil
}

// idleRSS starts a gateway with handler on a TCP listener, lets it settle
// and returns the median of 5 RSS samples taken over a second (over 0.2 s
// with -quick), before any load.
func (s *suite) idleRSS(name, handler string) (float64, error) {
	ports, err := freePorts(1, false)
	if err != nil {
		return 0, err
	}
	return s.idleRSSBody(name, handler+"listeners:\n"+listener("tcp", ports[0], "echo"), ports[0])
}

// idleRSSBody is idleRSS for a gateway configured by body (handlers and
// listeners), up once port accepts connections.
func (s *suite) idleRSSBody(name, body string, port int) (float64, error) {
	var kib float64
	err := s.withGateway(name, body, port, func(g *proc) error {
		settle := time.Second
		if s.opts.quick {
			settle = 200 * time.Millisecond
		}
		time.Sleep(settle)
		var samples []float64
		for range 5 {
			v, err := g.rssKiB()
			if err != nil {
				return err
			}
			samples = append(samples, float64(v))
			time.Sleep(settle / 5)
		}
		slices.Sort(samples)
		kib = samples[len(samples)/2]
		return nil
	})
	return kib, err
}

// langRows are the langs group's rows: each guest's echo against the floor,
// with its module's size and the memory of an instance.
func langRows(res map[string]*loadstat.Result, mem map[string]memResult) []row {
	floor := res["floor"]
	var rows []row
	for _, l := range guestLangs {
		r := res["lang-"+l.key]
		if r == nil || floor == nil {
			continue
		}
		m := mem["lang-"+l.key]
		what := l.file
		if what == "" {
			what = "builtin:echo"
		}
		rows = append(rows, row{
			name: fmt.Sprintf("echo via Wasm %s guest (%s), langs group", l.name, what),
			measured: fmt.Sprintf("%s; module %.0f KiB; %.0f KiB/instance (idle RSS %.1f MiB with 1, %.1f MiB with 9)",
				perf(r), float64(m.ModuleBytes)/1024, m.PerInstKiB, m.RSS1KiB/1024, m.RSS9KiB/1024),
			baseline: "floor",
			ratio:    fmt.Sprintf("%.2f x msgs/s, %.2f x p99", r.MsgsPerS/floor.MsgsPerS, r.P99us/floor.P99us),
			target:   "(report only)",
		})
	}
	return rows
}
