// Package sdktest is a fake protogate host for native tests of guests
// written with package protogate (github.com/protogate/protogate/sdk/go).
// Guest logic compiles natively too, so a test installs a [Host], drives the
// registered handler with callbacks and checks what the guest did, with go
// test and no WebAssembly runtime:
//
//	func TestEcho(t *testing.T) {
//		h := sdktest.New(t)
//		c := h.Connect(protogate.ConnInfo{})
//		h.Receive(c, []byte("hi"))
//		if got := h.Sent(c); string(got) != "hi" {
//			t.Errorf("sent %q", got)
//		}
//	}
//
// The Host delivers callbacks through the same code as the guest's Wasm
// exports (the inbox included) and answers host calls the way the gateway
// does: a connection closed by the guest, by a failed callback or by a
// keepalive timeout gets its OnSocketClosed right after the callback;
// Publish, Subscribe and Unsubscribe need a successful Authenticate; calls on
// a closed connection fail with abi.StatusNotAlive; bytes sent while a
// connection is closing are dropped. It has no broker: messages reach a
// guest only through [Host.Deliver]. After every callback it overwrites the
// bytes it passed in, so a guest that keeps them past the call fails its
// tests instead of misbehaving in production.
//
// Concurrency: the guest's state is global, like the instance it stands for,
// so one Host is installed at a time. New waits while a Host of another test
// is installed (tests that use sdktest may call t.Parallel, but run one at a
// time) and fails the test if a Host of the same test or a parent test is
// installed. A Host's methods may be called from any goroutine; callbacks
// are serialized, as the single-threaded instance requires.
package sdktest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protogate/protogate/abi"
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/internal/bridge"
)

// Close reasons the Host gives, as the gateway does.
const (
	ReasonNormal           = "{shutdown,normal}"            // the guest called Close
	ReasonTCPClosed        = "{shutdown,tcp_closed}"        // the default of Disconnect
	ReasonKeepaliveTimeout = "{shutdown,keepalive_timeout}" // after Timeout
)

// Call is one host call the guest made.
type Call struct {
	Op     string         // the import's name: abi.ImportSend, abi.ImportPublish, ...
	Conn   protogate.Conn // 0 for raw_publish and log
	Status abi.Status     // what the Host answered

	Bytes      []byte               // send: the bytes; publish, raw_publish: the payload
	Topic      string               // publish, raw_publish: the topic; subscribe, unsubscribe: the filter
	QoS        uint8                // publish, raw_publish, subscribe
	ClientInfo protogate.ClientInfo // authenticate
	Password   string               // authenticate
	TimerType  protogate.TimerType  // start_timer
	Interval   uint32               // start_timer, in seconds
	Delay      time.Duration        // set_timer
	Timer      protogate.Timer      // set_timer: the timer armed (0 if it failed); cancel_timer
	Level      protogate.Level      // log
	Msg        string               // log
}

// String formats c on one line, for example `publish 3 t/a qos1 "hi"`, with
// " = STATUS" appended when the call failed.
func (c Call) String() string {
	var b strings.Builder
	b.WriteString(c.Op)
	if c.Op != abi.ImportRawPublish && c.Op != abi.ImportLog {
		b.WriteString(" " + strconv.FormatUint(uint64(c.Conn), 10))
	}
	switch c.Op {
	case abi.ImportSend:
		b.WriteString(" " + strconv.Quote(string(c.Bytes)))
	case abi.ImportAuthenticate:
		fmt.Fprintf(&b, " %+v %q", c.ClientInfo, c.Password)
	case abi.ImportStartTimer:
		fmt.Fprintf(&b, " type%d %ds", c.TimerType, c.Interval)
	case abi.ImportPublish, abi.ImportRawPublish:
		fmt.Fprintf(&b, " %s qos%d %q", c.Topic, c.QoS, c.Bytes)
	case abi.ImportSubscribe:
		fmt.Fprintf(&b, " %s qos%d", c.Topic, c.QoS)
	case abi.ImportUnsubscribe:
		b.WriteString(" " + c.Topic)
	case abi.ImportSetTimer:
		fmt.Fprintf(&b, " %v -> %d", c.Delay, c.Timer)
	case abi.ImportCancelTimer:
		fmt.Fprintf(&b, " %d", c.Timer)
	case abi.ImportLog:
		fmt.Fprintf(&b, " %s %q", levelName(c.Level), c.Msg)
	}
	if c.Status != abi.StatusSuccess {
		b.WriteString(" = " + c.Status.String())
	}
	return b.String()
}

