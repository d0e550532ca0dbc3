package remote_test

// The fault cases of the fast lane: a handler killed and restarted, a
// stream that breaks with callbacks in flight, a handler that stops
// reading, a slow one, and one that sends malformed calls and unknown ids.
// The misbehaving handlers are scripted StreamHandler servers on real gRPC;
// the restart uses the native build of guests/exproto-json.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/remote"
	jp "github.com/protogate/protogate/internal/jsonproto"
	pb "github.com/protogate/protogate/proto/exprotov1"
	lpb "github.com/protogate/protogate/proto/protogatev1"
)

// watched passes callbacks on and records the connections created and
// closed. It never blocks a callback.
type watched struct {
	gateway.Handler

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	created []*gateway.Conn
	taken   int               // created[:taken] were returned by next
	reasons map[string]string // handle -> close reason
}

func newWatched(h gateway.Handler) *watched {
	return &watched{Handler: h, changed: make(chan struct{}), reasons: make(map[string]string)}
}

func (w *watched) note(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *watched) OnSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	w.note(func() { w.created = append(w.created, c) })
	return w.Handler.OnSocketCreated(ctx, c, info)
}

func (w *watched) OnSocketClosed(ctx context.Context, c *gateway.Conn, reason string) error {
	err := w.Handler.OnSocketClosed(ctx, c, reason)
	w.note(func() { w.reasons[c.Handle()] = reason })
	return err
}

// wait waits until cond, evaluated under w.mu, holds.
func (w *watched) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(wait)
	for {
		w.mu.Lock()
		ok, ch := cond(), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("waited %v for %s", wait, what)
		}
	}
}

// next returns the oldest connection created and not yet returned.
func (w *watched) next(t *testing.T) *gateway.Conn {
	t.Helper()
	var c *gateway.Conn
	w.wait(t, "OnSocketCreated", func() bool {
		if w.taken < len(w.created) {
			c = w.created[w.taken]
			w.taken++
			return true
		}
		return false
	})
	return c
}

// closedReason waits for the close of c and returns its reason.
func (w *watched) closedReason(t *testing.T, c *gateway.Conn) string {
	t.Helper()
	var reason string
	w.wait(t, "the close of "+c.Handle(), func() bool {
		r, ok := w.reasons[c.Handle()]
		reason = r
		return ok
	})
	return reason
}

// isClosed reports whether c was closed.
func (w *watched) isClosed(c *gateway.Conn) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.reasons[c.Handle()]
	return r, ok
}

// laneRig is a gateway with a broker, one listener served by a fast-lane
// Handler and one by an in-process echo (the bystander).
type laneRig struct {
	srv       *gateway.Server
	laneConn  *gateway.Conn // set by tests that need one
	h         *remote.Handler
	w         *watched
	addr      string // the lane's listener
	bystander string // the echo's listener
	echo      *guest
}

func newLaneRig(t *testing.T, handlerAddr string, timeout time.Duration) *laneRig {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	br, err := broker.Start(broker.Config{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Shutdown(context.Background()) })
	srv := gateway.New(gateway.Options{PubSub: br, Logger: log})
	h := laneHandler(t, handlerAddr, timeout)
	r := &laneRig{
		srv:  srv,
		h:    h,
		w:    newWatched(h),
		echo: newGuest(),
	}
	ln, eln := listen(t), listen(t)
	r.addr, r.bystander = ln.Addr().String(), eln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		srv.Serve(ln, &gateway.Listener{Name: "lane", Type: gateway.TCP, Handler: r.w})
	}()
	go func() {
		defer wg.Done()
		srv.Serve(eln, &gateway.Listener{Name: "bystander", Type: gateway.TCP, Handler: r.echo})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
		wg.Wait()
	})
	return r
}

// dial connects a device to the lane's listener and returns it with its
// gateway connection.
func (r *laneRig) dial(t *testing.T) (net.Conn, *gateway.Conn) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", r.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc, r.w.next(t)
}

