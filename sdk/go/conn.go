package protogate

import (
	"time"

	"github.com/protogate/protogate/abi"
)

// Send writes b to the connection. The host copies b before Send returns.
// Like ExProto, it succeeds on a connection that is closing (the bytes are
// dropped) and fails with abi.StatusNotAlive once it is closed.
func (c Conn) Send(b []byte) error {
	return result(hostSend(uint64(c), b))
}

// Close closes the connection. OnSocketClosed follows, as a later callback,
// with reason "{shutdown,normal}".
func (c Conn) Close() error {
	return result(hostClose(uint64(c)))
}

// Authenticate registers ci for the connection after the gateway's
// authenticator, if any, accepts ci and password. Publish, Subscribe and
// Unsubscribe need it. Another connection with the same client id is closed.
// A second successful Authenticate is refused with abi.StatusPermissionDeny.
func (c Conn) Authenticate(ci ClientInfo, password string) error {
	aci := abi.ClientInfo{
		ProtoName: ci.ProtoName,
		ProtoVer:  ci.ProtoVer,
		ClientID:  ci.ClientID,
		Username:  ci.Username,
	}
	scratch = abi.AppendAuthenticate(scratch[:0], "", &aci, password)
	return result(hostAuthenticate(uint64(c), scratch))
}

// scratch is reused for the encoded requests of host calls.
var scratch []byte

// StartTimer starts, or restarts with a new interval, the ExProto keepalive
// of the connection: when no bytes arrive for 1.5 x intervalSeconds, the
// handler gets OnTimerTimeout and the host closes the connection.
func (c Conn) StartTimer(t TimerType, intervalSeconds uint32) error {
	return result(hostStartTimer(uint64(c), int32(t), intervalSeconds))
}

// Publish publishes payload on topic, as the connection's client (the
// connection's mountpoint is applied). It needs Authenticate first. The
// host copies payload before Publish returns.
func (c Conn) Publish(topic string, qos uint8, payload []byte) error {
	return result(hostPublish(uint64(c), topic, uint32(qos), payload))
}

// Subscribe subscribes the connection to filter (an MQTT topic filter);
// deliveries arrive as OnReceivedMessages. Subscribing again updates the
// QoS. It needs Authenticate first.
func (c Conn) Subscribe(filter string, qos uint8) error {
	return result(hostSubscribe(uint64(c), filter, uint32(qos)))
}

// Unsubscribe removes a subscription of the connection. Removing a filter
// that is not subscribed succeeds.
func (c Conn) Unsubscribe(filter string) error {
	return result(hostUnsubscribe(uint64(c), filter))
}

// SetTimer arms a one-shot timer that fires after d, rounded up to a whole
// millisecond (d <= 0 fires as soon as possible, after the current
// callback). When it fires, the handler's [TimerHandler.OnTimer] is called
// with the returned Timer. Timers end with their connection. d may be at most
// 24 hours; SetTimer fails if the registered handler does not implement
// TimerHandler.
func (c Conn) SetTimer(d time.Duration) (Timer, error) {
	if timerH == nil {
		return 0, &Error{Status: abi.StatusUnknown, Msg: "SetTimer: the registered Handler does not implement TimerHandler"}
	}
	if d > abi.MaxTimerDelayMillis*time.Millisecond {
		return 0, &Error{Status: abi.StatusParamsTypeError, Msg: "SetTimer: delay " + d.String() + " is longer than 24h"}
	}
	ms := max((d+time.Millisecond-1)/time.Millisecond, 1)
	id := hostSetTimer(uint64(c), uint32(ms))
	if id > 0 {
		return Timer(id), nil
	}
	st := abi.Status(-id)
	if id == 0 || id < -int64(1<<31) {
		st = abi.StatusUnknown
	}
	return 0, hostError(st)
}

// CancelTimer disarms a timer armed with SetTimer.
func (c Conn) CancelTimer(t Timer) error {
	return result(hostCancelTimer(uint64(c), int64(t)))
}

// RawPublish publishes payload on topic as is: no mountpoint, no client;
// the message's From is "exproto". It does not need a connection. The host
// copies payload before RawPublish returns. Call it only from a callback.
func RawPublish(topic string, qos uint8, payload []byte) error {
	return result(hostRawPublish(topic, uint32(qos), payload))
}

// Log writes msg to the gateway's log at level, attributed to this module.
// The host keeps at most abi.MaxLogLine bytes of it. Call it only from a
// callback or Init.
func Log(level Level, msg string) {
	hostLog(int32(level), msg)
}
