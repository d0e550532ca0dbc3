package wasmhost_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	jp "github.com/protogate/protogate/internal/jsonproto"
	"github.com/protogate/protogate/wasmhost"
)

// TestGuestMemorySettles pushes many messages through builtin:exproto-json,
// a Go guest that allocates on every message (encoding/json), and checks
// that its linear memory stops growing: the guest's GC keeps up, which it
// does not with wazero's fake clocks.
func TestGuestMemorySettles(t *testing.T) {
	// Several KB of guest garbage per message: dozens of guest GC cycles.
	// make bench runs the long version (millions of messages).
	n := 3_000
	h, err := wasmhost.New(wasmhost.Config{Name: "json", Wasm: mustBuiltin(t, "exproto-json"), Instances: 1, CallTimeout: 5 * time.Second, Cache: sharedCache(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	client, server := net.Pipe()
	defer client.Close()
	go srv.ServeConn(pipeConn{server}, &gateway.Listener{Name: "long", Type: gateway.TCP, Handler: h})

	// PUBLISH before CONNECT: the guest decodes the frame, the host refuses
	// the publish, the guest answers PUBACK 1. Every step allocates in the
	// guest.
	frame := jp.Encode(jp.Frame{Type: jp.Publish, Topic: "t/1", Payload: string(bytes.Repeat([]byte("x"), 2000))})
	want := jp.AppendLine(nil, jp.Frame{Type: jp.Puback, Code: 1})
	buf := make([]byte, len(want))
	var early uint32
	for i := range n {
		if _, err := client.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf); err != nil || !bytes.Equal(buf, want) {
			t.Fatalf("message %d: %q, %v", i, buf, err)
		}
		if i == n/10 {
			early = wasmhost.MemoryBytes(h)[0]
		}
	}
	late := wasmhost.MemoryBytes(h)[0]
	t.Logf("%d messages: linear memory %d KiB after %d, %d KiB at the end", n, early>>10, n/10, late>>10)
	if late > early+8<<20 {
		t.Fatalf("guest memory kept growing: %d KiB -> %d KiB", early>>10, late>>10)
	}
}
