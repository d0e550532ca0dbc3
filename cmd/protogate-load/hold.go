package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

const holdDoc = `
Opens -conns idle TCP (or TLS) connections to an echo server at up to -rate
new connections per second, holds them open for -hold without sending a
byte, then picks -sample of them at random and checks that each still echoes
one payload of -size bytes. It measures how many connections a server holds
and how fast it accepts them; watch the server's memory meanwhile.

A connection counts as open when its dial (and TLS handshake) completes;
accept_per_s is the connections opened divided by the time it took to open
them all, and seconds is that time. held is the number still open at the
end: a connection the server closed or reset is not. Failed dials and
sampled connections that did not echo count as errors.

Every connection takes a file descriptor: -conns must fit under the
process's RLIMIT_NOFILE (see ulimit -Hn), and the server needs as many.

JSON fields: scenario "hold", target, conns, size, seconds, msgs (sampled
round trips), p50_us, p99_us, p999_us, max_us (of the sample), errors,
mismatches, accept_per_s, held, sample_ok.
`

// HoldConfig configures runHold.
type HoldConfig struct {
	Addr     string
	Conns    int
	Rate     float64 // new connections per second; 0 for no limit
	Hold     time.Duration
	Sample   int
	Size     int
	TLS      *tls.Config
	Label    string
	Timeout  time.Duration // of each dial and of each sampled echo
	Progress time.Duration
	Log      io.Writer

	// opened, when set, is called once every dial has returned, before
	// the hold (tests use it to wait for the server).
	opened func()
}

// dialWorkers is how many dials hold runs at once.
const dialWorkers = 128

