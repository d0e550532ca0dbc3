package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/topic"
)

// Where nats-server keeps the retained messages of its MQTT clients: one
// JetStream stream per account, created at the account's first MQTT
// CONNECT, with at most one message per subject "$MQTT.rmsgs.<subject>".
// The payload is the message's; the header Nmqtt-RFlags holds the PUBLISH
// flags in hex (QoS in bits 1-2), prefixed with '-' for a deletion marker.
// These names are nats-server internals (server/mqtt.go, v2.15.2), not API:
// the interop tests (cmd/protogate/interop_test.go) break if they change.
const (
	retainedStream  = "$MQTT_rmsgs"
	retainedPrefix  = "$MQTT.rmsgs."
	headerRetFlags  = "Nmqtt-RFlags"
	retainedTimeout = 2 * time.Second
	// maxRetained bounds the retained messages one subscription receives.
	maxRetained = 10000
)

// retained returns the retained messages of MQTT clients that match f, as
// nats-server would send them to an MQTT client subscribing to f: at most
// one per topic. It returns nothing when there is no MQTT listener (so no
// retained messages) or for a shared subscription (MQTT 5 sends none to
// those either).
func (b *Broker) retained(ctx context.Context, f topic.Filter) ([]*gateway.Message, error) {
	if b.cfg.MQTTListen == "" || f.Queue != "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, retainedTimeout)
	defer cancel()
	if len(f.Subjects) == 1 && literal(f.Subjects[0]) {
		// One topic: one request, no consumer.
		return b.retainedOne(ctx, f.Subjects[0])
	}
	filters := make([]string, len(f.Subjects))
	for i, s := range f.Subjects {
		filters[i] = retainedPrefix + s
	}
	// The stream sequence of the last message that matches: the stream
	// leader answers, so it counts every retained message whose PUBACK was
	// sent. The consumer below is R1 on any of the stream's replicas, which
	// may not have applied the latest messages yet: its own count of
	// pending messages is no bound, this is.
	var last uint64
	for _, s := range filters {
		sm, err := b.streamMsg(ctx, map[string]any{"last_by_subj": s, "no_hdr": true})
		if err != nil {
			return nil, fmt.Errorf("last message: %w", err)
		}
		if sm != nil {
			last = max(last, sm.Sequence)
		}
	}
	if last == 0 {
		return nil, nil // none, or no stream yet
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.CreateConsumer(ctx, retainedStream, jetstream.ConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute, // in case the delete below fails
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), retainedTimeout)
		defer dcancel()
		js.DeleteConsumer(dctx, retainedStream, cons.CachedInfo().Name)
	}()
	recs, err := readRetained(ctx, cons, last)
	var out []*gateway.Message
	for _, r := range recs {
		if m := b.retainedMessage(r.subject, r.header, r.data, r.at); m != nil {
			out = append(out, m)
		}
	}
	return out, err
}

// retainedRec is a message of the retained stream.
type retainedRec struct {
	seq     uint64
	subject string
	header  nats.Header
	data    []byte
	at      time.Time
}

// readRetained reads cons until it has delivered the message at stream
// sequence last (or a later one, if that one was replaced meanwhile) and
// returns, in stream order, the latest message it got per subject,
// deletion markers included (a marker must hide an older message a
// lagging replica delivered first), at most maxRetained of them.
//
// Two races of a cluster are waited out here. The consumer's replica of
// the stream may be behind its leader: what it has is fetched without
// waiting, then one more message with waiting, until last arrives. And
// the consumer's pull subscription, on another node, reaches this node's
// server over the account's route, while the answer that created it came
// over the system account's: a pull request sent meanwhile finds no
// responders, and is sent again.
func readRetained(ctx context.Context, cons jetstream.Consumer, last uint64) ([]retainedRec, error) {
	latest := map[string]retainedRec{}
	collect := func() []retainedRec {
		recs := make([]retainedRec, 0, len(latest))
		for _, r := range latest {
			recs = append(recs, r)
		}
		slices.SortFunc(recs, func(a, b retainedRec) int { return cmp.Compare(a.seq, b.seq) })
		return recs
	}
	pending := cons.CachedInfo().NumPending
	backoff := time.Millisecond
	for done := false; !done && len(latest) < maxRetained; {
		wait := time.Until(deadline(ctx))
		if wait < time.Millisecond {
			return collect(), fmt.Errorf("read up to sequence %d: %w", last, context.DeadlineExceeded)
		}
		var batch jetstream.MessageBatch
		var err error
		if pending > 0 {
			batch, err = cons.FetchNoWait(int(min(pending, 256, uint64(maxRetained-len(latest)))))
		} else {
			batch, err = cons.Fetch(1, jetstream.FetchMaxWait(wait))
		}
		if err != nil {
			return collect(), fmt.Errorf("fetch: %w", err)
		}
		got := 0
		for jm := range batch.Messages() {
			got++
			md, err := jm.Metadata()
			if err != nil {
				continue
			}
			pending = md.NumPending
			seq := md.Sequence.Stream
			if seq >= last {
				done = true
			}
			if r, ok := latest[jm.Subject()]; !ok || r.seq < seq {
				latest[jm.Subject()] = retainedRec{seq: seq, subject: jm.Subject(), header: jm.Headers(), data: jm.Data(), at: md.Timestamp}
			}
		}
		switch err := batch.Error(); {
		case errors.Is(err, nats.ErrNoResponders):
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return collect(), fmt.Errorf("fetch: %w", ctx.Err())
			}
			backoff = min(2*backoff, 50*time.Millisecond)
		case err != nil && !errors.Is(err, nats.ErrTimeout):
			return collect(), fmt.Errorf("fetch: %w", err)
		case got == 0:
			// Nothing more on the replica yet: wait for its next message.
			pending = 0
		}
	}
	return collect(), nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// storedMsg is a message as the JetStream API's "get message" returns it.
