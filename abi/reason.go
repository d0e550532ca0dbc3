package abi

import "strings"

// Callback names as they appear in close reasons (EMQX's names for the
// ExProto callbacks, and on_timer for a guest timer).
const (
	CallbackSocketCreated    = "on_socket_created"
	CallbackReceivedBytes    = "on_received_bytes"
	CallbackTimerTimeout     = "on_timer_timeout"
	CallbackReceivedMessages = "on_received_messages"
	CallbackSocketClosed     = "on_socket_closed"
	CallbackTimer            = "on_timer"
)

// ErrorReason returns the close reason of a connection whose callback
// failed, in EMQX's form: {shutdown,{error,{callback,detail}}}. Braces in
// detail become parentheses, so that the reason stays one well-formed term
// whatever the error says; handlers that match on the reason's shape keep
// working. The gateway, the Wasm host and the SDK's fake host all build the
// reason here.
func ErrorReason(callback, detail string) string {
	return "{shutdown,{error,{" + callback + "," + braces.Replace(detail) + "}}}"
}

var braces = strings.NewReplacer("{", "(", "}", ")")
