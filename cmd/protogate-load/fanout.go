package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/protogate/protogate/gateway/topic"
	"github.com/protogate/protogate/internal/loadstat"
)

const fanoutDoc = `
Measures pub/sub fan-out: one publisher publishes on -topic, and -subs
subscribers receive every message. With -gateway, each subscriber is a TCP
connection to a gateway listener running the builtin linepubsub guest (it
sends "SUB <topic>", waits for "OK", then reads "MSG <topic> <payload>"
lines); -gateway may list several listeners, comma separated (the nodes of
a cluster), and subscriber i connects to the (i mod n)th. Without it, each
subscriber is a plain NATS client of -nats (its own connection) subscribed
to the topic's NATS subject (bench/fanout is bench.fanout).

The publisher is a NATS client of -nats, or with -pubgateway a device: a
TCP connection to a linepubsub listener that writes "PUB <topic> <payload>"
lines (it checks the listener with "PING" first). Every PUB must be
answered "OK"; an "ERR" line, or a PUB still unanswered once the run is
over, counts as an error.

A payload is line-safe ASCII: its sequence number and publish time (unix
nanoseconds) in hex, then a pattern, -size bytes in all (at least 32). Each
subscriber checks the topic, the pattern and that sequence numbers only
grow; a wrong byte counts as a mismatch, a repeated or reordered message as
an error. The latency of a delivery runs from the publish time in the
payload to its arrival.

With -rate 0 (the default) the publisher runs closed-loop: it keeps at most
-window messages outstanding, a message being complete once every
subscriber has it, so the rate is as fast as the slowest subscriber keeps
up; a message still incomplete after -timeout is given up on. With -rate R
it publishes R messages per second, whatever the subscribers do.

Messages published during -warmup are not measured. After -duration (or,
with -messages, once it has published that many) the publisher stops, and
the subscribers get up to -timeout to receive what is still on its way;
lost is every expected delivery that did not arrive.

JSON fields: scenario "fanout", target, conns (subscribers), size, depth
(the window, closed-loop), seconds, msgs (deliveries), msgs_per_s, p50_us,
p99_us, p999_us, max_us, errors, mismatches, lost, published.
`

// FanoutConfig configures runFanout.
type FanoutConfig struct {
	NATS    string // NATS URL of the publisher, and of plain subscribers
	Gateway string // host:port of linepubsub listeners, comma separated; "" for plain NATS subscribers
	// PubGateway is the host:port of a linepubsub listener the publisher
	// connects to as a device; "" for a publisher that is a NATS client.
	PubGateway string
	Subs       int
	Duration   time.Duration
	Warmup     time.Duration
	Rate       float64 // messages per second; 0 for closed-loop
	Messages   uint64  // with > 0, stop after publishing this many measured messages
	Window     int     // closed-loop: messages outstanding at most
	Size       int
	Topic      string
	Timeout    time.Duration // dials, subscriptions, a closed-loop message, the final drain
	Label      string
	Progress   time.Duration
	Log        io.Writer
}

// fanMinSize is the smallest payload: 16 hex digits of sequence number and
// 16 of publish time.
const fanMinSize = 32

