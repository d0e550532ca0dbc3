package protogate_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/abi"
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/internal/bridge"
	"github.com/protogate/protogate/sdk/go/sdktest"
)

// recorder records every callback as a line of text and answers with the
// error or panic the test sets.
type recorder struct {
	events []string
	infos  []protogate.ConnInfo
	msgs   []protogate.Message
	err    error // returned by every callback
	panic  any   // panicked by every callback if non-nil
	onRecv func(c protogate.Conn, b []byte) error
}

func (r *recorder) ret() error {
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

func (r *recorder) OnSocketCreated(c protogate.Conn, info protogate.ConnInfo) error {
	r.events = append(r.events, "created")
	r.infos = append(r.infos, info)
	return r.ret()
}

func (r *recorder) OnReceivedBytes(c protogate.Conn, b []byte) error {
	r.events = append(r.events, fmt.Sprintf("bytes %q", b))
	if r.onRecv != nil {
		return r.onRecv(c, b)
	}
	return r.ret()
}

func (r *recorder) OnTimerTimeout(c protogate.Conn, t protogate.TimerType) error {
	r.events = append(r.events, fmt.Sprintf("timeout %d", t))
	return r.ret()
}

func (r *recorder) OnReceivedMessages(c protogate.Conn, msgs []protogate.Message) error {
	r.events = append(r.events, fmt.Sprintf("messages %d", len(msgs)))
	for _, m := range msgs {
		m.Payload = bytes.Clone(m.Payload)
		r.msgs = append(r.msgs, m)
	}
	return r.ret()
}

func (r *recorder) OnSocketClosed(c protogate.Conn, reason string) error {
	r.events = append(r.events, "closed "+reason)
	return r.ret()
}

func (r *recorder) OnTimer(c protogate.Conn, t protogate.Timer) error {
	r.events = append(r.events, fmt.Sprintf("timer %d", t))
	return r.ret()
}

func (r *recorder) take() []string {
	ev := r.events
	r.events = nil
	return ev
}

func setup(t *testing.T) (*sdktest.Host, *recorder) {
	t.Helper()
	h := sdktest.New(t)
	r := &recorder{}
	protogate.Register(r)
	return h, r
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func TestCallbacks(t *testing.T) {
	h, r := setup(t)
	info := protogate.ConnInfo{
		SockType: protogate.SSL,
		Peer:     protogate.Address{Host: "192.0.2.7", Port: 50123},
		Local:    protogate.Address{Host: "0.0.0.0", Port: 7993},
		PeerCert: &protogate.CertInfo{CN: "dev1", DN: "CN=dev1,O=Acme"},
	}
	c := h.Connect(info)
	if len(r.infos) != 1 || r.infos[0].Peer != info.Peer || r.infos[0].Local != info.Local ||
		r.infos[0].SockType != protogate.SSL || r.infos[0].PeerCert == nil || *r.infos[0].PeerCert != *info.PeerCert {
		t.Errorf("conn info = %+v, want %+v", r.infos, info)
	}
	c2 := h.Connect(protogate.ConnInfo{})
	if c2 == c || c2 == 0 || c == 0 {
		t.Errorf("conns %d and %d", c, c2)
	}
	if r.infos[1].PeerCert != nil {
		t.Errorf("PeerCert %+v without a certificate", r.infos[1].PeerCert)
	}

	if err := h.Receive(c, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := h.Receive(c, nil); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789"), 20000)
	if err := h.Receive(c, big); err != nil {
		t.Fatal(err)
	}
	if got := r.take(); len(got) != 5 || got[2] != `bytes "hello"` || got[3] != `bytes ""` || got[4] != fmt.Sprintf("bytes %q", big) {
		t.Errorf("events %.100q", got)
	}

	msgs := []protogate.Message{
		{Node: "n1", ID: "0123456789ABCDEF0123456789ABCDEF", QoS: 2, From: "dev2", Topic: "a/b", Payload: []byte("p1"), Timestamp: 1764000000123},
		{Topic: "c", Payload: bytes.Repeat([]byte{0xff}, 70000)},
		{},
	}
	if err := h.Deliver(c, msgs...); err != nil {
		t.Fatal(err)
	}
	equal(t, "events", r.take(), []string{"messages 3"})
	if len(r.msgs) != 3 {
		t.Fatalf("got %d messages", len(r.msgs))
	}
	for i := range msgs {
		got, want := r.msgs[i], msgs[i]
		if got.Node != want.Node || got.ID != want.ID || got.QoS != want.QoS || got.From != want.From ||
			got.Topic != want.Topic || !bytes.Equal(got.Payload, want.Payload) || got.Timestamp != want.Timestamp {
			t.Errorf("message %d = %+.40v, want %+.40v", i, got, want)
		}
	}

	if err := h.Timeout(c2); err != nil {
		t.Fatal(err)
	}
	equal(t, "events", r.take(), []string{"timeout 0", "closed " + sdktest.ReasonKeepaliveTimeout})
	if reason, ok := h.Closed(c2); !ok || reason != sdktest.ReasonKeepaliveTimeout {
		t.Errorf("Closed = %q, %v", reason, ok)
	}

	if err := h.Disconnect(c, ""); err != nil {
		t.Fatal(err)
	}
	equal(t, "events", r.take(), []string{"closed " + sdktest.ReasonTCPClosed})
	if err := c.Send([]byte("x")); !errors.Is(err, abi.StatusNotAlive) {
		t.Errorf("Send after close: %v, want NOT_ALIVE", err)
	}
}

func TestHostCalls(t *testing.T) {
	h, r := setup(t)
	c := h.Connect(protogate.ConnInfo{})
	var tm protogate.Timer
	r.onRecv = func(c protogate.Conn, b []byte) error {
		must := func(err error) {
			if err != nil {
				t.Errorf("%s: %v", b, err)
			}
		}
		must(c.Send(b))
		must(c.Authenticate(protogate.ClientInfo{ProtoName: "p", ProtoVer: "1", ClientID: "id1", Username: "u"}, "pw"))
		must(c.StartTimer(protogate.KeepAlive, 30))
		must(c.Publish("t/1", 1, []byte("payload")))
		must(protogate.RawPublish("raw/1", 2, []byte("raw")))
		must(c.Subscribe("t/#", 2))
		must(c.Unsubscribe("t/#"))
		var err error
		tm, err = c.SetTimer(1500 * time.Microsecond)
		must(err)
		must(c.CancelTimer(tm))
		protogate.Log(protogate.LevelInfo, "done")
		return nil
	}
	if err := h.Receive(c, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, call := range h.Calls() {
		got = append(got, call.String())
	}
	equal(t, "calls", got, []string{
		fmt.Sprintf(`send %d "hi"`, c),
		fmt.Sprintf(`authenticate %d {ProtoName:p ProtoVer:1 ClientID:id1 Username:u} "pw"`, c),
		fmt.Sprintf(`start_timer %d type0 30s`, c),
		fmt.Sprintf(`publish %d t/1 qos1 "payload"`, c),
		`raw_publish raw/1 qos2 "raw"`,
		fmt.Sprintf(`subscribe %d t/# qos2`, c),
		fmt.Sprintf(`unsubscribe %d t/#`, c),
		fmt.Sprintf(`set_timer %d 2ms -> %d`, c, tm),
		fmt.Sprintf(`cancel_timer %d %d`, c, tm),
		`log info "done"`,
	})
	if got := h.Sent(c); string(got) != "hi" {
		t.Errorf("Sent = %q", got)
	}
	if got := h.Sent(c); len(got) != 0 {
		t.Errorf("second Sent = %q, want nothing", got)
	}
	if ts := h.Timers(c); len(ts) != 0 {
		t.Errorf("timers %v armed after CancelTimer", ts)
	}
}

func TestHostErrors(t *testing.T) {
	h, r := setup(t)
	c := h.Connect(protogate.ConnInfo{})
	var errs []error
	r.onRecv = func(c protogate.Conn, b []byte) error {
		errs = append(errs,
			c.Publish("t", 0, nil), // not authenticated
			c.Subscribe("t", 3),    // bad qos
			c.Send(nil),            // injected failure
			c.Authenticate(protogate.ClientInfo{ClientID: "a"}, ""),
			c.Authenticate(protogate.ClientInfo{ClientID: "a"}, ""), // twice
			c.Publish("a/+", 0, nil),                                // wildcard
		)
		_, err := c.SetTimer(25 * time.Hour)
		errs = append(errs, err)
		_, err = c.SetTimer(time.Second)
		errs = append(errs, err)
		return nil
	}
	h.Fail(abi.ImportSend, abi.StatusNotAlive, "gone away")
	h.Fail(abi.ImportSetTimer, abi.StatusPermissionDeny, "too many timers")
	if err := h.Receive(c, []byte("x")); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		st  abi.Status
		msg string
	}{
		{abi.StatusUnknown, "sdktest: not authenticated: call Authenticate first"},
		{abi.StatusParamsTypeError, "sdktest: qos 3 is not 0, 1 or 2"},
		{abi.StatusNotAlive, "gone away"},
		{abi.StatusSuccess, ""},
		{abi.StatusPermissionDeny, "sdktest: duplicated authenticate command"},
		{abi.StatusParamsTypeError, "sdktest: invalid topic"},
		{abi.StatusParamsTypeError, "SetTimer: delay 25h0m0s is longer than 24h"},
		{abi.StatusPermissionDeny, "too many timers"},
	}
	if len(errs) != len(want) {
		t.Fatalf("%d errors", len(errs))
	}
	for i, w := range want {
		err := errs[i]
		if w.st == abi.StatusSuccess {
			if err != nil {
				t.Errorf("%d: %v", i, err)
			}
			continue
		}
		var e *protogate.Error
		if !errors.As(err, &e) || e.Status != w.st || e.Msg != w.msg {
			t.Errorf("%d: %#v, want status %v message %q", i, err, w.st, w.msg)
			continue
		}
		if !errors.Is(err, w.st) {
			t.Errorf("%d: errors.Is(%v, %v) is false", i, err, w.st)
		}
		var st abi.Status
		if !errors.As(err, &st) || st != w.st {
			t.Errorf("%d: errors.As gives status %v", i, st)
		}
		if got := err.Error(); got != "protogate: "+w.st.String()+": "+w.msg {
			t.Errorf("%d: Error() = %q", i, got)
		}
	}
	if got := (&protogate.Error{Status: abi.StatusUnknown}).Error(); got != "protogate: UNKNOWN" {
		t.Errorf("Error() without message = %q", got)
	}
	h.Fail(abi.ImportSend, abi.StatusSuccess, "")
	r.onRecv = func(c protogate.Conn, b []byte) error { return c.Send(b) }
	if err := h.Receive(c, []byte("ok")); err != nil {
		t.Errorf("Send after clearing the failure: %v", err)
	}
}

func TestLongErrorMessage(t *testing.T) {
	h, r := setup(t)
	c := h.Connect(protogate.ConnInfo{})
	long := strings.Repeat("m", 1000)
	h.Fail(abi.ImportClose, abi.StatusUnknown, long)
	var err error
	r.onRecv = func(c protogate.Conn, b []byte) error {
		err = c.Close()
		return nil
	}
	h.Receive(c, nil)
	var e *protogate.Error
	if !errors.As(err, &e) || e.Msg != long {
		t.Errorf("got %v, want the whole message of 1000 bytes", err)
	}
}

func TestCallbackFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		panic  any
		status abi.Status
	}{
		{"host error", &protogate.Error{Status: abi.StatusPermissionDeny, Msg: "no"}, nil, abi.StatusPermissionDeny},
		{"wrapped host error", fmt.Errorf("ctx: %w", &protogate.Error{Status: abi.StatusNotAlive}), nil, abi.StatusNotAlive},
		{"status", abi.StatusParamsTypeError, nil, abi.StatusParamsTypeError},
		{"plain error", errors.New("boom"), nil, abi.StatusUnknown},
		{"invalid status", &protogate.Error{Status: 42}, nil, abi.StatusUnknown},
		{"success status", &protogate.Error{}, nil, abi.StatusUnknown},
		{"panic", nil, "kaboom", abi.StatusUnknown},
		{"runtime panic", nil, []int{}, abi.StatusUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, r := setup(t)
			c := h.Connect(protogate.ConnInfo{})
			r.err, r.panic = tc.err, tc.panic
			if tc.name == "runtime panic" {
				r.panic = nil
				r.onRecv = func(protogate.Conn, []byte) error {
					var m map[string]int
					//lint:ignore SA5000 the test needs a runtime panic
					m["x"] = 1 // assignment to entry in nil map
					return nil
				}
			}
			err := h.Receive(c, []byte("x"))
			var e *protogate.Error
			if !errors.As(err, &e) || e.Status != tc.status {
				t.Fatalf("Receive = %v, want status %v", err, tc.status)
			}
			reason, closed := h.Closed(c)
			if want := "{shutdown,{error,{on_received_bytes," + tc.status.String() + "}}}"; !closed || reason != want {
				t.Errorf("Closed = %q, %v; want %q", reason, closed, want)
			}
			// The failure was logged, with the stack for a panic.
			var logged string
			for _, call := range h.Calls() {
				if call.Op == abi.ImportLog {
					logged += call.Msg
				}
			}
			if !strings.Contains(logged, "OnReceivedBytes") ||
				(tc.panic != nil || r.onRecv != nil) && !strings.Contains(logged, "goroutine") {
				t.Errorf("log %q", logged)
			}
			// The instance still works.
			r.err, r.panic, r.onRecv = nil, nil, nil
			c2 := h.Connect(protogate.ConnInfo{})
			if err := h.Receive(c2, []byte("y")); err != nil {
				t.Errorf("next connection: %v", err)
			}
		})
	}
}

