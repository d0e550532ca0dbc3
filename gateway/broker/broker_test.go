package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/topic"
)

// Every wait in these tests has a deadline. They are generous because the
// tests must pass under -race on a loaded 2-core machine; a passing run never
// waits for them.
const (
	waitTimeout = 15 * time.Second
	// mqttTimeout covers the first MQTT CONNECT of a server, which creates
	// the $MQTT_* JetStream streams.
	mqttTimeout = 30 * time.Second
)

// testLogger sends the broker's warnings and errors to t.Log while the test
// runs, and drops them once it has finished (t.Log panics then).
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs after the broker's Shutdown
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("broker log: %s", strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// startBroker starts a broker for one test and shuts it down at the end.
// Unset Node and Logger are filled in.
func startBroker(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "node-test"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.DataDir == "" {
		// Only used with MQTT; never let a test write ./data.
		cfg.DataDir = t.TempDir()
	}
	b, err := broker.Start(cfg)
	if err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return b
}

// chanSub is a gateway.Subscriber backed by a buffered channel. Deliver never
// blocks; a delivery that finds the channel full is counted as dropped, and
// the test fails on it in Cleanup.
type chanSub struct {
	name    string
	ch      chan *gateway.Message
	dropped atomic.Int64
}

func newChanSub(t *testing.T, name string) *chanSub {
	s := &chanSub{name: name, ch: make(chan *gateway.Message, 4096)}
	t.Cleanup(func() {
		if n := s.dropped.Load(); n > 0 {
			t.Errorf("subscriber %s: %d deliveries dropped (channel full)", s.name, n)
		}
	})
	return s
}

func (s *chanSub) Deliver(m *gateway.Message) {
	select {
	case s.ch <- m:
	default:
		s.dropped.Add(1)
	}
}

// next waits for the next delivery.
func (s *chanSub) next(t *testing.T) *gateway.Message {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case m := <-s.ch:
		return m
	case <-timer.C:
		t.Fatalf("subscriber %s: no delivery within %v", s.name, waitTimeout)
		return nil
	}
}

// until collects deliveries up to and including the first one whose payload
// is sentinel. Messages are delivered in order per NATS subscription, so a
// sentinel published after other messages on the same subscription proves
// those were delivered (or never will be).
func (s *chanSub) until(t *testing.T, sentinel string) []*gateway.Message {
	t.Helper()
	var got []*gateway.Message
	for {
		m := s.next(t)
		if string(m.Payload) == sentinel {
			return got
		}
		got = append(got, m)
	}
}

// pending returns what has been delivered and not read yet, without waiting.
func (s *chanSub) pending() []*gateway.Message {
	var got []*gateway.Message
	for {
		select {
		case m := <-s.ch:
			got = append(got, m)
		default:
			return got
		}
	}
}

func subscribe(t *testing.T, b gateway.PubSub, filter string, s gateway.Subscriber) gateway.Subscription {
	t.Helper()
	sub, err := b.Subscribe(context.Background(), filter, s)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", filter, err)
	}
	return sub
}

func publish(t *testing.T, b gateway.PubSub, m *gateway.Message) {
	t.Helper()
	if err := b.Publish(m); err != nil {
		t.Fatalf("Publish(%q): %v", m.Topic, err)
	}
}

func pub(t *testing.T, b gateway.PubSub, topic, payload string) {
	t.Helper()
	publish(t, b, &gateway.Message{Topic: topic, Payload: []byte(payload), From: "test"})
}

func topics(ms []*gateway.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Topic + "=" + string(m.Payload)
	}
	return out
}

// natsSubs returns the subscriptions the server holds in the global account
// on exactly subject (and queue group), from any connection.
func natsSubs(t *testing.T, b *broker.Broker, subject, queue string) int {
	t.Helper()
	sz, err := b.Server().Subsz(&server.SubszOptions{Subscriptions: true, Account: "$G", Limit: 1 << 20})
	if err != nil {
		t.Fatalf("Subsz: %v", err)
	}
	n := 0
	for _, d := range sz.Subs {
		if d.Subject == subject && d.Queue == queue {
			n++
		}
	}
	return n
}

