package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/internal/jsonhandler"
	jp "github.com/protogate/protogate/internal/jsonproto"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

const wait = 20 * time.Second

// startWait bounds a gateway's start, which compiles the Wasm guests
// (instrumented, under -race, sharing 2 cores with other test packages) the
// first time.
const startWait = 90 * time.Second

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `
handlers:
  h: {grpc: {address: "http://127.0.0.1:9001"}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`)
	unknownKey := write("unknown.yaml", `
handlers:
  h: {grpc: {address: "http://127.0.0.1:9001"}}
listeners:
  - name: l
    type: tcp
    bindd: "127.0.0.1:0"
    handler: h
`)
	badValue := write("bad.yaml", `
log:
  level: loud
handlers:
  h: {grpc: {address: "http://127.0.0.1:9001"}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`)
	// Every problem, one per line, in the order of the file.
	several := write("several.yaml", `
log: {level: loud}
handlers:
  h: {grpc: {address: "127.0.0.1:9001"}}
  w: {wasm: {path: `+write("main.go", "package main\n")+`}}
listeners:
  - {name: l, type: tpc, bind: "127.0.0.1:0", handler: h}
`)
	openAdmin := write("admin.yaml", `
admin: {bind: "0.0.0.0:18083"}
handlers:
  h: {grpc: {address: "http://127.0.0.1:9001"}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`)
	fallback := write("fallback.yaml", `
handlers:
  h:
    wasm: {path: `+write("notwasm.wasm", "hello")+`}
    grpc: {address: "http://127.0.0.1:9001"}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"good", []string{"validate", "-c", good}, 0, []string{"ok"}},
		{"several", []string{"validate", "-c", several}, 1, []string{
			several + ": line 2: log.level: unknown log level \"loud\" (want debug, info, warn or error)\n",
			several + ": line 4: handlers.h.grpc.address: address \"127.0.0.1:9001\" has no scheme; write \"http://127.0.0.1:9001\" (or https:// for TLS)\n",
			several + ": line 5: handlers.w.wasm.path: \"" + filepath.Join(dir, "main.go") + "\" is not a WebAssembly module",
			several + ": line 7: listeners[0].type: unknown listener type \"tpc\" (want tcp, ssl, udp or dtls)\n",
		}},
		{"fallback warning", []string{"validate", "-c", fallback}, 0, []string{
			"warning: config: " + fallback + ": line 4: handlers.h.wasm.path: ", "the grpc handler serves until it is fixed", "fallback.yaml: ok",
		}},
		{"admin open to all", []string{"validate", "-c", openAdmin}, 1, []string{
			openAdmin + ": line 2: admin.bind: address \"0.0.0.0:18083\" is not a loopback address and admin.api_keys is empty: ",
			"add admin.api_keys, or bind to 127.0.0.1\n",
		}},
		{"unknown key", []string{"validate", "-c", unknownKey}, 1, []string{"line 7", "bindd"}},
		{"bad value", []string{"validate", "-c", badValue}, 1, []string{"line 3", "log.level", "loud"}},
		{"missing file", []string{"validate", "-c", filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml"}},
		{"no file", []string{"validate"}, 2, []string{"-c FILE"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}},
		{"version", []string{"version"}, 0, []string{"protogate"}},
		{"default config", []string{"config"}, 0, []string{"listeners:"}},
		{"ctl help", []string{"ctl", "help"}, 0, []string{"usage: protogate ctl", "trace ID"}},
		{"ctl usage", []string{"ctl"}, 2, []string{"usage: protogate ctl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := protogate(tc.args, &out, &out)
			if code != tc.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output does not mention %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestRunSignalShutdown runs the real binary with a config file, serves a
// device through a remote handler and ordinary NATS clients, then sends
// SIGTERM and expects a graceful exit 0 with OnSocketClosed delivered.
func TestRunSignalShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "protogate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The handler's port is known before the gateway starts; its adapter
	// client is made once the gateway has told us where the adapter is.
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gw.yaml")
	os.WriteFile(cfg, []byte(`
node: {name: e2e, data_dir: `+dir+`}
log: {level: info, format: json}
broker: {nats_listen: "127.0.0.1:0"}
adapter: {bind: "127.0.0.1:0"}
admin: {bind: "127.0.0.1:0"}
handlers:
  json: {grpc: {address: "http://`+hln.Addr().String()+`", timeout: 5s}}
listeners:
  - {name: devices, type: tcp, bind: "127.0.0.1:0", handler: json, mountpoint: "dev/${clientid}/"}
`), 0o644)

	cmd := exec.Command(bin, "run", "-c", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addrs := make(chan map[string]string, 1)
	var logMu sync.Mutex
	var logs []string
	go func() {
		found := map[string]string{}
		sent := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs = append(logs, sc.Text())
			logMu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			msg, _ := rec["msg"].(string)
			addr, _ := rec["addr"].(string)
			switch msg {
			case "protogate: adapter listening":
				found["adapter"] = addr
			case "protogate: nats listening":
				found["nats"] = addr
			case "protogate: listening":
				found["devices"] = addr
			}
			if !sent && len(found) == 3 {
				sent = true
				addrs <- found
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		logMu.Lock()
		defer logMu.Unlock()
		if t.Failed() {
			t.Logf("protogate log:\n%s", strings.Join(logs, "\n"))
		}
	})
	var a map[string]string
	select {
	case a = <-addrs:
	case err := <-exited:
		t.Fatalf("protogate exited early: %v", err)
	case <-time.After(wait):
		t.Fatal("protogate did not report its addresses")
	}

	// The reference handler.
	cc, err := grpc.NewClient(a["adapter"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h := jsonhandler.New(pb.NewConnectionAdapterClient(cc), slog.New(slog.DiscardHandler))
	closed := make(chan string, 4)
	h.SetObserver(func(ev jsonhandler.Event) {
		if ev.Kind == jsonhandler.KindClosed {
			closed <- ev.Reason
		}
	})
	gs := grpc.NewServer()
	h.Register(gs)
	go gs.Serve(hln)
	defer gs.Stop()

	nc, err := nats.Connect("nats://"+a["nats"], nats.Timeout(wait))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	up := make(chan *nats.Msg, 4)
	if _, err := nc.ChanSubscribe("dev.d1.up", up); err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	dev, err := net.DialTimeout("tcp", a["devices"], wait)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	dec := jp.NewDecoder(0)
	expect := func(typ jp.Type) jp.Frame {
		t.Helper()
		buf := make([]byte, 4096)
		dev.SetReadDeadline(time.Now().Add(wait))
		for {
			f, ok, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if f.Type != typ || f.Code != 0 {
					t.Fatalf("got %+v, want %s code 0", f, typ)
				}
				return f
			}
			n, err := dev.Read(buf)
			if err != nil {
				t.Fatalf("device read: %v", err)
			}
			dec.Feed(buf[:n])
		}
	}
	dev.Write(jp.Encode(jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{ProtoName: "e2e", ProtoVer: "1", ClientID: "d1"}}))
	expect(jp.Connack)
	dev.Write(jp.Encode(jp.Frame{Type: jp.Subscribe, Topic: "down"}))
	expect(jp.Suback)
	nc.Publish("dev.d1.down", []byte("from nats"))
	if f := expect(jp.Publish); f.Topic != "down" || f.Payload != "from nats" {
		t.Fatalf("delivery %+v", f)
	}
	dev.Write(jp.Encode(jp.Frame{Type: jp.Publish, Topic: "up", Payload: "to nats"}))
	expect(jp.Puback)
	select {
	case m := <-up:
		if string(m.Data) != "to nats" {
			t.Fatalf("nats got %q", m.Data)
		}
	case <-time.After(wait):
		t.Fatal("no NATS delivery")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("protogate did not exit after SIGTERM")
	}
	select {
	case r := <-closed:
		if r != "{shutdown,gateway_shutdown}" {
			t.Errorf("close reason %q", r)
		}
	case <-time.After(wait):
		t.Fatal("the handler never saw OnSocketClosed")
	}
	dev.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadAll(dev); err != nil && !errors.Is(err, io.EOF) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("device socket not closed")
		}
	}
}