func cmdFanout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := FanoutConfig{Log: stderr}
	fs := newFlags("fanout", "[-nats url] [-gateway host:port[,host:port...]] [-pubgateway host:port] [flags]", fanoutDoc, stderr)
	fs.StringVar(&cfg.NATS, "nats", "nats://127.0.0.1:4222", "`URL` of the NATS server the publisher (without -pubgateway) and plain subscribers connect to")
	fs.StringVar(&cfg.Gateway, "gateway", "", "`host:port` of a gateway listener running builtin:linepubsub, or several, comma separated, taken in turn by the subscribers (default: plain NATS subscribers)")
	fs.StringVar(&cfg.PubGateway, "pubgateway", "", "`host:port` of a gateway listener running builtin:linepubsub: the publisher is a device there, writing PUB lines (default: a NATS client of -nats)")
	fs.IntVar(&cfg.Subs, "subs", 1000, "number of subscribers")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time after the warm-up (with -messages: the longest run, unbounded unless given)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "time before measuring starts")
	fs.Float64Var(&cfg.Rate, "rate", 0, "messages published per second (0: closed-loop, as fast as every subscriber keeps up)")
	fs.Uint64Var(&cfg.Messages, "messages", 0, "stop after publishing this many messages, warm-up excluded (0: run for -duration)")
	fs.IntVar(&cfg.Window, "window", 8, "closed-loop: messages outstanding at most")
	fs.IntVar(&cfg.Size, "size", 64, "payload size in `bytes` (at least 32)")
	fs.StringVar(&cfg.Topic, "topic", "bench/fanout", "MQTT-style `topic` to publish on (NATS subject bench.fanout)")
	fs.DurationVar(&cfg.Timeout, "timeout", 2*time.Second, "timeout of dials and subscriptions, of a closed-loop message, and of the final drain")
	fs.StringVar(&cfg.Label, "label", "", "`name` of what is measured, the result's target (default -gateway, else -nats)")
	fs.DurationVar(&cfg.Progress, "progress", 5*time.Second, "interval of the progress lines on stderr (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg.Duration = runLength(fs, cfg.Duration, cfg.Messages > 0)
	if err := positive("fanout", "subs", cfg.Subs, "window", cfg.Window, "duration", cfg.Duration, "timeout", cfg.Timeout); err != nil {
		return err
	}
	if cfg.Size < fanMinSize {
		return usagef("fanout: -size must be at least %d", fanMinSize)
	}
	if cfg.Rate < 0 || cfg.Warmup < 0 {
		return usagef("fanout: -rate and -warmup must not be negative")
	}
	if _, err := topic.PublishSubject(cfg.Topic); err != nil {
		return usagef("fanout: -topic: %v", err)
	}
	res, notes, err := runFanout(ctx, cfg)
	if err != nil {
		return err
	}
	return report(res, stdout, stderr, notes...)
}

// fanSub is one subscriber and what it measured.
type fanSub struct {
	idx  int
	hist loadstat.Histogram
	got  atomic.Uint64 // measured deliveries
	mism atomic.Uint64
	dead atomic.Bool
	n    uint64 // measured deliveries, the subscriber's own count
	next uint64 // the sequence number expected next

	// A gateway subscriber: its connection and what followed "OK".
	nc   net.Conn
	rest []byte
	// A plain NATS subscriber.
	conn *nats.Conn
	ch   chan *nats.Msg
}

// fanRun is the state shared by the publisher and the subscribers.
type fanRun struct {
	runState
	cfg      FanoutConfig
	subject  string
	gateways []string // the addresses of -gateway
	prefix   []byte   // "MSG <topic> "
	fromWall int64    // unix nanos: messages published from then on are measured
	alive    atomic.Int64

	// Closed loop: ring[seq%Window] holds seq<<countBits | subscribers
	// still to receive it; the subscriber that brings the count to 0
	// sends seq on done.
	ring []atomic.Uint64
	done chan uint64
}

const (
	countBits = 24
	countMask = 1<<countBits - 1
	seqMask   = 1<<(64-countBits) - 1
)

