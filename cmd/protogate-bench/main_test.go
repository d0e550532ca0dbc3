package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickSuite builds the three binaries and runs the suite's echo, scale
// (1 and 100 conns), remote, udp, tls, cluster and coap groups briefly, as `make bench BENCH_FLAGS=-quick` would: every
// case must complete with clean results. The numbers are not checked; they
// mean nothing in a quick run on a loaded machine. The langs group is left
// out: its quick run takes about 18 s (12 gateway starts) and needs make
// sdk-guests; langs_test.go checks what it can without them.
func TestQuickSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs servers")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../protogate", "../protogate-load", "../exproto-echo-handler")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := t.TempDir()
	cmd := exec.Command("go", "run", ".", "-bin", bin, "-out", out, "-quick", "-only", "echo,scale,remote,udp,tls,cluster,coap")
	b, err := cmd.CombinedOutput()
	// Targets may be missed in a quick run (exit status 1), but the suite
	// itself must work.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("protogate-bench: %v\n%s", err, b)
	}
	if strings.Contains(string(b), "failed:") {
		t.Fatalf("a case failed:\n%s", b)
	}
	f, err := os.Open(filepath.Join(out, "results.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct {
			Case     string `json:"case"`
			Msgs     uint64 `json:"msgs"`
			Errors   uint64 `json:"errors"`
			Mismatch uint64 `json:"mismatches"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", sc.Bytes(), err)
		}
		if r.Msgs == 0 || r.Errors != 0 || r.Mismatch != 0 {
			t.Errorf("case %s: %s", r.Case, sc.Bytes())
		}
		seen[r.Case] = true
	}
	for _, c := range []string{"floor", "wasm-echo", "echo-alt-floor-1", "echo-alt-wasm-2",
		"scale-floor-1", "scale-wasm-1", "scale-floor-100", "scale-wasm-100", "grpcfloor", "remote-unary", "remote-streaming", "floor-lane", "remote-lane", "floor-udp", "wasm-udp", "cluster-single", "cluster-cross",
		"floor-coap-raw", "floor-coap", "wasm-coap", "coap-observe", "coap-observe-1152",
		"floor-tls", "wasm-tls", "floor-dtls", "wasm-dtls", "floor-dtls-hs", "wasm-dtls-hs", "floor-tls-hold", "wasm-tls-hold"} {
		if !seen[c] {
			t.Errorf("no result for case %s\n%s", c, b)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil || !strings.Contains(string(md), "| echo via Wasm Go guest (builtin:echo) |") ||
		!strings.Contains(string(md), "| echo via Wasm Go guest, 2 alternating ") ||
		!strings.Contains(string(md), "| scale: builtin:echo, 100 conns x 64 B ping-pong |") ||
		!strings.Contains(string(md), "| cross-node fan-out: device on node A of 3 to 50 devices on nodes B and C |") ||
		!strings.Contains(string(md), "| 200 CoAP observers (GET /ps/{topic} Observe:0) held by builtin:coap |") ||
		!strings.Contains(string(md), "| DTLS handshakes per second, 200 concurrent clients (dtls listener, builtin:echo) |") ||
		!strings.Contains(string(md), "idle TLS conns, RSS per conn (builtin:echo on an ssl listener) |") {
		t.Errorf("results.md: %v\n%s", err, md)
	}
	if svg, err := os.ReadFile(filepath.Join(out, "scale.svg")); err != nil || !strings.Contains(string(svg), "<polyline") {
		t.Errorf("scale.svg: %v\n%s", err, svg)
	}
}