// waitNATSSubs polls until the server holds want subscriptions on subject.
// Unsubscribe sends UNSUB without waiting for the server, so drops are
// observed by polling.
func waitNATSSubs(t *testing.T, b *broker.Broker, subject, queue string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := natsSubs(t, b, subject, queue)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server holds %d subscriptions on %q (queue %q), want %d", n, subject, queue, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExactTopic(t *testing.T) {
	b := startBroker(t, broker.Config{})
	s := newChanSub(t, "s")
	subscribe(t, b, "a/b", s)

	for _, tp := range []string{"a", "a/b/c", "a/bb", "b/b", "a/b/", "/a/b", "A/b", "a.b"} {
		pub(t, b, tp, "no")
	}
	pub(t, b, "a/b", "yes")
	pub(t, b, "a/b", "end")
	got := s.until(t, "end")
	if len(got) != 1 || got[0].Topic != "a/b" || string(got[0].Payload) != "yes" {
		t.Fatalf("a/b subscriber got %q, want only a/b=yes", topics(got))
	}
}

func TestSingleLevelWildcard(t *testing.T) {
	b := startBroker(t, broker.Config{})
	s := newChanSub(t, "s")
	subscribe(t, b, "sensors/+/temp", s)

	for _, tp := range []string{"sensors/temp", "sensors/d1/hum", "sensors/d1/x/temp", "x/d1/temp", "sensors/d1/temp/x"} {
		pub(t, b, tp, "no")
	}
	pub(t, b, "sensors/d1/temp", "1")
	pub(t, b, "sensors//temp", "2") // "+" matches an empty level
	pub(t, b, "sensors/d.2/temp", "3")
	pub(t, b, "sensors/z/temp", "end")
	got := s.until(t, "end")
	want := []string{"sensors/d1/temp=1", "sensors//temp=2", "sensors/d.2/temp=3"}
	if fmt.Sprint(topics(got)) != fmt.Sprint(want) {
		t.Fatalf("sensors/+/temp subscriber got %q, want %q", topics(got), want)
	}
}

// TestMultiLevelWildcard checks that "a/#" receives "a" itself and every
// topic below it, each exactly once.
func TestMultiLevelWildcard(t *testing.T) {
	b := startBroker(t, broker.Config{})
	s := newChanSub(t, "s")
	sub := subscribe(t, b, "a/#", s)

	// "a/#" needs two NATS subscriptions, "a.>" and "a".
	if n, p := natsSubs(t, b, "a.>", ""), natsSubs(t, b, "a", ""); n != 1 || p != 1 {
		t.Fatalf("server holds %d subscriptions on a.> and %d on a, want 1 and 1", n, p)
	}

	for _, tp := range []string{"ab", "b/a", "x/a/b", "/a"} {
		pub(t, b, tp, "no")
	}
	pub(t, b, "a", "parent")
	pub(t, b, "a/x", "x")
	pub(t, b, "a/x/y", "xy")
	pub(t, b, "a/", "empty")
	// The two NATS subscriptions may be delivered by different goroutines,
	// so each gets its own sentinel; everything published before them has
	// been delivered once both have arrived.
	pub(t, b, "a", "end")
	pub(t, b, "a/end", "end")

	count := map[string]int{}
	for seen := 0; seen < 2; {
		m := s.next(t)
		if string(m.Payload) == "end" {
			seen++
			continue
		}
		count[m.Topic+"="+string(m.Payload)]++
	}
	count2 := map[string]int{}
	for _, m := range s.pending() {
		count2[m.Topic+"="+string(m.Payload)]++
	}
	want := map[string]int{"a=parent": 1, "a/x=x": 1, "a/x/y=xy": 1, "a/=empty": 1}
	if fmt.Sprint(count) != fmt.Sprint(want) || len(count2) != 0 {
		t.Fatalf("a/# subscriber got %v then %v, want each of %v exactly once", count, count2, want)
	}

	if err := sub.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	waitNATSSubs(t, b, "a.>", "", 0)
	waitNATSSubs(t, b, "a", "", 0)
}

