package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/protogate/protogate/gateway"
)

// Test keys, made once per test binary.
var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	ecKey  = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	ec384  = sync.OnceValue(func() *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	edKey  = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return must(k, err)
	})
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// sign makes a token; kid "" leaves it out of the header.
func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pkixPEM(pub any) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(pub))}))
}

func tokenReq(token string) *gateway.AuthRequest {
	r := authReq()
	r.Password = token
	return r
}

func newJWTAt(t *testing.T, c JWTConfig, now time.Time) *JWT {
	t.Helper()
	j, err := NewJWT(c)
	if err != nil {
		t.Fatal(err)
	}
	j.now = func() time.Time { return now }
	return j
}

func TestJWT(t *testing.T) {
	now := fixedNow
	hmac := JWTConfig{Algorithm: "hmac-based", Secret: "s3cret"}
	rawSecret := []byte{0, 1, 2, 0xff, 'k'}
	b64 := JWTConfig{Algorithm: "hmac-based", Secret: base64.StdEncoding.EncodeToString(rawSecret), SecretBase64Encoded: true}
	rsaPub := JWTConfig{Algorithm: "public-key", PublicKey: pkixPEM(&rsaKey().PublicKey)}
	rsaPKCS1 := JWTConfig{Algorithm: "public-key", PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey)}))}
	ecPub := JWTConfig{Algorithm: "public-key", PublicKey: pkixPEM(&ecKey().PublicKey)}
	edPub := JWTConfig{Algorithm: "public-key", PublicKey: pkixPEM(edKey().Public())}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jwt"}, NotBefore: now, NotAfter: now.Add(time.Hour)}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey().PublicKey, ecKey()))}))
	certPub := JWTConfig{Algorithm: "public-key", PublicKey: certPEM}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", c) }
	exp := now.Unix() + 600
	f := false
	noDisconnect := hmac
	noDisconnect.DisconnectAfterExpire = &f
	claimsCfg := hmac
	claimsCfg.VerifyClaims = map[string]string{"clientid": "${clientid}", "sub": "user-${username}"}
	audCfg := hmac
	audCfg.VerifyClaims = map[string]string{"aud": "gateway"}
	fromUser := hmac
	fromUser.From = "username"
	aclName := hmac
	aclName.ACLClaimName = "perms"
	onMissingDeny := hmac
	onMissingDeny.OnMissing = Deny
	none := must(jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x"}).SignedString(jwt.UnsafeAllowNoneSignatureType))

	tests := []struct {
		name    string
		c       JWTConfig
		req     *gateway.AuthRequest
		want    Result
		wantErr string
		check   func(*testing.T, *JWT, *gateway.Identity)
	}{
		{name: "HS256", c: hmac, req: tokenReq(hs(jwt.MapClaims{"sub": "x"})), want: Allow, check: func(t *testing.T, _ *JWT, id *gateway.Identity) {
			if id.Superuser || !id.ExpireAt.IsZero() || id.ACL != nil {
				t.Errorf("identity %+v", id)
			}
		}},
		{name: "HS384", c: hmac, req: tokenReq(sign(t, jwt.SigningMethodHS384, []byte("s3cret"), "", jwt.MapClaims{})), want: Allow},
		{name: "HS512", c: hmac, req: tokenReq(sign(t, jwt.SigningMethodHS512, []byte("s3cret"), "", jwt.MapClaims{})), want: Allow},
		{name: "HS256 wrong secret", c: hmac, req: tokenReq(sign(t, jwt.SigningMethodHS256, []byte("other"), "", jwt.MapClaims{})), wantErr: "signature is invalid"},
		{name: "base64 secret", c: b64, req: tokenReq(sign(t, jwt.SigningMethodHS256, rawSecret, "", jwt.MapClaims{})), want: Allow},
		{name: "base64 secret taken as text", c: b64, req: tokenReq(sign(t, jwt.SigningMethodHS256, []byte(b64.Secret), "", jwt.MapClaims{})), wantErr: "signature is invalid"},
		{name: "RS256", c: rsaPub, req: tokenReq(sign(t, jwt.SigningMethodRS256, rsaKey(), "", jwt.MapClaims{"sub": "x"})), want: Allow},
		{name: "RS512 PKCS1 PEM", c: rsaPKCS1, req: tokenReq(sign(t, jwt.SigningMethodRS512, rsaKey(), "", jwt.MapClaims{})), want: Allow},
		{name: "PS256", c: rsaPub, req: tokenReq(sign(t, jwt.SigningMethodPS256, rsaKey(), "", jwt.MapClaims{})), want: Allow},
		{name: "ES256", c: ecPub, req: tokenReq(sign(t, jwt.SigningMethodES256, ecKey(), "", jwt.MapClaims{})), want: Allow},
		{name: "ES256 from a certificate", c: certPub, req: tokenReq(sign(t, jwt.SigningMethodES256, ecKey(), "", jwt.MapClaims{})), want: Allow},
		{name: "ES384 token, P-256 key", c: ecPub, req: tokenReq(sign(t, jwt.SigningMethodES384, ec384(), "", jwt.MapClaims{})), wantErr: "signing method ES384 is invalid"},
		{name: "EdDSA", c: edPub, req: tokenReq(sign(t, jwt.SigningMethodEdDSA, edKey(), "", jwt.MapClaims{})), want: Allow},
		{name: "RS256 token, EC key", c: ecPub, req: tokenReq(sign(t, jwt.SigningMethodRS256, rsaKey(), "", jwt.MapClaims{})), wantErr: "signing method RS256 is invalid"},
		{name: "alg none refused", c: hmac, req: tokenReq(none), wantErr: "signing method none is invalid"},
		{name: "alg none refused by a public key", c: rsaPub, req: tokenReq(none), wantErr: "signing method none is invalid"},
		{name: "HS256 with the public key as secret", c: rsaPub, req: tokenReq(sign(t, jwt.SigningMethodHS256, []byte(rsaPub.PublicKey), "", jwt.MapClaims{})), wantErr: "signing method HS256 is invalid"},
		{name: "tampered payload", c: hmac, req: tokenReq(tamper(hs(jwt.MapClaims{"is_superuser": false}))), wantErr: "signature is invalid"},
		{name: "garbage", c: hmac, req: tokenReq("not-a-jwt"), wantErr: "malformed"},
		{name: "1 MB token", c: hmac, req: tokenReq(strings.Repeat("a", 1<<20)), wantErr: "exceeds 8192 bytes"},
		{name: "missing token ignored", c: hmac, req: tokenReq(""), want: Ignore},
		{name: "missing token denied", c: onMissingDeny, req: tokenReq(""), want: Deny},
		{name: "from username", c: fromUser, req: func() *gateway.AuthRequest {
			r := authReq()
			r.Client.Username = hs(jwt.MapClaims{})
			return r
		}(), want: Allow},
		{name: "from username, none there", c: fromUser, req: func() *gateway.AuthRequest {
			r := tokenReq(hs(jwt.MapClaims{})) // a token in the password does not count
			r.Client.Username = ""
			return r
		}(), want: Ignore},
		{name: "from username, not a token", c: fromUser, req: authReq(), wantErr: "malformed"},
		{name: "exp in the future", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": exp})), want: Allow, check: func(t *testing.T, _ *JWT, id *gateway.Identity) {
			if !id.ExpireAt.Equal(time.Unix(exp, 0)) {
				t.Errorf("ExpireAt = %v, want %v", id.ExpireAt, time.Unix(exp, 0))
			}
		}},
		{name: "expired", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": now.Unix() - 1})), want: Deny},
		{name: "exp now", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": now.Unix()})), want: Deny},
		{name: "exp string", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": "1700000600"})), want: Allow},
		{name: "exp string expired", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": "1699999999"})), want: Deny},
		{name: "exp float", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": float64(exp) + 0.5})), want: Allow},
		{name: "exp not a number", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": "soon"})), want: Deny},
		{name: "exp object", c: hmac, req: tokenReq(hs(jwt.MapClaims{"exp": map[string]any{}})), want: Deny},
		{name: "nbf in the future", c: hmac, req: tokenReq(hs(jwt.MapClaims{"nbf": now.Unix() + 1})), want: Deny},
		{name: "nbf string in the future", c: hmac, req: tokenReq(hs(jwt.MapClaims{"nbf": "1700000001"})), want: Deny},
		{name: "nbf now", c: hmac, req: tokenReq(hs(jwt.MapClaims{"nbf": now.Unix()})), want: Allow},
		{name: "iat in the future not checked", c: hmac, req: tokenReq(hs(jwt.MapClaims{"iat": now.Unix() + 3600})), want: Allow},
		{name: "disconnect_after_expire false", c: noDisconnect, req: tokenReq(hs(jwt.MapClaims{"exp": exp, "acl": []any{map[string]any{"permission": "allow", "action": "all", "topic": "#"}}})), want: Allow,
			check: func(t *testing.T, j *JWT, id *gateway.Identity) {
				if !id.ExpireAt.IsZero() {
					t.Errorf("ExpireAt = %v, want none", id.ExpireAt)
				}
				wantMatch(t, id.ACL, pubReq("a"), gateway.Allow)
				j.now = func() time.Time { return time.Unix(exp, 0) }
				wantMatch(t, id.ACL, pubReq("a"), gateway.Deny) // the ACL expires with the token
			}},
		{name: "verify_claims", c: claimsCfg, req: tokenReq(hs(jwt.MapClaims{"clientid": "c1", "sub": "user-u1"})), want: Allow},
		{name: "verify_claims wrong clientid", c: claimsCfg, req: tokenReq(hs(jwt.MapClaims{"clientid": "c2", "sub": "user-u1"})), want: Deny},
		{name: "verify_claims missing", c: claimsCfg, req: tokenReq(hs(jwt.MapClaims{"clientid": "c1"})), want: Deny},
		{name: "verify_claims number", c: claimsCfg, req: tokenReq(hs(jwt.MapClaims{"clientid": 1, "sub": "user-u1"})), want: Deny},
		{name: "aud string", c: audCfg, req: tokenReq(hs(jwt.MapClaims{"aud": "gateway"})), want: Allow},
		{name: "aud array", c: audCfg, req: tokenReq(hs(jwt.MapClaims{"aud": []string{"other", "gateway"}})), want: Allow},
		{name: "aud array without", c: audCfg, req: tokenReq(hs(jwt.MapClaims{"aud": []string{"other"}})), want: Deny},
		{name: "aud empty array", c: audCfg, req: tokenReq(hs(jwt.MapClaims{"aud": []string{}})), want: Deny},
		{name: "aud wrong", c: audCfg, req: tokenReq(hs(jwt.MapClaims{"aud": "gateway2"})), want: Deny},
		{name: "aud missing", c: audCfg, req: tokenReq(hs(jwt.MapClaims{})), want: Deny},
		{name: "superuser", c: hmac, req: tokenReq(hs(jwt.MapClaims{"is_superuser": "true"})), want: Allow,
			check: func(t *testing.T, _ *JWT, id *gateway.Identity) { super(t, id) }},
		{name: "client_attrs", c: hmac, req: tokenReq(hs(jwt.MapClaims{"client_attrs": map[string]any{"group": "g", "bad/key": "x"}})), want: Allow,
			check: func(t *testing.T, _ *JWT, id *gateway.Identity) {
				if len(id.Attrs) != 1 || id.Attrs["group"] != "g" {
					t.Errorf("Attrs = %v", id.Attrs)
				}
			}},
		{name: "client_attrs malformed", c: hmac, req: tokenReq(hs(jwt.MapClaims{"client_attrs": []any{"g"}})), want: Deny},
		{name: "acl rules: no match asks further", c: hmac, req: tokenReq(hs(jwt.MapClaims{"acl": []any{map[string]any{"permission": "allow", "action": "publish", "topic": "up/${clientid}"}}})), want: Allow,
			check: func(t *testing.T, _ *JWT, id *gateway.Identity) {
				wantMatch(t, id.ACL, pubReq("up/c1"), gateway.Allow)
				wantMatch(t, id.ACL, pubReq("up/c2"), gateway.NoMatch)
			}},
		{name: "acl object: no match denies", c: hmac, req: tokenReq(hs(jwt.MapClaims{"acl": map[string]any{"pub": []string{"up/#"}, "sub": []string{"eq down/#"}}})), want: Allow,
			check: func(t *testing.T, _ *JWT, id *gateway.Identity) {
				wantMatch(t, id.ACL, pubReq("up/1"), gateway.Allow)
				wantMatch(t, id.ACL, subReq("down/#"), gateway.Allow)
				wantMatch(t, id.ACL, subReq("down/1"), gateway.Deny)
				wantMatch(t, id.ACL, pubReq("other"), gateway.Deny)
			}},
		{name: "acl malformed", c: hmac, req: tokenReq(hs(jwt.MapClaims{"acl": []any{map[string]any{"permission": "allow"}}})), want: Deny},
		{name: "acl claim name", c: aclName, req: tokenReq(hs(jwt.MapClaims{"acl": "ignored", "perms": map[string]any{"all": []string{"#"}}})), want: Allow,
			check: func(t *testing.T, _ *JWT, id *gateway.Identity) { wantMatch(t, id.ACL, subReq("x/y"), gateway.Allow) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJWTAt(t, tc.c, now)
			start := time.Now()
			r, id, err := j.Check(context.Background(), tc.req)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Check took %v", d)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Check = %v, %v; want an error with %q", r, err, tc.wantErr)
				}
				if id != nil {
					t.Errorf("an Identity with a failure: %+v", id)
				}
				return
			}
			if err != nil || r != tc.want {
				t.Fatalf("Check = %v, %v; want %v", r, err, tc.want)
			}
			if (r == Allow) != (id != nil) {
				t.Fatalf("%v with Identity %+v", r, id)
			}
			if tc.check != nil {
				tc.check(t, j, id)
			}
		})
	}
}

// tamper flips the payload to claim a superuser, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"is_superuser":true}`))
	return strings.Join(parts, ".")
}

func TestNewJWTErrors(t *testing.T) {
	priv := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(ecKey()))}))
	for _, tc := range []struct {
		name string
		c    JWTConfig
		want string
	}{
		{"no algorithm", JWTConfig{Secret: "x"}, "algorithm"},
		{"bad algorithm", JWTConfig{Algorithm: "rsa"}, `algorithm "rsa"`},
		{"bad from", JWTConfig{Algorithm: "hmac-based", Secret: "x", From: "clientid"}, `from "clientid"`},
		{"no secret", JWTConfig{Algorithm: "hmac-based"}, "secret is required"},
		{"bad base64", JWTConfig{Algorithm: "hmac-based", Secret: "!!", SecretBase64Encoded: true}, "not valid base64"},
		{"hmac with a key", JWTConfig{Algorithm: "hmac-based", Secret: "x", PublicKey: "k"}, "must not be set"},
		{"no public key", JWTConfig{Algorithm: "public-key"}, "public_key (PEM) is required"},
		{"not PEM", JWTConfig{Algorithm: "public-key", PublicKey: "/etc/key.pem"}, "no PEM block"},
		{"private key", JWTConfig{Algorithm: "public-key", PublicKey: priv}, "never the private one"},
		{"bad PEM type", JWTConfig{Algorithm: "public-key", PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "FOO", Bytes: []byte{1}}))}, `"FOO"`},
		{"broken key", JWTConfig{Algorithm: "public-key", PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}))}, "public_key"},
		{"public key and secret", JWTConfig{Algorithm: "public-key", PublicKey: "x", Secret: "y"}, "must not be set"},
		{"jwks without endpoint", JWTConfig{UseJWKS: true}, "endpoint"},
		{"jwks over http", JWTConfig{UseJWKS: true, JWKSEndpoint: "http://idp/jwks"}, "want an https URL or a file"},
		{"jwks hmac", JWTConfig{UseJWKS: true, Algorithm: "hmac-based", JWKSEndpoint: "https://idp/jwks"}, "a JWKS holds public keys"},
		{"jwks with a secret", JWTConfig{UseJWKS: true, Secret: "x", JWKSEndpoint: "https://idp/jwks"}, "must not be set"},
		{"jwks missing file", JWTConfig{UseJWKS: true, JWKSEndpoint: "/nonexistent/jwks.json"}, "no such file"},
		{"jwks negative refresh", JWTConfig{UseJWKS: true, JWKSEndpoint: "https://idp/jwks", JWKSRefresh: -1}, "positive"},
		{"verify_claims placeholder", JWTConfig{Algorithm: "hmac-based", Secret: "x", VerifyClaims: map[string]string{"sub": "${password}"}}, "unknown placeholder"},
		{"verify_claims empty name", JWTConfig{Algorithm: "hmac-based", Secret: "x", VerifyClaims: map[string]string{"": "x"}}, "empty claim name"},
		{"on_missing allow", JWTConfig{Algorithm: "hmac-based", Secret: "x", OnMissing: Allow}, "on_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewJWT(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "authn: jwt: ") {
				t.Fatalf("NewJWT: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// jwkOf returns the public JWK of a private key.
func jwkOf(kid string, priv any) map[string]any {
	b := base64.RawURLEncoding.EncodeToString
	m := map[string]any{}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		m = map[string]any{"kty": "RSA", "n": b(k.N.Bytes()), "e": b(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		pt := must(k.PublicKey.Bytes()) // 0x04 || x || y
		size := (len(pt) - 1) / 2
		m = map[string]any{"kty": "EC", "crv": k.Curve.Params().Name, "x": b(pt[1 : 1+size]), "y": b(pt[1+size:])}
	case ed25519.PrivateKey:
		m = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b(k.Public().(ed25519.PublicKey))}
	}
	if kid != "" {
		m["kid"] = kid
	}
	return m
}

func jwksOf(keys ...map[string]any) []byte {
	return must(json.Marshal(map[string]any{"keys": keys}))
}

// clock is a test clock that only moves when told.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// jwksServer serves a JWKS that the test replaces, and counts fetches.
type jwksServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: 200}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the unverified-client test's handshake errors
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	s.body, s.status = body, status
	s.mu.Unlock()
}

