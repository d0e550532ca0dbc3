package config

import (
	"crypto/tls"
	"fmt"
	"log/slog"
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
func (c *Config) AuthnSources(prof authn.Profile, log *slog.Logger) ([]authn.Source, error) {
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
		src, err := a.Chain[i].source(p, prof, log)
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
func (c *Config) Authenticator(stats *authn.Stats, log *slog.Logger) (gateway.Authenticator, error) {
	prof, err := c.Profile()
	if err != nil {
		return nil, &Error{Path: "security_profile", Msg: err.Error()}
	}
	srcs, err := c.AuthnSources(prof, log)
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 && prof == authn.Legacy {
		return nil, nil
	}
	return authn.NewChain(prof, stats, srcs...), nil
}

func (a *Authenticator) source(p string, prof authn.Profile, log *slog.Logger) (authn.Source, error) {
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
	case AuthnHTTP:
		hc, err := a.HTTPBackend.config(p)
		if err != nil {
			return nil, err
		}
		h, err := authn.NewHTTP(authn.HTTPConfig{Method: hc.Method, URL: hc.URL, Headers: hc.Headers, Body: hc.Body,
			RequestTimeout: hc.RequestTimeout, PoolSize: hc.PoolSize, TLS: hc.TLS, Logger: log})
		if err != nil {
			return nil, &Error{Path: p, Msg: err.Error()}
		}
		return h, nil
	case AuthnJWT:
		jc := authn.JWTConfig{From: a.From, Algorithm: a.Algorithm, Secret: a.Secret, SecretBase64Encoded: a.SecretBase64Encoded,
			UseJWKS: a.UseJWKS, JWKSEndpoint: a.Endpoint, JWKSRefresh: time.Duration(a.RefreshInterval),
			VerifyClaims: a.VerifyClaims, ACLClaimName: a.ACLClaimName, Logger: log}
		dae := a.DisconnectAfterExpire
		jc.DisconnectAfterExpire = &dae
		if prof == authn.Hardened {
			// EMQX's on_missing_jwt: deny in the hardened profile.
			jc.OnMissing = authn.Deny
		}
		if k := a.PublicKey; k != "" {
			if strings.HasPrefix(strings.TrimSpace(k), "-----BEGIN") {
				jc.PublicKey = k
			} else {
				b, err := os.ReadFile(k)
				if err != nil {
					return nil, &Error{Path: p + ".public_key", Msg: err.Error()}
				}
				jc.PublicKey = string(b)
			}
		}
		j, err := authn.NewJWT(jc)
		if err != nil {
			return nil, &Error{Path: p, Msg: err.Error()}
		}
		return j, nil
	case "":
		return nil, &Error{Path: p + ".type", Msg: "missing (want built_in_database, http or jwt)"}
	}
	return nil, &Error{Path: p + ".type", Msg: fmt.Sprintf("unknown authenticator type %q (want built_in_database, http or jwt)", a.Type)}
}

// httpConfig is an HTTPBackend ready for authn or authz.
type httpConfig struct {
	Method, URL    string
	Headers, Body  map[string]string
	RequestTimeout time.Duration
	PoolSize       int
	TLS            *tls.Config
}

func (h *HTTPBackend) config(p string) (httpConfig, error) {
	hc := httpConfig{Method: h.Method, URL: h.URL, Headers: h.Headers, Body: h.Body,
		RequestTimeout: time.Duration(h.RequestTimeout), PoolSize: h.PoolSize}
	if t := h.TLS; t != nil {
		tc, err := t.TLSConfig()
		if err != nil {
			return hc, &Error{Path: p + ".tls", Msg: err.Error()}
		}
		hc.TLS = tc
	}
	return hc, nil
}

func (h HashAlgorithm) algorithm() authn.HashAlgorithm {
	return authn.HashAlgorithm{Name: h.Name, SaltPosition: h.SaltPosition, SaltRounds: h.SaltRounds,
		MacFun: h.MacFun, Iterations: h.Iterations, DKLength: h.DKLength}
}

// Authorizer returns the gateway's authorizer and its cache settings: nil
// without an authorization block.
func (c *Config) Authorizer(log *slog.Logger) (gateway.Authorizer, gateway.AuthzCache, error) {
	az := c.Authorization
	if az == nil {
		return nil, gateway.AuthzCache{}, nil
	}
	prof, err := c.Profile()
	if err != nil {
		return nil, gateway.AuthzCache{}, &Error{Path: "security_profile", Msg: err.Error()}
	}
	ch := &authz.Chain{FailureDenies: prof == authn.Hardened, NoMatchAllow: prof == authn.Legacy, Logger: log}
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
	for i, src := range az.Sources {
		p := fmt.Sprintf("authorization.sources[%d]", i)
		if src.Type != "http" {
			return nil, gateway.AuthzCache{}, &Error{Path: p + ".type", Msg: fmt.Sprintf("unknown source type %q (want http)", src.Type)}
		}
		hc, err := src.HTTPBackend.config(p)
		if err != nil {
			return nil, gateway.AuthzCache{}, err
		}
		h, err := authz.NewHTTP(authz.HTTPConfig{Method: hc.Method, URL: hc.URL, Headers: hc.Headers, Body: hc.Body,
			RequestTimeout: hc.RequestTimeout, PoolSize: hc.PoolSize, TLS: hc.TLS})
		if err != nil {
			return nil, gateway.AuthzCache{}, &Error{Path: p, Msg: err.Error()}
		}
		ch.Sources = append(ch.Sources, h)
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
		if rule.Who, err = r.Who.who(p + ".who"); err != nil {
			return nil, err
		}
		rs = append(rs, rule)
	}
	return rs, nil
}

func (w *ACLWho) who(p string) (authz.Who, error) {
	out := authz.Who{Username: w.Username, ClientID: w.ClientID, Listener: w.Listener, Attrs: w.ClientAttrs}
	var err error
	if w.UsernameRE != "" {
		if out.UsernameRE, err = regexp.Compile(w.UsernameRE); err != nil {
			return out, &Error{Path: p + ".username_re", Msg: err.Error()}
		}
	}
	if w.ClientIDRE != "" {
		if out.ClientIDRE, err = regexp.Compile(w.ClientIDRE); err != nil {
			return out, &Error{Path: p + ".clientid_re", Msg: err.Error()}
		}
	}
	addrs := w.IPAddrs
	if w.IPAddr != "" {
		addrs = append([]string{w.IPAddr}, addrs...)
	}
	for _, a := range addrs {
		pr, err := authz.ParsePrefix(a)
		if err != nil {
			return out, &Error{Path: p, Msg: err.Error()}
		}
		out.IPNets = append(out.IPNets, pr)
	}
	for i := range w.Any {
		alt, err := w.Any[i].who(fmt.Sprintf("%s.any[%d]", p, i))
		if err != nil {
			return out, err
		}
		out.Any = append(out.Any, alt)
	}
	return out, nil
}
