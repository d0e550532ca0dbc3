package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/internal/jsonhandler"
	jp "github.com/protogate/protogate/internal/jsonproto"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// sharedDataDir is the node.data_dir of the Wasm tests: its wasm-cache
// spares each test compiling the same modules again.
var sharedDataDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "protogate-test-")
	if err != nil {
		panic(err)
	}
	sharedDataDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startRun runs the gateway in-process with cfg and returns where it listens.
func startRun(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	freeAdmin(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *running, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.DiscardHandler), func(r *running) { ready <- r }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case r := <-ready:
		return r
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(startWait):
		t.Fatal("gateway did not start")
	}
	return nil
}

// freeAdmin moves the admin API of a config on its default address to a
// free port, so that tests can run gateways side by side.
func freeAdmin(cfg *config.Config) {
	if cfg.Admin.Bind == config.DefaultAdminBind {
		cfg.Admin.Bind = "127.0.0.1:0"
	}
}

// dataDirSharingCache returns a new node.data_dir of its own (a node's
// JetStream state, say) whose wasm-cache is sharedDataDir's: each module is
// compiled once by the tests of this package.
func dataDirSharingCache(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cache := filepath.Join(sharedDataDir, "wasm-cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cache, filepath.Join(dir, "wasm-cache")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// lineClient is a linepubsub device.
type lineClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lineClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &lineClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// cmd sends a line and returns the answer line.
func (c *lineClient) cmd(line string) string {
	c.t.Helper()
	c.nc.SetDeadline(time.Now().Add(wait))
	if _, err := c.nc.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.line()
}

func (c *lineClient) line() string {
	c.t.Helper()
	c.nc.SetDeadline(time.Now().Add(wait))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}

// TestDefaultConfigServesLinePubSub runs the embedded default config (on
// free ports) and has two nc-style sessions talk through builtin:linepubsub.
func TestDefaultConfigServesLinePubSub(t *testing.T) {
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node.DataDir = sharedDataDir
	// Roomy for -race on a loaded machine (the default is 100ms).
	cfg.Handlers["default"].Wasm.CallTimeout = config.Duration(5 * time.Second)
	cfg.Adapter.Bind = "127.0.0.1:0"
	cfg.Listeners[0].Bind = "127.0.0.1:0"
	r := startRun(t, cfg)
	addr := r.listeners[cfg.Listeners[0].Name].String()

	sub := dialLines(t, addr)
	pub := dialLines(t, addr)
	if got := sub.cmd("SUB chat/#"); got != "OK" {
		t.Fatalf("SUB: %q", got)
	}
	if got := pub.cmd("PING"); got != "PONG" {
		t.Fatalf("PING: %q", got)
	}
	if got := pub.cmd("PUB chat/lobby hello from the other terminal"); got != "OK" {
		t.Fatalf("PUB: %q", got)
	}
	if got := sub.line(); got != "MSG chat/lobby hello from the other terminal" {
		t.Fatalf("delivery: %q", got)
	}
	if got := pub.cmd("PUB chat/+ nope"); !strings.HasPrefix(got, "ERR ") {
		t.Fatalf("wildcard publish: %q", got)
	}
}

// TestWasmFallsBackToGRPC configures a module that cannot load together
// with a gRPC handler: devices are served by the gRPC handler.
func TestWasmFallsBackToGRPC(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "broken.wasm")
	os.WriteFile(bad, []byte("not wasm at all"), 0o644)
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
node: {data_dir: ` + dir + `}
adapter: {bind: "127.0.0.1:0"}
handlers:
  h:
    wasm: {path: ` + bad + `, call_timeout: 5s}
    grpc: {address: "http://` + hln.Addr().String() + `"}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	cc, err := grpc.NewClient(r.adapter.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	gs := grpc.NewServer()
	jsonhandler.New(pb.NewConnectionAdapterClient(cc), nil).Register(gs)
	go gs.Serve(hln)
	defer gs.Stop()

	nc, err := net.DialTimeout("tcp", r.listeners["l"].String(), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(wait))
	nc.Write(jp.Encode(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "p", ProtoVer: "1", ClientID: "fb"}}))
	dec := jp.NewDecoder(0)
	buf := make([]byte, 512)
	for {
		f, ok, err := dec.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if f.Type != jp.Connack || f.Code != 0 {
				t.Fatalf("got %+v", f)
			}
			return
		}
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("the gRPC fallback did not answer: %v", err)
		}
		dec.Feed(buf[:n])
	}
}

