//go:build !wasip1

package protogate

import (
	"github.com/protogate/protogate/abi"
	"github.com/protogate/protogate/sdk/go/internal/bridge"
)

// Outside WebAssembly the host is whatever bridge.Current holds: the fake
// host of package sdktest in tests, or nothing, in which case every host call
// fails with abi.StatusUnknown and Log discards its message.

func init() {
	bridge.Exports = bridge.Guest{
		Inbox:              inboxFor,
		Init:               onInit,
		OnSocketCreated:    onSocketCreated,
		OnReceivedBytes:    onReceivedBytes,
		OnTimerTimeout:     onTimerTimeout,
		OnReceivedMessages: onReceivedMessages,
		OnSocketClosed:     onSocketClosed,
		OnTimer:            onTimer,
	}
}

// noHost answers every host call when bridge.Current is nil.
type noHost struct{}

const noHostMsg = "protogate: no host: not running in protogate (tests install one with sdktest.New)"

func (noHost) Send(uint64, []byte) abi.Status                    { return abi.StatusUnknown }
func (noHost) Close(uint64) abi.Status                           { return abi.StatusUnknown }
func (noHost) Authenticate(uint64, []byte) abi.Status            { return abi.StatusUnknown }
func (noHost) StartTimer(uint64, int32, uint32) abi.Status       { return abi.StatusUnknown }
func (noHost) Publish(uint64, string, uint32, []byte) abi.Status { return abi.StatusUnknown }
func (noHost) RawPublish(string, uint32, []byte) abi.Status      { return abi.StatusUnknown }
func (noHost) Subscribe(uint64, string, uint32) abi.Status       { return abi.StatusUnknown }
func (noHost) Unsubscribe(uint64, string) abi.Status             { return abi.StatusUnknown }
func (noHost) SetTimer(uint64, uint32) int64                     { return -int64(abi.StatusUnknown) }
func (noHost) CancelTimer(uint64, int64) abi.Status              { return abi.StatusUnknown }
func (noHost) Log(int32, string)                                 {}
func (noHost) LastError(buf []byte) int                          { return copy(buf, noHostMsg) }

func host() bridge.Host {
	if h := bridge.Current; h != nil {
		return h
	}
	return noHost{}
}

func hostSend(conn uint64, b []byte) abi.Status { return host().Send(conn, b) }
func hostClose(conn uint64) abi.Status          { return host().Close(conn) }
func hostAuthenticate(conn uint64, req []byte) abi.Status {
	return host().Authenticate(conn, req)
}
func hostStartTimer(conn uint64, typ int32, interval uint32) abi.Status {
	return host().StartTimer(conn, typ, interval)
}
func hostPublish(conn uint64, topic string, qos uint32, payload []byte) abi.Status {
	return host().Publish(conn, topic, qos, payload)
}
func hostRawPublish(topic string, qos uint32, payload []byte) abi.Status {
	return host().RawPublish(topic, qos, payload)
}
func hostSubscribe(conn uint64, filter string, qos uint32) abi.Status {
	return host().Subscribe(conn, filter, qos)
}
func hostUnsubscribe(conn uint64, filter string) abi.Status {
	return host().Unsubscribe(conn, filter)
}
func hostSetTimer(conn uint64, delayMillis uint32) int64 {
	return host().SetTimer(conn, delayMillis)
}
func hostCancelTimer(conn uint64, timer int64) abi.Status {
	return host().CancelTimer(conn, timer)
}
func hostLog(level int32, msg string) { host().Log(level, msg) }
func hostLastError(buf []byte) int    { return host().LastError(buf) }
