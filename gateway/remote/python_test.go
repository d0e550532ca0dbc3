package remote_test

// These tests run testdata/echo_handler.py, an ExProto handler written in
// Python with grpcio (a gRPC stack other than grpc-go, as EMQX's
// exproto-svr-python example is), against a real in-process gateway, to show
// that such handlers work against protogate unchanged.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/remote"
)

const (
	// pyPython is the Debian interpreter, which is where apt installs
	// python3-grpcio; a python3 earlier in PATH (pyenv, venv) may lack it.
	pyPython = "/usr/bin/python3"
	// pyInstall installs every peer these tests need (scripts/deps.sh runs
	// the same in CI).
	pyInstall = "apt-get install -y protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf"
	// pyWait bounds every wait in these tests: generous, so that a loaded
	// 2-core machine does not make them flaky.
	pyWait = 30 * time.Second
	// pyExitNoBind is echo_handler.py's exit status when it cannot listen.
	pyExitNoBind = 3
)

// pyPeers returns the paths of protoc and grpc_python_plugin after checking
// that every peer is installed. A missing peer fails the test unless
// PROTOGATE_SKIP_PEERS=1.
func pyPeers(t *testing.T) (protoc, plugin string) {
	t.Helper()
	var missing []string
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		missing = append(missing, "protoc (protobuf-compiler)")
	}
	plugin, err = exec.LookPath("grpc_python_plugin")
	if err != nil {
		missing = append(missing, "grpc_python_plugin (protobuf-compiler-grpc)")
	}
	if _, err := os.Stat(pyPython); err != nil {
		missing = append(missing, pyPython+" (python3)")
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), pyWait)
		defer cancel()
		out, err := exec.CommandContext(ctx, pyPython, "-c", "import grpc, google.protobuf").CombinedOutput()
		if err != nil {
			missing = append(missing, fmt.Sprintf("python modules grpc and google.protobuf for %s (python3-grpcio, python3-protobuf): %v: %s",
				pyPython, err, bytes.TrimSpace(out)))
		}
	}
	if len(missing) == 0 {
		return protoc, plugin
	}
	msg := fmt.Sprintf("missing peers: %s; install them with: %s (CI does this through scripts/deps.sh)",
		strings.Join(missing, "; "), pyInstall)
	if os.Getenv("PROTOGATE_SKIP_PEERS") == "1" {
		t.Skip("PROTOGATE_SKIP_PEERS=1: " + msg)
	}
	t.Fatal(msg)
	return "", ""
}

// pyStubs generates exproto_pb2.py and exproto_pb2_grpc.py into a temporary
// directory and returns it.
func pyStubs(t *testing.T, protoc, plugin string) string {
	t.Helper()
	protoDir, err := filepath.Abs(filepath.Join("..", "..", "proto"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), pyWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, protoc, "-I", protoDir,
		"--python_out="+dir, "--grpc_out="+dir,
		"--plugin=protoc-gen-grpc="+plugin, "exproto.proto")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	for _, f := range []string{"exproto_pb2.py", "exproto_pb2_grpc.py"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("protoc did not generate %s: %v", f, err)
		}
	}
	return dir
}

// pyLines is an io.Writer that splits a subprocess's output into lines and
// passes each to fn. exec.Cmd.Wait waits for its writes to end.
type pyLines struct {
	mu  sync.Mutex
	buf []byte
	fn  func(line string)
}

func (w *pyLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(bytes.TrimRight(w.buf[:i], "\r"))
		w.buf = w.buf[i+1:]
		w.fn(line)
	}
}

// pyProc is a running echo_handler.py.
type pyProc struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	ready  chan struct{} // closed on the "ready" line
	done   chan struct{} // closed once Wait returned
}

