package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/protogate/protogate/admin"
	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authn"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/limit"
	"github.com/protogate/protogate/gateway/listener"
	"github.com/protogate/protogate/gateway/remote"
	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/wasmhost"
)

// cacheMu serializes making wasm compile caches (see handlerSet.add).
var cacheMu sync.Mutex

// shutdownGrace bounds the graceful part of a shutdown: handlers get this
// long to see OnSocketClosed before calls are canceled.
const shutdownGrace = 20 * time.Second

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	level, _ := c.SlogLevel() // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// running describes a started gateway; tests use it to find ports.
type running struct {
	adapter net.Addr // nil when no handler uses gRPC
	admin   net.Addr // nil when the admin API is off
	// adapterDenied counts adapter calls refused for credentials; nil
	// without an adapter.
	adapterDenied func() uint64
	// authnStats counts the authenticators' results.
	authnStats *authn.Stats
	listeners  map[string]net.Addr
	broker     *broker.Broker
	server     *gateway.Server
	reload     func() // reloads Wasm modules, as SIGHUP does
	// registry is the client-id registry, nil when local.
	registry        clusterRegistry
	registryBackend string
}

// run starts everything cfg describes, calls ready (if not nil) once every
// socket is listening, and serves until ctx ends or a listener fails. Then it
// shuts down in order: stop accepting and close connections (handlers still
// reachable), stop the adapter, close handler clients, drain NATS.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(*running)) error {
	bcfg, err := cfg.BrokerConfig()
	if err != nil {
		return err
	}
	bcfg.Logger = log
	br, err := broker.Start(bcfg)
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
	if a := br.ClusterAddr(); a != nil {
		st := br.Cluster()
		log.Info("protogate: cluster routes listening", "addr", a.String(), "cluster", st.Name, "nodes", st.Expected, "routes", st.Routes)
	}
	if l := cfg.Broker.LeafNode; l != nil {
		log.Info("protogate: joining hubs as a leaf node", "remotes", len(l.Remotes))
	}

	reg, regBackend, err := startRegistry(cfg, br, log)
	if err != nil {
		return err
	}
	if reg != nil {
		// Closed after the gateway's Shutdown (below), before the broker's.
		defer reg.Close()
	}

	authnStats := new(authn.Stats)
	auth, err := cfg.Authenticator(authnStats, log)
	if err != nil {
		return err
	}
	authz, authzCache, err := cfg.Authorizer(log)
	if err != nil {
		return err
	}
	var greg gateway.ClientRegistry
	if reg != nil {
		greg = reg
	}
	srv := gateway.New(gateway.Options{
		PubSub:             br,
		Registry:           greg,
		Authenticator:      auth,
		Authorizer:         authz,
		AuthzCache:         authzCache,
		Logger:             log,
		MaxPendingMessages: cfg.Gateway.MaxPendingMessages,
		MaxDeliveryWait:    time.Duration(cfg.Gateway.MaxDeliveryWait),
		MaxQueuedBytes:     int(cfg.Gateway.MaxQueuedBytes),
	})
	r := &running{listeners: make(map[string]net.Addr), broker: br, server: srv, authnStats: authnStats,
		registry: reg, registryBackend: regBackend}

	hs, err := newHandlerSet(cfg, log)
	if err != nil {
		return err
	}
	defer hs.Close()
	handlers := hs.handlers
	r.reload = hs.reload

	// The ConnectionAdapter comes up before any device can connect, and
	// only if a handler may call it: a Wasm-only gateway opens no port for
	// it (and a second one on the same machine does not clash). It knows
	// the gRPC handlers, whose credentials tell its callers apart.
	if cfg.NeedsAdapter() {
		stop, err := startAdapter(cfg, srv, hs.remotes, log, r)
		if err != nil {
			return err
		}
		defer stop()
	}

	// The admin API comes up before the device listeners, so that probes
	// see the gateway not ready (rather than not there) until they are.
	stopAdmin, err := startAdmin(cfg, srv, br, hs, log, r)
	if err != nil {
		return err
	}
	defer stopAdmin()

	failed := make(chan error, len(cfg.Listeners))
	var lnWG sync.WaitGroup
	for i, lc := range cfg.Listeners {
		l, err := newListener(lc, handlers[lc.Handler], log)
		if err != nil {
			return err
		}
		var ln net.Listener
		if l.Type == gateway.UDP || l.Type == gateway.DTLS {
			uc := listener.UDPConfig{Logger: log.With("listener", lc.Name)}
			if hc := lc.HealthCheck; hc != nil {
				uc.HealthCheck = &listener.HealthCheck{Request: []byte(hc.Request), Reply: []byte(hc.Reply)}
			}
			ln, err = listener.ListenUDP(lc.Bind, uc)
		} else {
			ln, err = net.Listen("tcp", lc.Bind)
		}
		if err != nil {
			return fmt.Errorf("listeners[%d].bind (listener %s): %w", i, lc.Name, err)
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

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
wait:
	for {
		select {
		case <-hup:
			log.Info("protogate: SIGHUP: reloading wasm modules")
			hs.reload()
		case <-ctx.Done():
			log.Info("protogate: shutting down", "connections", srv.NumConns())
			break wait
		case runErr = <-failed:
			log.Error("protogate: listener failed; shutting down", "err", runErr)
			break wait
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("protogate: graceful shutdown incomplete", "err", err)
	}
	lnWG.Wait()
	return runErr
}

// startAdapter serves the ConnectionAdapter on cfg.Adapter.Bind (with TLS if
// cfg.Adapter.TLS is set) for the gRPC handlers remotes, records its address
// in r, and returns the function that stops it.
func startAdapter(cfg *config.Config, srv *gateway.Server, remotes []*remote.Handler, log *slog.Logger, r *running) (stop func(), err error) {
	a := cfg.Adapter
	// A client certificate's CN means something only if the adapter
	// verifies client certificates.
	for _, name := range slices.Sorted(maps.Keys(cfg.Handlers)) {
		if g := cfg.Handlers[name].GRPC; g != nil && g.AdapterClientCN != "" && (a.TLS == nil || a.TLS.CAFile == "") {
			return nil, fmt.Errorf("handlers %s: grpc.adapter_client_cn needs adapter.tls with a ca_file, to verify the client certificates that adapter calls present", name)
		}
	}
	var gopts []grpc.ServerOption
	if t := a.TLS; t != nil {
		tc, err := t.TLSConfig()
		if err != nil {
			return nil, fmt.Errorf("adapter.tls: %w", err)
		}
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(tc)))
	}
	aln, err := net.Listen("tcp", a.Bind)
	if err != nil {
		return nil, fmt.Errorf("adapter.bind: %w (gRPC handlers call the ConnectionAdapter there; is another protogate running? "+
			"set adapter.bind to a free host:port, such as 127.0.0.1:9101, and point your handler at it)", err)
	}
	gs := grpc.NewServer(gopts...)
	ad := remote.NewAdapter(srv, log, remotes...)
	ad.Register(gs)
	r.adapterDenied = ad.Denied
	r.adapter = aln.Addr()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := gs.Serve(aln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("protogate: adapter stopped", "err", err)
		}
	}()
	withCreds := 0
	for _, h := range remotes {
		if h.HasAdapterCredentials() {
			withCreds++
		}
	}
	log.Info("protogate: adapter listening", "addr", aln.Addr().String(), "tls", a.TLS != nil,
		"handlers", len(remotes), "handlers_with_credentials", withCreds)
	return func() {
		stopGRPC(gs, 5*time.Second)
		wg.Wait()
	}, nil
}