func (s *jwksServer) tls() *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(s.srv.Certificate())
	return &tls.Config{RootCAs: roots}
}

// TestJWKSRotation serves a JWKS over https and rotates its keys: a
// token of a new key verifies once the set is fetched again, on a kid
// the set lacks (at most once in 10s) or after the refresh interval,
// driven by a test clock.
func TestJWKSRotation(t *testing.T) {
	keyA, keyB, keyC := rsaKey(), ecKey(), edKey()
	s := newJWKSServer(t, jwksOf(jwkOf("a", keyA)))
	clk := newClock(fixedNow)
	j, err := NewJWT(JWTConfig{UseJWKS: true, JWKSEndpoint: s.srv.URL + "/jwks", JWKSTLS: s.tls(), JWKSRefresh: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	j.now = clk.Now
	if s.fetches.Load() != 0 {
		t.Fatal("NewJWT fetched the JWKS of a URL")
	}
	check := func(step, token string, want Result, wantErr bool, fetches int32) {
		t.Helper()
		r, _, err := j.Check(context.Background(), tokenReq(token))
		if (err != nil) != wantErr || !wantErr && r != want {
			t.Errorf("%s: Check = %v, %v; want %v (error %v)", step, r, err, want, wantErr)
		}
		if n := s.fetches.Load(); n != fetches {
			t.Errorf("%s: %d fetches, want %d", step, n, fetches)
		}
	}
	tokA := sign(t, jwt.SigningMethodRS256, keyA, "a", jwt.MapClaims{"sub": "a"})
	tokB := sign(t, jwt.SigningMethodES256, keyB, "b", jwt.MapClaims{"sub": "b"})
	tokC := sign(t, jwt.SigningMethodEdDSA, keyC, "", jwt.MapClaims{"sub": "c"})
	check("first token fetches", tokA, Allow, false, 1)
	check("cached", tokA, Allow, false, 1)
	check("wrong alg for kid a", sign(t, jwt.SigningMethodPS256, keyA, "a", jwt.MapClaims{}), Allow, false, 1) // RSA keys verify PS too

	s.set(200, jwksOf(jwkOf("b", keyB)))
	check("new kid, fetched too recently", tokB, 0, true, 1)
	clk.Advance(11 * time.Second)
	check("new kid fetches", tokB, Allow, false, 2)
	check("old kid is gone", tokA, 0, true, 2)
	check("old kid does not fetch again at once", tokA, 0, true, 2)

	s.set(200, jwksOf(jwkOf("", keyC)))
	check("no kid, fresh set", tokC, 0, true, 2)
	clk.Advance(time.Minute)
	check("refresh interval passed", tokC, Allow, false, 3)

	// A failing endpoint keeps the keys it gave.
	s.set(500, nil)
	clk.Advance(time.Minute)
	check("endpoint down: old keys", tokC, Allow, false, 4)
	check("endpoint down: no refetch storm", tokC, Allow, false, 4)
	s.set(200, []byte(`{"keys":"nope"}`))
	clk.Advance(11 * time.Second)
	check("broken JWKS: old keys", tokC, Allow, false, 5)

	// Many tokens on a stale set fetch it once.
	s.set(200, jwksOf(jwkOf("b", keyB), jwkOf("", keyC)))
	clk.Advance(time.Minute)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			tok := tokC
			if i%2 == 0 {
				tok = tokB
			}
			if r, _, err := j.Check(context.Background(), tokenReq(tok)); err != nil || r != Allow {
				t.Errorf("concurrent Check = %v, %v", r, err)
			}
		})
	}
	wg.Wait()
	if n := s.fetches.Load(); n != 6 {
		t.Errorf("%d fetches after the concurrent checks, want 6", n)
	}
}