func TestHashAlone(t *testing.T) {
	b := startBroker(t, broker.Config{})
	s := newChanSub(t, "s")
	subscribe(t, b, "#", s)
	if n := natsSubs(t, b, ">", ""); n != 1 {
		t.Fatalf("server holds %d subscriptions on >, want 1", n)
	}
	pub(t, b, "x", "1")
	pub(t, b, "x/y/z", "2")
	pub(t, b, "/", "3")
	pub(t, b, "e", "end")
	got := s.until(t, "end")
	want := []string{"x=1", "x/y/z=2", "/=3"}
	if fmt.Sprint(topics(got)) != fmt.Sprint(want) {
		t.Fatalf("# subscriber got %q, want %q", topics(got), want)
	}
}

func TestOwnPublish(t *testing.T) {
	b := startBroker(t, broker.Config{})
	// A device is one Subscriber that also publishes; without no-local it
	// gets its own messages back.
	dev := newChanSub(t, "dev-1")
	subscribe(t, b, "chat/room", dev)
	publish(t, b, &gateway.Message{From: "dev-1", Topic: "chat/room", Payload: []byte("hi")})
	m := dev.next(t)
	if m.From != "dev-1" || m.Topic != "chat/room" || string(m.Payload) != "hi" {
		t.Fatalf("own publish came back as %+v", m)
	}
}

var idRE = regexp.MustCompile(`^[0-9A-F]{32}$`)

func TestMessageFields(t *testing.T) {
	b := startBroker(t, broker.Config{Node: "node-a"})
	s := newChanSub(t, "s")
	subscribe(t, b, "dev/+/up", s)

	ids := map[string]bool{}
	for _, qos := range []uint8{0, 1, 2} {
		before := time.Now().UnixMilli()
		in := &gateway.Message{QoS: qos, From: "client-7", Topic: "dev/7/up", Payload: []byte{0, 1, 2, 0xff}}
		publish(t, b, in)
		after := time.Now().UnixMilli()
		// Publish fills in the ID and the timestamp.
		if !idRE.MatchString(in.ID) {
			t.Errorf("Publish set ID %q, want 32 uppercase hex digits", in.ID)
		}
		if in.Timestamp < before || in.Timestamp > after {
			t.Errorf("Publish set Timestamp %d, want within [%d, %d]", in.Timestamp, before, after)
		}

		m := s.next(t)
		if m.Node != "node-a" {
			t.Errorf("Node = %q, want node-a", m.Node)
		}
		if m.ID != in.ID || !idRE.MatchString(m.ID) {
			t.Errorf("ID = %q, want the published %q (32 uppercase hex)", m.ID, in.ID)
		}
		if ids[m.ID] {
			t.Errorf("ID %q delivered twice", m.ID)
		}
		ids[m.ID] = true
		if m.Timestamp != in.Timestamp || m.Timestamp < before || m.Timestamp > after {
			t.Errorf("Timestamp = %d, want %d within [%d, %d]", m.Timestamp, in.Timestamp, before, after)
		}
		if m.QoS != qos {
			t.Errorf("QoS = %d, want %d", m.QoS, qos)
		}
		if m.From != "client-7" {
			t.Errorf("From = %q, want client-7", m.From)
		}
		if m.Topic != "dev/7/up" {
			t.Errorf("Topic = %q, want dev/7/up", m.Topic)
		}
		if string(m.Payload) != "\x00\x01\x02\xff" {
			t.Errorf("Payload = %x, want 000102ff", m.Payload)
		}
	}

	// A caller-supplied ID and timestamp are kept.
	publish(t, b, &gateway.Message{ID: "0123456789ABCDEF0123456789ABCDEF", Timestamp: 1700000000123, Topic: "dev/x/up"})
	m := s.next(t)
	if m.ID != "0123456789ABCDEF0123456789ABCDEF" || m.Timestamp != 1700000000123 {
		t.Errorf("got ID %q Timestamp %d, want the published ones", m.ID, m.Timestamp)
	}
}

