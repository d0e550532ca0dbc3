// Package authhttp is the HTTP client that the HTTP authenticator
// (gateway/authn) and the HTTP authorization source (gateway/authz)
// share: EMQX's request templating (emqx_auth_http_utils), a pooled
// client per backend, and bounded reading and parsing of the answers.
// What an answer means is left to each caller.
package authhttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/protogate/protogate/internal/placeholder"
)

// Defaults of Config, as EMQX's.
const (
	DefaultRequestTimeout = 5 * time.Second
	DefaultPoolSize       = 8
)

// MaxBody bounds the body of an answer that is read: a longer one is a
// failure, so a hostile or broken backend cannot make the gateway buffer
// without limit.
const MaxBody = 1 << 20

// The content types of request and answer bodies.
const (
	ContentJSON = "application/json"
	ContentForm = "application/x-www-form-urlencoded"
)

// Config is the request part of an HTTP backend's configuration.
type Config struct {
	// Method is get or post (any case). Default: post.
	Method string
	// URL is an http or https URL whose path and query may hold
	// placeholders; its scheme, host and port may not, nor may it have
	// user information or a fragment.
	URL string
	// Headers are sent with each request; values may hold placeholders.
	// A POST's content-type (default application/json) chooses the body
	// encoding: application/json or application/x-www-form-urlencoded.
	// A GET may not have one. Content-Length and Transfer-Encoding are
	// the client's. Default accept: application/json.
	Headers map[string]string
	// Body maps names to templates: a POST sends them as a JSON object
	// of strings or as a form; a GET appends them to the query.
	Body map[string]string
	// RequestTimeout bounds one request, from connecting to the last
	// byte of the answer. Default: 5s.
	RequestTimeout time.Duration
	// PoolSize is the most connections kept open to the backend and the
	// most requests in flight to it; more wait for a free connection
	// (within RequestTimeout). Default: 8.
	PoolSize int
	// TLS configures https connections; nil uses the system's roots. It
	// is cloned.
	TLS *tls.Config
}

// Client sends the requests of one backend. It is safe for concurrent
// use.
type Client struct {
	prefix  string // error prefix, such as "authn: http"
	url     string // as configured, for errors (it has no values in it)
	method  string
	base    string // scheme://host[:port]
	path    placeholder.Template
	query   placeholder.Template
	hasQ    bool
	host    string // a Host header, if configured
	headers []header
	body    []field
	form    bool   // a POST body is a form, not JSON
	ctype   string // a POST's content type
	timeout time.Duration
	hc      *http.Client
}

type header struct {
	name  string
	value placeholder.Template
}

type field struct {
	name  string
	value placeholder.Template
}

