package remote

// This file holds the client side of the fast lane, protogate's own
// protogate.v1.StreamHandler service (proto/protogate.proto): one stream per
// handler carries every connection's callbacks in batches, and brings back
// the handler's calls and callback results.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/gateway"
	pb "github.com/protogate/protogate/proto/exprotov1"
	lpb "github.com/protogate/protogate/proto/protogatev1"
)

// ServiceLane is the Config.ServiceName of the fast lane.
const ServiceLane = "protogate.v1.StreamHandler"

// Bounds of the fast lane.
const (
	// laneMaxResults is how many answers to the handler's calls may wait
	// to be sent before the gateway stops reading the handler's calls.
	laneMaxResults = 4096
	// laneMinBackoff and laneMaxBackoff bound the wait before a new
	// stream after one broke or could not be opened.
	// laneMaxBatch is the size above which the events of one batch are
	// split over several messages (gRPC refuses messages over 4 MiB by
	// default; a single larger event still goes alone).
	laneMaxBatch   = 1 << 20
	laneMinBackoff = 100 * time.Millisecond
	// laneMaxMessage bounds one message either way: one event carries
	// at most a read chunk or a delivery batch, far less.
	laneMaxMessage = 64 << 20
	laneMaxBackoff = 2 * time.Second
)

// lane drives the fast lane of one Handler. It is safe for concurrent use.
//
// Each callback puts one Event on the current stream and waits for its
// EventResult: the gateway makes one callback at a time per connection, so a
// connection never has two events in flight, and the events of different
// connections that wait at the same time leave in one message. A writer
// goroutine per stream sends what has gathered; a reader goroutine runs the
// handler's calls and completes the callbacks.
type lane struct {
	client  lpb.StreamHandlerClient
	h       *Handler
	timeout time.Duration
	log     *slog.Logger

	ctx    context.Context // ends with close
	cancel context.CancelFunc
	wg     sync.WaitGroup // stream goroutines and blocking calls

	conns  sync.Map // handle -> *gateway.Conn: the connections h serves
	srv    atomic.Pointer[gateway.Server]
	nextID atomic.Uint64

	mu      sync.Mutex
	cur     *laneStream // the open stream; nil when none is
	retryAt time.Time   // no stream is opened before
	backoff time.Duration
	lastErr error // why the last stream broke or did not open

	opened      atomic.Uint64 // streams opened
	unknownDone atomic.Uint64 // EventResults with an id not in flight
	callFails   atomic.Uint64 // calls without an id that failed
	failLog     atomic.Int64  // when one of those was last logged, Unix nanoseconds
}

// laneStream is one open stream.
type laneStream struct {
	l      *lane
	cs     lpb.StreamHandler_StreamClient
	cancel context.CancelFunc
	wake   chan struct{} // the writer has something to send; capacity 1
	room   chan struct{} // results fell below laneMaxResults; capacity 1

	mu      sync.Mutex
	events  []*lpb.Event
	results []*lpb.CallResult
	pending map[uint64]chan string // event id -> the callback's outcome
	err     error                  // set once the stream broke
	healthy bool                   // a message arrived on it
}

func newLane(client lpb.StreamHandlerClient, h *Handler) *lane {
	l := &lane{client: client, h: h, timeout: h.cfg.Timeout, log: h.log, backoff: laneMinBackoff}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// stream returns the open stream, opening one if none is and the backoff
// allows it.
func (l *lane) stream() (*laneStream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.cur; s != nil {
		return s, nil
	}
	if err := l.ctx.Err(); err != nil {
		return nil, fmt.Errorf("remote: %s: handler closed", ServiceLane)
	}
	if wait := time.Until(l.retryAt); wait > 0 {
		return nil, fmt.Errorf("remote: %s: stream down, next try in %v: %w", ServiceLane, wait.Round(time.Millisecond), l.lastErr)
	}
	ctx, cancel := context.WithCancel(l.ctx)
	// Opening waits for the channel to connect; a handler that is not
	// there fails the callback after the timeout, not never.
	watchdog := time.AfterFunc(l.timeout, cancel)
	cs, err := l.client.Stream(ctx, grpc.MaxCallRecvMsgSize(laneMaxMessage), grpc.MaxCallSendMsgSize(laneMaxMessage))
	if !watchdog.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		l.brokeLocked(err)
		return nil, fmt.Errorf("remote: %s: opening the stream: %w", ServiceLane, err)
	}
	s := &laneStream{
		l: l, cs: cs, cancel: cancel,
		wake:    make(chan struct{}, 1),
		room:    make(chan struct{}, 1),
		pending: make(map[uint64]chan string),
	}
	l.cur = s
	l.opened.Add(1)
	l.wg.Add(2)
	go s.writeLoop()
	go s.readLoop()
	return s, nil
}