func TestOnSocketCreatedFailureCloses(t *testing.T) {
	h, r := setup(t)
	r.err = errors.New("refused")
	c := h.Connect(protogate.ConnInfo{})
	equal(t, "events", r.take(), []string{"created", "closed {shutdown,{error,{on_socket_created,UNKNOWN}}}"})
	if _, closed := h.Closed(c); !closed {
		t.Error("not closed")
	}
}

func TestCloseFromCallback(t *testing.T) {
	h, r := setup(t)
	c := h.Connect(protogate.ConnInfo{})
	r.onRecv = func(c protogate.Conn, b []byte) error {
		if err := c.Send([]byte("bye")); err != nil {
			return err
		}
		return c.Close()
	}
	if err := h.Receive(c, []byte("quit")); err != nil {
		t.Fatal(err)
	}
	equal(t, "events", r.take(), []string{"created", `bytes "quit"`, "closed " + sdktest.ReasonNormal})
	if got := h.Sent(c); string(got) != "bye" {
		t.Errorf("sent %q", got)
	}
}

func TestTimers(t *testing.T) {
	h, r := setup(t)
	c := h.Connect(protogate.ConnInfo{})
	var timers []protogate.Timer
	r.onRecv = func(c protogate.Conn, b []byte) error {
		for _, d := range []time.Duration{0, time.Nanosecond, 10 * time.Millisecond, 24 * time.Hour} {
			tm, err := c.SetTimer(d)
			if err != nil {
				return err
			}
			timers = append(timers, tm)
		}
		return nil
	}
	if err := h.Receive(c, nil); err != nil {
		t.Fatal(err)
	}
	var delays []time.Duration
	for _, call := range h.Calls() {
		delays = append(delays, call.Delay)
	}
	if want := []time.Duration{time.Millisecond, time.Millisecond, 10 * time.Millisecond, 24 * time.Hour}; !slices.Equal(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	if got := h.Timers(c); !slices.Equal(got, timers) {
		t.Errorf("armed %v, want %v", got, timers)
	}
	if err := h.Fire(c, timers[2]); err != nil {
		t.Fatal(err)
	}
	equal(t, "events", r.take()[2:], []string{fmt.Sprintf("timer %d", timers[2])})
	h.Disconnect(c, "")
	if got := h.Timers(c); len(got) != 0 {
		t.Errorf("timers %v armed after close", got)
	}
}

type noTimers struct{ protogate.Base }

func TestSetTimerNeedsTimerHandler(t *testing.T) {
	h := sdktest.New(t)
	protogate.Register(noTimers{})
	c := h.Connect(protogate.ConnInfo{})
	if _, err := c.SetTimer(time.Second); err == nil || !strings.Contains(err.Error(), "TimerHandler") {
		t.Errorf("SetTimer = %v", err)
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("host calls %v", calls)
	}
}

type initer struct {
	protogate.Base
	err error
	n   int
}

func (i *initer) Init() error {
	i.n++
	return i.err
}

func TestInit(t *testing.T) {
	h := sdktest.New(t)
	i := &initer{}
	protogate.Register(i)
	if err := h.Init(); err != nil || i.n != 1 {
		t.Errorf("Init = %v after %d calls", err, i.n)
	}
	i.err = &protogate.Error{Status: abi.StatusPermissionDeny}
	var e *protogate.Error
	if err := h.Init(); !errors.As(err, &e) || e.Status != abi.StatusPermissionDeny {
		t.Errorf("Init = %v, want PERMISSION_DENY", err)
	}
	protogate.Register(noTimers{}) // no Init: succeeds
	if err := h.Init(); err != nil {
		t.Errorf("Init without Initializer = %v", err)
	}
}

func TestRegisterNilPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	protogate.Register(nil)
}

