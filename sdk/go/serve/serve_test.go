package serve_test

// The tests play the gateway: they open protogate.v1.StreamHandler streams
// to Serve over loopback gRPC, send events, answer calls, and check what
// the handler below does through the SDK.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/protogate/protogate/proto/exprotov1"
	lpb "github.com/protogate/protogate/proto/protogatev1"
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/serve"
)

const wait = 15 * time.Second

// handler runs the commands its devices send (one per OnReceivedBytes):
//
//	send TEXT        Send TEXT
//	pub TOPIC        Publish, then Send "pub: " and the error or "ok"
//	other HANDLE     Send to another connection, then Send the error
//	timer MS         SetTimer; OnTimer sends "fired"
//	fail             the callback fails
//	close            Close
type handler struct {
	protogate.Base
	closed []string
}

func (h *handler) OnSocketCreated(c protogate.Conn, info protogate.ConnInfo) error {
	return c.Authenticate(protogate.ClientInfo{ProtoName: "t", ProtoVer: "1", ClientID: info.Peer.Host}, "")
}

func (h *handler) OnReceivedBytes(c protogate.Conn, b []byte) error {
	cmd, arg, _ := strings.Cut(string(b), " ")
	switch cmd {
	case "send":
		return c.Send([]byte(arg))
	case "pub":
		res := "ok"
		if err := c.Publish(arg, 1, []byte("x")); err != nil {
			res = err.Error()
		}
		return c.Send([]byte("pub: " + res))
	case "other":
		var id uint64
		fmt.Sscanf(arg, "%x", &id)
		err := protogate.Conn(id).Send([]byte("hi"))
		return c.Send([]byte(fmt.Sprint("other: ", err)))
	case "timer":
		var ms int
		fmt.Sscan(arg, &ms)
		_, err := c.SetTimer(time.Duration(ms) * time.Millisecond)
		return err
	case "fail":
		return errors.New("asked to fail")
	case "close":
		return c.Close()
	}
	return nil
}

func (h *handler) OnTimer(c protogate.Conn, _ protogate.Timer) error {
	return c.Send([]byte("fired"))
}

func (h *handler) OnSocketClosed(c protogate.Conn, reason string) error {
	h.closed = append(h.closed, reason)
	return nil
}

// start serves a fresh handler until the test ends and returns a client of
// the service.
func start(t *testing.T) lpb.StreamHandlerClient {
	t.Helper()
	protogate.Register(&handler{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return lpb.NewStreamHandlerClient(cc)
}

// gw is one gateway stream.
type gw struct {
	t    *testing.T
	s    lpb.StreamHandler_StreamClient
	next uint64
	in   chan *lpb.ToGateway
}

func open(t *testing.T, c lpb.StreamHandlerClient) *gw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{t: t, s: s, in: make(chan *lpb.ToGateway, 100)}
	go func() {
		defer close(g.in)
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			g.in <- m
		}
	}()
	return g
}

func handle(i int) string { return fmt.Sprintf("%016x", 0x1000+i) }

// send sends events and returns their ids.
func (g *gw) send(evs ...*lpb.Event) []uint64 {
	g.t.Helper()
	var ids []uint64
	for _, ev := range evs {
		g.next++
		ev.Id = g.next
		ids = append(ids, g.next)
	}
	if err := g.s.Send(&lpb.ToHandler{Events: evs}); err != nil {
		g.t.Fatal(err)
	}
	return ids
}

func created(i int) *lpb.Event {
	return &lpb.Event{Event: &lpb.Event_SocketCreated{SocketCreated: &pb.SocketCreatedRequest{
		Conn: handle(i), Conninfo: &pb.ConnInfo{Peername: &pb.Address{Host: fmt.Sprintf("dev%d", i), Port: 1}}}}}
}

func bytesEv(i int, b string) *lpb.Event {
	return &lpb.Event{Event: &lpb.Event_ReceivedBytes{ReceivedBytes: &pb.ReceivedBytesRequest{Conn: handle(i), Bytes: []byte(b)}}}
}