// runFanout runs the fanout scenario. It fails when the publisher cannot
// connect or a subscriber cannot subscribe.
func runFanout(ctx context.Context, cfg FanoutConfig) (*loadstat.Result, []string, error) {
	cfg.Subs = max(cfg.Subs, 1)
	cfg.Size = max(cfg.Size, fanMinSize)
	if cfg.Window <= 0 {
		cfg.Window = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Topic == "" {
		cfg.Topic = "bench/fanout"
	}
	subject, err := topic.PublishSubject(cfg.Topic)
	if err != nil {
		return nil, nil, fmt.Errorf("protogate-load: fanout: topic %q: %w", cfg.Topic, err)
	}
	if cfg.Subs >= countMask {
		return nil, nil, fmt.Errorf("protogate-load: fanout: at most %d subscribers", countMask-1)
	}
	if err := checkFiles(cfg.Subs + 1); err != nil {
		return nil, nil, err
	}
	errs := new(errLog)
	r := &fanRun{
		runState: runState{stop: make(chan struct{}), errs: errs},
		cfg:      cfg,
		subject:  subject,
		prefix:   []byte("MSG " + cfg.Topic + " "),
	}
	if cfg.Rate == 0 {
		r.ring = make([]atomic.Uint64, cfg.Window)
		r.done = make(chan uint64, 4*cfg.Window)
	}
	if cfg.Gateway != "" {
		for _, a := range strings.Split(cfg.Gateway, ",") {
			if a = strings.TrimSpace(a); a == "" {
				return nil, nil, fmt.Errorf("protogate-load: fanout: -gateway %q: an empty address", cfg.Gateway)
			}
			r.gateways = append(r.gateways, a)
		}
	}
	target := firstOf(cfg.Label, firstOf(cfg.Gateway, cfg.NATS))

	var pub fanPublisher
	if cfg.PubGateway != "" {
		pub, err = r.dialPublisher(ctx)
	} else {
		pub, err = natsPublisher(cfg.NATS, subject, cfg.Timeout)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("protogate-load: fanout: publisher: %w", err)
	}
	defer pub.close()

	subs := make([]*fanSub, cfg.Subs)
	for i := range subs {
		subs[i] = &fanSub{idx: i}
	}
	var setupErr atomic.Pointer[error]
	setupCtx, cancelSetup := context.WithCancel(ctx)
	parallel(setupCtx, len(subs), 32, func(i int) {
		var err error
		if cfg.Gateway != "" {
			err = r.subscribeGateway(setupCtx, subs[i])
		} else {
			err = r.subscribeNATS(subs[i])
		}
		if err != nil {
			err = fmt.Errorf("protogate-load: fanout: subscriber %d: %w", i, err)
			setupErr.CompareAndSwap(nil, &err)
			cancelSetup()
		}
	})
	cancelSetup()
	closeSubs := func() {
		for _, s := range subs {
			if s.nc != nil {
				s.nc.Close()
			}
			if s.conn != nil {
				s.conn.Close()
			}
		}
	}
	if p := setupErr.Load(); p != nil {
		r.stopping.Store(true)
		closeSubs()
		return nil, nil, *p
	}
	if err := ctx.Err(); err != nil {
		r.stopping.Store(true)
		closeSubs()
		return nil, nil, fmt.Errorf("protogate-load: fanout: %w", err)
	}
	r.alive.Store(int64(len(subs)))

	start := time.Now()
	r.from = clock() + int64(cfg.Warmup)
	r.fromWall = start.Add(cfg.Warmup).UnixNano()
	end := at(r.from + int64(cfg.Duration))
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.nc != nil {
				r.readGateway(s)
			} else {
				r.readNATS(s)
			}
		}()
	}
	var published atomic.Uint64
	quit := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		var prev uint64
		progress(cfg.Log, cfg.Progress, quit, func(elapsed time.Duration) string {
			var got uint64
			for _, s := range subs {
				got += s.got.Load()
			}
			defer func() { prev = got }()
			return fmt.Sprintf("fanout %s: %v: published %d, %d deliveries measured, %.0f/s over the last %v, errors %d",
				target, elapsed, published.Load(), got, rate(float64(got-prev), cfg.Progress), cfg.Progress, errs.n.Load())
		})
	}()

	stalls, pubErr := r.publish(ctx, pub, end, &published)
	stopAt := min(clock(), r.from+int64(cfg.Duration))

	// Drain: give what is on its way up to cfg.Timeout to arrive.
	expected := published.Load() * uint64(len(subs))
	received := func() uint64 {
		var n uint64
		for _, s := range subs {
			n += s.got.Load()
		}
		return n
	}
	if pubErr == nil {
		drain := time.NewTimer(cfg.Timeout)
		tick := time.NewTicker(5 * time.Millisecond)
	wait:
		for (received() < expected && r.alive.Load() > 0) || !pub.answered() {
			select {
			case <-drain.C:
				break wait
			case <-ctx.Done():
				break wait
			case <-tick.C:
			}
		}
		drain.Stop()
		tick.Stop()
	}
	r.stopping.Store(true)
	close(r.stop)
	for _, s := range subs {
		if s.nc != nil {
			s.nc.SetDeadline(aLongTimeAgo)
		}
	}
	wg.Wait()
	close(quit)
	<-progressDone
	closeSubs()
	pubNote := pub.close()
	if pubErr != nil {
		return nil, nil, pubErr
	}

	res := &loadstat.Result{
		Scenario:  "fanout",
		Target:    target,
		Conns:     cfg.Subs,
		Size:      cfg.Size,
		Seconds:   seconds(stopAt - r.from),
		Published: published.Load(),
	}
	if cfg.Rate == 0 {
		res.Depth = cfg.Window
	}
	var h loadstat.Histogram
	for _, s := range subs {
		h.Merge(&s.hist)
		res.Mismatch += s.mism.Load()
	}
	res.Msgs = h.Count()
	if res.Msgs < expected {
		res.Lost = expected - res.Msgs
	}
	res.Errors = errs.n.Load()
	res.MsgsPerS = math.Round(rate(float64(res.Msgs), time.Duration(stopAt-r.from)))
	res.SetLatency(&h)
	note := fmt.Sprintf("  published %d measured messages (%.0f/s) to %d subscribers: %d deliveries expected, %d received",
		res.Published, rate(float64(res.Published), time.Duration(stopAt-r.from)), cfg.Subs, expected, res.Msgs)
	if stalls > 0 {
		note += fmt.Sprintf("; %d messages given up on after %v", stalls, cfg.Timeout)
	}
	notes := []string{note}
	if pubNote != "" {
		notes = append(notes, pubNote)
	}
	return res, append(notes, errs.lines()...), nil
}

