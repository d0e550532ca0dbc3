package broker

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestReadRetainedWaitsForLast: readRetained reads until the stream
// sequence the stream leader named, even when the consumer's replica does
// not have it yet (here: not yet published), and keeps the latest message
// per subject.
func TestReadRetainedWaitsForLast(t *testing.T) {
	b, err := Start(Config{
		Node:       "retained",
		DataDir:    t.TempDir(),
		MQTTListen: "127.0.0.1:0",
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	// The layout of the retained stream: one message per subject.
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, MaxMsgsPerSubject: 1, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	pub := func(subject, data string) {
		t.Helper()
		if _, err := js.Publish(ctx, subject, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	pub("t.a", "old") // 1
	pub("t.b", "b")   // 2
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects: []string{"t.>"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:      jetstream.AckNonePolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		recs []retainedRec
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		recs, err := readRetained(rctx, cons, 4)
		done <- result{recs, err}
	}()
	// Once it waits for what the stream does not have yet, publish it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumWaiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readRetained is not waiting: %+v", ci)
		}
		time.Sleep(5 * time.Millisecond)
	}
	pub("t.a", "new") // 3, replaces 1, which was read already
	pub("t.c", "c")   // 4
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("readRetained did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	var got []string
	for _, rec := range r.recs {
		got = append(got, rec.subject+"="+string(rec.data))
	}
	if want := []string{"t.b=b", "t.a=new", "t.c=c"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