func closedEv(i int) *lpb.Event {
	return &lpb.Event{Event: &lpb.Event_SocketClosed{SocketClosed: &pb.SocketClosedRequest{Conn: handle(i), Reason: "{shutdown,normal}"}}}
}

// item is a call or a result, in the order the handler sent them.
type item struct {
	call *lpb.Call
	done *lpb.EventResult
}

// until reads items, answering calls with an id with answer (SUCCESS when
// nil), until every id in ids has its EventResult, and returns the items.
func (g *gw) until(answer func(*lpb.Call) *lpb.CallResult, ids ...uint64) []item {
	g.t.Helper()
	want := make(map[uint64]bool)
	for _, id := range ids {
		want[id] = true
	}
	var items []item
	deadline := time.After(wait)
	for len(want) > 0 {
		select {
		case m, ok := <-g.in:
			if !ok {
				g.t.Fatal("stream ended")
			}
			var results []*lpb.CallResult
			for _, c := range m.GetCalls() {
				items = append(items, item{call: c})
				if c.GetId() == 0 {
					continue
				}
				r := &lpb.CallResult{}
				if answer != nil {
					if a := answer(c); a != nil {
						r = a
					}
				}
				r.Id = c.GetId()
				results = append(results, r)
			}
			if len(results) > 0 {
				if err := g.s.Send(&lpb.ToHandler{Results: results}); err != nil {
					g.t.Fatal(err)
				}
			}
			for _, d := range m.GetDone() {
				items = append(items, item{done: d})
				delete(want, d.GetId())
			}
		case <-deadline:
			g.t.Fatalf("no results for %v", want)
		}
	}
	return items
}

// sent returns what the items Send to conn i, in order.
func sent(items []item, i int) []string {
	var out []string
	for _, it := range items {
		if s := it.call.GetSend(); s != nil && s.GetConn() == handle(i) {
			out = append(out, string(s.GetBytes()))
		}
	}
	return out
}

func TestCallsPrecedeTheirResult(t *testing.T) {
	g := open(t, start(t))
	// As the gateway does: a connection's next event only after the
	// result of its last.
	ids := g.send(created(1), created(2))
	items := g.until(nil, ids...)
	ids = append(ids, g.send(bytesEv(1, "send a"), bytesEv(2, "send b"))...)
	items = append(items, g.until(nil, ids[2:]...)...)
	// Each connection's Send comes before the result of its callback,
	// and each connection authenticated (a call with an id) first.
	pos := map[string]int{}
	for n, it := range items {
		switch {
		case it.call.GetAuthenticate() != nil:
			if it.call.GetId() == 0 {
				t.Errorf("Authenticate without an id: its result is needed")
			}
			pos["auth "+it.call.GetAuthenticate().GetConn()] = n
		case it.call.GetSend() != nil:
			if it.call.GetId() != 0 {
				t.Errorf("Send with id %d: it should not wait", it.call.GetId())
			}
			pos["send "+it.call.GetSend().GetConn()] = n
		case it.done != nil:
			pos[fmt.Sprint("done ", it.done.GetId())] = n
			if it.done.GetError() != "" {
				t.Errorf("event %d failed: %s", it.done.GetId(), it.done.GetError())
			}
		}
	}
	for i, c := range []int{1, 2} {
		a, s := pos["auth "+handle(c)], pos["send "+handle(c)]
		dc, db := pos[fmt.Sprint("done ", ids[i])], pos[fmt.Sprint("done ", ids[2+i])]
		if !(a < dc && s < db) {
			t.Errorf("conn %d: authenticate %d, created done %d, send %d, bytes done %d: out of order", c, a, dc, s, db)
		}
	}
	if got := sent(items, 1); len(got) != 1 || got[0] != "a" {
		t.Errorf("conn 1 sent %q", got)
	}
}

