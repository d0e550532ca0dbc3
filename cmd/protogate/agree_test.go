package main

// The tests in this file run the same values through "protogate validate"
// and through a started gateway, and check that both accept and refuse the
// same ones, and that accepted values behave as documented. A refused value
// is given to the gateway by editing a parsed config, as if validation had
// let it through: the gateway must then refuse it too (at start, or when a
// device uses it).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/internal/adaptertarget"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// probe is an ExProto handler served over real gRPC. A device sends it
// lines: "AUTH <user> <password>" authenticates the connection, "PUB
// <topic>" publishes on it; each is answered with the adapter's result code
// name and "\n".
type probe struct {
	pb.UnimplementedConnectionUnaryHandlerServer
	addr string // host:port the handler listens on

	mu      sync.Mutex
	adapter pb.ConnectionAdapterClient
	bufs    map[string][]byte
}

// startProbe serves a probe on 127.0.0.1:0 until the test ends.
func startProbe(t *testing.T) *probe {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &probe{addr: ln.Addr().String(), bufs: map[string][]byte{}}
	gs := grpc.NewServer()
	pb.RegisterConnectionUnaryHandlerServer(gs, p)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return p
}

// connect points the probe at a started gateway's adapter.
func (p *probe) connect(t *testing.T, r *running) {
	t.Helper()
	cc, err := grpc.NewClient(r.adapter.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	p.mu.Lock()
	p.adapter = pb.NewConnectionAdapterClient(cc)
	p.mu.Unlock()
}

func (p *probe) OnSocketCreated(context.Context, *pb.SocketCreatedRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}

func (p *probe) OnSocketClosed(_ context.Context, req *pb.SocketClosedRequest) (*pb.EmptySuccess, error) {
	p.mu.Lock()
	delete(p.bufs, req.Conn)
	p.mu.Unlock()
	return &pb.EmptySuccess{}, nil
}

func (p *probe) OnTimerTimeout(context.Context, *pb.TimerTimeoutRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}

func (p *probe) OnReceivedMessages(context.Context, *pb.ReceivedMessagesRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}

func (p *probe) OnReceivedBytes(ctx context.Context, req *pb.ReceivedBytesRequest) (*pb.EmptySuccess, error) {
	p.mu.Lock()
	buf := append(p.bufs[req.Conn], req.Bytes...)
	var lines []string
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(buf[:i]))
		buf = buf[i+1:]
	}
	p.bufs[req.Conn] = buf
	adapter := p.adapter
	p.mu.Unlock()
	for _, line := range lines {
		var res *pb.CodeResponse
		var err error
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "AUTH":
			res, err = adapter.Authenticate(ctx, &pb.AuthenticateRequest{Conn: req.Conn, Password: f[2],
				Clientinfo: &pb.ClientInfo{ProtoName: "probe", ProtoVer: "1", Clientid: f[1], Username: f[1]}})
		case len(f) == 2 && f[0] == "PUB":
			res, err = adapter.Publish(ctx, &pb.PublishRequest{Conn: req.Conn, Topic: f[1], Payload: []byte("x")})
		default:
			res = &pb.CodeResponse{Code: pb.ResultCode_UNKNOWN}
		}
		answer := "ERROR " + fmt.Sprint(err)
		if err == nil {
			answer = res.Code.String()
		}
		if _, err := adapter.Send(ctx, &pb.SendBytesRequest{Conn: req.Conn, Bytes: []byte(answer + "\n")}); err != nil {
			return nil, err
		}
	}
	return &pb.EmptySuccess{}, nil
}

// validateYAML runs "protogate validate" on body and returns its exit code
// and output.
func validateYAML(t *testing.T, body string) (int, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := protogate([]string{"validate", "-c", f}, &out, &out)
	return code, out.String()
}

// mustParse parses a config that must be valid.
func mustParse(t *testing.T, body string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(body))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, body)
	}
	return cfg
}

// runRefuses starts the gateway with cfg and expects it to stop with an
// error containing want before it is ready.
func runRefuses(t *testing.T, cfg *config.Config, want string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		freeAdmin(cfg)
		done <- run(ctx, cfg, slog.New(slog.DiscardHandler), func(*running) { close(ready) })
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run = %v, want an error containing %q", err, want)
		}
	case <-ready:
		cancel()
		<-done
		t.Errorf("the gateway started; want it to refuse (%s)", want)
	case <-time.After(startWait):
		t.Fatal("the gateway neither started nor failed")
	}
}

// gatewayYAML is a config with the probe as handler "h" behind tcp listener
// "l"; extra is added at the top level.
func gatewayYAML(p *probe, extra string) string {
	return `
node: {data_dir: ` + sharedDataDir + `}
adapter: {bind: "127.0.0.1:0"}
handlers:
  h: {grpc: {address: "http://` + p.addr + `", timeout: 10s}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
` + extra
}

