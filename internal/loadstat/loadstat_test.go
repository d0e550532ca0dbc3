package loadstat

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for d := time.Duration(0); d < 10*time.Second; d = d*9/8 + 1 {
		b := bucketOf(d)
		if b < prev {
			t.Fatalf("bucketOf(%v) = %d < %d", d, b, prev)
		}
		if lo := lowerBound(b); lo > d || lowerBound(b+1) <= d {
			t.Fatalf("%v in bucket %d = [%v, %v)", d, b, lo, lowerBound(b+1))
		}
		prev = b
	}
}

func TestQuantileAgainstSort(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100000 {
		d := time.Duration(r.ExpFloat64() * float64(50*time.Microsecond))
		all = append(all, d)
		h.Record(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[int(q*float64(len(all)))-1]
		got := h.Quantile(q)
		if diff := float64(got-want) / float64(want); diff > 0.02 || diff < -0.02 {
			t.Errorf("q%.3f = %v, want %v within 2%%", q, got, want)
		}
	}
	if h.Count() != 100000 || h.Max() != all[len(all)-1] {
		t.Errorf("count %d max %v", h.Count(), h.Max())
	}
}

func TestMergeAndEmpty(t *testing.T) {
	var a, b Histogram
	if a.Quantile(0.5) != 0 || a.Mean() != 0 {
		t.Fatal("empty histogram not zero")
	}
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(&b)
	if a.Count() != 2 || a.Mean() != 2*time.Millisecond || a.Max() != 3*time.Millisecond {
		t.Fatalf("merged: n=%d mean=%v max=%v", a.Count(), a.Mean(), a.Max())
	}
}

func TestResultJSON(t *testing.T) {
	var h Histogram
	h.Record(100 * time.Microsecond)
	r := Result{Scenario: "echo", Conns: 2, Msgs: 10, Seconds: 1, MsgsPerS: 10}
	r.SetLatency(&h)
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back["scenario"] != "echo" || back["msgs_per_s"] != 10.0 || back["p50_us"].(float64) < 99 || back["p50_us"].(float64) > 102 {
		t.Fatalf("json %s", buf.Bytes())
	}
	if _, ok := back["held"]; ok {
		t.Fatalf("zero scenario field not omitted: %s", buf.Bytes())
	}
}
