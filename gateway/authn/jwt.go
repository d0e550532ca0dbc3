package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/internal/placeholder"
)

// JWTConfig configures a JWT authenticator, as EMQX's authn jwt
// (emqx_authn_jwt). Exactly one key source is used: an HMAC secret
// (Algorithm hmac-based), a public key (Algorithm public-key) or a JWKS
// (UseJWKS).
type JWTConfig struct {
	// From is where the client puts its token: password (the default)
	// or username.
	From string
	// Algorithm is hmac-based or public-key. With UseJWKS it may be
	// empty (or public-key).
	Algorithm string
	// Secret is the HMAC secret (hmac-based): HS256, HS384 and HS512
	// tokens verify with it.
	Secret string
	// SecretBase64Encoded says Secret is base64 (standard alphabet).
	SecretBase64Encoded bool
	// PublicKey is a PEM public key (public-key): "PUBLIC KEY", "RSA
	// PUBLIC KEY" or a "CERTIFICATE". RSA keys verify RS256/384/512 and
	// PS256/384/512 tokens, ECDSA keys the ES algorithm of their curve,
	// Ed25519 keys EdDSA. The caller reads a key file.
	PublicKey string
	// UseJWKS verifies tokens with the keys of a JSON Web Key Set.
	UseJWKS bool
	// JWKSEndpoint is the JWKS: an https:// URL, or a file path. Plain
	// http is refused: keys fetched in the clear could be replaced.
	JWKSEndpoint string
	// JWKSRefresh is how long fetched keys are used before they are
	// fetched again (on the next token, not in the background). A token
	// whose kid no key has also fetches again, at most once in
	// min(10s, JWKSRefresh). Default: 5m.
	JWKSRefresh time.Duration
	// JWKSTimeout bounds one fetch of the JWKS. Default: 5s.
	JWKSTimeout time.Duration
	// JWKSTLS configures the https connection; nil verifies with the
	// system's roots. It is cloned.
	JWKSTLS *tls.Config
	// VerifyClaims are claims every token must have, with these values.
	// Values may hold ${clientid} and ${username}. An "aud" claim may
	// be a string or an array that holds the value.
	VerifyClaims map[string]string
	// ACLClaimName names the claim that holds the client's ACL, in
	// either of EMQX's forms (see HTTP). Default: acl.
	ACLClaimName string
	// DisconnectAfterExpire closes the connection when the token's exp
	// passes. nil means true (EMQX's default).
	DisconnectAfterExpire *bool
	// OnMissing is the result for a client that gave no token: Ignore
	// (the zero value, legacy's default) or Deny (hardened's default;
	// the caller picks the profile's default when on_missing_jwt is
	// not configured).
	OnMissing Result
	// Logger receives at debug level why a token was denied (never the
	// token). Default: slog.Default().
	Logger *slog.Logger
}

// MaxTokenSize bounds a token: a longer one is refused before it is
// decoded, so a 1 MB password costs nothing.
const MaxTokenSize = 8 << 10

// Defaults of JWTConfig.
const (
	DefaultJWKSRefresh = 5 * time.Minute
	DefaultJWKSTimeout = 5 * time.Second
)

// jwksMissInterval bounds how often a kid that no key has, or a failed
// fetch, fetches the JWKS again.
const jwksMissInterval = 10 * time.Second