// TestJWKSUnreachable checks that no keys at all is a backend failure,
// retried at most once in 10s.
func TestJWKSUnreachable(t *testing.T) {
	s := newJWKSServer(t, nil)
	s.set(503, nil)
	clk := newClock(fixedNow)
	j, err := NewJWT(JWTConfig{UseJWKS: true, JWKSEndpoint: s.srv.URL, JWKSTLS: s.tls()})
	if err != nil {
		t.Fatal(err)
	}
	j.now = clk.Now
	tok := sign(t, jwt.SigningMethodES256, ecKey(), "k", jwt.MapClaims{})
	for range 3 {
		if _, _, err := j.Check(context.Background(), tokenReq(tok)); err == nil || !strings.Contains(err.Error(), "status 503") {
			t.Fatalf("Check: %v; want the JWKS failure", err)
		}
	}
	if n := s.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	s.set(200, jwksOf(jwkOf("k", ecKey())))
	clk.Advance(10 * time.Second)
	if r, _, err := j.Check(context.Background(), tokenReq(tok)); err != nil || r != Allow {
		t.Fatalf("Check = %v, %v", r, err)
	}
	// The server's certificate must be verified.
	j2, err := NewJWT(JWTConfig{UseJWKS: true, JWKSEndpoint: s.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := j2.Check(context.Background(), tokenReq(tok)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Check with an unverified JWKS server: %v", err)
	}
}

// TestJWKSFile reads the JWKS from a file, again after the refresh
// interval.
func TestJWKSFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksOf(jwkOf("r", rsaKey()), map[string]any{"kty": "oct", "k": "c2VjcmV0"}, map[string]any{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock(fixedNow)
	j, err := NewJWT(JWTConfig{UseJWKS: true, JWKSEndpoint: path})
	if err != nil {
		t.Fatal(err)
	}
	j.now = clk.Now
	tokR := sign(t, jwt.SigningMethodRS384, rsaKey(), "r", jwt.MapClaims{})
	tokE := sign(t, jwt.SigningMethodEdDSA, edKey(), "e", jwt.MapClaims{})
	if r, _, err := j.Check(context.Background(), tokenReq(tokR)); err != nil || r != Allow {
		t.Fatalf("Check = %v, %v", r, err)
	}
	if err := os.WriteFile(path, jwksOf(jwkOf("e", edKey())), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultJWKSRefresh)
	if r, _, err := j.Check(context.Background(), tokenReq(tokE)); err != nil || r != Allow {
		t.Fatalf("after the rewrite: Check = %v, %v", r, err)
	}
	// An HS256 token must not verify with any JWKS key.
	hs := sign(t, jwt.SigningMethodHS256, []byte("secret"), "e", jwt.MapClaims{})
	if _, _, err := j.Check(context.Background(), tokenReq(hs)); err == nil {
		t.Fatal("an HS256 token verified against a JWKS")
	}
	if err := os.WriteFile(path, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewJWT(JWTConfig{UseJWKS: true, JWKSEndpoint: path}); err == nil || !strings.Contains(err.Error(), "no usable signature key") {
		t.Fatalf("NewJWT with an empty JWKS: %v", err)
	}
}

func TestParseJWKS(t *testing.T) {
	good := jwkOf("a", ecKey())
	for _, tc := range []struct {
		name  string
		keys  []map[string]any
		want  int
		error string
	}{
		{"all types", []map[string]any{jwkOf("r", rsaKey()), good, jwkOf("e", edKey()), jwkOf("p384", ec384())}, 4, ""},
		{"skips enc and unknown types", []map[string]any{good, {"kty": "RSA", "use": "enc"}, {"kty": "oct", "k": "AA"}, {"kty": "OKP", "crv": "X25519", "x": "AA"}}, 1, ""},
		{"alg fits", []map[string]any{{"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"], "alg": "ES256"}}, 1, ""},
		{"alg does not fit", []map[string]any{{"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["y"], "alg": "RS256"}}, 0, "does not fit"},
		{"point off the curve", []map[string]any{{"kty": "EC", "crv": "P-256", "x": good["x"], "y": good["x"]}}, 0, "no usable"},
		{"bad curve", []map[string]any{{"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}}, 0, "curve"},
		{"short x", []map[string]any{{"kty": "EC", "crv": "P-256", "x": "AA", "y": good["y"]}}, 0, "bad x or y"},
		{"even e", []map[string]any{{"kty": "RSA", "n": "AQAB", "e": "Ag"}}, 0, "bad e"},
		{"bad ed25519", []map[string]any{{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}, 0, "bad x"},
		{"empty", nil, 0, "no usable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS(jwksOf(tc.keys...))
			if tc.want == 0 {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("parseJWKS = %d keys, %v; want an error with %q", len(keys), err, tc.error)
				}
				return
			}
			if err != nil || len(keys) != tc.want {
				t.Fatalf("parseJWKS = %d keys, %v; want %d", len(keys), err, tc.want)
			}
		})
	}
	if _, err := parseJWKS([]byte(`[`)); err == nil {
		t.Error("parseJWKS accepted broken JSON")
	}
}

// FuzzJWT checks that no token, however broken, panics or allows
// without a valid signature.
func FuzzJWT(f *testing.F) {
	j, err := NewJWT(JWTConfig{Algorithm: "hmac-based", Secret: "k"})
	if err != nil {
		f.Fatal(err)
	}
	good := sign(f, jwt.SigningMethodHS256, []byte("k"), "", jwt.MapClaims{"exp": "1e99", "acl": map[string]any{"pub": []any{"a"}}})
	for _, s := range []string{good, tamper(good), "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat(".", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		r, id, err := j.Check(context.Background(), tokenReq(tok))
		if err == nil && r == Allow && tok != good && !strings.HasPrefix(tok, strings.Join(strings.Split(good, ".")[:2], ".")) {
			t.Fatalf("allowed %q: %+v", tok, id)
		}
	})
}