type storedMsg struct {
	Subject  string    `json:"subject"`
	Sequence uint64    `json:"seq"`
	Header   []byte    `json:"hdrs"`
	Data     []byte    `json:"data"`
	Time     time.Time `json:"time"`
}

// streamMsg asks the retained stream's leader for one message, req being
// a "get message" request. It returns nil, nil when there is none, or no
// stream yet.
func (b *Broker) streamMsg(ctx context.Context, req map[string]any) (*storedMsg, error) {
	data, _ := json.Marshal(req)
	reply, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+retainedStream, data)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *storedMsg `json:"message"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, err
	}
	if e := resp.Error; e != nil {
		if e.Code == 404 { // no such message (10037), no stream yet (10059)
			return nil, nil
		}
		return nil, fmt.Errorf("jetstream: %s (%d)", e.Description, e.ErrCode)
	}
	return resp.Message, nil
}

// retainedOne returns the retained message on subject, if any, with one
// JetStream API request ("last message for subject"; the stream does not
// allow direct gets).
func (b *Broker) retainedOne(ctx context.Context, subject string) ([]*gateway.Message, error) {
	sm, err := b.streamMsg(ctx, map[string]any{"last_by_subj": retainedPrefix + subject})
	if err != nil || sm == nil {
		return nil, err
	}
	h := nats.Header{}
	if v, ok := headerValue(sm.Header, headerRetFlags); ok {
		h.Set(headerRetFlags, v)
	}
	if m := b.retainedMessage(sm.Subject, h, sm.Data, sm.Time); m != nil {
		return []*gateway.Message{m}, nil
	}
	return nil, nil
}

// headerValue returns the value of key in a NATS header block
// ("NATS/1.0\r\nKey: value\r\n...").
func headerValue(hdr []byte, key string) (string, bool) {
	for line := range strings.SplitSeq(string(hdr), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), key) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// literal reports whether a NATS subject has no wildcard token.
func literal(subject string) bool {
	for tok := range strings.SplitSeq(subject, ".") {
		if tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

// retainedMessage turns a record of the retained stream into a message,
// or nil for a deletion marker or a subject no device may see.
func (b *Broker) retainedMessage(stored string, h nats.Header, data []byte, at time.Time) *gateway.Message {
	subject, ok := strings.CutPrefix(stored, retainedPrefix)
	if !ok || len(data) == 0 || strings.HasPrefix(subject, "$") {
		return nil
	}
	flags := h.Get(headerRetFlags)
	if strings.HasPrefix(flags, "-") {
		return nil
	}
	t := topic.TopicOf(subject)
	if s, err := topic.PublishSubject(t); err != nil || s != subject {
		return nil
	}
	f, _ := strconv.ParseUint(flags, 16, 8)
	if at.IsZero() {
		at = time.Now()
	}
	// The stream keeps when it was published, not who published it: From
	// stays empty.
	return &gateway.Message{
		Node:      b.cfg.Node,
		ID:        b.newID(),
		QoS:       uint8(min((f>>1)&3, 2)),
		Topic:     t,
		Payload:   data,
		Timestamp: at.UnixMilli(),
	}
}
