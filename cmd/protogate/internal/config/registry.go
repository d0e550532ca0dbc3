package config

import "time"

// Registry backends (Registry.Backend).
const (
	// RegistryAuto picks by what the broker joins: kv in a cluster of 3 or
	// more nodes, notices in a smaller one or as a leaf node, local alone.
	RegistryAuto = "auto"
	// RegistryLocal keeps client ids unique on this node only.
	RegistryLocal = "local"
	// RegistryKV keeps them in a replicated JetStream key-value bucket.
	RegistryKV = "kv"
	// RegistryNotices asks every node over core NATS.
	RegistryNotices = "notices"
)

// Registry keeps each client id on one connection across the nodes of a
// cluster: Authenticate with an id held on another node discards that
// node's connection before it succeeds.
type Registry struct {
	// Backend is auto, local, kv or notices (see package
	// gateway/registry). Default: "auto".
	Backend string `yaml:"backend"`
	// OnUnavailable is what Authenticate does when the registry cannot
	// answer within ClaimTimeout (no quorum, a partition): reject fails it;
	// local accepts it with uniqueness on this node only, and claims the id
	// cluster-wide once the registry is back, where the newer claim wins.
	// Default: "reject".
	OnUnavailable string `yaml:"on_unavailable"`
	// ClaimTimeout bounds one claim, 1ms to 1m. A Wasm guest's
	// Authenticate has at most half its call_timeout. Default: 2s.
	ClaimTimeout Duration `yaml:"claim_timeout"`
}

func (v *validator) registry(r *Registry) {
	switch r.Backend {
	case RegistryAuto, RegistryLocal, RegistryKV, RegistryNotices:
	default:
		v.errf("registry.backend", "unknown backend %q (want auto, local, kv or notices)", r.Backend)
	}
	switch r.OnUnavailable {
	case "reject", "local":
	default:
		v.errf("registry.on_unavailable", "unknown policy %q (want reject or local)", r.OnUnavailable)
	}
	if d := time.Duration(r.ClaimTimeout); d < time.Millisecond || d > time.Minute {
		v.errf("registry.claim_timeout", "%s is out of range (want 1ms to 1m)", r.ClaimTimeout)
	}
	b := &v.c.Broker
	switch {
	case r.Backend == RegistryKV && b.Cluster == nil:
		v.errf("registry.backend", "kv needs broker.cluster: its bucket is replicated by the cluster's JetStream (a leaf node's is its own; use notices there)")
	case r.Backend == RegistryNotices && b.Cluster == nil && b.LeafNode == nil:
		v.warnf("registry.backend", "notices without broker.cluster or broker.leafnode: there is no other node to ask; client ids are unique on this node only")
	}
}
