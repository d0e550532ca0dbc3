package limit

import (
	"math"
	"sync"
	"time"
)

// Bucket is a token bucket: it holds up to Burst tokens, starts full and
// gains Rate tokens per second. Tokens stand for whatever the caller limits,
// messages or bytes. It measures time with the monotonic clock, so wall
// clock changes do not affect it.
//
// A Bucket is safe for concurrent use. A nil *Bucket, the zero Bucket and
// one made with a rate of 0 limit nothing.
type Bucket struct {
	rate  float64 // tokens per second; 0: no limit
	burst float64
	now   func() time.Time

	mu     sync.Mutex
	tokens float64   // below 0 when Reserve went into debt
	last   time.Time // when tokens was brought up to date
}

// NewBucket returns a full bucket that gains rate tokens per second and holds
// at most burst. A rate that is not a positive finite number (0, negative,
// NaN or +Inf) or a burst of +Inf means no limit. A burst <= 0 means one
// second's worth of tokens, but at least 1.
func NewBucket(rate float64, burst float64) *Bucket {
	return newBucket(rate, burst, time.Now)
}

// newBucket is NewBucket with a clock, for tests.
func newBucket(rate, burst float64, now func() time.Time) *Bucket {
	b := &Bucket{now: now}
	if !(rate > 0) || math.IsInf(rate, 1) || math.IsInf(burst, 1) {
		return b
	}
	if !(burst > 0) {
		burst = max(rate, 1)
	}
	b.rate, b.burst, b.tokens, b.last = rate, burst, burst, now()
	return b
}

// Allow takes n tokens and reports true if the bucket holds at least n;
// otherwise it takes nothing and reports false. It never waits. An n larger
// than the burst is never allowed; n <= 0 always is. A UDP listener drops
// the datagram when Allow reports false.
func (b *Bucket) Allow(n float64) bool {
	if b == nil || b.rate == 0 || !(n > 0) {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// Reserve takes n tokens now, even those the bucket does not hold yet, and
// returns how long the caller must wait before it proceeds: 0 if the bucket
// held n tokens, otherwise the time the bucket needs to pay back the debt.
// n may exceed the burst. A TCP reader that calls Reserve with the size of
// each read and sleeps the returned duration before its next read holds the
// connection to the rate, and pushes back on the peer through TCP flow
// control.
//
// Reserve with n <= 0 returns 0 and takes nothing; with n = +Inf it returns
// the longest time.Duration and takes nothing.
func (b *Bucket) Reserve(n float64) time.Duration {
	if b == nil || b.rate == 0 || !(n > 0) {
		return 0
	}
	if math.IsInf(n, 1) {
		return math.MaxInt64
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	// Round up, so that after the wait the debt is paid in full.
	wait := math.Ceil(-b.tokens / b.rate * float64(time.Second))
	if wait >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(wait)
}

// refill adds the tokens gained since the last call. b.mu must be held.
func (b *Bucket) refill() {
	now := b.now()
	elapsed := now.Sub(b.last)
	if elapsed <= 0 {
		return
	}
	b.last = now
	if b.tokens < b.burst {
		b.tokens = min(b.burst, b.tokens+elapsed.Seconds()*b.rate)
	}
}
