package authz

import (
	"context"
	"log/slog"

	"github.com/protogate/protogate/gateway"
)

// Source is one authorization source after the client's own ACL: the
// configured rules, an HTTP service. An error is a backend failure, which
// the chain's profile turns into no match (legacy) or deny (hardened).
// Implementations must be safe for concurrent use and honour ctx.
type Source interface {
	Name() string
	Authorize(ctx context.Context, req *gateway.AuthzRequest) (gateway.Decision, error)
}

// Name implements Source: the configured rules are the "file" source of
// EMQX.
func (Rules) Name() string { return "rules" }

// Authorize implements Source.
func (rs Rules) Authorize(_ context.Context, req *gateway.AuthzRequest) (gateway.Decision, error) {
	return rs.Match(req), nil
}

// Chain decides authorization requests as EMQX's pipeline: the ACL that
// authentication returned first, then each source in order; the first
// allow or deny decides, and NoMatchAllow decides what none matched. It
// implements gateway.Authorizer and is safe for concurrent use.
type Chain struct {
	// Sources are asked in order after the client's ACL.
	Sources []Source
	// NoMatchAllow is authorization.no_match: allow when true.
	NoMatchAllow bool
	// FailureDenies is the hardened profile: a source that fails denies
	// instead of being skipped.
	FailureDenies bool
	// Logger receives backend failures. Default: slog.Default().
	Logger *slog.Logger
}

var _ gateway.Authorizer = (*Chain)(nil)

// Authorize implements gateway.Authorizer. An answer that a failure
// decided is not cacheable.
func (c *Chain) Authorize(ctx context.Context, req *gateway.AuthzRequest) (allow, cacheable bool) {
	if id := req.Identity; id != nil && id.ACL != nil {
		switch id.ACL.Match(req) {
		case gateway.Allow:
			return true, true
		case gateway.Deny:
			return false, true
		}
	}
	cacheable = true
	for _, s := range c.Sources {
		d, err := s.Authorize(ctx, req)
		if err != nil {
			log := c.Logger
			if log == nil {
				log = slog.Default()
			}
			log.Warn("authz: source failed", "source", s.Name(), "err", err)
			if c.FailureDenies {
				return false, false
			}
			cacheable = false
			continue
		}
		switch d {
		case gateway.Allow:
			return true, cacheable
		case gateway.Deny:
			return false, cacheable
		}
	}
	return c.NoMatchAllow, cacheable
}
