package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRustLinePubSubMatchesGo sends the same lines, edge cases included, to
// the Go build of linepubsub (builtin:linepubsub) and to the Rust build
// (guests/rust/linepubsub) and wants the same replies, byte for byte: the
// gateway's messages in ERR lines, invalid UTF-8 in a topic, spaces in
// filters and payloads.
func TestRustLinePubSubMatchesGo(t *testing.T) {
	lines := []string{
		"PING", "Ping \r", "NOPE", "PINGX", "PUB", "PUB t", "PUB t/x",
		"PUB t/x  two  spaces ", "PUB t/+ x", "PUB $SYS/x y", "PUB t/\xff x",
		"SUB", "SUB a b", "SUB bad/#/x", "SUB t/\xff", "SUB +/x/#", "UNSUB",
		"UNSUB nothing", "UNSUB +/x/#", "sub\tx", "\xff\xfe",
	}
	replies := func(l guestLanguage) []byte {
		_, addr := startGuests(t, l)
		c := dialLines(t, addr)
		c.nc.SetDeadline(time.Now().Add(wait))
		var out []byte
		for _, line := range lines {
			if _, err := c.nc.Write([]byte(line + "\n")); err != nil {
				t.Fatal(err)
			}
			reply, err := c.r.ReadBytes('\n')
			if err != nil {
				t.Fatalf("%s: %q: %v", l.lang, line, err)
			}
			out = append(out, reply...)
		}
		return out
	}
	goOut := replies(guestLanguage{lang: "go", echo: "builtin:echo", linepubsub: "builtin:linepubsub"})
	rustOut := replies(guestLanguage{lang: "rust", echo: ".bin/guests/echo-rust.wasm", linepubsub: ".bin/guests/linepubsub-rust.wasm"})
	if !bytes.Equal(goOut, rustOut) {
		g, r := strings.SplitAfter(string(goOut), "\n"), strings.SplitAfter(string(rustOut), "\n")
		for i := range lines {
			if i >= len(g) || i >= len(r) || g[i] != r[i] {
				t.Errorf("line %q: go %q, rust %q", lines[i], at(g, i), at(r, i))
			}
		}
	}
	t.Logf("replies:\n%s", goOut)
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}
