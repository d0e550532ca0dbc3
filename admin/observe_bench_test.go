//go:build unix

package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEchoObserved runs observeBlocks blocks, each plain for
// observePhase, observed for twice that, plain again for observePhase.
// Short blocks in that order make the machine's drift during the run
// (other processes, frequency) weigh on both kinds alike; each block's
// ratios are logged.
const (
	observePhase  = time.Second
	observeBlocks = 10
)

// BenchmarkEchoObserved measures what watching the gateway costs its
// traffic. 100 loopback TCP connections echo 64-byte messages through
// builtin:echo in wasmhost, ping-pong, as BenchmarkEchoWasmTCP100 (client
// and gateway in this process), and one more connection echoes the same
// way. While observed, /metrics is scraped every second and that one more
// connection is traced, payloads included
// (GET /api/v1/trace?conn=H&format=jsonl&payload=64, read as it streams);
// while plain, neither happens. Both alternate in one run, so that the
// ratio compares them on the same machine at the same time.
//
// Metrics: the 100 connections' round trips per second, plain and
// observed; ratio, observed over plain (the target is >= 0.95);
// cpu-ratio, the CPU time per round trip plain over observed (this
// process's CPU: gateway, load and observer), the same comparison in a
// unit that other processes on the machine disturb less; the trace events
// and scrapes per second while observed. One measurement whatever b.N:
// run it with -benchtime 1x.
func BenchmarkEchoObserved(b *testing.B) {
	// On a loaded machine a guest call can wait for a core longer than
	// the default call_timeout of 100ms, which faults its instance and
	// ends the run; the value costs the echo nothing (the watchdog samples
	// calls a few times per timeout).
	g := startEchoGateway(b, time.Second)
	// Goroutines inherit profiler labels: with -cpuprofile, the admin
	// API's CPU shows as part=admin, the observer's as part=observer.
	var hs *httptest.Server
	pprof.Do(context.Background(), pprof.Labels("part", "admin"), func(context.Context) {
		hs = httptest.NewServer(g.api)
	})
	defer hs.Close()

	const conns = 100
	var echoed, tracedEchoed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ncs []net.Conn
	defer func() {
		// Every connection finishes its round trip, then closes.
		close(stop)
		wg.Wait()
		for _, nc := range ncs {
			nc.Close()
		}
	}()
	var traced net.Conn
	for i := range conns + 1 {
		nc, err := net.Dial("tcp", g.devices)
		if err != nil {
			b.Fatal(err)
		}
		ncs = append(ncs, nc)
		count := &echoed
		if i == conns {
			traced, count = nc, &tracedEchoed
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte(strings.Repeat("m", 64))
			buf := make([]byte, 64)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := nc.Write(msg); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(nc, buf); err != nil {
					b.Error(err)
					return
				}
				if string(buf) != string(msg) {
					b.Errorf("echoed %q, want %q", buf, msg)
					return
				}
				count.Add(1)
			}
		}()
	}
	handle := handleOf(b, g, traced)
	time.Sleep(2 * time.Second) // warm up

	// Per kind, plain [0] and observed [1]: round trips, time, and the
	// CPU time this process spent (gateway, load and observer alike).
	var msgs [2]int64
	var wall, cpu [2]time.Duration
	var events, scrapes int64
	var blockRatios, blockCPU []string
	b.ResetTimer()
	for range observeBlocks {
		var bm [2]int64
		var bw, bc [2]time.Duration
		measure := func(kind int, d time.Duration) {
			n0, t0, c0 := echoed.Load(), time.Now(), cpuTime(b)
			time.Sleep(d)
			bm[kind] += echoed.Load() - n0
			bw[kind] += time.Since(t0)
			bc[kind] += cpuTime(b) - c0
		}
		measure(0, observePhase)
		o := observe(b, hs.URL, handle)
		measure(1, 2*observePhase)
		ev, sc := o.stop(b, g)
		events, scrapes = events+ev, scrapes+sc
		measure(0, observePhase)
		for k := range 2 {
			msgs[k], wall[k], cpu[k] = msgs[k]+bm[k], wall[k]+bw[k], cpu[k]+bc[k]
		}
		blockRatios = append(blockRatios, fmt.Sprintf("%.2f", rate(bm[1], bw[1])/rate(bm[0], bw[0])))
		blockCPU = append(blockCPU, fmt.Sprintf("%.2f", perMsg(bc[0], bm[0])/perMsg(bc[1], bm[1])))
	}
	b.StopTimer()
	if events == 0 || scrapes == 0 {
		b.Fatalf("%d trace events, %d scrapes: the observation did not run", events, scrapes)
	}
	plain, obs := rate(msgs[0], wall[0]), rate(msgs[1], wall[1])
	cpuRatio := perMsg(cpu[0], msgs[0]) / perMsg(cpu[1], msgs[1])
	b.ReportMetric(plain, "plain-msgs/s")
	b.ReportMetric(obs, "observed-msgs/s")
	b.ReportMetric(obs/plain, "ratio")
	b.ReportMetric(cpuRatio, "cpu-ratio")
	b.ReportMetric(float64(events)/wall[1].Seconds(), "trace-events/s")
	b.ReportMetric(float64(scrapes)/wall[1].Seconds(), "scrapes/s")
	b.ReportMetric(0, "ns/op")
	// A benchmark's log is cut after ten lines: one line for all blocks.
	b.Logf("blocks: ratio %s; cpu-ratio %s", strings.Join(blockRatios, " "), strings.Join(blockCPU, " "))
	b.Logf("in all: plain %.0f msgs/s, observed %.0f msgs/s (%d trace events, %d scrapes): ratio %.3f x; "+
		"CPU per message %.2f µs plain, %.2f µs observed: cpu-ratio %.3f x; the traced connection made %d round trips",
		plain, obs, events, scrapes, obs/plain, perMsg(cpu[0], msgs[0]), perMsg(cpu[1], msgs[1]), cpuRatio, tracedEchoed.Load())
	met := "met"
	if obs/plain < observeTarget {
		met = "NOT met"
	}
	b.Logf("target: ratio >= %.2f x: %s", observeTarget, met)
}

