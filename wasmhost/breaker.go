package wasmhost

import (
	"fmt"
	"time"
)

// The crash-loop breaker of a module version. Closed, the version serves
// normally. MaxFaults faults within FaultWindow open it: new connections go
// to the fallback handler, or are refused, while the instances that did not
// fault keep serving the connections they have, and no faulted instance is
// replaced. After a cool-down (BreakerCooldown) it is half-open: one fresh
// instance is started, and takes every new connection. Once that instance
// has run BreakerTrialCalls callbacks without a fault, the breaker closes
// and the pool is refilled. A fault while half-open (of any instance of the
// version), or a trial instance that does not start, opens it again with
// twice the cool-down, up to BreakerMaxCooldown; so does a trip within
// FaultWindow of a trial closing it (the faults went on). Reload replaces
// the version, breaker included. See RATIONALE.md, "Why does a half-open
// breaker close after callbacks, not after a canary?".

// breakerState is the state of a version's breaker.
type breakerState uint8

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

// The breaker states, as Stats.BreakerState names them.
const (
	BreakerClosed   = "closed"    // the version serves normally
	BreakerOpen     = "open"      // new connections go to the fallback, or are refused, until Stats.NextRetry
	BreakerHalfOpen = "half_open" // one fresh instance is on trial and takes the new connections
)

// String returns the state's name in Stats.
func (s breakerState) String() string {
	switch s {
	case breakerOpen:
		return BreakerOpen
	case breakerHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// nextCooldown returns the cool-down after the current one: twice as long,
// at most BreakerMaxCooldown. v.mu is held.
func (v *version) nextCooldown() time.Duration {
	cfg := &v.h.cfg
	if v.cooldown <= 0 {
		return cfg.BreakerCooldown
	}
	return min(2*v.cooldown, cfg.BreakerMaxCooldown)
}

// openLocked opens the breaker for cooldown and arms the trial. v.mu is
// held.
func (v *version) openLocked(cooldown time.Duration, why string) {
	from := v.state
	v.state = breakerOpen
	v.cooldown = cooldown
	v.nextRetry = time.Now().Add(cooldown)
	v.trial = nil
	v.why = why
	v.trips++
	trip := v.trips
	fb := "new connections are refused"
	if v.h.cfg.Fallback != nil {
		fb = "new connections use the fallback handler"
	}
	msg := "wasmhost: breaker open: the module version is broken; " + fb + " until the cool-down ends"
	if from == breakerHalfOpen {
		msg = "wasmhost: breaker open again: the trial failed; " + fb + " until the longer cool-down ends"
	}
	v.h.log.Error(msg, "version", v.gen, "sha256", v.hash, "breaker", BreakerOpen, "why", why,
		"cooldown", cooldown, "next_retry", v.nextRetry)
	v.h.goBackground(func() {
		t := time.NewTimer(cooldown)
		select {
		case <-t.C:
		case <-v.h.ctx.Done():
			t.Stop()
			return
		}
		v.halfOpen(trip)
	})
}

// halfOpen starts the trial of the breaker that opened as trip: one fresh
// instance. It runs on a background goroutine.
func (v *version) halfOpen(trip int) {
	v.mu.Lock()
	if v.trips != trip || v.state != breakerOpen || v.retired || v.closed {
		v.mu.Unlock()
		return
	}
	v.state = breakerHalfOpen
	v.nextRetry = time.Time{}
	// The faults that opened it are judged: the trial starts afresh.
	v.faults = v.faults[:0]
	v.h.log.Warn("wasmhost: breaker half-open: trying a fresh instance", "version", v.gen, "sha256", v.hash,
		"breaker", BreakerHalfOpen, "cooldown", v.cooldown, "trial_calls", v.h.cfg.BreakerTrialCalls)
	v.mu.Unlock()

	in, err := v.newInstance()
	if err == nil {
		// Nobody else knows the instance yet.
		in.mu.Lock()
		in.trialLeft = v.h.cfg.BreakerTrialCalls
		in.mu.Unlock()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.trips != trip || v.state != breakerHalfOpen || v.retired || v.closed {
		// Opened again by another instance's fault, reloaded or closed
		// meanwhile.
		if in != nil {
			in.close()
		}
		return
	}
	if err != nil {
		v.openLocked(v.nextCooldown(), fmt.Sprintf("the trial instance did not start: %v", err))
		return
	}
	slot := -1
	for i, x := range v.insts {
		if x == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		// Not expected (the fault that opened the breaker emptied a
		// slot), but an instance too many is harmless.
		v.insts = append(v.insts, nil)
		slot = len(v.insts) - 1
	}
	v.insts[slot] = in
	v.trial = in
}

// trialPassed closes the breaker after its trial instance in ran
// BreakerTrialCalls callbacks without a fault, and refills the pool. It
// runs on a background goroutine.
func (v *version) trialPassed(in *instance) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != breakerHalfOpen || v.trial != in || in.dead.Load() || v.retired || v.closed {
		return
	}
	v.state = breakerClosed
	v.trial = nil
	v.closedAt = time.Now()
	v.faults = v.faults[:0]
	v.h.log.Info("wasmhost: breaker closed: the trial instance served without a fault; the version serves normally again",
		"version", v.gen, "sha256", v.hash, "breaker", BreakerClosed, "trial_calls", v.h.cfg.BreakerTrialCalls,
		"instance", in.id)
	for i, x := range v.insts {
		if x == nil {
			v.scheduleReplace(i, 0)
		}
	}
}
