package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

const echoDoc = `
Opens -conns TCP (or TLS) connections to a server that echoes raw bytes, such
as serve-echo or a gateway running builtin:echo. Each connection sends
payloads of -size bytes and reads the same bytes back; with -depth above 1
it keeps that many payloads in flight (pipelined), with -depth 1 it waits
for each reply before sending the next (ping-pong).

Every byte that comes back is checked: a payload starts with its
connection's index and its sequence number, followed by a pattern, and each
byte that differs counts as a mismatch. The latency of a message runs from
its send to the arrival of its last byte. Messages sent during -warmup are
echoed and checked but not measured.

Connections are opened 64 at a time, and with -rate at most that many a
second (for thousands of connections: the server's accept queue and the
ephemeral ports are spared a burst); the warm-up starts once all are open.

The run lasts -duration after the warm-up, or, with -messages, until that
many round trips (all connections together, warm-up excluded) have
completed; -duration then bounds the run if it is given. A connection that
fails, or gets no reply for -timeout, is closed and counted as an error;
the others go on.

JSON fields: scenario "echo", target, conns, size, depth, seconds, msgs,
msgs_per_s, p50_us, p99_us, p999_us, max_us, errors, mismatches.
`

// EchoConfig configures runEcho.
type EchoConfig struct {
	Addr     string
	Conns    int
	Size     int           // payload bytes
	Depth    int           // payloads in flight per connection
	Duration time.Duration // measured time; with Messages, the longest run
	Warmup   time.Duration
	Messages int64         // with > 0, stop after this many measured round trips
	Rate     float64       // new connections per second at most; 0 for no limit
	TLS      *tls.Config   // nil for plain TCP
	Label    string        // Result.Target; default Addr
	Timeout  time.Duration // a connection without a reply for this long fails
	Progress time.Duration // a progress line every Progress on Log; 0 for none
	Log      io.Writer
}