var (
	hmacMethods   = []string{"HS256", "HS384", "HS512"}
	rsaMethods    = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	publicMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

// JWT verifies the JSON Web Token a client gives as its password (or
// username), as EMQX (ops-security §3.4):
//
//  1. no token: OnMissing;
//  2. a token over MaxTokenSize, malformed, with an algorithm the key
//     does not allow ("none" never is), or whose signature no key
//     verifies: backend failure (the chain's profile: ignore or deny);
//  3. exp and nbf, when present (numbers or numeric strings), must hold
//     (exp > now, nbf <= now); iat is not checked; each VerifyClaims
//     claim must be present and equal: else deny;
//  4. allow, with the Identity of the claims: is_superuser,
//     client_attrs, ExpireAt = exp (DisconnectAfterExpire), and the ACL
//     claim (malformed: deny), which also denies everything once exp
//     passes.
//
// JWT implements Source and is safe for concurrent use.
type JWT struct {
	from       string
	methods    []string
	key        any // []byte or a public key; nil with a JWKS
	jwks       *jwks
	claims     []verifyClaim
	aclClaim   string
	disconnect bool
	onMissing  Result
	log        *slog.Logger
	now        func() time.Time // the clock; tests replace it before use
}

var _ Source = (*JWT)(nil)

type verifyClaim struct {
	name  string
	value placeholder.Template
}

// NewJWT checks c and returns its authenticator. A JWKS file is read
// now (and again at each refresh); a JWKS URL is fetched on the first
// token. The error of a bad configuration says which field is wrong.
// NewJWT may be called concurrently.
func NewJWT(c JWTConfig) (*JWT, error) {
	j := &JWT{aclClaim: c.ACLClaimName, disconnect: c.DisconnectAfterExpire == nil || *c.DisconnectAfterExpire,
		onMissing: c.OnMissing, log: c.Logger, now: time.Now}
	switch c.From {
	case "", "password":
		j.from = "password"
	case "username":
		j.from = "username"
	default:
		return nil, fmt.Errorf("authn: jwt: from %q: want password or username", c.From)
	}
	switch c.OnMissing {
	case Ignore, Deny:
	default:
		return nil, fmt.Errorf("authn: jwt: on_missing %v: want ignore or deny", c.OnMissing)
	}
	if j.aclClaim == "" {
		j.aclClaim = "acl"
	}
	if j.log == nil {
		j.log = slog.Default()
	}
	switch {
	case c.UseJWKS:
		if c.Algorithm != "" && c.Algorithm != "public-key" {
			return nil, fmt.Errorf("authn: jwt: algorithm %q with use_jwks: a JWKS holds public keys (want public-key or nothing)", c.Algorithm)
		}
		if c.Secret != "" || c.PublicKey != "" {
			return nil, errors.New("authn: jwt: use_jwks takes its keys from the endpoint: secret and public_key must not be set")
		}
		s, err := newJWKS(c, func() time.Time { return j.now() })
		if err != nil {
			return nil, err
		}
		j.jwks, j.methods = s, publicMethods
	case c.Algorithm == "hmac-based":
		if c.PublicKey != "" || c.JWKSEndpoint != "" {
			return nil, errors.New("authn: jwt: algorithm hmac-based takes a secret: public_key and the JWKS endpoint must not be set")
		}
		if c.Secret == "" {
			return nil, errors.New("authn: jwt: algorithm hmac-based: secret is required")
		}
		key := []byte(c.Secret)
		if c.SecretBase64Encoded {
			var err error
			if key, err = base64.StdEncoding.DecodeString(c.Secret); err != nil {
				if key, err = base64.RawStdEncoding.DecodeString(c.Secret); err != nil {
					return nil, errors.New("authn: jwt: secret is not valid base64 (secret_base64_encoded is set)")
				}
			}
			if len(key) == 0 {
				return nil, errors.New("authn: jwt: secret decodes to nothing")
			}
		}
		j.key, j.methods = key, hmacMethods
	case c.Algorithm == "public-key":
		if c.Secret != "" || c.JWKSEndpoint != "" {
			return nil, errors.New("authn: jwt: algorithm public-key takes a public_key: secret and the JWKS endpoint must not be set")
		}
		if c.PublicKey == "" {
			return nil, errors.New("authn: jwt: algorithm public-key: public_key (PEM) is required")
		}
		key, err := parsePublicKeyPEM(c.PublicKey)
		if err != nil {
			return nil, err
		}
		j.key, j.methods = key, methodsFor(key)
	default:
		return nil, fmt.Errorf("authn: jwt: algorithm %q: want hmac-based or public-key (or use_jwks)", c.Algorithm)
	}
	names := make([]string, 0, len(c.VerifyClaims))
	for n := range c.VerifyClaims {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if n == "" {
			return nil, errors.New("authn: jwt: verify_claims: empty claim name")
		}
		t, err := placeholder.Parse(c.VerifyClaims[n], placeholder.Names(false, "clientid", "username"))
		if err != nil {
			return nil, fmt.Errorf("authn: jwt: verify_claims %q: %w", n, err)
		}
		j.claims = append(j.claims, verifyClaim{name: n, value: t})
	}
	return j, nil
}

// Name implements Source: "jwt". Safe for concurrent use.
func (*JWT) Name() string { return "jwt" }

// Check implements Source. It verifies the token in memory, but may
// first fetch the JWKS (bounded by JWKSTimeout; other tokens meanwhile
// use the keys they have unless they have none). Safe for concurrent
// use.
func (j *JWT) Check(ctx context.Context, req *gateway.AuthRequest) (Result, *gateway.Identity, error) {
	token := req.Password
	if j.from == "username" {
		token = req.Client.Username
	}
	if token == "" {
		return j.onMissing, nil, nil
	}
	if len(token) > MaxTokenSize {
		return Ignore, nil, fmt.Errorf("authn: jwt: a token of %d bytes exceeds %d bytes", len(token), MaxTokenSize)
	}
	claims := jwt.MapClaims{}
	p := jwt.NewParser(jwt.WithValidMethods(j.methods), jwt.WithoutClaimsValidation(), jwt.WithJSONNumber())
	if _, err := p.ParseWithClaims(token, claims, j.keyfunc(ctx)); err != nil {
		return Ignore, nil, fmt.Errorf("authn: jwt: %w", err)
	}
	id, reason := j.identity(claims, req)
	if reason != "" {
		j.log.Debug("authn: jwt: denied", "clientid", req.Client.ClientID, "username", req.Client.Username, "reason", reason)
		return Deny, nil, nil
	}
	return Allow, id, nil
}

// identity checks the verified claims and returns the client's
// Identity, or why the token is denied.
func (j *JWT) identity(claims jwt.MapClaims, req *gateway.AuthRequest) (*gateway.Identity, string) {
	now := float64(j.now().Unix())
	exp, hasExp := claims["exp"]
	var expAt float64
	if hasExp {
		n, ok := claimNumber(exp)
		if !ok {
			return nil, "claim exp is not a number"
		}
		if !(now < n) {
			return nil, "the token has expired"
		}
		expAt = n
	}
	if nbf, ok := claims["nbf"]; ok {
		n, ok := claimNumber(nbf)
		if !ok {
			return nil, "claim nbf is not a number"
		}
		if !(n <= now) {
			return nil, "the token is not valid yet"
		}
	}
	value := authnValue(req)
	for _, c := range j.claims {
		want := c.value.Render(value, nil)
		got, ok := claims[c.name]
		if !ok {
			return nil, fmt.Sprintf("claim %q is missing", c.name)
		}
		if !claimEquals(c.name, got, want) {
			return nil, fmt.Sprintf("claim %q does not have the expected value", c.name)
		}
	}
	id := &gateway.Identity{Superuser: isTrue(claims["is_superuser"])}
	if v, ok := claims["client_attrs"]; ok {
		var err error
		if id.Attrs, err = clientAttrs(v); err != nil {
			return nil, err.Error()
		}
	}
	var until time.Time
	if hasExp && expAt < 253402300800 { // year 10000: later is never
		sec, frac := math.Modf(expAt)
		until = time.Unix(int64(sec), int64(frac*1e9))
		if j.disconnect {
			id.ExpireAt = until
		}
	}
	if v, ok := claims[j.aclClaim]; ok {
		acl, err := parseACL(v)
		if err != nil {
			return nil, err.Error()
		}
		if !until.IsZero() && !j.disconnect {
			acl = &expiringACL{ACL: acl, until: until, now: func() time.Time { return j.now() }}
		}
		id.ACL = acl
	}
	return id, ""
}

// claimNumber reads exp or nbf: a JSON number, or a string of one (as
// EMQX converts them).
func claimNumber(v any) (float64, bool) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = v
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(s, "xXpP_") {
		return 0, false
	}
	return f, true
}

