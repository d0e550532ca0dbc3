package authz

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/internal/authhttp"
	"github.com/protogate/protogate/internal/placeholder"
)

// HTTPConfig configures an HTTP authorization source, as EMQX's authz
// http (emqx_authz_http). The URL's path and query, header values and
// body values may hold the placeholders ${clientid}, ${username},
// ${peerhost}, ${peerport}, ${cert_common_name}, ${cert_subject},
// ${listener}, ${proto_name}, ${client_attrs.NAME} (from
// authentication), and the request's ${topic} (before the mountpoint),
// ${action} (publish or subscribe), ${qos}, ${retain} (always false:
// ExProto publishes are never retained) and the legacy ${access} (1
// subscribe, 2 publish). A value the request does not have renders as
// "". Values are escaped in the URL; a rendered header value holding CR,
// LF or NUL is never sent.
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
	// TLS configures https; nil verifies with the system's roots.
	TLS *tls.Config
}

// HTTP asks an HTTP service whether a client may publish or subscribe,
// with EMQX's contract (ops-security §3.7):
//
//   - 204: allow;
//   - 200 with a JSON object or a form whose "result" is allow, deny or
//     ignore: Allow, Deny, or NoMatch (the next source decides);
//   - 200 with anything else (another result, none, a body that does not
//     parse, another content type): backend failure;
//   - any other status: NoMatch (unlike authentication, not a failure);
//   - a timeout or transport error: backend failure.
//
// A backend failure is an error, which the Chain skips (legacy) or
// turns into a denial (hardened). HTTP implements Source and is safe for
// concurrent use: one pooled client serves every request.
type HTTP struct {
	c *authhttp.Client
}

var _ Source = (*HTTP)(nil)

var authzAllowed = placeholder.Names(true, "clientid", "username", "peerhost", "peerport",
	"cert_common_name", "cert_subject", "listener", "proto_name", "topic", "action", "qos", "retain", "access")

func allowedVar(name string) error {
	switch name {
	case "password":
		return fmt.Errorf("the password is not kept after authentication")
	case "mountpoint":
		return fmt.Errorf("not supported: authorization sees the topic before the mountpoint")
	}
	return authzAllowed(name)
}

// NewHTTP checks c and returns its source. It does not contact the
// backend. The error of a bad configuration says which field is wrong
// and why. NewHTTP may be called concurrently.
func NewHTTP(c HTTPConfig) (*HTTP, error) {
	cl, err := authhttp.New("authz: http", authhttp.Config{Method: c.Method, URL: c.URL, Headers: c.Headers,
		Body: c.Body, RequestTimeout: c.RequestTimeout, PoolSize: c.PoolSize, TLS: c.TLS}, allowedVar)
	if err != nil {
		return nil, err
	}
	return &HTTP{c: cl}, nil
}

// Name implements Source: "http". Safe for concurrent use.
func (*HTTP) Name() string { return "http" }

// Close closes the idle connections to the backend; Authorize may still
// be called. Safe for concurrent use.
func (h *HTTP) Close() error {
	h.c.CloseIdleConnections()
	return nil
}

// Authorize implements Source: one request to the backend, bounded by
// the request timeout and ctx. Safe for concurrent use.
func (h *HTTP) Authorize(ctx context.Context, req *gateway.AuthzRequest) (gateway.Decision, error) {
	resp, err := h.c.Do(ctx, authzValue(req))
	if err != nil {
		return gateway.NoMatch, err
	}
	return decide(resp)
}

// decide reads a backend's answer by EMQX's contract.
func decide(resp *authhttp.Response) (gateway.Decision, error) {
	switch resp.Status {
	case http.StatusNoContent:
		return gateway.Allow, nil
	case http.StatusOK:
	default:
		return gateway.NoMatch, nil
	}
	body, err := authhttp.ParseBody(resp.ContentType, resp.Body)
	if err != nil {
		return gateway.NoMatch, fmt.Errorf("authz: http: %w", err)
	}
	switch body["result"] {
	case "allow":
		return gateway.Allow, nil
	case "deny":
		return gateway.Deny, nil
	case "ignore":
		return gateway.NoMatch, nil
	}
	if _, ok := body["result"]; !ok {
		return gateway.NoMatch, fmt.Errorf("authz: http: the answer has no result")
	}
	return gateway.NoMatch, fmt.Errorf("authz: http: result %v: want allow, deny or ignore", body["result"])
}

// authzValue returns the placeholder values of req.
func authzValue(req *gateway.AuthzRequest) func(string) string {
	return func(name string) string {
		switch name {
		case "clientid":
			return req.Client.ClientID
		case "username":
			return req.Client.Username
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
		case "topic":
			return req.Topic
		case "action":
			switch req.Action {
			case gateway.ActionPublish, gateway.ActionSubscribe:
				return req.Action.String()
			}
		case "access":
			switch req.Action {
			case gateway.ActionSubscribe:
				return "1"
			case gateway.ActionPublish:
				return "2"
			}
		case "qos":
			return strconv.Itoa(int(req.QoS))
		case "retain":
			return "false"
		}
		if a, ok := strings.CutPrefix(name, "client_attrs."); ok && req.Identity != nil {
			return req.Identity.Attrs[a]
		}
		return ""
	}
}
