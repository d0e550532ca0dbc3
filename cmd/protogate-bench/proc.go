package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

// proc is a server process of the suite (a gateway, a plain echo server, a
// handler). Its stdout and stderr go to its log file.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   io.WriteCloser
	stdin io.WriteCloser // nil unless started by startStdin
	done  chan struct{}  // closed when the process has exited
	err   error          // its exit status, once done is closed

	mu    sync.Mutex
	lines []string // stdout lines, for "listening <addr>"
	seen  chan struct{}
}

// start runs a server process. Its lifetime is bounded by stop, never by ctx:
// the suite stops it itself, gracefully, so that a shutdown problem shows up.
func (s *suite) start(name, bin string, args ...string) (*proc, error) {
	return s.startProc(name, bin, false, args...)
}

// startStdin is start with a pipe to the process's standard input.
func (s *suite) startStdin(name, bin string, args ...string) (*proc, error) {
	return s.startProc(name, bin, true, args...)
}

func (s *suite) startProc(name, bin string, stdin bool, args ...string) (*proc, error) {
	log, err := s.logFile(name)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "$ %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("protogate-bench: %s: %w", name, err)
	}
	var in io.WriteCloser
	if stdin {
		if in, err = cmd.StdinPipe(); err != nil {
			log.Close()
			return nil, fmt.Errorf("protogate-bench: %s: %w", name, err)
		}
	}
	cmd.Dir = s.tmp
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("protogate-bench: %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, stdin: in, done: make(chan struct{}), seen: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(log, line)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// listening waits for the process to print "listening <addr>" and returns
// the address.
func (p *proc) listening(timeout time.Duration) (string, error) {
	a, err := p.waitLine("listening ", timeout)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(a), nil
}

// waitLine waits for the process to print a line starting with prefix and
// returns the rest of it.
func (p *proc) waitLine(prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if a, ok := strings.CutPrefix(l, prefix); ok {
				p.mu.Unlock()
				return a, nil
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-p.done:
			return "", fmt.Errorf("protogate-bench: %s exited before printing %q: %v", p.name, prefix, p.err)
		case <-t.C:
			return "", fmt.Errorf("protogate-bench: %s did not print %q within %v", p.name, prefix, timeout)
		}
	}
}

// lastLine is the last line the process printed on stdout.
func (p *proc) lastLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) == 0 {
		return ""
	}
	return p.lines[len(p.lines)-1]
}

// stop ends the process with SIGTERM, waits for it to exit gracefully and
// kills it after timeout.
func (p *proc) stop(timeout time.Duration) error {
	defer p.log.Close()
	if p.stdin != nil {
		p.stdin.Close()
	}
	select {
	case <-p.done:
		return fmt.Errorf("protogate-bench: %s had exited: %v", p.name, p.err)
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("protogate-bench: %s: %w", p.name, p.err)
		}
		return nil
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("protogate-bench: %s did not stop within %v of SIGTERM", p.name, timeout)
	}
}

// alive reports an error if the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("protogate-bench: %s exited: %v", p.name, p.err)
	default:
		return nil
	}
}

// rssKiB reads the resident set size of the process from /proc.
func (p *proc) rssKiB() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("protogate-bench: %s: %w", p.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("protogate-bench: %s: no VmRSS in /proc status", p.name)
}

// sampler records a process's RSS every interval until stopped.
type sampler struct {
	stopc chan struct{}
	done  chan struct{}
	t0    time.Time
	// samples are (seconds since start, KiB) pairs; read after stop.
	samples [][2]float64
}

func (p *proc) sample(every time.Duration) *sampler {
	sm := &sampler{stopc: make(chan struct{}), done: make(chan struct{}), t0: time.Now()}
	go func() {
		defer close(sm.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			if kib, err := p.rssKiB(); err == nil {
				sm.samples = append(sm.samples, [2]float64{time.Since(sm.t0).Seconds(), float64(kib)})
			}
			select {
			case <-tk.C:
			case <-sm.stopc:
				return
			}
		}
	}()
	return sm
}

func (sm *sampler) stop() [][2]float64 {
	close(sm.stopc)
	<-sm.done
	return sm.samples
}

// maxKiB is the largest sample taken at or after second from.
func maxKiB(samples [][2]float64, from float64) float64 {
	m := 0.0
	for _, s := range samples {
		if s[0] >= from {
			m = max(m, s[1])
		}
	}
	return m
}

// atKiB is the first sample taken at or after second at.
func atKiB(samples [][2]float64, at float64) float64 {
	for _, s := range samples {
		if s[0] >= at {
			return s[1]
		}
	}
	if len(samples) > 0 {
		return samples[len(samples)-1][1]
	}
	return 0
}

// load runs protogate-load with args and returns its JSON result. Its
// stderr (the human summary and progress) goes to the terminal and to a log.
func (s *suite) load(ctx context.Context, name string, args ...string) (*loadstat.Result, error) {
	return s.loadBin(ctx, name, s.binPath("protogate-load"), args...)
}

// loadBin is load with another load tool: one that prints its result as
// the last line of its stdout, as protogate-load does.
func (s *suite) loadBin(ctx context.Context, name, bin string, args ...string) (*loadstat.Result, error) {
	rs, err := s.loadResults(ctx, name, bin, 1, args...)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// loadResults runs a load tool that prints n results, the last n lines of
// its stdout, and returns them in order.
func (s *suite) loadResults(ctx context.Context, name, bin string, n int, args ...string) ([]*loadstat.Result, error) {
	log, err := s.logFile(name)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	tool := filepath.Base(bin)
	fmt.Fprintf(log, "$ %s %s\n", bin, strings.Join(args, " "))
	fmt.Fprintf(os.Stderr, "  %s: %s %s\n", name, tool, strings.Join(args, " "))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = io.MultiWriter(&out, log)
	cmd.Stderr = io.MultiWriter(os.Stderr, log)
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("protogate-bench: %s: %s %s: %w", name, tool, args[0], err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < n {
		return nil, fmt.Errorf("protogate-bench: %s: %s printed %d lines, not %d results", name, tool, len(lines), n)
	}
	rs := make([]*loadstat.Result, n)
	for i, l := range lines[len(lines)-n:] {
		rs[i] = new(loadstat.Result)
		if err := json.Unmarshal([]byte(l), rs[i]); err != nil {
			return nil, fmt.Errorf("protogate-bench: %s: reading the result of %s: %w", name, tool, err)
		}
	}
	return rs, nil
}

// waitTCP waits until addr accepts TCP connections.
func waitTCP(addr string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if perr := p.alive(); perr != nil {
			return perr
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("protogate-bench: %s: %s not accepting after %v: %w", p.name, addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePorts returns n distinct TCP ports that were free a moment ago, and,
// when udp is set, free for UDP as well. A child process binds them later,
// so they are picked below the kernel's ephemeral range: there, no
// outgoing connection and no listener on port 0 (which other tests open
// by the thousand) can take one in between.
func freePorts(n int, udp bool) ([]int, error) {
	lo, hi := 10000, ephemeralLow()
	var ports []int
	var hold []io.Closer
	defer func() {
		for _, c := range hold {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		addr := "127.0.0.1:0"
		if hi > lo && tries < 1000 {
			addr = fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if addr == "127.0.0.1:0" {
				return nil, fmt.Errorf("protogate-bench: %w", err)
			}
			continue // taken: try another
		}
		hold = append(hold, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if udp {
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				continue
			}
			hold = append(hold, pc)
		}
		ports = append(ports, port)
	}
	return ports, nil
}

// ephemeralLow returns the first port of Linux's ephemeral range, or 0
// where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
