//go:build wasip1

package protogate

import "unsafe"

// The guest exports of ABI v1. Each one only converts types; the callbacks
// live in dispatch.go, shared with native tests.

//go:wasmexport protogate_abi_v1
func exportABIv1() {}

//go:wasmexport protogate_inbox
func exportInbox(size uint32) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(inboxFor(size)))
}

//go:wasmexport protogate_init
func exportInit() int32 { return int32(onInit()) }

//go:wasmexport protogate_on_socket_created
func exportOnSocketCreated(conn uint64, n uint32) int32 {
	return int32(onSocketCreated(conn, n))
}

//go:wasmexport protogate_on_received_bytes
func exportOnReceivedBytes(conn uint64, n uint32) int32 {
	return int32(onReceivedBytes(conn, n))
}

//go:wasmexport protogate_on_timer_timeout
func exportOnTimerTimeout(conn uint64, typ int32) int32 {
	return int32(onTimerTimeout(conn, typ))
}

//go:wasmexport protogate_on_received_messages
func exportOnReceivedMessages(conn uint64, n uint32) int32 {
	return int32(onReceivedMessages(conn, n))
}

//go:wasmexport protogate_on_socket_closed
func exportOnSocketClosed(conn uint64, n uint32) int32 {
	return int32(onSocketClosed(conn, n))
}

//go:wasmexport protogate_on_timer
func exportOnTimer(conn uint64, timer int64) int32 {
	return int32(onTimer(conn, timer))
}
