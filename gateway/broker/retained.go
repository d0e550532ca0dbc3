package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, err
	}
	filters := make([]string, len(f.Subjects))
	for i, s := range f.Subjects {
		filters[i] = retainedPrefix + s
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
		return nil, err
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), retainedTimeout)
		defer dcancel()
		js.DeleteConsumer(dctx, retainedStream, cons.CachedInfo().Name)
	}()
	n := int(min(cons.CachedInfo().NumPending, maxRetained))
	var out []*gateway.Message
	for got := 0; got < n; {
		wait := time.Until(deadline(ctx))
		if wait < time.Millisecond {
			return out, context.DeadlineExceeded
		}
		batch, err := cons.Fetch(min(n-got, 256), jetstream.FetchMaxWait(wait))
		if err != nil {
			return out, err
		}
		for jm := range batch.Messages() {
			got++
			var at time.Time
			if md, err := jm.Metadata(); err == nil {
				at = md.Timestamp
			}
			if m := b.retainedMessage(jm.Subject(), jm.Headers(), jm.Data(), at); m != nil {
				out = append(out, m)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return out, err
		}
	}
	return out, nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// retainedOne returns the retained message on subject, if any, with one
// JetStream API request ("last message for subject"; the stream does not
// allow direct gets).
func (b *Broker) retainedOne(ctx context.Context, subject string) ([]*gateway.Message, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": retainedPrefix + subject})
	reply, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+retainedStream, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
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
	if resp.Message == nil {
		return nil, nil
	}
	h := nats.Header{}
	if v, ok := headerValue(resp.Message.Header, headerRetFlags); ok {
		h.Set(headerRetFlags, v)
	}
	if m := b.retainedMessage(resp.Message.Subject, h, resp.Message.Data, resp.Message.Time); m != nil {
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
