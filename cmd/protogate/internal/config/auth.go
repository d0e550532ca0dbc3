package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authn"
	"github.com/protogate/protogate/gateway/authz"
)

// Profile returns the security profile. The validator and the gateway
// both read it here.
func (c *Config) Profile() (authn.Profile, error) {
	return authn.ParseProfile(c.SecurityProfile)
}

// AuthnSources builds the authenticator chain's sources: the legacy users
// map first, then each authenticator of the chain. Errors name the key.
func (c *Config) AuthnSources() ([]authn.Source, error) {
	a := c.Authentication
	if a == nil {
		return nil, nil
	}
	var out []authn.Source
	if len(a.Users) > 0 {
		db, err := authn.NewStatic(a.Users, a.UserIDType == UserIDClientID)
		if err != nil {
			return nil, &Error{Path: "authentication.users", Msg: err.Error()}
		}
		out = append(out, db)
	}
	for i := range a.Chain {
		p := fmt.Sprintf("authentication[%d]", i)
		src, err := a.Chain[i].source(p)
		if err != nil {
			return nil, err
		}
		out = append(out, src)
	}
	return out, nil
}

// Authenticator returns the gateway's authenticator: nil when nothing is
// configured in the legacy profile (every client is allowed), else the
// chain (which, empty in the hardened profile, denies everyone).
func (c *Config) Authenticator(stats *authn.Stats) (gateway.Authenticator, error) {
	prof, err := c.Profile()
	if err != nil {
		return nil, &Error{Path: "security_profile", Msg: err.Error()}
	}
	srcs, err := c.AuthnSources()
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 && prof == authn.Legacy {
		return nil, nil
	}
	return authn.NewChain(prof, stats, srcs...), nil
}

func (a *Authenticator) source(p string) (authn.Source, error) {
	switch a.Type {
	case AuthnBuiltinDatabase:
		algo := a.PasswordHashAlgorithm.algorithm()
		if err := algo.Validate(); err != nil {
			return nil, &Error{Path: p + ".password_hash_algorithm", Msg: err.Error()}
		}
		users := make([]authn.User, 0, len(a.Users))
		for j, u := range a.Users {
			up := fmt.Sprintf("%s.users[%d]", p, j)
			switch {
			case u.UserID == "":
				return nil, &Error{Path: up + ".user_id", Msg: "must not be empty"}
			case u.PasswordHash != "" && u.Password != "":
				return nil, &Error{Path: up, Msg: "give password or password_hash, not both"}
			case u.PasswordHash != "":
				users = append(users, authn.User{ID: u.UserID, PasswordHash: u.PasswordHash, Salt: u.Salt, Superuser: u.IsSuperuser})
			case u.Password != "":
				hu, err := authn.HashUser(u.UserID, u.Password, u.IsSuperuser, algo)
				if err != nil {
					return nil, &Error{Path: up + ".password", Msg: err.Error()}
				}
				users = append(users, hu)
			default:
				return nil, &Error{Path: up, Msg: "needs password or password_hash"}
			}
		}
		if f := a.UsersFile; f != "" {
			format := strings.TrimPrefix(strings.ToLower(filepath.Ext(f)), ".")
			fh, err := os.Open(f)
			if err != nil {
				return nil, &Error{Path: p + ".users_file", Msg: err.Error()}
			}
			more, err := authn.ReadUsers(fh, format, algo)
			fh.Close()
			if err != nil {
				return nil, &Error{Path: p + ".users_file", Msg: fmt.Sprintf("%s: %v", f, err)}
			}
			users = append(users, more...)
		}
		if len(users) == 0 {
			return nil, &Error{Path: p, Msg: "a built_in_database needs users or users_file"}
		}
		switch a.UserIDType {
		case UserIDUsername, UserIDClientID:
		default:
			return nil, &Error{Path: p + ".user_id_type", Msg: fmt.Sprintf("unknown user id type %q (want username or clientid)", a.UserIDType)}
		}
		db, err := authn.NewBuiltinDB(a.UserIDType == UserIDClientID, algo, users)
		if err != nil {
			return nil, &Error{Path: p + ".users", Msg: err.Error()}
		}
		return db, nil
	case "":
		return nil, &Error{Path: p + ".type", Msg: "missing (want " + AuthnBuiltinDatabase + ")"}
	}
	return nil, &Error{Path: p + ".type", Msg: fmt.Sprintf("unknown authenticator type %q (want %s)", a.Type, AuthnBuiltinDatabase)}
}