// startPyHandler runs echo_handler.py on a free loopback port, calling the
// adapter at adapterAddr, and returns the address it serves on once it says
// "ready". Cleanup stops it with SIGTERM and fails the test if it does not
// exit cleanly.
func startPyHandler(t *testing.T, stubs, adapterAddr string, extra ...string) string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "echo_handler.py"))
	if err != nil {
		t.Fatal(err)
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		// The port is free when we close it; another process may take it
		// before Python binds, in which case the handler exits with
		// pyExitNoBind and we try another.
		ln := listen(t)
		addr := ln.Addr().String()
		ln.Close()
		p := launchPyHandler(t, script, stubs, addr, adapterAddr, extra...)
		timer := time.NewTimer(pyWait)
		select {
		case <-p.ready:
			timer.Stop()
			return addr
		case <-p.done:
			timer.Stop()
			code := p.cmd.ProcessState.ExitCode()
			if code == pyExitNoBind && attempt < attempts {
				t.Logf("echo_handler.py could not listen on %s; trying another port", addr)
				continue
			}
			t.Fatalf("echo_handler.py exited before it was ready: %v", p.cmd.ProcessState)
		case <-timer.C:
			t.Fatalf("echo_handler.py not ready after %v", pyWait)
		}
	}
}

func launchPyHandler(t *testing.T, script, stubs, listenAddr, adapterAddr string, extra ...string) *pyProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &pyProc{cancel: cancel, ready: make(chan struct{}), done: make(chan struct{})}
	args := append([]string{"-u", script,
		"--listen", listenAddr,
		"--adapter", adapterAddr,
		"--stubs", stubs,
		"--keepalive", "60"}, extra...)
	cmd := exec.CommandContext(ctx, pyPython, args...)
	// Canceling the context asks the handler to stop; WaitDelay kills it
	// if it does not.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = pyWait
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	var readyOnce sync.Once
	cmd.Stdout = &pyLines{fn: func(line string) {
		if line == "ready" {
			readyOnce.Do(func() { close(p.ready) })
			return
		}
		t.Logf("echo_handler.py stdout: %s", line)
	}}
	cmd.Stderr = &pyLines{fn: func(line string) { t.Logf("echo_handler.py: %s", line) }}
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", pyPython, err)
	}
	go func() {
		defer close(p.done)
		cmd.Wait() // the outcome is read from cmd.ProcessState
	}()
	t.Cleanup(func() {
		select {
		case <-p.done: // already gone; startPyHandler reported it
			return
		default:
		}
		p.cancel()
		<-p.done // bounded by WaitDelay
		if st := cmd.ProcessState; st == nil || !st.Success() {
			t.Errorf("echo_handler.py did not exit cleanly on SIGTERM: %v", st)
		}
	})
	return p
}

// newPyGateway runs a gateway whose handler is echo_handler.py and returns
// the address devices connect to.
func newPyGateway(t *testing.T) string {
	t.Helper()
	addr, _ := newPyGatewayToken(t, "", "")
	return addr
}

// newPyGatewayToken is newPyGateway with the handler's adapter token set
// to want, and echo_handler.py sending send (none if ""). It returns the
// adapter too.
func newPyGatewayToken(t *testing.T, want, send string) (string, *remote.Adapter) {
	t.Helper()
	protoc, plugin := pyPeers(t)
	stubs := pyStubs(t, protoc, plugin)

	log := slog.New(slog.DiscardHandler)
	br, err := broker.Start(broker.Config{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pyWait)
		defer cancel()
		br.Shutdown(ctx)
	})
	srv := gateway.New(gateway.Options{PubSub: br, Logger: log})

	// Adapter, plaintext, for the Python handler to call. The Handler's
	// own token guards its connections; it need not be listed.
	gs := grpc.NewServer()
	adapter := remote.NewAdapter(srv, log)
	adapter.Register(gs)
	aln := listen(t)
	served := make(chan struct{})
	go func() {
		defer close(served)
		gs.Serve(aln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
	})

	// The Python handler; stopped before the adapter (cleanups run last
	// first) and after the gateway, so that it sees OnSocketClosed.
	var extra []string
	if send != "" {
		extra = []string{"--token", send}
	}
	pyAddr := startPyHandler(t, stubs, aln.Addr().String(), extra...)
	h, err := remote.New(remote.Config{Address: "http://" + pyAddr, Timeout: pyWait, Logger: log, AdapterToken: want})
	if err != nil {
		t.Fatal(err)
	}

	ln := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln, &gateway.Listener{Name: "python", Type: gateway.TCP, Handler: h})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pyWait)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		h.Close()
	})
	return ln.Addr().String(), adapter
}

func pyDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, pyWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// pyEcho sends msg and expects exactly msg back.
func pyEcho(t *testing.T, nc net.Conn, msg string) {
	t.Helper()
	nc.SetDeadline(time.Now().Add(pyWait))
	defer nc.SetDeadline(time.Time{})
	if _, err := io.WriteString(nc, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if n, err := io.ReadFull(nc, got); err != nil {
		t.Fatalf("echo of %q: read %q, %v", msg, got[:n], err)
	}
	if string(got) != msg {
		t.Fatalf("echo of %q: got %q", msg, got)
	}
}

func TestPythonEchoHandler(t *testing.T) {
	addr := newPyGateway(t)
	nc := pyDial(t, addr)
	// Each echo goes OnReceivedBytes -> Publish -> self-delivery through
	// NATS -> OnReceivedMessages -> Send. Waiting for each before sending
	// the next keeps TCP from merging them, since ExProto has no framing.
	pyEcho(t, nc, "hello protogate")
	for i := range 5 {
		pyEcho(t, nc, "message "+strconv.Itoa(i))
	}
	pyEcho(t, nc, string([]byte{0, 1, 2, 0xff, 0xfe, '\n', 0}))
	pyEcho(t, nc, "bye")
}

func TestPythonEchoHandlerKick(t *testing.T) {
	addr := newPyGateway(t)
	first := pyDial(t, addr)
	// The first device is authenticated and subscribed once it echoes.
	pyEcho(t, first, "first")

	// The handler authenticates every connection as clientid "test", so
	// the second takes the client id over and the first is closed.
	second := pyDial(t, addr)
	first.SetReadDeadline(time.Now().Add(pyWait))
	buf := make([]byte, 64)
	n, err := first.Read(buf)
	switch {
	case n > 0:
		t.Fatalf("first device read %q after the second connected; want EOF", buf[:n])
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("first device not closed within %v after the second took clientid \"test\"", pyWait)
	case !errors.Is(err, io.EOF):
		t.Fatalf("first device: read error %v, want EOF", err)
	}

	pyEcho(t, second, "second")
	pyEcho(t, second, "hello protogate")
}

// TestPythonEchoHandlerToken runs echo_handler.py, a handler written with
// grpcio as EMQX's examples are, sending the adapter token the gateway
// expects as "authorization: Bearer <token>" metadata: every call it makes
// (Authenticate, Subscribe, StartTimer, Publish, Send) is accepted.
func TestPythonEchoHandlerToken(t *testing.T) {
	const token = "python-handler-token-0123456789"
	addr, _ := newPyGatewayToken(t, token, token)
	pyEcho(t, pyDial(t, addr), "with a token")
}

// TestPythonEchoHandlerWrongToken: with another token, the gateway
// refuses every call the handler makes on its connection (Authenticate,
// Subscribe, StartTimer in OnSocketCreated, Publish for the bytes), so
// nothing can come back to the device.
func TestPythonEchoHandlerWrongToken(t *testing.T) {
	addr, adapter := newPyGatewayToken(t, "the-token-the-gateway-expects", "a-token-it-does-not-expect")
	nc := pyDial(t, addr)
	nc.SetDeadline(time.Now().Add(pyWait))
	if _, err := io.WriteString(nc, "refused"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(pyWait)
	for adapter.Denied() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls refused; want Authenticate, Subscribe, StartTimer and Publish", adapter.Denied())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	// Subscribe was refused: no delivery can reach the connection. The
	// device is still connected, and reads nothing.
	nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := nc.Read(make([]byte, 16)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("device read %d bytes, %v; want nothing", n, err)
	}
}
