package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/internal/nativeguest"
)

// guestLanguage is one language's builds of the two reference guests: echo
// and linepubsub (the protocol of guests/linepubsub). A path is a
// builtin: name, or a file relative to the repository root that `make
// sdk-guests` builds (make test builds them first).
type guestLanguage struct {
	lang, echo, linepubsub string
	// native serves the guests/ packages echo and linepubsub as native
	// remote handlers on the fast lane instead (built with go build; their
	// main is sdk/go/serve.Main): the Go row's source, run the other way.
	native bool
}

// guestLanguages are checked by the same black-box tests, through a real
// gateway and real sockets. Each SDK adds its row.
var guestLanguages = []guestLanguage{
	{lang: "go", echo: "builtin:echo", linepubsub: "builtin:linepubsub"},
	{lang: "c", echo: ".bin/guests/echo-c.wasm", linepubsub: ".bin/guests/linepubsub-c.wasm"},
	{lang: "as", echo: ".bin/guests/echo-as.wasm", linepubsub: ".bin/guests/linepubsub-as.wasm"},
	{lang: "rust", echo: ".bin/guests/echo-rust.wasm", linepubsub: ".bin/guests/linepubsub-rust.wasm"},
	{lang: "go-native-fast-lane", native: true},
}

// startNativeGuest runs the native build of guest until the test ends and
// returns its handler address.
func startNativeGuest(t *testing.T, guest string) string {
	t.Helper()
	return nativeguest.Start(t, guest, "", wait).Addr
}

// guestPath resolves a guestLanguage path for the config: a built file must
// exist.
func guestPath(t *testing.T, p string) string {
	t.Helper()
	if strings.HasPrefix(p, "builtin:") {
		return p
	}
	abs, err := filepath.Abs(filepath.Join("..", "..", p))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("%s is not built (make sdk-guests builds it; make test runs that first): %v", p, err)
	}
	return abs
}

