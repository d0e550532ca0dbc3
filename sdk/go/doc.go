// Package protogate is the Go SDK for protogate's WebAssembly protocol
// handlers: a guest module, compiled to GOOS=wasip1, that the gateway runs
// in-process to speak a device protocol. It implements ABI v1 (package
// github.com/protogate/protogate/abi, whose documentation is the
// specification), so a guest only implements [Handler] and calls methods of
// [Conn].
//
// # Writing a guest
//
// A guest is a main package with an empty main function that registers its
// handler from init:
//
//	package main
//
//	import protogate "github.com/protogate/protogate/sdk/go"
//
//	type echo struct{ protogate.Base }
//
//	func (echo) OnReceivedBytes(c protogate.Conn, b []byte) error { return c.Send(b) }
//
//	func init() { protogate.Register(echo{}) }
//
//	func main() {}
//
// Build it as a WASI reactor (Go 1.24 or later):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o echo.wasm .
//
// Add -trimpath -buildvcs=false -ldflags='-s -w -buildid=' for a smaller
// module that is the same byte for byte on every machine with the same Go
// version. main is never called: the host runs the package initializers
// (the _initialize export), then protogate_init, which calls [Initializer]'s
// Init if the handler has one. Make no host calls from init functions; do
// that work in Init.
//
// # The model
//
// The host runs a pool of instances of the module. Each connection is
// pinned to one instance for its whole life, and one instance serves many
// connections, so keep per-connection state in a map keyed by [Conn],
// created in OnSocketCreated and deleted in OnSocketClosed. Conn values are
// never reused. For one connection, OnSocketCreated comes first and
// OnSocketClosed last and exactly once.
//
// Concurrency: a guest instance is single-threaded. The host makes one
// callback at a time, and every function and method of this package may be
// called only from the goroutine running a callback (or Init). No locks are
// needed, and none are taken. Host calls never call back into the guest:
// what they cause (the close of a connection, the delivery of a message the
// guest published, a timer) arrives as a later callback.
//
// The bytes passed to OnReceivedBytes and the Payload of each [Message] are
// valid only during the callback: they live in the module's inbox, which the
// host overwrites for the next callback. Copy what you keep.
//
// # Performance
//
// The bytes path allocates nothing in this package: OnReceivedBytes gets a
// slice of the inbox (one buffer, reused across callbacks, grown only when
// the host needs more room), and Send, Publish and RawPublish pass the
// slice's pointer to the host, which copies the bytes before it returns.
// Keep the guest's own hot path free of per-message allocation too: reuse
// buffers, append into slices kept in the per-connection state, avoid fmt.
// The Go garbage collector runs inside callbacks and stops the instance
// while it works, so allocation costs latency on some later message; a
// guest that allocates nothing never pays it.
//
// # Goroutines and time
//
// Goroutines run only while a callback runs. Do not leave any running or
// blocked when a callback returns: they make no progress until the next
// callback, and one that blocks with nothing to wake it kills the instance
// ("all goroutines are asleep"). Do not wait with time.Sleep, channels or
// locks for something the host does: a callback has a deadline
// (call_timeout), and waiting only burns it. To act later, arm a timer with
// [Conn.SetTimer] and implement [TimerHandler]; use [Conn.StartTimer] for the
// ExProto keepalive.
//
// # Memory
//
// Each instance has a memory limit set by the host. The Go runtime needs
// about 2.5 MiB of it before the first callback, a guest that allocates on
// every message settles around 8 MiB (guests/exproto-json does), the inbox
// grows to the largest payload the host has delivered, and WebAssembly
// memory never shrinks. Running out of memory is not an error the guest can handle: the
// instance traps and the host discards it. With a tight limit, lower GOGC
// from Init (debug.SetGCPercent(25), say), or reduce what a connection
// keeps; a short runtime.GC from a timer can also help a guest that
// allocates in bursts.
//
// # Errors and panics
//
// Methods that make host calls return nil or an [*Error] holding the
// host's status and message; errors.Is(err, abi.StatusNotAlive) reports a
// connection that is gone. A callback that returns an error fails: the host
// closes that connection, naming the callback and the status in the close
// reason. The status is the error's own (an [*Error] or an abi.Status,
// possibly wrapped) if it is a valid failure status, and
// abi.StatusUnknown otherwise; the error text is logged with [Log].
//
// Panics in handler code are recovered: the callback fails with
// abi.StatusUnknown, which closes only that connection, and the panic value
// and stack are logged at LevelError. This package chooses to recover
// because a recovered Go panic leaves the runtime healthy (unlike an
// unrecovered one, which traps and leaves the runtime corrupt), and one bad
// message should not close every connection of the instance, just as
// net/http survives a panicking handler. The handler's own state may be left
// half-updated, though, so do not rely on recovery as control flow. The host
// may still discard the instance, and close every connection pinned to it,
// after any fault it sees: a trap (a panic in a goroutine other than the
// callback's, out of memory, stack overflow, a deadlock, a fatal runtime
// error), a callback that runs past call_timeout, or an invalid status.
//
// # Testing
//
// The same code compiles natively. There, the package reaches the host
// through a replaceable implementation, and package sdktest
// (github.com/protogate/protogate/sdk/go/sdktest) provides a fake host that
// delivers callbacks to the registered handler and records every host call,
// so guest logic is tested with go test and no WebAssembly runtime.
package protogate