func TestNoHost(t *testing.T) {
	// Outside a test host, host calls fail instead of crashing.
	err := protogate.Conn(1).Send([]byte("x"))
	var e *protogate.Error
	if !errors.As(err, &e) || e.Status != abi.StatusUnknown || !strings.Contains(e.Msg, "no host") {
		t.Errorf("Send = %v", err)
	}
	protogate.Log(protogate.LevelInfo, "discarded")
}

func TestBytesValidOnlyDuringCall(t *testing.T) {
	h, r := setup(t)
	c := h.Connect(protogate.ConnInfo{})
	var kept []byte
	r.onRecv = func(c protogate.Conn, b []byte) error {
		kept = b // wrong: b is valid only during the call
		return nil
	}
	h.Receive(c, []byte("secret"))
	if string(kept) == "secret" {
		t.Error("the Host left the inbox intact; kept bytes would go unnoticed")
	}
}

type echo struct{ protogate.Base }

func (echo) OnReceivedBytes(c protogate.Conn, b []byte) error { return c.Send(b) }

// The bytes path allocates nothing, through the fake host.
func TestReceiveSendAllocs(t *testing.T) {
	h := sdktest.New(t)
	protogate.Register(echo{})
	c := h.Connect(protogate.ConnInfo{})
	msg := bytes.Repeat([]byte("x"), 1024)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := h.Receive(c, msg); err != nil {
			t.Fatal(err)
		}
		h.Reset()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
	h.Receive(c, msg)
	if got := h.Sent(c); !bytes.Equal(got, msg) {
		t.Errorf("echoed %d bytes", len(got))
	}
}

