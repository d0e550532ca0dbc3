// Command protogate-load puts load on a protogate gateway, or on any server
// speaking the same simple protocols, and measures it honestly: every byte
// that comes back is checked, latency is recorded for every message, and
// warm-up is left out of the numbers.
//
// Usage:
//
//	protogate-load <command> [flags]
//
// The commands:
//
//	serve-echo  a plain Go TCP (or UDP) echo server: the floor every ratio is measured against;
//	            with -cert, over TLS 1.3 (with -udp, DTLS 1.2 on pion/dtls/v2)
//	echo        N TCP (or TLS) connections echoing payloads, ping-pong or pipelined
//	hold        open N idle connections at a given rate, hold them, check a sample still echoes
//	fanout      one NATS publisher, N subscribers (plain NATS, or linepubsub connections through the gateway)
//	udp         N UDP sockets echoing datagrams, ping-pong
//	dtls        N DTLS clients echoing datagrams, ping-pong
//	dtls-handshake  N concurrent clients running DTLS handshakes back to back
//	grpcfloor   the floor of the remote path: a bare grpc-go loop of OnReceivedBytes out and Send back
//
// `protogate-load <command> -h` describes a command and its flags.
//
// Every load command prints exactly one line of JSON to stdout when it ends
// (the fields of internal/loadstat.Result: msgs_per_s, p50_us, p99_us,
// p999_us, errors, mismatches, ...), a human summary to stderr, and a
// progress line to stderr every -progress during long runs. Problems during
// a run (a connection reset, a reply that never came) are counted in the
// result; only a setup that fails altogether (nothing to connect to) ends
// with a non-zero exit status. SIGINT or SIGTERM ends a run early, and its
// result is still printed.
//
// Examples, against a gateway serving builtin:echo on TCP port 7993 and UDP
// port 7994:
//
//	protogate-load serve-echo -listen 127.0.0.1:9000 &
//	protogate-load echo -addr 127.0.0.1:9000 -conns 100 -size 64 -duration 10s
//	protogate-load echo -addr 127.0.0.1:7993 -conns 100 -size 64 -duration 10s
//	protogate-load echo -addr 127.0.0.1:7993 -depth 4 -messages 5000000
//	protogate-load hold -addr 127.0.0.1:7993 -conns 15000 -rate 2000 -hold 10s
//	protogate-load udp -addr 127.0.0.1:7994 -conns 100 -duration 10s
//
// and, against a gateway serving builtin:linepubsub on port 7993 with its
// embedded NATS server open on port 4222 (broker.nats_listen):
//
//	protogate-load fanout -nats nats://127.0.0.1:4222 -subs 1000 -gateway 127.0.0.1:7993
//	protogate-load fanout -nats nats://127.0.0.1:4222 -subs 1000   # plain NATS subscribers
//
// The client is built to be cheap, since it usually shares the machine with
// the server it measures: one goroutine per connection (two when pipelined),
// buffers reused, no allocation per message.
//
// Each connection is a file descriptor, and the process may open no more than
// RLIMIT_NOFILE of them (Go raises the soft limit to the hard one at start);
// hold and the other commands refuse a -conns that cannot fit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand of the tool.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the table the tool dispatches on, in the order -h lists them.
var commands = []command{
	{"serve-echo", "a plain Go TCP (or UDP) echo server: the floor every ratio is measured against", cmdServeEcho},
	{"echo", "N TCP (or TLS) connections echoing payloads, ping-pong or pipelined", cmdEcho},
	{"hold", "open N idle connections at a given rate, hold them, check a sample still echoes", cmdHold},
	{"fanout", "one NATS publisher, N subscribers (plain NATS, or linepubsub connections through the gateway)", cmdFanout},
	{"udp", "N UDP sockets echoing datagrams, ping-pong", cmdUDP},
	{"dtls", "N DTLS clients echoing datagrams, ping-pong", cmdDTLS},
	{"dtls-handshake", "N concurrent clients running DTLS handshakes back to back", cmdDTLSHandshake},
	{"grpcfloor", "the floor of the remote path: a bare grpc-go loop of OnReceivedBytes out and Send back", cmdGRPCFloor},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one kills the process.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a command line that cannot be run; it exits with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError.
func usagef(format string, args ...any) error {
	return &usageError{msg: "protogate-load: " + fmt.Sprintf(format, args...)}
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stderr)
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ue *usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			if ue.msg != "" { // flag has printed its own message already
				fmt.Fprintln(stderr, err)
			}
			return 2
		default:
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "protogate-load: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: protogate-load <command> [flags]\n\n")
	fmt.Fprintf(w, "Puts load on a server and measures it; every byte that comes back is checked.\n")
	fmt.Fprintf(w, "Load commands print one JSON line to stdout and a summary to stderr.\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n'protogate-load <command> -h' describes a command and its flags.\n")
}

// newFlags returns the flag set of a command, whose -h output shows
// synopsis and the longer description doc before the flags.
func newFlags(name, synopsis, doc string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: protogate-load %s %s\n\n%s\nflags:\n", name, synopsis, strings.TrimLeft(doc, "\n"))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{} // the flag package has printed the error and usage
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