// closedReason waits for the close of c and returns its reason.
func (r *laneRig) closedReason(t *testing.T, c *gateway.Conn) string {
	t.Helper()
	return r.w.closedReason(t, c)
}

// awaitStreams makes devices until the lane has opened n streams: each
// device's OnSocketCreated tries to open one (within the backoff after a
// break, the try fails at once, and that device is closed).
func (r *laneRig) awaitStreams(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for r.h.LaneStats().Streams < n {
		if time.Now().After(deadline) {
			t.Fatalf("no stream %d: %+v", n, r.h.LaneStats())
		}
		probe, c := r.dial(t)
		probe.Close()
		r.w.closedReason(t, c)
		if r.h.LaneStats().Streams < n {
			// Polling a counter, with a deadline: the backoff is at
			// least 100 ms.
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// bystanderEchoes checks that a device of the other listener is served.
func (r *laneRig) bystanderEchoes(t *testing.T) {
	t.Helper()
	nc, _ := guestDevice(t, r.bystander, r.echo)
	echoFirst(t, nc, "still here")
}

// expectEOF waits for the gateway to close nc.
func expectEOF(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(wait))
	for {
		_, err := nc.Read(make([]byte, 512))
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read: %v, want EOF", err)
		}
	}
}

// scriptedLane is a StreamHandler whose streams run a test's function.
type scriptedLane struct {
	lpb.UnimplementedStreamHandlerServer
	streams atomic.Int32
	run     func(n int32, ss lpb.StreamHandler_StreamServer) error
}

func (s *scriptedLane) Stream(ss lpb.StreamHandler_StreamServer) error {
	return s.run(s.streams.Add(1), ss)
}

// serveLane serves s on 127.0.0.1:0 until the test ends; it returns the
// handler address and a function that stops the server (breaking its
// streams).
func serveLane(t *testing.T, s *scriptedLane) (string, func()) {
	t.Helper()
	gs := grpc.NewServer()
	lpb.RegisterStreamHandlerServer(gs, s)
	addr := serve(t, gs)
	return "http://" + addr, gs.Stop
}

// finish answers every event of a message with success.
func finish(ss lpb.StreamHandler_StreamServer, msg *lpb.ToHandler, calls ...*lpb.Call) error {
	out := &lpb.ToGateway{Calls: calls}
	for _, ev := range msg.GetEvents() {
		out.Done = append(out.Done, &lpb.EventResult{Id: ev.GetId()})
	}
	return ss.Send(out)
}

// TestLaneHandlerKilledAndRestarted kills the native handler process: a
// device with no callback in flight keeps its connection and is served by
// the restarted handler (the gateway still holds its session), and new
// devices are served again within the reconnect backoff. The gateway and
// its other listener do not notice.
func TestLaneHandlerKilledAndRestarted(t *testing.T) {
	ln := listen(t)
	hostPort := ln.Addr().String()
	ln.Close()
	native := startNative(t, "exproto-json", hostPort)
	r := newLaneRig(t, native.Addr, 5*time.Second)

	nc, _ := r.dial(t)
	dev := newJSONDevice(t, nc)
	dev.send(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "exproto", ProtoVer: "1.0", ClientID: "survivor"}})
	dev.expect(jp.Connack, 0)

	native.Kill()
	r.bystanderEchoes(t)

	startNative(t, "exproto-json", hostPort)
	// Probes make the gateway open the next stream (a first try may fall
	// within the backoff); then the survivor's next frame goes to the new
	// process.
	r.awaitStreams(t, 2)
	dev.send(jp.Frame{Type: jp.Publish, Topic: "t/after", QoS: 0, Payload: "x"})
	dev.expect(jp.Puback, 0)

	nc2, _ := r.dial(t)
	dev2 := newJSONDevice(t, nc2)
	dev2.send(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "exproto", ProtoVer: "1.0", ClientID: "newcomer"}})
	dev2.expect(jp.Connack, 0)
}

