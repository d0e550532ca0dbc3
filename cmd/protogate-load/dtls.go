package main

import (
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

	"github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/protocol"
	"github.com/pion/dtls/v2/pkg/protocol/recordlayer"
	"github.com/pion/logging"
	"github.com/pion/transport/v2/udp"

	"github.com/protogate/protogate/internal/loadstat"
)

const dtlsDoc = `
The udp scenario over DTLS 1.2 (pion/dtls/v2): opens -conns DTLS clients,
each on its own UDP socket, towards a server that echoes application data
(serve-echo -udp -cert, or a gateway's dtls listener running builtin:echo),
completes each handshake, then echoes datagrams ping-pong as udp does. The
clients offer one cipher suite, -suite, and do not verify the server's
certificate (the server's cost is the same either way).

JSON fields: scenario "dtls", and those of udp.
`

const dtlsHandshakeDoc = `
Runs DTLS 1.2 handshakes (pion/dtls/v2) against a server as fast as -conns
concurrent clients can: each client opens a new UDP socket, completes a
handshake (with the HelloVerifyRequest cookie exchange the server asks for),
closes the session with close_notify and starts over. It measures the
server's handshakes per second; msgs counts the handshakes started after
-warmup and completed before the end, msgs_per_s their rate and the
latencies are of whole handshakes. Handshakes in flight at the end are
completed (not counted) before the command exits, so that none is left
half way on the server.
A handshake that fails or takes longer than -timeout counts as an error.

JSON fields: scenario "dtls-handshake", target, conns, seconds, msgs,
msgs_per_s, p50_us, p99_us, p999_us, max_us, errors.
`

// dtlsSuite is the cipher suite the DTLS commands offer by default, one
// that the gateway's certificate mode and a plain pion server with an
// ECDSA certificate both pick.
const dtlsSuite = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"

// dtlsClientConfig is the client configuration of the dtls commands.
func dtlsClientConfig(suite string) (*dtls.Config, error) {
	var id dtls.CipherSuiteID
	found := false
	for _, s := range dtls.CipherSuites() { // those pion implements
		if s.Name == suite {
			id, found = dtls.CipherSuiteID(s.ID), true
		}
	}
	if !found {
		return nil, usagef("unknown or unsupported cipher suite %q", suite)
	}
	return &dtls.Config{
		CipherSuites:         []dtls.CipherSuiteID{id},
		InsecureSkipVerify:   true,
		ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
		// No logging: pion's default logger writes to stdout.
		LoggerFactory: quietLoggers,
	}, nil
}

// dialDTLS opens a UDP socket to raddr and completes a DTLS client
// handshake on it within timeout.
func dialDTLS(ctx context.Context, raddr *net.UDPAddr, cfg *dtls.Config, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	uc, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	dc, err := dtls.ClientWithContext(ctx, uc, cfg)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("dtls handshake: %w", err)
	}
	return dc, nil
}

func cmdDTLS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := UDPConfig{Log: stderr}
	var suite string
	fs := newFlags("dtls", "-addr host:port [flags]", dtlsDoc, stderr)
	fs.StringVar(&cfg.Addr, "addr", "", "`host:port` of the DTLS echo server (required)")
	fs.IntVar(&cfg.Conns, "conns", 100, "number of DTLS clients")
	fs.IntVar(&cfg.Size, "size", 64, "payload size in `bytes`")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time after the warm-up")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "time before measuring starts")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "a datagram not answered within this time is lost; also bounds each handshake")
	fs.StringVar(&suite, "suite", dtlsSuite, "the one cipher `suite` the clients offer")
	fs.StringVar(&cfg.Label, "label", "", "`name` of what is measured, the result's target (default -addr)")
	fs.DurationVar(&cfg.Progress, "progress", 5*time.Second, "interval of the progress lines on stderr (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Addr == "" {
		return usagef("dtls: -addr is required")
	}
	if err := positive("dtls", "conns", cfg.Conns, "size", cfg.Size, "duration", cfg.Duration, "timeout", cfg.Timeout); err != nil {
		return err
	}
	if cfg.Size > 16000 || cfg.Warmup < 0 {
		return usagef("dtls: -size must be at most 16000 and -warmup not negative")
	}
	var err error
	if cfg.DTLS, err = dtlsClientConfig(suite); err != nil {
		return err
	}
	res, notes, err := runUDP(ctx, cfg)
	if err != nil {
		return err
	}
	return report(res, stdout, stderr, notes...)
}

// HandshakeConfig configures runDTLSHandshakes.
type HandshakeConfig struct {
	Addr     string
	Conns    int // concurrent clients
	Duration time.Duration
	Warmup   time.Duration
	Timeout  time.Duration // of one handshake
	DTLS     *dtls.Config
	Label    string
	Progress time.Duration
	Log      io.Writer
}

