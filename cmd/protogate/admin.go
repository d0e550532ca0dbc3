package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/protogate/protogate/admin"
	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/wasmhost"
)

// startAdmin serves the admin API on cfg.Admin.Bind (with TLS if set),
// records its address in r, and returns the function that stops it. An
// empty bind turns it off.
func startAdmin(cfg *config.Config, srv *gateway.Server, br *broker.Broker, hs *handlerSet, log *slog.Logger, r *running) (stop func(), err error) {
	ac := cfg.Admin
	if ac.Bind == "" {
		return func() {}, nil
	}
	listeners := make([]admin.Listener, 0, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		listeners = append(listeners, admin.Listener{Name: lc.Name, Type: lc.Type, Bind: lc.Bind, Handler: lc.Handler, MaxConnections: lc.MaxConnections})
	}
	keys, err := ac.Credentials()
	if err != nil {
		return nil, err
	}
	var (
		cluster func() admin.ClusterStatus
		regst   func() admin.RegistryStatus
		kicker  gateway.ClientKicker
	)
	if cfg.Broker.Cluster != nil || cfg.Broker.LeafNode != nil {
		cluster = brokerView{br}.ClusterStatus
		regst = registryStatus(r.registryBackend, cfg.Registry.OnUnavailable, r.registry, srv)
	}
	if r.registry != nil {
		kicker = r.registry
	}
	as, err := admin.New(admin.Config{
		Node:          cfg.Node.Name,
		Version:       versionString(),
		Gateway:       srv,
		Listeners:     listeners,
		Handlers:      hs.infos,
		Broker:        brokerView{br},
		Cluster:       cluster,
		Registry:      regst,
		Kicker:        kicker,
		APIKeys:       keys,
		Logger:        log,
		AuthnStats:    r.authnStats.Snapshot,
		AdapterDenied: r.adapterDenied,
	})
	if err != nil {
		return nil, err
	}
	hsrv := &http.Server{
		Handler:           as,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No WriteTimeout: a trace streams for minutes; it sets a
		// deadline per event instead.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	useTLS := ac.TLS != nil
	if t := ac.TLS; t != nil {
		tc, err := t.TLSConfig()
		if err != nil {
			return nil, fmt.Errorf("admin.tls: %w", err)
		}
		hsrv.TLSConfig = tc
	}
	ln, err := net.Listen("tcp", ac.Bind)
	if err != nil {
		return nil, fmt.Errorf("admin.bind: %w (is another protogate running? set admin.bind to a free host:port, or to \"\" to turn the admin API off)", err)
	}
	r.admin = ln.Addr()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		if useTLS {
			err = hsrv.ServeTLS(ln, "", "")
		} else {
			err = hsrv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("protogate: admin listener stopped", "err", err)
		}
	}()
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	log.Info("protogate: admin API listening", "url", scheme+"://"+ln.Addr().String()+"/", "api_keys", len(keys))
	return func() {
		as.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hsrv.Shutdown(ctx); err != nil {
			hsrv.Close()
		}
		wg.Wait()
	}, nil
}

// brokerView shows the broker to the admin API.
type brokerView struct{ b *broker.Broker }

func (v brokerView) Ready() error { return v.b.Ready() }

func (v brokerView) BrokerStats() admin.BrokerStats {
	st := v.b.Stats()
	return admin.BrokerStats{
		Connections: st.Connections, Subscriptions: st.Subscriptions, Routes: st.Routes,
		InMsgs: st.InMsgs, OutMsgs: st.OutMsgs, InBytes: st.InBytes, OutBytes: st.OutBytes,
		SlowConsumers: st.SlowConsumers, Dropped: v.b.Dropped(),
	}
}

// ClusterStatus shows the cluster state to the admin API.
func (v brokerView) ClusterStatus() admin.ClusterStatus {
	st := v.b.Cluster()
	cs := admin.ClusterStatus{
		Name: st.Name, Node: st.Node, Listen: st.Listen, Expected: st.Expected,
		Peers: st.Peers, Routes: st.Routes, Unreachable: st.Unreachable,
		Leafs: make([]admin.ClusterLeaf, 0, len(st.Leafs)), LeafRemotes: st.LeafRemotes, JetStreamLeader: st.JetStreamLeader,
	}
	for _, l := range st.Leafs {
		cs.Leafs = append(cs.Leafs, admin.ClusterLeaf{Name: l.Name, Addr: l.Addr})
	}
	return cs
}

// wasmModule shows a Wasm handler to the admin API.
type wasmModule struct {
	h      *wasmhost.Handler
	module string // as configured: a path or builtin:name
}

func (m wasmModule) Reload() error { return m.h.Reload() }

func (m wasmModule) WasmStatus() admin.WasmStatus {
	st := m.h.Stats()
	ws := admin.WasmStatus{
		Module: m.module, Version: st.Version, SHA256: st.SHA256, Instances: st.Instances,
		Versions: st.Versions, Faults: st.Faults, FaultsByKind: st.FaultsByKind, Broken: st.Broken, LastError: st.LastError,
		BreakerState: st.BreakerState, NextRetry: st.NextRetry, Cooldown: st.Cooldown,
		Reloads: st.Reloads, ReloadErrors: st.ReloadErrors,
	}
	if f := st.LastFault; f != nil {
		ws.LastFault, ws.LastFaultAt = f.Err, f.Time
	}
	return ws
}
