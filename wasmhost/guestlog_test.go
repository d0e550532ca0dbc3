package wasmhost

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestGuestLogLinesAndRateLimit(t *testing.T) {
	var out bytes.Buffer
	g := newGuestLog(slog.New(slog.NewTextHandler(&out, nil)))
	// Lines split across writes are joined; a flood is cut to the burst.
	start := time.Now() // a moment after the bucket's: the +1 below covers it
	g.stdout().Write([]byte("hel"))
	g.stdout().Write([]byte("lo\nworld\n"))
	for i := range 1000 {
		fmt.Fprintf(g.stderr(), "line %d\n", i)
	}
	elapsed := time.Since(start)
	got := out.String()
	if !strings.Contains(got, `msg="guest: hello"`) || !strings.Contains(got, `msg="guest: world"`) {
		t.Fatalf("lines not assembled:\n%s", got)
	}
	// Each token regained at logRate while the lines were written lets
	// one more through, after a line about those dropped: on a loaded
	// machine that is more than the one a fast run gets.
	if n, most := strings.Count(got, "\n"), logBurst+2*int(elapsed.Seconds()*logRate+1); n > most {
		t.Fatalf("%d lines logged in %v, want at most %d (the burst of %d, then %d a second)", n, elapsed, most, logBurst, logRate)
	}
	// Lines dropped are counted until the next line gets through, which
	// then reports them.
	if g.dropped == 0 && !strings.Contains(got, "dropped by the rate limit") {
		t.Fatal("nothing counted as dropped")
	}
	// The crash explanation prefers a Go panic line over the tail.
	g.stderr().Write([]byte("panic: boom\ngoroutine 1 [running]:\n"))
	if tail := g.tail(); !strings.Contains(tail, "panic: boom") {
		t.Fatalf("tail %q", tail)
	}
}
