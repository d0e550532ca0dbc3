// Package bridge connects package protogate to its native test host,
// package sdktest, without exporting anything from protogate. On wasip1
// protogate does not import it: there the host is the real one, bound by
// //go:wasmimport.
//
// Host mirrors the host imports of ABI v1 with Go types in place of pointer
// and length pairs; Exports mirrors the guest exports. protogate fills
// Exports in its init function and calls Current for every host call;
// sdktest installs a Host in Current and calls Exports to deliver callbacks.
// Both variables are set only while no callback runs.
package bridge

import "github.com/protogate/protogate/abi"

// Host is the set of host imports of ABI v1. Slices and strings passed in are
// valid only during the call, as in linear memory.
type Host interface {
	Send(conn uint64, b []byte) abi.Status
	Close(conn uint64) abi.Status
	Authenticate(conn uint64, req []byte) abi.Status
	StartTimer(conn uint64, typ int32, interval uint32) abi.Status
	Publish(conn uint64, topic string, qos uint32, payload []byte) abi.Status
	RawPublish(topic string, qos uint32, payload []byte) abi.Status
	Subscribe(conn uint64, filter string, qos uint32) abi.Status
	Unsubscribe(conn uint64, filter string) abi.Status
	SetTimer(conn uint64, delayMillis uint32) int64
	CancelTimer(conn uint64, timer int64) abi.Status
	Log(level int32, msg string)
	LastError(buf []byte) int
}

// Current is the host protogate calls; nil means no host is installed.
var Current Host

// Guest holds the guest exports of ABI v1 (the version marker aside).
// Inbox returns the whole inbox, at least size bytes long.
type Guest struct {
	Inbox              func(size uint32) []byte
	Init               func() abi.Status
	OnSocketCreated    func(conn uint64, n uint32) abi.Status
	OnReceivedBytes    func(conn uint64, n uint32) abi.Status
	OnTimerTimeout     func(conn uint64, typ int32) abi.Status
	OnReceivedMessages func(conn uint64, n uint32) abi.Status
	OnSocketClosed     func(conn uint64, n uint32) abi.Status
	OnTimer            func(conn uint64, timer int64) abi.Status
}

// Exports are the exports of package protogate, set by its init function.
var Exports Guest