// TestLaneStreamBreakFailsInFlight breaks the stream while one device's
// callback is in flight: that device is closed with a reason saying the
// stream broke, a device with nothing in flight lives on, and the next
// callbacks go to a new stream.
func TestLaneStreamBreakFailsInFlight(t *testing.T) {
	held := make(chan struct{})
	s := &scriptedLane{}
	s.run = func(n int32, ss lpb.StreamHandler_StreamServer) error {
		for {
			msg, err := ss.Recv()
			if err != nil {
				return err
			}
			var echo []*lpb.Call
			for _, ev := range msg.GetEvents() {
				b := ev.GetReceivedBytes()
				if n == 1 && b != nil && string(b.GetBytes()) == "hold" {
					close(held)
					// End the stream with the callback unanswered.
					return errors.New("handler crashed")
				}
				if b != nil {
					echo = append(echo, &lpb.Call{Call: &lpb.Call_Send{Send: &pb.SendBytesRequest{Conn: b.GetConn(), Bytes: b.GetBytes()}}})
				}
			}
			if err := finish(ss, msg, echo...); err != nil {
				return err
			}
		}
	}
	addr, _ := serveLane(t, s)
	r := newLaneRig(t, addr, 10*time.Second)
	idle, idleConn := r.dial(t)
	busy, busyConn := r.dial(t)
	busy.Write([]byte("hold"))
	<-held
	if reason := r.closedReason(t, busyConn); !strings.Contains(reason, "stream broke") {
		t.Errorf("in-flight device closed with %q, want the stream's break named", reason)
	}
	expectEOF(t, busy)
	// The idle device lives, and is served on the next stream.
	r.awaitStreams(t, 2)
	idle.SetWriteDeadline(time.Now().Add(wait))
	if _, err := idle.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	expect(t, idle, "still")
	if reason, closed := r.w.isClosed(idleConn); closed {
		t.Fatalf("idle device closed: %s", reason)
	}
	r.bystanderEchoes(t)
}

// TestLaneHandlerStopsReading: a handler that takes the first batch and
// then never reads again. Callbacks time out and close only their own
// connections, and the gateway's other listener is served meanwhile.
func TestLaneHandlerStopsReading(t *testing.T) {
	stop := make(chan struct{})
	s := &scriptedLane{run: func(_ int32, ss lpb.StreamHandler_StreamServer) error {
		if _, err := ss.Recv(); err != nil {
			return err
		}
		select {
		case <-stop:
		case <-ss.Context().Done():
		}
		return nil
	}}
	addr, _ := serveLane(t, s)
	defer close(stop)
	const timeout = time.Second
	r := newLaneRig(t, addr, timeout)
	// 16 devices each send 64 KiB, more than gRPC's flow-control window:
	// the gateway's writer blocks on a handler that does not read.
	var conns []*gateway.Conn
	var ncs []net.Conn
	for range 16 {
		nc, c := r.dial(t)
		conns, ncs = append(conns, c), append(ncs, nc)
	}
	big := []byte(strings.Repeat("x", 64<<10))
	for _, nc := range ncs {
		nc.SetWriteDeadline(time.Now().Add(wait))
		nc.Write(big)
	}
	for i, c := range conns {
		reason := r.closedReason(t, c)
		if !strings.Contains(reason, "on_socket_created") && !strings.Contains(reason, "on_received_bytes") {
			t.Errorf("device %d closed with %q, want a callback's timeout", i, reason)
		}
	}
	r.bystanderEchoes(t)
}

