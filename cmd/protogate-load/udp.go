package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/protogate/protogate/internal/loadstat"
)

const udpDoc = `
Opens -conns UDP sockets, each on its own local port, towards a server that
echoes datagrams (serve-echo -udp, or a gateway's UDP listener running
builtin:echo). Each socket sends a datagram of -size bytes and waits for it
to come back (ping-pong); a datagram not answered within -timeout counts as
lost and the socket moves on to the next one. A late answer is recognized by
its sequence number and ignored. The run lasts -duration after -warmup, or,
with -messages, until that many datagrams (all sockets together, warm-up
excluded) were sent and answered or lost; -duration then bounds the run if
it is given.

Before the run, each socket must get an answer to one of 3 probes; a socket
that gets none is counted as an error and left out, and the command fails
when none does. Payloads are checked as echo checks them.

JSON fields: scenario "udp", target, conns, size, seconds, msgs (answered
datagrams), msgs_per_s, p50_us, p99_us, p999_us, max_us, errors,
mismatches, lost.
`

// UDPConfig configures runUDP.
type UDPConfig struct {
	Addr     string
	Conns    int
	Size     int
	Duration time.Duration
	Warmup   time.Duration
	Timeout  time.Duration // a datagram not answered within it is lost
	Messages int64         // with > 0, stop after this many measured datagrams
	Label    string
	Progress time.Duration
	Log      io.Writer
	// DTLS, when set, makes every socket a DTLS client (the dtls command):
	// the handshake completes before the probes, and each datagram is one
	// DTLS record.
	DTLS *dtls.Config
}

// probes is how many datagrams a socket sends before the run to find out
// whether the server answers.
const probes = 3

func cmdUDP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := UDPConfig{Log: stderr}
	fs := newFlags("udp", "-addr host:port [flags]", udpDoc, stderr)
	fs.StringVar(&cfg.Addr, "addr", "", "`host:port` of the UDP echo server (required)")
	fs.IntVar(&cfg.Conns, "conns", 100, "number of sockets")
	fs.IntVar(&cfg.Size, "size", 64, "datagram size in `bytes`")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time after the warm-up (with -messages: the longest run, unbounded unless given)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "time before measuring starts")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Second, "a datagram not answered within this time is lost")
	fs.Int64Var(&cfg.Messages, "messages", 0, "stop after this many datagrams in all, warm-up excluded (0: run for -duration)")
	fs.StringVar(&cfg.Label, "label", "", "`name` of what is measured, the result's target (default -addr)")
	fs.DurationVar(&cfg.Progress, "progress", 5*time.Second, "interval of the progress lines on stderr (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Addr == "" {
		return usagef("udp: -addr is required")
	}
	cfg.Duration = runLength(fs, cfg.Duration, cfg.Messages > 0)
	if err := positive("udp", "conns", cfg.Conns, "size", cfg.Size, "duration", cfg.Duration, "timeout", cfg.Timeout); err != nil {
		return err
	}
	if cfg.Size > 65507 {
		return usagef("udp: -size must be at most 65507, the largest UDP payload")
	}
	if cfg.Warmup < 0 || cfg.Messages < 0 {
		return usagef("udp: -warmup and -messages must not be negative")
	}
	res, notes, err := runUDP(ctx, cfg)
	if err != nil {
		return err
	}
	return report(res, stdout, stderr, notes...)
}

// udpConn is one socket of a udp run and what it measured.
type udpConn struct {
	idx  int
	uc   net.Conn // a connected *net.UDPConn, or a DTLS client over one
	hist loadstat.Histogram
	rx   atomic.Uint64 // datagrams sent, for the progress line
	lost atomic.Uint64 // measured datagrams not answered
	mism atomic.Uint64
}

type udpRun struct {
	runState
	cfg   UDPConfig
	quota *quota // nil unless cfg.Messages > 0
}

