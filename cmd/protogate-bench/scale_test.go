package main

import (
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/protogate/protogate/internal/loadstat"
)

// TestScaleSVG checks that the plot is well-formed XML with one line per
// series and a point per count, and escapes its title.
func TestScaleSVG(t *testing.T) {
	res := map[string]*loadstat.Result{}
	for i, n := range scaleCounts {
		res["scale-floor-"+itoa(n)] = &loadstat.Result{MsgsPerS: 40000 - float64(i)*5000, Msgs: 1}
		res["scale-wasm-"+itoa(n)] = &loadstat.Result{MsgsPerS: 36000 - float64(i)*5000, Msgs: 1}
	}
	ps := scalePoints(res)
	if len(ps) != len(scaleCounts) {
		t.Fatalf("%d points", len(ps))
	}
	svg := scaleSVG("a < b & c", ps)
	d := xml.NewDecoder(strings.NewReader(svg))
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
	if count["svg"] != 1 || count["polyline"] != 2 || count["circle"] != 2*len(scaleCounts) {
		t.Fatalf("elements %v", count)
	}
	if !strings.Contains(svg, "a &lt; b &amp; c") {
		t.Fatal("title not escaped")
	}
	rows := scaleRows(res, nil)
	if len(rows) != 4 || rows[0].met != "yes" || !strings.Contains(rows[3].name, "10000 conns") {
		t.Fatalf("rows %+v", rows)
	}
	res["scale-wasm-100"].MsgsPerS = 0.7 * res["scale-floor-100"].MsgsPerS
	if rows := scaleRows(res, nil); rows[1].met != "NO" {
		t.Fatalf("0.7 x met the target: %+v", rows[1])
	}
}

// TestScaleMedianPair checks that a count measured in several pairs is
// represented by the pair of the median ratio, and that its row says so
// with the range.
func TestScaleMedianPair(t *testing.T) {
	pair := func(floor, wasm float64) [2]*loadstat.Result {
		return [2]*loadstat.Result{{Msgs: 1000, MsgsPerS: floor, P99us: 100}, {Msgs: 1000, MsgsPerS: wasm, P99us: 120}}
	}
	pairs := [][2]*loadstat.Result{pair(100, 95), pair(100, 63), pair(100, 80)}
	if m := medianPair(pairs); m[1].MsgsPerS != 80 {
		t.Fatalf("median pair has %v msgs/s, want the 0.80 x pair", m[1].MsgsPerS)
	}
	if m := medianPair(pairs[:2]); m[1].MsgsPerS != 63 {
		t.Fatalf("median of two has %v msgs/s, want the lower", m[1].MsgsPerS)
	}
	m := medianPair(pairs)
	res := map[string]*loadstat.Result{"scale-floor-1": m[0], "scale-wasm-1": m[1]}
	rows := scaleRows(res, map[string]float64{"scale-pairs-1": 3, "scale-lo-1": 0.63, "scale-hi-1": 0.95})
	if len(rows) != 1 || rows[0].met != "yes" || !strings.Contains(rows[0].name, "median of 3 alternating pairs") ||
		!strings.Contains(rows[0].ratio, "(0.63-0.95)") {
		t.Fatalf("rows %+v", rows)
	}
}

// TestAltRows checks the median of the alternating runs' ratios.
func TestAltRows(t *testing.T) {
	res := map[string]*loadstat.Result{}
	// Ratios of msgs/s 0.8, 0.95, 0.92 (median 0.92); of p99 1.1, 1.3, 1.0
	// (median 1.1).
	for i, v := range [][2]float64{{0.8, 1.1}, {0.95, 1.3}, {0.92, 1.0}} {
		res["echo-alt-floor-"+itoa(i+1)] = &loadstat.Result{MsgsPerS: 1000, P99us: 100, Msgs: 1, Seconds: 3}
		res["echo-alt-wasm-"+itoa(i+1)] = &loadstat.Result{MsgsPerS: 1000 * v[0], P99us: 100 * v[1], Msgs: 1, Seconds: 3}
	}
	rows := altRows(res)
	if len(rows) != 1 || rows[0].met != "yes" || !strings.Contains(rows[0].ratio, "median 0.92 x msgs/s (0.80-0.95), 1.10 x p99") ||
		!strings.Contains(rows[0].name, "3 alternating 3 s runs") {
		t.Fatalf("rows %+v", rows)
	}
	res["echo-alt-wasm-3"].P99us = 125 // p99 ratios 1.1, 1.3, 1.25
	if rows := altRows(res); rows[0].met != "NO" {
		t.Fatalf("median p99 1.25 x met the target: %+v", rows[0])
	}
	if got := ratioText(0.7499, 0.75); got != "0.7499" {
		t.Fatalf("ratioText(0.7499, 0.75) = %s", got)
	}
	if got := ratioText(1.2004, 1.2); got != "1.2004" {
		t.Fatalf("ratioText(1.2004, 1.2) = %s", got)
	}
	if got := ratioText(0.931, 0.9); got != "0.93" {
		t.Fatalf("ratioText(0.931, 0.9) = %s", got)
	}
	if median([]float64{4, 1, 3, 2}) != 2.5 {
		t.Fatal("median of an even count")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
