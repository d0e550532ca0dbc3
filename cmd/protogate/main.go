// Command protogate is the gateway daemon: it owns device sockets (TCP, TLS,
// UDP, DTLS), hands each connection's protocol to a handler (a WebAssembly
// module run in-process, or a remote gRPC service written for EMQX's
// ExProto), and connects devices to pub/sub on an embedded NATS server.
//
// Usage:
//
//	protogate run [-c FILE]      serve; without -c, the embedded default config
//	protogate validate -c FILE   check a config file; exit 1 naming the bad key
//	protogate config             print the embedded default config
//	protogate version            print the version
//
// SIGINT and SIGTERM shut down gracefully: stop accepting, close every
// connection (its handler sees OnSocketClosed), drain NATS, exit 0. SIGHUP
// reloads the Wasm modules from their files.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	os.Exit(protogate(os.Args[1:], os.Stdout, os.Stderr))
}

// protogate runs the command line and returns the exit code.
func protogate(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "config":
		stdout.Write(config.Default())
		return 0
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "protogate", versionString())
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "protogate: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  protogate run [-c FILE]      run the gateway (default: the embedded config)
  protogate validate -c FILE   check a config file
  protogate config             print the embedded default config
  protogate version            print the version
`)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config `file` to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "protogate validate: -c FILE is required")
		return 2
	}
	if _, err := config.Load(*file); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *file)
	return 0
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config `file` (default: the embedded default config)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var cfg *config.Config
	var err error
	if *file == "" {
		cfg, err = config.Parse(config.Default())
	} else {
		cfg, err = config.Load(*file)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, nil); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("protogate: stopped", "err", err)
		return 1
	}
	return 0
}