// TestLaneSlowHandler answers one callback after its timeout: that
// connection closes with the timeout named, the late answer is counted and
// dropped, and the next device is served.
func TestLaneSlowHandler(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s := &scriptedLane{run: func(_ int32, ss lpb.StreamHandler_StreamServer) error {
		for {
			msg, err := ss.Recv()
			if err != nil {
				return err
			}
			var send []*lpb.Call
			for _, ev := range msg.GetEvents() {
				b := ev.GetReceivedBytes()
				switch {
				case b != nil && string(b.GetBytes()) == "slow":
					// Answer after the gateway gave up.
					go func(id uint64) {
						time.Sleep(3 * timeout)
						ss.Send(&lpb.ToGateway{Done: []*lpb.EventResult{{Id: id}}})
					}(ev.GetId())
					msg.Events = nil
				case b != nil:
					send = append(send, &lpb.Call{Call: &lpb.Call_Send{Send: &pb.SendBytesRequest{Conn: b.GetConn(), Bytes: b.GetBytes()}}})
				}
			}
			if err := finish(ss, msg, send...); err != nil {
				return err
			}
		}
	}}
	addr, _ := serveLane(t, s)
	r := newLaneRig(t, addr, timeout)
	slow, slowConn := r.dial(t)
	slow.Write([]byte("slow"))
	if reason := r.closedReason(t, slowConn); !strings.Contains(reason, "no result from the handler within") {
		t.Errorf("slow device closed with %q, want the timeout named", reason)
	}
	deadline := time.Now().Add(wait)
	for r.h.LaneStats().UnknownResults == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the late answer was not counted")
		}
		time.Sleep(10 * time.Millisecond) // polling a counter, with a deadline
	}
	fine, _ := r.dial(t)
	echoFirst(t, fine, "quick")
	if st := r.h.LaneStats(); st.Streams != 1 {
		t.Errorf("stats %+v: the late answer should not have broken the stream", st)
	}
}