// LaneStats counts what happened on a Handler's fast lane.
type LaneStats struct {
	// Streams is how many streams were opened.
	Streams uint64
	// UnknownResults counts EventResults whose id named no callback in
	// flight: late answers to callbacks that timed out, or a handler's
	// bug. They are dropped.
	UnknownResults uint64
	// FailedCalls counts calls without an id that failed.
	FailedCalls uint64
}

// LaneStats returns the fast lane's counts; zero for the ExProto services.
func (h *Handler) LaneStats() LaneStats {
	if h.lane == nil {
		return LaneStats{}
	}
	return LaneStats{
		Streams:        h.lane.opened.Load(),
		UnknownResults: h.lane.unknownDone.Load(),
		FailedCalls:    h.lane.callFails.Load(),
	}
}

// LaneCounts returns LaneStats as admin.LaneCounter wants them.
func (h *Handler) LaneCounts() (streams, unknownResults, failedCalls uint64) {
	st := h.LaneStats()
	return st.Streams, st.UnknownResults, st.FailedCalls
}

// brokeLocked records a failed stream and sets the backoff. l.mu is held.
func (l *lane) brokeLocked(err error) {
	l.lastErr = err
	l.retryAt = time.Now().Add(l.backoff)
	l.backoff = min(2*l.backoff, laneMaxBackoff)
}

// callback sends ev for c and waits for the handler's EventResult.
func (l *lane) callback(ctx context.Context, name string, ev *lpb.Event) error {
	s, err := l.stream()
	if err != nil {
		return err
	}
	id := l.nextID.Add(1)
	ev.Id = id
	done := make(chan string, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return fmt.Errorf("remote: %s: stream broke: %w", ServiceLane, err)
	}
	s.pending[id] = done
	s.events = append(s.events, ev)
	s.mu.Unlock()
	s.signal()

	timer := time.NewTimer(l.timeout)
	defer timer.Stop()
	select {
	case res := <-done:
		if res != "" {
			return errors.New(res)
		}
		return nil
	case <-timer.C:
		err = timeoutError{fmt.Errorf("remote: %s: no result from the handler within %v", name, l.timeout)}
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
	return err
}

// eventSize is about what ev takes on the wire.
func eventSize(ev *lpb.Event) int {
	n := 64
	switch x := ev.GetEvent().(type) {
	case *lpb.Event_ReceivedBytes:
		n += len(x.ReceivedBytes.GetBytes())
	case *lpb.Event_ReceivedMessages:
		for _, m := range x.ReceivedMessages.GetMessages() {
			n += 128 + len(m.GetTopic()) + len(m.GetPayload())
		}
	}
	return n
}

// signal wakes the writer.
func (s *laneStream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeLoop sends what gathered, one message at a time, until the stream
// breaks.
func (s *laneStream) writeLoop() {
	defer s.l.wg.Done()
	msg := &lpb.ToHandler{}
	for {
		select {
		case <-s.wake:
		case <-s.cs.Context().Done():
			s.fail(s.cs.Context().Err())
			return
		}
		s.gather()
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			return
		}
		// Take what fits in one message; the next batch reuses this
		// one's arrays.
		n, size := 0, 0
		for n < len(s.events) && (n == 0 || size < laneMaxBatch) {
			size += eventSize(s.events[n])
			n++
		}
		if n == len(s.events) {
			msg.Events, s.events = s.events, msg.Events[:0]
		} else {
			msg.Events = append(msg.Events[:0], s.events[:n]...)
			s.events = append(s.events[:0], s.events[n:]...)
			s.signal() // the rest goes in the next message
		}
		msg.Results, s.results = s.results, msg.Results[:0]
		s.mu.Unlock()
		if len(msg.Events) == 0 && len(msg.Results) == 0 {
			continue
		}
		if len(msg.Results) >= laneMaxResults {
			select {
			case s.room <- struct{}{}:
			default:
			}
		}
		if err := s.cs.Send(msg); err != nil {
			s.fail(err)
			return
		}
		clear(msg.Events)
		clear(msg.Results)
	}
}

// gather lets the events that are about to be queued join the batch. A
// connection that queues an event wakes the writer and then waits, so the
// writer would run at once and send batches of one; yielding first lets
// the other runnable connection goroutines queue theirs, and it yields
// again while that makes the batch grow.
func (s *laneStream) gather() {
	n := -1
	for range 4 {
		s.mu.Lock()
		m := len(s.events) + len(s.results)
		s.mu.Unlock()
		if m == n || m >= 256 {
			return
		}
		n = m
		runtime.Gosched()
	}
}

// readLoop runs the handler's calls and completes callbacks until the
// stream breaks.
func (s *laneStream) readLoop() {
	defer s.l.wg.Done()
	for {
		msg, err := s.cs.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		if !s.healthy {
			s.healthy = true
			s.l.mu.Lock()
			s.l.backoff = laneMinBackoff
			s.l.mu.Unlock()
		}
		s.mu.Unlock()
		for _, c := range msg.GetCalls() {
			s.run(c)
		}
		s.mu.Lock()
		for _, d := range msg.GetDone() {
			ch, ok := s.pending[d.GetId()]
			if !ok {
				s.l.unknownDone.Add(1)
				continue
			}
			delete(s.pending, d.GetId())
			ch <- d.GetError()
		}
		full := len(s.results) >= laneMaxResults
		s.mu.Unlock()
		if full {
			// Backpressure: the handler gets no more answers than
			// the gateway can send it.
			select {
			case <-s.room:
			case <-s.cs.Context().Done():
				s.fail(s.cs.Context().Err())
				return
			}
		}
	}
}

// fail breaks the stream once: callbacks in flight fail with err, and the
// next callback opens a new stream after the backoff.
func (s *laneStream) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.cancel()
	reason := fmt.Sprintf("remote: %s: stream broke: %v", ServiceLane, err)
	for _, ch := range pending {
		ch <- reason
	}
	l := s.l
	l.mu.Lock()
	if l.cur == s {
		l.cur = nil
		if l.ctx.Err() == nil {
			l.brokeLocked(err)
			l.log.Warn("remote: handler stream broke", "service", ServiceLane, "in_flight", len(pending), "err", err, "retry_in", time.Until(l.retryAt).Round(time.Millisecond))
		}
	}
	l.mu.Unlock()
}