func cmdDTLSHandshake(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := HandshakeConfig{Log: stderr}
	var suite string
	fs := newFlags("dtls-handshake", "-addr host:port [flags]", dtlsHandshakeDoc, stderr)
	fs.StringVar(&cfg.Addr, "addr", "", "`host:port` of the DTLS server (required)")
	fs.IntVar(&cfg.Conns, "conns", 200, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time after the warm-up")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "time before measuring starts")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "a handshake that takes longer fails")
	fs.StringVar(&suite, "suite", dtlsSuite, "the one cipher `suite` the clients offer")
	fs.StringVar(&cfg.Label, "label", "", "`name` of what is measured, the result's target (default -addr)")
	fs.DurationVar(&cfg.Progress, "progress", 5*time.Second, "interval of the progress lines on stderr (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Addr == "" {
		return usagef("dtls-handshake: -addr is required")
	}
	if err := positive("dtls-handshake", "conns", cfg.Conns, "duration", cfg.Duration, "timeout", cfg.Timeout); err != nil {
		return err
	}
	if cfg.Warmup < 0 {
		return usagef("dtls-handshake: -warmup must not be negative")
	}
	var err error
	if cfg.DTLS, err = dtlsClientConfig(suite); err != nil {
		return err
	}
	res, notes, err := runDTLSHandshakes(ctx, cfg)
	if err != nil {
		return err
	}
	return report(res, stdout, stderr, notes...)
}

// runDTLSHandshakes runs the dtls-handshake scenario. It fails when no
// handshake completed.
func runDTLSHandshakes(ctx context.Context, cfg HandshakeConfig) (*loadstat.Result, []string, error) {
	cfg.Conns = max(cfg.Conns, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if err := checkFiles(cfg.Conns); err != nil {
		return nil, nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("protogate-load: dtls-handshake: %w", err)
	}
	errs := new(errLog)
	st := newRunState(cfg.Warmup, errs)
	end := at(st.from + int64(cfg.Duration))
	hists := make([]loadstat.Histogram, cfg.Conns)
	var done atomic.Uint64
	// Handshakes in flight when the run stops are completed (within
	// -timeout), not abandoned: an abandoned one lingers on the server
	// until its handshake timeout, and a later client whose socket reuses
	// its port would land in it and fail.
	var wg sync.WaitGroup
	for i := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !st.stopping.Load() {
				t0 := clock()
				dc, err := dialDTLS(ctx, raddr, cfg.DTLS, cfg.Timeout)
				if err != nil {
					if st.stopping.Load() || ctx.Err() != nil {
						return
					}
					errs.add(err)
					st.pause(time.Now().Add(10 * time.Millisecond))
					continue
				}
				t1 := clock()
				if t0 >= st.from && !st.stopping.Load() {
					hists[i].Record(time.Duration(t1 - t0))
				}
				done.Add(1)
				dc.Close()
			}
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
			n := done.Load()
			defer func() { prev = n }()
			return fmt.Sprintf("dtls-handshake %s: %v: %d handshakes, %.0f/s over the last %v, errors %d",
				firstOf(cfg.Label, cfg.Addr), elapsed, n, rate(float64(n-prev), cfg.Progress), cfg.Progress, errs.n.Load())
		})
	}()
	stopAt := st.wait(ctx, end, allDone)
	<-allDone
	close(quit)
	<-progressDone
	if done.Load() == 0 {
		if errs.first == nil {
			return nil, nil, fmt.Errorf("protogate-load: dtls-handshake: no handshake with %s", cfg.Addr)
		}
		return nil, nil, fmt.Errorf("protogate-load: dtls-handshake: no handshake with %s: %w", cfg.Addr, errs.first)
	}
	var h loadstat.Histogram
	for i := range hists {
		h.Merge(&hists[i])
	}
	res := &loadstat.Result{
		Scenario: "dtls-handshake",
		Target:   firstOf(cfg.Label, cfg.Addr),
		Conns:    cfg.Conns,
		Seconds:  seconds(stopAt - st.from),
		Msgs:     h.Count(),
		Errors:   errs.n.Load(),
	}
	res.MsgsPerS = math.Round(rate(float64(res.Msgs), time.Duration(stopAt-st.from)))
	res.SetLatency(&h)
	return res, errs.lines(), nil
}

// serverTLS loads the certificate of serve-echo -cert: TLS 1.3 only for
// TCP.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("protogate-load: serve-echo: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, nil
}

// serveEchoDTLS is serve-echo -udp -cert: a plain pion/dtls/v2 echo server.
// It demultiplexes peers with pion's own UDP listener, as dtls.Listen does,
// but runs each handshake in the peer's goroutine (dtls.Listen's Accept runs
// them one at a time), then echoes each record's payload back.
func serveEchoDTLS(ctx context.Context, listen string, tc *tls.Config, ready func(net.Addr)) error {
	laddr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return fmt.Errorf("protogate-load: serve-echo: %w", err)
	}
	cfg := &dtls.Config{
		Certificates:         tc.Certificates,
		ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
		LoggerFactory:        quietLoggers,
	}
	lc := udp.ListenConfig{
		// As dtls.Listen: only a handshake record opens a connection.
		AcceptFilter: func(packet []byte) bool {
			pkts, err := recordlayer.UnpackDatagram(packet)
			if err != nil || len(pkts) < 1 {
				return false
			}
			h := &recordlayer.Header{}
			return h.Unmarshal(pkts[0]) == nil && h.ContentType == protocol.ContentTypeHandshake
		},
		Backlog: 1024,
	}
	ln, err := lc.Listen("udp", laddr)
	if err != nil {
		return fmt.Errorf("protogate-load: serve-echo: %w", err)
	}
	ready(ln.Addr())
	var (
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			continue
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			break
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			dc, err := dtls.ServerWithContext(hctx, c, cfg)
			cancel()
			if err == nil {
				echoBack(dc)
				dc.Close()
			}
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	ln.Close()
	wg.Wait()
	return nil
}

// quietLoggers silences pion: its default logger writes to stdout, where
// the result goes.
var quietLoggers = &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled, ScopeLevels: map[string]logging.LogLevel{}}