// claimEquals compares a claim with its expected value: strings equal,
// or (aud) a non-empty array that holds it; an empty aud never matches.
func claimEquals(name string, got any, want string) bool {
	switch g := got.(type) {
	case string:
		return g == want && (name != "aud" || g != "")
	case []any:
		if name != "aud" {
			return false
		}
		for _, e := range g {
			if s, ok := e.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// expiringACL is a token's ACL that outlives the token (the connection
// is kept after exp): once exp passes it denies everything, as EMQX's
// client_info source.
type expiringACL struct {
	gateway.ACL
	until time.Time
	now   func() time.Time
}

// Match implements gateway.ACL; safe for concurrent use.
func (a *expiringACL) Match(req *gateway.AuthzRequest) gateway.Decision {
	if !a.now().Before(a.until) {
		return gateway.Deny
	}
	return a.ACL.Match(req)
}

// keyfunc returns the key, or with a JWKS the keys that fit the token's
// kid and algorithm.
func (j *JWT) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if j.jwks == nil {
			return j.key, nil
		}
		kid, _ := t.Header["kid"].(string)
		keys, err := j.jwks.get(ctx, kid)
		if err != nil {
			return nil, err
		}
		alg := t.Method.Alg()
		var set jwt.VerificationKeySet
		for _, k := range keys {
			if kid != "" && k.kid != "" && k.kid != kid || k.alg != "" && k.alg != alg || !slices.Contains(methodsFor(k.key), alg) {
				continue
			}
			set.Keys = append(set.Keys, k.key)
		}
		if len(set.Keys) == 0 {
			return nil, fmt.Errorf("no key of the JWKS fits the token (kid %q, alg %s)", kid, alg)
		}
		return set, nil
	}
}

// methodsFor returns the algorithms a public key verifies.
func methodsFor(key any) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return rsaMethods
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// parsePublicKeyPEM reads the first PEM block of text.
func parsePublicKeyPEM(text string) (any, error) {
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil, errors.New("authn: jwt: public_key: no PEM block (want the PEM text of the key)")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, fmt.Errorf("authn: jwt: public_key: a %s: give the public key, never the private one", block.Type)
		}
		return nil, fmt.Errorf("authn: jwt: public_key: PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("authn: jwt: public_key: %w", err)
	}
	if methodsFor(key) == nil {
		return nil, fmt.Errorf("authn: jwt: public_key: a %T: want an RSA, ECDSA (P-256, P-384, P-521) or Ed25519 key", key)
	}
	return key, nil
}

