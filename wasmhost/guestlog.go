package wasmhost

import (
	"bytes"
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
// panic, to explain a fault. It is safe for concurrent use.
type guestLog struct {
	l *slog.Logger

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int
	partial [2][]byte // unterminated stdout and stderr lines
	tailBuf []string  // last stderr lines
	fatal   string    // first "panic:" or "fatal error:" line on stderr
}

func newGuestLog(l *slog.Logger) *guestLog {
	return &guestLog{l: l, tokens: logBurst, last: time.Now()}
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
	buf := append(g.partial[idx], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		g.lineLocked(idx, string(buf[:i]))
		buf = buf[i+1:]
	}
	if len(buf) > maxLineLen {
		g.lineLocked(idx, string(buf[:maxLineLen]))
		buf = buf[:0]
	}
	g.partial[idx] = append(g.partial[idx][:0], buf...)
}

func (g *guestLog) lineLocked(idx int, line string) {
	if idx == 1 {
		if g.fatal == "" && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
			g.fatal = line
		}
		g.tailBuf = append(g.tailBuf, line)
		if len(g.tailBuf) > tailLines {
			g.tailBuf = g.tailBuf[1:]
		}
		g.emitLocked(slog.LevelWarn, line, "stderr")
		return
	}
	g.emitLocked(slog.LevelInfo, line, "stdout")
}

// log records a message the guest logged through the log import.
func (g *guestLog) log(level slog.Level, msg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.emitLocked(level, msg, "log")
}

func (g *guestLog) emitLocked(level slog.Level, msg, stream string) {
	now := time.Now()
	g.tokens = min(logBurst, g.tokens+now.Sub(g.last).Seconds()*logRate)
	g.last = now
	if g.tokens < 1 {
		g.dropped++
		return
	}
	g.tokens--
	if g.dropped > 0 {
		g.l.Warn("wasmhost: guest log lines dropped by the rate limit", "dropped", g.dropped)
		g.dropped = 0
	}
	g.l.Log(nil, level, "guest: "+msg, "stream", stream)
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
