//go:build wasip1

// Command faulty is a protogate guest that misbehaves on request, for the
// host's fault tests. It echoes what it receives, except for these chunks
// (trailing spaces, "\r" and "\n" ignored, so nc works):
//
//	panic       panics without recovering: the instance traps
//	loop        loops forever: only call_timeout ends it
//	bomb        allocates until the runtime runs out of memory and traps
//	badptr      calls send with a pointer past the end of linear memory
//	badlen      calls send with a valid pointer and a length that overflows
//	status      returns status 42, which ABI v1 does not define
//	sleep <ms>  busy-waits <ms> milliseconds (needs the host's real
//	            monotonic clock), then echoes the chunk
//	nap <ms>    logs "faulty: napping", sleeps <ms> milliseconds with
//	            time.Sleep (WASI poll_oneoff, the host's nanosleep), then
//	            echoes the chunk
//	timer <ms>  arms a <ms> millisecond timer with set_timer and sends
//	            "timer" when it fires (or "timer error <status>")
//	timers <n> <ms>
//	            arms up to n such timers, stopping at the first set_timer
//	            that fails, and sends "timers <armed>" (or "timers <armed>
//	            error <status>")
//	log <text>  logs <text> at info level, then echoes the chunk
//
// If badptr or badlen return instead of faulting, it sends
// "badptr survived: <status>". With the environment variable
// PROTOGATE_FAULT_INIT set (wazero's ModuleConfig.WithEnv), instance
// creation fails: "initialize" panics in _initialize; "fail" makes
// protogate_init return status 1, "status" status 42, "panic" panic,
// "loop" loop forever and "nap" sleep for an hour.
//
// It implements ABI v1 directly, without the SDK, on purpose: the SDK
// recovers panics and maps errors to valid statuses, and these faults must
// reach the host as they are. Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o ../faulty.wasm .
package main

import (
	"bytes"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

//go:wasmimport protogate send
//go:noescape
func send(conn uint64, ptr *byte, n uint32) int32

// sendRaw is send with the pointer as a plain number, so it can be wrong.
//
//go:wasmimport protogate send
func sendRaw(conn uint64, ptr uint32, n uint32) int32

//go:wasmimport protogate set_timer
func setTimer(conn uint64, delayMillis uint32) int64

//go:wasmimport protogate log
//go:noescape
func logMsg(level int32, msg string)

const (
	statusSuccess = 0
	statusUnknown = 1
	levelInfo     = 0
	levelWarn     = 4
)

var (
	inbox []byte
	out   []byte   // reused for replies
	hoard [][]byte // what bomb allocates, kept reachable
	spins uint64   // what loop counts
)

func init() {
	if faultInit() == "initialize" {
		panic("faulty: PROTOGATE_FAULT_INIT=initialize")
	}
}

func main() {}

// faultInit returns the value of PROTOGATE_FAULT_INIT.
func faultInit() string {
	v, _ := syscall.Getenv("PROTOGATE_FAULT_INIT")
	return v
}

//go:wasmexport protogate_abi_v1
func abiV1() {}

//go:wasmexport protogate_inbox
func exportInbox(size uint32) unsafe.Pointer {
	if inbox == nil || int(size) > len(inbox) {
		inbox = make([]byte, max(int(size), 4096))
	}
	return unsafe.Pointer(unsafe.SliceData(inbox))
}

//go:wasmexport protogate_init
func exportInit() int32 {
	switch faultInit() {
	case "fail":
		return statusUnknown
	case "status":
		return 42
	case "panic":
		panic("faulty: PROTOGATE_FAULT_INIT=panic")
	case "loop":
		spin()
	case "nap":
		time.Sleep(time.Hour)
	}
	return statusSuccess
}

//go:wasmexport protogate_on_socket_created
func exportOnSocketCreated(conn uint64, n uint32) int32 { return statusSuccess }

//go:wasmexport protogate_on_timer_timeout
func exportOnTimerTimeout(conn uint64, typ int32) int32 { return statusSuccess }

//go:wasmexport protogate_on_received_messages
func exportOnReceivedMessages(conn uint64, n uint32) int32 { return statusSuccess }

//go:wasmexport protogate_on_socket_closed
func exportOnSocketClosed(conn uint64, n uint32) int32 { return statusSuccess }

//go:wasmexport protogate_on_timer
func exportOnTimer(conn uint64, timer int64) int32 {
	return reply(conn, "timer")
}

//go:wasmexport protogate_on_received_bytes
func exportOnReceivedBytes(conn uint64, n uint32) int32 {
	b := inbox[:n]
	cmd, arg, _ := bytes.Cut(bytes.TrimRight(b, " \r\n"), []byte{' '})
	switch string(cmd) {
	case "panic":
		logMsg(levelWarn, "faulty: panicking")
		panic("faulty: panic requested")
	case "loop":
		logMsg(levelWarn, "faulty: looping forever")
		spin()
	case "bomb":
		logMsg(levelWarn, "faulty: allocating until out of memory")
		for {
			chunk := make([]byte, 1<<20)
			chunk[len(chunk)-1] = 1
			hoard = append(hoard, chunk)
		}
	case "badptr", "badlen":
		ptr, size := uint32(0xFFFFFF00), uint32(16)
		if string(cmd) == "badlen" {
			ptr, size = uint32(uintptr(unsafe.Pointer(unsafe.SliceData(inbox)))), 0xFFFFFFFF
		}
		st := sendRaw(conn, ptr, size)
		return reply(conn, string(cmd)+" survived: "+strconv.Itoa(int(st)))
	case "status":
		return 42
	case "sleep":
		ms, err := strconv.Atoi(string(arg))
		if err != nil {
			return reply(conn, "sleep: bad milliseconds")
		}
		start := time.Now()
		for time.Since(start) < time.Duration(ms)*time.Millisecond {
		}
	case "nap":
		ms, err := strconv.Atoi(string(arg))
		if err != nil {
			return reply(conn, "nap: bad milliseconds")
		}
		logMsg(levelInfo, "faulty: napping")
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case "timer":
		ms, err := strconv.Atoi(string(arg))
		if err != nil {
			return reply(conn, "timer: bad milliseconds")
		}
		if id := setTimer(conn, uint32(ms)); id <= 0 {
			return reply(conn, "timer error "+strconv.FormatInt(-id, 10))
		}
		return statusSuccess
	case "timers":
		ns, mss, _ := bytes.Cut(arg, []byte{' '})
		n, err1 := strconv.Atoi(string(ns))
		ms, err2 := strconv.Atoi(string(mss))
		if err1 != nil || err2 != nil {
			return reply(conn, "timers: bad count or milliseconds")
		}
		for i := range n {
			if id := setTimer(conn, uint32(ms)); id <= 0 {
				return reply(conn, "timers "+strconv.Itoa(i)+" error "+strconv.FormatInt(-id, 10))
			}
		}
		return reply(conn, "timers "+strconv.Itoa(n))
	case "log":
		logMsg(levelInfo, string(arg))
	}
	return send(conn, unsafe.SliceData(b), n)
}

// spin loops forever.
func spin() {
	for {
		spins++
	}
}

// reply sends s and returns the status of send.
func reply(conn uint64, s string) int32 {
	out = append(out[:0], s...)
	return send(conn, unsafe.SliceData(out), uint32(len(out)))
}
