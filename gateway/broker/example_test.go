package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
)

// inbox is a gateway.Subscriber that queues deliveries on a channel.
type inbox chan *gateway.Message

func (in inbox) Deliver(m *gateway.Message) {
	select {
	case in <- m:
	default: // Deliver must not block: drop when full
	}
}

func Example() {
	b, err := broker.Start(broker.Config{
		Node:   "gw-1",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Shutdown(context.Background())

	in := make(inbox, 16)
	sub, err := b.Subscribe(context.Background(), "sensors/+/temp", in)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Unsubscribe()

	// Subscribe returned, so the server has the subscription.
	err = b.Publish(&gateway.Message{
		From:    "device-42",
		QoS:     1,
		Topic:   "sensors/kitchen/temp",
		Payload: []byte("21.5"),
	})
	fmt.Println("publish:", err)

	select {
	case m := <-in:
		fmt.Printf("%s %s from %s via %s, QoS %d, id of %d hex digits\n",
			m.Topic, m.Payload, m.From, m.Node, m.QoS, len(m.ID))
	case <-time.After(10 * time.Second):
		fmt.Println("timeout")
	}

	err = b.Publish(&gateway.Message{Topic: "sensors/+/temp"})
	fmt.Println(err != nil)
	// Output:
	// publish: <nil>
	// sensors/kitchen/temp 21.5 from device-42 via gw-1, QoS 1, id of 32 hex digits
	// true
}