func (h HashAlgorithm) algorithm() authn.HashAlgorithm {
	return authn.HashAlgorithm{Name: h.Name, SaltPosition: h.SaltPosition, SaltRounds: h.SaltRounds,
		MacFun: h.MacFun, Iterations: h.Iterations, DKLength: h.DKLength}
}

// Authorizer returns the gateway's authorizer and its cache settings: nil
// without an authorization block.
func (c *Config) Authorizer() (gateway.Authorizer, gateway.AuthzCache, error) {
	az := c.Authorization
	if az == nil {
		return nil, gateway.AuthzCache{}, nil
	}
	prof, err := c.Profile()
	if err != nil {
		return nil, gateway.AuthzCache{}, &Error{Path: "security_profile", Msg: err.Error()}
	}
	ch := &authz.Chain{FailureDenies: prof == authn.Hardened, NoMatchAllow: prof == authn.Legacy}
	switch az.NoMatch {
	case "":
	case "allow":
		ch.NoMatchAllow = true
	case "deny":
		ch.NoMatchAllow = false
	default:
		return nil, gateway.AuthzCache{}, &Error{Path: "authorization.no_match", Msg: fmt.Sprintf("%q: want allow or deny", az.NoMatch)}
	}
	rules, err := az.rules()
	if err != nil {
		return nil, gateway.AuthzCache{}, err
	}
	if len(rules) > 0 {
		ch.Sources = append(ch.Sources, rules)
	}
	var cache gateway.AuthzCache
	if az.Cache.Enable {
		if az.Cache.MaxSize < 1 || az.Cache.MaxSize > 1024 {
			return nil, cache, &Error{Path: "authorization.cache.max_size", Msg: fmt.Sprintf("%d is out of range (want 1 to 1024)", az.Cache.MaxSize)}
		}
		if d := time.Duration(az.Cache.TTL); d <= 0 || d > time.Hour {
			return nil, cache, &Error{Path: "authorization.cache.ttl", Msg: fmt.Sprintf("%s is out of range (want more than 0 and at most 1h)", az.Cache.TTL)}
		}
		cache = gateway.AuthzCache{MaxSize: az.Cache.MaxSize, TTL: time.Duration(az.Cache.TTL)}
	}
	return ch, cache, nil
}

func (az *Authorization) rules() (authz.Rules, error) {
	var rs authz.Rules
	for i, r := range az.Rules {
		p := fmt.Sprintf("authorization.rules[%d]", i)
		var rule authz.Rule
		switch r.Permission {
		case "allow":
			rule.Allow = true
		case "deny":
		default:
			return nil, &Error{Path: p + ".permission", Msg: fmt.Sprintf("%q: want allow or deny", r.Permission)}
		}
		var err error
		if rule.Action, err = authz.ParseAction(r.Action); err != nil {
			return nil, &Error{Path: p + ".action", Msg: err.Error()}
		}
		for _, q := range r.QoS {
			if q < 0 || q > 2 {
				return nil, &Error{Path: p + ".qos", Msg: fmt.Sprintf("%d is not 0, 1 or 2", q)}
			}
			rule.QoS = append(rule.QoS, uint8(q))
		}
		for j, t := range r.Topics {
			tp, err := authz.ParseTopic(t)
			if err != nil {
				return nil, &Error{Path: fmt.Sprintf("%s.topics[%d]", p, j), Msg: err.Error()}
			}
			rule.Topics = append(rule.Topics, tp)
		}
		w := r.Who
		rule.Who = authz.Who{Username: w.Username, ClientID: w.ClientID, Listener: w.Listener}
		if w.UsernameRE != "" {
			if rule.Who.UsernameRE, err = regexp.Compile(w.UsernameRE); err != nil {
				return nil, &Error{Path: p + ".who.username_re", Msg: err.Error()}
			}
		}
		if w.ClientIDRE != "" {
			if rule.Who.ClientIDRE, err = regexp.Compile(w.ClientIDRE); err != nil {
				return nil, &Error{Path: p + ".who.clientid_re", Msg: err.Error()}
			}
		}
		addrs := w.IPAddrs
		if w.IPAddr != "" {
			addrs = append([]string{w.IPAddr}, addrs...)
		}
		for _, a := range addrs {
			pr, err := authz.ParsePrefix(a)
			if err != nil {
				return nil, &Error{Path: p + ".who", Msg: err.Error()}
			}
			rule.Who.IPNets = append(rule.Who.IPNets, pr)
		}
		rs = append(rs, rule)
	}
	return rs, nil
}