// subscribeGateway connects s to the gateway and subscribes it.
func (r *fanRun) subscribeGateway(ctx context.Context, s *fanSub) error {
	d := dialer{addr: r.gateways[s.idx%len(r.gateways)], timeout: r.cfg.Timeout}
	nc, err := d.dial(ctx)
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Now().Add(r.cfg.Timeout))
	if _, err := io.WriteString(nc, "SUB "+r.cfg.Topic+"\n"); err != nil {
		nc.Close()
		return err
	}
	buf := make([]byte, 256)
	n := 0
	for {
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			line := string(bytes.TrimSuffix(buf[:i], []byte("\r")))
			if line != "OK" {
				nc.Close()
				return fmt.Errorf("SUB %s: the gateway answered %q, not OK (is it running builtin:linepubsub?)", r.cfg.Topic, line)
			}
			s.rest = append([]byte(nil), buf[i+1:n]...)
			break
		}
		if n == len(buf) {
			nc.Close()
			return fmt.Errorf("SUB %s: the gateway answered %q..., not OK (is it running builtin:linepubsub?)", r.cfg.Topic, buf[:n])
		}
		m, err := nc.Read(buf[n:])
		n += m
		if err != nil {
			nc.Close()
			return fmt.Errorf("SUB %s: no answer: %w", r.cfg.Topic, err)
		}
	}
	nc.SetDeadline(time.Time{})
	s.nc = nc
	return nil
}

