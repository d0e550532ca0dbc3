package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestGatewayKeyInProcessOnly: the nkey of the gateway's own connection,
// even when known, does not log in over TCP; in-process it does, with
// full rights.
func TestGatewayKeyInProcessOnly(t *testing.T) {
	for _, cfg := range []Config{
		{Users: []User{{Name: "u", Password: "p"}}},
		{}, // anonymous
	} {
		cfg.NATSListen, cfg.Logger = "127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil))
		b, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			b.Shutdown(ctx)
		})
		if b.key == nil {
			t.Fatal("no gateway key with a listener")
		}
		pub, err := b.key.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		login := nats.Nkey(pub, b.key.Sign)
		nc, err := nats.Connect("nats://"+b.NATSAddr().String(), login, nats.Timeout(15*time.Second), nats.NoReconnect())
		if err == nil {
			nc.Close()
			t.Fatal("the gateway's nkey logged in over TCP")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("err = %v, want %v", err, nats.ErrAuthorization)
		}
		nc, err = nats.Connect("", login, nats.InProcessServer(b.ns), nats.Timeout(15*time.Second), nats.NoReconnect())
		if err != nil {
			t.Fatalf("in-process: %v", err)
		}
		defer nc.Close()
		// Full rights: the JetStream API and the system account are
		// allowed to it (no JetStream here: the request gets no
		// responders rather than a permissions violation).
		errs := make(chan error, 1)
		nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
		if err := nc.Publish("$JS.API.INFO", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.SubscribeSync("$SYS.>"); err != nil {
			t.Fatal(err)
		}
		if err := nc.FlushTimeout(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			t.Fatalf("gateway connection: %v", err)
		default:
		}
	}
}

// TestNoAuthWithoutListeners: an in-process-only server has no
// authentication at all (nobody else can reach it).
func TestNoAuthWithoutListeners(t *testing.T) {
	b, err := Start(Config{Users: []User{{Name: "u", Password: "p"}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	if b.key != nil || len(b.opts.Users) != 0 || len(b.opts.Nkeys) != 0 {
		t.Fatalf("key %v, users %v, nkeys %v", b.key, b.opts.Users, b.opts.Nkeys)
	}
}

func TestGrants(t *testing.T) {
	for _, tc := range []struct {
		a, d string
		want bool
	}{
		{"$JS.API.>", "$JS.>", true},
		{"$JS.>", "$JS.>", true},
		{"$JS.API.STREAM.INFO.*", "$JS.>", true},
		{"$MQTT.>", "$MQTT.msgs.>", true},
		{"$MQTT.>", "$MQTT.rmsgs", true},
		{"$MQTT.sub.>", "$MQTT.msgs.>", false},
		{">", "$JS.>", false},
		{"*.API.>", "$JS.>", false},
		{"$JSX.>", "$JS.>", false},
		{"$JS", "$JS.>", false},
	} {
		if got := grants(tc.a, tc.d); got != tc.want {
			t.Errorf("grants(%q, %q) = %v", tc.a, tc.d, got)
		}
	}
}
