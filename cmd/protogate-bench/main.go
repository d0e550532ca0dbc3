// Command protogate-bench runs protogate's benchmark suite: it starts the
// gateway, the plain servers every ratio is measured against and the load
// tool as separate processes on this machine, one case after the other, and
// prints a table of results with the ratio of each case to its baseline and
// the target it must meet. `make bench` builds everything and runs it.
//
// Usage:
//
//	protogate-bench [-bin .bin] [-out bench/results] [-quick] [-only CASES] [-keep-going]
//
// -bin is the directory holding the protogate, protogate-load and
// exproto-echo-handler binaries, and (for the langs group) guests/ with the
// C, Rust and AssemblyScript echo guests that make sdk-guests builds. The suite writes, under -out, results.md
// (the table), results.jsonl (every load run's JSON line, with the gateway's
// memory samples) and one log file per process. -quick runs every case
// briefly, to check the suite itself; its numbers mean nothing. -only runs
// the named groups (comma separated: echo, scale, langs, remote, udp, hold,
// handlers, startup, tls, fanout, cluster, coap, long; tls is described in
// tls.go). The scale group also writes scale.svg, a plot of msgs/s against
// connections.
//
// The exit status is 1 when any row with a target missed it (met: NO) or a
// group failed, after the whole table is printed and written; -keep-going
// makes it 0 then, for exploratory runs. A broken setup (missing binaries,
// an unwritable -out) is always an error.
// The coap group's plain server and load run as hidden subcommands of this
// binary (coap-serve, coap-load, coap-observe; see coaptool.go).
//
// Every process of a case shares the machine's cores with the load tool, as
// they would in the targets' definition; cases run one at a time, and a
// ratio compares two runs made minutes apart at most, in the same run of the
// suite.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && hiddenCommands[os.Args[1]] != nil {
		os.Exit(runHidden(os.Args[1], os.Args[2:]))
	}
	var o options
	flag.StringVar(&o.bin, "bin", ".bin", "directory with the protogate, protogate-load and exproto-echo-handler binaries")
	flag.StringVar(&o.out, "out", "bench/results", "directory for results.md, results.jsonl and the process logs")
	flag.BoolVar(&o.quick, "quick", false, "run every case briefly (checks the suite; the numbers mean nothing)")
	flag.BoolVar(&o.keepGoing, "keep-going", false, "exit 0 even when targets are missed (exploratory runs); the table still says NO")
	only := flag.String("only", "", "comma-separated groups to run: "+strings.Join(groups, ", ")+" (default all)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: protogate-bench [flags]\n\nRuns protogate's benchmark suite and prints the table of results.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *only != "" {
		o.only = make(map[string]bool)
		for _, g := range strings.Split(*only, ",") {
			if !knownGroup(g) {
				fmt.Fprintf(os.Stderr, "protogate-bench: -only: unknown group %q\n", g)
				os.Exit(2)
			}
			o.only[g] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	bin, out  string
	quick     bool
	keepGoing bool            // a missed target does not make the exit status non-zero
	only      map[string]bool // nil: every group
}

func run(ctx context.Context, o options) error {
	for _, b := range []string{"protogate", "protogate-load", "exproto-echo-handler"} {
		if _, err := os.Stat(filepath.Join(o.bin, b)); err != nil {
			return fmt.Errorf("protogate-bench: %w (run make build first)", err)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	tmp, err := os.MkdirTemp("", "protogate-bench-")
	if err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	jl, err := os.Create(filepath.Join(o.out, "results.jsonl"))
	if err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	defer jl.Close()

	s := &suite{opts: o, tmp: tmp, jsonl: jl, started: time.Now()}
	s.machine = describeMachine()
	fmt.Fprintf(os.Stderr, "protogate-bench: %s\n", s.machine)
	runErr := s.runAll(ctx)

	table := s.table()
	fmt.Print(table)
	md := filepath.Join(o.out, "results.md")
	if err := os.WriteFile(md, []byte(table), 0o644); err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	fmt.Fprintf(os.Stderr, "protogate-bench: results in %s and %s (%s)\n", md, jl.Name(), time.Since(s.started).Round(time.Second))
	if runErr != nil {
		return runErr
	}
	if s.failed() {
		if o.keepGoing {
			fmt.Fprintln(os.Stderr, "protogate-bench: some targets were not met (-keep-going: exit status 0)")
			return nil
		}
		return errors.New("protogate-bench: some targets were not met")
	}
	return nil
}

// describeMachine names the cores, memory and Go version the numbers are
// from.
func describeMachine() string {
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = " (" + strings.TrimSpace(v) + ")"
				break
			}
		}
	}
	return fmt.Sprintf("%d cores%s, %s memory, %s %s/%s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// logFile opens the log of one process under the output directory.
func (s *suite) logFile(name string) (io.WriteCloser, error) {
	f, err := os.Create(filepath.Join(s.opts.out, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("protogate-bench: %w", err)
	}
	return f, nil
}
