// Command protogate is the gateway daemon. It owns the device sockets,
// hands each connection's protocol to a handler, and connects devices to
// pub/sub on an embedded NATS server, all as configured by one YAML file
// (protogate config prints the documented default).
//
//   - Listeners: tcp, ssl (TLS over TCP), udp (each peer address is a
//     connection) and dtls (certificates and/or pre-shared keys), each with
//     optional connection limits, access rules, PROXY protocol and framing.
//   - Handlers: wasm, a WebAssembly module run in-process by wazero (a file,
//     reloaded when it changes and on SIGHUP, or a builtin: module); or grpc,
//     a remote service written for EMQX's ExProto (emqx.exproto.v1), which
//     calls protogate back through the ConnectionAdapter gRPC server
//     (adapter.bind, opened only when some handler has a grpc block). A wasm
//     handler with a grpc block falls back to it while its module cannot
//     load or keeps crashing.
//   - Pub/sub: an embedded NATS server; broker.nats_listen and
//     broker.mqtt_listen open NATS and MQTT 3.1.1 ports for other clients.
//
// Usage:
//
//	protogate run [-c FILE]      serve; without -c, the embedded default config
//	protogate validate -c FILE   check a config file (and compile its wasm
//	                             modules); print every problem with its line
//	                             and key, exit 1 if there is one
//	protogate config             print the embedded default config
//	protogate ctl COMMAND        call the admin API of a running protogate:
//	                             status, cluster, listeners, clients, client, kick,
//	                             subscriptions, subscribe, unsubscribe,
//	                             handlers, reload, trace (protogate ctl help)
//	protogate version            print the version
//
// The admin HTTP server (admin.bind, default 127.0.0.1:18083) serves the
// admin API that "protogate ctl" calls; an address that is not loopback
// needs admin.api_keys, sent by ctl as HTTP Basic credentials (--api-key and
// --api-secret, or $PROTOGATE_API_KEY and $PROTOGATE_API_SECRET).
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
	case "ctl":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return cmdCtl(ctx, args[1:], stdout, stderr, os.Getenv)
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
  protogate validate -c FILE   check a config file and its wasm modules
  protogate config             print the embedded default config
  protogate ctl COMMAND        call the admin API of a running protogate
                               (protogate ctl help lists the commands)
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
	cfg, err := config.Check(*file)
	if err != nil {
		// One problem per line, in the order of the file.
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning:", w)
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
	for _, w := range cfg.Warnings() {
		log.Warn("protogate: " + w.Error())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, nil); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("protogate: stopped", "err", err)
		return 1
	}
	return 0
}
