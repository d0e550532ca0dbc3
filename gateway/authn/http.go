package authn

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authz"
	"github.com/protogate/protogate/internal/authhttp"
	"github.com/protogate/protogate/internal/placeholder"
)

// HTTPConfig configures an HTTP authenticator, as EMQX's authn http
// (emqx_authn_http). The URL's path and query, header values and body
// values may hold the placeholders ${clientid}, ${username},
// ${password}, ${peerhost}, ${peerport}, ${cert_common_name},
// ${cert_subject}, ${listener} and ${proto_name}; a value the request
// does not have renders as "". Values are escaped in the URL (path or
// query escaping); a rendered header value holding CR, LF or NUL is
// never sent (the request fails).
type HTTPConfig struct {
	// Method is get or post. Default: post. A GET appends the rendered
	// Body to the URL's query.
	Method string
	// URL is an http or https URL; placeholders only in its path and
	// query. Required.
	URL string
	// Headers are sent with each request. A POST's content-type chooses
	// the body's encoding: application/json (the default) or
	// application/x-www-form-urlencoded; any other is refused. A GET
	// may not have a content-type. Default accept: application/json.
	Headers map[string]string
	// Body maps field names to templates, sent as a JSON object of
	// strings, a form, or (GET) query parameters.
	Body map[string]string
	// RequestTimeout bounds one request, answer included. Default: 5s.
	RequestTimeout time.Duration
	// PoolSize bounds the connections to the backend, idle and active;
	// more requests wait for one. Default: 8.
	PoolSize int
	// TLS configures https; nil verifies with the system's roots. The
	// caller builds it for the security profile (hardened verifies the
	// server; legacy, as EMQX, may not).
	TLS *tls.Config
	// Logger receives at debug level why an answer denied a client or
	// could not be used (never the password). Default: slog.Default().
	Logger *slog.Logger
}

// HTTP asks an HTTP service whether a client may connect, with EMQX's
// request templating and response contract (ops-security §3.3):
//
//   - 204: allow, not a superuser;
//   - 200 with a JSON object or a form: "result" allow (with
//     is_superuser, client_attrs, expire_at and acl), deny, or ignore
//     (also when missing); another result is a backend failure;
//   - 200 with a body that does not parse or another content type, any
//     other status, a timeout or a transport error: backend failure,
//     which the chain's profile turns into ignore (legacy) or deny
//     (hardened).
//
// An allow whose expire_at is not an integer, is in the past or looks
// like milliseconds, whose acl or client_attrs is malformed, denies, as
// EMQX's bad_username_or_password. HTTP implements Source and is safe for
// concurrent use: one pooled client serves every Check.
type HTTP struct {
	c   *authhttp.Client
	log *slog.Logger
	now func() time.Time
}

var _ Source = (*HTTP)(nil)

// authnVars are the placeholders an authenticator can fill.
var authnVars = []string{"clientid", "username", "password", "peerhost", "peerport",
	"cert_common_name", "cert_subject", "listener", "proto_name"}

func authnAllowed(name string) error {
	if strings.HasPrefix(name, "client_attrs.") {
		return errors.New("client attributes are not known before authentication")
	}
	return placeholder.Names(false, authnVars...)(name)
}

// NewHTTP checks c and returns its authenticator. It does not contact
// the backend. The error of a bad configuration says which field is
// wrong and why. NewHTTP may be called concurrently.
func NewHTTP(c HTTPConfig) (*HTTP, error) {
	cl, err := authhttp.New("authn: http", authhttp.Config{Method: c.Method, URL: c.URL, Headers: c.Headers,
		Body: c.Body, RequestTimeout: c.RequestTimeout, PoolSize: c.PoolSize, TLS: c.TLS}, authnAllowed)
	if err != nil {
		return nil, err
	}
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	return &HTTP{c: cl, log: log, now: time.Now}, nil
}

// Name implements Source: "http". Safe for concurrent use.
func (*HTTP) Name() string { return "http" }

// Close closes the idle connections to the backend. Check may still be
// called after it (it opens new ones). Safe for concurrent use.
func (h *HTTP) Close() error {
	h.c.CloseIdleConnections()
	return nil
}

// Check implements Source: one request to the backend, bounded by the
// request timeout and ctx. Safe for concurrent use.
func (h *HTTP) Check(ctx context.Context, req *gateway.AuthRequest) (Result, *gateway.Identity, error) {
	resp, err := h.c.Do(ctx, authnValue(req))
	if err != nil {
		return Ignore, nil, err
	}
	r, id, reason, err := h.answer(resp)
	if reason != "" {
		h.log.Debug("authn: http: denied", "clientid", req.Client.ClientID, "username", req.Client.Username, "reason", reason)
	}
	return r, id, err
}

// answer reads the backend's response by EMQX's contract. reason says
// why a Deny came from a malformed allow.
func (h *HTTP) answer(resp *authhttp.Response) (r Result, id *gateway.Identity, reason string, err error) {
	switch resp.Status {
	case http.StatusNoContent:
		return Allow, &gateway.Identity{}, "", nil
	case http.StatusOK:
	default:
		return Ignore, nil, "", fmt.Errorf("authn: http: the backend answered status %d", resp.Status)
	}
	body, err := authhttp.ParseBody(resp.ContentType, resp.Body)
	if err != nil {
		return Ignore, nil, "", fmt.Errorf("authn: http: %w", err)
	}
	switch res, ok := body["result"]; {
	case !ok, res == "ignore":
		return Ignore, nil, "", nil
	case res == "deny":
		return Deny, nil, "", nil
	case res != "allow":
		return Ignore, nil, "", fmt.Errorf("authn: http: result %s: want allow, deny or ignore", quoteJSON(res))
	}
	id = &gateway.Identity{Superuser: isTrue(body["is_superuser"])}
	if v, ok := body["expire_at"]; ok {
		if id.ExpireAt, err = expireAt(v, h.now()); err != nil {
			return Deny, nil, err.Error(), nil
		}
	}
	if v, ok := body["client_attrs"]; ok {
		if id.Attrs, err = clientAttrs(v); err != nil {
			return Deny, nil, err.Error(), nil
		}
	}
	if v, ok := body["acl"]; ok {
		if id.ACL, err = parseACL(v); err != nil {
			return Deny, nil, err.Error(), nil
		}
	}
	return Allow, id, "", nil
}

