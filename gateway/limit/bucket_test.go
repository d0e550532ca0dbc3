package limit

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestBucketAllow(t *testing.T) {
	type step struct {
		advance time.Duration
		n       float64
		want    bool
	}
	tests := []struct {
		name        string
		rate, burst float64
		steps       []step
	}{
		{"starts full, then empty", 10, 3, []step{
			{0, 1, true}, {0, 1, true}, {0, 1, true}, {0, 1, false},
		}},
		{"refills at the rate", 10, 3, []step{
			{0, 3, true}, {50 * time.Millisecond, 1, false}, {50 * time.Millisecond, 1, true}, {0, 1, false},
		}},
		{"refill stops at the burst", 10, 3, []step{
			{0, 3, true}, {time.Hour, 3, true}, {0, 1, false},
		}},
		{"a refused Allow takes nothing", 1, 5, []step{
			{0, 4, true}, {0, 2, false}, {0, 1, true}, {0, 1, false},
		}},
		{"more than the burst is never allowed", 100, 2, []step{
			{time.Hour, 3, false}, {0, 2, true},
		}},
		{"fractional tokens", 1, 1, []step{
			{0, 0.5, true}, {0, 0.5, true}, {0, 0.5, false}, {500 * time.Millisecond, 0.5, true},
		}},
		{"n <= 0 is free", 1, 1, []step{
			{0, 1, true}, {0, 0, true}, {0, -5, true}, {0, math.NaN(), true}, {0, 0.01, false},
		}},
		{"default burst is one second", 4, 0, []step{
			{0, 4, true}, {0, 0.1, false},
		}},
		{"default burst is at least 1", 0.5, -1, []step{
			{0, 1, true}, {time.Second, 1, false}, {time.Second, 1, true},
		}},
		{"rate 0 is unlimited", 0, 1, []step{{0, 1e9, true}, {0, 1e9, true}}},
		{"negative rate is unlimited", -1, 1, []step{{0, 1e9, true}}},
		{"infinite rate is unlimited", math.Inf(1), 1, []step{{0, 1e9, true}}},
		{"infinite burst is unlimited", 1, math.Inf(1), []step{{0, 1e9, true}}},
		{"NaN rate is unlimited", math.NaN(), 1, []step{{0, 1e9, true}}},
		{"infinite n", 1, 1, []step{{0, math.Inf(1), false}, {0, 1, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			b := newBucket(tt.rate, tt.burst, c.now)
			for i, s := range tt.steps {
				c.advance(s.advance)
				if got := b.Allow(s.n); got != s.want {
					t.Fatalf("step %d: Allow(%v) = %v, want %v", i, s.n, got, s.want)
				}
			}
		})
	}
}

func TestBucketReserve(t *testing.T) {
	type step struct {
		advance time.Duration
		n       float64
		want    time.Duration
	}
	tests := []struct {
		name        string
		rate, burst float64
		steps       []step
	}{
		{"within the burst", 10, 5, []step{
			{0, 2, 0}, {0, 3, 0},
		}},
		{"debt", 10, 5, []step{
			{0, 5, 0}, {0, 1, 100 * time.Millisecond}, {0, 1, 200 * time.Millisecond},
		}},
		{"debt is paid back over time", 10, 5, []step{
			{0, 7, 200 * time.Millisecond}, {200 * time.Millisecond, 0.5, 50 * time.Millisecond}, {time.Second, 5, 0},
		}},
		{"more than the burst", 1000, 100, []step{
			{0, 1100, time.Second}, {time.Second, 100, 100 * time.Millisecond},
		}},
		{"bytes per second", 1 << 20, 64 << 10, []step{
			{0, 64 << 10, 0}, {0, 512 << 10, 500 * time.Millisecond},
		}},
		{"waits are rounded up", 3, 1, []step{
			{0, 2, 333333334 * time.Nanosecond},
		}},
		{"n <= 0 is free", 1, 1, []step{{0, 1, 0}, {0, 0, 0}, {0, -1, 0}, {0, 1, time.Second}}},
		{"infinite n", 1, 1, []step{{0, math.Inf(1), math.MaxInt64}, {0, 1, 0}}},
		{"huge debt saturates", 1e-9, 1, []step{{0, 1e12, math.MaxInt64}}},
		{"unlimited", 0, 0, []step{{0, 1e12, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			b := newBucket(tt.rate, tt.burst, c.now)
			for i, s := range tt.steps {
				c.advance(s.advance)
				if got := b.Reserve(s.n); got != s.want {
					t.Fatalf("step %d: Reserve(%v) = %v, want %v", i, s.n, got, s.want)
				}
			}
		})
	}
}

func TestBucketDebtBlocksAllow(t *testing.T) {
	c := newClock()
	b := newBucket(10, 5, c.now)
	if w := b.Reserve(15); w != time.Second {
		t.Fatalf("Reserve(15) = %v, want 1s", w)
	}
	c.advance(999 * time.Millisecond)
	if b.Allow(0.001) {
		t.Fatal("Allow succeeded while the bucket is in debt")
	}
	c.advance(101 * time.Millisecond)
	if !b.Allow(1) || b.Allow(0.01) {
		t.Fatal("after paying the debt and 0.1s more, the bucket should hold exactly 1 token")
	}
}

func TestBucketClockGoingBack(t *testing.T) {
	c := newClock()
	b := newBucket(1, 1, c.now)
	b.Allow(1)
	c.advance(-time.Hour)
	if b.Allow(1) {
		t.Fatal("a clock going back added tokens")
	}
	c.advance(time.Hour + time.Second)
	if !b.Allow(1) {
		t.Fatal("no refill after the clock went forward again")
	}
}

func TestBucketNil(t *testing.T) {
	var b *Bucket
	if !b.Allow(1e9) || b.Reserve(1e9) != 0 {
		t.Fatal("nil *Bucket must not limit")
	}
}

func TestBucketRealClock(t *testing.T) {
	b := NewBucket(1000, 1)
	if !b.Allow(1) {
		t.Fatal("a new bucket must be full")
	}
	w := b.Reserve(10)
	if w <= 0 || w > 10*time.Millisecond {
		t.Fatalf("Reserve(10) at 1000/s = %v, want (0, 10ms]", w)
	}
}

// TestBucketConcurrent hammers one bucket from many goroutines; run with
// -race. With a stopped clock the outcome is exact.
func TestBucketConcurrent(t *testing.T) {
	const goroutines, each = 16, 50
	c := newClock()

	t.Run("allow", func(t *testing.T) {
		b := newBucket(10, 100, c.now)
		var wg sync.WaitGroup
		var mu sync.Mutex
		allowed := 0
		for range goroutines {
			wg.Go(func() {
				n := 0
				for range each {
					if b.Allow(1) {
						n++
					}
				}
				mu.Lock()
				allowed += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if allowed != 100 {
			t.Fatalf("%d allowed, want the burst, 100", allowed)
		}
	})

	t.Run("reserve", func(t *testing.T) {
		b := newBucket(10, 10, c.now)
		waits := make(chan time.Duration, goroutines*each)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					waits <- b.Reserve(1)
				}
			})
		}
		wg.Wait()
		close(waits)
		var got []time.Duration
		for w := range waits {
			got = append(got, w)
		}
		slices.Sort(got)
		// 10 free tokens, then each reservation waits 100ms more.
		for i, w := range got {
			want := time.Duration(max(0, i-9)) * 100 * time.Millisecond
			if d := w - want; d < 0 || d > time.Microsecond {
				t.Fatalf("reservation %d waits %v, want %v", i, w, want)
			}
		}
	})

	t.Run("real clock", func(t *testing.T) {
		b := NewBucket(1e6, 1000)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for i := range each {
					if i%2 == 0 {
						b.Allow(1)
					} else {
						b.Reserve(1)
					}
				}
			})
		}
		wg.Wait()
	})
}