// startGuests starts a gateway serving the echo and linepubsub builds of l
// on two TCP listeners.
func startGuests(t *testing.T, l guestLanguage) (echoAddr, lineAddr string) {
	t.Helper()
	dir := dataDirSharingCache(t)
	handlers := `
handlers:
  echo: {wasm: {path: "` + guestPath(t, l.echo) + `", call_timeout: 5s}}
  lines: {wasm: {path: "` + guestPath(t, l.linepubsub) + `", call_timeout: 5s}}`
	if l.native {
		handlers = `
handlers:
  echo: {grpc: {address: "` + startNativeGuest(t, "echo") + `", service_name: protogate.v1.StreamHandler, timeout: 10s}}
  lines: {grpc: {address: "` + startNativeGuest(t, "linepubsub") + `", service_name: protogate.v1.StreamHandler, timeout: 10s}}`
	}
	cfg, err := config.Parse([]byte(`
node: {data_dir: ` + dir + `}
adapter: {bind: "127.0.0.1:0"}` + handlers + `
listeners:
  - {name: echo, type: tcp, bind: "127.0.0.1:0", handler: echo}
  - {name: lines, type: tcp, bind: "127.0.0.1:0", handler: lines}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	return r.listeners["echo"].String(), r.listeners["lines"].String()
}

// TestGuestLanguages runs the black-box behaviour of echo and linepubsub
// against every language's build.
func TestGuestLanguages(t *testing.T) {
	for _, l := range guestLanguages {
		t.Run(l.lang, func(t *testing.T) {
			echoAddr, lineAddr := startGuests(t, l)
			t.Run("echo", func(t *testing.T) { checkEcho(t, echoAddr) })
			t.Run("linepubsub", func(t *testing.T) { checkLinePubSub(t, lineAddr) })
		})
	}
}

// checkEcho: every byte comes back, in order, whatever the chunking; two
// connections do not mix.
func checkEcho(t *testing.T, addr string) {
	a, b := dialLines(t, addr), dialLines(t, addr)
	for _, c := range []*lineClient{a, b} {
		c.nc.SetDeadline(time.Now().Add(wait))
	}
	// Small, then large (beyond one read buffer), then binary.
	big := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	for _, msg := range [][]byte{[]byte("hello\n"), big, bin} {
		// Written while read: the echo of a large message comes back
		// before all of it is written.
		werr := make(chan error, 1)
		go func() {
			_, err := a.nc.Write(msg)
			werr <- err
		}()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(a.r, got); err != nil {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes differs", len(msg))
		}
	}
	if _, err := b.nc.Write([]byte("other\n")); err != nil {
		t.Fatal(err)
	}
	if got := b.line(); got != "other" {
		t.Fatalf("second connection got %q", got)
	}
}

// checkLinePubSub: the line protocol, as guests/linepubsub documents it.
func checkLinePubSub(t *testing.T, addr string) {
	a, b := dialLines(t, addr), dialLines(t, addr)
	for _, tc := range []struct{ line, want string }{
		{"PING", "PONG"},
		{"ping", "PONG"},
		{"NOPE x", "ERR unknown command"},
		{"SUB t/+/x", "OK"},
		{"SUB #", "OK"},
		{"UNSUB #", "OK"},
		{"SUB bad/#/filter", ""}, // ERR with the gateway's message
		{"PUB $SYS/x y", ""},     // ERR: a $ topic is refused
	} {
		got := a.cmd(tc.line)
		switch {
		case tc.want == "" && !strings.HasPrefix(got, "ERR "):
			t.Errorf("%q: %q, want ERR ...", tc.line, got)
		case tc.want != "" && got != tc.want:
			t.Errorf("%q: %q, want %q", tc.line, got, tc.want)
		}
	}
	// b publishes; a gets it as MSG; CRLF and an empty line are fine;
	// the payload is the rest of the line, spaces included.
	if got := b.cmd("PUB t/1/x hello  world \r"); got != "OK" {
		t.Fatalf("PUB: %q", got)
	}
	if got := a.line(); got != "MSG t/1/x hello  world " {
		t.Fatalf("delivery: %q", got)
	}
	b.nc.Write([]byte("\n"))
	if got := b.cmd("PUB t/2/y nobody"); got != "OK" {
		t.Fatalf("PUB: %q", got)
	}
	// A line split over writes, and two lines in one write.
	b.nc.Write([]byte("PUB t/3"))
	if got := b.cmd("/x split"); got != "OK" {
		t.Fatalf("split PUB: %q", got)
	}
	if got := a.line(); got != "MSG t/3/x split" {
		t.Fatalf("delivery of a split line: %q", got)
	}
	b.nc.Write([]byte("PUB t/4/x one\nPUB t/5/x two\n"))
	for _, want := range []string{"OK", "OK"} {
		if got := b.line(); got != want {
			t.Fatalf("coalesced: %q", got)
		}
	}
	for _, want := range []string{"MSG t/4/x one", "MSG t/5/x two"} {
		if got := a.line(); got != want {
			t.Fatalf("coalesced delivery: %q, want %q", got, want)
		}
	}
	if got := a.cmd("UNSUB t/+/x"); got != "OK" {
		t.Fatalf("UNSUB: %q", got)
	}
	if got := b.cmd("PUB t/6/x gone"); got != "OK" {
		t.Fatalf("PUB: %q", got)
	}
	if got := a.cmd("PING"); got != "PONG" {
		t.Fatalf("after UNSUB, a got %q (a delivery?)", got)
	}
	// A line longer than 64 KiB: ERR line too long, then the connection
	// closes.
	long := dialLines(t, addr)
	long.nc.Write(append(bytes.Repeat([]byte("x"), 64<<10+1), '\n'))
	if got := long.line(); got != "ERR line too long" {
		t.Fatalf("long line: %q", got)
	}
	long.nc.SetReadDeadline(time.Now().Add(wait))
	if n, err := long.r.Read(make([]byte, 1)); err == nil {
		t.Fatalf("connection open after a long line (%d more bytes)", n)
	}
}
