package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authn"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/remote"
)

// shutdownGrace bounds the graceful part of a shutdown: handlers get this
// long to see OnSocketClosed before calls are canceled.
const shutdownGrace = 20 * time.Second

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// running describes a started gateway; tests use it to find ports.
type running struct {
	adapter   net.Addr
	listeners map[string]net.Addr
	broker    *broker.Broker
	server    *gateway.Server
}

// run starts everything cfg describes, calls ready (if not nil) once every
// socket is listening, and serves until ctx ends or a listener fails. Then it
// shuts down in order: stop accepting and close connections (handlers still
// reachable), stop the adapter, close handler clients, drain NATS.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(*running)) error {
	br, err := broker.Start(broker.Config{
		Node:       cfg.Node.Name,
		DataDir:    cfg.Node.DataDir,
		NATSListen: cfg.Broker.NATSListen,
		MQTTListen: cfg.Broker.MQTTListen,
		MaxPayload: int(cfg.Broker.MaxPayload),
		Logger:     log,
	})
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := br.Shutdown(dctx); err != nil {
			log.Warn("protogate: nats drain incomplete", "err", err)
		}
		log.Info("protogate: stopped")
	}()
	if a := br.NATSAddr(); a != nil {
		log.Info("protogate: nats listening", "addr", a.String())
	}
	if a := br.MQTTAddr(); a != "" {
		log.Info("protogate: mqtt listening", "addr", a)
	}

	var auth gateway.Authenticator
	if a := cfg.Authentication; a != nil {
		st, err := authn.NewStatic(a.Users, a.UserIDType == config.UserIDClientID)
		if err != nil {
			return err
		}
		auth = st
	}
	srv := gateway.New(gateway.Options{PubSub: br, Authenticator: auth, Logger: log})
	r := &running{listeners: make(map[string]net.Addr), broker: br, server: srv}

	// The ConnectionAdapter comes up before any device can connect.
	var gopts []grpc.ServerOption
	if t := cfg.Adapter.TLS; t != nil {
		tc, err := serverTLS(t)
		if err != nil {
			return fmt.Errorf("adapter.tls: %w", err)
		}
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(tc)))
	}
	gs := grpc.NewServer(gopts...)
	remote.NewAdapter(srv, log).Register(gs)
	aln, err := net.Listen("tcp", cfg.Adapter.Bind)
	if err != nil {
		return fmt.Errorf("adapter.bind: %w", err)
	}
	r.adapter = aln.Addr()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := gs.Serve(aln); err != nil {
			log.Error("protogate: adapter stopped", "err", err)
		}
	}()
	defer func() {
		stopGRPC(gs, 5*time.Second)
		wg.Wait()
	}()
	log.Info("protogate: adapter listening", "addr", aln.Addr().String(), "tls", cfg.Adapter.TLS != nil)

	handlers := make(map[string]gateway.Handler, len(cfg.Handlers))
	defer func() {
		for _, h := range handlers {
			if c, ok := h.(io.Closer); ok {
				c.Close()
			}
		}
	}()
	for name, hc := range cfg.Handlers {
		h, err := newHandler(name, hc, log)
		if err != nil {
			return err
		}
		handlers[name] = h
	}

	failed := make(chan error, len(cfg.Listeners))
	var lnWG sync.WaitGroup
	for _, lc := range cfg.Listeners {
		l := &gateway.Listener{
			Name:         lc.Name,
			Handler:      handlers[lc.Handler],
			IdleTimeout:  time.Duration(lc.IdleTimeout),
			Mountpoint:   lc.Mountpoint,
			DisableAuthn: !lc.EnableAuthn,
		}
		switch lc.Type {
		case "tcp":
			l.Type = gateway.TCP
		case "ssl":
			l.Type = gateway.SSL
			if l.TLSConfig, err = serverTLS(lc.TLS); err != nil {
				return fmt.Errorf("listeners %s: tls: %w", lc.Name, err)
			}
		default:
			return fmt.Errorf("listeners %s: type %q is not supported", lc.Name, lc.Type)
		}
		ln, err := net.Listen("tcp", lc.Bind)
		if err != nil {
			return fmt.Errorf("listeners %s: %w", lc.Name, err)
		}
		r.listeners[lc.Name] = ln.Addr()
		log.Info("protogate: listening", "listener", lc.Name, "type", lc.Type, "addr", ln.Addr().String(), "handler", lc.Handler)
		lnWG.Add(1)
		go func() {
			defer lnWG.Done()
			if err := srv.Serve(ln, l); !errors.Is(err, gateway.ErrServerClosed) {
				failed <- err
			}
		}()
	}
	if ready != nil {
		ready(r)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("protogate: shutting down", "connections", srv.NumConns())
	case runErr = <-failed:
		log.Error("protogate: listener failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("protogate: graceful shutdown incomplete", "err", err)
	}
	lnWG.Wait()
	return runErr
}

// stopGRPC stops gs gracefully, forcing it after d.
func stopGRPC(gs *grpc.Server, d time.Duration) {
	t := time.AfterFunc(d, gs.Stop)
	gs.GracefulStop()
	t.Stop()
}

func newHandler(name string, hc config.Handler, log *slog.Logger) (gateway.Handler, error) {
	if hc.Wasm != nil {
		return nil, fmt.Errorf("handlers %s: wasm handlers are not supported yet", name)
	}
	g := hc.GRPC
	var tc *tls.Config
	if g.TLS != nil {
		var err error
		if tc, err = clientTLS(g.TLS); err != nil {
			return nil, fmt.Errorf("handlers %s: grpc.tls: %w", name, err)
		}
	}
	h, err := remote.New(remote.Config{
		Address:     g.Address,
		ServiceName: g.ServiceName,
		Timeout:     time.Duration(g.Timeout),
		TLS:         tc,
		Logger:      log.With("handler", name),
	})
	if err != nil {
		return nil, fmt.Errorf("handlers %s: %w", name, err)
	}
	log.Info("protogate: handler", "name", name, "address", g.Address, "service", g.ServiceName, "timeout", time.Duration(g.Timeout))
	return h, nil
}

func serverTLS(c *config.ServerTLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if c.VerifyClient {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func clientTLS(c *config.ClientTLS) (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return pool, nil
}