func levelName(l protogate.Level) string {
	switch l {
	case protogate.LevelDebug:
		return "debug"
	case protogate.LevelInfo:
		return "info"
	case protogate.LevelWarn:
		return "warn"
	case protogate.LevelError:
		return "error"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Host is a fake protogate host. Create it with [New].
type Host struct {
	t testing.TB

	// deliver is held while a callback runs.
	deliver sync.Mutex
	asked   uint32 // the inbox size last asked for; the real host caches it too
	inbox   []byte

	mu      sync.Mutex // guards what follows
	conns   map[protogate.Conn]*connState
	calls   []Call
	arena   []byte // holds the Bytes of calls, reused after Reset
	fails   map[string]failure
	lastErr string
	timerID int64
}

type failure struct {
	status abi.Status
	msg    string
}

// The life of a connection in the Host.
const (
	stateOpen    = iota
	stateClosing // closed; OnSocketClosed not delivered yet
	stateDead    // OnSocketClosed delivered
)

type connState struct {
	state  int
	reason string
	authed bool
	sent   []byte
	timers map[protogate.Timer]time.Duration
}

// connIDs makes conns unique across Hosts, as the gateway's never repeat.
var connIDs atomic.Uint64

var (
	installed sync.Mutex // held while a Host is installed

	activeMu sync.Mutex
	active   *Host
)

// New installs a fake host for the duration of t and returns it. It waits
// while a Host of another test is installed, and fails t if one of t itself
// or of a parent test is.
func New(t testing.TB) *Host {
	t.Helper()
	activeMu.Lock()
	if a := active; a != nil && (a.t.Name() == t.Name() || strings.HasPrefix(t.Name(), a.t.Name()+"/")) {
		activeMu.Unlock()
		t.Fatalf("sdktest: %s already installed a Host; use that one", a.t.Name())
	}
	activeMu.Unlock()
	installed.Lock()
	h := &Host{
		t:     t,
		conns: make(map[protogate.Conn]*connState),
		fails: make(map[string]failure),
	}
	activeMu.Lock()
	active = h
	activeMu.Unlock()
	bridge.Current = (*hostCalls)(h)
	t.Cleanup(func() {
		h.deliver.Lock()
		bridge.Current = nil
		h.deliver.Unlock()
		activeMu.Lock()
		active = nil
		activeMu.Unlock()
		installed.Unlock()
	})
	return h
}

// Init calls the guest's protogate_init, as the host does once per
// instance, and returns an error if it refused the instance. New does not
// call it; a guest's Init then runs once per test, not once per process.
func (h *Host) Init() error {
	h.t.Helper()
	h.deliver.Lock()
	defer h.deliver.Unlock()
	if st := bridge.Exports.Init(); st != abi.StatusSuccess {
		h.checkStatus("protogate_init", st)
		return &protogate.Error{Status: st, Msg: "protogate_init failed"}
	}
	return nil
}

// Connect opens a connection and delivers OnSocketCreated with info. If
// the callback fails, the connection is closed, as by the gateway;
// [Host.Closed] then reports the reason.
func (h *Host) Connect(info protogate.ConnInfo) protogate.Conn {
	h.t.Helper()
	c := protogate.Conn(connIDs.Add(1))
	h.mu.Lock()
	h.conns[c] = &connState{}
	h.mu.Unlock()
	aci := abi.ConnInfo{
		SockType: int32(info.SockType),
		Peer:     abi.Address{Host: info.Peer.Host, Port: uint32(info.Peer.Port)},
		Local:    abi.Address{Host: info.Local.Host, Port: uint32(info.Local.Port)},
	}
	if info.PeerCert != nil {
		aci.HasPeerCert = true
		aci.PeerCert = abi.CertInfo{CN: info.PeerCert.CN, DN: info.PeerCert.DN}
	}
	req := abi.AppendSocketCreated(nil, handle(c), &aci)
	h.callback(c, abi.CallbackSocketCreated, req, bridge.Exports.OnSocketCreated)
	return c
}

// handle is the conn string of c in the protobuf payloads.
func handle(c protogate.Conn) string { return fmt.Sprintf("%016x", uint64(c)) }

// Receive delivers OnReceivedBytes with b and returns the callback's error:
// nil, or an *protogate.Error with the status it failed with (the Host then
// closes the connection).
func (h *Host) Receive(c protogate.Conn, b []byte) error {
	h.t.Helper()
	return h.callback(c, abi.CallbackReceivedBytes, b, bridge.Exports.OnReceivedBytes)
}

// Deliver delivers OnReceivedMessages with msgs and returns the callback's
// error, like Receive.
func (h *Host) Deliver(c protogate.Conn, msgs ...protogate.Message) error {
	h.t.Helper()
	req := abi.AppendReceivedMessages(nil, handle(c))
	for i := range msgs {
		m := &msgs[i]
		req = abi.AppendMessageField(req, &abi.Message{
			Node:      m.Node,
			ID:        m.ID,
			QoS:       uint32(m.QoS),
			From:      m.From,
			Topic:     m.Topic,
			Payload:   m.Payload,
			Timestamp: uint64(m.Timestamp),
		})
	}
	return h.callback(c, abi.CallbackReceivedMessages, req, bridge.Exports.OnReceivedMessages)
}

// Timeout delivers OnTimerTimeout(KeepAlive), as when the keepalive
// expires, and returns the callback's error. As in the gateway, the
// connection is already closing during the callback (bytes sent are
// dropped) and is closed with ReasonKeepaliveTimeout after it.
func (h *Host) Timeout(c protogate.Conn) error {
	h.t.Helper()
	h.mu.Lock()
	if st := h.conns[c]; st != nil && st.state == stateOpen {
		st.state, st.reason = stateClosing, ReasonKeepaliveTimeout
	}
	h.mu.Unlock()
	return h.callback(c, abi.CallbackTimerTimeout, nil, func(conn uint64, _ uint32) abi.Status {
		return bridge.Exports.OnTimerTimeout(conn, int32(protogate.KeepAlive))
	})
}

// Fire fires timer t of c, armed with SetTimer and not yet fired or
// cancelled, delivering OnTimer, and returns the callback's error.
func (h *Host) Fire(c protogate.Conn, t protogate.Timer) error {
	h.t.Helper()
	h.mu.Lock()
	st := h.conns[c]
	_, armed := st.timerArmed(t)
	if armed {
		delete(st.timers, t)
	}
	h.mu.Unlock()
	if !armed {
		h.t.Fatalf("sdktest: Fire: timer %d of conn %d is not armed", t, c)
	}
	return h.callback(c, abi.CallbackTimer, nil, func(conn uint64, _ uint32) abi.Status {
		return bridge.Exports.OnTimer(conn, int64(t))
	})
}

func (st *connState) timerArmed(t protogate.Timer) (time.Duration, bool) {
	if st == nil {
		return 0, false
	}
	d, ok := st.timers[t]
	return d, ok
}

// Timers returns the timers of c that are armed, in the order they were
// armed.
func (h *Host) Timers(c protogate.Conn) []protogate.Timer {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ts []protogate.Timer
	if st := h.conns[c]; st != nil {
		for t := range st.timers {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

// Disconnect closes c from the device's side: it delivers OnSocketClosed
// with reason (ReasonTCPClosed if empty) and returns the callback's error.
func (h *Host) Disconnect(c protogate.Conn, reason string) error {
	h.t.Helper()
	if reason == "" {
		reason = ReasonTCPClosed
	}
	h.deliver.Lock()
	defer h.deliver.Unlock()
	h.mu.Lock()
	st := h.conns[c]
	open := st != nil && st.state == stateOpen
	if open {
		st.state, st.reason = stateClosing, reason
	}
	h.mu.Unlock()
	if !open {
		h.t.Fatalf("sdktest: Disconnect: conn %d is not open", c)
	}
	return h.closed(c)
}

// Closed reports whether c got its OnSocketClosed, and with what reason.
func (h *Host) Closed(c protogate.Conn) (reason string, closed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.conns[c]; st != nil && st.state == stateDead {
		return st.reason, true
	}
	return "", false
}

// Sent returns the bytes the guest sent on c since the previous call of
// Sent for c (or Reset), and forgets them. Bytes sent while c was closing
// are not included: the gateway drops them.
func (h *Host) Sent(c protogate.Conn) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.conns[c]
	if st == nil {
		return nil
	}
	b := slices.Clone(st.sent)
	st.sent = st.sent[:0]
	return b
}

// Calls returns the host calls the guest made since the previous call of
// Calls (or Reset), in order, and forgets them.
func (h *Host) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	calls := slices.Clone(h.calls)
	for i := range calls {
		calls[i].Bytes = slices.Clone(calls[i].Bytes)
	}
	h.forgetLocked()
	return calls
}

// Reset forgets the recorded calls and the sent bytes of every connection.
// Connections, their state and their timers stay.
func (h *Host) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forgetLocked()
	for _, st := range h.conns {
		st.sent = st.sent[:0]
	}
}

func (h *Host) forgetLocked() {
	clear(h.calls)
	h.calls = h.calls[:0]
	h.arena = h.arena[:0]
}

// Fail makes every later host call named op (abi.ImportSend, ...) fail with
// status st and message msg, before any other check. Fail(op,
// abi.StatusSuccess, "") undoes it. log and last_error cannot fail.
func (h *Host) Fail(op string, st abi.Status, msg string) {
	h.t.Helper()
	switch op {
	case abi.ImportSend, abi.ImportClose, abi.ImportAuthenticate, abi.ImportStartTimer,
		abi.ImportPublish, abi.ImportRawPublish, abi.ImportSubscribe, abi.ImportUnsubscribe,
		abi.ImportSetTimer, abi.ImportCancelTimer:
	default:
		h.t.Fatalf("sdktest: Fail: %q is not a host call that can fail", op)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if st == abi.StatusSuccess {
		delete(h.fails, op)
		return
	}
	h.fails[op] = failure{st, msg}
}

// callback delivers one callback with payload through the inbox, then
// closes the connection if the callback failed or closed it.
func (h *Host) callback(c protogate.Conn, name string, payload []byte, fn func(conn uint64, n uint32) abi.Status) error {
	h.t.Helper()
	h.deliver.Lock()
	defer h.deliver.Unlock()
	h.mu.Lock()
	st := h.conns[c]
	if st == nil || st.state == stateDead {
		h.mu.Unlock()
		h.t.Fatalf("sdktest: %s: conn %d is not open", name, c)
		return nil
	}
	h.mu.Unlock()
	var err error
	n := h.fill(payload)
	status := fn(uint64(c), n)
	for i := range h.inbox[:n] {
		h.inbox[i] = 0xDB // stale bytes must not look like data
	}
	if status != abi.StatusSuccess {
		h.checkStatus(name, status)
		err = &protogate.Error{Status: status, Msg: name + " failed"}
		h.mu.Lock()
		if st.state == stateOpen {
			st.state = stateClosing
			st.reason = abi.ErrorReason(name, status.String())
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	closing := st.state == stateClosing
	h.mu.Unlock()
	if closing {
		h.closed(c)
	}
	return err
}

// fill writes payload into the guest's inbox, asking for room as the real
// host does: only when it needs more than it last asked for. h.deliver must
// be held.
func (h *Host) fill(payload []byte) uint32 {
	h.t.Helper()
	n := uint32(len(payload))
	if n > h.asked || h.inbox == nil {
		h.inbox = bridge.Exports.Inbox(n)
		if uint32(len(h.inbox)) < n {
			h.t.Fatalf("sdktest: protogate_inbox(%d) gave %d bytes", n, len(h.inbox))
		}
		h.asked = n
	}
	copy(h.inbox, payload)
	return n
}

// closed delivers OnSocketClosed to a closing connection and marks it dead.
// h.deliver must be held.
func (h *Host) closed(c protogate.Conn) error {
	h.t.Helper()
	h.mu.Lock()
	st := h.conns[c]
	reason := st.reason
	h.mu.Unlock()
	n := h.fill(abi.AppendSocketClosed(nil, handle(c), reason))
	status := bridge.Exports.OnSocketClosed(uint64(c), n)
	for i := range h.inbox[:n] {
		h.inbox[i] = 0xDB
	}
	h.mu.Lock()
	st.state = stateDead
	st.timers = nil
	h.mu.Unlock()
	if status != abi.StatusSuccess {
		h.checkStatus(abi.CallbackSocketClosed, status)
		return &protogate.Error{Status: status, Msg: "on_socket_closed failed"}
	}
	return nil
}

// checkStatus fails the test for a status the real host treats as a fault
// of the instance.
func (h *Host) checkStatus(name string, st abi.Status) {
	h.t.Helper()
	if !st.Valid() {
		h.t.Errorf("sdktest: %s returned %v, not an ABI v1 status; the host would discard the instance", name, st)
	}
}

// hostCalls implements the host imports for the guest.
type hostCalls Host

var _ bridge.Host = (*hostCalls)(nil)

// record appends a call, copying b into the arena, and returns its status.
// h.mu must be held.
func (h *Host) record(c Call, b []byte) abi.Status {
	if b != nil {
		start := len(h.arena)
		h.arena = append(h.arena, b...)
		c.Bytes = h.arena[start:len(h.arena):len(h.arena)]
	}
	h.calls = append(h.calls, c)
	return c.Status
}

// check returns the status of a call on conn named op: an injected failure,
// or NotAlive for a conn that is not open, or the result of more. h.mu must
// be held; lastErr is set for a failure.
func (h *Host) check(op string, conn uint64, more func(st *connState) (abi.Status, string)) abi.Status {
	if f, ok := h.fails[op]; ok {
		h.lastErr = f.msg
		return f.status
	}
	var st *connState
	if op != abi.ImportRawPublish {
		st = h.conns[protogate.Conn(conn)]
		if st == nil || st.state == stateDead {
			h.lastErr = "sdktest: connection is not alive"
			return abi.StatusNotAlive
		}
	}
	if more == nil {
		return abi.StatusSuccess
	}
	status, msg := more(st)
	if status != abi.StatusSuccess {
		h.lastErr = msg
	}
	return status
}

func checkTopic(topic string, qos uint32, publish bool) (abi.Status, string) {
	switch {
	case topic == "":
		return abi.StatusRequiredParamsMissed, "sdktest: topic is empty"
	case qos > 2:
		return abi.StatusParamsTypeError, "sdktest: qos " + strconv.FormatUint(uint64(qos), 10) + " is not 0, 1 or 2"
	case publish && strings.ContainsAny(topic, "+#"):
		return abi.StatusParamsTypeError, "sdktest: invalid topic"
	}
	return abi.StatusSuccess, ""
}

// pubsub checks a pub/sub call of a connection, as the gateway does.
func pubsub(st *connState) (abi.Status, string) {
	switch {
	case st.state != stateOpen:
		return abi.StatusUnknown, "sdktest: connection is closing"
	case !st.authed:
		return abi.StatusUnknown, "sdktest: not authenticated: call Authenticate first"
	}
	return abi.StatusSuccess, ""
}

func (hc *hostCalls) Send(conn uint64, b []byte) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportSend, conn, nil)
	if status == abi.StatusSuccess {
		if st := h.conns[protogate.Conn(conn)]; st.state == stateOpen {
			st.sent = append(st.sent, b...)
		}
	}
	return h.record(Call{Op: abi.ImportSend, Conn: protogate.Conn(conn), Status: status}, nonNil(b))
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (hc *hostCalls) Close(conn uint64) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportClose, conn, func(st *connState) (abi.Status, string) {
		if st.state == stateOpen {
			st.state, st.reason = stateClosing, ReasonNormal
		}
		return abi.StatusSuccess, ""
	})
	return h.record(Call{Op: abi.ImportClose, Conn: protogate.Conn(conn), Status: status}, nil)
}

func (hc *hostCalls) Authenticate(conn uint64, req []byte) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	aci, hasCI, password, err := abi.DecodeAuthenticate(req)
	status := h.check(abi.ImportAuthenticate, conn, func(st *connState) (abi.Status, string) {
		switch {
		case err != nil:
			return abi.StatusParamsTypeError, "sdktest: " + err.Error()
		case !hasCI:
			return abi.StatusRequiredParamsMissed, "sdktest: clientinfo is missing"
		case st.state != stateOpen:
			return abi.StatusPermissionDeny, "sdktest: client socket disconnected"
		case st.authed:
			return abi.StatusPermissionDeny, "sdktest: duplicated authenticate command"
		}
		st.authed = true
		return abi.StatusSuccess, ""
	})
	return h.record(Call{
		Op:     abi.ImportAuthenticate,
		Conn:   protogate.Conn(conn),
		Status: status,
		ClientInfo: protogate.ClientInfo{
			ProtoName: aci.ProtoName,
			ProtoVer:  aci.ProtoVer,
			ClientID:  aci.ClientID,
			Username:  aci.Username,
		},
		Password: password,
	}, nil)
}

func (hc *hostCalls) StartTimer(conn uint64, typ int32, interval uint32) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportStartTimer, conn, func(*connState) (abi.Status, string) {
		switch {
		case typ != int32(protogate.KeepAlive):
			return abi.StatusParamsTypeError, "sdktest: unknown timer type " + strconv.Itoa(int(typ))
		case interval == 0:
			return abi.StatusParamsTypeError, "sdktest: keepalive interval must be > 0"
		}
		return abi.StatusSuccess, ""
	})
	return h.record(Call{Op: abi.ImportStartTimer, Conn: protogate.Conn(conn), Status: status,
		TimerType: protogate.TimerType(typ), Interval: interval}, nil)
}