func TestAgreePasswords(t *testing.T) {
	p := startProbe(t)
	digest := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	// Accepted values, by user: the password that logs in.
	accepted := []struct{ user, stored, password string }{
		{"plain", "hunter2", "hunter2"},
		{"lower", "sha256:" + digest("pw-lower"), "pw-lower"},
		{"upper", "SHA256:" + digest("pw-upper"), "pw-upper"},
		{"mixed", "Sha256:" + strings.ToUpper(digest("pw-mixed")), "pw-mixed"},
		{"notprefix", "sha256-" + digest("x"), "sha256-" + digest("x")},
	}
	var users strings.Builder
	for _, a := range accepted {
		fmt.Fprintf(&users, "    %s: %q\n", a.user, a.stored)
	}
	body := gatewayYAML(p, "authentication:\n  users:\n"+users.String())
	if code, out := validateYAML(t, body); code != 0 {
		t.Fatalf("validate refused accepted passwords: %s", out)
	}
	r := startRun(t, mustParse(t, body))
	p.connect(t, r)
	for _, a := range accepted {
		if a.stored != a.password {
			dev := dialLines(t, r.listeners["l"].String())
			if got := dev.cmd("AUTH " + a.user + " " + a.stored); got != "PERMISSION_DENY" {
				t.Errorf("%s: the stored string %q logged in: %s", a.user, a.stored, got)
			}
		}
		dev := dialLines(t, r.listeners["l"].String())
		if got := dev.cmd("AUTH " + a.user + " " + a.password); got != "SUCCESS" {
			t.Errorf("%s: the password %q (stored %q) did not log in: %s", a.user, a.password, a.stored, got)
		}
	}

	// Refused values: by validate, naming the key, and by the gateway.
	for _, stored := range []string{
		"sha256:abc",
		"SHA256:" + digest("x")[:63],
		"sha256:" + digest("x") + "0",
		"SHA256:" + strings.Repeat("z", 64),
		"",
	} {
		t.Run(stored, func(t *testing.T) {
			code, out := validateYAML(t, gatewayYAML(p, fmt.Sprintf("authentication:\n  users:\n    dev: %q\n", stored)))
			if code != 1 || !strings.Contains(out, "authentication.users.dev: ") {
				t.Errorf("validate: exit %d, output %q; want exit 1 naming authentication.users.dev", code, out)
			}
			cfg := mustParse(t, gatewayYAML(p, "authentication:\n  users:\n    dev: ok\n"))
			cfg.Authentication.Users["dev"] = stored
			runRefuses(t, cfg, `user "dev"`)
		})
	}
}

func TestAgreeHandlerAddress(t *testing.T) {
	p := startProbe(t)
	_, port, _ := net.SplitHostPort(p.addr)
	accepted := []string{
		"http://127.0.0.1:" + port,
		"HTTP://127.0.0.1:" + port,
		"http://127.0.0.1:" + port + "/",
		"http://localhost:" + port,
	}
	// One handler and listener per address.
	var hs, ls strings.Builder
	for i, a := range accepted {
		fmt.Fprintf(&hs, "  h%d: {grpc: {address: %q, timeout: 10s}}\n", i, a)
		fmt.Fprintf(&ls, "  - {name: l%d, type: tcp, bind: \"127.0.0.1:0\", handler: h%d}\n", i, i)
		if _, _, err := adaptertarget.Parse(a, ""); err != nil {
			t.Errorf("adaptertarget refuses %q: %v", a, err)
		}
	}
	body := "node: {data_dir: " + sharedDataDir + "}\nadapter: {bind: \"127.0.0.1:0\"}\nhandlers:\n" + hs.String() + "listeners:\n" + ls.String()
	if code, out := validateYAML(t, body); code != 0 {
		t.Fatalf("validate refused accepted addresses: %s", out)
	}
	r := startRun(t, mustParse(t, body))
	p.connect(t, r)
	for i, a := range accepted {
		dev := dialLines(t, r.listeners[fmt.Sprintf("l%d", i)].String())
		if got := dev.cmd("AUTH dev pw"); got != "SUCCESS" {
			t.Errorf("%s: the handler did not answer: %q", a, got)
		}
	}

	for _, addr := range []string{
		"127.0.0.1:" + port,
		"localhost:" + port,
		"grpc://127.0.0.1:" + port,
		"http://127.0.0.1:" + port + "/exproto",
		"http://127.0.0.1:" + port + "?x=1",
		"http://user@127.0.0.1:" + port,
		"http://127.0.0.1:0",
		"http://-bad-:" + port,
	} {
		t.Run(addr, func(t *testing.T) {
			code, out := validateYAML(t, "handlers:\n  h: {grpc: {address: \""+addr+"\"}}\nlisteners:\n  - {name: l, type: tcp, bind: \"127.0.0.1:0\", handler: h}\n")
			if code != 1 || !strings.Contains(out, "handlers.h.grpc.address: ") {
				t.Errorf("validate: exit %d, output %q; want exit 1 naming handlers.h.grpc.address", code, out)
			}
			if _, _, err := adaptertarget.Parse(addr, ""); err == nil {
				t.Errorf("adaptertarget accepts %q", addr)
			}
			cfg := mustParse(t, gatewayYAML(p, ""))
			cfg.Handlers["h"].GRPC.Address = addr
			runRefuses(t, cfg, "handlers h: remote: ")
		})
	}
}