func TestAnsweredCallsSeeTheGatewaysResult(t *testing.T) {
	g := open(t, start(t))
	ids := g.send(created(1), bytesEv(1, "pub no/way"), bytesEv(1, "pub ok/fine"))
	items := g.until(func(c *lpb.Call) *lpb.CallResult {
		if p := c.GetPublish(); p != nil && p.GetTopic() == "no/way" {
			return &lpb.CallResult{Code: pb.ResultCode_PERMISSION_DENY, Message: "gateway: not allowed"}
		}
		return nil
	}, ids...)
	got := sent(items, 1)
	want := []string{"pub: protogate: PERMISSION_DENY: gateway: not allowed", "pub: ok"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("sent %q, want %q", got, want)
	}
}

func TestUnknownConnAndFailures(t *testing.T) {
	g := open(t, start(t))
	ids := g.send(created(1), bytesEv(1, "other "+handle(99)), bytesEv(1, "fail"))
	items := g.until(nil, ids...)
	if got := sent(items, 1); len(got) != 1 || !strings.Contains(got[0], "CONN_PROCESS_NOT_ALIVE") {
		t.Errorf("send to an unknown conn: handler saw %q", got)
	}
	if got := sent(items, 99); len(got) != 0 {
		t.Errorf("bytes went to a conn the handler never had: %q", got)
	}
	for _, it := range items {
		if it.done != nil && it.done.GetId() == ids[2] && !strings.Contains(it.done.GetError(), "UNKNOWN") {
			t.Errorf("failed callback answered %q", it.done.GetError())
		}
	}
	// A malformed handle fails its event and nothing else.
	bad := g.send(&lpb.Event{Event: &lpb.Event_ReceivedBytes{ReceivedBytes: &pb.ReceivedBytesRequest{Conn: "not-a-handle", Bytes: []byte("send x")}}})
	items = g.until(nil, bad...)
	if d := items[len(items)-1].done; !strings.Contains(d.GetError(), "malformed conn handle") {
		t.Errorf("malformed handle answered %q", d.GetError())
	}
	// After OnSocketClosed the connection is gone for the handler.
	ids = g.send(closedEv(1), created(2), bytesEv(2, "other "+handle(1)))
	items = g.until(nil, ids...)
	if got := sent(items, 2); len(got) != 1 || !strings.Contains(got[0], "CONN_PROCESS_NOT_ALIVE") {
		t.Errorf("send to a closed conn: handler saw %q", got)
	}
}

func TestTimerFiresOutsideCallbacks(t *testing.T) {
	g := open(t, start(t))
	ids := g.send(created(1), bytesEv(1, "timer 5"))
	g.until(nil, ids...)
	deadline := time.After(wait)
	for {
		select {
		case m := <-g.in:
			for _, c := range m.GetCalls() {
				if s := c.GetSend(); s != nil && s.GetConn() == handle(1) && string(s.GetBytes()) == "fired" {
					return
				}
			}
		case <-deadline:
			t.Fatal("the timer did not fire")
		}
	}
}

// TestStreamBreakUnblocksTheHandler: a handler waiting for an answer on a
// stream that breaks gets CONN_PROCESS_NOT_ALIVE, and a new stream is
// served.
func TestStreamBreakUnblocksTheHandler(t *testing.T) {
	client := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := client.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// socket_created makes the handler Authenticate and wait; the test
	// never answers, and breaks the stream instead.
	if err := s.Send(&lpb.ToHandler{Events: []*lpb.Event{{Id: 1, Event: created(1).Event}}}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil || len(m.GetCalls()) == 0 || m.GetCalls()[0].GetAuthenticate() == nil {
		t.Fatalf("first message %v, %v: want the Authenticate", m, err)
	}
	cancel()
	g := open(t, client)
	ids := g.send(created(2), bytesEv(2, "send back"))
	items := g.until(nil, ids...)
	if got := sent(items, 2); len(got) != 1 || got[0] != "back" {
		t.Errorf("new stream: sent %q", got)
	}
}