// nopHost answers every host call with success and allocates nothing.
type nopHost struct{}

func (nopHost) Send(uint64, []byte) abi.Status                    { return 0 }
func (nopHost) Close(uint64) abi.Status                           { return 0 }
func (nopHost) Authenticate(uint64, []byte) abi.Status            { return 0 }
func (nopHost) StartTimer(uint64, int32, uint32) abi.Status       { return 0 }
func (nopHost) Publish(uint64, string, uint32, []byte) abi.Status { return 0 }
func (nopHost) RawPublish(string, uint32, []byte) abi.Status      { return 0 }
func (nopHost) Subscribe(uint64, string, uint32) abi.Status       { return 0 }
func (nopHost) Unsubscribe(uint64, string) abi.Status             { return 0 }
func (nopHost) SetTimer(uint64, uint32) int64                     { return 1 }
func (nopHost) CancelTimer(uint64, int64) abi.Status              { return 0 }
func (nopHost) Log(int32, string)                                 {}
func (nopHost) LastError([]byte) int                              { return 0 }

type busy struct{ protogate.Base }

func (busy) OnReceivedBytes(c protogate.Conn, b []byte) error {
	if err := c.Publish("t/up", 1, b); err != nil {
		return err
	}
	if err := protogate.RawPublish("t/raw", 0, b); err != nil {
		return err
	}
	if err := c.Subscribe("t/down", 0); err != nil {
		return err
	}
	protogate.Log(protogate.LevelDebug, "sent")
	return c.Send(b)
}