// TestSharedNATSSubscription checks that subscribers of one filter share one
// NATS subscription, which goes away with the last of them.
func TestSharedNATSSubscription(t *testing.T) {
	b := startBroker(t, broker.Config{})
	base := b.Server().NumSubscriptions()
	s1, s2 := newChanSub(t, "s1"), newChanSub(t, "s2")
	sub1 := subscribe(t, b, "t/shared", s1)
	sub2 := subscribe(t, b, "t/shared", s2)

	if n := natsSubs(t, b, "t.shared", ""); n != 1 {
		t.Fatalf("two subscribers of t/shared: server holds %d subscriptions on t.shared, want 1", n)
	}
	if n := b.Server().NumSubscriptions(); n != base+1 {
		t.Fatalf("NumSubscriptions = %d, want %d+1", n, base)
	}

	pub(t, b, "t/shared", "both")
	if m := s1.next(t); string(m.Payload) != "both" {
		t.Fatalf("s1 got %q", m.Payload)
	}
	if m := s2.next(t); string(m.Payload) != "both" {
		t.Fatalf("s2 got %q", m.Payload)
	}

	if err := sub1.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe s1: %v", err)
	}
	if n := natsSubs(t, b, "t.shared", ""); n != 1 {
		t.Fatalf("after one Unsubscribe the server holds %d subscriptions, want 1", n)
	}
	pub(t, b, "t/shared", "s2 only")
	pub(t, b, "t/shared", "end")
	if got := s2.until(t, "end"); len(got) != 1 || string(got[0].Payload) != "s2 only" {
		t.Fatalf("s2 got %q", topics(got))
	}
	// Both were delivered by the same goroutine before "end" reached s2.
	if got := s1.pending(); len(got) != 0 {
		t.Fatalf("s1 got %q after Unsubscribe", topics(got))
	}

	if err := sub2.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe s2: %v", err)
	}
	waitNATSSubs(t, b, "t.shared", "", 0)
	if n := b.Server().NumSubscriptions(); n != base {
		t.Fatalf("NumSubscriptions = %d after both Unsubscribe, want %d", n, base)
	}

	// Unsubscribe is idempotent, and must not take a membership that a
	// later subscriber of the same filter holds.
	s3 := newChanSub(t, "s3")
	subscribe(t, b, "t/shared", s3)
	for i, sub := range []gateway.Subscription{sub1, sub2, sub1, sub2} {
		if err := sub.Unsubscribe(); err != nil {
			t.Fatalf("repeated Unsubscribe #%d: %v", i, err)
		}
	}
	if n := natsSubs(t, b, "t.shared", ""); n != 1 {
		t.Fatalf("after repeated Unsubscribe the server holds %d subscriptions for s3, want 1", n)
	}
	pub(t, b, "t/shared", "s3")
	if m := s3.next(t); string(m.Payload) != "s3" {
		t.Fatalf("s3 got %q", m.Payload)
	}
}

// TestSameSubscriberTwoFilters checks that one subscriber holding two
// filters keeps the other when it drops one.
func TestSameSubscriberTwoFilters(t *testing.T) {
	b := startBroker(t, broker.Config{})
	s := newChanSub(t, "s")
	other := newChanSub(t, "other")
	subA := subscribe(t, b, "f/a", s)
	subscribe(t, b, "f/b", s)
	subscribe(t, b, "f/a", other)
	if err := subA.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	pub(t, b, "f/a", "a")
	pub(t, b, "f/a", "end")
	if got := other.until(t, "end"); len(got) != 1 {
		t.Fatalf("other got %q", topics(got))
	}
	pub(t, b, "f/b", "b")
	if m := s.next(t); m.Topic != "f/b" {
		t.Fatalf("s got %s=%s after dropping f/a, want f/b", m.Topic, m.Payload)
	}
}

