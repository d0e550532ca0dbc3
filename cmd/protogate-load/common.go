package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

// base is the origin of clock.
var base = time.Now()

// clock returns the monotonic time since base in nanoseconds: one
// time.Now, and an int64 that goroutines can share through atomics.
func clock() int64 { return int64(time.Since(base)) }

// at turns a clock value back into a time.Time, for deadlines.
func at(c int64) time.Time { return base.Add(time.Duration(c)) }

// aLongTimeAgo is a deadline in the past: setting it unblocks every read and
// write in progress on a connection.
var aLongTimeAgo = time.Unix(1, 0)

// headerLen is the length of the header that starts every payload of echo,
// hold and udp: the connection index (4 bytes) and the message's sequence
// number (8 bytes), big endian. Shorter payloads carry its first bytes.
const headerLen = 12

// newTemplate returns a payload of size bytes for connection idx: a pattern
// that depends on idx, whose header stamp fills in for each message.
func newTemplate(idx, size int) []byte {
	b := make([]byte, size)
	x := uint32(idx)*2654435761 + 0x9e3779b9 // never 0
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// stamp writes the header of message seq of connection idx into b.
func stamp(b []byte, idx int, seq uint64) {
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[:4], uint32(idx))
	binary.BigEndian.PutUint64(h[4:], seq)
	copy(b, h[:])
}

// header reads the connection index and sequence number of a payload;
// ok is false when b is too short to hold them.
func header(b []byte) (idx int, seq uint64, ok bool) {
	if len(b) < headerLen {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint32(b[:4])), binary.BigEndian.Uint64(b[4:headerLen]), true
}

// diff counts the bytes of got that differ from want, a length difference
// counting as that many bytes.
func diff(got, want []byte) uint64 {
	if bytes.Equal(got, want) {
		return 0
	}
	n := min(len(got), len(want))
	bad := uint64(max(len(got), len(want)) - n)
	for i := range n {
		if got[i] != want[i] {
			bad++
		}
	}
	return bad
}

// quota hands out the messages of a run with a fixed total (-messages) to
// the connections, a chunk at a time, so that they share one atomic
// operation per chunk instead of one per message.
type quota struct{ left atomic.Int64 }

// quotaChunk is how many messages a connection takes at a time.
const quotaChunk = 64

// take grants up to n messages; 0 means the quota is spent.
func (q *quota) take(n int64) int64 {
	for {
		left := q.left.Load()
		if left <= 0 {
			return 0
		}
		g := min(n, left)
		if q.left.CompareAndSwap(left, left-g) {
			return g
		}
	}
}

// give returns n messages that were taken but will not be sent or answered.
func (q *quota) give(n int64) {
	if n > 0 {
		q.left.Add(n)
	}
}

// dialer opens the TCP or TLS connections of echo and hold.
type dialer struct {
	addr    string
	tls     *tls.Config // nil for plain TCP
	timeout time.Duration
}

// dial opens one connection; a TLS connection has completed its handshake.
func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	nd := net.Dialer{}
	nc, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	if d.tls == nil {
		return nc, nil
	}
	tc := tls.Client(nc, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// tlsConfig is the client configuration of -tls for addr.
func tlsConfig(addr string, insecure bool) *tls.Config {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return &tls.Config{ServerName: host, InsecureSkipVerify: insecure}
}

// parallel runs f(0) ... f(n-1) on at most workers goroutines and returns
// when all have returned or ctx is done (then the remaining ones are not
// started).
func parallel(ctx context.Context, n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// progress calls line every interval until stop is closed, and writes what
// it returns to w.
func progress(w io.Writer, interval time.Duration, stop <-chan struct{}, line func(elapsed time.Duration) string) {
	if interval <= 0 || w == nil {
		return
	}
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			io.WriteString(w, line(now.Sub(start).Round(min(interval, time.Second)))+"\n")
		}
	}
}

// rate returns n per second over d, 0 for an empty d.
func rate(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

// report prints r as the tool's result: one JSON line on stdout and a
// summary, plus the extra lines, on stderr.
func report(r *loadstat.Result, stdout, stderr io.Writer, extra ...string) error {
	if err := r.WriteJSON(stdout); err != nil {
		return fmt.Errorf("protogate-load: writing the result: %w", err)
	}
	fmt.Fprintln(stderr, r.Summary())
	for _, e := range extra {
		fmt.Fprintln(stderr, e)
	}
	return nil
}

// forever stands for a -duration not given with -messages: the run ends
// when the messages are done (or on a signal).
const forever = time.Duration(1 << 62)

// runLength returns the duration a run with the flags' values lasts:
// with messages and no explicit -duration, forever.
func runLength(fs *flag.FlagSet, d time.Duration, messages bool) time.Duration {
	if messages && !isSet(fs, "duration") {
		return forever
	}
	return d
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// checkFiles returns an error when conns connections cannot be open at once
// under RLIMIT_NOFILE.
func checkFiles(conns int) error {
	limit, ok := fileLimit()
	if !ok {
		return nil
	}
	// A few descriptors are taken already (std streams, the poller, a
	// listener or two).
	const spare = 32
	if uint64(conns)+spare > limit {
		return fmt.Errorf("protogate-load: %d connections need about %d open files, but RLIMIT_NOFILE allows this process %d (raise the hard limit, ulimit -Hn, or use fewer connections)",
			conns, conns+spare, limit)
	}
	return nil
}

// positive returns a usage error unless every named value is > 0.
func positive(cmd string, vals ...any) error {
	for i := 0; i+1 < len(vals); i += 2 {
		name := vals[i].(string)
		bad := false
		switch v := vals[i+1].(type) {
		case int:
			bad = v <= 0
		case time.Duration:
			bad = v <= 0
		}
		if bad {
			return usagef("%s: -%s must be positive", cmd, name)
		}
	}
	return nil
}

// errLog counts errors and keeps the first one, for the summary.
type errLog struct {
	n     atomic.Uint64
	once  sync.Once
	first error
}

func (e *errLog) add(err error) {
	e.once.Do(func() { e.first = err })
	e.n.Add(1)
}

// lines describes the first error, if any, for the summary. Call it once
// the run is over.
func (e *errLog) lines() []string {
	if e == nil || e.n.Load() == 0 {
		return nil
	}
	return []string{fmt.Sprintf("  %d errors; the first: %v", e.n.Load(), e.first)}
}

// runState is what the goroutines of a timed run share.
type runState struct {
	from     int64 // clock at which measuring starts
	stopping atomic.Bool
	stop     chan struct{} // closed once stopping is set
	errs     *errLog
}

func newRunState(warmup time.Duration, errs *errLog) runState {
	return runState{from: clock() + int64(warmup), stop: make(chan struct{}), errs: errs}
}

// wait waits until end, until done is closed or until ctx is done, then
// sets stopping, closes stop and returns the clock.
func (s *runState) wait(ctx context.Context, end time.Time, done <-chan struct{}) int64 {
	timer := time.NewTimer(time.Until(end))
	select {
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	now := clock()
	s.stopping.Store(true)
	close(s.stop)
	return now
}
