// Package abi is protogate's WebAssembly handler ABI, version 1: the contract
// between the gateway (the host) and a protocol handler compiled to Wasm (the
// guest). This documentation is the specification; a guest author in any
// language that compiles to wasm32 can follow it. The package itself holds
// the names, codes and encoders that the host (wasmhost) and the Go SDK
// (sdk/go) share, and imports only the standard library.
//
// # Model
//
// The guest implements the same five callbacks as an ExProto gRPC handler
// (emqx.exproto.v1.ConnectionUnaryHandler) and makes the same calls back
// (ConnectionAdapter), with the same semantics and result codes. Where a
// callback or call carries a structured value it is the protobuf encoding of
// the same emqx.exproto.v1 message the gRPC handler sees; raw connection bytes
// travel unwrapped.
//
// The host runs a pool of instances of one module. A connection is pinned to
// one instance for its whole life; an instance runs one callback at a time,
// and for one connection callbacks come in order: OnSocketCreated first,
// OnSocketClosed last. Host calls never call back into the guest: what they
// cause (a kicked connection's close, the delivery of the guest's own
// publish, a timer) arrives as a later callback.
//
// # Guest exports
//
// All names below are exported functions of the guest module. Types are Wasm
// value types; "status" is an i32 holding a [Status].
//
//	protogate_abi_v1()                                  version marker; required
//	protogate_inbox(size i32) -> ptr i32                required
//	protogate_init() -> status                          optional
//	protogate_on_socket_created(conn i64, len i32) -> status
//	protogate_on_received_bytes(conn i64, len i32) -> status
//	protogate_on_timer_timeout(conn i64, type i32) -> status
//	protogate_on_received_messages(conn i64, len i32) -> status
//	protogate_on_socket_closed(conn i64, len i32) -> status
//	protogate_on_timer(conn i64, timer i64) -> status
//
// The version marker is an exported function whose name carries the ABI
// version; its body is never called. A module that exports no
// protogate_abi_v* function, or only versions this host does not know, is
// refused at load with an error naming the problem.
//
// A Go reactor module (built with -buildmode=c-shared) exports _initialize;
// the host calls it once, then protogate_init if exported. A non-zero status
// from protogate_init refuses the instance.
//
// Every callback except the marker and protogate_inbox is optional; a missing
// one succeeds without a call. A callback returns StatusSuccess, or any other
// status to fail it: the host then closes that connection, naming the
// callback and the status in the close reason, as it does for a gRPC handler
// that returns an error. A status outside the defined range, a trap, a panic,
// or a call that runs past the handler's call_timeout is a fault of the
// instance: the host discards the instance and closes every connection pinned
// to it.
//
// # The inbox
//
// Before a callback that carries bytes, the host asks the guest for room with
// protogate_inbox(size) and writes the bytes at the returned pointer; the
// callback's len argument says how many. The guest owns the buffer, may reuse
// it across callbacks, and must return a pointer to at least size writable
// bytes that stays valid until the next protogate_inbox call. The host caches
// the pointer and calls protogate_inbox again only when it needs more room
// than it last asked for. A null pointer, or one whose size bytes do not fit
// in linear memory, is a fault of the instance. The bytes are valid only
// during the callback.
//
// Inbox contents per callback:
//
//	on_socket_created       protobuf emqx.exproto.v1.SocketCreatedRequest
//	on_received_bytes       the bytes read from the socket (or the frame), unwrapped
//	on_received_messages    protobuf emqx.exproto.v1.ReceivedMessagesRequest
//	on_socket_closed        protobuf emqx.exproto.v1.SocketClosedRequest
//
// The conn field of those messages holds the connection's handle as the gRPC
// adapter spells it (16 lowercase hex digits of the same 64-bit id); guests
// should use the callback's i64 argument instead.
//
// # Host imports
//
// The host provides these functions in the import module "protogate"
// ([ModuleName]). A pointer and a length always name bytes in the guest's
// linear memory; the host copies what it needs before returning. A pointer
// range outside linear memory is a fault of the instance.
//
//	send(conn i64, ptr i32, len i32) -> status
//	close(conn i64) -> status
//	authenticate(conn i64, ptr i32, len i32) -> status      bytes: protobuf AuthenticateRequest (conn ignored)
//	start_timer(conn i64, type i32, interval i32) -> status  ExProto keepalive, seconds
//	publish(conn i64, topic_ptr i32, topic_len i32, qos i32, ptr i32, len i32) -> status
//	raw_publish(topic_ptr i32, topic_len i32, qos i32, ptr i32, len i32) -> status
//	subscribe(conn i64, topic_ptr i32, topic_len i32, qos i32) -> status
//	unsubscribe(conn i64, topic_ptr i32, topic_len i32) -> status
//	set_timer(conn i64, delay_ms i32) -> timer i64           > 0: timer id; < 0: -status; never 0
//	cancel_timer(conn i64, timer i64) -> status
//	log(level i32, ptr i32, len i32)                         level as log/slog: -4 debug, 0 info, 4 warn, 8 error
//	last_error(ptr i32, cap i32) -> len i32                  the message of the last failed call
//
// A module imports only what it uses (Go drops unused wasmimports); the host
// provides all of them. A module importing a name not listed here, or from
// another module than "protogate" and "wasi_snapshot_preview1", is refused at
// load.
//
// During protogate_init no connection exists yet: calls naming a conn answer
// StatusNotAlive, and raw_publish answers StatusUnknown (it needs a callback
// in progress).
//
// set_timer arms a one-shot timer of delay_ms milliseconds (1 to 86400000)
// for a connection; when it fires, the pinned instance gets
// protogate_on_timer(conn, timer). Timers end with their connection. They
// exist because a guest cannot keep goroutines running between callbacks, so
// protocols that retransmit or time out (CoAP, for one) need the host's clock.
//
// cancel_timer succeeds for a timer that already fired or never existed; it
// fails only for a conn not pinned to the instance.
//
// A connection has bounds a guest cannot pass: a set_timer beyond its
// pending timers (max_timers, 64 by default), a subscribe to a new filter
// beyond max_subscriptions (1000) and a send that would queue more than
// max_queued_bytes (4 MiB) unwritten answer StatusPermissionDeny and have no
// other effect; the connection and the instance go on.
//
// last_error copies up to cap bytes of the text explaining the last non-zero
// status returned to this instance (set_timer's failures included), and
// returns its full length, so a guest can retry with a bigger buffer.
//
// # Handles
//
// A conn is the 64-bit id of a connection, never 0. Ids are opaque: never
// reused, so a stale id cannot alias a newer connection, and unguessable (a
// keyed permutation of a counter), so they are not in creation order and
// one id says nothing of another. The host checks that a conn passed to a
// host call is pinned to the calling instance: anything else, including the
// handle of a closed connection, answers StatusNotAlive.
package abi