// subscribeNATS connects s to the NATS server and subscribes it.
func (r *fanRun) subscribeNATS(s *fanSub) error {
	nc, err := nats.Connect(r.cfg.NATS,
		nats.Name(fmt.Sprintf("protogate-load subscriber %d", s.idx)),
		nats.Timeout(r.cfg.Timeout),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			r.errs.add(fmt.Errorf("subscriber %d: %w", s.idx, err))
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			if !r.stopping.Load() {
				r.died(s, errors.New("connection closed"))
			}
		}),
	)
	if err != nil {
		return err
	}
	s.ch = make(chan *nats.Msg, 1024)
	if _, err := nc.ChanSubscribe(r.subject, s.ch); err != nil {
		nc.Close()
		return err
	}
	if err := nc.FlushTimeout(r.cfg.Timeout); err != nil {
		nc.Close()
		return err
	}
	s.conn = nc
	return nil
}

// died counts a subscriber gone before the end.
func (r *fanRun) died(s *fanSub, err error) {
	if s.dead.CompareAndSwap(false, true) {
		r.errs.add(fmt.Errorf("subscriber %d: %w", s.idx, err))
		r.alive.Add(-1)
	}
}

// readNATS receives the messages of a plain NATS subscriber.
func (r *fanRun) readNATS(s *fanSub) {
	for {
		select {
		case m := <-s.ch:
			now := time.Now().UnixNano()
			if m.Subject != r.subject {
				s.mism.Add(uint64(len(m.Data)))
				continue
			}
			r.deliver(s, m.Data, now)
		case <-r.stop:
			return
		}
	}
}

// readGateway reads the MSG lines of a gateway subscriber.
func (r *fanRun) readGateway(s *fanSub) {
	buf := make([]byte, max(8<<10, 4*(len(r.prefix)+r.cfg.Size+2)))
	n := copy(buf, s.rest)
	for {
		m, err := s.nc.Read(buf[n:])
		if m > 0 || n > 0 {
			now := time.Now().UnixNano() // one clock reading for every line of the read
			n += m
			start := 0
			for {
				i := bytes.IndexByte(buf[start:n], '\n')
				if i < 0 {
					break
				}
				r.line(s, buf[start:start+i], now)
				start += i + 1
			}
			n = copy(buf, buf[start:n])
			if n == len(buf) {
				s.mism.Add(uint64(n)) // a line longer than any MSG line
				n = 0
			}
		}
		if err != nil {
			if !r.stopping.Load() {
				r.died(s, err)
			}
			return
		}
	}
}

// line handles one line from the gateway.
func (r *fanRun) line(s *fanSub, l []byte, now int64) {
	l = bytes.TrimSuffix(l, []byte{'\r'})
	switch {
	case bytes.HasPrefix(l, r.prefix):
		r.deliver(s, l[len(r.prefix):], now)
	case bytes.HasPrefix(l, []byte("ERR")):
		r.errs.add(fmt.Errorf("subscriber %d: the gateway says %q", s.idx, l))
	case len(l) == 0:
	default:
		s.mism.Add(uint64(len(l) + 1))
	}
}

// deliver checks and counts one delivered payload.
func (r *fanRun) deliver(s *fanSub, p []byte, now int64) {
	seq, pub, bad, ok := parseFan(p, r.cfg.Size)
	if bad > 0 {
		s.mism.Add(bad)
	}
	if !ok {
		return
	}
	if seq < s.next {
		r.errs.add(fmt.Errorf("subscriber %d: message %d after %d: repeated or reordered", s.idx, seq, s.next-1))
		return
	}
	s.next = seq + 1
	if pub >= r.fromWall {
		s.hist.Record(time.Duration(now - pub))
		s.n++
		s.got.Store(s.n)
	}
	if r.ring != nil {
		r.ack(seq)
	}
}

// ack counts a delivery of seq towards its completion (closed loop).
func (r *fanRun) ack(seq uint64) {
	slot := &r.ring[seq%uint64(len(r.ring))]
	for {
		v := slot.Load()
		if v>>countBits != seq&seqMask || v&countMask == 0 {
			return // given up on already
		}
		if slot.CompareAndSwap(v, v-1) {
			if v&countMask == 1 {
				select {
				case r.done <- seq:
				default: // cannot happen: done holds more than the window
				}
			}
			return
		}
	}
}

