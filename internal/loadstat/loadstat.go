// Package loadstat holds what the load tool measures: a latency histogram
// cheap enough to record every message, and the one-line JSON result every
// scenario prints.
//
// A Histogram is not safe for concurrent use: give each load goroutine its
// own and Merge them at the end. Result is plain data.
package loadstat

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"time"
)

// subBuckets is the number of linear buckets per power of two. 64 keeps the
// relative error of a recorded value under 1/64 (about 1.6%).
const (
	subBits    = 6
	subBuckets = 1 << subBits
	// maxExp covers durations up to 2^40 ns (about 18 minutes).
	maxExp = 40
)

// Histogram counts durations in log-linear buckets. The zero value is
// ready to use.
type Histogram struct {
	counts [(maxExp + 1) * subBuckets]uint64
	n      uint64
	sum    float64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - subBits // >= 1
	if exp > maxExp {
		return len(Histogram{}.counts) - 1
	}
	return exp*subBuckets + int(v>>uint(exp-1)) - subBuckets
}

// lowerBound is the smallest duration counted in bucket i.
func lowerBound(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	exp := i / subBuckets
	sub := i%subBuckets + subBuckets
	return time.Duration(uint64(sub) << uint(exp-1))
}

// Record counts one duration.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.sum += float64(d)
	if d > h.max {
		h.max = d
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the longest recorded duration.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the average recorded duration, 0 when nothing was recorded.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the duration below which a fraction q (0..1) of the
// recorded durations fall, to the histogram's resolution; 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			// Report the middle of the bucket, never above the max seen.
			lo, hi := lowerBound(i), lowerBound(i+1)
			return min(lo+(hi-lo)/2, h.max)
		}
	}
	return h.max
}

// Result is one run of one scenario, printed as one JSON line. Fields that
// do not apply to a scenario are left zero and omitted.
type Result struct {
	Scenario string  `json:"scenario"`         // echo, hold, fanout, udp, grpcfloor, ...
	Target   string  `json:"target,omitempty"` // what was measured: an address or a label
	Conns    int     `json:"conns,omitempty"`
	Size     int     `json:"size,omitempty"`  // payload bytes
	Depth    int     `json:"depth,omitempty"` // messages in flight per connection
	Seconds  float64 `json:"seconds"`         // measured time, warm-up excluded

	Msgs      uint64  `json:"msgs"` // round trips, deliveries or datagrams completed
	MsgsPerS  float64 `json:"msgs_per_s"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p999_us"`
	MaxUs     float64 `json:"max_us,omitempty"`
	Errors    uint64  `json:"errors"`     // failed dials, reads, writes, timeouts
	Mismatch  uint64  `json:"mismatches"` // bytes that came back wrong
	Lost      uint64  `json:"lost,omitempty"`
	AcceptPS  float64 `json:"accept_per_s,omitempty"` // hold: connections opened per second
	Held      int     `json:"held,omitempty"`         // hold: connections open at the end
	SampleOK  int     `json:"sample_ok,omitempty"`    // hold: sampled connections that still echoed
	Published uint64  `json:"published,omitempty"`    // fanout: messages published
}

// SetLatency fills the latency fields from h.
func (r *Result) SetLatency(h *Histogram) {
	us := func(d time.Duration) float64 { return math.Round(float64(d)/10) / 100 }
	r.P50us = us(h.Quantile(0.50))
	r.P99us = us(h.Quantile(0.99))
	r.P999us = us(h.Quantile(0.999))
	r.MaxUs = us(h.Max())
}

// WriteJSON writes r as one line of JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("loadstat: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Summary is a one-line human summary of r.
func (r *Result) Summary() string {
	return fmt.Sprintf("%s %s: %d msgs in %.1fs = %.0f msgs/s; p50 %.0fµs p99 %.0fµs p99.9 %.0fµs; errors %d mismatches %d",
		r.Scenario, r.Target, r.Msgs, r.Seconds, r.MsgsPerS, r.P50us, r.P99us, r.P999us, r.Errors, r.Mismatch)
}