// observeTarget is what watching may cost: observed echo throughput at
// least this share of plain.
const observeTarget = 0.95

func rate(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() }

// perMsg returns d per message, in microseconds.
func perMsg(d time.Duration, n int64) float64 { return float64(d.Microseconds()) / float64(n) }

// cpuTime returns the CPU time this process has spent, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// handleOf returns the handle of the gateway's side of nc, once the
// gateway has accepted it.
func handleOf(b *testing.B, g *echoGateway, nc net.Conn) string {
	b.Helper()
	port := nc.LocalAddr().(*net.TCPAddr).Port
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for _, c := range g.gw.Conns() {
			if int(c.Status().Peer.Port()) == port {
				return c.Handle()
			}
		}
	}
	b.Fatalf("the gateway has no connection from port %d", port)
	return ""
}

// observation is a trace being read and /metrics being scraped.
type observation struct {
	cancel         context.CancelFunc
	done           sync.WaitGroup
	events, scrape atomic.Int64
}

// observe starts tracing the connection handle, reading every event, and
// scraping /metrics every second, the first time at once.
func observe(b *testing.B, base, handle string) (o *observation) {
	b.Helper()
	pprof.Do(context.Background(), pprof.Labels("part", "observer"), func(ctx context.Context) {
		o = startObservation(ctx, b, base, handle)
	})
	return o
}

func startObservation(ctx context.Context, b *testing.B, base, handle string) *observation {
	ctx, cancel := context.WithCancel(ctx)
	o := &observation{cancel: cancel}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/trace?conn="+handle+"&format=jsonl&payload=64", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		b.Fatalf("trace: %s: %s", resp.Status, body)
	}
	o.done.Add(2)
	go func() {
		defer o.done.Done()
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if o.events.Add(1) == 1 {
				var ev struct{ Payload string }
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev.Payload) != 2*64 {
					b.Errorf("trace event %s: want 64 bytes of payload (%v)", sc.Bytes(), err)
				}
			}
		}
	}()
	go func() {
		defer o.done.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					b.Error(err)
				}
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n == 0 {
				b.Errorf("/metrics: %s, %d bytes", resp.Status, n)
			}
			o.scrape.Add(1)
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return o
}

// stop ends the observation and waits until the gateway has let the trace
// go, so that the next one may start. It returns the events and scrapes.
func (o *observation) stop(b *testing.B, g *echoGateway) (events, scrapes int64) {
	o.cancel()
	o.done.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for g.api.NumTraces() > 0 {
		if time.Now().After(deadline) {
			b.Fatal("the trace did not end")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	return o.events.Load(), o.scrape.Load()
}