// answer queues the result of call id (0: none wanted).
func (s *laneStream) answer(id uint64, kind string, conn string, err error) {
	if id == 0 {
		if err != nil {
			s.l.callFailed(kind, conn, err)
		}
		return
	}
	r := &lpb.CallResult{Id: id}
	if err != nil {
		r.Code, r.Message = pb.ResultCode(gateway.CodeOf(err)), err.Error()
	}
	s.mu.Lock()
	if s.err == nil {
		s.results = append(s.results, r)
	}
	s.mu.Unlock()
	s.signal()
}

// callFailed counts and logs, at most once a second, a call that failed
// and asked for no answer.
func (l *lane) callFailed(kind, conn string, err error) {
	n := l.callFails.Add(1)
	now := time.Now().UnixNano()
	if last := l.failLog.Load(); now-last >= int64(time.Second) && l.failLog.CompareAndSwap(last, now) {
		l.log.Info("remote: a handler call without an answer failed", "call", kind, "conn", conn, "err", err, "failed", n)
	}
}

// conn returns the connection handle names, if this handler serves it.
func (l *lane) conn(handle string) (*gateway.Conn, error) {
	if v, ok := l.conns.Load(handle); ok {
		return v.(*gateway.Conn), nil
	}
	if handle == "" {
		return nil, gateway.ErrNoHandle
	}
	if srv := l.srv.Load(); srv != nil {
		if _, err := srv.Lookup(handle); gateway.CodeOf(err) == gateway.CodeParamsTypeError {
			return nil, err
		}
	}
	// Another handler's connection, or none: the same answer.
	return nil, gateway.ErrNotAlive
}

// run runs one call of the handler. Calls that cannot block run here, in
// order; the others run on their own goroutine, as concurrent adapter rpcs
// would.
func (s *laneStream) run(call *lpb.Call) {
	l := s.l
	id := call.GetId()
	switch x := call.GetCall().(type) {
	case *lpb.Call_Send:
		c, err := l.conn(x.Send.GetConn())
		if err == nil {
			err = c.Queue(x.Send.GetBytes())
		}
		s.answer(id, "Send", x.Send.GetConn(), err)
	case *lpb.Call_Close:
		c, err := l.conn(x.Close.GetConn())
		if err == nil {
			err = c.Close()
		}
		s.answer(id, "Close", x.Close.GetConn(), err)
	case *lpb.Call_StartTimer:
		c, err := l.conn(x.StartTimer.GetConn())
		if err == nil {
			err = c.StartTimer(gateway.TimerType(x.StartTimer.GetType()), x.StartTimer.GetInterval())
		}
		s.answer(id, "StartTimer", x.StartTimer.GetConn(), err)
	case *lpb.Call_Authenticate, *lpb.Call_Publish, *lpb.Call_RawPublish, *lpb.Call_Subscribe, *lpb.Call_Unsubscribe:
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			kind, conn, err := s.runBlocking(call)
			s.answer(id, kind, conn, err)
		}()
	default:
		s.answer(id, "Call", "", gateway.Errorf(gateway.CodeRequiredParamsMissed, "remote: %s: a call with no request in it", ServiceLane))
	}
}