// defaults fills in the zero fields the way the flags' defaults do (except
// Duration, which stays as given).
func (cfg *EchoConfig) defaults() {
	cfg.Conns = max(cfg.Conns, 1)
	if cfg.Size <= 0 {
		cfg.Size = 64
	}
	cfg.Depth = max(cfg.Depth, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
}

func cmdEcho(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := EchoConfig{Log: stderr}
	var useTLS, insecure bool
	fs := newFlags("echo", "-addr host:port [flags]", echoDoc, stderr)
	fs.StringVar(&cfg.Addr, "addr", "", "`host:port` of the echo server (required)")
	fs.IntVar(&cfg.Conns, "conns", 100, "number of connections")
	fs.IntVar(&cfg.Size, "size", 64, "payload size in `bytes`")
	fs.IntVar(&cfg.Depth, "depth", 1, "payloads in flight per connection (1: ping-pong)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time after the warm-up (with -messages: the longest run, unbounded unless given)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "time before measuring starts")
	fs.Float64Var(&cfg.Rate, "rate", 0, "new connections per second at most while opening them (0: 64 dials at a time, no other limit)")
	fs.Int64Var(&cfg.Messages, "messages", 0, "stop after this many round trips in all, warm-up excluded (0: run for -duration)")
	fs.BoolVar(&useTLS, "tls", false, "connect with TLS")
	fs.BoolVar(&insecure, "insecure", false, "with -tls, do not verify the server's certificate")
	fs.StringVar(&cfg.Label, "label", "", "`name` of what is measured, the result's target (default -addr)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "a connection without a reply for this long is closed and counted as an error")
	fs.DurationVar(&cfg.Progress, "progress", 5*time.Second, "interval of the progress lines on stderr (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Addr == "" {
		return usagef("echo: -addr is required")
	}
	cfg.Duration = runLength(fs, cfg.Duration, cfg.Messages > 0)
	if err := positive("echo", "conns", cfg.Conns, "size", cfg.Size, "depth", cfg.Depth, "duration", cfg.Duration, "timeout", cfg.Timeout); err != nil {
		return err
	}
	if cfg.Warmup < 0 || cfg.Messages < 0 || cfg.Rate < 0 {
		return usagef("echo: -warmup, -messages and -rate must not be negative")
	}
	if useTLS {
		cfg.TLS = tlsConfig(cfg.Addr, insecure)
	}
	res, notes, err := runEcho(ctx, cfg)
	if err != nil {
		return err
	}
	return report(res, stdout, stderr, notes...)
}

// dialTimeout bounds each dial of echo, TLS handshake included.
const dialTimeout = 10 * time.Second

// errStalled closes a connection that got no reply for the timeout.
var errStalled = errors.New("no reply within the timeout")

// echoConn is one connection of an echo run and what it measured.
type echoConn struct {
	idx  int
	nc   net.Conn
	hist loadstat.Histogram
	// rx counts the round trips completed, warm-up included: the watchdog
	// and the progress line read it.
	rx       atomic.Uint64
	mism     atomic.Uint64
	failed   atomic.Bool // counted as an error and closed
	finished atomic.Bool // done with its share of -messages, or stopped
}

// echoRun is the state shared by the connections of a run.
type echoRun struct {
	runState
	cfg   EchoConfig
	quota *quota // nil unless cfg.Messages > 0
}

// fail counts err against c and closes it, unless the run or c is ending,
// which is why its reads and writes fail.
func (r *echoRun) fail(c *echoConn, err error) {
	if r.stopping.Load() || c.finished.Load() {
		return
	}
	if c.failed.CompareAndSwap(false, true) {
		r.errs.add(err)
		c.nc.Close()
	}
}

// runEcho runs the echo scenario. It fails only when no connection could be
// opened, or when ctx ends before the run starts.
func runEcho(ctx context.Context, cfg EchoConfig) (*loadstat.Result, []string, error) {
	cfg.defaults()
	if err := checkFiles(cfg.Conns); err != nil {
		return nil, nil, err
	}
	errs := new(errLog)
	d := dialer{addr: cfg.Addr, tls: cfg.TLS, timeout: dialTimeout}
	all := make([]*echoConn, cfg.Conns)
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	start := clock()
	parallel(ctx, cfg.Conns, 64, func(i int) {
		if interval > 0 {
			if wait := time.Until(at(start + int64(i)*int64(interval))); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		nc, err := d.dial(ctx)
		if err != nil {
			errs.add(err)
			return
		}
		all[i] = &echoConn{idx: i, nc: nc}
	})
	var conns []*echoConn
	for _, c := range all {
		if c != nil {
			conns = append(conns, c)
		}
	}
	closeAll := func() {
		for _, c := range conns {
			c.nc.Close()
		}
	}
	if err := ctx.Err(); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("protogate-load: echo: %w", err)
	}
	if len(conns) == 0 {
		return nil, nil, fmt.Errorf("protogate-load: echo: no connection to %s: %w", cfg.Addr, errs.first)
	}

	r := &echoRun{runState: newRunState(cfg.Warmup, errs), cfg: cfg}
	if cfg.Messages > 0 {
		r.quota = new(quota)
		r.quota.left.Store(cfg.Messages)
	}
	end := at(r.from + int64(cfg.Duration))

	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Depth == 1 {
				r.pingPong(c)
			} else {
				r.pipelined(c)
			}
			c.finished.Store(true)
		}()
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()
	quit := make(chan struct{})
	var helpers sync.WaitGroup
	helpers.Add(2)
	go func() {
		defer helpers.Done()
		r.watchdog(conns, quit)
	}()
	go func() {
		defer helpers.Done()
		r.progress(conns, quit)
	}()

	stopAt := r.wait(ctx, end, allDone)
	for _, c := range conns {
		c.nc.SetDeadline(aLongTimeAgo)
	}
	<-allDone
	close(quit)
	helpers.Wait()
	closeAll()

	res := &loadstat.Result{
		Scenario: "echo",
		Target:   firstOf(cfg.Label, cfg.Addr),
		Conns:    cfg.Conns,
		Size:     cfg.Size,
		Depth:    cfg.Depth,
		Seconds:  seconds(stopAt - r.from),
	}
	var h loadstat.Histogram
	for _, c := range conns {
		h.Merge(&c.hist)
		res.Mismatch += c.mism.Load()
	}
	res.Errors = errs.n.Load()
	res.Msgs = h.Count()
	res.MsgsPerS = math.Round(rate(float64(res.Msgs), time.Duration(stopAt-r.from)))
	res.SetLatency(&h)
	return res, errs.lines(), nil
}

// firstOf returns a unless it is empty, else b.
func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// seconds turns a clock difference into the Result's seconds, rounded to the
// millisecond, never negative.
func seconds(d int64) float64 {
	return math.Round(max(float64(d), 0)/1e6) / 1e3
}

// pingPong sends one payload and waits for its echo, until the run stops,
// c fails, or the quota is spent.
func (r *echoRun) pingPong(c *echoConn) {
	msg := newTemplate(c.idx, r.cfg.Size)
	in := make([]byte, r.cfg.Size)
	var (
		seq, rx          uint64
		chunk, sent, got int64 // measured: quota in hand, sent, answered
	)
	for !r.stopping.Load() {
		t0 := clock()
		measured := t0 >= r.from
		if measured {
			if r.quota != nil {
				if chunk == 0 {
					if chunk = r.quota.take(quotaChunk); chunk == 0 {
						break
					}
				}
				chunk--
			}
			sent++
		}
		stamp(msg, c.idx, seq)
		if _, err := c.nc.Write(msg); err != nil {
			r.fail(c, err)
			break
		}
		if _, err := io.ReadFull(c.nc, in); err != nil {
			r.fail(c, err)
			break
		}
		t1 := clock()
		if bad := diff(in, msg); bad > 0 {
			c.mism.Add(bad)
		}
		if measured {
			c.hist.Record(time.Duration(t1 - t0))
			got++
		}
		rx++
		c.rx.Store(rx)
		seq++
	}
	if r.quota != nil {
		r.quota.give(chunk + sent - got)
	}
}

// writerState is what a pipelined writer leaves for its reader.
type writerState struct {
	sent  int64 // measured payloads sent
	chunk int64 // quota in hand
}

// pipelined keeps cfg.Depth payloads in flight on c: a writer goroutine
// sends one for every token, this one reads the echoes and gives the
// tokens back.
func (r *echoRun) pipelined(c *echoConn) {
	depth, size := r.cfg.Depth, r.cfg.Size
	tokens := make(chan struct{}, depth)
	for range depth {
		tokens <- struct{}{}
	}
	// sentAt[seq%depth] is the clock at which payload seq was sent, -1
	// when it is not measured. The writer reuses a slot only once the
	// reader has given the payload's token back.
	sentAt := make([]atomic.Int64, depth)
	for i := range sentAt {
		sentAt[i].Store(-1)
	}
	readerDone := make(chan struct{})
	writerDone := make(chan struct{})
	var w writerState
	go func() {
		defer close(writerDone)
		r.writer(c, tokens, sentAt, readerDone, &w)
	}()

	want := newTemplate(c.idx, size)
	in := make([]byte, size)
	br := bufio.NewReaderSize(c.nc, max(16<<10, 2*size))
	var got int64
	var rx uint64
	for seq := uint64(0); ; seq++ {
		if _, err := io.ReadFull(br, in); err != nil {
			r.fail(c, err)
			break
		}
		t1 := clock()
		stamp(want, c.idx, seq)
		if bad := diff(in, want); bad > 0 {
			c.mism.Add(bad)
		}
		if t0 := sentAt[seq%uint64(depth)].Load(); t0 >= 0 {
			c.hist.Record(time.Duration(t1 - t0))
			got++
		}
		rx++
		c.rx.Store(rx)
		select {
		case tokens <- struct{}{}:
		default: // more came back than was sent; the mismatches say so
		}
	}
	close(readerDone)
	<-writerDone
	if r.quota != nil {
		r.quota.give(w.chunk + w.sent - got)
	}
}

// writer sends a payload for every token, several in one write when
// several tokens are at hand.
func (r *echoRun) writer(c *echoConn, tokens chan struct{}, sentAt []atomic.Int64, readerDone <-chan struct{}, w *writerState) {
	depth, size := len(sentAt), r.cfg.Size
	maxBatch := min(depth, max(1, (64<<10)/size))
	tmpl := newTemplate(c.idx, size)
	buf := make([]byte, maxBatch*size)
	for i := range maxBatch {
		copy(buf[i*size:], tmpl) // the pattern stays; stamp changes headers
	}
	var seq uint64
	held := 0 // tokens in hand
	for {
		if held == 0 {
			select {
			case <-tokens:
				held++
			case <-r.stop:
				return
			case <-readerDone:
				return
			}
		}
	more:
		for held < maxBatch {
			select {
			case <-tokens:
				held++
			default:
				break more
			}
		}
		k := int64(held)
		t0 := clock()
		measured := t0 >= r.from
		if measured && r.quota != nil {
			if w.chunk < k {
				w.chunk += r.quota.take(max(quotaChunk, k-w.chunk))
			}
			k = min(k, w.chunk)
			w.chunk -= k
			if k == 0 {
				r.finish(c, tokens, held, readerDone)
				return
			}
		}
		for i := range k {
			stamp(buf[i*int64(size):], c.idx, seq+uint64(i))
			v := int64(-1)
			if measured {
				v = t0
			}
			sentAt[(seq+uint64(i))%uint64(depth)].Store(v)
		}
		if _, err := c.nc.Write(buf[:k*int64(size)]); err != nil {
			r.fail(c, err)
			return
		}
		held -= int(k)
		seq += uint64(k)
		if measured {
			w.sent += k
		}
	}
}

// finish waits for the echoes of every payload in flight (all tokens back),
// then marks c finished and wakes its reader.
func (r *echoRun) finish(c *echoConn, tokens chan struct{}, held int, readerDone <-chan struct{}) {
	for held < cap(tokens) {
		select {
		case <-tokens:
			held++
		case <-r.stop:
			return
		case <-readerDone:
			return
		}
	}
	c.finished.Store(true)
	c.nc.SetReadDeadline(aLongTimeAgo)
}

// watchdog closes, as failed, every connection that completed no round
// trip during a whole cfg.Timeout.
func (r *echoRun) watchdog(conns []*echoConn, quit <-chan struct{}) {
	last := make([]uint64, len(conns))
	t := time.NewTicker(r.cfg.Timeout)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		for i, c := range conns {
			rx := c.rx.Load()
			if rx == last[i] && !c.failed.Load() && !c.finished.Load() {
				r.fail(c, fmt.Errorf("connection %d: %w (%v)", c.idx, errStalled, r.cfg.Timeout))
			}
			last[i] = rx
		}
	}
}

// progress writes a progress line every cfg.Progress.
func (r *echoRun) progress(conns []*echoConn, quit <-chan struct{}) {
	var prev uint64
	progress(r.cfg.Log, r.cfg.Progress, quit, func(elapsed time.Duration) string {
		var rx, mism uint64
		for _, c := range conns {
			rx += c.rx.Load()
			mism += c.mism.Load()
		}
		s := fmt.Sprintf("echo %s: %v: %d round trips, %.0f/s over the last %v",
			firstOf(r.cfg.Label, r.cfg.Addr), elapsed, rx, rate(float64(rx-prev), r.cfg.Progress), r.cfg.Progress)
		if r.quota != nil {
			s += fmt.Sprintf(", %d of %d measured", r.cfg.Messages-max(r.quota.left.Load(), 0), r.cfg.Messages)
		}
		prev = rx
		return s + fmt.Sprintf(", errors %d, mismatches %d", r.errs.n.Load(), mism)
	})
}
