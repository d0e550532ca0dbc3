package serve

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/abi"
	pb "github.com/protogate/protogate/proto/exprotov1"
	lpb "github.com/protogate/protogate/proto/protogatev1"
	"github.com/protogate/protogate/sdk/go/internal/bridge"
)

// host answers the registered handler's host calls. Its methods run on the
// dispatch goroutine only (and in Init, before it starts): the handler calls
// them from its callbacks.
type host server

var _ bridge.Host = (*host)(nil)

// fail records why a call failed and returns st.
func (h *host) fail(st abi.Status, msg string) abi.Status {
	h.lastErr = msg
	return st
}

// peerOf returns the stream conn's calls go to.
func (h *host) peerOf(op string, conn uint64) (*peer, abi.Status) {
	p := h.live[conn]
	switch {
	case p == nil:
		return nil, h.fail(abi.StatusNotAlive, "serve: "+op+": conn "+formatHandle(conn)+" is not alive")
	case p.broken():
		return nil, h.fail(abi.StatusNotAlive, "serve: "+op+": the stream to the gateway serving conn "+formatHandle(conn)+" broke")
	}
	return p, abi.StatusSuccess
}

// post queues a call that needs no answer.
func (h *host) post(op string, conn uint64, c *lpb.Call) abi.Status {
	p, st := h.peerOf(op, conn)
	if st != abi.StatusSuccess {
		return st
	}
	if _, err := p.call(c, 0); err != nil {
		return h.fail(abi.StatusNotAlive, "serve: "+op+": "+err.Error())
	}
	return abi.StatusSuccess
}

// wait sends a call on p and waits for the gateway's answer.
func (h *host) wait(op string, p *peer, c *lpb.Call) abi.Status {
	h.nextCall++
	ch, err := p.call(c, h.nextCall)
	if err != nil {
		return h.fail(abi.StatusNotAlive, "serve: "+op+": "+err.Error())
	}
	select {
	case r := <-ch:
		st := abi.Status(r.GetCode())
		if st == abi.StatusSuccess {
			return st
		}
		if !st.Valid() {
			st = abi.StatusUnknown
		}
		return h.fail(st, r.GetMessage())
	case <-p.dead:
		return h.fail(abi.StatusNotAlive, "serve: "+op+": the stream to the gateway broke")
	}
}

// waitConn sends a call about conn and waits for its answer.
func (h *host) waitConn(op string, conn uint64, c *lpb.Call) abi.Status {
	p, st := h.peerOf(op, conn)
	if st != abi.StatusSuccess {
		return st
	}
	return h.wait(op, p, c)
}

func (h *host) Send(conn uint64, b []byte) abi.Status {
	return h.post(abi.ImportSend, conn, &lpb.Call{Call: &lpb.Call_Send{
		Send: &pb.SendBytesRequest{Conn: formatHandle(conn), Bytes: bytes.Clone(b)}}})
}

func (h *host) Close(conn uint64) abi.Status {
	return h.post(abi.ImportClose, conn, &lpb.Call{Call: &lpb.Call_Close{
		Close: &pb.CloseSocketRequest{Conn: formatHandle(conn)}}})
}

func (h *host) Authenticate(conn uint64, req []byte) abi.Status {
	ci, hasCI, password, err := abi.DecodeAuthenticate(req)
	switch {
	case err != nil:
		return h.fail(abi.StatusParamsTypeError, "serve: authenticate: "+err.Error())
	case !hasCI:
		return h.fail(abi.StatusRequiredParamsMissed, "serve: authenticate: clientinfo is missing")
	}
	return h.waitConn(abi.ImportAuthenticate, conn, &lpb.Call{Call: &lpb.Call_Authenticate{
		Authenticate: &pb.AuthenticateRequest{
			Conn: formatHandle(conn),
			Clientinfo: &pb.ClientInfo{
				ProtoName: ci.ProtoName,
				ProtoVer:  ci.ProtoVer,
				Clientid:  ci.ClientID,
				Username:  ci.Username,
			},
			Password: password,
		}}})
}

