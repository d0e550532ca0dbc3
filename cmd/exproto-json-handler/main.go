// Command exproto-json-handler is the reference remote ExProto handler: a gRPC
// server that implements both emqx.exproto.v1 handler services
// (ConnectionUnaryHandler and the legacy streaming ConnectionHandler) and
// speaks the JSON test protocol of EMQX's echo handler (CONNECT, PUBLISH,
// SUBSCRIBE, ... as JSON objects; see package internal/jsonproto). It is the
// handler of the README quickstart (make run-grpc); its code is package
// internal/jsonhandler, which the conformance suite also runs, and it works
// unchanged against EMQX's ExProto gateway.
//
// Usage:
//
//	exproto-json-handler [-listen 127.0.0.1:9001] [-adapter http://127.0.0.1:9100]
//	                     [-adapter-ca ca.pem] [-log-level info]
//
// -adapter is the gateway's ConnectionAdapter URL; https:// uses TLS, verified
// against the system roots or, with -adapter-ca, against that CA file. Every
// callback is logged at debug level. SIGINT or SIGTERM stops the server
// gracefully: in-flight callbacks finish, and streams still open after the
// grace period (EMQX never closes its callback streams) are cut.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/internal/adaptertarget"
	"github.com/protogate/protogate/internal/jsonhandler"
	"github.com/protogate/protogate/proto/exprotov1"
)

// shutdownGrace bounds how long a graceful stop waits for open calls.
const shutdownGrace = 5 * time.Second

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "exproto-json-handler:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("exproto-json-handler", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9001", "address the handler services listen on")
	adapter := fs.String("adapter", "http://127.0.0.1:9100", "ConnectionAdapter URL of the gateway (http:// or https://)")
	adapterCA := fs.String("adapter-ca", "", "PEM file of the CA that signed the adapter's certificate (https only; default: system roots)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	target, creds, err := adaptertarget.Parse(*adapter, *adapterCA)
	if err != nil {
		return err
	}
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
	jsonhandler.New(exprotov1.NewConnectionAdapterClient(cc), log).Register(srv)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving ExProto handler", "listen", ln.Addr().String(), "adapter", *adapter,
		"services", []string{"emqx.exproto.v1.ConnectionUnaryHandler", "emqx.exproto.v1.ConnectionHandler"})

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
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		log.Warn("grace period over; closing open calls", "grace", shutdownGrace)
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
