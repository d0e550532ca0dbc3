package abi_test

import (
	"fmt"
	"testing"

	"github.com/protogate/protogate/abi"
)

func TestErrorReason(t *testing.T) {
	tests := []struct{ callback, detail, want string }{
		{abi.CallbackReceivedBytes, "PERMISSION_DENY", "{shutdown,{error,{on_received_bytes,PERMISSION_DENY}}}"},
		{abi.CallbackTimer, "boom {x}", "{shutdown,{error,{on_timer,boom (x)}}}"},
		{abi.CallbackSocketCreated, "}}}{", "{shutdown,{error,{on_socket_created,)))(}}}"},
		{abi.CallbackTimerTimeout, "", "{shutdown,{error,{on_timer_timeout,}}}"},
	}
	for _, tt := range tests {
		if got := abi.ErrorReason(tt.callback, tt.detail); got != tt.want {
			t.Errorf("ErrorReason(%q, %q) = %q, want %q", tt.callback, tt.detail, got, tt.want)
		}
	}
}

func ExampleErrorReason() {
	fmt.Println(abi.ErrorReason(abi.CallbackReceivedBytes, "bad frame {len 9}"))
	// Output: {shutdown,{error,{on_received_bytes,bad frame (len 9)}}}
}