// TestShareGroup checks that "$share/g/topic" delivers each message to
// exactly one member of the group, while plain subscribers get them all.
func TestShareGroup(t *testing.T) {
	b := startBroker(t, broker.Config{})
	m1, m2 := newChanSub(t, "member1"), newChanSub(t, "member2")
	plain := newChanSub(t, "plain")
	subscribe(t, b, "$share/g/jobs/+", m1)
	sub2 := subscribe(t, b, "$share/g/jobs/+", m2)
	subscribe(t, b, "jobs/+", plain)

	if n := natsSubs(t, b, "jobs.*", "g"); n != 1 {
		t.Fatalf("server holds %d queue subscriptions jobs.* g, want 1", n)
	}

	const n = 200
	for i := range n {
		pub(t, b, "jobs/run", fmt.Sprint(i))
	}
	pub(t, b, "jobs/run", "end")

	// The group's deliveries all come from one goroutine in publish order:
	// once either member has "end", every earlier delivery has been made.
	seen := map[string]int{}
	per := map[string]int{}
	for done := false; !done; {
		timer := time.NewTimer(waitTimeout)
		var m *gateway.Message
		var who string
		select {
		case m = <-m1.ch:
			who = "member1"
		case m = <-m2.ch:
			who = "member2"
		case <-timer.C:
			t.Fatalf("group got %d of %d messages and no end within %v", len(seen), n, waitTimeout)
		}
		timer.Stop()
		if string(m.Payload) == "end" {
			done = true
			continue
		}
		seen[string(m.Payload)]++
		per[who]++
	}
	for _, m := range append(m1.pending(), m2.pending()...) {
		seen[string(m.Payload)]++
	}
	for i := range n {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Errorf("message %d delivered %d times to the group, want exactly 1", i, c)
		}
	}
	if len(seen) != n {
		t.Errorf("group got %d distinct messages, want %d", len(seen), n)
	}
	if per["member1"] == 0 || per["member2"] == 0 {
		t.Errorf("deliveries per member %v: one member got nothing", per)
	}
	if got := plain.until(t, "end"); len(got) != n {
		t.Errorf("plain subscriber got %d messages, want all %d", len(got), n)
	}

	// With one member left it gets everything.
	if err := sub2.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		pub(t, b, "jobs/run", fmt.Sprint("solo", i))
	}
	pub(t, b, "jobs/run", "end")
	if got := m1.until(t, "end"); len(got) != 5 {
		t.Errorf("remaining member got %q, want 5 messages", topics(got))
	}
}

func TestBadTopics(t *testing.T) {
	b := startBroker(t, broker.Config{})
	base := b.Server().NumSubscriptions()
	for _, v := range []struct {
		topic string
		cause error
	}{
		{"", topic.ErrEmpty},
		{"a/+", topic.ErrWildcard},
		{"a/#", topic.ErrWildcard},
		{"+", topic.ErrWildcard},
		{"a/*/b", topic.ErrWildcard},
		{"a/>", topic.ErrWildcard},
		{"a b", topic.ErrBadChar},
		{"a\tb", topic.ErrBadChar},
		{"a\x7f", topic.ErrBadChar},
		{"a\x00", topic.ErrBadChar},
		{"\xff", topic.ErrBadChar},
		{"$SYS/x", topic.ErrReserved},
		{"$JS/API/INFO", topic.ErrReserved},
		{strings.Repeat("a", topic.MaxSubjectLen+1), topic.ErrTooLong},
	} {
		err := b.Publish(&gateway.Message{Topic: v.topic, Payload: []byte("x")})
		if !errors.Is(err, gateway.ErrBadTopic) || !errors.Is(err, v.cause) {
			t.Errorf("Publish(%.40q) = %v, want ErrBadTopic and %v", v.topic, err, v.cause)
		}
	}
	s := newChanSub(t, "s")
	for _, v := range []struct {
		filter string
		cause  error
	}{
		{"", topic.ErrEmpty},
		{"a/#/b", topic.ErrInvalid},
		{"a+", topic.ErrInvalid},
		{"a/b#", topic.ErrInvalid},
		{"a/*", topic.ErrInvalid},
		{"$share/g", topic.ErrInvalid},
		{"$share/g/", topic.ErrInvalid},
		{"$share//a", topic.ErrInvalid},
		{"$share/g+/a", topic.ErrInvalid},
		{"$share", topic.ErrInvalid},
		{"$SYS/#", topic.ErrReserved},
		{"a b/#", topic.ErrBadChar},
	} {
		sub, err := b.Subscribe(context.Background(), v.filter, s)
		if !errors.Is(err, gateway.ErrBadTopic) || !errors.Is(err, v.cause) || sub != nil {
			t.Errorf("Subscribe(%q) = %v, %v; want nil and ErrBadTopic and %v", v.filter, sub, err, v.cause)
		}
	}
	if n := b.Server().NumSubscriptions(); n != base {
		t.Errorf("failed subscribes left %d subscriptions", n-base)
	}
}

