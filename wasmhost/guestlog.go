package wasmhost

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Guest output is logged line by line, at most logRate lines a second with
// bursts of logBurst, so a chatty or hostile guest cannot flood the log.
const (
	logRate    = 20
	logBurst   = 200
	tailLines  = 8
	maxLineLen = 4096
)

// guestLog turns an instance's stdout, stderr and log calls into log
// records. It keeps the last lines of stderr, where a Go guest prints its
// panic, to explain a fault. Lines longer than maxLineLen are logged in
// pieces. It is safe for concurrent use.
type guestLog struct {
	l *slog.Logger
	// interrupt, if not nil, is called before each line of a write: one
	// fd_write can hold millions of lines, and it may end the guest call
	// (a panic, see instance.interrupt).
	interrupt func()

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
	partial [2][]byte // unterminated stdout and stderr lines
	tailBuf []string  // last stderr lines
	fatal   string    // first "panic:" or "fatal error:" line on stderr
}

func newGuestLog(l *slog.Logger, interrupt func()) *guestLog {
	return &guestLog{l: l, interrupt: interrupt, tokens: logBurst, last: time.Now()}
}

type guestStream struct {
	g   *guestLog
	idx int // 0 stdout, 1 stderr
}

func (s guestStream) Write(p []byte) (int, error) {
	s.g.write(s.idx, p)
	return len(p), nil
}

func (g *guestLog) stdout() io.Writer { return guestStream{g, 0} }
func (g *guestLog) stderr() io.Writer { return guestStream{g, 1} }

func (g *guestLog) write(idx int, p []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(p) > 0 {
		if g.interrupt != nil {
			g.interrupt()
		}
		part := g.partial[idx]
		room := maxLineLen - len(part)
		n := min(len(p), room)
		i := bytes.IndexByte(p[:min(len(p), room+1)], '\n')
		if i < 0 && len(p) <= room {
			// An unterminated line, for the next write to finish.
			g.partial[idx] = append(part, p...)
			return
		}
		if i >= 0 {
			n = i
		}
		line := p[:n]
		if len(part) > 0 {
			line = append(part, line...)
			g.partial[idx] = part[:0]
		}
		g.lineLocked(idx, line)
		if i >= 0 {
			n++ // the newline
		}
		p = p[n:]
	}
}

func (g *guestLog) lineLocked(idx int, line []byte) {
	if idx == 0 {
		if g.allowLocked() {
			g.l.Log(context.Background(), slog.LevelInfo, "guest: "+string(line), "stream", "stdout")
		}
		return
	}
	s := string(line)
	if g.fatal == "" && (strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ")) {
		g.fatal = s
	}
	g.tailBuf = append(g.tailBuf, s)
	if len(g.tailBuf) > tailLines {
		g.tailBuf = g.tailBuf[1:]
	}
	if g.allowLocked() {
		g.l.Log(context.Background(), slog.LevelWarn, "guest: "+s, "stream", "stderr")
	}
}

// log records a message the guest logged through the log import.
func (g *guestLog) log(level slog.Level, msg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.allowLocked() {
		g.l.Log(context.Background(), level, "guest: "+msg, "stream", "log")
	}
}

// allowLocked takes a token for one line from the rate limit, or counts
// the line as dropped.
func (g *guestLog) allowLocked() bool {
	now := time.Now()
	g.tokens = min(logBurst, g.tokens+now.Sub(g.last).Seconds()*logRate)
	g.last = now
	if g.tokens < 1 {
		g.dropped++
		return false
	}
	g.tokens--
	if g.dropped > 0 {
		g.l.Warn("wasmhost: guest log lines dropped by the rate limit", "dropped", g.dropped)
		g.dropped = 0
	}
	return true
}

// tail returns what stderr says about a crash, formatted to append to an
// error: a Go guest's "panic:" or "fatal error:" line, else the last lines.
func (g *guestLog) tail() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fatal != "" {
		return "; guest stderr: " + g.fatal
	}
	lines := g.tailBuf
	if p := g.partial[1]; len(p) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(p))
	}
	if len(lines) == 0 {
		return ""
	}
	return "; guest stderr: " + strings.Join(lines, " | ")
}
