package gateway

import (
	"errors"
	"fmt"
)

// Code is the outcome of a call a handler makes on a connection. Its values
// are those of emqx.exproto.v1.ResultCode, so both handler back ends report
// them unchanged: the gRPC adapter in CodeResponse.code, the Wasm host as a
// status code.
type Code int32

// The result codes of ExProto v1.
const (
	CodeSuccess              Code = 0 // the call succeeded
	CodeUnknown              Code = 1 // an error no other code covers
	CodeNotAlive             Code = 2 // the connection is gone, or the handle names none
	CodeRequiredParamsMissed Code = 3 // a required parameter is missing or empty
	CodeParamsTypeError      Code = 4 // a parameter is malformed or out of range
	CodePermissionDeny       Code = 5 // refused: authentication, authorization or state
)

// String returns the ExProto name of the code.
func (c Code) String() string {
	switch c {
	case CodeSuccess:
		return "SUCCESS"
	case CodeUnknown:
		return "UNKNOWN"
	case CodeNotAlive:
		return "CONN_PROCESS_NOT_ALIVE"
	case CodeRequiredParamsMissed:
		return "REQUIRED_PARAMS_MISSED"
	case CodeParamsTypeError:
		return "PARAMS_TYPE_ERROR"
	case CodePermissionDeny:
		return "PERMISSION_DENY"
	}
	return fmt.Sprintf("Code(%d)", int32(c))
}

// Error is an error that carries a result Code. Every error the connection
// methods return is, or wraps, an *Error; CodeOf extracts the code.
type Error struct {
	Code Code
	Err  error
}

// Error returns the message of the wrapped error.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a message formatted by
// fmt.Errorf, so %w wraps as usual.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// CodeOf returns the result code for err: CodeSuccess for nil, the code of
// the first *Error in err's chain, or CodeUnknown.
func CodeOf(err error) Code {
	if err == nil {
		return CodeSuccess
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeUnknown
}

// Sentinel errors. Compare with errors.Is.
var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("gateway: server closed")

	// ErrNotAlive means the connection has been closed and its handle is dead.
	ErrNotAlive = &Error{Code: CodeNotAlive, Err: errors.New("gateway: connection is not alive")}

	// ErrBadHandle means a conn handle is not one this gateway could have issued.
	ErrBadHandle = &Error{Code: CodeParamsTypeError, Err: errors.New("gateway: malformed conn handle")}

	// ErrNoHandle means a call named no connection.
	ErrNoHandle = &Error{Code: CodeRequiredParamsMissed, Err: errors.New("gateway: conn handle is empty")}

	// ErrNotAuthenticated refuses pub/sub calls before Authenticate succeeded.
	ErrNotAuthenticated = &Error{Code: CodeUnknown, Err: errors.New("gateway: not authenticated: call Authenticate first")}

	// ErrClosing refuses pub/sub calls on a connection that is closing.
	ErrClosing = &Error{Code: CodeUnknown, Err: errors.New("gateway: connection is closing")}

	// ErrAlreadyAuthenticated refuses a second Authenticate on one connection.
	ErrAlreadyAuthenticated = &Error{Code: CodePermissionDeny, Err: errors.New("gateway: duplicated authenticate command")}

	// ErrDisconnected refuses Authenticate on a connection that is closing.
	ErrDisconnected = &Error{Code: CodePermissionDeny, Err: errors.New("gateway: client socket disconnected")}

	// ErrBadTopic marks a topic or filter the pub/sub layer cannot accept.
	ErrBadTopic = &Error{Code: CodeParamsTypeError, Err: errors.New("gateway: invalid topic")}

	// ErrPayloadTooLarge marks a payload over the pub/sub layer's limit.
	ErrPayloadTooLarge = &Error{Code: CodeParamsTypeError, Err: errors.New("gateway: payload too large")}

	// ErrTraced refuses a second trace of one connection.
	ErrTraced = &Error{Code: CodePermissionDeny, Err: errors.New("gateway: connection is already traced")}

	// ErrTooManySubscriptions refuses a Subscribe that would take a
	// connection past its listener's MaxSubscriptions.
	ErrTooManySubscriptions = &Error{Code: CodePermissionDeny, Err: errors.New("gateway: too many subscriptions")}

	// ErrSendQueueFull refuses a Queue that would take a connection's
	// queued output past Options.MaxQueuedBytes.
	ErrSendQueueFull = &Error{Code: CodePermissionDeny, Err: errors.New("gateway: send queue full")}

	// ErrNoPubSub means the server was built without a PubSub.
	ErrNoPubSub = &Error{Code: CodeUnknown, Err: errors.New("gateway: no pub/sub configured")}
)