func TestPayloadTooLarge(t *testing.T) {
	const limit = 1024
	b := startBroker(t, broker.Config{MaxPayload: limit})
	if got := b.MaxPayload(); got != limit {
		t.Fatalf("MaxPayload() = %d, want %d", got, limit)
	}
	s := newChanSub(t, "s")
	subscribe(t, b, "big", s)

	for _, n := range []int{limit + 1, 2 * limit, 1 << 20} {
		err := b.Publish(&gateway.Message{Topic: "big", Payload: make([]byte, n)})
		if !errors.Is(err, gateway.ErrPayloadTooLarge) {
			t.Errorf("Publish of %d bytes (limit %d) = %v, want ErrPayloadTooLarge", n, limit, err)
		}
	}
	// Well under the limit, headers included.
	publish(t, b, &gateway.Message{Topic: "big", From: "c", Payload: make([]byte, limit/2)})
	if m := s.next(t); len(m.Payload) != limit/2 {
		t.Fatalf("got %d bytes, want %d", len(m.Payload), limit/2)
	}
	// The connection survived the refusals.
	pub(t, b, "big", "small")
	if m := s.next(t); string(m.Payload) != "small" {
		t.Fatalf("got %q, want small", m.Payload)
	}
}

// TestMaxPayloadIsAccepted checks the documented contract of MaxPayload
// ("the largest payload Publish accepts") and Config.MaxPayload ("the
// largest payload accepted"): a payload of exactly that size is published.
func TestMaxPayloadIsAccepted(t *testing.T) {
	const limit = 1024
	b := startBroker(t, broker.Config{MaxPayload: limit})
	s := newChanSub(t, "s")
	subscribe(t, b, "big", s)
	n := b.MaxPayload()
	if err := b.Publish(&gateway.Message{Topic: "big", From: "client-1", QoS: 1, Payload: make([]byte, n)}); err != nil {
		t.Fatalf("Publish of MaxPayload()=%d bytes: %v (the Protogate-* headers count against the server's max_payload)", n, err)
	}
	if m := s.next(t); len(m.Payload) != n {
		t.Fatalf("got %d bytes, want %d", len(m.Payload), n)
	}
}

func TestSubscribeAfterShutdown(t *testing.T) {
	b := startBroker(t, broker.Config{})
	s := newChanSub(t, "s")
	sub := subscribe(t, b, "x", s)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Errorf("Unsubscribe after Shutdown: %v", err)
	}
	if _, err := b.Subscribe(context.Background(), "x", s); err == nil {
		t.Errorf("Subscribe after Shutdown succeeded")
	}
	if err := b.Publish(&gateway.Message{Topic: "x"}); err == nil {
		t.Errorf("Publish after Shutdown succeeded")
	}
}

func TestShutdownTwice(t *testing.T) {
	b, err := broker.Start(broker.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("first Shutdown: %v", err)
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	// Concurrent calls are safe as well.
	b2, err := broker.Start(broker.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := b2.Shutdown(ctx); err != nil {
				t.Errorf("concurrent Shutdown: %v", err)
			}
		})
	}
	wg.Wait()
}