// newListener turns a listener's config into what gateway.Server.Serve needs.
func newListener(lc config.Listener, h gateway.Handler, log *slog.Logger) (*gateway.Listener, error) {
	l := &gateway.Listener{
		Name:                 lc.Name,
		Handler:              h,
		IdleTimeout:          time.Duration(lc.IdleTimeout),
		Mountpoint:           lc.Mountpoint,
		DisableAuthn:         !lc.EnableAuthn,
		MaxSubscriptions:     lc.MaxSubscriptions,
		MaxConnections:       lc.MaxConnections,
		MaxConnRate:          float64(lc.MaxConnRate),
		MaxBytesRate:         lc.MaxBytesRate.PerSecond(),
		MaxPacketSize:        int(lc.MaxPacketSize),
		ProxyProtocol:        lc.ProxyProtocol,
		ProxyProtocolTimeout: time.Duration(lc.ProxyProtocolTimeout),
	}
	var err error
	if len(lc.AccessRules) > 0 {
		if l.Access, err = limit.ParseRules(lc.AccessRules); err != nil {
			return nil, fmt.Errorf("listeners %s: access_rules: %w", lc.Name, err)
		}
	}
	l.Framing = lc.FramingConfig()
	switch lc.Type {
	case config.ListenerTCP:
		l.Type = gateway.TCP
	case config.ListenerSSL:
		l.Type = gateway.SSL
		if l.TLSConfig, err = lc.TLS.TLSConfig(); err != nil {
			return nil, fmt.Errorf("listeners %s: tls: %w", lc.Name, err)
		}
	case config.ListenerUDP:
		l.Type = gateway.UDP
	case config.ListenerDTLS:
		l.Type = gateway.DTLS
		dc := listener.DTLSConfig{Logger: log.With("listener", lc.Name)}
		if t := lc.TLS; t != nil && t.CertFile != "" {
			tc, err := t.TLSConfig()
			if err != nil {
				return nil, fmt.Errorf("listeners %s: tls: %w", lc.Name, err)
			}
			dc.Certificates, dc.ClientCAs, dc.VerifyClient = tc.Certificates, tc.ClientCAs, t.VerifyClient
		}
		if p := lc.PSK; p != nil {
			if dc.PSK, err = p.Keys(); err != nil {
				return nil, fmt.Errorf("listeners %s: psk: %w", lc.Name, err)
			}
			dc.PSKIdentityHint = p.IdentityHint
		}
		if l.Handshaker, err = listener.NewDTLS(dc); err != nil {
			return nil, fmt.Errorf("listeners %s: %w", lc.Name, err)
		}
	default:
		return nil, fmt.Errorf("listeners %s: type %q is not supported", lc.Name, lc.Type)
	}
	return l, nil
}

