package wasmhost

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/protogate/protogate/abi"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/wasmhost/internal/instrument"
)

// maxTimersPerInstance bounds the timers one instance may have pending.
const maxTimersPerInstance = 1 << 16

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// hostFunc is one import of module "protogate".
type hostFunc struct {
	fn      api.GoModuleFunc
	params  []api.ValueType
	results []api.ValueType
}

// hostFuncs are the host imports of ABI v1. They run on the goroutine of the
// guest call that made them, which holds the instance's lock, so they use
// the instance's fields freely. None of them calls back into the guest, and
// none blocks on a device: sends are queued (gateway.Conn.Queue).
var hostFuncs = map[string]hostFunc{
	abi.ImportSend:         {hostSend, []api.ValueType{i64, i32, i32}, []api.ValueType{i32}},
	abi.ImportClose:        {hostClose, []api.ValueType{i64}, []api.ValueType{i32}},
	abi.ImportAuthenticate: {hostAuthenticate, []api.ValueType{i64, i32, i32}, []api.ValueType{i32}},
	abi.ImportStartTimer:   {hostStartTimer, []api.ValueType{i64, i32, i32}, []api.ValueType{i32}},
	abi.ImportPublish:      {hostPublish, []api.ValueType{i64, i32, i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportRawPublish:   {hostRawPublish, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportSubscribe:    {hostSubscribe, []api.ValueType{i64, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportUnsubscribe:  {hostUnsubscribe, []api.ValueType{i64, i32, i32}, []api.ValueType{i32}},
	abi.ImportSetTimer:     {hostSetTimer, []api.ValueType{i64, i32}, []api.ValueType{i64}},
	abi.ImportCancelTimer:  {hostCancelTimer, []api.ValueType{i64, i64}, []api.ValueType{i32}},
	abi.ImportLog:          {hostLog, []api.ValueType{i32, i32, i32}, nil},
	abi.ImportLastError:    {hostLastError, []api.ValueType{i32, i32}, []api.ValueType{i32}},
}

// instantiateHostModule provides the "protogate" import module in rt.
func instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(abi.ModuleName)
	for name, f := range hostFuncs {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(name)
	}
	// Not part of the ABI: the function the loop checks call (see
	// package instrument).
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostYield), nil, nil).Export(instrument.YieldImport)
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("wasmhost: host module: %w", err)
	}
	return nil
}

// status records err for last_error and returns its ABI status.
func (in *instance) status(err error) uint64 {
	if err == nil {
		return uint64(abi.StatusSuccess)
	}
	in.lastErr = err.Error()
	return uint64(uint32(gateway.CodeOf(err)))
}

// conn returns the connection id names if it is pinned to in.
func (in *instance) conn(id uint64) (*gateway.Conn, error) {
	if c := in.conns[id]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("wasmhost: conn %016x is not alive on this instance: %w", id, gateway.ErrNotAlive)
}

// read returns a view of guest memory. Bytes outside linear memory are a
// fault: the instance is killed and ok is false. A length over the call
// limit is an error the guest sees.
func (in *instance) read(mod api.Module, ptr, n uint32, what string) (b []byte, err error, ok bool) {
	if n == 0 {
		return nil, nil, true
	}
	if end := uint64(ptr) + uint64(n); end > uint64(mod.Memory().Size()) {
		in.abort(fmt.Sprintf("%s: bytes [%#x, %#x) are outside linear memory (%d bytes)", what, ptr, end, mod.Memory().Size()))
		return nil, nil, false
	}
	if int(n) > in.v.h.cfg.MaxCallBytes {
		return nil, gateway.Errorf(gateway.CodeParamsTypeError, "wasmhost: %s of %d bytes is over the %d-byte limit", what, n, in.v.h.cfg.MaxCallBytes), true
	}
	b, ok = mod.Memory().Read(ptr, n)
	if !ok {
		in.abort(fmt.Sprintf("%s: bytes [%#x, +%d) are outside linear memory", what, ptr, n))
		return nil, nil, false
	}
	return b, nil, true
}

// abort records a guest fault found by a host function and stops the guest
// call: canceling the instance's context closes the module, so the guest
// traps at its next check, and the call's caller sees in.fault.
func (in *instance) abort(msg string) {
	if in.fault == "" {
		in.fault = msg
	}
	in.kill()
}

// caller returns the instance of the call, or nil (with stack[0] set to
// UNKNOWN) outside any instance, during instantiation for example.
func caller(ctx context.Context, stack []uint64) *instance {
	in := instanceOf(ctx)
	if in == nil || in.mod == nil {
		stack[0] = uint64(abi.StatusUnknown)
		return nil
	}
	return in
}

func hostSend(ctx context.Context, mod api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	c, err := in.conn(stack[0])
	if err != nil {
		stack[0] = in.status(err)
		return
	}
	b, err, ok := in.read(mod, uint32(stack[1]), uint32(stack[2]), "send")
	switch {
	case !ok:
		stack[0] = uint64(abi.StatusParamsTypeError)
	case err != nil:
		stack[0] = in.status(err)
	default:
		stack[0] = in.status(c.Queue(b))
	}
}

func hostClose(ctx context.Context, _ api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	c, err := in.conn(stack[0])
	if err == nil {
		err = c.Close()
	}
	stack[0] = in.status(err)
}

func hostAuthenticate(ctx context.Context, mod api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	c, err := in.conn(stack[0])
	if err != nil {
		stack[0] = in.status(err)
		return
	}
	b, err, ok := in.read(mod, uint32(stack[1]), uint32(stack[2]), "authenticate")
	if !ok {
		stack[0] = uint64(abi.StatusParamsTypeError)
		return
	}
	if err == nil {
		var ci abi.ClientInfo
		var has bool
		var password string
		ci, has, password, err = abi.DecodeAuthenticate(b)
		switch {
		case err != nil:
			err = gateway.Errorf(gateway.CodeParamsTypeError, "wasmhost: authenticate: %w", err)
		case !has:
			err = gateway.Errorf(gateway.CodeRequiredParamsMissed, "wasmhost: authenticate: clientinfo is missing")
		default:
			// Authenticate may wait (an authenticator, the client-id
			// registry, a jailed id); past its half of the call's time
			// it fails instead, so that a slow answer denies one client
			// rather than the watchdog killing the instance and every
			// connection on it.
			actx, cancel := context.WithTimeout(in.done, in.v.h.cfg.CallTimeout/2)
			err = c.Authenticate(actx, &gateway.ClientInfo{
				ProtoName: ci.ProtoName, ProtoVer: ci.ProtoVer, ClientID: ci.ClientID, Username: ci.Username,
			}, password)
			cancel()
		}
	}
	stack[0] = in.status(err)
}

func hostStartTimer(ctx context.Context, _ api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	c, err := in.conn(stack[0])
	if err == nil {
		err = c.StartTimer(gateway.TimerType(int32(uint32(stack[1]))), uint32(stack[2]))
	}
	stack[0] = in.status(err)
}

// topicAndPayload reads a topic and a payload from guest memory.
func (in *instance) topicAndPayload(mod api.Module, tptr, tlen, pptr, plen uint64) (string, []byte, error, bool) {
	t, err, ok := in.read(mod, uint32(tptr), uint32(tlen), "topic")
	if !ok || err != nil {
		return "", nil, err, ok
	}
	p, err, ok := in.read(mod, uint32(pptr), uint32(plen), "payload")
	return string(t), p, err, ok
}

func hostPublish(ctx context.Context, mod api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	c, err := in.conn(stack[0])
	if err != nil {
		stack[0] = in.status(err)
		return
	}
	topic, payload, err, ok := in.topicAndPayload(mod, stack[1], stack[2], stack[4], stack[5])
	switch {
	case !ok:
		stack[0] = uint64(abi.StatusParamsTypeError)
	case err != nil:
		stack[0] = in.status(err)
	default:
		stack[0] = in.status(c.Publish(topic, uint32(stack[3]), payload))
	}
}

func hostRawPublish(ctx context.Context, mod api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	topic, payload, err, ok := in.topicAndPayload(mod, stack[0], stack[1], stack[3], stack[4])
	switch {
	case !ok:
		stack[0] = uint64(abi.StatusParamsTypeError)
	case err != nil:
		stack[0] = in.status(err)
	case in.current == nil:
		stack[0] = in.status(gateway.Errorf(gateway.CodeUnknown, "wasmhost: raw_publish outside a callback"))
	default:
		stack[0] = in.status(in.current.Server().RawPublish(topic, uint32(stack[2]), payload))
	}
}

func hostSubscribe(ctx context.Context, mod api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	c, err := in.conn(stack[0])
	if err != nil {
		stack[0] = in.status(err)
		return
	}
	t, err, ok := in.read(mod, uint32(stack[1]), uint32(stack[2]), "topic")
	switch {
	case !ok:
		stack[0] = uint64(abi.StatusParamsTypeError)
	case err != nil:
		stack[0] = in.status(err)
	default:
		// Like an authenticator, the broker's round trip ends with the call.
		stack[0] = in.status(c.Subscribe(in.done, string(t), uint32(stack[3])))
	}
}

func hostUnsubscribe(ctx context.Context, mod api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	c, err := in.conn(stack[0])
	if err != nil {
		stack[0] = in.status(err)
		return
	}
	t, err, ok := in.read(mod, uint32(stack[1]), uint32(stack[2]), "topic")
	switch {
	case !ok:
		stack[0] = uint64(abi.StatusParamsTypeError)
	case err != nil:
		stack[0] = in.status(err)
	default:
		stack[0] = in.status(c.Unsubscribe(string(t)))
	}
}

func hostSetTimer(ctx context.Context, _ api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		stack[0] = negative(uint64(abi.StatusUnknown))
		return
	}
	fail := func(err error) { stack[0] = negative(in.status(err)) }
	id := stack[0]
	if _, err := in.conn(id); err != nil {
		fail(err)
		return
	}
	ms := int32(uint32(stack[1]))
	if ms < 1 || ms > abi.MaxTimerDelayMillis {
		fail(gateway.Errorf(gateway.CodeParamsTypeError, "wasmhost: set_timer: delay %d ms is not within [1, %d]", ms, abi.MaxTimerDelayMillis))
		return
	}
	if n := in.nTimers[id]; n >= in.v.h.cfg.MaxTimers {
		fail(gateway.Errorf(gateway.CodePermissionDeny, "wasmhost: set_timer: the connection has %d timers pending, its max_timers", n))
		return
	}
	if len(in.timers) >= maxTimersPerInstance {
		fail(gateway.Errorf(gateway.CodeUnknown, "wasmhost: set_timer: %d timers pending on this instance", len(in.timers)))
		return
	}
	in.nextTimer++
	tid := in.nextTimer
	in.timers[tid] = &guestTimer{conn: id, t: time.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
		in.v.h.goBackground(func() { in.fireTimer(tid) })
	})}
	if in.nTimers == nil {
		in.nTimers = make(map[uint64]int)
	}
	in.nTimers[id]++
	stack[0] = uint64(tid)
}

