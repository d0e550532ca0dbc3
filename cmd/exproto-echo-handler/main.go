// Command exproto-echo-handler is a minimal remote ExProto handler that
// echoes: a gRPC server implementing both emqx.exproto.v1 handler services
// (ConnectionUnaryHandler and the legacy streaming ConnectionHandler) that
// answers every OnReceivedBytes with a ConnectionAdapter Send of the same
// bytes, made inside the callback (see package internal/echohandler). It is
// the handler protogate's remote benchmarks use, and a starting point for
// handlers of your own; it works unchanged against EMQX's ExProto gateway.
//
// With -service stream it serves protogate's fast lane instead
// (protogate.v1.StreamHandler, see package sdk/go/serve): the echo is an
// sdk/go Handler, its Send travels back on the stream that brought the
// bytes, and there is no adapter to call.
//
// Usage:
//
//	exproto-echo-handler [-service exproto|stream] [-listen 127.0.0.1:9001] [-adapter http://127.0.0.1:9100]
//	                     [-adapter-ca ca.pem] [-authenticate]
//	                     [-stream-concurrency 64] [-log-level info]
//
// -adapter is the gateway's ConnectionAdapter URL; https:// uses TLS, verified
// against the system roots or, with -adapter-ca, against that CA file.
// -authenticate makes OnSocketCreated authenticate every connection with
// clientid = its conn handle (closing it if the gateway refuses); without it
// connections are never authenticated, which an echo does not need. On the
// streaming service the bytes of each connection are echoed in order, and up
// to -stream-concurrency connections of one stream are served at once (1:
// one request at a time per stream). Point a protogate handler at it (as
// protogate.yaml next to this file does):
//
//	handlers:
//	  echo: {grpc: {address: http://127.0.0.1:9001}}   # service_name: ConnectionHandler for streaming
//	listeners:
//	  - {name: tcp, type: tcp, bind: 0.0.0.0:7993, handler: echo}
//
// then `echo hello | nc -q1 localhost 7993` prints hello. SIGINT or SIGTERM
// stops the server gracefully: in-flight callbacks finish, and streams still
// open after the grace period (EMQX never closes its callback streams) are
// cut.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/protogate/protogate/internal/adaptertarget"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/internal/echohandler"
	"github.com/protogate/protogate/proto/exprotov1"
)

// shutdownGrace bounds how long a graceful stop waits for open calls.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "exproto-echo-handler:", err)
		os.Exit(1)
	}
}

// run serves the handler until ctx is done, then stops gracefully. Logs go
// to logOut; ready, if not nil, is called with the listening address once
// the server accepts connections.
func run(ctx context.Context, args []string, logOut io.Writer, ready func(net.Addr)) error {
	fs := flag.NewFlagSet("exproto-echo-handler", flag.ContinueOnError)
	fs.SetOutput(logOut)
	listen := fs.String("listen", "127.0.0.1:9001", "address the handler services listen on")
	adapter := fs.String("adapter", "http://127.0.0.1:9100", "ConnectionAdapter URL of the gateway (http:// or https://)")
	adapterCA := fs.String("adapter-ca", "", "PEM file of the CA that signed the adapter's certificate (https only; default: system roots)")
	authenticate := fs.Bool("authenticate", false, "authenticate each connection with clientid = its conn handle")
	streamConc := fs.Int("stream-concurrency", echohandler.DefaultStreamConcurrency,
		"streaming service: connections of one stream handled at once (each connection's requests stay in order; 1: the whole stream in order)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	service := fs.String("service", "exproto", "exproto: ExProto's two handler services, calling the adapter; stream: protogate's fast lane (protogate.v1.StreamHandler), no adapter")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *service {
	case "exproto", "stream":
	default:
		return fmt.Errorf("-service %q: want exproto or stream", *service)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *streamConc < 1 {
		return fmt.Errorf("-stream-concurrency %d: want at least 1", *streamConc)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	if *service == "stream" {
		return runStream(ctx, *listen, *authenticate, log, ready)
	}

	target, creds, err := adaptertarget.Parse(*adapter, *adapterCA)
	if err != nil {
		return err
	}
	// One client connection carries every adapter call: HTTP/2 multiplexes
	// them, and a single connection batches their frames into fewer writes.
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("adapter %s: %w", *adapter, err)
	}
	defer cc.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	echohandler.New(exprotov1.NewConnectionAdapterClient(cc), echohandler.Options{
		Authenticate:      *authenticate,
		StreamConcurrency: *streamConc,
		Logger:            log,
	}).Register(srv)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "listen", ln.Addr().String(), "adapter", *adapter,
		"authenticate", *authenticate, "stream_concurrency", *streamConc,
		"services", []string{"emqx.exproto.v1.ConnectionUnaryHandler", "emqx.exproto.v1.ConnectionHandler"})
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	select {
	case <-stopped:
	case <-grace.C:
		log.Warn("grace period over; closing open calls", "grace", shutdownGrace)
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
