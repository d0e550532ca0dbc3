package sdktest_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/protogate/protogate/abi"
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/sdktest"
)

// sender sends what it receives, then closes on "bye", and sends again
// from OnTimerTimeout.
type sender struct{ protogate.Base }

func (sender) OnReceivedBytes(c protogate.Conn, b []byte) error {
	if err := c.Send(b); err != nil {
		return err
	}
	if string(b) == "bye" {
		c.Close()
		return c.Send([]byte("dropped")) // closing: succeeds, not written
	}
	return nil
}

func (sender) OnTimerTimeout(c protogate.Conn, _ protogate.TimerType) error {
	return c.Send([]byte("timeout")) // closing already: dropped
}

func TestHost(t *testing.T) {
	h := sdktest.New(t)
	protogate.Register(sender{})
	a := h.Connect(protogate.ConnInfo{})
	b := h.Connect(protogate.ConnInfo{})
	h.Receive(a, []byte("1"))
	h.Receive(b, []byte("2"))
	h.Receive(a, []byte("3"))
	if got := string(h.Sent(a)); got != "13" {
		t.Errorf("Sent(a) = %q", got)
	}
	h.Reset()
	if got := h.Sent(b); len(got) != 0 {
		t.Errorf("Sent(b) after Reset = %q", got)
	}
	if got := h.Calls(); len(got) != 0 {
		t.Errorf("Calls after Reset = %v", got)
	}

	h.Receive(a, []byte("bye"))
	if got := string(h.Sent(a)); got != "bye" {
		t.Errorf("Sent(a) = %q", got)
	}
	if reason, ok := h.Closed(a); !ok || reason != sdktest.ReasonNormal {
		t.Errorf("Closed(a) = %q, %v", reason, ok)
	}
	h.Timeout(b)
	if got := h.Sent(b); len(got) != 0 {
		t.Errorf("Sent(b) after timeout = %q", got)
	}
	var got []string
	for _, c := range h.Calls() {
		got = append(got, c.String())
	}
	want := []string{
		`send ` + itoa(a) + ` "bye"`,
		`close ` + itoa(a),
		`send ` + itoa(a) + ` "dropped"`,
		`send ` + itoa(b) + ` "timeout"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls\n got %q\nwant %q", got, want)
	}

	h.Fail(abi.ImportSend, abi.StatusPermissionDeny, "no")
	c := h.Connect(protogate.ConnInfo{})
	err := h.Receive(c, []byte("x"))
	if e, ok := err.(*protogate.Error); !ok || e.Status != abi.StatusPermissionDeny {
		t.Errorf("Receive = %v", err)
	}
	calls := h.Calls()
	if len(calls) == 0 || calls[0].String() != `send `+itoa(c)+` "x" = PERMISSION_DENY` {
		t.Errorf("calls %v", calls)
	}
}

func itoa(c protogate.Conn) string { return strconv.FormatUint(uint64(c), 10) }