func (h *host) StartTimer(conn uint64, typ int32, interval uint32) abi.Status {
	// The gateway's own checks, made here since nothing waits for its
	// answer.
	switch {
	case typ != abi.TimerKeepalive:
		return h.fail(abi.StatusParamsTypeError, "serve: start_timer: unknown timer type "+strconv.Itoa(int(typ)))
	case interval == 0:
		return h.fail(abi.StatusParamsTypeError, "serve: start_timer: keepalive interval must be > 0")
	}
	return h.post(abi.ImportStartTimer, conn, &lpb.Call{Call: &lpb.Call_StartTimer{
		StartTimer: &pb.TimerRequest{Conn: formatHandle(conn), Type: pb.TimerType(typ), Interval: interval}}})
}

func (h *host) Publish(conn uint64, topic string, qos uint32, payload []byte) abi.Status {
	return h.waitConn(abi.ImportPublish, conn, &lpb.Call{Call: &lpb.Call_Publish{
		Publish: &pb.PublishRequest{Conn: formatHandle(conn), Topic: strings.Clone(topic), Qos: qos, Payload: bytes.Clone(payload)}}})
}

func (h *host) RawPublish(topic string, qos uint32, payload []byte) abi.Status {
	p := h.cur
	if p == nil {
		return h.fail(abi.StatusUnknown, "serve: raw_publish: no gateway stream (call it from a callback)")
	}
	return h.wait(abi.ImportRawPublish, p, &lpb.Call{Call: &lpb.Call_RawPublish{
		RawPublish: &pb.RawPublishRequest{Topic: strings.Clone(topic), Qos: qos, Payload: bytes.Clone(payload)}}})
}

func (h *host) Subscribe(conn uint64, filter string, qos uint32) abi.Status {
	return h.waitConn(abi.ImportSubscribe, conn, &lpb.Call{Call: &lpb.Call_Subscribe{
		Subscribe: &pb.SubscribeRequest{Conn: formatHandle(conn), Topic: strings.Clone(filter), Qos: qos}}})
}

func (h *host) Unsubscribe(conn uint64, filter string) abi.Status {
	return h.waitConn(abi.ImportUnsubscribe, conn, &lpb.Call{Call: &lpb.Call_Unsubscribe{
		Unsubscribe: &pb.UnsubscribeRequest{Conn: formatHandle(conn), Topic: strings.Clone(filter)}}})
}

func (h *host) SetTimer(conn uint64, delayMillis uint32) int64 {
	if _, st := h.peerOf(abi.ImportSetTimer, conn); st != abi.StatusSuccess {
		return -int64(st)
	}
	switch {
	case delayMillis < 1 || delayMillis > abi.MaxTimerDelayMillis:
		return -int64(h.fail(abi.StatusParamsTypeError, "serve: set_timer: delay "+strconv.FormatUint(uint64(delayMillis), 10)+"ms out of range"))
	case h.numTimers >= maxTimers:
		return -int64(h.fail(abi.StatusPermissionDeny, "serve: set_timer: "+strconv.Itoa(maxTimers)+" timers are armed already"))
	}
	h.nextTimer++
	id := h.nextTimer
	s := (*server)(h)
	t := time.AfterFunc(time.Duration(delayMillis)*time.Millisecond, func() {
		s.push(work{conn: conn, timer: id})
	})
	ts := h.timers[conn]
	if ts == nil {
		ts = make(map[int64]*time.Timer)
		h.timers[conn] = ts
	}
	ts[id] = t
	h.numTimers++
	return id
}

func (h *host) CancelTimer(conn uint64, timer int64) abi.Status {
	if _, st := h.peerOf(abi.ImportCancelTimer, conn); st != abi.StatusSuccess {
		return st
	}
	if t, ok := h.timers[conn][timer]; ok {
		t.Stop()
		delete(h.timers[conn], timer)
		h.numTimers--
	}
	return abi.StatusSuccess
}

func (h *host) Log(level int32, msg string) {
	if len(msg) > abi.MaxLogLine {
		msg = msg[:abi.MaxLogLine]
	}
	h.log.Log(context.Background(), slog.Level(level), msg, "component", "handler")
}

func (h *host) LastError(buf []byte) int {
	copy(buf, h.lastErr)
	return len(h.lastErr)
}