func (hc *hostCalls) Publish(conn uint64, topic string, qos uint32, payload []byte) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportPublish, conn, func(st *connState) (abi.Status, string) {
		if s, msg := checkTopic(topic, qos, true); s != abi.StatusSuccess {
			return s, msg
		}
		return pubsub(st)
	})
	return h.record(Call{Op: abi.ImportPublish, Conn: protogate.Conn(conn), Status: status,
		Topic: strings.Clone(topic), QoS: uint8(qos)}, nonNil(payload))
}

func (hc *hostCalls) RawPublish(topic string, qos uint32, payload []byte) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportRawPublish, 0, func(*connState) (abi.Status, string) {
		return checkTopic(topic, qos, true)
	})
	return h.record(Call{Op: abi.ImportRawPublish, Status: status,
		Topic: strings.Clone(topic), QoS: uint8(qos)}, nonNil(payload))
}

func (hc *hostCalls) Subscribe(conn uint64, filter string, qos uint32) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportSubscribe, conn, func(st *connState) (abi.Status, string) {
		if s, msg := checkTopic(filter, qos, false); s != abi.StatusSuccess {
			return s, msg
		}
		return pubsub(st)
	})
	return h.record(Call{Op: abi.ImportSubscribe, Conn: protogate.Conn(conn), Status: status,
		Topic: strings.Clone(filter), QoS: uint8(qos)}, nil)
}