// jwks is a JSON Web Key Set, fetched when needed: when its keys are
// older than refresh, or when a token names a kid they lack (at most
// once in retry). Only one fetch runs at a time; while it runs, tokens
// use the keys at hand, unless there are none or the kid is missing, in
// which case they wait for it. A failed fetch keeps the old keys.
type jwks struct {
	src     string // https URL or file path
	isURL   bool
	hc      *http.Client
	timeout time.Duration
	refresh time.Duration
	retry   time.Duration
	now     func() time.Time

	mu     sync.Mutex
	keys   []jwk
	loaded time.Time     // when keys were fetched
	tried  time.Time     // when the last fetch started
	err    error         // the last fetch's error
	wait   chan struct{} // closed when the fetch in flight ends; nil if none
}

type jwk struct {
	kid, alg string
	key      any
}

// maxJWKS bounds a JWKS document.
const maxJWKS = 1 << 20

func newJWKS(c JWTConfig, now func() time.Time) (*jwks, error) {
	s := &jwks{src: c.JWKSEndpoint, refresh: c.JWKSRefresh, timeout: c.JWKSTimeout, now: now}
	if s.refresh == 0 {
		s.refresh = DefaultJWKSRefresh
	}
	if s.timeout == 0 {
		s.timeout = DefaultJWKSTimeout
	}
	if s.refresh < 0 || s.timeout < 0 {
		return nil, errors.New("authn: jwt: the JWKS refresh interval and timeout must be positive")
	}
	s.retry = min(jwksMissInterval, s.refresh)
	switch {
	case s.src == "":
		return nil, errors.New("authn: jwt: use_jwks: the JWKS endpoint (an https URL or a file) is required")
	case strings.HasPrefix(strings.ToLower(s.src), "https://"):
		u, err := url.Parse(s.src)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("authn: jwt: JWKS endpoint %q: not a valid URL", s.src)
		}
		s.isURL = true
		tr := &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: s.timeout}).DialContext,
			TLSHandshakeTimeout: s.timeout,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     30 * time.Second,
		}
		if c.JWKSTLS != nil {
			tr.TLSClientConfig = c.JWKSTLS.Clone()
		}
		s.hc = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	case strings.Contains(s.src, "://"):
		return nil, fmt.Errorf("authn: jwt: JWKS endpoint %q: want an https URL or a file (keys fetched over plain http could be replaced)", s.src)
	default:
		if c.JWKSTLS != nil {
			return nil, errors.New("authn: jwt: JWKS TLS is set but the endpoint is a file")
		}
		keys, err := s.fetch(context.Background())
		if err != nil {
			return nil, err
		}
		s.keys, s.loaded, s.tried = keys, now(), now()
	}
	return s, nil
}

