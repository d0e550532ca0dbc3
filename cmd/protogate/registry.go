package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/protogate/protogate/admin"
	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/registry"
)

// clusterRegistry is what run needs of a cluster registry.
type clusterRegistry interface {
	gateway.ClientRegistry
	gateway.ClientKicker
	Stats() registry.Stats
	Close()
}

// registryBackend resolves cfg.Registry.Backend against what the broker
// joins: auto is kv in a cluster of 3 or more nodes, notices in a 2-node
// cluster or as a leaf node, local alone.
func registryBackend(cfg *config.Config, nodes int) string {
	b := cfg.Registry.Backend
	if b != config.RegistryAuto {
		return b
	}
	switch {
	case cfg.Broker.Cluster != nil && nodes >= 3:
		return config.RegistryKV
	case cfg.Broker.Cluster != nil || cfg.Broker.LeafNode != nil:
		return config.RegistryNotices
	}
	return config.RegistryLocal
}

// startRegistry starts the client-id registry cfg asks for on a connection
// of its own to br. It returns a nil registry for local.
func startRegistry(cfg *config.Config, br *broker.Broker, log *slog.Logger) (clusterRegistry, string, error) {
	backend := registryBackend(cfg, br.NodeCount())
	if backend == config.RegistryLocal {
		return nil, backend, nil
	}
	nc, err := br.Connect("registry")
	if err != nil {
		return nil, backend, err
	}
	rc := registry.Config{
		Node:          cfg.Node.Name,
		Conn:          nc,
		ClaimTimeout:  time.Duration(cfg.Registry.ClaimTimeout),
		OnUnavailable: registry.Policy(cfg.Registry.OnUnavailable),
		Replicas:      min(3, br.NodeCount()),
		Logger:        log.With("component", "registry"),
	}
	var reg clusterRegistry
	if backend == config.RegistryKV {
		reg, err = registry.StartKV(rc)
	} else {
		reg, err = registry.StartNotices(rc)
	}
	if err != nil {
		nc.Close()
		return nil, backend, fmt.Errorf("registry: %w", err)
	}
	log.Info("protogate: client id registry", "backend", backend, "on_unavailable", cfg.Registry.OnUnavailable,
		"claim_timeout", time.Duration(cfg.Registry.ClaimTimeout))
	return closingConn{reg, nc}, backend, nil
}

// closingConn closes the registry's connection after the registry.
type closingConn struct {
	clusterRegistry
	nc interface{ Close() }
}

func (c closingConn) Close() {
	c.clusterRegistry.Close()
	c.nc.Close()
}

// registryStatus shows the registry to the admin API.
func registryStatus(backend, onUnavailable string, reg clusterRegistry, srv *gateway.Server) func() admin.RegistryStatus {
	return func() admin.RegistryStatus {
		st := admin.RegistryStatus{Backend: backend, Available: true, OnUnavailable: onUnavailable, Jailed: srv.Jailed()}
		if reg == nil {
			return st
		}
		if r, ok := reg.(closingConn); ok {
			if kv, ok := r.clusterRegistry.(*registry.KV); ok {
				st.Available = kv.Ready()
			}
		}
		s := reg.Stats()
		st.Claims, st.Takeovers, st.Discarded, st.Unavailable, st.Reclaimed = s.Claims, s.Takeovers, s.Discarded, s.Unavailable, s.Reclaimed
		return st
	}
}
