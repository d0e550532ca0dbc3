package main

// The tests in this file try the ConnectionAdapter's door on a started
// gateway, over real gRPC on loopback: it reaches only the connections of
// gRPC handlers, and the credentials of handlers.NAME.grpc decide which
// calls act on which of them.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/guests/builtin"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// recorder is an ExProto handler that only records the handles of the
// connections it is told of.
type recorder struct {
	pb.UnimplementedConnectionUnaryHandlerServer
	addr    string
	created chan string
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{addr: ln.Addr().String(), created: make(chan string, 16)}
	gs := grpc.NewServer()
	pb.RegisterConnectionUnaryHandlerServer(gs, rec)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return rec
}

func (rec *recorder) OnSocketCreated(_ context.Context, req *pb.SocketCreatedRequest) (*pb.EmptySuccess, error) {
	rec.created <- req.Conn
	return &pb.EmptySuccess{}, nil
}
func (*recorder) OnReceivedBytes(context.Context, *pb.ReceivedBytesRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}
func (*recorder) OnReceivedMessages(context.Context, *pb.ReceivedMessagesRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}
func (*recorder) OnTimerTimeout(context.Context, *pb.TimerTimeoutRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}
func (*recorder) OnSocketClosed(context.Context, *pb.SocketClosedRequest) (*pb.EmptySuccess, error) {
	return &pb.EmptySuccess{}, nil
}

// device connects to a gRPC handler's listener and returns the connection
// with the handle the handler was given.
func (rec *recorder) device(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	select {
	case h := <-rec.created:
		return nc, h
	case <-time.After(wait):
		t.Fatal("the gRPC handler was not told of the connection")
		return nil, ""
	}
}

// adapterClient returns a client of the gateway's ConnectionAdapter, over
// TLS if tc is set.
func adapterClient(t *testing.T, r *running, tc *tls.Config) pb.ConnectionAdapterClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	cc, err := grpc.NewClient(r.adapter.String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewConnectionAdapterClient(cc)
}

// handleOn returns the handle of the one live connection of listener that
// is not in except: what a guessing attacker could hit, which only the
// test can know.
func handleOn(t *testing.T, srv *gateway.Server, listener string, except ...string) string {
	t.Helper()
	var found []string
	for _, c := range srv.Conns() {
		if c.Listener().Name == listener && !slices.Contains(except, c.Handle()) {
			found = append(found, c.Handle())
		}
	}
	if len(found) != 1 {
		t.Fatalf("listener %s has connections %v besides %v; want one", listener, found, except)
	}
	return found[0]
}

func sendCode(t *testing.T, ctx context.Context, a pb.ConnectionAdapterClient, conn, payload string) *pb.CodeResponse {
	t.Helper()
	resp, err := a.Send(ctx, &pb.SendBytesRequest{Conn: conn, Bytes: []byte(payload)})
	if err != nil {
		t.Fatalf("Send at the gRPC level: %v", err)
	}
	return resp
}

func readExactly(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	buf := make([]byte, len(want))
	nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != want {
		t.Fatalf("device read %q, %v; want %q", buf, err, want)
	}
}