// stopGRPC stops gs gracefully, forcing it after d.
func stopGRPC(gs *grpc.Server, d time.Duration) {
	t := time.AfterFunc(d, gs.Stop)
	gs.GracefulStop()
	t.Stop()
}

// handlerSet builds the configured handlers and owns what they share.
type handlerSet struct {
	log      *slog.Logger
	dataDir  string
	cache    wazero.CompilationCache
	cacheDir string // cache's directory; "": in memory
	handlers map[string]gateway.Handler
	infos    []admin.Handler // what the admin API shows of each
	wasm     []*wasmhost.Handler
	remotes  []*remote.Handler // every gRPC handler, fallbacks included
	closers  []io.Closer
}

func newHandlerSet(cfg *config.Config, log *slog.Logger) (*handlerSet, error) {
	hs := &handlerSet{log: log, dataDir: cfg.Node.DataDir, handlers: make(map[string]gateway.Handler)}
	// In name order, so that the admin API lists them stably.
	for _, name := range slices.Sorted(maps.Keys(cfg.Handlers)) {
		if err := hs.add(name, cfg.Handlers[name]); err != nil {
			hs.Close()
			return nil, err
		}
	}
	return hs, nil
}

func (hs *handlerSet) add(name string, hc config.Handler) error {
	var grpcHandler gateway.Handler
	if g := hc.GRPC; g != nil {
		var tc *tls.Config
		if g.TLS != nil {
			var err error
			if tc, err = g.TLS.TLSConfig(); err != nil {
				return fmt.Errorf("handlers %s: grpc.tls: %w", name, err)
			}
		}
		h, err := remote.New(remote.Config{
			Address:     g.Address,
			ServiceName: g.ServiceName,
			Timeout:     time.Duration(g.Timeout),
			TLS:         tc,
			Logger:      hs.log.With("handler", name),

			AdapterToken:    g.AdapterToken,
			AdapterClientCN: g.AdapterClientCN,
		})
		if err != nil {
			return fmt.Errorf("handlers %s: %w", name, err)
		}
		hs.closers = append(hs.closers, h)
		hs.remotes = append(hs.remotes, h)
		grpcHandler = h
		hs.log.Info("protogate: handler", "name", name, "address", g.Address, "service", g.ServiceName, "timeout", time.Duration(g.Timeout))
	}
	info := admin.Handler{Name: name}
	if rh, ok := grpcHandler.(*remote.Handler); ok {
		info.GRPC = rh
	}
	w := hc.Wasm
	if w == nil {
		hs.handlers[name] = grpcHandler
		info.Handler = grpcHandler
		hs.infos = append(hs.infos, info)
		return nil
	}
	wc := wasmhost.Config{
		Name:        name,
		Instances:   w.Instances,
		MemoryLimit: uint64(w.MemoryLimit),
		CallTimeout: time.Duration(w.CallTimeout),
		Fallback:    grpcHandler,
		Logger:      hs.log,

		BreakerCooldown:    time.Duration(w.BreakerCooldown),
		BreakerMaxCooldown: time.Duration(w.BreakerMaxCooldown),
		MaxTimers:          w.MaxTimers,
	}
	if b, ok := w.Builtin(); ok {
		// Every handler of a builtin module reads the binary's own
		// copy of it.
		wasm, found := builtin.View(b)
		if !found {
			return fmt.Errorf("handlers %s: wasm.path: no built-in module %q (have %s)", name, b, strings.Join(builtin.Names(), ", "))
		}
		wc.Wasm = wasm
	} else {
		wc.Path = w.Path
	}
	if hs.cache == nil {
		// wazero reads its own version lazily, unsynchronized, when a
		// cache is made: two gateways of one process (the cluster tests)
		// must not make theirs at once.
		cacheMu.Lock()
		defer cacheMu.Unlock()
		dir := filepath.Join(hs.dataDir, "wasm-cache")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			hs.log.Warn("protogate: no wasm compile cache", "dir", dir, "err", err)
			hs.cache = wazero.NewCompilationCache()
		} else if hs.cache, err = wazero.NewCompilationCacheWithDir(dir); err != nil {
			hs.log.Warn("protogate: no wasm compile cache", "dir", dir, "err", err)
			hs.cache = wazero.NewCompilationCache()
		} else {
			hs.cacheDir = dir
		}
	}
	wc.Cache, wc.RewriteDir = hs.cache, hs.cacheDir
	h, err := wasmhost.New(wc)
	if err != nil {
		return fmt.Errorf("handlers %s: %w", name, err)
	}
	hs.closers = append(hs.closers, h)
	hs.wasm = append(hs.wasm, h)
	hs.handlers[name] = h
	info.Handler, info.Wasm = h, wasmModule{h: h, module: w.Path}
	hs.infos = append(hs.infos, info)
	hs.log.Info("protogate: wasm handler", "name", name, "module", w.Path, "instances", h.Stats().Instances,
		"memory_limit", w.MemoryLimit.String(), "call_timeout", time.Duration(w.CallTimeout), "fallback", grpcHandler != nil)
	return nil
}

// reload reloads every Wasm handler from its file (SIGHUP).
func (hs *handlerSet) reload() {
	for _, h := range hs.wasm {
		if err := h.Reload(); err != nil {
			hs.log.Error("protogate: reload failed; the running version stays", "err", err)
		}
	}
}

// Close closes every handler (Wasm instances, gRPC connections).
func (hs *handlerSet) Close() error {
	for i := len(hs.closers) - 1; i >= 0; i-- {
		hs.closers[i].Close()
	}
	if hs.cache != nil {
		hs.cache.Close(context.Background())
	}
	return nil
}
