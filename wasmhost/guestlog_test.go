package wasmhost

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestGuestLogLinesAndRateLimit(t *testing.T) {
	var out bytes.Buffer
	g := newGuestLog(slog.New(slog.NewTextHandler(&out, nil)))
	// Lines split across writes are joined; a flood is cut to the burst.
	g.stdout().Write([]byte("hel"))
	g.stdout().Write([]byte("lo\nworld\n"))
	for i := range 1000 {
		fmt.Fprintf(g.stderr(), "line %d\n", i)
	}
	got := out.String()
	if !strings.Contains(got, `msg="guest: hello"`) || !strings.Contains(got, `msg="guest: world"`) {
		t.Fatalf("lines not assembled:\n%s", got)
	}
	if n := strings.Count(got, "\n"); n > logBurst+2 {
		t.Fatalf("%d lines logged, want at most the burst of %d", n, logBurst)
	}
	if g.dropped == 0 {
		t.Fatal("nothing counted as dropped")
	}
	// The crash explanation prefers a Go panic line over the tail.
	g.stderr().Write([]byte("panic: boom\ngoroutine 1 [running]:\n"))
	if tail := g.tail(); !strings.Contains(tail, "panic: boom") {
		t.Fatalf("tail %q", tail)
	}
}
