package main

import (
	"context"
	"io"
	"time"

	"github.com/protogate/protogate/internal/grpcfloor"
)

const grpcfloorDoc = `
Measures the floor of the remote handler path: a bare grpc-go loop of the
two unary calls the gateway makes per echoed message, without any socket to
a device. Each of -conns callers calls the handler's OnReceivedBytes with
-size bytes; the handler (exproto-echo-handler, started with -adapter
pointing at -adapter-listen) calls Send back on the ConnectionAdapter this
command serves; a round trip completes when both have happened and the
bytes match.

JSON fields: scenario "grpcfloor", target, conns, size, seconds, msgs
(round trips), msgs_per_s, p50_us, p99_us, p999_us, max_us, errors,
mismatches, lost.
`

func cmdGRPCFloor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg grpcfloor.Config
	fs := newFlags("grpcfloor", "-handler host:port -adapter-listen host:port [flags]", grpcfloorDoc, stderr)
	fs.StringVar(&cfg.HandlerAddr, "handler", "", "`address` of the ExProto handler (host:port or http://host:port; required)")
	fs.StringVar(&cfg.AdapterListen, "adapter-listen", "127.0.0.1:9100", "`host:port` to serve the ConnectionAdapter on, where the handler calls it")
	fs.IntVar(&cfg.Conns, "conns", 100, "concurrent callers, one round trip in flight each")
	fs.IntVar(&cfg.Size, "size", 64, "payload `bytes` (at least 8)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time after the warm-up")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "time before measuring starts")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "bound on each call and on the wait for its Send")
	label := fs.String("label", "", "`name` of what is measured, the result's target (default -handler)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.HandlerAddr == "" {
		return usagef("grpcfloor: -handler is required")
	}
	if err := positive("grpcfloor", "conns", cfg.Conns, "size", cfg.Size, "duration", cfg.Duration, "timeout", cfg.Timeout); err != nil {
		return err
	}
	res, err := grpcfloor.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *label != "" {
		res.Target = *label
	}
	return report(res, stdout, stderr)
}