func cmdHold(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := HoldConfig{Log: stderr}
	var useTLS, insecure bool
	fs := newFlags("hold", "-addr host:port [flags]", holdDoc, stderr)
	fs.StringVar(&cfg.Addr, "addr", "", "`host:port` of the echo server (required)")
	fs.IntVar(&cfg.Conns, "conns", 15000, "number of connections to open and hold")
	fs.Float64Var(&cfg.Rate, "rate", 2000, "new connections per second at most (0: as fast as they open)")
	fs.DurationVar(&cfg.Hold, "hold", 10*time.Second, "how long to hold the connections open")
	fs.IntVar(&cfg.Sample, "sample", 100, "connections that must still echo at the end")
	fs.IntVar(&cfg.Size, "size", 64, "payload size of the sample's echo in `bytes`")
	fs.BoolVar(&useTLS, "tls", false, "connect with TLS")
	fs.BoolVar(&insecure, "insecure", false, "with -tls, do not verify the server's certificate")
	fs.StringVar(&cfg.Label, "label", "", "`name` of what is measured, the result's target (default -addr)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "timeout of each dial and of each sampled echo")
	fs.DurationVar(&cfg.Progress, "progress", 5*time.Second, "interval of the progress lines on stderr (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Addr == "" {
		return usagef("hold: -addr is required")
	}
	if err := positive("hold", "conns", cfg.Conns, "size", cfg.Size, "timeout", cfg.Timeout); err != nil {
		return err
	}
	if cfg.Rate < 0 || cfg.Hold < 0 || cfg.Sample < 0 {
		return usagef("hold: -rate, -hold and -sample must not be negative")
	}
	if useTLS {
		cfg.TLS = tlsConfig(cfg.Addr, insecure)
	}
	res, notes, err := runHold(ctx, cfg)
	if err != nil {
		return err
	}
	return report(res, stdout, stderr, notes...)
}

// runHold runs the hold scenario and returns its result and notes for the
// summary. It fails when no connection could be opened.
func runHold(ctx context.Context, cfg HoldConfig) (*loadstat.Result, []string, error) {
	cfg.Conns = max(cfg.Conns, 1)
	if cfg.Size <= 0 {
		cfg.Size = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if err := checkFiles(cfg.Conns); err != nil {
		return nil, nil, err
	}
	errs := new(errLog)
	d := dialer{addr: cfg.Addr, tls: cfg.TLS, timeout: cfg.Timeout}
	conns := make([]net.Conn, cfg.Conns)
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
	}
	var opened atomic.Int64
	var lastOpen atomic.Int64 // clock of the latest dial to complete
	quit := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress(cfg.Log, cfg.Progress, quit, func(elapsed time.Duration) string {
			return fmt.Sprintf("hold %s: %v: %d of %d open, errors %d", firstOf(cfg.Label, cfg.Addr), elapsed, opened.Load(), cfg.Conns, errs.n.Load())
		})
	}()
	start := clock()
	parallel(ctx, cfg.Conns, dialWorkers, func(i int) {
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
			if ctx.Err() == nil {
				errs.add(err)
			}
			return
		}
		now := clock()
		conns[i] = nc
		opened.Add(1)
		for {
			last := lastOpen.Load()
			if now <= last || lastOpen.CompareAndSwap(last, now) {
				break
			}
		}
	})
	close(quit)
	<-progressDone
	n := int(opened.Load())
	if n == 0 {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("protogate-load: hold: %w", err)
		}
		return nil, nil, fmt.Errorf("protogate-load: hold: no connection to %s: %w", cfg.Addr, errs.first)
	}
	openTime := time.Duration(lastOpen.Load() - start)
	if cfg.opened != nil {
		cfg.opened()
	}

	if ctx.Err() == nil && cfg.Hold > 0 {
		t := time.NewTimer(cfg.Hold)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}

	// The sample: connections picked at random among those open.
	live := make([]int, 0, n)
	for i, nc := range conns {
		if nc != nil {
			live = append(live, i)
		}
	}
	rand.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	sample := live[:min(cfg.Sample, len(live))]
	rtt := make([]time.Duration, len(sample)) // 0: no echo
	var sampleOK atomic.Int64
	var mism atomic.Uint64
	parallel(context.WithoutCancel(ctx), len(sample), len(sample), func(k int) {
		i := sample[k]
		nc := conns[i]
		msg := newTemplate(i, cfg.Size)
		stamp(msg, i, 0)
		in := make([]byte, cfg.Size)
		nc.SetDeadline(time.Now().Add(cfg.Timeout))
		t0 := clock()
		_, err := nc.Write(msg)
		if err == nil {
			_, err = io.ReadFull(nc, in)
		}
		if err != nil {
			errs.add(fmt.Errorf("sampled connection %d: %w", i, err))
			nc.Close()
			conns[i] = nil
			return
		}
		rtt[k] = max(time.Duration(clock()-t0), 1)
		nc.SetDeadline(time.Time{})
		if bad := diff(in, msg); bad > 0 {
			mism.Add(bad)
			return
		}
		sampleOK.Add(1)
	})

	held := 0
	for _, nc := range conns {
		if nc == nil {
			continue
		}
		if tc, ok := nc.(*tls.Conn); ok {
			nc = tc.NetConn()
		}
		if sc, ok := nc.(syscall.Conn); !ok || !peekClosed(sc) {
			held++
		}
	}
	for _, nc := range conns {
		if nc != nil {
			nc.Close()
		}
	}

	var h loadstat.Histogram
	for _, d := range rtt {
		if d > 0 {
			h.Record(d)
		}
	}
	res := &loadstat.Result{
		Scenario: "hold",
		Target:   firstOf(cfg.Label, cfg.Addr),
		Conns:    cfg.Conns,
		Size:     cfg.Size,
		Seconds:  seconds(int64(openTime)),
		Msgs:     h.Count(),
		Errors:   errs.n.Load(),
		Mismatch: mism.Load(),
		AcceptPS: math.Round(rate(float64(n), openTime)),
		Held:     held,
		SampleOK: int(sampleOK.Load()),
	}
	res.SetLatency(&h)
	notes := []string{fmt.Sprintf("  opened %d of %d in %.3fs (%.0f/s), held %d, sample %d of %d echoed",
		n, cfg.Conns, res.Seconds, res.AcceptPS, res.Held, res.SampleOK, len(sample))}
	return res, append(notes, errs.lines()...), nil
}