// New checks c and returns its client. allowed says which placeholders
// the caller can fill; prefix starts every error ("authn: http"). New
// may be called concurrently; it does not contact the backend.
func New(prefix string, c Config, allowed func(string) error) (*Client, error) {
	cl := &Client{prefix: prefix, url: c.URL, timeout: c.RequestTimeout}
	errorf := func(format string, a ...any) error {
		return fmt.Errorf("%s: %s", prefix, fmt.Sprintf(format, a...))
	}
	switch strings.ToLower(c.Method) {
	case "", "post":
		cl.method = http.MethodPost
	case "get":
		cl.method = http.MethodGet
	default:
		return nil, errorf("method %q: want get or post", c.Method)
	}
	if cl.timeout == 0 {
		cl.timeout = DefaultRequestTimeout
	}
	if cl.timeout < 0 {
		return nil, errorf("request_timeout %v: must be positive", c.RequestTimeout)
	}
	pool := c.PoolSize
	if pool == 0 {
		pool = DefaultPoolSize
	}
	if pool < 0 {
		return nil, errorf("pool_size %d: must be positive", c.PoolSize)
	}
	if err := cl.parseURL(c.URL, allowed); err != nil {
		return nil, errorf("url: %v", err)
	}
	if c.TLS != nil && strings.HasPrefix(cl.base, "http:") {
		return nil, errorf("tls is configured but the url %q is not https", c.URL)
	}
	ctype := ""
	names := make([]string, 0, len(c.Headers))
	for n := range c.Headers {
		names = append(names, n)
	}
	slices.Sort(names)
	seen := map[string]bool{}
	for _, n := range names {
		v := c.Headers[n]
		ln := strings.ToLower(n)
		if !httpguts.ValidHeaderFieldName(n) {
			return nil, errorf("header %q: not a valid header name", n)
		}
		if seen[ln] {
			return nil, errorf("header %q: given twice (names are case-insensitive)", n)
		}
		seen[ln] = true
		t, err := placeholder.Parse(v, allowed)
		if err != nil {
			return nil, errorf("header %q: %v", n, err)
		}
		if !httpguts.ValidHeaderFieldValue(t.Render(func(string) string { return "" }, nil)) {
			return nil, errorf("header %q: the value holds a control character such as CR, LF or NUL", n)
		}
		switch ln {
		case "content-length", "transfer-encoding":
			return nil, errorf("header %q: set by the client, not configurable", n)
		case "host":
			if !t.Literal() {
				return nil, errorf("header %q: placeholders are not allowed in the host", n)
			}
			cl.host = v
			continue
		case "content-type":
			if cl.method == http.MethodGet {
				return nil, errorf("header %q: a GET request has no body, so no content-type", n)
			}
			if !t.Literal() {
				return nil, errorf("header %q: placeholders are not allowed in the content type", n)
			}
			ctype = v
			continue
		}
		cl.headers = append(cl.headers, header{name: n, value: t})
	}
	if !seen["accept"] {
		cl.headers = append(cl.headers, header{name: "Accept", value: placeholder.MustParse(ContentJSON, nil)})
	}
	if cl.method == http.MethodPost {
		if ctype == "" {
			ctype = ContentJSON
		}
		mt, _, err := mime.ParseMediaType(ctype)
		switch {
		case err != nil:
			return nil, errorf("content-type %q: %v", ctype, err)
		case mt == ContentJSON:
		case mt == ContentForm:
			cl.form = true
		default:
			return nil, errorf("content-type %q: want %s or %s", ctype, ContentJSON, ContentForm)
		}
		cl.ctype = ctype
	}
	keys := make([]string, 0, len(c.Body))
	for k := range c.Body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" {
			return nil, errorf("body: empty field name")
		}
		t, err := placeholder.Parse(c.Body[k], allowed)
		if err != nil {
			return nil, errorf("body field %q: %v", k, err)
		}
		cl.body = append(cl.body, field{name: k, value: t})
	}
	tr := &http.Transport{
		Proxy:                  nil, // the backend is reached directly, never through $HTTP_PROXY
		DialContext:            (&net.Dialer{Timeout: cl.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:    cl.timeout,
		MaxIdleConns:           pool,
		MaxIdleConnsPerHost:    pool,
		MaxConnsPerHost:        pool,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	if c.TLS != nil {
		tr.TLSClientConfig = c.TLS.Clone()
	}
	cl.hc = &http.Client{
		Transport: tr,
		// A redirect is an answer like any other status: following it
		// would send the client's credentials to another place.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return cl, nil
}

// parseURL splits raw into a fixed base and path and query templates.
func (cl *Client) parseURL(raw string, allowed func(string) error) error {
	if raw == "" {
		return errors.New("missing")
	}
	if strings.Contains(raw, "#") {
		return fmt.Errorf("%q: fragments are not supported", raw)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	if !ok || scheme != "http" && scheme != "https" {
		return fmt.Errorf("%q: want an http:// or https:// URL", raw)
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if strings.Contains(authority, "${") {
		return fmt.Errorf("%q: placeholders are not allowed in the host or port", raw)
	}
	if strings.Contains(authority, "@") {
		return fmt.Errorf("%q: user information is not supported (use a header)", raw)
	}
	base, err := url.Parse(scheme + "://" + authority)
	if err != nil || base.Host == "" || base.Hostname() == "" {
		return fmt.Errorf("%q: no host", raw)
	}
	cl.base = scheme + "://" + authority
	path, query, hasQ := strings.Cut(rest[end:], "?")
	if cl.path, err = placeholder.Parse(path, allowed); err != nil {
		return err
	}
	if cl.query, err = placeholder.Parse(query, allowed); err != nil {
		return err
	}
	cl.hasQ = hasQ && query != ""
	u := cl.renderURL(func(string) string { return "x" }, nil)
	if _, err := url.Parse(u); err != nil {
		return fmt.Errorf("%q: %v", raw, errors.Unwrap(err))
	}
	return nil
}

func (cl *Client) renderURL(value func(string) string, extra url.Values) string {
	var b strings.Builder
	b.WriteString(cl.base)
	b.WriteString(cl.path.Render(value, url.PathEscape))
	sep := "?"
	if cl.hasQ {
		b.WriteString(sep)
		b.WriteString(cl.query.Render(value, url.QueryEscape))
		sep = "&"
	}
	if len(extra) > 0 {
		b.WriteString(sep)
		b.WriteString(extra.Encode())
	}
	return b.String()
}

// Response is a backend's answer. Body is read only for status 200 (at
// most MaxBody bytes).
type Response struct {
	Status      int
	ContentType string
	Body        []byte
}

// Do renders the request with value (which returns "" for a variable it
// does not know), sends it and reads the answer. An error means no
// usable answer: the request could not be built (a header value holding
// CR, LF or NUL; a JSON body value that is not UTF-8), the backend could
// not be reached, did not answer within the timeout, or sent a 200 body
// over MaxBody. Errors never quote the rendered request, which may hold
// a password. Do is safe for concurrent use.
func (cl *Client) Do(ctx context.Context, value func(string) string) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, cl.timeout)
	defer cancel()
	var form url.Values
	if len(cl.body) > 0 {
		form = make(url.Values, len(cl.body))
		for _, f := range cl.body {
			form.Set(f.name, f.value.Render(value, nil))
		}
	}
	var body io.Reader
	var u string
	switch {
	case cl.method == http.MethodGet:
		u = cl.renderURL(value, form)
	case cl.form:
		u = cl.renderURL(value, nil)
		body = strings.NewReader(form.Encode())
	default:
		u = cl.renderURL(value, nil)
		obj := make(map[string]string, len(form))
		for k, v := range form {
			if !utf8.ValidString(v[0]) {
				return nil, fmt.Errorf("%s: body field %q: a placeholder's value is not valid UTF-8, which JSON cannot carry", cl.prefix, k)
			}
			obj[k] = v[0]
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("%s: body: %w", cl.prefix, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %s %s: cannot build the request", cl.prefix, cl.method, cl.url)
	}
	for _, h := range cl.headers {
		v := h.value.Render(value, nil)
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("%s: header %q: a placeholder's value holds CR, LF or NUL; request not sent", cl.prefix, h.name)
		}
		req.Header.Set(h.name, v)
	}
	if cl.ctype != "" {
		req.Header.Set("Content-Type", cl.ctype)
	}
	if cl.host != "" {
		req.Host = cl.host
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return nil, cl.failed(ctx, err)
	}
	defer resp.Body.Close()
	r := &Response{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type")}
	switch resp.StatusCode {
	case http.StatusOK:
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
		if err != nil {
			return nil, cl.failed(ctx, err)
		}
		if len(b) > MaxBody {
			return nil, fmt.Errorf("%s: %s %s: the answer's body exceeds %d bytes", cl.prefix, cl.method, cl.url, MaxBody)
		}
		r.Body = b
	default:
		// Drain a little so that the connection can be reused.
		io.CopyN(io.Discard, resp.Body, 4<<10)
	}
	return r, nil
}

// failed describes a transport error without the rendered URL.
func (cl *Client) failed(ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s %s: no answer within %v: %w", cl.prefix, cl.method, cl.url, cl.timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %s %s: %w", cl.prefix, cl.method, cl.url, err)
}

// CloseIdleConnections closes the connections kept for reuse. The
// client stays usable. Safe for concurrent use.
func (cl *Client) CloseIdleConnections() { cl.hc.CloseIdleConnections() }

// ParseBody decodes a 200 answer: a JSON object (numbers as
// json.Number) or a form (string values; the last of a repeated name).
// Any other content type, a body that does not parse, or JSON that is
// not an object is an error. ParseBody is a pure function, safe for
// concurrent use.
func ParseBody(contentType string, body []byte) (map[string]any, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return nil, fmt.Errorf("content type %q: %v", contentType, err)
	}
	switch mt {
	case ContentJSON:
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("body: invalid JSON: %v", err)
		}
		if m == nil {
			return nil, errors.New("body: want a JSON object")
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("body: data after the JSON object")
		}
		return m, nil
	case ContentForm:
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("body: invalid form: %v", err)
		}
		m := make(map[string]any, len(q))
		for k, v := range q {
			m[k] = v[len(v)-1]
		}
		return m, nil
	}
	if contentType == "" {
		return nil, errors.New("the answer has no content type")
	}
	return nil, fmt.Errorf("content type %q: want %s or %s", contentType, ContentJSON, ContentForm)
}
