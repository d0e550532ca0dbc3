package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/protogate/protogate/internal/loadstat"
)

// runCLI runs the tool with args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	code, _, stderr := runCLI(t, "-h")
	if code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, c := range commands {
		if !strings.Contains(stderr, "  "+c.name+" ") {
			t.Errorf("usage lacks %s:\n%s", c.name, stderr)
		}
	}
	for _, args := range [][]string{{}, {"nope"}, {"echo"}, {"echo", "-bogus"}, {"echo", "-addr", "x:1", "extra"},
		{"echo", "-addr", "x:1", "-conns", "0"}, {"fanout", "-size", "8"}, {"fanout", "-topic", "a/+"}, {"udp", "-addr", "x:1", "-size", "70000"}} {
		if code, _, stderr := runCLI(t, args...); code != 2 || stderr == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// The flags other tools rely on exist, with these names.
func TestFlags(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"serve-echo": {"listen", "udp"},
		"echo":       {"addr", "conns", "size", "depth", "duration", "warmup", "messages", "tls", "insecure", "label", "progress", "timeout"},
		"hold":       {"addr", "conns", "rate", "hold", "sample", "size", "label", "progress", "timeout", "tls", "insecure"},
		"fanout":     {"nats", "subs", "duration", "warmup", "rate", "window", "size", "topic", "gateway", "label", "progress", "timeout", "messages"},
		"udp":        {"addr", "conns", "size", "duration", "warmup", "timeout", "label", "progress", "messages"},
	} {
		code, _, stderr := runCLI(t, cmd, "-h")
		if code != 0 || !strings.HasPrefix(stderr, "usage: protogate-load "+cmd) {
			t.Fatalf("%s -h: exit %d\n%s", cmd, code, stderr)
		}
		for _, f := range flags {
			if !strings.Contains(stderr, "\n  -"+f+" ") && !strings.Contains(stderr, "\n  -"+f+"\n") {
				t.Errorf("%s has no -%s:\n%s", cmd, f, stderr)
			}
		}
	}
}

// serve-echo and echo as processes would run them: the first line of
// serve-echo gives the address; echo prints one JSON line and a summary.
func TestServeEchoAndEchoCLI(t *testing.T) {
	for _, udp := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		args := []string{"serve-echo", "-listen", "127.0.0.1:0"}
		if udp {
			args = append(args, "-udp")
		}
		go func() {
			done <- run(ctx, args, pw, io.Discard)
			pw.Close()
		}()
		line, err := bufio.NewReader(pr).ReadString('\n')
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
		if err != nil || !ok {
			t.Fatalf("first line %q: %v", line, err)
		}
		go io.Copy(io.Discard, pr)

		scenario := "echo"
		if udp {
			scenario = "udp"
		}
		code, stdout, stderr := runCLI(t, scenario, "-addr", addr, "-conns", "2", "-messages", "300", "-warmup", "0s", "-label", "floor")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", scenario, code, stderr)
		}
		var r loadstat.Result
		if strings.Count(stdout, "\n") != 1 || json.Unmarshal([]byte(stdout), &r) != nil {
			t.Fatalf("stdout is not one JSON line: %q", stdout)
		}
		if r.Scenario != scenario || r.Target != "floor" || r.Msgs != 300 || r.Errors != 0 {
			t.Fatalf("%+v", r)
		}
		if !strings.HasPrefix(stderr, scenario+" floor: 300 msgs") {
			t.Fatalf("summary %q", stderr)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("serve-echo: exit %d", code)
		}
	}
}

// A setup that fails altogether exits 1 with a message and no JSON.
func TestSetupFailureCLI(t *testing.T) {
	code, stdout, stderr := runCLI(t, "echo", "-addr", closedPort(t), "-conns", "2")
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "protogate-load: echo: no connection") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