func (hc *hostCalls) Unsubscribe(conn uint64, filter string) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportUnsubscribe, conn, func(st *connState) (abi.Status, string) {
		if filter == "" {
			return abi.StatusRequiredParamsMissed, "sdktest: topic is empty"
		}
		return pubsub(st)
	})
	return h.record(Call{Op: abi.ImportUnsubscribe, Conn: protogate.Conn(conn), Status: status,
		Topic: strings.Clone(filter)}, nil)
}

func (hc *hostCalls) SetTimer(conn uint64, delayMillis uint32) int64 {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	var id int64
	d := time.Duration(delayMillis) * time.Millisecond
	status := h.check(abi.ImportSetTimer, conn, func(st *connState) (abi.Status, string) {
		if delayMillis < 1 || delayMillis > abi.MaxTimerDelayMillis {
			return abi.StatusParamsTypeError, "sdktest: timer delay " + strconv.FormatUint(uint64(delayMillis), 10) + "ms out of range"
		}
		h.timerID++
		id = h.timerID
		if st.timers == nil {
			st.timers = make(map[protogate.Timer]time.Duration)
		}
		st.timers[protogate.Timer(id)] = d
		return abi.StatusSuccess, ""
	})
	h.record(Call{Op: abi.ImportSetTimer, Conn: protogate.Conn(conn), Status: status,
		Delay: d, Timer: protogate.Timer(id)}, nil)
	if status != abi.StatusSuccess {
		return -int64(status)
	}
	return id
}

func (hc *hostCalls) CancelTimer(conn uint64, timer int64) abi.Status {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	status := h.check(abi.ImportCancelTimer, conn, func(st *connState) (abi.Status, string) {
		delete(st.timers, protogate.Timer(timer))
		return abi.StatusSuccess, ""
	})
	return h.record(Call{Op: abi.ImportCancelTimer, Conn: protogate.Conn(conn), Status: status,
		Timer: protogate.Timer(timer)}, nil)
}

func (hc *hostCalls) Log(level int32, msg string) {
	h := (*Host)(hc)
	if len(msg) > abi.MaxLogLine {
		msg = msg[:abi.MaxLogLine]
	}
	h.t.Logf("guest %s: %s", levelName(protogate.Level(level)), msg)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.record(Call{Op: abi.ImportLog, Level: protogate.Level(level), Msg: strings.Clone(msg)}, nil)
}

func (hc *hostCalls) LastError(buf []byte) int {
	h := (*Host)(hc)
	h.mu.Lock()
	defer h.mu.Unlock()
	copy(buf, h.lastErr)
	return len(h.lastErr)
}