// TestNoGoroutinesAfterShutdown compares the goroutine count before Start
// with the count after Shutdown, for an in-process broker and for one with
// NATS and MQTT listeners, JetStream and live clients. Besides the count
// (with a small slack), no goroutine may be left running code of this
// package, nats-server or nats.go, which catches a single leaked goroutine.
func TestNoGoroutinesAfterShutdown(t *testing.T) {
	const slack = 2 // runtime and testing goroutines that come and go
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("listeners=%v", full), func(t *testing.T) {
			dir := t.TempDir()
			logger := testLogger(t)
			settleGoroutines()
			before := runtime.NumGoroutine()

			cfg := broker.Config{Logger: logger, DataDir: dir}
			if full {
				cfg.NATSListen = "127.0.0.1:0"
				cfg.MQTTListen = "127.0.0.1:0"
			}
			b, err := broker.Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			s := newChanSub(t, "s")
			subscribe(t, b, "g/#", s)
			subscribe(t, b, "$share/grp/g/+", s)
			pub(t, b, "g/x", "1")
			s.next(t)
			s.next(t)
			if full {
				nc := natsConnect(t, b)
				if err := nc.Publish("g.n", []byte("2")); err != nil {
					t.Fatal(err)
				}
				s.next(t)
				s.next(t)
				nc.Close()
				mc := dialMQTT(t, b.MQTTAddr(), "leak-check")
				mc.subscribe("g/m", 1)
				mc.publish("g/m", 1, []byte("3"))
				mc.readPublish()
				mc.close()
			}

			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if err := b.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}

			deadline := time.Now().Add(waitTimeout)
			for {
				n := runtime.NumGoroutine()
				left := brokerGoroutines()
				if n <= before+slack && len(left) == 0 {
					return
				}
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					buf = buf[:runtime.Stack(buf, true)]
					t.Fatalf("%d goroutines after Shutdown, %d before Start (slack %d); %d of them in the broker, nats-server or nats.go:\n%s",
						n, before, slack, len(left), buf)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// brokerGoroutines returns the stacks of goroutines running code of package
// broker (not broker_test), nats-server or nats.go.
func brokerGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/nats-io/") || strings.Contains(g, "protogate/gateway/broker.") {
			out = append(out, g)
		}
	}
	return out
}

// settleGoroutines waits, with a deadline, until goroutines left over by
// earlier tests (closing client connections, timers) have finished, i.e.
// the count stops falling.
func settleGoroutines() {
	deadline := time.Now().Add(5 * time.Second)
	last := runtime.NumGoroutine()
	for stable := 0; stable < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if n := runtime.NumGoroutine(); n < last {
			last, stable = n, 0
		} else {
			stable++
		}
	}
}

var _ io.Writer = (*testWriter)(nil)

func TestStartBadConfig(t *testing.T) {
	for _, cfg := range []broker.Config{
		{NATSListen: "127.0.0.1"},
		{NATSListen: "127.0.0.1:x"},
		{NATSListen: "127.0.0.1:65536"},
		{NATSListen: "127.0.0.1:-5"},
		{MQTTListen: "nope"},
		{MQTTListen: "127.0.0.1:70000"},
	} {
		cfg.Logger = testLogger(t)
		cfg.DataDir = t.TempDir()
		b, err := broker.Start(cfg)
		if err == nil {
			b.Shutdown(context.Background())
			t.Errorf("Start(NATSListen %q, MQTTListen %q) succeeded", cfg.NATSListen, cfg.MQTTListen)
		}
	}
}

// TestStartBusyPort checks that a port in use makes Start fail with an
// error (after the server's 10 s readiness wait) instead of exiting the
// process through the server's Fatalf.
func TestStartBusyPort(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the server's 10 s readiness timeout")
	}
	for _, which := range []string{"nats", "mqtt"} {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cfg := broker.Config{Logger: slog.New(slog.DiscardHandler), DataDir: t.TempDir()}
			if which == "nats" {
				cfg.NATSListen = l.Addr().String()
			} else {
				cfg.MQTTListen = l.Addr().String()
			}
			b, err := broker.Start(cfg)
			if err == nil {
				b.Shutdown(context.Background())
				t.Fatalf("Start on busy %s port %s succeeded", which, l.Addr())
			}
			t.Logf("Start on busy %s port: %v", which, err)
		})
	}
}
