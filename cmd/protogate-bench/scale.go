package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

// scaleCounts are the connection counts of the scale group; -quick runs
// the first two.
var scaleCounts = []int{1, 100, 1000, 10000}

// scaleTarget is the least msgs/s ratio to the floor at every count.
const scaleTarget = 0.75

// scaleRounds is how many floor/gateway pairs of runs a count gets. One
// connection in ping-pong measures the wake-up latency of two processes,
// which swings from run to run (0.63-0.97 x for the same binaries minutes
// apart), so the small counts are measured in three alternating pairs and
// the pair with the median ratio stands for the count; the large counts,
// whose runs are long and steady, get one pair.
func scaleRounds(n int, quick bool) int {
	if n <= 100 && !quick {
		return 3
	}
	return 1
}

// scaleCases runs the 64 B ping-pong echo at each connection count, the
// plain Go echo server then builtin:echo on the gateway, both servers up
// for the whole group so that the two runs of a count are seconds apart.
// It then draws msgs/s against connections into scale.svg.
func (s *suite) scaleCases(ctx context.Context) error {
	counts := scaleCounts
	if s.opts.quick {
		counts = counts[:2]
	}
	plain, err := s.start("floor-scale", s.binPath("protogate-load"), "serve-echo", "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer plain.stop(30 * time.Second)
	floorAddr, err := plain.listening(10 * time.Second)
	if err != nil {
		return err
	}
	ports, err := freePorts(1, false)
	if err != nil {
		return err
	}
	gwAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	err = s.withGateway("gw-scale", wasmEcho+"listeners:\n"+listener("tcp", ports[0], "echo"), ports[0], func(*proc) error {
		for _, n := range counts {
			var pairs [][2]*loadstat.Result
			for round := range scaleRounds(n, s.opts.quick) {
				var pair [2]*loadstat.Result
				for i, side := range []struct{ name, addr, label string }{
					{"floor", floorAddr, "floor"},
					{"wasm", gwAddr, "builtin:echo"},
				} {
					name := fmt.Sprintf("scale-%s-%d", side.name, n)
					if round > 0 {
						name += "-" + strconv.Itoa(round+1)
					}
					r, err := s.load(ctx, "load-"+name, s.scaleArgs(side.addr, n, side.label)...)
					if err != nil {
						return err
					}
					s.record(name, r, nil)
					pair[i] = r
				}
				pairs = append(pairs, pair)
			}
			if len(pairs) > 1 {
				// The median pair stands for the count (see scaleRounds).
				m := medianPair(pairs)
				s.results[fmt.Sprintf("scale-floor-%d", n)] = m[0]
				s.results[fmt.Sprintf("scale-wasm-%d", n)] = m[1]
				var lo, hi float64
				for i, p := range pairs {
					r := p[1].MsgsPerS / p[0].MsgsPerS
					if i == 0 || r < lo {
						lo = r
					}
					if i == 0 || r > hi {
						hi = r
					}
				}
				s.numbers[fmt.Sprintf("scale-pairs-%d", n)] = float64(len(pairs))
				s.numbers[fmt.Sprintf("scale-lo-%d", n)] = lo
				s.numbers[fmt.Sprintf("scale-hi-%d", n)] = hi
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.writeScalePlot(counts)
}

// scaleArgs is the load of one point: n connections opened at most 5,000
// a second, 64 B ping-pong, a warm-up long enough for every connection to
// have made round trips.
func (s *suite) scaleArgs(addr string, n int, label string) []string {
	warm := 2 * time.Second
	if n >= 10000 {
		warm = 3 * time.Second
	}
	return []string{"echo", "-addr", addr, "-conns", strconv.Itoa(n), "-size", "64", "-depth", "1", "-rate", "5000",
		"-duration", s.dur(5*time.Second, 500*time.Millisecond), "-warmup", s.dur(warm, 200*time.Millisecond),
		"-label", fmt.Sprintf("%s x%d", label, n)}
}

// medianPair returns the pair whose gateway/floor msgs/s ratio is the
// median (of an even count, the lower middle one).
func medianPair(pairs [][2]*loadstat.Result) [2]*loadstat.Result {
	ps := append([][2]*loadstat.Result(nil), pairs...)
	sort.Slice(ps, func(i, j int) bool {
		return ps[i][1].MsgsPerS/ps[i][0].MsgsPerS < ps[j][1].MsgsPerS/ps[j][0].MsgsPerS
	})
	return ps[(len(ps)-1)/2]
}

// scalePoint is one connection count's pair of results.
type scalePoint struct {
	conns       int
	floor, wasm *loadstat.Result
}

// scalePoints are the counts with both results, in order.
func scalePoints(res map[string]*loadstat.Result) []scalePoint {
	var ps []scalePoint
	for _, n := range scaleCounts {
		f, w := res[fmt.Sprintf("scale-floor-%d", n)], res[fmt.Sprintf("scale-wasm-%d", n)]
		if f != nil && w != nil {
			ps = append(ps, scalePoint{n, f, w})
		}
	}
	return ps
}

// scaleRows is one row per connection count; numbers holds the range of
// the ratios of a count measured in several pairs (see scaleRounds).
func scaleRows(res map[string]*loadstat.Result, numbers map[string]float64) []row {
	var rows []row
	for _, p := range scalePoints(res) {
		tp, lat := p.wasm.MsgsPerS/p.floor.MsgsPerS, p.wasm.P99us/p.floor.P99us
		name := fmt.Sprintf("scale: builtin:echo, %d conns x 64 B ping-pong", p.conns)
		ratio := fmt.Sprintf("%s x msgs/s, %.2f x p99", ratioText(tp, scaleTarget), lat)
		if k := numbers[fmt.Sprintf("scale-pairs-%d", p.conns)]; k > 1 {
			name += fmt.Sprintf(", the median of %.0f alternating pairs", k)
			ratio = fmt.Sprintf("%s x msgs/s (%.2f-%.2f), %.2f x p99", ratioText(tp, scaleTarget),
				numbers[fmt.Sprintf("scale-lo-%d", p.conns)], numbers[fmt.Sprintf("scale-hi-%d", p.conns)], lat)
		}
		rows = append(rows, row{
			name:     name,
			measured: perf(p.wasm),
			baseline: "floor at " + strconv.Itoa(p.conns) + ": " + perf(p.floor),
			ratio:    ratio,
			target:   fmt.Sprintf(">= %.2f x msgs/s", scaleTarget),
			met:      yes(tp >= scaleTarget && clean(p.floor, p.wasm)),
		})
	}
	return rows
}

// writeScalePlot writes scale.svg under the output directory.
func (s *suite) writeScalePlot(counts []int) error {
	ps := scalePoints(s.results)
	if len(ps) == 0 {
		return nil
	}
	title := fmt.Sprintf("64 B ping-pong echo, msgs/s vs connections (%s)", s.started.UTC().Format("2006-01-02 15:04Z"))
	if s.opts.quick {
		title += ", -quick"
	}
	svg := scaleSVG(title, ps)
	file := filepath.Join(s.opts.out, "scale.svg")
	if err := os.WriteFile(file, []byte(svg), 0o644); err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	fmt.Fprintf(os.Stderr, "protogate-bench: scale plot in %s\n", file)
	return nil
}

// scaleSVG draws msgs/s of the floor and of the gateway against the
// connection count, the count on a log axis: a self-contained SVG, no
// scripts and no external resources.
func scaleSVG(title string, ps []scalePoint) string {
	const (
		w, h                     = 720, 420
		left, right, top, bottom = 80, 190, 40, 60
	)
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	// x: decades covering the counts; y: 0 to a round number above the
	// largest rate.
	lo, hi := math.Floor(math.Log10(float64(ps[0].conns))), math.Ceil(math.Log10(float64(ps[len(ps)-1].conns)))
	if hi <= lo {
		hi = lo + 1
	}
	ymax := 0.0
	for _, p := range ps {
		ymax = max(ymax, p.floor.MsgsPerS, p.wasm.MsgsPerS)
	}
	step := niceStep(ymax / 5)
	ymax = math.Max(step, math.Ceil(ymax/step)*step)
	x := func(n int) float64 { return left + (math.Log10(float64(n))-lo)/(hi-lo)*pw }
	y := func(v float64) float64 { return top + ph - v/ymax*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14">%s</text>`+"\n", left, xmlEscape(title))
	// Grid and ticks.
	for v := 0.0; v <= ymax+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(v), left+pw, y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, siLabel(v))
	}
	for d := lo; d <= hi; d++ {
		n := int(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x(n), top, x(n), top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(n), top+ph+18, strconv.Itoa(n))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top+ph, left+pw, top+ph)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%.1f" stroke="black"/>`+"\n", left, top, left, top+ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">connections (log scale)</text>`+"\n", left+pw/2, h-14)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">round trips per second</text>`+"\n", top+ph/2)
	// The two series, with a legend.
	series := []struct {
		name, color string
		v           func(scalePoint) float64
	}{
		{"plain Go echo (floor)", "#1f77b4", func(p scalePoint) float64 { return p.floor.MsgsPerS }},
		{"gateway, builtin:echo", "#d62728", func(p scalePoint) float64 { return p.wasm.MsgsPerS }},
	}
	for i, sr := range series {
		var pts []string
		for _, p := range ps {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.conns), y(sr.v(p))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", sr.color, strings.Join(pts, " "))
		for _, p := range ps {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x(p.conns), y(sr.v(p)), sr.color)
		}
		ly := top + 20 + 22*i
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", left+pw+14, ly, left+pw+38, ly, sr.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", left+pw+44, ly+4, xmlEscape(sr.name))
	}
	// The ratio at each point, under the legend.
	ly := top + 80
	fmt.Fprintf(&b, `<text x="%.1f" y="%d">gateway / floor:</text>`+"\n", left+pw+14, ly)
	for i, p := range ps {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%d conns: %.2f x</text>`+"\n", left+pw+14, ly+18*(i+1), p.conns, p.wasm.MsgsPerS/p.floor.MsgsPerS)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// ratioText prints a ratio with two decimals, or more when two would
// round it onto its target or past it (0.7499 against 0.75 prints 0.7499),
// so that the printed number agrees with the met column.
func ratioText(v, target float64) string {
	for prec := 2; prec < 6; prec++ {
		t := strconv.FormatFloat(v, 'f', prec, 64)
		r, _ := strconv.ParseFloat(t, 64)
		if (v < target) == (r < target) && (v > target) == (r > target) {
			return t
		}
	}
	return strconv.FormatFloat(v, 'f', 6, 64)
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// siLabel prints an axis value: 20k, 1.5M.
func siLabel(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// xmlEscape escapes text for an SVG text node.
func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// altPairs is how many floor/gateway pairs of short runs the echo group's
// alternating measurement makes.
func (s *suite) altPairs() int {
	if s.opts.quick {
		return 2
	}
	return 5
}

// echoAlternating measures the floor and builtin:echo in short runs that
// alternate (floor, gateway, floor, ...), each with fresh connections: a
// different client pattern from the one long run per side, which finds
// what a run's start costs and what drifts over a minute.
func (s *suite) echoAlternating(ctx context.Context, gwAddr string) error {
	plain, err := s.start("floor-echo-alt", s.binPath("protogate-load"), "serve-echo", "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer plain.stop(10 * time.Second)
	floorAddr, err := plain.listening(10 * time.Second)
	if err != nil {
		return err
	}
	args := func(addr, label string) []string {
		return []string{"echo", "-addr", addr, "-conns", "100", "-size", "64", "-depth", "1",
			"-duration", s.dur(3*time.Second, 300*time.Millisecond), "-warmup", s.dur(500*time.Millisecond, 100*time.Millisecond), "-label", label}
	}
	for i := 1; i <= s.altPairs(); i++ {
		for _, side := range []struct{ name, addr, label string }{
			{"floor", floorAddr, "floor"},
			{"wasm", gwAddr, "builtin:echo"},
		} {
			name := fmt.Sprintf("echo-alt-%s-%d", side.name, i)
			r, err := s.load(ctx, "load-"+name, args(side.addr, side.label+" alt "+strconv.Itoa(i))...)
			if err != nil {
				return err
			}
			s.record(name, r, nil)
		}
	}
	return nil
}

// altRows is the row of the alternating measurement: the median of the
// pairs' ratios.
func altRows(res map[string]*loadstat.Result) []row {
	var tps, lats []float64
	var floors, gws []*loadstat.Result
	for i := 1; ; i++ {
		f, w := res[fmt.Sprintf("echo-alt-floor-%d", i)], res[fmt.Sprintf("echo-alt-wasm-%d", i)]
		if f == nil || w == nil {
			break
		}
		floors, gws = append(floors, f), append(gws, w)
		tps = append(tps, w.MsgsPerS/f.MsgsPerS)
		lats = append(lats, w.P99us/f.P99us)
	}
	if len(tps) == 0 {
		return nil
	}
	tp, lat := median(tps), median(lats)
	mf, mw := medianResult(floors), medianResult(gws)
	return []row{{
		name: fmt.Sprintf("echo via Wasm Go guest, %d alternating %g s runs per side (100 conns x 64 B ping-pong)", len(tps), math.Round(floors[0].Seconds*10)/10),
		measured: fmt.Sprintf("median %.0f msgs/s, p99 %.0f µs (floor: %.0f msgs/s, p99 %.0f µs)",
			mw.MsgsPerS, mw.P99us, mf.MsgsPerS, mf.P99us),
		baseline: "floor, the run before each",
		ratio: fmt.Sprintf("median %s x msgs/s (%.2f-%.2f), %s x p99 (%.2f-%.2f)",
			ratioText(tp, 0.9), minOf(tps), maxOf(tps), ratioText(lat, 1.2), minOf(lats), maxOf(lats)),
		target: ">= 0.9 x msgs/s, <= 1.2 x p99",
		met:    yes(tp >= 0.9 && lat <= 1.2 && clean(append(floors, gws...)...)),
	}}
}

// median is the middle value (the mean of the two middle ones for an even
// count).
func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianResult is the median msgs/s and p99 of results.
func medianResult(rs []*loadstat.Result) loadstat.Result {
	var tp, p99 []float64
	for _, r := range rs {
		tp, p99 = append(tp, r.MsgsPerS), append(p99, r.P99us)
	}
	return loadstat.Result{MsgsPerS: median(tp), P99us: median(p99)}
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