// get returns the keys to verify a token with kid (may be ""), fetching
// them first if needed. Safe for concurrent use.
func (s *jwks) get(ctx context.Context, kid string) ([]jwk, error) {
	waited := false
	for {
		s.mu.Lock()
		now := s.now()
		// A clock that went back (now before loaded or tried) counts as
		// time passed: keys are never kept forever by a clock jump.
		stale := s.keys == nil || now.Sub(s.loaded) >= s.refresh || now.Before(s.loaded)
		miss := kid != "" && !slices.ContainsFunc(s.keys, func(k jwk) bool { return k.kid == kid })
		due := s.tried.IsZero() || now.Sub(s.tried) >= s.retry || now.Before(s.tried)
		switch {
		case s.wait == nil && !waited && (stale || miss) && due:
			w := make(chan struct{})
			s.wait, s.tried = w, now
			s.mu.Unlock()
			keys, err := s.fetch(ctx)
			s.mu.Lock()
			if err == nil {
				s.keys, s.loaded = keys, s.now()
			}
			s.err, s.wait = err, nil
			close(w)
			keys, err = s.keys, s.err
			s.mu.Unlock()
			if keys == nil {
				return nil, err
			}
			return keys, nil
		case s.wait != nil && !waited && (s.keys == nil || miss):
			w := s.wait
			s.mu.Unlock()
			select {
			case <-w:
				waited = true
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		keys, err := s.keys, s.err
		s.mu.Unlock()
		if keys == nil {
			if err == nil {
				err = errors.New("authn: jwt: JWKS: no keys yet")
			}
			return nil, err
		}
		return keys, nil
	}
}

// fetch reads and parses the JWKS. It is not bounded by ctx's
// cancellation (its result serves every waiting token) but by the
// timeout.
func (s *jwks) fetch(ctx context.Context) ([]jwk, error) {
	var data []byte
	if s.isURL {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.src, nil)
		if err != nil {
			return nil, fmt.Errorf("authn: jwt: JWKS %s: %w", s.src, err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := s.hc.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("authn: jwt: JWKS %s: %w", s.src, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("authn: jwt: JWKS %s: status %d", s.src, resp.StatusCode)
		}
		if data, err = io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1)); err != nil {
			return nil, fmt.Errorf("authn: jwt: JWKS %s: %w", s.src, err)
		}
	} else {
		f, err := os.Open(s.src)
		if err != nil {
			return nil, fmt.Errorf("authn: jwt: JWKS: %w", err)
		}
		data, err = io.ReadAll(io.LimitReader(f, maxJWKS+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("authn: jwt: JWKS: %w", err)
		}
	}
	if len(data) > maxJWKS {
		return nil, fmt.Errorf("authn: jwt: JWKS %s: larger than %d bytes", s.src, maxJWKS)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("authn: jwt: JWKS %s: %w", s.src, err)
	}
	return keys, nil
}

// rawJWK is one key of a JWKS (RFC 7517, 7518, 8037).
type rawJWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads {"keys": [...]}. Keys that are not for signatures
// ("use" other than "sig"), of unknown types or broken are skipped; a
// set without a usable key is an error.
func parseJWKS(data []byte) ([]jwk, error) {
	var set struct {
		Keys []rawJWK `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %v", err)
	}
	var keys []jwk
	var errs []error
	for i, r := range set.Keys {
		if r.Use != "" && r.Use != "sig" {
			continue
		}
		key, err := r.publicKey()
		if err != nil {
			errs = append(errs, fmt.Errorf("key %d (kid %q): %w", i, r.Kid, err))
			continue
		}
		if key == nil {
			continue
		}
		if r.Alg != "" && !slices.Contains(methodsFor(key), r.Alg) {
			errs = append(errs, fmt.Errorf("key %d (kid %q): alg %q does not fit a %s key", i, r.Kid, r.Alg, r.Kty))
			continue
		}
		keys = append(keys, jwk{kid: r.Kid, alg: r.Alg, key: key})
	}
	if len(keys) == 0 {
		return nil, errors.Join(append([]error{errors.New("no usable signature key")}, errs...)...)
	}
	return keys, nil
}

// publicKey decodes r; nil, nil for a type it does not verify with.
func (r *rawJWK) publicKey() (any, error) {
	b64 := func(s string) ([]byte, error) {
		return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	switch r.Kty {
	case "RSA":
		n, err := b64(r.N)
		if err != nil || len(n) == 0 {
			return nil, errors.New("bad n")
		}
		e, err := b64(r.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad e")
		}
		ei := new(big.Int).SetBytes(e).Int64()
		if ei < 3 || ei%2 == 0 {
			return nil, errors.New("bad e")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ei)}, nil
	case "EC":
		var c elliptic.Curve
		switch r.Crv {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		case "P-521":
			c = elliptic.P521()
		default:
			return nil, fmt.Errorf("curve %q: want P-256, P-384 or P-521", r.Crv)
		}
		x, err1 := b64(r.X)
		y, err2 := b64(r.Y)
		size := (c.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad x or y")
		}
		k, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, err
		}
		return k, nil
	case "OKP":
		if r.Crv != "Ed25519" {
			return nil, nil
		}
		x, err := b64(r.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad x")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, nil
}