// authnValue returns the placeholder values of req.
func authnValue(req *gateway.AuthRequest) func(string) string {
	return func(name string) string {
		switch name {
		case "clientid":
			return req.Client.ClientID
		case "username":
			return req.Client.Username
		case "password":
			return req.Password
		case "peerhost":
			if req.Peer.Addr().IsValid() {
				return req.Peer.Addr().Unmap().String()
			}
		case "peerport":
			if req.Peer.IsValid() {
				return strconv.Itoa(int(req.Peer.Port()))
			}
		case "cert_common_name":
			if req.PeerCert != nil {
				return req.PeerCert.CN
			}
		case "cert_subject":
			if req.PeerCert != nil {
				return req.PeerCert.DN
			}
		case "listener":
			return req.Listener
		case "proto_name":
			return req.Client.ProtoName
		}
		return ""
	}
}

func quoteJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil || len(b) > 64 {
		return fmt.Sprintf("of type %T", v)
	}
	return string(b)
}

// isTrue is EMQX's emqx_authn_utils:to_bool: true, "true", and an
// integer >= 1 (a number or a string of one) are true; anything else is
// false.
func isTrue(v any) bool {
	var s string
	switch v := v.(type) {
	case bool:
		return v
	case json.Number:
		s = v.String()
	case string:
		s = v
	default:
		return false
	}
	if s == "true" {
		return true
	}
	n, ok := new(big.Int).SetString(s, 10)
	return ok && n.Sign() > 0
}

// expireAt checks an HTTP answer's expire_at, as EMQX: an integer of
// Unix seconds, not in the past, and not so large that it looks like
// milliseconds (above now in milliseconds / 2).
func expireAt(v any, now time.Time) (time.Time, error) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, errors.New("expire_at is not an integer (Unix time in seconds)")
	}
	sec, err := strconv.ParseInt(n.String(), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return time.Time{}, errors.New("expire_at does not look like a Unix time in seconds")
	}
	if err != nil {
		return time.Time{}, errors.New("expire_at is not an integer (Unix time in seconds)")
	}
	if sec < now.Unix() {
		return time.Time{}, errors.New("expire_at is in the past")
	}
	if sec > now.UnixMilli()/2 {
		return time.Time{}, errors.New("expire_at does not look like a Unix time in seconds (milliseconds?)")
	}
	return time.Unix(sec, 0), nil
}

// attrName is EMQX's is_restricted_str, which client attribute names
// must pass.
var attrName = regexp.MustCompile(`^[A-Za-z0-9]+[A-Za-z0-9_-]*$`)

// clientAttrs reads client_attrs: a JSON object whose entries with a
// valid name and a string value are kept (others dropped, as EMQX). A
// value that is not an object is an error.
func clientAttrs(v any) (map[string]string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("client_attrs is not an object")
	}
	attrs := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok && attrName.MatchString(k) {
			attrs[k] = s
		}
	}
	if len(attrs) == 0 {
		return nil, nil
	}
	return attrs, nil
}

// parseACL reads the ACL of an HTTP answer or a JWT claim, in either of
// EMQX's forms:
//
//   - an array of raw rules (authz.ParseRaw): the first that matches
//     decides; when none does, the next authorization source is asked;
//   - an object {"pub": [...], "sub": [...], "all": [...]} of topic
//     filters that are allowed: anything else is denied (the object's
//     ACL never lets a request reach another source).
func parseACL(v any) (gateway.ACL, error) {
	switch v := v.(type) {
	case []any:
		rs, err := authz.ParseRawValue(v)
		if err != nil {
			return nil, err
		}
		return rs, nil
	case map[string]any:
		var rs authz.Rules
		for _, k := range []struct {
			key    string
			action authz.Action
		}{{"pub", authz.Publish}, {"sub", authz.Subscribe}, {"all", authz.All}} {
			raw, ok := v[k.key]
			if !ok {
				continue
			}
			list, ok := raw.([]any)
			if !ok {
				return nil, fmt.Errorf("authz: acl %q: want a list of topics", k.key)
			}
			if len(list) == 0 {
				continue // an empty list allows nothing (a nil Topics would allow everything)
			}
			r := authz.Rule{Allow: true, Action: k.action}
			for _, t := range list {
				s, ok := t.(string)
				if !ok {
					return nil, fmt.Errorf("authz: acl %q: want a list of topics", k.key)
				}
				tp, err := authz.ParseTopic(s)
				if err != nil {
					return nil, fmt.Errorf("authz: acl %q: %w", k.key, err)
				}
				r.Topics = append(r.Topics, tp)
			}
			rs = append(rs, r)
		}
		return append(rs, authz.Rule{Allow: false, Action: authz.All}), nil
	}
	return nil, errors.New("authz: acl: want an array of rules or an object of pub, sub and all topics")
}
