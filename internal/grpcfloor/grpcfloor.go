// Package grpcfloor measures the floor of protogate's remote path: a bare
// grpc-go loop making the two unary calls one echo through a remote ExProto
// handler costs, with no gateway and no sockets to devices in between.
//
// Run plays the gateway. It serves a minimal emqx.exproto.v1
// ConnectionAdapter (only Send) and runs Config.Conns callers, each with its
// own conn handle (16 hex digits, as protogate's). A caller loops: it calls
// the handler's ConnectionUnaryHandler.OnReceivedBytes with a payload, and
// the round trip completes when both that call has returned and the adapter
// has received the handler's Send of the same bytes for the caller's conn.
// Against an echo handler (cmd/exproto-echo-handler) that is exactly the
// gRPC work of one echo through protogate's unary remote path, so the ratio
// of the gateway's echo rate to this one is the cost of the gateway itself.
//
// The handler runs elsewhere, usually in another process, and must call the
// adapter Run serves: start it with its adapter address set to
// Config.AdapterListen (for exproto-echo-handler, -adapter
// http://127.0.0.1:9100 with AdapterListen 127.0.0.1:9100), or pass a
// listener in Config.AdapterListener.
package grpcfloor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/internal/loadstat"
	"github.com/protogate/protogate/proto/exprotov1"
)

// Scenario is the loadstat.Result scenario name of a floor run.
const Scenario = "grpcfloor"

// minSize is the smallest payload: it starts with the round's sequence
// number, which tells a late echo of an earlier round from a wrong one.
const minSize = 8

// Config configures Run. Zero fields take the defaults named.
type Config struct {
	// HandlerAddr is the handler's gRPC address, host:port or
	// http://host:port. Required.
	HandlerAddr string
	// AdapterListen is where the ConnectionAdapter listens; the handler
	// must call it there. Default: 127.0.0.1:0 (useful only with a handler
	// that learns the address some other way).
	AdapterListen string
	// AdapterListener, if set, is used instead of listening on
	// AdapterListen. Run closes it.
	AdapterListener net.Listener
	// Conns is the number of concurrent callers, each with its own conn
	// handle and one round trip in flight. Default: 100.
	Conns int
	// Size is the payload of each OnReceivedBytes, at least 8 bytes.
	// Default: 64.
	Size int
	// Duration is the measured time, after Warmup. Default: 10s.
	Duration time.Duration
	// Warmup runs the load unmeasured before Duration starts. Default: 0.
	Warmup time.Duration
	// Timeout bounds each OnReceivedBytes call, and the wait for its Send
	// after the call has returned. Default: 5s.
	Timeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.HandlerAddr == "" {
		return errors.New("grpcfloor: no handler address")
	}
	if c.AdapterListen == "" {
		c.AdapterListen = "127.0.0.1:0"
	}
	if c.Conns <= 0 {
		c.Conns = 100
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.Size < minSize {
		return fmt.Errorf("grpcfloor: size %d is below the minimum of %d bytes", c.Size, minSize)
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	return nil
}

// Run measures round trips for cfg.Warmup + cfg.Duration and returns the
// result of the measured part: Msgs and the latency fields cover round
// trips that started after the warm-up; Errors (failed OnReceivedBytes
// calls), Mismatch (Sends whose bytes or conn were wrong, or extra Sends)
// and Lost (calls that returned but whose Send never came within
// cfg.Timeout) cover the whole run, warm-up included. Calls wait for the
// handler to be reachable (gRPC's wait-for-ready), bounded by cfg.Timeout.
//
// Run returns early with ctx's error when ctx is done. It stops its callers
// and its adapter server before returning.
func Run(ctx context.Context, cfg Config) (*loadstat.Result, error) {
	if err := cfg.setDefaults(); err != nil {
		if cfg.AdapterListener != nil {
			cfg.AdapterListener.Close()
		}
		return nil, err
	}
	ln := cfg.AdapterListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.AdapterListen); err != nil {
			return nil, fmt.Errorf("grpcfloor: adapter: %w", err)
		}
	}

	callers := make([]*caller, cfg.Conns)
	ad := &adapter{callers: make(map[string]*caller, cfg.Conns)}
	base := uint64(time.Now().UnixNano())
	for i := range callers {
		c := &caller{handle: fmt.Sprintf("%016x", base+uint64(i)), sent: make(chan []byte, 4)}
		callers[i] = c
		ad.callers[c.handle] = c
	}
	gs := grpc.NewServer()
	exprotov1.RegisterConnectionAdapterServer(gs, ad)
	served := make(chan struct{})
	go func() {
		defer close(served)
		gs.Serve(ln)
	}()
	defer func() {
		gs.Stop()
		<-served
	}()

	cc, err := grpc.NewClient(strings.TrimPrefix(cfg.HandlerAddr, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("grpcfloor: handler %s: %w", cfg.HandlerAddr, err)
	}
	defer cc.Close()
	client := exprotov1.NewConnectionUnaryHandlerClient(cc)

	start := time.Now()
	measured := start.Add(cfg.Warmup)
	end := measured.Add(cfg.Duration)
	var wg sync.WaitGroup
	for i, c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop(ctx, client, &cfg, i, measured, end)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("grpcfloor: %w", err)
	}

	r := &loadstat.Result{
		Scenario: Scenario,
		Target:   cfg.HandlerAddr,
		Conns:    cfg.Conns,
		Size:     cfg.Size,
		Depth:    1,
		Seconds:  cfg.Duration.Seconds(),
		Mismatch: ad.mismatch.Load(),
	}
	var h loadstat.Histogram
	for _, c := range callers {
		h.Merge(&c.hist)
		r.Errors += c.errors
		r.Mismatch += c.mismatch
		r.Lost += c.lost
	}
	r.Msgs = h.Count()
	r.MsgsPerS = float64(r.Msgs) / cfg.Duration.Seconds()
	r.SetLatency(&h)
	return r, nil
}

