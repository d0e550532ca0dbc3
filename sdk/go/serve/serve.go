// Package serve runs the handler registered with protogate.Register as a
// native remote handler: a gRPC server of protogate's fast lane,
// protogate.v1.StreamHandler (proto/protogate.proto), for a gateway handler
// configured with
//
//	grpc: {address: http://127.0.0.1:9001, service_name: protogate.v1.StreamHandler}
//
// The same handler source builds as a Wasm guest and as a native service.
// Its main function is the only difference:
//
//	//go:build wasip1
//	func main() {}
//
//	//go:build !wasip1
//	func main() { serve.Main() }
//
// The handler keeps the contract it has in a Wasm instance: one callback at
// a time for the whole process, so it needs no locks, and host calls
// answered as a Wasm host answers them. Every callback of every gateway
// stream runs on one goroutine, in the order the events arrived.
//
// # Calls the handler makes
//
// Send, Close and StartTimer do not wait for the gateway: they go out with
// the next batch, before the callback's result, and the gateway runs them in
// order. They succeed on any connection the handler has had a callback for
// and not yet OnSocketClosed (a Wasm host answers the same: Send on a
// closing connection succeeds and drops the bytes), and fail with
// CONN_PROCESS_NOT_ALIVE on any other. A failure only the gateway can see
// (a full send queue) is logged and counted there. Authenticate, Publish,
// RawPublish, Subscribe and Unsubscribe wait for the gateway's answer, so
// the handler sees their real result: while one waits, no other callback
// runs. SetTimer and CancelTimer run timers in this process. Log writes to
// the process's log (log/slog's default logger).
package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/abi"
	pb "github.com/protogate/protogate/proto/exprotov1"
	lpb "github.com/protogate/protogate/proto/protogatev1"
	"github.com/protogate/protogate/sdk/go/internal/bridge"
)

// Bounds of the handler side of the lane.
const (
	// maxOut is how many bytes of calls may wait to be sent on one stream
	// before a call waits for the gateway to read.
	maxOut = 4 << 20
	// maxBatch splits larger batches over several messages.
	maxBatch = 1 << 20
	// maxMessage bounds one message either way.
	maxMessage = 64 << 20
	// maxTimers bounds the timers armed at once in the process.
	maxTimers = 1 << 20
)

