//go:build wasip1

package protogate

import (
	"unsafe"

	"github.com/protogate/protogate/abi"
)

// The host imports of ABI v1, module "protogate". A string parameter is
// passed as (ptr i32, len i32); a *byte and a uint32 length name bytes in
// linear memory, which the host copies before it returns.

//go:wasmimport protogate send
//go:noescape
func importSend(conn uint64, ptr *byte, n uint32) int32

//go:wasmimport protogate close
func importClose(conn uint64) int32

//go:wasmimport protogate authenticate
//go:noescape
func importAuthenticate(conn uint64, ptr *byte, n uint32) int32

//go:wasmimport protogate start_timer
func importStartTimer(conn uint64, typ int32, interval uint32) int32

//go:wasmimport protogate publish
//go:noescape
func importPublish(conn uint64, topic string, qos uint32, ptr *byte, n uint32) int32

//go:wasmimport protogate raw_publish
//go:noescape
func importRawPublish(topic string, qos uint32, ptr *byte, n uint32) int32

//go:wasmimport protogate subscribe
//go:noescape
func importSubscribe(conn uint64, filter string, qos uint32) int32

//go:wasmimport protogate unsubscribe
//go:noescape
func importUnsubscribe(conn uint64, filter string) int32

//go:wasmimport protogate set_timer
func importSetTimer(conn uint64, delayMillis uint32) int64

//go:wasmimport protogate cancel_timer
func importCancelTimer(conn uint64, timer int64) int32

//go:wasmimport protogate log
//go:noescape
func importLog(level int32, msg string)

//go:wasmimport protogate last_error
//go:noescape
func importLastError(ptr *byte, capacity uint32) uint32

func hostSend(conn uint64, b []byte) abi.Status {
	return abi.Status(importSend(conn, unsafe.SliceData(b), uint32(len(b))))
}

func hostClose(conn uint64) abi.Status { return abi.Status(importClose(conn)) }

func hostAuthenticate(conn uint64, req []byte) abi.Status {
	return abi.Status(importAuthenticate(conn, unsafe.SliceData(req), uint32(len(req))))
}

func hostStartTimer(conn uint64, typ int32, interval uint32) abi.Status {
	return abi.Status(importStartTimer(conn, typ, interval))
}

func hostPublish(conn uint64, topic string, qos uint32, payload []byte) abi.Status {
	return abi.Status(importPublish(conn, topic, qos, unsafe.SliceData(payload), uint32(len(payload))))
}

func hostRawPublish(topic string, qos uint32, payload []byte) abi.Status {
	return abi.Status(importRawPublish(topic, qos, unsafe.SliceData(payload), uint32(len(payload))))
}

func hostSubscribe(conn uint64, filter string, qos uint32) abi.Status {
	return abi.Status(importSubscribe(conn, filter, qos))
}

func hostUnsubscribe(conn uint64, filter string) abi.Status {
	return abi.Status(importUnsubscribe(conn, filter))
}

func hostSetTimer(conn uint64, delayMillis uint32) int64 { return importSetTimer(conn, delayMillis) }

func hostCancelTimer(conn uint64, timer int64) abi.Status {
	return abi.Status(importCancelTimer(conn, timer))
}

func hostLog(level int32, msg string) { importLog(level, msg) }

func hostLastError(buf []byte) int {
	return int(importLastError(unsafe.SliceData(buf), uint32(len(buf))))
}
