package wasmhost_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/wasmhost"
)

// idleServerEnv makes the test binary a server for BenchmarkIdleConns
// (see TestIdleServerHelper): "gateway" or "plain".
const idleServerEnv = "PROTOGATE_IDLE_SERVER"

// idleStats is what the server process reports of itself.
type idleStats struct {
	RSS        uint64 // VmRSS, bytes
	HeapInuse  uint64
	StackInuse uint64
	Sys        uint64 // everything the Go runtime got from the OS
	Goroutines int
	Conns      int
}

// BenchmarkIdleConns measures what the gateway spends per idle TCP
// connection with a Wasm handler (builtin:echo). The server runs in a child
// process (this test binary, see TestIdleServerHelper), so the client's
// sockets do not count. Every connection echoes 64 bytes once (the guest
// knows it, buffers and stacks have been used), then all are held idle,
// the server collects garbage and reports its memory. Metrics, per
// connection: RSS (VmRSS), heap in use, goroutine stacks in use, Go runtime
// memory (Sys) and goroutines. The native sub-benchmark serves the same
// echo with a Go handler; plain is a plain Go echo server (a goroutine and
// a 4 KiB buffer per connection), the floor.
//
// PROTOGATE_IDLE_CONNS sets the number of connections (default 15000; the
// process limit here is 20,000 open files, and each side holds one per
// connection).
func BenchmarkIdleConns(b *testing.B) {
	n := 15000
	if s := os.Getenv("PROTOGATE_IDLE_CONNS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	for _, mode := range []string{"gateway", "native", "plain"} {
		b.Run(mode, func(b *testing.B) {
			// One measurement whatever b.N: it takes seconds, and a
			// -benchtime of many iterations would take hours.
			measureIdle(b, mode, n)
		})
	}
}

func measureIdle(b *testing.B, mode string, n int) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleServerHelper$", "-test.v=false")
	cmd.Env = append(os.Environ(), idleServerEnv+"="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	out := bufio.NewReader(stdout)
	addr, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("server: %v", err)
	}
	addr = strings.TrimSpace(addr)
	stats := func() idleStats {
		b.Helper()
		if _, err := io.WriteString(stdin, "stats\n"); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("server: %v", err)
		}
		var s idleStats
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			b.Fatalf("server: %q: %v", line, err)
		}
		return s
	}

	// A few connections first, so that the baseline has the handler's
	// instances and the runtime warmed up.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	msg := make([]byte, 64)
	echo := func(c net.Conn) {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
	}
	dial := func() {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			b.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
		echo(c)
	}
	for range 10 {
		dial()
	}
	before := stats()
	b.ResetTimer()
	for range n {
		dial()
	}
	b.StopTimer()
	after := stats()
	if after.Conns < n {
		b.Fatalf("server holds %d connections, want %d", after.Conns, n+10)
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	b.ReportMetric(per(after.RSS, before.RSS), "rss-B/conn")
	b.ReportMetric(per(after.HeapInuse, before.HeapInuse), "heap-B/conn")
	b.ReportMetric(per(after.StackInuse, before.StackInuse), "stack-B/conn")
	b.ReportMetric(per(after.Sys, before.Sys), "sys-B/conn")
	b.ReportMetric(float64(after.Goroutines-before.Goroutines)/float64(n), "goroutines/conn")
	b.ReportMetric(0, "ns/op")
}

// TestIdleServerHelper is the server process of BenchmarkIdleConns; it
// does nothing in a normal test run. It prints its address, then answers
// every "stats" line on stdin with an idleStats JSON line, and exits when
// stdin closes.
func TestIdleServerHelper(t *testing.T) {
	mode := os.Getenv(idleServerEnv)
	if mode == "" {
		t.Skip("the server process of BenchmarkIdleConns")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var count func() int
	switch mode {
	case "native":
		srv := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
		go srv.Serve(ln, &gateway.Listener{Name: "idle", Type: gateway.TCP, Handler: nativeEcho{}})
		count = srv.NumConns
	case "gateway":
		h, err := wasmhost.New(wasmhost.Config{Name: "echo", Wasm: mustBuiltin(t, "echo"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := gateway.New(gateway.Options{Logger: slog.New(slog.DiscardHandler)})
		go srv.Serve(ln, &gateway.Listener{Name: "idle", Type: gateway.TCP, Handler: h})
		count = srv.NumConns
	case "plain":
		var held []net.Conn
		accepted := make(chan net.Conn)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
				go func() {
					buf := make([]byte, 4096)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						c.Write(buf[:n])
					}
				}()
			}
		}()
		nconns := make(chan int)
		go func() {
			for {
				select {
				case c := <-accepted:
					held = append(held, c)
				case nconns <- len(held):
				}
			}
		}()
		count = func() int { return <-nconns }
	default:
		t.Fatalf("%s=%q", idleServerEnv, mode)
	}
	fmt.Println(ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := idleStats{RSS: vmRSS(), HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys,
			Goroutines: runtime.NumGoroutine(), Conns: count()}
		line, _ := json.Marshal(s)
		fmt.Println(string(line))
	}
}

// vmRSS returns the process's resident set size from /proc, or 0.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