func (busy) OnTimer(protogate.Conn, protogate.Timer) error { return nil }

// Publish, RawPublish, Subscribe, Log and the callback dispatch allocate
// nothing in the SDK itself (the fake host copies what it records, so this
// test calls the exports directly with a host that keeps nothing).
func TestHostCallAllocs(t *testing.T) {
	sdktest.New(t) // holds the installed host for this test
	protogate.Register(busy{})
	saved := bridge.Current
	bridge.Current = nopHost{}
	defer func() { bridge.Current = saved }()
	copy(bridge.Exports.Inbox(64), "hello")
	allocs := testing.AllocsPerRun(1000, func() {
		if st := bridge.Exports.OnReceivedBytes(1, 5); st != abi.StatusSuccess {
			t.Fatal(st)
		}
		if st := bridge.Exports.OnTimer(1, 1); st != abi.StatusSuccess {
			t.Fatal(st)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message, want 0", allocs)
	}
}

func BenchmarkReceiveSend(b *testing.B) {
	h := sdktest.New(b)
	protogate.Register(echo{})
	c := h.Connect(protogate.ConnInfo{})
	msg := bytes.Repeat([]byte("x"), 64)
	b.ReportAllocs()
	for b.Loop() {
		h.Receive(c, msg)
		h.Reset()
	}
}

func TestConstants(t *testing.T) {
	if protogate.KeepAlive != protogate.TimerType(abi.TimerKeepalive) {
		t.Errorf("KeepAlive = %d, want %d", protogate.KeepAlive, abi.TimerKeepalive)
	}
	for _, l := range []struct {
		got  protogate.Level
		want slog.Level
	}{
		{protogate.LevelDebug, slog.LevelDebug},
		{protogate.LevelInfo, slog.LevelInfo},
		{protogate.LevelWarn, slog.LevelWarn},
		{protogate.LevelError, slog.LevelError},
	} {
		if int(l.got) != int(l.want) {
			t.Errorf("level %d, want %d", l.got, l.want)
		}
	}
}