// Main serves the registered handler on the address of the -listen flag
// (default 127.0.0.1:9001, the port EMQX's handlers use) until SIGINT or
// SIGTERM, and exits. It is the whole main function of a native handler.
func Main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve protogate.v1.StreamHandler on (host:port; port 0 picks one)")
	flag.Parse()
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
	// The chosen address, for supervisors and tests that pass port 0.
	fmt.Fprintln(os.Stdout, "serving protogate.v1.StreamHandler on", lis.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Serve(ctx, lis); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

// Serve serves the handler registered with protogate.Register on lis until
// ctx ends, then stops the gRPC server and returns nil. It fails if no
// handler is registered or the handler's Init fails. Only one Serve may run
// in a process: the handler is the process's.
func Serve(ctx context.Context, lis net.Listener) error {
	s, err := newServer(slog.Default())
	if err != nil {
		lis.Close()
		return err
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
	lpb.RegisterStreamHandlerServer(gs, s)
	dctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.dispatch(dctx)
	}()
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	select {
	case <-ctx.Done():
		// Streams end when the server stops; a gateway opens its
		// next one elsewhere or when this handler is back.
		gs.Stop()
		err = <-served
	case err = <-served:
	}
	cancel()
	wg.Wait()
	bridge.Current = nil
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// server is the StreamHandler service and the host of the registered
// handler. Fields after the queue belong to the dispatch goroutine.
type server struct {
	lpb.UnimplementedStreamHandlerServer
	log *slog.Logger

	qmu   sync.Mutex
	queue []work
	qwake chan struct{} // capacity 1

	// The dispatch goroutine's own.
	live      map[uint64]*peer   // connection -> the stream of its last event
	dirty     map[*peer]struct{} // streams with output queued by the current batch
	timers    map[uint64]map[int64]*time.Timer
	numTimers int
	nextTimer int64
	nextCall  uint64
	cur       *peer // the stream of the event being handled
	lastErr   string
	inbox     []byte
	asked     uint32
	scratch   []byte
}

// work is one event from a stream, or one timer that fired.
type work struct {
	p     *peer
	ev    *lpb.Event
	conn  uint64 // for a timer
	timer int64  // > 0 for a timer
}

func newServer(log *slog.Logger) (*server, error) {
	if bridge.Exports.Init == nil {
		return nil, errors.New("serve: package protogate is not linked in")
	}
	s := &server{
		log:    log,
		qwake:  make(chan struct{}, 1),
		live:   make(map[uint64]*peer),
		dirty:  make(map[*peer]struct{}),
		timers: make(map[uint64]map[int64]*time.Timer),
	}
	bridge.Current = (*host)(s)
	if st := bridge.Exports.Init(); st != abi.StatusSuccess {
		bridge.Current = nil
		return nil, fmt.Errorf("serve: the handler's Init failed with %v: %s", abi.Status(st), s.lastErr)
	}
	return s, nil
}

// push queues w for the dispatch goroutine. The queue has no bound of its
// own: the gateway sends a connection's next event only after the result of
// the last, so it holds at most one event per connection (and the timers
// that fired), and a reader that waited here could not deliver the call
// result the dispatch goroutine may be waiting for.
func (s *server) push(w work) {
	s.qmu.Lock()
	s.queue = append(s.queue, w)
	s.qmu.Unlock()
	select {
	case s.qwake <- struct{}{}:
	default:
	}
}

// pushEvents queues the events of one message, waking the dispatch
// goroutine once.
func (s *server) pushEvents(p *peer, evs []*lpb.Event) {
	s.qmu.Lock()
	for _, ev := range evs {
		s.queue = append(s.queue, work{p: p, ev: ev})
	}
	s.qmu.Unlock()
	select {
	case s.qwake <- struct{}{}:
	default:
	}
}

// dispatch runs the queued work, one item at a time, until ctx ends.
func (s *server) dispatch(ctx context.Context) {
	var batch []work
	for {
		s.qmu.Lock()
		batch, s.queue = s.queue, batch[:0]
		s.qmu.Unlock()
		for i := range batch {
			s.run(&batch[i])
			batch[i] = work{}
		}
		// What the batch's callbacks queued leaves now, in one message
		// per stream where it fits: the writers were not woken per
		// callback.
		for p := range s.dirty {
			p.signal()
		}
		clear(s.dirty)
		if len(batch) > 0 {
			continue
		}
		select {
		case <-s.qwake:
		case <-ctx.Done():
			s.stopTimers()
			return
		}
	}
}

// run handles one work item.
func (s *server) run(w *work) {
	if w.timer > 0 {
		s.fire(w.conn, w.timer)
		return
	}
	p, ev := w.p, w.ev
	if p.broken() {
		// The gateway failed this callback when the stream broke.
		return
	}
	s.cur = p
	defer func() { s.cur = nil }()
	var conn string
	var payload []byte
	var name string
	switch x := ev.GetEvent().(type) {
	case *lpb.Event_SocketCreated:
		name, conn = abi.CallbackSocketCreated, x.SocketCreated.GetConn()
		payload = abi.AppendSocketCreated(s.scratch[:0], conn, connInfo(x.SocketCreated.GetConninfo()))
	case *lpb.Event_ReceivedBytes:
		name, conn = abi.CallbackReceivedBytes, x.ReceivedBytes.GetConn()
		payload = x.ReceivedBytes.GetBytes()
	case *lpb.Event_TimerTimeout:
		name, conn = abi.CallbackTimerTimeout, x.TimerTimeout.GetConn()
	case *lpb.Event_ReceivedMessages:
		name, conn = abi.CallbackReceivedMessages, x.ReceivedMessages.GetConn()
		payload = abi.AppendReceivedMessages(s.scratch[:0], conn)
		for _, m := range x.ReceivedMessages.GetMessages() {
			payload = abi.AppendMessageField(payload, &abi.Message{
				Node: m.GetNode(), ID: m.GetId(), QoS: m.GetQos(), From: m.GetFrom(),
				Topic: m.GetTopic(), Payload: m.GetPayload(), Timestamp: m.GetTimestamp(),
			})
		}
	case *lpb.Event_SocketClosed:
		name, conn = abi.CallbackSocketClosed, x.SocketClosed.GetConn()
		payload = abi.AppendSocketClosed(s.scratch[:0], conn, x.SocketClosed.GetReason())
	default:
		p.done(ev.GetId(), "serve: an event with no callback in it")
		return
	}
	id, ok := parseHandle(conn)
	if !ok {
		p.done(ev.GetId(), fmt.Sprintf("serve: %s: malformed conn handle %q", name, conn))
		return
	}
	if cap(payload) > cap(s.scratch) && name != abi.CallbackReceivedBytes {
		s.scratch = payload[:0]
	}
	s.live[id] = p
	n := s.fill(payload)
	var st abi.Status
	switch name {
	case abi.CallbackSocketCreated:
		st = bridge.Exports.OnSocketCreated(id, n)
	case abi.CallbackReceivedBytes:
		st = bridge.Exports.OnReceivedBytes(id, n)
	case abi.CallbackTimerTimeout:
		st = bridge.Exports.OnTimerTimeout(id, int32(ev.GetTimerTimeout().GetType()))
	case abi.CallbackReceivedMessages:
		st = bridge.Exports.OnReceivedMessages(id, n)
	case abi.CallbackSocketClosed:
		st = bridge.Exports.OnSocketClosed(id, n)
		delete(s.live, id)
		s.cancelTimers(id)
	}
	if st == abi.StatusSuccess {
		p.done(ev.GetId(), "")
		return
	}
	p.done(ev.GetId(), "handler returned "+st.String())
}

// fill copies payload into the handler's inbox, asking for room only when
// it needs more than it last asked for.
func (s *server) fill(payload []byte) uint32 {
	n := uint32(len(payload))
	if n > s.asked || s.inbox == nil {
		s.inbox = bridge.Exports.Inbox(n)
		s.asked = n
	}
	copy(s.inbox, payload)
	return n
}

// fire runs timer t of conn, if it is still armed.
func (s *server) fire(conn uint64, t int64) {
	ts := s.timers[conn]
	if _, ok := ts[t]; !ok {
		return
	}
	delete(ts, t)
	s.numTimers--
	p := s.live[conn]
	if p == nil {
		return
	}
	s.cur = p
	defer func() { s.cur = nil }()
	if st := bridge.Exports.OnTimer(conn, t); st != abi.StatusSuccess {
		// As a Wasm host does: the connection closes; the gateway then
		// sends OnSocketClosed.
		s.log.Warn("serve: on_timer failed; closing the connection", "conn", formatHandle(conn), "status", st.String())
		p.call(&lpb.Call{Call: &lpb.Call_Close{Close: &pb.CloseSocketRequest{Conn: formatHandle(conn)}}}, 0)
	}
}

// cancelTimers disarms every timer of conn.
func (s *server) cancelTimers(conn uint64) {
	for _, t := range s.timers[conn] {
		t.Stop()
		s.numTimers--
	}
	delete(s.timers, conn)
}

func (s *server) stopTimers() {
	for conn := range s.timers {
		s.cancelTimers(conn)
	}
}

// Stream implements lpb.StreamHandlerServer: one gateway's stream.
func (s *server) Stream(ss lpb.StreamHandler_StreamServer) error {
	p := &peer{
		s: s, ss: ss,
		wake:    make(chan struct{}, 1),
		room:    make(chan struct{}, 1),
		dead:    make(chan struct{}),
		waiting: make(map[uint64]chan *lpb.CallResult),
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		p.writeLoop()
	}()
	err := p.readLoop()
	p.fail(err)
	<-wrote
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// peer is one gateway stream.
type peer struct {
	s    *server
	ss   lpb.StreamHandler_StreamServer
	wake chan struct{} // capacity 1
	room chan struct{} // capacity 1: out fell below maxOut
	dead chan struct{} // closed when the stream broke

	mu       sync.Mutex
	calls    []*lpb.Call
	results  []*lpb.EventResult // of callbacks, after the calls they made
	outBytes int
	waiting  map[uint64]chan *lpb.CallResult
	err      error
}

func (p *peer) broken() bool {
	select {
	case <-p.dead:
		return true
	default:
		return false
	}
}

func (p *peer) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	if err == nil {
		err = errors.New("stream ended")
	}
	p.err = err
	close(p.dead)
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// readLoop reads the gateway's batches until the stream ends.
func (p *peer) readLoop() error {
	for {
		msg, err := p.ss.Recv()
		if err != nil {
			return err
		}
		if rs := msg.GetResults(); len(rs) > 0 {
			p.mu.Lock()
			for _, r := range rs {
				if ch, ok := p.waiting[r.GetId()]; ok {
					delete(p.waiting, r.GetId())
					ch <- r
				}
			}
			p.mu.Unlock()
		}
		if evs := msg.GetEvents(); len(evs) > 0 {
			p.s.pushEvents(p, evs)
		}
	}
}

// writeLoop sends the queued calls and results until the stream breaks.
func (p *peer) writeLoop() {
	msg := &lpb.ToGateway{}
	for {
		select {
		case <-p.wake:
		case <-p.dead:
			return
		}
		p.mu.Lock()
		n, size := 0, 0
		for n < len(p.calls) && (n == 0 || size < maxBatch) {
			size += callSize(p.calls[n])
			n++
		}
		if n == len(p.calls) {
			msg.Calls, p.calls = p.calls, msg.Calls[:0]
			msg.Done, p.results = p.results, msg.Done[:0]
		} else {
			// Results stay behind the calls they follow.
			msg.Calls = append(msg.Calls[:0], p.calls[:n]...)
			p.calls = append(p.calls[:0], p.calls[n:]...)
			msg.Done = msg.Done[:0]
			p.signal()
		}
		p.outBytes -= size
		p.mu.Unlock()
		select {
		case p.room <- struct{}{}:
		default:
		}
		if len(msg.Calls) == 0 && len(msg.Done) == 0 {
			continue
		}
		if err := p.ss.Send(msg); err != nil {
			p.fail(err)
			return
		}
		clear(msg.Calls)
		clear(msg.Done)
	}
}

func callSize(c *lpb.Call) int {
	n := 48
	switch x := c.GetCall().(type) {
	case *lpb.Call_Send:
		n += len(x.Send.GetBytes())
	case *lpb.Call_Publish:
		n += len(x.Publish.GetTopic()) + len(x.Publish.GetPayload())
	case *lpb.Call_RawPublish:
		n += len(x.RawPublish.GetTopic()) + len(x.RawPublish.GetPayload())
	}
	return n
}

// done queues a callback's result; the dispatch goroutine wakes the
// writer at the end of its batch. Only the dispatch goroutine calls it.
func (p *peer) done(id uint64, errText string) {
	p.mu.Lock()
	p.results = append(p.results, &lpb.EventResult{Id: id, Error: errText})
	p.mu.Unlock()
	p.s.dirty[p] = struct{}{}
}

// call queues c, waiting while too many bytes of calls are unsent. With
// id > 0 it wakes the writer and returns the channel the result arrives
// on; otherwise the dispatch goroutine wakes the writer at the end of its
// batch. Only the dispatch goroutine calls it.
func (p *peer) call(c *lpb.Call, id uint64) (chan *lpb.CallResult, error) {
	size := callSize(c)
	p.mu.Lock()
	for p.outBytes > maxOut && p.err == nil {
		p.mu.Unlock()
		p.signal()
		select {
		case <-p.room:
		case <-p.dead:
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	var ch chan *lpb.CallResult
	if id > 0 {
		c.Id = id
		ch = make(chan *lpb.CallResult, 1)
		p.waiting[id] = ch
	}
	p.calls = append(p.calls, c)
	p.outBytes += size
	if id > 0 {
		// The caller waits for the answer: send now.
		p.signal()
	} else {
		p.s.dirty[p] = struct{}{}
	}
	return ch, nil
}

// parseHandle reads a gateway conn handle: 16 lowercase hex digits.
func parseHandle(h string) (uint64, bool) {
	if len(h) != 16 {
		return 0, false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return 0, false
		}
	}
	id, err := strconv.ParseUint(h, 16, 64)
	return id, err == nil
}

// formatHandle is parseHandle's inverse.
func formatHandle(id uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// connInfo converts ExProto's ConnInfo to the ABI's.
func connInfo(ci *pb.ConnInfo) *abi.ConnInfo {
	out := &abi.ConnInfo{
		SockType: int32(ci.GetSocktype()),
		Peer:     abi.Address{Host: ci.GetPeername().GetHost(), Port: ci.GetPeername().GetPort()},
		Local:    abi.Address{Host: ci.GetSockname().GetHost(), Port: ci.GetSockname().GetPort()},
	}
	if pc := ci.GetPeercert(); pc != nil {
		out.HasPeerCert = true
		out.PeerCert = abi.CertInfo{CN: pc.GetCn(), DN: pc.GetDn()}
	}
	return out
}
