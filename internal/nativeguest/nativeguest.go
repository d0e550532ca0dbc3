// Package nativeguest builds the handlers under guests/ as native programs
// and runs them for tests: the same source the gateway loads as a Wasm
// guest, served on protogate's fast lane by sdk/go/serve (each guest's
// native main is serve.Main).
package nativeguest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Guests are the guests/ packages with a native main.
var Guests = []string{"echo", "exproto-json", "linepubsub"}

// build builds Guests once per process into a directory it returns.
var build = sync.OnceValues(func() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "protogate-native-")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, g := range Guests {
		args = append(args, "./guests/"+g)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("nativeguest: go build: %w\n%s", err, out)
	}
	return dir, nil
})

// moduleRoot is the directory of go.mod, above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("nativeguest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Handler is a running native guest. Its methods are safe for concurrent
// use.
type Handler struct {
	// Addr is the handler address for a gateway config: http://host:port.
	Addr string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  strings.Builder
}

// Start runs the native build of guest, listening on listen (""
// picks a free port on 127.0.0.1; a fixed one lets a restarted handler
// come back at the same address), waits until it serves, and kills it when
// the test ends, logging its output if the test failed.
func Start(t testing.TB, guest, listen string, timeout time.Duration) *Handler {
	t.Helper()
	dir, err := build()
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
	h := &Handler{cmd: cmd, done: make(chan struct{})}
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
		h.Kill()
		if t.Failed() {
			t.Logf("native %s output:\n%s", guest, h.Output())
		}
	})
	select {
	case a := <-addr:
		h.Addr = "http://" + a
	case <-h.done:
		t.Fatalf("native %s exited before serving:\n%s", guest, h.Output())
	case <-time.After(timeout):
		t.Fatalf("native %s did not serve within %v", guest, timeout)
	}
	return h
}

// Output returns what the handler printed, but for its address line.
func (h *Handler) Output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

// Kill ends the process at once and waits for it.
func (h *Handler) Kill() {
	h.cmd.Process.Kill()
	<-h.done
}