// TestLaneMalformedCalls: a handler sends calls the gateway must refuse
// (no request, malformed, empty and foreign handles, a missing clientinfo)
// and results with unknown ids, each answered with its code, and then
// a good Send, which arrives.
func TestLaneMalformedCalls(t *testing.T) {
	foreign := make(chan string, 1)
	results := make(chan map[uint64]*lpb.CallResult, 1)
	s := &scriptedLane{run: func(_ int32, ss lpb.StreamHandler_StreamServer) error {
		msg, err := ss.Recv()
		if err != nil {
			return err
		}
		ev := msg.GetEvents()[0]
		conn := ev.GetSocketCreated().GetConn()
		other := <-foreign
		bad := &lpb.ToGateway{
			Calls: []*lpb.Call{
				{Id: 1},
				{Id: 2, Call: &lpb.Call_Send{Send: &pb.SendBytesRequest{Conn: "zz", Bytes: []byte("x")}}},
				{Id: 3, Call: &lpb.Call_Send{Send: &pb.SendBytesRequest{Bytes: []byte("x")}}},
				{Id: 4, Call: &lpb.Call_Send{Send: &pb.SendBytesRequest{Conn: other, Bytes: []byte("stolen")}}},
				{Id: 5, Call: &lpb.Call_Authenticate{Authenticate: &pb.AuthenticateRequest{Conn: conn}}},
				{Id: 6, Call: &lpb.Call_Close{Close: &pb.CloseSocketRequest{Conn: strings.Repeat("f", 16)}}},
				{Id: 7, Call: &lpb.Call_Send{Send: &pb.SendBytesRequest{Conn: conn, Bytes: []byte("fine")}}},
			},
			Done: []*lpb.EventResult{{Id: 1 << 60}, {Id: ev.GetId() + 1000}},
		}
		if err := ss.Send(bad); err != nil {
			return err
		}
		got := make(map[uint64]*lpb.CallResult)
		for len(got) < 7 {
			in, err := ss.Recv()
			if err != nil {
				return err
			}
			for _, r := range in.GetResults() {
				got[r.GetId()] = r
			}
		}
		results <- got
		if err := ss.Send(&lpb.ToGateway{Done: []*lpb.EventResult{{Id: ev.GetId()}}}); err != nil {
			return err
		}
		for {
			msg, err := ss.Recv()
			if err != nil {
				return err
			}
			if err := finish(ss, msg); err != nil {
				return err
			}
		}
	}}
	addr, _ := serveLane(t, s)
	r := newLaneRig(t, addr, 10*time.Second)
	byst, bystHandle := guestDevice(t, r.bystander, r.echo)
	foreign <- bystHandle
	nc, c := r.dial(t)
	r.laneConn = c
	var got map[uint64]*lpb.CallResult
	select {
	case got = <-results:
	case <-time.After(wait):
		t.Fatal("no results")
	}
	want := map[uint64]pb.ResultCode{
		1: pb.ResultCode_REQUIRED_PARAMS_MISSED,
		2: pb.ResultCode_PARAMS_TYPE_ERROR,
		3: pb.ResultCode_REQUIRED_PARAMS_MISSED,
		4: pb.ResultCode_CONN_PROCESS_NOT_ALIVE,
		5: pb.ResultCode_REQUIRED_PARAMS_MISSED,
		6: pb.ResultCode_CONN_PROCESS_NOT_ALIVE,
		7: pb.ResultCode_SUCCESS,
	}
	for id, code := range want {
		if g := got[id]; g.GetCode() != code || (code != pb.ResultCode_SUCCESS && g.GetMessage() == "") {
			t.Errorf("call %d: %v %q, want %v with a message", id, g.GetCode(), g.GetMessage(), code)
		}
	}
	expect(t, nc, "fine")
	echoFirst(t, byst, "untouched")
	// The ConnectionAdapter does not reach a fast-lane connection: its
	// handler's calls come on the stream.
	gs := grpc.NewServer()
	remote.NewAdapter(r.srv, slog.New(slog.DiscardHandler), r.h).Register(gs)
	ad := pb.NewConnectionAdapterClient(benchClient(t, serve(t, gs)))
	for rpc, call := range everyRPC(context.Background(), ad, r.laneConn.Handle()) {
		if rpc == "RawPublish" {
			continue
		}
		if resp, err := call(); err != nil || resp.GetCode() != pb.ResultCode_CONN_PROCESS_NOT_ALIVE {
			t.Errorf("adapter %s on a fast-lane connection: %v %v, want CONN_PROCESS_NOT_ALIVE", rpc, resp, err)
		}
	}
	if st := r.h.LaneStats(); st.UnknownResults != 2 || st.Streams != 1 {
		t.Errorf("stats %+v, want 2 unknown results on 1 stream", st)
	}
}

// jsonDevice speaks the JSON test protocol to the native exproto-json
// handler.
type jsonDevice struct {
	t   *testing.T
	nc  net.Conn
	dec *jp.Decoder
}

func newJSONDevice(t *testing.T, nc net.Conn) *jsonDevice {
	return &jsonDevice{t: t, nc: nc, dec: jp.NewDecoder(1 << 16)}
}

func (d *jsonDevice) send(f jp.Frame) {
	d.t.Helper()
	d.nc.SetWriteDeadline(time.Now().Add(wait))
	if _, err := d.nc.Write(jp.AppendLine(nil, f)); err != nil {
		d.t.Fatal(err)
	}
}

func (d *jsonDevice) expect(typ jp.Type, code int) {
	d.t.Helper()
	buf := make([]byte, 4096)
	d.nc.SetReadDeadline(time.Now().Add(wait))
	for {
		f, ok, err := d.dec.Next()
		if err != nil {
			d.t.Fatal(err)
		}
		if ok {
			if f.Type != typ || f.Code != code {
				d.t.Fatalf("got %s code %d, want %s code %d", f.Type, f.Code, typ, code)
			}
			return
		}
		n, err := d.nc.Read(buf)
		d.dec.Feed(buf[:n])
		if err != nil && n == 0 {
			d.t.Fatal(fmt.Errorf("waiting for %s: %w", typ, err))
		}
	}
}