func plusOne(t *testing.T, handle string, delta int64) string {
	t.Helper()
	id, err := strconv.ParseUint(handle, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%016x", id+uint64(delta))
}

// TestAdapterDoorBuiltinEcho is the attack of issue 10 as a user tried it:
// a gRPC handler sends to the handle one below (and above) its own
// connection's, and even to the exact handle of a builtin:echo device. No
// call reaches the device: each answers CONN_PROCESS_NOT_ALIVE, and the
// device's next echo is the first thing it reads.
func TestAdapterDoorBuiltinEcho(t *testing.T) {
	rec := startRecorder(t)
	r := startRun(t, mustParse(t, `
node: {data_dir: `+sharedDataDir+`}
adapter: {bind: "127.0.0.1:0"}
handlers:
  g: {grpc: {address: "http://`+rec.addr+`"}}
  echo: {wasm: {path: "builtin:echo", instances: 1, call_timeout: 5s}}
listeners:
  - {name: lg, type: tcp, bind: "127.0.0.1:0", handler: g}
  - {name: le, type: tcp, bind: "127.0.0.1:0", handler: echo}
`))
	a := adapterClient(t, r, nil)
	ctx := context.Background()
	echo := dialLines(t, r.listeners["le"].String())
	if got := echo.cmd("hello"); got != "hello" {
		t.Fatalf("echo: %q", got)
	}
	dev, mine := rec.device(t, r.listeners["lg"].String())
	echoHandle := handleOn(t, r.server, "le")

	for _, guess := range []string{plusOne(t, mine, -1), plusOne(t, mine, 1), echoHandle} {
		if resp := sendCode(t, ctx, a, guess, "INJECTED\n"); resp.Code != pb.ResultCode_CONN_PROCESS_NOT_ALIVE {
			t.Errorf("Send to %s: %v %q; want CONN_PROCESS_NOT_ALIVE", guess, resp.Code, resp.Message)
		}
		if resp, err := a.Close(ctx, &pb.CloseSocketRequest{Conn: guess}); err != nil || resp.Code != pb.ResultCode_CONN_PROCESS_NOT_ALIVE {
			t.Errorf("Close of %s: %v, %v", guess, resp, err)
		}
	}
	if got := echo.cmd("after"); got != "after" {
		t.Errorf("the echo device read %q first; want its own echo", got)
	}
	if resp := sendCode(t, ctx, a, mine, "mine"); resp.Code != pb.ResultCode_SUCCESS {
		t.Fatalf("Send to the handler's own connection: %v", resp)
	}
	readExactly(t, dev, "mine")
}

// TestAdapterDoorWasmFallback runs a Wasm handler with a gRPC fallback: a
// device connected while the module does not load is served by the
// fallback and reachable; one connected after the module was fixed is the
// guest's and is not.
func TestAdapterDoorWasmFallback(t *testing.T) {
	rec := startRecorder(t)
	path := filepath.Join(t.TempDir(), "handler.wasm")
	if err := os.WriteFile(path, []byte("not wasm yet"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, mustParse(t, `
node: {data_dir: `+sharedDataDir+`}
adapter: {bind: "127.0.0.1:0"}
handlers:
  h:
    wasm: {path: `+path+`, instances: 1, call_timeout: 5s}
    grpc: {address: "http://`+rec.addr+`"}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`))
	a := adapterClient(t, r, nil)
	ctx := context.Background()
	addr := r.listeners["l"].String()
	fdev, fallback := rec.device(t, addr)

	echo, _ := builtin.Lookup("echo")
	tmp := path + ".new"
	if err := os.WriteFile(tmp, echo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	r.reload()
	gdev := dialLines(t, addr)
	if got := gdev.cmd("guest"); got != "guest" {
		t.Fatalf("the new module does not serve new connections: %q", got)
	}
	guest := handleOn(t, r.server, "l", fallback)

	if resp := sendCode(t, ctx, a, guest, "INJECTED\n"); resp.Code != pb.ResultCode_CONN_PROCESS_NOT_ALIVE {
		t.Errorf("Send to the guest's connection: %v %q", resp.Code, resp.Message)
	}
	if got := gdev.cmd("still"); got != "still" {
		t.Errorf("the guest's device read %q first", got)
	}
	if resp := sendCode(t, ctx, a, fallback, "via fallback"); resp.Code != pb.ResultCode_SUCCESS {
		t.Fatalf("Send to the fallback's connection: %v", resp)
	}
	readExactly(t, fdev, "via fallback")
}

const (
	doorTokenA = "a-token-0123456789abcdef"
	doorTokenB = "b-token-0123456789abcdef"
)

// TestAdapterDoorTokens configures handlers.NAME.grpc.adapter_token: a
// handler's token acts on its own connections only, and a call without
// one acts only on those of the handler that has none.
func TestAdapterDoorTokens(t *testing.T) {
	recA, recB, recC := startRecorder(t), startRecorder(t), startRecorder(t)
	r := startRun(t, mustParse(t, `
node: {data_dir: `+sharedDataDir+`}
adapter: {bind: "127.0.0.1:0"}
handlers:
  a: {grpc: {address: "http://`+recA.addr+`", adapter_token: `+doorTokenA+`}}
  b: {grpc: {address: "http://`+recB.addr+`", adapter_token: `+doorTokenB+`}}
  c: {grpc: {address: "http://`+recC.addr+`"}}
listeners:
  - {name: la, type: tcp, bind: "127.0.0.1:0", handler: a}
  - {name: lb, type: tcp, bind: "127.0.0.1:0", handler: b}
  - {name: lc, type: tcp, bind: "127.0.0.1:0", handler: c}
`))
	a := adapterClient(t, r, nil)
	devA, connA := recA.device(t, r.listeners["la"].String())
	devB, connB := recB.device(t, r.listeners["lb"].String())
	devC, connC := recC.device(t, r.listeners["lc"].String())
	bearer := func(tok string) context.Context {
		if tok == "" {
			return context.Background()
		}
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	deny, ok := pb.ResultCode_PERMISSION_DENY, pb.ResultCode_SUCCESS
	for _, tc := range []struct {
		name, token, conn string
		want              pb.ResultCode
	}{
		{"no token on a", "", connA, deny},
		{"b's token on a", doorTokenB, connA, deny},
		{"a's token on b", doorTokenA, connB, deny},
		{"a's token on c", doorTokenA, connC, deny},
		{"a's token on a", doorTokenA, connA, ok},
		{"b's token on b", doorTokenB, connB, ok},
		{"no token on c", "", connC, ok},
	} {
		if resp := sendCode(t, bearer(tc.token), a, tc.conn, tc.conn); resp.Code != tc.want {
			t.Errorf("%s: %v %q; want %v", tc.name, resp.Code, resp.Message, tc.want)
		}
	}
	// Each device got its own handle once, from the call that was allowed.
	for conn, dev := range map[string]net.Conn{connA: devA, connB: devB, connC: devC} {
		readExactly(t, dev, conn)
	}
}

// TestAdapterDoorClientCertificate maps the adapter's client certificates
// to a handler with adapter_client_cn, and checks that validate and run
// agree that it needs adapter.tls with a ca_file.
func TestAdapterDoorClientCertificate(t *testing.T) {
	const certs = "internal/config/testdata/certs/"
	recA, recB := startRecorder(t), startRecorder(t)
	body := `
node: {data_dir: ` + sharedDataDir + `}
adapter:
  bind: "127.0.0.1:0"
  tls: {cert_file: ` + certs + `server.pem, key_file: ` + certs + `server.key, ca_file: ` + certs + `ca.pem, verify_client: true}
handlers:
  a: {grpc: {address: "http://` + recA.addr + `", adapter_client_cn: "protogate test client"}}
  b: {grpc: {address: "http://` + recB.addr + `"}}
listeners:
  - {name: la, type: tcp, bind: "127.0.0.1:0", handler: a}
  - {name: lb, type: tcp, bind: "127.0.0.1:0", handler: b}
`
	if code, out := validateYAML(t, body); code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("validate: exit %d\n%s", code, out)
	}
	r := startRun(t, mustParse(t, body))
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(certs + "ca.pem")
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(certs+"client.pem", certs+"client.key")
	if err != nil {
		t.Fatal(err)
	}
	a := adapterClient(t, r, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}})
	devA, connA := recA.device(t, r.listeners["la"].String())
	_, connB := recB.device(t, r.listeners["lb"].String())
	if resp := sendCode(t, context.Background(), a, connA, "hi a"); resp.Code != pb.ResultCode_SUCCESS {
		t.Fatalf("Send with a's certificate to a's connection: %v", resp)
	}
	readExactly(t, devA, "hi a")
	if resp := sendCode(t, context.Background(), a, connB, "hi b"); resp.Code != pb.ResultCode_PERMISSION_DENY {
		t.Errorf("Send with a's certificate to b's connection: %v %q", resp.Code, resp.Message)
	}

	// Without adapter.tls the CN means nothing: both refuse it.
	noTLS := strings.Replace(body, "  tls: {", "  # tls: {", 1)
	if code, out := validateYAML(t, noTLS); code != 1 || !strings.Contains(out, "handlers.a.grpc.adapter_client_cn: needs adapter.tls with a ca_file") {
		t.Errorf("validate without adapter.tls: exit %d\n%s", code, out)
	}
	cfg := mustParse(t, body)
	cfg.Adapter.TLS = nil
	runRefuses(t, cfg, "handlers a: grpc.adapter_client_cn needs adapter.tls with a ca_file")
}

// TestAgreeAdapterToken: a token that validate refuses, run refuses too;
// validate warns about an adapter open beyond loopback without tokens or
// tls, and the warning goes once a token is set.
func TestAgreeAdapterToken(t *testing.T) {
	rec := startRecorder(t)
	body := func(bind, token string) string {
		return `
node: {data_dir: ` + sharedDataDir + `}
adapter: {bind: "` + bind + `"}
handlers:
  h: {grpc: {address: "http://` + rec.addr + `", adapter_token: "` + token + `"}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: h}
`
	}
	code, out := validateYAML(t, body("127.0.0.1:0", "short"))
	if code != 1 || !strings.Contains(out, "handlers.h.grpc.adapter_token: adapter token has 5 characters; want 16 to 1024") {
		t.Errorf("validate of a short token: exit %d\n%s", code, out)
	}
	cfg := mustParse(t, body("127.0.0.1:0", doorTokenA))
	cfg.Handlers["h"].GRPC.AdapterToken = "short"
	runRefuses(t, cfg, "handlers h: remote: adapter token has 5 characters")

	code, out = validateYAML(t, body("0.0.0.0:0", ""))
	if code != 0 || !strings.Contains(out, `warning: config: `) ||
		!strings.Contains(out, `adapter.bind: address "0.0.0.0:0" is not a loopback address, and the adapter has neither tls nor any handler's adapter_token`) {
		t.Errorf("validate of an open adapter: exit %d\n%s", code, out)
	}
	code, out = validateYAML(t, body("0.0.0.0:0", doorTokenA))
	if code != 0 || !strings.Contains(out, "adapter tokens cross the network in clear text") {
		t.Errorf("validate of tokens without tls: exit %d\n%s", code, out)
	}
	if code, out := validateYAML(t, body("127.0.0.1:0", doorTokenA)); code != 0 || strings.Contains(out, "warning") {
		t.Errorf("validate on loopback with a token: exit %d\n%s", code, out)
	}
}