// caller is one simulated connection. Its counters and histogram belong to
// its goroutine until Run has waited for it.
type caller struct {
	handle string
	sent   chan []byte // the bytes of each Send the adapter received for handle

	hist     loadstat.Histogram
	errors   uint64
	mismatch uint64
	lost     uint64
}

// loop runs round trips until end or until ctx is done, recording the
// latency of those that start at or after measured.
func (c *caller) loop(ctx context.Context, client exprotov1.ConnectionUnaryHandlerClient, cfg *Config, idx int, measured, end time.Time) {
	payload := make([]byte, cfg.Size)
	for j := minSize; j < len(payload); j++ {
		payload[j] = byte(idx + j)
	}
	req := &exprotov1.ReceivedBytesRequest{Conn: c.handle, Bytes: payload}
	timer := time.NewTimer(cfg.Timeout)
	timer.Stop()
	defer timer.Stop()
	for seq := uint64(1); ctx.Err() == nil; seq++ {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		// The request is marshalled before the call returns, so payload is
		// ours again for the next round.
		binary.BigEndian.PutUint64(payload, seq)
		callCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		_, err := client.OnReceivedBytes(callCtx, req, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.errors++
			}
			continue
		}
		if !c.awaitSend(ctx, timer, cfg.Timeout, payload, seq) {
			continue
		}
		if !t0.Before(measured) {
			c.hist.Record(time.Since(t0))
		}
	}
}

// awaitSend waits for the Send of round seq and reports whether it came
// with the right bytes. A late Send of an earlier round (one already counted
// as lost) is skipped.
func (c *caller) awaitSend(ctx context.Context, timer *time.Timer, timeout time.Duration, want []byte, seq uint64) bool {
	timer.Reset(timeout)
	defer timer.Stop()
	for {
		select {
		case b := <-c.sent:
			if bytes.Equal(b, want) {
				return true
			}
			if len(b) == len(want) && binary.BigEndian.Uint64(b) < seq && bytes.Equal(b[minSize:], want[minSize:]) {
				continue // late echo of a lost round
			}
			c.mismatch++
			return false
		case <-timer.C:
			c.lost++
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// adapter is the ConnectionAdapter of the floor: Send hands the bytes to
// the caller owning the conn; every other rpc is unimplemented. callers is
// read-only once serving starts.
type adapter struct {
	exprotov1.UnimplementedConnectionAdapterServer
	callers  map[string]*caller
	mismatch atomic.Uint64 // Sends to an unknown conn, or more than a caller can hold
}

var (
	success  = &exprotov1.CodeResponse{}
	notAlive = &exprotov1.CodeResponse{Code: exprotov1.ResultCode_CONN_PROCESS_NOT_ALIVE, Message: "grpcfloor: unknown conn"}
)

// Send implements exprotov1.ConnectionAdapterServer.
func (a *adapter) Send(_ context.Context, req *exprotov1.SendBytesRequest) (*exprotov1.CodeResponse, error) {
	c := a.callers[req.GetConn()]
	if c == nil {
		a.mismatch.Add(1)
		return notAlive, nil
	}
	select {
	case c.sent <- req.GetBytes():
	default:
		a.mismatch.Add(1)
	}
	return success, nil
}