func TestAgreeServerTLS(t *testing.T) {
	p := startProbe(t)
	const certs = "internal/config/testdata/certs/"
	ssl := func(cert, key string) string {
		return gatewayYAML(p, "") + `  - {name: s, type: ssl, bind: "127.0.0.1:0", handler: h, tls: {cert_file: "` + cert + `", key_file: "` + key + `"}}` + "\n"
	}
	good := ssl(certs+"server.pem", certs+"server.key")
	if code, out := validateYAML(t, good); code != 0 {
		t.Fatalf("validate: %s", out)
	}
	r := startRun(t, mustParse(t, good))
	p.connect(t, r)
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", r.listeners["s"].String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("tls: %v", err)
	}
	dev := &lineClient{t: t, nc: tc, r: bufio.NewReader(tc)}
	t.Cleanup(func() { tc.Close() })
	if got := dev.cmd("AUTH dev pw"); got != "SUCCESS" {
		t.Errorf("over TLS: %q", got)
	}

	for name, pair := range map[string][2]string{
		"key of another certificate": {certs + "server.pem", certs + "client.key"},
		"certificate not PEM":        {"internal/config/testdata/psk.txt", certs + "server.key"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := validateYAML(t, ssl(pair[0], pair[1]))
			if code != 1 || !strings.Contains(out, "listeners[1].tls: ") {
				t.Errorf("validate: exit %d, output %q; want exit 1 naming listeners[1].tls", code, out)
			}
			cfg := mustParse(t, good)
			cfg.Listeners[1].TLS.CertFile, cfg.Listeners[1].TLS.KeyFile = pair[0], pair[1]
			runRefuses(t, cfg, "listeners s: tls: ")
		})
	}
}

func TestAgreePSKFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	key := "00112233445566778899aabbccddeeff"
	dtlsYAML := func(file string) string {
		return `
node: {data_dir: ` + sharedDataDir + `}
handlers:
  echo: {wasm: {path: "builtin:echo", instances: 1, call_timeout: 5s}}
listeners:
  - {name: d, type: dtls, bind: "127.0.0.1:0", handler: echo, psk: {identities_file: "` + file + `"}}
`
	}
	good := dtlsYAML(write("good.txt", "# devices\ndev-1:"+key+"\n"))
	if code, out := validateYAML(t, good); code != 0 {
		t.Fatalf("validate: %s", out)
	}
	r := startRun(t, mustParse(t, good))
	k, _ := hex.DecodeString(key)
	pc, err := net.Dial("udp", r.listeners["d"].String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dc, err := dtls.ClientWithContext(ctx, pc, &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return k, nil },
		PSKIdentityHint: []byte("dev-1"),
		CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		t.Fatalf("dtls handshake with the file's key: %v", err)
	}
	defer dc.Close()
	dc.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 16)
	if _, err := dc.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if n, err := dc.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("dtls echo %q, %v", buf[:n], err)
	}

	for name, body := range map[string]string{
		"no colon":     "dev-1 " + key + "\n",
		"not hex":      "dev-1:xyz\n",
		"key too long": "dev-1:" + strings.Repeat("ab", 65) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			file := write(strings.ReplaceAll(name, " ", "-")+".txt", body)
			code, out := validateYAML(t, dtlsYAML(file))
			if code != 1 || !strings.Contains(out, "listeners[0].psk.identities_file: ") {
				t.Errorf("validate: exit %d, output %q; want exit 1 naming listeners[0].psk.identities_file", code, out)
			}
			cfg := mustParse(t, good)
			cfg.Listeners[0].PSK.IdentitiesFile = file
			runRefuses(t, cfg, "listeners d: psk: ")
		})
	}
}

