package authn

import (
	"context"
	"errors"
	"fmt"

	"github.com/protogate/protogate/gateway"
)

// Result is what one authenticator of a chain says of a client.
type Result int8

// The results, as EMQX's.
const (
	Ignore Result = iota // not mine to decide: ask the next authenticator
	Allow                // the credentials are good
	Deny                 // the credentials are bad: the chain stops
)

// String returns "ignore", "allow" or "deny".
func (r Result) String() string {
	switch r {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "ignore"
}

// Source is one authenticator of a chain. Check returns Allow with the
// client's identity, Deny, or Ignore; an error is a backend failure (the
// backend could not be asked or answered nonsense), which the chain's
// profile turns into Ignore or Deny. Implementations must be safe for
// concurrent use and honour ctx.
type Source interface {
	// Name names the source in logs and metrics: built_in_database,
	// http or jwt.
	Name() string
	Check(ctx context.Context, req *gateway.AuthRequest) (Result, *gateway.Identity, error)
}

// Profile is EMQX's security profile: what a failure or an absence means.
type Profile int8

// The security profiles.
const (
	// Legacy: a backend failure is ignored (the next authenticator
	// decides), and no authenticator at all allows everyone.
	Legacy Profile = iota
	// Hardened: a backend failure denies, and so does an empty chain.
	Hardened
)

// String returns "legacy" or "hardened".
func (p Profile) String() string {
	if p == Hardened {
		return "hardened"
	}
	return "legacy"
}

// ParseProfile parses "legacy" or "hardened".
func ParseProfile(s string) (Profile, error) {
	switch s {
	case "legacy", "":
		return Legacy, nil
	case "hardened":
		return Hardened, nil
	}
	return Legacy, fmt.Errorf("authn: unknown security profile %q (want legacy or hardened)", s)
}

// Chain tries its sources in order, as EMQX's authentication chain does:
// the first Allow or Deny decides; a chain where every source ignores
// the client denies it. It implements gateway.Authenticator and is safe
// for concurrent use.
type Chain struct {
	profile Profile
	sources []Source
	stats   *Stats
}

var _ gateway.Authenticator = (*Chain)(nil)

// NewChain returns a chain of sources under profile. Stats, if not nil,
// counts every source's results.
func NewChain(profile Profile, stats *Stats, sources ...Source) *Chain {
	return &Chain{profile: profile, sources: sources, stats: stats}
}

// ErrBackend marks the error of a source that failed; with the hardened
// profile it denies the client.
var ErrBackend = errors.New("authn: backend failure")

// Authenticate implements gateway.Authenticator.
func (c *Chain) Authenticate(ctx context.Context, req *gateway.AuthRequest) (*gateway.Identity, error) {
	if len(c.sources) == 0 {
		if c.profile == Hardened {
			return nil, fmt.Errorf("%w: no authenticator is configured (security_profile hardened)", ErrNotAuthorized)
		}
		return nil, nil
	}
	var failures []error
	for _, s := range c.sources {
		r, id, err := s.Check(ctx, req)
		if err != nil {
			c.stats.count(s.Name(), "error")
			if c.profile == Hardened {
				return nil, fmt.Errorf("%w: %s: %w", ErrNotAuthorized, s.Name(), errors.Join(ErrBackend, err))
			}
			failures = append(failures, fmt.Errorf("%s: %w", s.Name(), err))
			continue
		}
		c.stats.count(s.Name(), r.String())
		switch r {
		case Allow:
			return id, nil
		case Deny:
			return nil, ErrNotAuthorized
		}
	}
	if len(failures) > 0 {
		return nil, fmt.Errorf("%w (every authenticator ignored the client; failed: %w)", ErrNotAuthorized, errors.Join(failures...))
	}
	return nil, ErrNotAuthorized
}
