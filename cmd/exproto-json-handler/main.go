// Command exproto-json-handler is the reference remote ExProto handler: a gRPC
// server that implements both emqx.exproto.v1 handler services
// (ConnectionUnaryHandler and the legacy streaming ConnectionHandler) and
// speaks the JSON test protocol of EMQX's echo handler (CONNECT, PUBLISH,
// SUBSCRIBE, ... as JSON objects; see package jsonproto). It is the handler
// the README quickstart and the conformance suite use, and it works unchanged
// against EMQX's ExProto gateway.
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
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/gateway/remote/exprotojson"
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

	target, creds, err := adapterTarget(*adapter, *adapterCA)
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
	exprotojson.New(exprotov1.NewConnectionAdapterClient(cc), log).Register(srv)

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

// adapterTarget turns an adapter URL into a gRPC target and the transport
// credentials its scheme asks for. A missing port defaults to 80 or 443.
func adapterTarget(rawURL, caFile string) (string, credentials.TransportCredentials, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", nil, fmt.Errorf("-adapter %q: want a URL such as http://127.0.0.1:9100: %w", rawURL, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", nil, fmt.Errorf("-adapter %q: want a URL such as http://127.0.0.1:9100", rawURL)
	}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if caFile != "" {
			return "", nil, errors.New("-adapter-ca needs an https:// adapter URL")
		}
		if port == "" {
			port = "80"
		}
		return net.JoinHostPort(u.Hostname(), port), insecure.NewCredentials(), nil
	case "https":
		if port == "" {
			port = "443"
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return "", nil, fmt.Errorf("-adapter-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return "", nil, fmt.Errorf("-adapter-ca %s: no PEM certificates found", caFile)
			}
			cfg.RootCAs = pool
		}
		return net.JoinHostPort(u.Hostname(), port), credentials.NewTLS(cfg), nil
	default:
		return "", nil, fmt.Errorf("-adapter %q: scheme must be http or https", rawURL)
	}
}