// negative encodes a status as set_timer's failure result, -status.
func negative(status uint64) uint64 { return uint64(-int64(status)) }

func hostCancelTimer(ctx context.Context, _ api.Module, stack []uint64) {
	in := caller(ctx, stack)
	if in == nil {
		return
	}
	if _, err := in.conn(stack[0]); err != nil {
		stack[0] = in.status(err)
		return
	}
	tid := int64(stack[1])
	if t, ok := in.timers[tid]; ok && t.conn == stack[0] {
		in.dropTimerLocked(tid, t)
	}
	// Canceling a timer that already fired or never existed succeeds:
	// the guest cannot tell a fired timer from a pending one otherwise.
	stack[0] = uint64(abi.StatusSuccess)
}

func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceOf(ctx)
	if in == nil {
		return
	}
	n := min(uint32(stack[2]), abi.MaxLogLine)
	b, ok := mod.Memory().Read(uint32(stack[1]), n)
	if !ok {
		in.abort("log: message outside linear memory")
		return
	}
	in.out.log(slog.Level(int32(uint32(stack[0]))), string(b))
}

func hostLastError(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceOf(ctx)
	if in == nil {
		stack[0] = 0
		return
	}
	msg := in.lastErr
	n := min(uint32(stack[1]), uint32(len(msg)))
	if n > 0 && !mod.Memory().Write(uint32(stack[0]), []byte(msg[:n])) {
		in.abort("last_error: buffer outside linear memory")
	}
	stack[0] = uint64(len(msg))
}
