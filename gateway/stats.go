package gateway

// This file holds the counters an operator reads: per listener (traffic,
// closes by reason, handler callbacks with their latency) and their
// snapshots. Every counter is an atomic updated where the event happens;
// snapshots read them without stopping anything, so a scrape or an API
// call never stalls traffic.

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/protogate/protogate/abi"
)

// Close reason classes, as counted in ListenerStats.Closed: a bounded set,
// fit for a metric label, that every close reason maps to.
const (
	CloseNormal           = "normal"            // the handler closed it
	ClosePeerClosed       = "peer_closed"       // the device closed or reset it
	CloseKeepaliveTimeout = "keepalive_timeout" // the keepalive expired
	CloseIdleTimeout      = "idle_timeout"      // no first byte in idle_timeout
	CloseKicked           = "kicked"            // an operator kicked it
	CloseDiscarded        = "discarded"         // its client id was taken over
	CloseHandlerError     = "handler_error"     // a callback failed, trapped or timed out
	CloseSendError        = "send_error"        // a write failed or its queue overflowed
	CloseShutdown         = "shutdown"          // the gateway shut down
	CloseOther            = "other"             // anything else (frame too large, ...)
)

// CloseClasses lists every close reason class.
var CloseClasses = [...]string{CloseNormal, ClosePeerClosed, CloseKeepaliveTimeout, CloseIdleTimeout,
	CloseKicked, CloseDiscarded, CloseHandlerError, CloseSendError, CloseShutdown, CloseOther}

// CloseClass maps a close reason (what OnSocketClosed receives) to its
// class.
func CloseClass(reason string) string {
	switch reason {
	case ReasonNormal:
		return CloseNormal
	case ReasonTCPClosed, ReasonSSLClosed, "{shutdown,udp_closed}", "{shutdown,dtls_closed}", "{shutdown,econnreset}":
		return ClosePeerClosed
	case ReasonKeepaliveTimeout:
		return CloseKeepaliveTimeout
	case ReasonIdleTimeout:
		return CloseIdleTimeout
	case ReasonKicked:
		return CloseKicked
	case ReasonDiscarded:
		return CloseDiscarded
	case ReasonShutdown:
		return CloseShutdown
	case "{shutdown,send_error}", "{shutdown,send_queue_full}":
		return CloseSendError
	}
	if strings.HasPrefix(reason, "{shutdown,{error,") || strings.HasPrefix(reason, "{shutdown,{wasm_fault,") {
		return CloseHandlerError
	}
	return CloseOther
}

func closeClassIndex(reason string) int {
	class := CloseClass(reason)
	for i, c := range CloseClasses {
		if c == class {
			return i
		}
	}
	return len(CloseClasses) - 1
}

// Callback outcomes, as counted in CallbackStats.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"   // the handler returned an error
	OutcomeTimeout = "timeout" // the handler's deadline passed
	OutcomeFault   = "fault"   // the handler faulted (a Wasm trap, a runaway guest)
	OutcomePanic   = "panic"   // the back end panicked (recovered)
)

// Outcomes lists every callback outcome.
var Outcomes = [...]string{OutcomeOK, OutcomeError, OutcomeTimeout, OutcomeFault, OutcomePanic}

// ErrHandlerFault marks a callback error that is the handler's fault rather
// than its answer: a Wasm guest that trapped, ran past its deadline or
// broke the ABI. Back ends wrap it so that stats and traces can tell.
var ErrHandlerFault = errors.New("handler fault")

// Callbacks lists the five callbacks in the order of CallbackStats' arrays.
var Callbacks = [...]string{abi.CallbackSocketCreated, abi.CallbackReceivedBytes, abi.CallbackTimerTimeout,
	abi.CallbackReceivedMessages, abi.CallbackSocketClosed}