// TestReloadSwapsModule replaces a module file under a live connection and
// reloads as SIGHUP does: the live connection stays on the old module, new
// ones get the new one.
func TestReloadSwapsModule(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "handler.wasm")
	echo, _ := builtin.Lookup("echo")
	lines, _ := builtin.Lookup("linepubsub")
	os.WriteFile(path, echo, 0o644)
	cfg, err := config.Parse([]byte(`
node: {data_dir: ` + sharedDataDir + `}
adapter: {bind: "127.0.0.1:0"}
handlers:
  h: {wasm: {path: ` + path + `, instances: 1, call_timeout: 5s}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	addr := r.listeners["l"].String()
	old := dialLines(t, addr)
	if got := old.cmd("hello"); got != "hello" {
		t.Fatalf("echo: %q", got)
	}
	tmp := path + ".new"
	os.WriteFile(tmp, lines, 0o644)
	os.Rename(tmp, path)
	r.reload()
	if got := old.cmd("still echo"); got != "still echo" {
		t.Fatalf("live connection after reload: %q", got)
	}
	if got := dialLines(t, addr).cmd("PING"); got != "PONG" {
		t.Fatalf("new connection after reload: %q", got)
	}
}

// TestListenerKinds runs udp, dtls (PSK) and framed tcp listeners from a
// config file, all on builtin:echo.
func TestListenerKinds(t *testing.T) {
	cfg, err := config.Parse([]byte(`
node: {data_dir: ` + sharedDataDir + `}
adapter: {bind: "127.0.0.1:0"}
handlers:
  echo: {wasm: {path: "builtin:echo", instances: 1, call_timeout: 5s}}
listeners:
  - {name: u, type: udp, bind: "127.0.0.1:0", handler: echo, health_check: {request: ping, reply: pong}}
  - name: d
    type: dtls
    bind: "127.0.0.1:0"
    handler: echo
    psk: {identities: {dev-1: "00112233445566778899aabbccddeeff"}}
  - name: f
    type: tcp
    bind: "127.0.0.1:0"
    handler: echo
    framing: {type: line}
    access_rules: ["allow 127.0.0.1", "deny all"]
    max_bytes_rate: 1MB/s
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)

	u, err := net.Dial("udp", r.listeners["u"].String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	for _, msg := range []string{"ping", "datagram"} {
		u.Write([]byte(msg))
		n, err := u.Read(buf)
		want := msg
		if msg == "ping" {
			want = "pong" // the health check, not the handler
		}
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("udp %q: got %q, %v", msg, buf[:n], err)
		}
	}

	key, _ := hex.DecodeString("00112233445566778899aabbccddeeff")
	pc, err := net.Dial("udp", r.listeners["d"].String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dc, err := dtls.ClientWithContext(ctx, pc, &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte("dev-1"),
		CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		t.Fatalf("dtls handshake: %v", err)
	}
	defer dc.Close()
	dc.SetDeadline(time.Now().Add(wait))
	dc.Write([]byte("secret"))
	if n, err := dc.Read(buf); err != nil || string(buf[:n]) != "secret" {
		t.Fatalf("dtls echo %q, %v", buf[:n], err)
	}

	// Line framing: the echo guest gets each line without its newline.
	f := dialLines(t, r.listeners["f"].String())
	f.nc.Write([]byte("one\ntwo\n"))
	f.nc.SetDeadline(time.Now().Add(wait))
	got := make([]byte, len("onetwo"))
	if _, err := io.ReadFull(f.r, got); err != nil || string(got) != "onetwo" {
		t.Fatalf("framed echo %q, %v", got, err)
	}
}
