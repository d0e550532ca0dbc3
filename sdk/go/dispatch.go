package protogate

import (
	"runtime"
	"strconv"

	"github.com/protogate/protogate/abi"
)

// The callbacks of ABI v1, in Go types. The exports of exports_wasip1.go,
// and the native bridge of host_other.go, call these.

// inbox is the buffer the host writes callback payloads into. It only
// grows, and only in inboxFor.
var inbox []byte

// minInbox is the smallest inbox; most payloads fit without growing it.
const minInbox = 4096

// inboxFor returns the inbox, grown to at least size bytes. Growing
// replaces it, which ABI v1 allows only here.
func inboxFor(size uint32) []byte {
	if inbox == nil || uint64(size) > uint64(len(inbox)) {
		n := uint64(minInbox)
		for n < uint64(size) {
			n *= 2
		}
		inbox = make([]byte, n)
	}
	return inbox
}

// payload returns the first n bytes of the inbox, or false if the host
// claims more bytes than it asked room for.
func payload(n uint32) ([]byte, bool) {
	if uint64(n) > uint64(len(inbox)) {
		return nil, false
	}
	return inbox[:n], true
}

// Scratch space for OnReceivedMessages, reused across calls.
var (
	rawMsgs []abi.Message
	msgs    []Message
)

func onInit() (st abi.Status) {
	if handler == nil {
		Log(LevelError, "protogate: no Handler registered: call protogate.Register from an init function")
		return abi.StatusUnknown
	}
	if initializer == nil {
		return abi.StatusSuccess
	}
	defer recoverTo(&st, "Init")
	return failed("Init", initializer.Init())
}

func onSocketCreated(conn uint64, n uint32) (st abi.Status) {
	defer recoverTo(&st, "OnSocketCreated")
	h, b, st := begin("on_socket_created", n)
	if st != abi.StatusSuccess {
		return st
	}
	_, aci, err := abi.DecodeSocketCreated(b)
	if err != nil {
		return malformed("on_socket_created", err)
	}
	info := ConnInfo{
		SockType: SocketType(aci.SockType),
		Peer:     Address{Host: aci.Peer.Host, Port: uint16(aci.Peer.Port)},
		Local:    Address{Host: aci.Local.Host, Port: uint16(aci.Local.Port)},
	}
	if aci.HasPeerCert {
		info.PeerCert = &CertInfo{CN: aci.PeerCert.CN, DN: aci.PeerCert.DN}
	}
	return failed("OnSocketCreated", h.OnSocketCreated(Conn(conn), info))
}

func onReceivedBytes(conn uint64, n uint32) (st abi.Status) {
	defer recoverTo(&st, "OnReceivedBytes")
	h, b, st := begin("on_received_bytes", n)
	if st != abi.StatusSuccess {
		return st
	}
	return failed("OnReceivedBytes", h.OnReceivedBytes(Conn(conn), b))
}

func onTimerTimeout(conn uint64, typ int32) (st abi.Status) {
	defer recoverTo(&st, "OnTimerTimeout")
	h, _, st := begin("on_timer_timeout", 0)
	if st != abi.StatusSuccess {
		return st
	}
	return failed("OnTimerTimeout", h.OnTimerTimeout(Conn(conn), TimerType(typ)))
}

func onReceivedMessages(conn uint64, n uint32) (st abi.Status) {
	defer recoverTo(&st, "OnReceivedMessages")
	h, b, st := begin("on_received_messages", n)
	if st != abi.StatusSuccess {
		return st
	}
	_, raw, err := abi.DecodeReceivedMessages(b, rawMsgs[:0])
	rawMsgs = raw
	defer clear(rawMsgs)
	if err != nil {
		return malformed("on_received_messages", err)
	}
	out := msgs[:0]
	for i := range raw {
		m := &raw[i]
		out = append(out, Message{
			Node:      m.Node,
			ID:        m.ID,
			QoS:       uint8(m.QoS),
			From:      m.From,
			Topic:     m.Topic,
			Payload:   m.Payload,
			Timestamp: int64(m.Timestamp),
		})
	}
	msgs = out
	defer clear(msgs)
	return failed("OnReceivedMessages", h.OnReceivedMessages(Conn(conn), out))
}

func onSocketClosed(conn uint64, n uint32) (st abi.Status) {
	defer recoverTo(&st, "OnSocketClosed")
	h, b, st := begin("on_socket_closed", n)
	if st != abi.StatusSuccess {
		return st
	}
	_, reason, err := abi.DecodeSocketClosed(b)
	if err != nil {
		return malformed("on_socket_closed", err)
	}
	return failed("OnSocketClosed", h.OnSocketClosed(Conn(conn), reason))
}

func onTimer(conn uint64, timer int64) (st abi.Status) {
	defer recoverTo(&st, "OnTimer")
	if _, _, bst := begin("on_timer", 0); bst != abi.StatusSuccess {
		return bst
	}
	th := timerH
	if th == nil {
		Log(LevelWarn, "protogate: a timer fired but the Handler does not implement TimerHandler")
		return abi.StatusSuccess
	}
	return failed("OnTimer", th.OnTimer(Conn(conn), Timer(timer)))
}

// begin returns the handler and the callback's n bytes of payload, or the
// status that fails the callback.
func begin(callback string, n uint32) (Handler, []byte, abi.Status) {
	h := handler
	if h == nil {
		Log(LevelError, "protogate: "+callback+": no Handler registered: call protogate.Register from an init function")
		return nil, nil, abi.StatusUnknown
	}
	b, ok := payload(n)
	if !ok {
		Log(LevelError, "protogate: "+callback+": payload of "+strconv.FormatUint(uint64(n), 10)+
			" bytes is larger than the inbox ("+strconv.Itoa(len(inbox))+" bytes)")
		return nil, nil, abi.StatusParamsTypeError
	}
	return h, b, abi.StatusSuccess
}

// failed returns the status for the result of a handler method, logging a
// failure.
func failed(method string, err error) abi.Status {
	if err == nil {
		return abi.StatusSuccess
	}
	st := statusOf(err)
	Log(LevelWarn, "protogate: "+method+" failed ("+st.String()+"): "+err.Error())
	return st
}

func malformed(callback string, err error) abi.Status {
	Log(LevelError, "protogate: "+callback+": "+err.Error())
	return abi.StatusParamsTypeError
}

// recoverTo, deferred, turns a panic of the handler into a failure of the
// callback with abi.StatusUnknown, logging the panic and its stack.
func recoverTo(st *abi.Status, method string) {
	r := recover()
	if r == nil {
		return
	}
	*st = abi.StatusUnknown
	Log(LevelError, "protogate: panic in "+method+": "+panicText(r)+"\n"+stack())
}

// stack returns the calling goroutine's stack (runtime/debug would bring in
// fmt and os).
func stack() string {
	buf := make([]byte, 8192)
	return string(buf[:runtime.Stack(buf, false)])
}

// panicText describes a recovered value without fmt, which would add
// hundreds of kilobytes to every guest.
func panicText(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "(a value that is not an error or a string)"
}