// runBlocking runs a call that may block, with the handler's timeout.
func (s *laneStream) runBlocking(call *lpb.Call) (kind, conn string, err error) {
	l := s.l
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("remote: recovered a panic in a handler call", "call", kind, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = gateway.Errorf(gateway.CodeUnknown, "remote: internal error in %s", kind)
		}
	}()
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	var c *gateway.Conn
	switch x := call.GetCall().(type) {
	case *lpb.Call_Authenticate:
		kind, conn = "Authenticate", x.Authenticate.GetConn()
		if c, err = l.conn(conn); err != nil {
			return
		}
		ci := x.Authenticate.GetClientinfo()
		if ci == nil {
			return kind, conn, gateway.Errorf(gateway.CodeRequiredParamsMissed, "remote: clientinfo is missing")
		}
		err = c.Authenticate(ctx, &gateway.ClientInfo{
			ProtoName: ci.GetProtoName(),
			ProtoVer:  ci.GetProtoVer(),
			ClientID:  ci.GetClientid(),
			Username:  ci.GetUsername(),
		}, x.Authenticate.GetPassword())
	case *lpb.Call_Publish:
		kind, conn = "Publish", x.Publish.GetConn()
		if c, err = l.conn(conn); err == nil {
			err = c.Publish(x.Publish.GetTopic(), x.Publish.GetQos(), x.Publish.GetPayload())
		}
	case *lpb.Call_RawPublish:
		kind = "RawPublish"
		srv := l.srv.Load()
		if srv == nil {
			return kind, "", gateway.Errorf(gateway.CodeUnknown, "remote: RawPublish before the handler's first connection")
		}
		err = srv.RawPublish(x.RawPublish.GetTopic(), x.RawPublish.GetQos(), x.RawPublish.GetPayload())
	case *lpb.Call_Subscribe:
		kind, conn = "Subscribe", x.Subscribe.GetConn()
		if c, err = l.conn(conn); err == nil {
			err = c.Subscribe(ctx, x.Subscribe.GetTopic(), x.Subscribe.GetQos())
		}
	case *lpb.Call_Unsubscribe:
		kind, conn = "Unsubscribe", x.Unsubscribe.GetConn()
		if c, err = l.conn(conn); err == nil {
			err = c.Unsubscribe(x.Unsubscribe.GetTopic())
		}
	}
	return kind, conn, err
}

// close ends the stream and waits for its goroutines and the calls in
// flight.
func (l *lane) close() {
	l.cancel()
	l.mu.Lock()
	s := l.cur
	l.mu.Unlock()
	if s != nil {
		s.fail(errors.New("handler closed"))
	}
	l.wg.Wait()
}

// The five callbacks on the lane. OnSocketCreated makes the connection
// reachable by the handler's calls; OnSocketClosed, whatever its outcome,
// ends that.

func (l *lane) onSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	l.srv.Store(c.Server())
	l.conns.Store(c.Handle(), c)
	return l.callback(ctx, "OnSocketCreated", &lpb.Event{Event: &lpb.Event_SocketCreated{
		SocketCreated: &pb.SocketCreatedRequest{Conn: c.Handle(), Conninfo: ConnInfo(info)}}})
}

func (l *lane) onReceivedBytes(ctx context.Context, c *gateway.Conn, b []byte) error {
	// b is valid only during the callback, which may end (on its
	// timeout) before the batch that carries it is sent: a copy.
	return l.callback(ctx, "OnReceivedBytes", &lpb.Event{Event: &lpb.Event_ReceivedBytes{
		ReceivedBytes: &pb.ReceivedBytesRequest{Conn: c.Handle(), Bytes: bytes.Clone(b)}}})
}

func (l *lane) onTimerTimeout(ctx context.Context, c *gateway.Conn, t gateway.TimerType) error {
	return l.callback(ctx, "OnTimerTimeout", &lpb.Event{Event: &lpb.Event_TimerTimeout{
		TimerTimeout: &pb.TimerTimeoutRequest{Conn: c.Handle(), Type: pb.TimerType(t)}}})
}

func (l *lane) onReceivedMessages(ctx context.Context, c *gateway.Conn, msgs []*gateway.Message) error {
	return l.callback(ctx, "OnReceivedMessages", &lpb.Event{Event: &lpb.Event_ReceivedMessages{
		ReceivedMessages: &pb.ReceivedMessagesRequest{Conn: c.Handle(), Messages: Messages(msgs)}}})
}

func (l *lane) onSocketClosed(ctx context.Context, c *gateway.Conn, reason string) error {
	defer l.conns.Delete(c.Handle())
	err := l.callback(ctx, "OnSocketClosed", &lpb.Event{Event: &lpb.Event_SocketClosed{
		SocketClosed: &pb.SocketClosedRequest{Conn: c.Handle(), Reason: reason}}})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