// runUDP runs the udp scenario. It fails when no socket got an answer to
// its probes.
func runUDP(ctx context.Context, cfg UDPConfig) (*loadstat.Result, []string, error) {
	cfg.Conns = max(cfg.Conns, 1)
	if cfg.Size <= 0 {
		cfg.Size = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if err := checkFiles(cfg.Conns); err != nil {
		return nil, nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("protogate-load: udp: %w", err)
	}
	errs := new(errLog)
	all := make([]*udpConn, cfg.Conns)
	parallel(ctx, cfg.Conns, 64, func(i int) {
		var uc net.Conn
		var err error
		if cfg.DTLS != nil {
			uc, err = dialDTLS(ctx, raddr, cfg.DTLS, cfg.Timeout)
		} else {
			uc, err = net.DialUDP("udp", nil, raddr)
		}
		if err != nil {
			errs.add(err)
			return
		}
		c := &udpConn{idx: i, uc: uc}
		if err := probe(c, cfg.Size, cfg.Timeout); err != nil {
			errs.add(err)
			uc.Close()
			return
		}
		all[i] = c
	})
	var conns []*udpConn
	for _, c := range all {
		if c != nil {
			conns = append(conns, c)
		}
	}
	closeAll := func() {
		for _, c := range conns {
			c.uc.Close()
		}
	}
	if err := ctx.Err(); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("protogate-load: udp: %w", err)
	}
	if len(conns) == 0 {
		return nil, nil, fmt.Errorf("protogate-load: udp: no answer from %s: %w", cfg.Addr, errs.first)
	}

	r := &udpRun{runState: newRunState(cfg.Warmup, errs), cfg: cfg}
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
			r.loop(c)
		}()
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()
	quit := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		var prev uint64
		progress(cfg.Log, cfg.Progress, quit, func(elapsed time.Duration) string {
			var rx, lost, mism uint64
			for _, c := range conns {
				rx += c.rx.Load()
				lost += c.lost.Load()
				mism += c.mism.Load()
			}
			defer func() { prev = rx }()
			return fmt.Sprintf("udp %s: %v: %d datagrams, %.0f/s over the last %v, lost %d, errors %d, mismatches %d",
				firstOf(cfg.Label, cfg.Addr), elapsed, rx, rate(float64(rx-prev), cfg.Progress), cfg.Progress, lost, errs.n.Load(), mism)
		})
	}()

	stopAt := r.wait(ctx, end, allDone)
	for _, c := range conns {
		c.uc.SetReadDeadline(aLongTimeAgo)
	}
	<-allDone
	close(quit)
	<-progressDone
	closeAll()

	scenario := "udp"
	if cfg.DTLS != nil {
		scenario = "dtls"
	}
	res := &loadstat.Result{
		Scenario: scenario,
		Target:   firstOf(cfg.Label, cfg.Addr),
		Conns:    cfg.Conns,
		Size:     cfg.Size,
		Seconds:  seconds(stopAt - r.from),
	}
	var h loadstat.Histogram
	for _, c := range conns {
		h.Merge(&c.hist)
		res.Mismatch += c.mism.Load()
		res.Lost += c.lost.Load()
	}
	res.Errors = errs.n.Load()
	res.Msgs = h.Count()
	res.MsgsPerS = math.Round(rate(float64(res.Msgs), time.Duration(stopAt-r.from)))
	res.SetLatency(&h)
	return res, errs.lines(), nil
}

// isTimeout reports a deadline that passed (pion/dtls reports its own
// timeout error, a net.Error).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// probe sends up to probes datagrams (sequence numbers 0, 1, ...) until one
// is answered.
func probe(c *udpConn, size int, timeout time.Duration) error {
	msg := newTemplate(c.idx, size)
	in := make([]byte, max(2*size, 2048))
	var last error
	for seq := range uint64(probes) {
		stamp(msg, c.idx, seq)
		c.uc.SetReadDeadline(time.Now().Add(timeout))
		if _, err := c.uc.Write(msg); err != nil {
			last = err
			continue
		}
		for {
			n, err := c.uc.Read(in)
			if err != nil {
				if !isTimeout(err) {
					last = err
				}
				break
			}
			if idx, s, ok := header(in[:n]); ok && (idx != c.idx || s != seq) {
				continue // an earlier probe's answer, or garbage
			}
			return nil
		}
	}
	if last != nil {
		return fmt.Errorf("socket %d: %w", c.idx, last)
	}
	return fmt.Errorf("socket %d: no answer to %d datagrams within %v each", c.idx, probes, timeout)
}

// loop sends a datagram and waits for its answer until the run stops.
func (r *udpRun) loop(c *udpConn) {
	timeout := int64(r.cfg.Timeout)
	msg := newTemplate(c.idx, r.cfg.Size)
	in := make([]byte, max(2*r.cfg.Size, 2048)) // a longer answer shows as mismatches
	var rx uint64
	var chunk int64 // quota in hand
	defer func() {
		if r.quota != nil {
			r.quota.give(chunk)
		}
	}()
	for seq := uint64(probes); !r.stopping.Load(); seq++ {
		t0 := clock()
		measured := t0 >= r.from
		if measured && r.quota != nil {
			if chunk == 0 {
				if chunk = r.quota.take(quotaChunk); chunk == 0 {
					return
				}
			}
			chunk--
		}
		stamp(msg, c.idx, seq)
		deadline := at(t0 + timeout)
		c.uc.SetReadDeadline(deadline)
		rx++
		c.rx.Store(rx)
		if _, err := c.uc.Write(msg); err != nil {
			if r.stopping.Load() {
				return
			}
			r.errs.add(err)
			r.pause(deadline)
			continue
		}
		for {
			n, err := c.uc.Read(in)
			if err != nil {
				switch {
				case r.stopping.Load():
					return
				case isTimeout(err):
					if measured {
						c.lost.Add(1)
					}
				default:
					// Such as ECONNREFUSED after an ICMP port unreachable:
					// wait as for a lost datagram rather than spin.
					r.errs.add(err)
					r.pause(deadline)
				}
				break
			}
			if idx, s, ok := header(in[:n]); ok && idx == c.idx && s < seq {
				continue // a late answer to a datagram already counted lost
			}
			t1 := clock()
			if bad := diff(in[:n], msg); bad > 0 {
				c.mism.Add(bad)
			}
			if measured {
				c.hist.Record(time.Duration(t1 - t0))
			}
			break
		}
	}
}

// pause waits until t or until the run stops.
func (r *runState) pause(t time.Time) {
	timer := time.NewTimer(time.Until(t))
	select {
	case <-timer.C:
	case <-r.stop:
	}
	timer.Stop()
}
