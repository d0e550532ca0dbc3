package wasmhost

import (
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/protogate/protogate/gateway"
)

// Guest calls of quiet connections run on their instance's own goroutine,
// not on the goroutine of the connection that asked for them. A call into
// wazero needs about 3 KiB of Go stack (wazero's call frame alone is
// 2.3 KiB), so a connection goroutine that made one would keep an 8 KiB
// stack for as long as the connection lives, when 4 KiB do otherwise:
// with thousands of idle devices, that is most of what a connection costs.
// Handed to the instance's goroutine, the call runs on one large stack per
// instance. The handoff costs two goroutine switches, about 0.5-1 µs with
// the wakeups they cause, which a busy connection would feel: bytes that
// arrive within hotWindow of the previous ones are handed to the guest on
// the connection's goroutine, as before. The instance's lock serializes
// calls either way.

// hotWindow separates busy connections from quiet ones (see above).
const hotWindow = 20 * time.Millisecond

// hotEpoch is the origin of pin.last.
var hotEpoch = time.Now()

// op is a callback the instance's goroutine runs.
type op uint8

const (
	opCreated op = iota
	opBytes
	opTimeout
	opMessages
	opClosed
	opTimer
)

// call is one callback handed to an instance's goroutine, and its result.
type call struct {
	op     op
	c      *gateway.Conn
	info   *gateway.ConnInfo
	b      []byte
	msgs   []*gateway.Message
	reason string
	arg    int64 // timer type or timer id

	ok   bool // opCreated: the connection was pinned
	err  error
	done chan struct{}
}

// calls recycles call values: a call allocates nothing.
var calls = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// mailbox holds the calls waiting for an instance's goroutine. A mutex
// and a queue cost less than a select over a call channel and a quit
// channel, and the goroutine parks only when the queue is empty.
type mailbox struct {
	mu     sync.Mutex
	q      []*call // q[head:] wait
	head   int
	parked bool          // the goroutine waits on wake
	closed bool          // the goroutine has ended or will not start
	wake   chan struct{} // capacity 1
}

// startLoop starts the instance's goroutine, or, while the handler closes,
// leaves the instance to run calls inline.
func (in *instance) startLoop() {
	in.mb.wake = make(chan struct{}, 1)
	if !in.v.h.goBackground(in.loop) {
		in.stopLoop()
	}
}

// stopLoop ends the instance's goroutine once the calls already queued
// have run. Later calls run inline, on a dead instance.
func (in *instance) stopLoop() {
	mb := &in.mb
	mb.mu.Lock()
	wake := !mb.closed && mb.parked
	mb.closed = true
	mb.parked = false
	mb.mu.Unlock()
	if wake {
		mb.wake <- struct{}{}
	}
}

// loop runs the calls handed to the instance until it closes.
func (in *instance) loop() {
	mb := &in.mb
	for {
		mb.mu.Lock()
		if mb.head == len(mb.q) {
			if mb.closed {
				mb.mu.Unlock()
				return
			}
			mb.parked = true
			mb.mu.Unlock()
			<-mb.wake
			continue
		}
		cl := mb.q[mb.head]
		mb.q[mb.head] = nil
		if mb.head++; mb.head == len(mb.q) {
			mb.q, mb.head = mb.q[:0], 0
		}
		mb.mu.Unlock()
		in.runSafe(cl)
		cl.done <- struct{}{}
	}
}

// do runs cl on the instance's goroutine and waits for it. Once the
// instance has closed, cl runs on the caller's goroutine: the instance is
// dead, so only the host's bookkeeping is left to do.
func (in *instance) do(cl *call) {
	mb := &in.mb
	mb.mu.Lock()
	if mb.closed {
		mb.mu.Unlock()
		in.runSafe(cl)
		return
	}
	mb.q = append(mb.q, cl)
	wake := mb.parked
	mb.parked = false
	mb.mu.Unlock()
	if wake {
		mb.wake <- struct{}{}
	}
	<-cl.done
}

// runSafe is run, with a panic of the host's own code contained to the
// instance (a guest's trap or panic never reaches Go: wazero returns it as
// an error, and so does a host function's panic inside a guest call). The
// call fails as a fault, as a trap would: the instance is discarded, its
// other connections close and a replacement starts. The locks the call
// held are released on the way (they are deferred).
func (in *instance) runSafe(cl *call) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		err := fmt.Errorf("%w: panic in the host: %v", faultError{FaultHostPanic}, r)
		in.v.h.log.Error("wasmhost: recovered a panic; discarding the instance",
			"version", in.v.gen, "instance", in.id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		in.mu.Lock()
		in.current = cl.c // its caller closes it, with err
		in.faultLocked(err)
		in.current = nil
		in.mu.Unlock()
		in.v.faulted(in)
		cl.ok, cl.err = true, err
	}()
	in.run(cl)
}

// testHook, set only by tests, runs at the start of every call.
var testHook func(cl *call)

func (in *instance) run(cl *call) {
	if testHook != nil {
		testHook(cl)
	}
	switch cl.op {
	case opCreated:
		cl.ok, cl.err = in.createdNow(cl.c, cl.info)
	case opBytes:
		cl.err = in.receivedBytesNow(cl.c, cl.b)
	case opTimeout:
		cl.err = in.timerTimeoutNow(cl.c, gateway.TimerType(cl.arg))
	case opMessages:
		cl.err = in.receivedMessagesNow(cl.c, cl.msgs)
	case opClosed:
		cl.err = in.socketClosedNow(cl.c, cl.reason)
	case opTimer:
		in.fireTimerNow(cl.arg)
	}
}

// The callbacks, as the Handler calls them.

func (in *instance) created(c *gateway.Conn, info *gateway.ConnInfo) (bool, error) {
	cl := in.get(opCreated, c)
	cl.info = info
	return in.finish(cl)
}

func (in *instance) receivedBytes(c *gateway.Conn, b []byte) error {
	cl := in.get(opBytes, c)
	cl.b = b
	_, err := in.finish(cl)
	return err
}

// receivedBytesHere is receivedBytes on the calling goroutine, for a busy
// connection (see above).
func (in *instance) receivedBytesHere(c *gateway.Conn, b []byte) error {
	cl := in.get(opBytes, c)
	cl.b = b
	in.runSafe(cl)
	err := cl.err
	*cl = call{done: cl.done}
	calls.Put(cl)
	return err
}

func (in *instance) timerTimeout(c *gateway.Conn, t gateway.TimerType) error {
	cl := in.get(opTimeout, c)
	cl.arg = int64(t)
	_, err := in.finish(cl)
	return err
}

func (in *instance) receivedMessages(c *gateway.Conn, msgs []*gateway.Message) error {
	cl := in.get(opMessages, c)
	cl.msgs = msgs
	_, err := in.finish(cl)
	return err
}

func (in *instance) socketClosed(c *gateway.Conn, reason string) error {
	cl := in.get(opClosed, c)
	cl.reason = reason
	_, err := in.finish(cl)
	return err
}

func (in *instance) fireTimer(id int64) {
	cl := in.get(opTimer, nil)
	cl.arg = id
	in.finish(cl)
}

// get returns a pooled call for op on c.
func (in *instance) get(op op, c *gateway.Conn) *call {
	cl := calls.Get().(*call)
	cl.op, cl.c = op, c
	return cl
}

// finish runs cl, recycles it and returns its results.
func (in *instance) finish(cl *call) (bool, error) {
	in.do(cl)
	ok, err := cl.ok, cl.err
	*cl = call{done: cl.done}
	calls.Put(cl)
	return ok, err
}