func TestAgreeMountpoint(t *testing.T) {
	p := startProbe(t)
	for _, tc := range []struct {
		mountpoint string
		ok         bool
	}{
		{"dev/${clientid}/", true},
		{"a.b/", true},
		{"$SYS/", false},
		{"my devices/", false},
		{"a/*/", false},
	} {
		t.Run(tc.mountpoint, func(t *testing.T) {
			body := gatewayYAML(p, fmt.Sprintf("gateway: {mountpoint: %q}\n", tc.mountpoint))
			code, out := validateYAML(t, body)
			if tc.ok != (code == 0) || !tc.ok && !strings.Contains(out, "gateway.mountpoint: ") {
				t.Errorf("validate: exit %d, output %q; want ok=%v", code, out, tc.ok)
			}
			cfg := mustParse(t, gatewayYAML(p, ""))
			cfg.Gateway.Mountpoint, cfg.Listeners[0].Mountpoint = tc.mountpoint, tc.mountpoint
			r := startRun(t, cfg)
			p.connect(t, r)
			dev := dialLines(t, r.listeners["l"].String())
			if got := dev.cmd("AUTH dev pw"); got != "SUCCESS" {
				t.Fatalf("AUTH: %q", got)
			}
			if got := dev.cmd("PUB up"); (got == "SUCCESS") != tc.ok {
				t.Errorf("a publish through mountpoint %q: %s; want ok=%v", tc.mountpoint, got, tc.ok)
			}
		})
	}
}

func TestAgreeWasmPath(t *testing.T) {
	dir := t.TempDir()
	echo, _ := builtin.Lookup("echo")
	module := filepath.Join(dir, "echo.wasm")
	source := filepath.Join(dir, "main.go")
	os.WriteFile(module, echo, 0o644)
	os.WriteFile(source, []byte("package main\n\nfunc main() {}\n"), 0o644)
	yaml := func(path string) string {
		return `
node: {data_dir: ` + sharedDataDir + `}
handlers:
  h: {wasm: {path: "` + path + `", instances: 1, call_timeout: 5s}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`
	}
	if code, out := validateYAML(t, yaml(module)); code != 0 {
		t.Fatalf("validate: %s", out)
	}
	r := startRun(t, mustParse(t, yaml(module)))
	if got := dialLines(t, r.listeners["l"].String()).cmd("hello"); got != "hello" {
		t.Errorf("echo: %q", got)
	}

	// A Go source file: validate refuses it, naming the key and the fix;
	// the gateway refuses the connections.
	code, out := validateYAML(t, yaml(source))
	if code != 1 || !strings.Contains(out, "line 4: handlers.h.wasm.path: ") || !strings.Contains(out, "is not a WebAssembly module") {
		t.Errorf("validate: exit %d, output %q", code, out)
	}
	cfg := mustParse(t, yaml(module))
	cfg.Handlers["h"].Wasm.Path = source
	r = startRun(t, cfg)
	nc, err := net.DialTimeout("tcp", r.listeners["l"].String(), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(wait))
	nc.Write([]byte("hello\n"))
	n, err := nc.Read(make([]byte, 16))
	var ne net.Error
	switch {
	case err == nil:
		t.Errorf("a handler without a module answered %d bytes", n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Error("the connection was neither served nor closed")
	}
}

// TestAdapterOnlyWithGRPC: a gateway whose handlers are all Wasm does not
// open the ConnectionAdapter, so two of them run side by side on the
// default config's adapter address; with a gRPC handler, an address in use
// stops the gateway with an error that names adapter.bind.
func TestAdapterOnlyWithGRPC(t *testing.T) {
	// Hold the address the adapter would take.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	wasmOnly := `
node: {data_dir: ` + sharedDataDir + `}
adapter: {bind: "` + held.Addr().String() + `"}
handlers:
  h: {wasm: {path: "builtin:echo", instances: 1, call_timeout: 5s}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`
	for i := range 2 {
		r := startRun(t, mustParse(t, wasmOnly))
		if r.adapter != nil {
			t.Errorf("gateway %d opened the adapter on %v", i, r.adapter)
		}
		if got := dialLines(t, r.listeners["l"].String()).cmd("up"); got != "up" {
			t.Errorf("gateway %d: echo %q", i, got)
		}
	}

	withGRPC := strings.Replace(wasmOnly, `call_timeout: 5s}}`, `call_timeout: 5s}, grpc: {address: "http://127.0.0.1:9001"}}`, 1)
	runRefuses(t, mustParse(t, withGRPC), "adapter.bind: listen tcp "+held.Addr().String()+": ")
	runRefuses(t, mustParse(t, withGRPC), "set adapter.bind to a free host:port")
}

// TestAgreeAdminBind: an admin address that validates but is taken fails
// run with the key's name; an empty one turns the admin API off.
func TestAgreeAdminBind(t *testing.T) {
	p := startProbe(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	body := gatewayYAML(p, `admin: {bind: "`+taken.Addr().String()+`"}`)
	if code, out := validateYAML(t, body); code != 0 {
		t.Fatalf("validate: %d %s", code, out)
	}
	runRefuses(t, mustParse(t, body), "admin.bind")

	r := startRun(t, mustParse(t, gatewayYAML(p, `admin: {bind: ""}`)))
	if r.admin != nil {
		t.Errorf("admin API at %v with an empty bind", r.admin)
	}
}
