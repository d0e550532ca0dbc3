package abi

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
	b := make([]byte, 0, len(callback)+len(detail)+24)
	b = append(b, "{shutdown,{error,{"...)
	b = append(b, callback...)
	b = append(b, ',')
	for i := 0; i < len(detail); i++ {
		// Bytes, not runes: braces are ASCII and never part of a
		// multi-byte sequence. (No strings package here: abi is linked
		// into every guest, and echo links nothing else of it.)
		switch c := detail[i]; c {
		case '{':
			b = append(b, '(')
		case '}':
			b = append(b, ')')
		default:
			b = append(b, c)
		}
	}
	return string(append(b, "}}}"...))
}