// publish publishes until end and returns the number of messages given up
// on (closed loop).
func (r *fanRun) publish(ctx context.Context, pc fanPublisher, end time.Time, published *atomic.Uint64) (stalls uint64, err error) {
	buf := make([]byte, r.cfg.Size)
	window := uint64(len(r.ring))
	pending := make([]int64, window) // seq outstanding in each slot, -1 for none
	for i := range pending {
		pending[i] = -1
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var interval time.Duration
	if r.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.cfg.Rate)
	}
	next := time.Now()
	done := ctx.Done()
	for seq := uint64(0); ; seq++ {
		if r.ring != nil {
			slot := seq % window
			for pending[slot] >= 0 {
				timer.Reset(r.cfg.Timeout)
				select {
				case s := <-r.done:
					if pending[s%window] == int64(s) {
						pending[s%window] = -1
					}
				case <-timer.C:
					pending[slot] = -1
					stalls++
				case <-done:
					return stalls, nil
				}
			}
			timer.Stop()
		} else {
			if wait := time.Until(next); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-done:
					return stalls, nil
				}
			} else if wait < -time.Second {
				next = time.Now() // far behind: do not burst to catch up
			}
			next = next.Add(interval)
		}
		select {
		case <-done:
			return stalls, nil
		default:
		}
		t := time.Now()
		if !t.Before(end) || r.alive.Load() == 0 {
			return stalls, nil
		}
		wall := t.UnixNano()
		fanPayload(buf, seq, wall)
		if r.ring != nil {
			slot := seq % window
			r.ring[slot].Store((seq&seqMask)<<countBits | uint64(r.alive.Load()))
			pending[slot] = int64(seq)
		}
		if err := pc.publish(buf); err != nil {
			return stalls, fmt.Errorf("protogate-load: fanout: publish: %w", err)
		}
		if wall >= r.fromWall {
			if n := published.Add(1); n == r.cfg.Messages {
				return stalls, nil
			}
		}
	}
}

const hexDigits = "0123456789abcdef"

// fanPayload writes the payload of message seq published at wall (unix
// nanoseconds) into b, which is at least fanMinSize long.
func fanPayload(b []byte, seq uint64, wall int64) {
	putHex(b[:16], seq)
	putHex(b[16:32], uint64(wall))
	c := byte((seq + 32) % 26)
	for i := 32; i < len(b); i++ {
		b[i] = 'a' + c
		if c++; c == 26 {
			c = 0
		}
	}
}

func putHex(b []byte, v uint64) {
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func parseHex(b []byte) (uint64, bool) {
	var v uint64
	for _, ch := range b {
		switch {
		case '0' <= ch && ch <= '9':
			v = v<<4 | uint64(ch-'0')
		case 'a' <= ch && ch <= 'f':
			v = v<<4 | uint64(ch-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// parseFan reads the sequence number and publish time of a payload and
// counts its wrong bytes; ok is false when it cannot be read at all.
func parseFan(p []byte, size int) (seq uint64, wall int64, bad uint64, ok bool) {
	if len(p) < fanMinSize {
		return 0, 0, uint64(max(size, len(p))), false
	}
	seq, ok1 := parseHex(p[:16])
	w, ok2 := parseHex(p[16:32])
	if !ok1 || !ok2 {
		return 0, 0, uint64(max(size, len(p))), false
	}
	if len(p) != size {
		bad += uint64(max(len(p), size) - min(len(p), size))
	}
	c := byte((seq + 32) % 26)
	for i := 32; i < min(len(p), size); i++ {
		if p[i] != 'a'+c {
			bad++
		}
		if c++; c == 26 {
			c = 0
		}
	}
	return seq, int64(w), bad, true
}
