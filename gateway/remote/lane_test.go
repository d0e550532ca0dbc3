package remote_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/conformance"
	"github.com/protogate/protogate/gateway/remote"
)

// nativeGuests builds guests (directories under guests/) as native
// programs, once per test binary, and returns the directory holding them.
// Their main is sdk/go/serve.Main: the same handler source the gateway
// embeds as a Wasm guest, served on the fast lane.
var nativeGuests = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "protogate-lane-")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"../../guests/echo", "../../guests/exproto-json", "../../guests/linepubsub")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{err: err, out: string(out)}
	}
	return dir, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

// nativeHandler is a native guest process serving the fast lane.
type nativeHandler struct {
	cmd  *exec.Cmd
	addr string // http://127.0.0.1:port
	done chan struct{}
	mu   sync.Mutex
	out  strings.Builder // stdout and stderr after the address line
}

// startNative starts the native build of guest on 127.0.0.1 (port 0 picks
// one; a given port lets a restarted handler come back at the same
// address) and waits until it serves. It is killed when the test ends.
func startNative(t testing.TB, guest, listen string) *nativeHandler {
	t.Helper()
	dir, err := nativeGuests()
	if err != nil {
		t.Fatal(err)
	}
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	cmd := exec.Command(filepath.Join(dir, guest), "-listen", listen)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &nativeHandler{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "serving protogate.v1.StreamHandler on "); ok {
				addr <- a
				continue
			}
			h.mu.Lock()
			h.out.WriteString(line + "\n")
			h.mu.Unlock()
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		h.kill()
		if t.Failed() {
			t.Logf("%s handler output:\n%s", guest, h.output())
		}
	})
	select {
	case a := <-addr:
		h.addr = "http://" + a
	case <-h.done:
		t.Fatalf("%s exited before serving:\n%s", guest, h.output())
	case <-time.After(conformance.Timeout):
		t.Fatalf("%s did not serve within %v", guest, conformance.Timeout)
	}
	return h
}

func (h *nativeHandler) output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

// kill ends the process at once and waits for it.
func (h *nativeHandler) kill() {
	h.cmd.Process.Kill()
	<-h.done
}

// laneHandler returns a remote.Handler on the fast lane to addr, closed when
// the test ends.
func laneHandler(t testing.TB, addr string, timeout time.Duration) *remote.Handler {
	t.Helper()
	h, err := remote.New(remote.Config{Address: addr, ServiceName: remote.ServiceLane, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestLaneConformance runs the behaviour suite against the fast lane, with
// the handler of guests/exproto-json built natively: the very source that
// the Wasm back end's conformance run (package wasmhost) loads as
// builtin:exproto-json. One handler, in-process or remote, unchanged.
func TestLaneConformance(t *testing.T) {
	native := startNative(t, "exproto-json", "")
	conformance.Run(t, conformance.Backend{
		Name: remote.ServiceLane,
		Handler: func(t testing.TB, env *conformance.Env) gateway.Handler {
			return laneHandler(t, native.addr, 10*time.Second)
		},
	})
}