// LatencyBuckets are the upper bounds, in seconds, of the callback latency
// histogram: from in-process Wasm (tens of microseconds) to gRPC deadlines.
var LatencyBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// latencyBounds are LatencyBuckets in nanoseconds.
var latencyBounds = func() (b [len(LatencyBuckets)]int64) {
	for i, s := range LatencyBuckets {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// cbStats counts the callbacks of one listener.
type cbStats struct {
	outcomes [len(Callbacks)][len(Outcomes)]atomic.Uint64
	buckets  [len(Callbacks)][len(LatencyBuckets) + 1]atomic.Uint64 // the last is +Inf
	sumNanos [len(Callbacks)]atomic.Int64
}

func outcomeIndex(err error, panicked bool) int {
	switch {
	case err == nil:
		return 0
	case panicked:
		return 4
	case errors.Is(err, ErrHandlerFault):
		return 3
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return 2
	}
	return 1
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (s *cbStats) observe(cb int, d time.Duration, outcome int) {
	s.outcomes[cb][outcome].Add(1)
	n := int64(d)
	i := 0
	for i < len(latencyBounds) && n > latencyBounds[i] {
		i++
	}
	s.buckets[cb][i].Add(1)
	s.sumNanos[cb].Add(n)
}

// CallbackStats counts the callbacks of a listener's handler, by callback
// (the index into Callbacks).
type CallbackStats struct {
	// Outcomes counts calls by outcome (the index into Outcomes).
	Outcomes [len(Callbacks)][len(Outcomes)]uint64
	// Buckets counts calls by latency: Buckets[cb][i] those that took at
	// most LatencyBuckets[i] and more than the bucket before; the last
	// element those above every bound. Not cumulative.
	Buckets [len(Callbacks)][len(LatencyBuckets) + 1]uint64
	// Sum is the total time spent in each callback.
	Sum [len(Callbacks)]time.Duration
}

// Add adds o to s.
func (s *CallbackStats) Add(o *CallbackStats) {
	for cb := range s.Outcomes {
		for i := range s.Outcomes[cb] {
			s.Outcomes[cb][i] += o.Outcomes[cb][i]
		}
		for i := range s.Buckets[cb] {
			s.Buckets[cb][i] += o.Buckets[cb][i]
		}
		s.Sum[cb] += o.Sum[cb]
	}
}

// Total returns the number of calls with the given outcome index, over
// every callback; -1 counts every outcome.
func (s *CallbackStats) Total(outcome int) uint64 {
	var n uint64
	for cb := range s.Outcomes {
		for i, v := range s.Outcomes[cb] {
			if outcome < 0 || i == outcome {
				n += v
			}
		}
	}
	return n
}

// Quantile estimates the q-quantile (0 < q <= 1) of callback latency over
// every callback, in seconds, by linear interpolation inside the bucket
// that holds it, as Prometheus's histogram_quantile does. It returns 0
// without calls and the highest bound when the quantile is above it.
func (s *CallbackStats) Quantile(q float64) float64 {
	var counts [len(LatencyBuckets) + 1]uint64
	var total uint64
	for cb := range s.Buckets {
		for i, v := range s.Buckets[cb] {
			counts[i] += v
			total += v
		}
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range counts {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			if i == len(LatencyBuckets) {
				return LatencyBuckets[len(LatencyBuckets)-1]
			}
			lo := 0.0
			if i > 0 {
				lo = LatencyBuckets[i-1]
			}
			return lo + (LatencyBuckets[i]-lo)*math.Max(0, rank-seen)/float64(n)
		}
		seen += float64(n)
	}
	return LatencyBuckets[len(LatencyBuckets)-1]
}

func (s *cbStats) snapshot() CallbackStats {
	var o CallbackStats
	for cb := range s.outcomes {
		for i := range s.outcomes[cb] {
			o.Outcomes[cb][i] = s.outcomes[cb][i].Load()
		}
		for i := range s.buckets[cb] {
			o.Buckets[cb][i] = s.buckets[cb][i].Load()
		}
		o.Sum[cb] = time.Duration(s.sumNanos[cb].Load())
	}
	return o
}

// traffic counts what a listener's connections moved.
type traffic struct {
	recvOct, sendOct atomic.Uint64 // socket bytes in and out
	recvMsg, sendMsg atomic.Uint64 // messages published by devices, delivered to them
}

// ListenerStats counts what a listener accepted, refused, moved and closed.
type ListenerStats struct {
	Name     string
	Type     SocketType
	Addr     string            // the bound address, as the net.Listener reports it
	Running  bool              // Serve is accepting on it
	Active   int64             // connections admitted and not yet closed
	Accepted uint64            // connections that reached the handler
	Refused  map[string]uint64 // by cause (Cause* constants); only causes that happened
	Dropped  uint64            // datagrams dropped for max_bytes_rate or max_packet_size
	Oversize uint64            // connections closed for a frame over max_packet_size
	// Closed counts closed connections by class (CloseClasses).
	Closed map[string]uint64
	// RecvBytes and SentBytes count socket payload bytes; RecvMsgs the
	// messages the listener's devices published, SentMsgs those delivered
	// to their handlers.
	RecvBytes, SentBytes, RecvMsgs, SentMsgs uint64
	// Callbacks counts the handler's callbacks for this listener's
	// connections.
	Callbacks CallbackStats
	// Handler is the listener's handler.
	Handler Handler
}

// ListenerStats returns the counters of the listener called name, served by
// Serve; the zero value if there is none.
func (s *Server) ListenerStats(name string) ListenerStats {
	s.mu.Lock()
	ls := s.lstates[name]
	s.mu.Unlock()
	if ls == nil {
		return ListenerStats{}
	}
	return ls.stats()
}

// Listeners returns the counters of every listener passed to Serve, in the
// order Serve first saw them.
func (s *Server) Listeners() []ListenerStats {
	s.mu.Lock()
	lss := make([]*lstate, len(s.lorder))
	copy(lss, s.lorder)
	s.mu.Unlock()
	out := make([]ListenerStats, len(lss))
	for i, ls := range lss {
		out[i] = ls.stats()
	}
	return out
}

func (ls *lstate) stats() ListenerStats {
	st := ListenerStats{
		Name:      ls.l.Name,
		Type:      ls.l.Type,
		Handler:   ls.l.Handler,
		Running:   ls.running.Load(),
		Active:    ls.active.Load(),
		Accepted:  ls.accepted.Load(),
		Refused:   make(map[string]uint64, len(causes)),
		Closed:    make(map[string]uint64, len(CloseClasses)),
		Dropped:   ls.dropped.Load(),
		Oversize:  ls.overflow.Load(),
		RecvBytes: ls.recvOct.Load(),
		SentBytes: ls.sendOct.Load(),
		RecvMsgs:  ls.recvMsg.Load(),
		SentMsgs:  ls.sendMsg.Load(),
		Callbacks: ls.cb.snapshot(),
	}
	if a := ls.addr.Load(); a != nil {
		st.Addr = *a
	}
	for i, c := range causes {
		if n := ls.refused[i].Load(); n > 0 {
			st.Refused[c] = n
		}
	}
	for i, c := range CloseClasses {
		st.Closed[c] = ls.closed[i].Load()
	}
	return st
}

// Causes lists every refusal cause.
func Causes() []string { return append([]string(nil), causes[:]...) }

// Handler calls, as counted by Server.Calls: the index into CallNames.
const (
	callSend = iota
	callClose
	callAuthenticate
	callStartTimer
	callPublish
	callSubscribe
	callUnsubscribe
	callRawPublish
)

// CallNames lists the calls a handler makes on the gateway (ExProto's
// ConnectionAdapter methods; Queue counts as send).
var CallNames = [...]string{"send", "close", "authenticate", "start_timer", "publish", "subscribe", "unsubscribe", "raw_publish"}

// codes lists the result codes in the order of Server.Calls' columns.
var codes = [...]Code{CodeSuccess, CodeUnknown, CodeNotAlive, CodeRequiredParamsMissed, CodeParamsTypeError, CodePermissionDeny}

// Codes lists the result codes in the order of Server.Calls' columns.
func Codes() []Code { return append([]Code(nil), codes[:]...) }

func codeIndex(err error) int {
	c := CodeOf(err)
	if c >= 0 && int(c) < len(codes) {
		return int(c)
	}
	return int(CodeUnknown)
}

// Calls returns how many calls handlers made on the gateway, by call
// (CallNames) and result code (Codes).
func (s *Server) Calls() [len(CallNames)][len(codes)]uint64 {
	var out [len(CallNames)][len(codes)]uint64
	for i := range s.calls {
		for j := range s.calls[i] {
			out[i][j] = s.calls[i][j].Load()
		}
	}
	return out
}

// callStart returns the time a handler call starts if c is traced, and the
// zero time (no clock read) if not.
func (c *Conn) callStart() time.Time {
	if c.trace.Load() == nil {
		return time.Time{}
	}
	return time.Now()
}

// called counts a handler call that returned *errp and traces it if c was
// traced when it started.
func (c *Conn) called(call int, topic string, payload []byte, start time.Time, errp *error) {
	c.srv.calls[call][codeIndex(*errp)].Add(1)
	if !start.IsZero() {
		c.traceCall(CallNames[call], topic, payload, start, *errp)
	}
}

// received counts n bytes read from c's socket.
func (c *Conn) received(n int) {
	c.recvOct.Add(uint64(n))
	c.ls.recvOct.Add(uint64(n))
}
