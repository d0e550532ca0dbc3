package wasmhost

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestGuestLogLinesAndRateLimit(t *testing.T) {
	var out bytes.Buffer
	g := newGuestLog(slog.New(slog.NewTextHandler(&out, nil)), nil)
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

func TestGuestLogLongLinesInPieces(t *testing.T) {
	var out bytes.Buffer
	g := newGuestLog(slog.New(slog.NewTextHandler(&out, nil)), nil)
	g.stdout().Write([]byte("a"))
	g.stdout().Write(bytes.Repeat([]byte("x"), 2*maxLineLen))
	g.stdout().Write([]byte("b\nc\n"))
	var lens []int
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		_, msg, _ := strings.Cut(l, `msg="guest: `)
		msg, _, _ = strings.Cut(msg, `"`)
		lens = append(lens, len(msg))
	}
	if want := []int{maxLineLen, maxLineLen, 2, 1}; fmt.Sprint(lens) != fmt.Sprint(want) {
		t.Fatalf("line lengths %v, want %v:\n%s", lens, want, out.String())
	}
}

// TestGuestLogInterrupted checks that a write calls interrupt before each
// line, so that a killed instance's fd_write of millions of lines ends.
func TestGuestLogInterrupted(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	g := newGuestLog(slog.New(slog.DiscardHandler), func() {
		if calls++; calls == 3 {
			panic(stop)
		}
	})
	func() {
		defer func() {
			if r := recover(); r != stop {
				t.Fatalf("recovered %v", r)
			}
		}()
		g.stderr().Write(bytes.Repeat([]byte("line\n"), 1000))
	}()
	if calls != 3 || len(g.tailBuf) != 2 {
		t.Fatalf("interrupt called %d times, %d lines read", calls, len(g.tailBuf))
	}
}

func TestRandReaderInterrupted(t *testing.T) {
	in := &instance{}
	b := make([]byte, 1<<20)
	if n, err := (randReader{in}).Read(b); n != 64<<10 || err != nil {
		t.Fatalf("read %d bytes, %v; want 64 KiB", n, err)
	}
	in.stopped.Store(true)
	defer func() {
		if r := recover(); r != errInterrupted {
			t.Fatalf("recovered %v", r)
		}
	}()
	(randReader{in}).Read(b)
	t.Fatal("a killed instance's random source read on")
}