// Version is the ABI version this package describes.
const Version = 1

// ModuleName is the import module of the host functions.
const ModuleName = "protogate"

// Guest export names.
const (
	ExportMarker            = "protogate_abi_v1"
	MarkerPrefix            = "protogate_abi_v"
	ExportInbox             = "protogate_inbox"
	ExportInit              = "protogate_init"
	ExportOnSocketCreated   = "protogate_on_socket_created"
	ExportOnReceivedBytes   = "protogate_on_received_bytes"
	ExportOnTimerTimeout    = "protogate_on_timer_timeout"
	ExportOnReceivedMsgs    = "protogate_on_received_messages"
	ExportOnSocketClosed    = "protogate_on_socket_closed"
	ExportOnTimer           = "protogate_on_timer"
	ExportReactorInitialize = "_initialize"
)

// Host import names, in module ModuleName.
const (
	ImportSend         = "send"
	ImportClose        = "close"
	ImportAuthenticate = "authenticate"
	ImportStartTimer   = "start_timer"
	ImportPublish      = "publish"
	ImportRawPublish   = "raw_publish"
	ImportSubscribe    = "subscribe"
	ImportUnsubscribe  = "unsubscribe"
	ImportSetTimer     = "set_timer"
	ImportCancelTimer  = "cancel_timer"
	ImportLog          = "log"
	ImportLastError    = "last_error"
)

// Status is the result of a callback or a host call. Its values equal
// emqx.exproto.v1.ResultCode, so a guest sees the codes a gRPC handler sees.
type Status int32

// The statuses of ABI v1.
const (
	StatusSuccess              Status = 0
	StatusUnknown              Status = 1
	StatusNotAlive             Status = 2
	StatusRequiredParamsMissed Status = 3
	StatusParamsTypeError      Status = 4
	StatusPermissionDeny       Status = 5
)

// Valid reports whether s is a status defined by ABI v1.
func (s Status) Valid() bool { return s >= StatusSuccess && s <= StatusPermissionDeny }

// String returns the ResultCode name of s.
func (s Status) String() string {
	switch s {
	case StatusSuccess:
		return "SUCCESS"
	case StatusUnknown:
		return "UNKNOWN"
	case StatusNotAlive:
		return "CONN_PROCESS_NOT_ALIVE"
	case StatusRequiredParamsMissed:
		return "REQUIRED_PARAMS_MISSED"
	case StatusParamsTypeError:
		return "PARAMS_TYPE_ERROR"
	case StatusPermissionDeny:
		return "PERMISSION_DENY"
	}
	return "Status(" + itoa(int64(s)) + ")"
}

// Error implements error, so a failed status can be returned as one.
func (s Status) Error() string { return "abi: " + s.String() }

// Err returns nil for StatusSuccess and s otherwise, so that a status can be
// returned as an error.
func (s Status) Err() error {
	if s == StatusSuccess {
		return nil
	}
	return s
}

// TimerKeepalive is the only ExProto timer type.
const TimerKeepalive int32 = 0

// Limits of ABI v1 that a guest can rely on.
const (
	// MaxTimerDelayMillis is the longest set_timer delay.
	MaxTimerDelayMillis = 24 * 60 * 60 * 1000
	// MaxLogLine is the longest log message kept; longer ones are cut.
	MaxLogLine = 4096
)

func itoa(v int64) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
