package protogate

import (
	"errors"

	"github.com/protogate/protogate/abi"
)

// Error is the error of a failed host call: the status the host returned
// and the message it gave for it (from the last_error import). It unwraps to
// its Status, so errors.Is(err, abi.StatusNotAlive) and errors.As with an
// *abi.Status work. Returned from a callback, it fails the callback with its
// Status.
type Error struct {
	Status abi.Status
	Msg    string
}

// Error returns "protogate: STATUS: Msg", or "protogate: STATUS" without a
// message.
func (e *Error) Error() string {
	if e.Msg == "" {
		return "protogate: " + e.Status.String()
	}
	return "protogate: " + e.Status.String() + ": " + e.Msg
}

// Unwrap returns e.Status.
func (e *Error) Unwrap() error { return e.Status }

// result turns the status of a host call into an error.
func result(st abi.Status) error {
	if st == abi.StatusSuccess {
		return nil
	}
	return hostError(st)
}

// hostError returns an *Error for st with the host's message for it.
func hostError(st abi.Status) error {
	var small [256]byte
	buf := small[:]
	n := hostLastError(buf)
	if n > len(buf) {
		buf = make([]byte, n)
		n = min(hostLastError(buf), len(buf))
	}
	return &Error{Status: st, Msg: string(buf[:max(n, 0)])}
}

// statusOf returns the status that fails a callback with err: the status
// err carries, if it is a valid failure status, or abi.StatusUnknown.
func statusOf(err error) abi.Status {
	var st abi.Status
	if errors.As(err, &st) && st != abi.StatusSuccess && st.Valid() {
		return st
	}
	return abi.StatusUnknown
}
