package main

// "protogate ctl" is the command-line client of the admin API (/api/v1) of
// a running protogate. ctlClient speaks the API, one method per endpoint;
// cmdCtl parses the command line and formats the answers.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Defaults of the ctl flags.
const (
	defaultCtlAddr    = "http://127.0.0.1:18083"
	defaultCtlTimeout = 10 * time.Second
)

// Environment variables that give the API key and secret.
const (
	envAPIKey    = "PROTOGATE_API_KEY"
	envAPISecret = "PROTOGATE_API_SECRET"
)

// errCtlUsage is a command line that ctl cannot run; the message has been
// printed.
var errCtlUsage = errors.New("protogate ctl: usage")

// apiError is an error answer of the admin API: its body
// {"code": ..., "message": ...} and its HTTP status.
type apiError struct {
	Status  int    // HTTP status code
	Code    string // API error code, such as NOT_FOUND; "" when the body had none
	Message string // the API's message, or the status text
}

// Error returns "<message> (<code>, HTTP <status>)".
func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// The shapes of the admin API's answers (see the admin API contract).
// Unknown fields are ignored, so that a newer server still answers an
// older ctl.

// apiStatus is the answer of GET /api/v1/status.
type apiStatus struct {
	Node          string   `json:"node"`
	Version       string   `json:"version"`
	StartedAt     string   `json:"started_at"`
	UptimeSeconds int64    `json:"uptime_seconds"`
	Ready         bool     `json:"ready"`
	Reasons       []string `json:"reasons"`
	Connections   int64    `json:"connections"`
	Clients       int64    `json:"clients"`
}

// apiCluster is the answer of GET /api/v1/cluster.
type apiCluster struct {
	Name        string   `json:"name"`
	Node        string   `json:"node"`
	Listen      string   `json:"listen"`
	Expected    int      `json:"expected"`
	Peers       []string `json:"peers"`
	Unreachable []string `json:"unreachable"`
	Leafs       []struct {
		Name string `json:"name"`
		Addr string `json:"addr"`
	} `json:"leafs"`
	LeafRemotes     int    `json:"leaf_remotes"`
	JetStreamLeader string `json:"jetstream_leader"`
}

// apiListener is one listener of GET /api/v1/listeners.
type apiListener struct {
	Name               string           `json:"name"`
	Type               string           `json:"type"`
	Bind               string           `json:"bind"`
	Address            string           `json:"address"`
	Handler            string           `json:"handler"`
	Running            bool             `json:"running"`
	CurrentConnections int64            `json:"current_connections"`
	MaxConnections     int64            `json:"max_connections"`
	Accepted           int64            `json:"accepted"`
	Refused            map[string]int64 `json:"refused"`
	RecvOct            int64            `json:"recv_oct"`
	SendOct            int64            `json:"send_oct"`
	RecvMsg            int64            `json:"recv_msg"`
	SendMsg            int64            `json:"send_msg"`
	DatagramsDropped   int64            `json:"datagrams_dropped"`
}

// apiClient is one client (connection) of GET /api/v1/clients.
type apiClient struct {
	ClientID         string  `json:"clientid"`
	Username         string  `json:"username"`
	Conn             string  `json:"conn"`
	Node             string  `json:"node"`
	Listener         string  `json:"listener"`
	Handler          string  `json:"handler"`
	Backend          string  `json:"backend"`
	ProtoName        string  `json:"proto_name"`
	ProtoVer         string  `json:"proto_ver"`
	IPAddress        string  `json:"ip_address"`
	Port             int     `json:"port"`
	ConnState        string  `json:"conn_state"`
	Connected        bool    `json:"connected"`
	CreatedAt        string  `json:"created_at"`
	ConnectedAt      *string `json:"connected_at"`
	Keepalive        int64   `json:"keepalive"`
	Mountpoint       string  `json:"mountpoint"`
	SubscriptionsCnt int64   `json:"subscriptions_cnt"`
	RecvOct          int64   `json:"recv_oct"`
	SendOct          int64   `json:"send_oct"`
	RecvMsg          int64   `json:"recv_msg"`
	SendMsg          int64   `json:"send_msg"`
	MqueueLen        int64   `json:"mqueue_len"`
	MqueueDropped    int64   `json:"mqueue_dropped"`
}

// apiClientPage is the answer of GET /api/v1/clients.
type apiClientPage struct {
	Data []apiClient `json:"data"`
	Meta struct {
		Page    int    `json:"page"`
		Limit   int    `json:"limit"`
		Count   *int64 `json:"count"` // absent with like_* filters
		HasNext bool   `json:"hasnext"`
	} `json:"meta"`
}

// apiSubscription is one subscription of a client.
type apiSubscription struct {
	Topic string `json:"topic"`
	QoS   int    `json:"qos"`
	NL    int    `json:"nl"`
	RAP   int    `json:"rap"`
	RH    int    `json:"rh"`
}

// apiHandler is one handler of GET /api/v1/handlers.
type apiHandler struct {
	Name    string `json:"name"`
	Backend string `json:"backend"`
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason"`
	GRPC    *struct {
		Address string `json:"address"`
		Service string `json:"service"`
		State   string `json:"state"`
	} `json:"grpc"`
	Wasm *struct {
		Module    string `json:"module"`
		Version   int64  `json:"version"`
		SHA256    string `json:"sha256"`
		Instances int64  `json:"instances"`
		Versions  int64  `json:"versions"`
		Faults    int64  `json:"faults"`
		Breaker   string `json:"breaker"`
		LastFault string `json:"last_fault"`
		LastError string `json:"last_error"`
	} `json:"wasm"`
	Callbacks struct {
		Total          int64              `json:"total"`
		Failed         int64              `json:"failed"`
		Timeouts       int64              `json:"timeouts"`
		Panics         int64              `json:"panics"`
		LatencySeconds map[string]float64 `json:"latency_seconds"`
	} `json:"callbacks"`
}

// apiReload is the answer of POST /api/v1/handlers/{name}/reload.
type apiReload struct {
	Name    string `json:"name"`
	Result  string `json:"result"`
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
}

// traceEvent is one event of GET /api/v1/trace.
type traceEvent struct {
	Time       string `json:"time"`
	Conn       string `json:"conn"`
	ClientID   string `json:"clientid"`
	Kind       string `json:"kind"` // callback, call or end
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	Code       string `json:"code"`
	Error      string `json:"error"`
	DurationUS int64  `json:"duration_us"`
	Payload    string `json:"payload"` // hex, with payload=N only
	Topic      string `json:"topic"`
}

// clientQuery holds the filters and the page of GET /api/v1/clients,
// named as its query parameters. Empty fields are left out.
type clientQuery struct {
	ClientID, LikeClientID, Username, LikeUsername string
	IPAddress, ConnState, Listener, Handler        string
	Page, Limit                                    string
}

func (q clientQuery) values() url.Values {
	v := url.Values{}
	for _, p := range []struct{ name, value string }{
		{"clientid", q.ClientID}, {"like_clientid", q.LikeClientID},
		{"username", q.Username}, {"like_username", q.LikeUsername},
		{"ip_address", q.IPAddress}, {"conn_state", q.ConnState},
		{"listener", q.Listener}, {"handler", q.Handler},
		{"page", q.Page}, {"limit", q.Limit},
	} {
		if p.value != "" {
			v.Set(p.name, p.value)
		}
	}
	return v
}

// traceQuery selects the connection of GET /api/v1/trace and what the
// events carry.
type traceQuery struct {
	ID       string // a client id, or with Conn a connection handle
	Conn     bool
	Payload  int    // bytes of payload in each event; 0: none
	Duration string // a Go duration such as 5m; "": the server's default
}

// ctlClient calls the admin API at one address. Every method returns the
// answer decoded and, for --json, the body as received; an error answer
// is an *apiError. It is safe for concurrent use.
type ctlClient struct {
	base        string // the --addr URL without a trailing '/'
	key, secret string // HTTP Basic credentials; none when key is ""
	hc          *http.Client
}

// newCtlClient returns a client of the admin API at addr (http:// or
// https://, optionally with a path prefix). With caFile, the server
// certificate is verified against the CAs in it instead of the system
// roots.
func newCtlClient(addr, key, secret, caFile string) (*ctlClient, error) {
	u, err := parseCtlAddr(addr)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		if u.Scheme != "https" {
			return nil, fmt.Errorf("ctl: --cacert needs an https:// --addr, not %q", addr)
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ctl: --cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ctl: --cacert %s: no PEM certificates", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &ctlClient{
		base:   strings.TrimSuffix(u.String(), "/"),
		key:    key,
		secret: secret,
		hc:     &http.Client{Transport: tr},
	}, nil
}

// parseCtlAddr checks an --addr URL.
func parseCtlAddr(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		return nil, fmt.Errorf("ctl: --addr %q has no scheme; write %q (or https:// for TLS)", addr, "http://"+addr)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("ctl: invalid --addr %q: %w", addr, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("ctl: unsupported scheme %q in --addr %q (want http:// or https://)", u.Scheme, addr)
	case u.Host == "":
		return nil, fmt.Errorf("ctl: --addr %q has no host", addr)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("ctl: --addr %q must be scheme://host:port[/path], without user, query or fragment", addr)
	}
	return u, nil
}

// seg escapes s as one path segment: "a/b#" is "a%2Fb%23".
func seg(s string) string { return url.PathEscape(s) }

// Status calls GET /api/v1/status.
func (c *ctlClient) Status(ctx context.Context) (*apiStatus, []byte, error) {
	var st apiStatus
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/status", nil, nil, &st)
	return &st, raw, err
}

// Cluster calls GET /api/v1/cluster.
func (c *ctlClient) Cluster(ctx context.Context) (*apiCluster, []byte, error) {
	var st apiCluster
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/cluster", nil, nil, &st)
	return &st, raw, err
}

// Listeners calls GET /api/v1/listeners.
func (c *ctlClient) Listeners(ctx context.Context) ([]apiListener, []byte, error) {
	var res struct {
		Data []apiListener `json:"data"`
	}
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/listeners", nil, nil, &res)
	return res.Data, raw, err
}

// Clients calls GET /api/v1/clients with the filters and page of q.
func (c *ctlClient) Clients(ctx context.Context, q clientQuery) (*apiClientPage, []byte, error) {
	var page apiClientPage
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/clients", q.values(), nil, &page)
	return &page, raw, err
}

// Client calls GET /api/v1/clients/{id}; id is a client id or a
// connection handle.
func (c *ctlClient) Client(ctx context.Context, id string) (*apiClient, []byte, error) {
	var cl apiClient
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/clients/"+seg(id), nil, nil, &cl)
	return &cl, raw, err
}

// Kick calls DELETE /api/v1/clients/{id}, which closes the connection.
func (c *ctlClient) Kick(ctx context.Context, id string) error {
	_, err := c.call(ctx, http.MethodDelete, "/api/v1/clients/"+seg(id), nil, nil, nil)
	return err
}

// Subscriptions calls GET /api/v1/clients/{id}/subscriptions.
func (c *ctlClient) Subscriptions(ctx context.Context, id string) ([]apiSubscription, []byte, error) {
	var subs []apiSubscription
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/clients/"+seg(id)+"/subscriptions", nil, nil, &subs)
	return subs, raw, err
}

// Subscribe calls POST /api/v1/clients/{id}/subscriptions. The answer's
// topic is the mounted one.
func (c *ctlClient) Subscribe(ctx context.Context, id, topic string, qos int) (*apiSubscription, []byte, error) {
	body := struct {
		Topic string `json:"topic"`
		QoS   int    `json:"qos"`
	}{topic, qos}
	var sub apiSubscription
	raw, err := c.call(ctx, http.MethodPost, "/api/v1/clients/"+seg(id)+"/subscriptions", nil, body, &sub)
	return &sub, raw, err
}

// Unsubscribe calls DELETE /api/v1/clients/{id}/subscriptions/{topic}, the
// topic (unmounted) escaped as one path segment.
func (c *ctlClient) Unsubscribe(ctx context.Context, id, topic string) error {
	_, err := c.call(ctx, http.MethodDelete, "/api/v1/clients/"+seg(id)+"/subscriptions/"+seg(topic), nil, nil, nil)
	return err
}

// Handlers calls GET /api/v1/handlers.
func (c *ctlClient) Handlers(ctx context.Context) ([]apiHandler, []byte, error) {
	var res struct {
		Data []apiHandler `json:"data"`
	}
	raw, err := c.call(ctx, http.MethodGet, "/api/v1/handlers", nil, nil, &res)
	return res.Data, raw, err
}

// Reload calls POST /api/v1/handlers/{name}/reload.
func (c *ctlClient) Reload(ctx context.Context, name string) (*apiReload, []byte, error) {
	var r apiReload
	raw, err := c.call(ctx, http.MethodPost, "/api/v1/handlers/"+seg(name)+"/reload", nil, nil, &r)
	return &r, raw, err
}

// Trace calls GET /api/v1/trace with format=jsonl and calls fn with each
// event, in order, and its line as received, until the stream ends (the
// connection closed, the duration passed), fn returns an error, or ctx
// ends. It returns nil when the stream ends and ctx.Err() when ctx ends.
func (c *ctlClient) Trace(ctx context.Context, q traceQuery, fn func(ev *traceEvent, raw []byte) error) error {
	v := url.Values{}
	if q.Conn {
		v.Set("conn", q.ID)
	} else {
		v.Set("clientid", q.ID)
	}
	if q.Payload > 0 {
		v.Set("payload", strconv.Itoa(q.Payload))
	}
	if q.Duration != "" {
		v.Set("duration", q.Duration)
	}
	v.Set("format", "jsonl")
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/trace", v, nil, "application/x-ndjson")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readAPIError(resp)
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadBytes('\n')
		// A server that sends server-sent events anyway: "data: {json}".
		line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("data:")))
		if len(line) > 0 && line[0] == '{' {
			var ev traceEvent
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				return fmt.Errorf("ctl: bad trace event from %s: %w", c.base, jerr)
			}
			if ferr := fn(&ev, line); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return c.connError(err)
		}
	}
}

// call sends a request with an optional JSON body and decodes a
// successful answer into out (unless out is nil or the answer is empty).
// It returns the body as received.
func (c *ctlClient) call(ctx context.Context, method, path string, query url.Values, body, out any) ([]byte, error) {
	resp, err := c.send(ctx, method, path, query, body, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, readAPIError(resp)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.connError(err)
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("ctl: bad answer from %s%s: %w", c.base, path, err)
		}
	}
	return raw, nil
}

func (c *ctlClient) send(ctx context.Context, method, path string, query url.Values, body any, accept string) (*http.Response, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("ctl: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("ctl: %w", err)
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.SetBasicAuth(c.key, c.secret)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.connError(err)
	}
	return resp, nil
}

// connError says that the admin API at c.base could not be reached, and
// why.
func (c *ctlClient) connError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("ctl: cannot reach the admin API at %s (is protogate running, with admin.bind at this address? --addr sets the address): %w", c.base, err)
	}
	return fmt.Errorf("ctl: cannot reach the admin API at %s: %w", c.base, err)
}

// readAPIError reads the error answer of resp.
func readAPIError(resp *http.Response) error {
	e := &apiError{Status: resp.StatusCode}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &body) == nil && (body.Code != "" || body.Message != "") {
		e.Code, e.Message = body.Code, body.Message
	} else if s := strings.TrimSpace(string(raw)); s != "" && len(s) <= 200 && !strings.ContainsAny(s, "\n<") {
		e.Message = s // a short plain text answer, such as a proxy's
	}
	if e.Message == "" {
		e.Message = strings.ToLower(http.StatusText(resp.StatusCode))
	}
	return e
}

// ctlOptions are the flags every ctl command takes.
type ctlOptions struct {
	addr, caFile, key, secret string
	json                      bool
	timeout                   time.Duration
}

// register adds the common flags to fs, with the current values as
// defaults, so that they may come before or after the command.
func (o *ctlOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", o.addr, "admin API `URL`")
	fs.StringVar(&o.caFile, "cacert", o.caFile, "PEM `file` of the CA that signed the https:// server's certificate")
	fs.StringVar(&o.key, "api-key", o.key, "API `key` (default $"+envAPIKey+")")
	fs.StringVar(&o.secret, "api-secret", o.secret, "API `secret` (default $"+envAPISecret+")")
	fs.BoolVar(&o.json, "json", o.json, "print the API's JSON")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "give up after `duration` (not for trace; 0: never)")
}

const ctlUsage = `usage: protogate ctl [flags] COMMAND [ARGS] [flags]

Calls the admin API of a running protogate (admin.bind).

commands:
  status                          node, version, uptime, readiness, counts
  cluster                         the cluster's peers, connected and expected,
                                  unreachable routes, leaf node connections
  listeners                       the listeners and their counters
  clients [filters]               the connections, oldest first, a page at a time
      --clientid ID  --like-clientid S  --username U  --like-username S
      --ip ADDR  --conn-state connecting|connected  --listener NAME
      --handler NAME  --page N  --limit N (1 to 10000, default 100)
  client ID                       one client (ID: a client id or a connection handle)
  kick ID                         close a client's connection
  subscriptions ID                a client's subscriptions
  subscribe ID TOPIC [--qos N]    subscribe a client to TOPIC (qos 0, 1 or 2)
  unsubscribe ID TOPIC            unsubscribe a client from TOPIC
  handlers                        the handlers: state, module, callback counters
  reload NAME                     reload the wasm module of handler NAME
  trace ID [--conn] [--payload N] [--duration D]
                                  print a client's callbacks and calls as they
                                  happen, until interrupted (Ctrl-C), the
                                  connection closes or D (default 5m) passes;
                                  --conn: ID is a connection handle;
                                  --payload N: show the first N bytes of each

flags (before or after the command):
  --addr URL          the admin API (default http://127.0.0.1:18083; https:// for TLS)
  --cacert FILE       trust the CA certificates in FILE for an https:// address
  --api-key KEY       API key (default $PROTOGATE_API_KEY)
  --api-secret S      its secret (default $PROTOGATE_API_SECRET)
  --json              print the API's JSON (trace: one event per line)
  --timeout D         give up after D (default 10s; not for trace)

Exit status: 0 done, 1 the API answered an error or could not be reached,
2 a usage error.
`

// cmdCtl runs "protogate ctl" with args (after "ctl") and returns the
// exit code. ctx ends a trace (SIGINT) and any other call; getenv reads the
// environment.
func cmdCtl(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	err := runCtl(ctx, args, stdout, stderr, getenv)
	var ae *apiError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errCtlUsage):
		return 2
	case errors.As(err, &ae):
		fmt.Fprintf(stderr, "protogate ctl: %s\n", ae)
		if ae.Status == http.StatusUnauthorized {
			fmt.Fprintf(stderr, "protogate ctl: give an admin.api_keys entry with --api-key and --api-secret, or $%s and $%s\n", envAPIKey, envAPISecret)
		}
		return 1
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "protogate ctl: interrupted")
		return 1
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintln(stderr, "protogate ctl: no answer within --timeout")
		return 1
	}
	fmt.Fprintf(stderr, "protogate ctl: %s\n", strings.TrimPrefix(err.Error(), "ctl: "))
	return 1
}

// usageErr prints a usage problem and returns errCtlUsage.
func usageErr(stderr io.Writer, format string, args ...any) error {
	fmt.Fprintf(stderr, "protogate ctl: "+format+"\n", args...)
	fmt.Fprintln(stderr, "run 'protogate ctl help' for usage")
	return errCtlUsage
}

// parseArgs parses the flags of fs anywhere among args and returns the
// other arguments; everything after "--" is an argument.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o := &ctlOptions{addr: defaultCtlAddr, timeout: defaultCtlTimeout}
	newFlags := func(name string) *flag.FlagSet {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Usage = func() { fmt.Fprint(stderr, ctlUsage) }
		o.register(fs)
		return fs
	}
	// The common flags before the command.
	fs := newFlags("ctl")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errCtlUsage
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return errCtlUsage
	}
	name, args := args[0], args[1:]
	if name == "help" {
		fmt.Fprint(stdout, ctlUsage)
		return nil
	}

	fs = newFlags("ctl " + name)
	var q clientQuery
	var qos int
	var tq traceQuery
	nargs := 1
	switch name {
	case "status", "cluster", "listeners", "handlers":
		nargs = 0
	case "clients":
		nargs = 0
		fs.StringVar(&q.ClientID, "clientid", "", "client id")
		fs.StringVar(&q.LikeClientID, "like-clientid", "", "client ids containing `text`")
		fs.StringVar(&q.Username, "username", "", "user name")
		fs.StringVar(&q.LikeUsername, "like-username", "", "user names containing `text`")
		fs.StringVar(&q.IPAddress, "ip", "", "peer IP `address`")
		fs.StringVar(&q.ConnState, "conn-state", "", "connecting or connected")
		fs.StringVar(&q.Listener, "listener", "", "listener `name`")
		fs.StringVar(&q.Handler, "handler", "", "handler `name`")
		fs.StringVar(&q.Page, "page", "", "page `number`, from 1")
		fs.StringVar(&q.Limit, "limit", "", "clients per page, 1 to 10000")
	case "client", "kick", "subscriptions", "reload":
	case "subscribe":
		nargs = 2
		fs.IntVar(&qos, "qos", 0, "QoS 0, 1 or 2")
	case "unsubscribe":
		nargs = 2
	case "trace":
		fs.BoolVar(&tq.Conn, "conn", false, "ID is a connection handle, not a client id")
		fs.IntVar(&tq.Payload, "payload", 0, "show the first `N` bytes of each payload")
		fs.StringVar(&tq.Duration, "duration", "", "stop after `D` (default 5m, at most 1h)")
	default:
		return usageErr(stderr, "unknown command %q", name)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errCtlUsage
	}
	if len(pos) != nargs {
		got := "nothing"
		if len(pos) > 0 {
			got = fmt.Sprintf("%q", pos)
			got = got[1 : len(got)-1]
		}
		want := map[string]string{"subscribe": "ID TOPIC", "unsubscribe": "ID TOPIC", "reload": "NAME"}[name]
		switch {
		case nargs == 0:
			want = "no arguments"
		case want == "":
			want = "ID"
		}
		return usageErr(stderr, "%s wants %s; got %s", name, want, got)
	}
	for _, p := range pos {
		if p == "" {
			return usageErr(stderr, "%s: empty argument", name)
		}
	}
	switch {
	case q.Page != "" && !isDecimal(q.Page):
		return usageErr(stderr, "--page %q is not a number", q.Page)
	case q.Limit != "" && !isDecimal(q.Limit):
		return usageErr(stderr, "--limit %q is not a number", q.Limit)
	case qos < 0 || qos > 2:
		return usageErr(stderr, "--qos %d: want 0, 1 or 2", qos)
	case tq.Payload < 0:
		return usageErr(stderr, "--payload %d: want 0 or more bytes", tq.Payload)
	}
	if tq.Duration != "" {
		if d, err := time.ParseDuration(tq.Duration); err != nil || d <= 0 {
			return usageErr(stderr, "--duration %q: want a duration such as 90s or 5m", tq.Duration)
		}
	}
	if o.timeout < 0 {
		return usageErr(stderr, "--timeout %s must not be negative", o.timeout)
	}

	if o.key == "" {
		o.key = getenv(envAPIKey)
	}
	if o.secret == "" {
		o.secret = getenv(envAPISecret)
	}
	if (o.key == "") != (o.secret == "") {
		return usageErr(stderr, "an API key needs its secret: give both --api-key and --api-secret (or $%s and $%s)", envAPIKey, envAPISecret)
	}
	c, err := newCtlClient(o.addr, o.key, o.secret, o.caFile)
	if err != nil {
		return usageErr(stderr, "%s", strings.TrimPrefix(err.Error(), "ctl: "))
	}

	if name == "trace" {
		tq.ID = pos[0]
		return ctlTrace(ctx, c, tq, o.json, stdout)
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	return ctlCall(ctx, c, name, pos, q, qos, o.json, stdout)
}

func isDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ctlCall runs the command name (all but trace) and prints its answer.
func ctlCall(ctx context.Context, c *ctlClient, name string, pos []string, q clientQuery, qos int, asJSON bool, w io.Writer) error {
	var raw []byte
	var err error
	var human func(io.Writer)
	switch name {
	case "status":
		var st *apiStatus
		st, raw, err = c.Status(ctx)
		human = func(w io.Writer) { printStatus(w, st) }
	case "cluster":
		var st *apiCluster
		st, raw, err = c.Cluster(ctx)
		human = func(w io.Writer) { printCluster(w, st) }
	case "listeners":
		var ls []apiListener
		ls, raw, err = c.Listeners(ctx)
		human = func(w io.Writer) { printListeners(w, ls) }
	case "clients":
		var page *apiClientPage
		page, raw, err = c.Clients(ctx, q)
		human = func(w io.Writer) { printClients(w, page) }
	case "client":
		var cl *apiClient
		cl, raw, err = c.Client(ctx, pos[0])
		human = func(w io.Writer) { printClient(w, cl) }
	case "kick":
		err = c.Kick(ctx, pos[0])
		human = func(w io.Writer) { fmt.Fprintf(w, "kicked %s\n", pos[0]) }
	case "subscriptions":
		var subs []apiSubscription
		subs, raw, err = c.Subscriptions(ctx, pos[0])
		human = func(w io.Writer) { printSubscriptions(w, subs) }
	case "subscribe":
		var sub *apiSubscription
		sub, raw, err = c.Subscribe(ctx, pos[0], pos[1], qos)
		human = func(w io.Writer) { fmt.Fprintf(w, "subscribed %s to %s (qos %d)\n", pos[0], sub.Topic, sub.QoS) }
	case "unsubscribe":
		err = c.Unsubscribe(ctx, pos[0], pos[1])
		human = func(w io.Writer) { fmt.Fprintf(w, "unsubscribed %s from %s\n", pos[0], pos[1]) }
	case "handlers":
		var hs []apiHandler
		hs, raw, err = c.Handlers(ctx)
		human = func(w io.Writer) { printHandlers(w, hs) }
	case "reload":
		var r *apiReload
		r, raw, err = c.Reload(ctx, pos[0])
		human = func(w io.Writer) { printReload(w, r) }
	}
	if err != nil {
		return err
	}
	if asJSON {
		// Kick and unsubscribe answer 204 No Content: nothing to print.
		return printJSON(w, raw)
	}
	human(w)
	return nil
}

// ctlTrace follows a trace until it ends or ctx ends (which is not an
// error: it is how a trace is stopped).
func ctlTrace(ctx context.Context, c *ctlClient, q traceQuery, asJSON bool, w io.Writer) error {
	err := c.Trace(ctx, q, func(ev *traceEvent, raw []byte) error {
		var werr error
		if asJSON {
			_, werr = fmt.Fprintf(w, "%s\n", raw)
		} else {
			_, werr = io.WriteString(w, formatEvent(ev)+"\n")
		}
		return werr
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// printJSON prints raw indented; nothing for an empty body.
func printJSON(w io.Writer, raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("ctl: the answer is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// orDash returns s, or "-" for an empty s (a column must not be empty).
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printStatus(w io.Writer, st *apiStatus) {
	tw := newTable(w)
	ready := "yes"
	if !st.Ready {
		ready = "no"
	}
	fmt.Fprintf(tw, "node\t%s\n", st.Node)
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	fmt.Fprintf(tw, "started\t%s\n", st.StartedAt)
	fmt.Fprintf(tw, "uptime\t%s\n", time.Duration(st.UptimeSeconds)*time.Second)
	fmt.Fprintf(tw, "ready\t%s\n", ready)
	for _, r := range st.Reasons {
		fmt.Fprintf(tw, "\t%s\n", r)
	}
	fmt.Fprintf(tw, "connections\t%d\n", st.Connections)
	fmt.Fprintf(tw, "clients\t%d\n", st.Clients)
	tw.Flush()
}

func printCluster(w io.Writer, st *apiCluster) {
	tw := newTable(w)
	fmt.Fprintf(tw, "node\t%s\n", st.Node)
	if st.Name != "" {
		fmt.Fprintf(tw, "cluster\t%s\n", st.Name)
		fmt.Fprintf(tw, "listen\t%s\n", orDash(st.Listen))
		fmt.Fprintf(tw, "peers\t%d of %d\t%s\n", len(st.Peers), st.Expected-1, strings.Join(st.Peers, ", "))
		for _, r := range st.Unreachable {
			fmt.Fprintf(tw, "unreachable\t%s\n", r)
		}
		fmt.Fprintf(tw, "jetstream leader\t%s\n", orDash(st.JetStreamLeader))
	}
	if st.LeafRemotes > 0 {
		fmt.Fprintf(tw, "leaf connections\t%d of %d\n", len(st.Leafs), st.LeafRemotes)
		for _, l := range st.Leafs {
			fmt.Fprintf(tw, "\t%s (%s)\n", l.Name, l.Addr)
		}
	}
	tw.Flush()
}

func printListeners(w io.Writer, ls []apiListener) {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tTYPE\tADDRESS\tHANDLER\tRUNNING\tCONNS\tMAX\tACCEPTED\tREFUSED\tRECV_OCT\tSEND_OCT\tRECV_MSG\tSEND_MSG\tDROPPED")
	for _, l := range ls {
		maxConns := "-"
		if l.MaxConnections > 0 {
			maxConns = strconv.FormatInt(l.MaxConnections, 10)
		}
		var refused int64
		for _, n := range l.Refused {
			refused += n
		}
		addr := l.Address
		if addr == "" {
			addr = l.Bind
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n",
			l.Name, l.Type, orDash(addr), orDash(l.Handler), yesNo(l.Running), l.CurrentConnections, maxConns,
			l.Accepted, refused, l.RecvOct, l.SendOct, l.RecvMsg, l.SendMsg, l.DatagramsDropped)
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// peer joins an IP address and port.
func peer(ip string, port int) string {
	if ip == "" {
		return "-"
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

func printClients(w io.Writer, p *apiClientPage) {
	if len(p.Data) == 0 && p.Meta.Page <= 1 {
		fmt.Fprintln(w, "no clients")
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "CLIENTID\tUSERNAME\tCONN\tLISTENER\tHANDLER\tPEER\tSTATE\tCREATED\tSUBS\tRECV_OCT\tSEND_OCT\tRECV_MSG\tSEND_MSG")
	for _, c := range p.Data {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n",
			orDash(c.ClientID), orDash(c.Username), c.Conn, c.Listener, c.Handler, peer(c.IPAddress, c.Port),
			c.ConnState, c.CreatedAt, c.SubscriptionsCnt, c.RecvOct, c.SendOct, c.RecvMsg, c.SendMsg)
	}
	tw.Flush()
	m := p.Meta
	var b strings.Builder
	fmt.Fprintf(&b, "page %d", m.Page)
	if m.Count != nil && m.Limit > 0 {
		fmt.Fprintf(&b, " of %d (%d clients)", max(1, (*m.Count+int64(m.Limit)-1)/int64(m.Limit)), *m.Count)
	}
	if m.HasNext {
		fmt.Fprintf(&b, "; next: --page %d", m.Page+1)
	}
	fmt.Fprintln(w, b.String())
}

func printClient(w io.Writer, c *apiClient) {
	tw := newTable(w)
	connected := "-"
	if c.ConnectedAt != nil {
		connected = *c.ConnectedAt
	}
	for _, kv := range [][2]string{
		{"clientid", orDash(c.ClientID)},
		{"username", orDash(c.Username)},
		{"conn", c.Conn},
		{"node", c.Node},
		{"listener", c.Listener},
		{"handler", c.Handler + " (" + c.Backend + ")"},
		{"protocol", orDash(strings.TrimSpace(c.ProtoName + " " + c.ProtoVer))},
		{"peer", peer(c.IPAddress, c.Port)},
		{"state", c.ConnState},
		{"created", c.CreatedAt},
		{"connected", connected},
		{"keepalive", (time.Duration(c.Keepalive) * time.Second).String()},
		{"mountpoint", orDash(c.Mountpoint)},
		{"subscriptions", strconv.FormatInt(c.SubscriptionsCnt, 10)},
		{"recv_oct", strconv.FormatInt(c.RecvOct, 10)},
		{"send_oct", strconv.FormatInt(c.SendOct, 10)},
		{"recv_msg", strconv.FormatInt(c.RecvMsg, 10)},
		{"send_msg", strconv.FormatInt(c.SendMsg, 10)},
		{"mqueue_len", strconv.FormatInt(c.MqueueLen, 10)},
		{"mqueue_dropped", strconv.FormatInt(c.MqueueDropped, 10)},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	tw.Flush()
}

func printSubscriptions(w io.Writer, subs []apiSubscription) {
	if len(subs) == 0 {
		fmt.Fprintln(w, "no subscriptions")
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "TOPIC\tQOS\tNL\tRAP\tRH")
	for _, s := range subs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", s.Topic, s.QoS, s.NL, s.RAP, s.RH)
	}
	tw.Flush()
}

// seconds formats a latency in seconds.
func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}

func printHandlers(w io.Writer, hs []apiHandler) {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tBACKEND\tREADY\tGRPC\tWASM\tCALLBACKS\tFAILED\tTIMEOUTS\tPANICS\tP50\tP99")
	for _, h := range hs {
		ready := yesNo(h.Ready)
		if h.Reason != "" {
			ready += " (" + h.Reason + ")"
		}
		grpc, wasm := "-", "-"
		if g := h.GRPC; g != nil {
			grpc = g.Address + " " + g.State
		}
		if m := h.Wasm; m != nil {
			wasm = fmt.Sprintf("%s v%d, %d instances, breaker %s", m.Module, m.Version, m.Instances, orDash(m.Breaker))
			if m.Faults > 0 {
				wasm += fmt.Sprintf(", %d faults", m.Faults)
			}
		}
		lat := h.Callbacks.LatencySeconds
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n",
			h.Name, h.Backend, ready, grpc, wasm, h.Callbacks.Total, h.Callbacks.Failed,
			h.Callbacks.Timeouts, h.Callbacks.Panics, seconds(lat["p50"]), seconds(lat["p99"]))
	}
	tw.Flush()
	// The last errors of the wasm modules, which do not fit the table.
	for _, h := range hs {
		if m := h.Wasm; m != nil && m.LastError != "" {
			fmt.Fprintf(w, "%s: last error: %s\n", h.Name, m.LastError)
		}
	}
}

func printReload(w io.Writer, r *apiReload) {
	fmt.Fprintf(w, "reloaded %s: %s, version %d", r.Name, r.Result, r.Version)
	if r.SHA256 != "" {
		fmt.Fprintf(w, ", sha256 %s", r.SHA256)
	}
	fmt.Fprintln(w)
}

// formatEvent is the human line of a trace event, such as
//
//	2026-12-01T10:00:00.123Z callback OnReceivedBytes size=5 code=SUCCESS 12µs payload=50494e470a
func formatEvent(ev *traceEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", orDash(ev.Time), orDash(ev.Kind), orDash(ev.Name))
	if ev.Topic != "" {
		fmt.Fprintf(&b, " topic=%s", ev.Topic)
	}
	if ev.Size > 0 {
		fmt.Fprintf(&b, " size=%d", ev.Size)
	}
	if ev.Code != "" {
		fmt.Fprintf(&b, " code=%s", ev.Code)
	}
	if ev.Error != "" {
		fmt.Fprintf(&b, " error=%q", ev.Error)
	}
	if ev.DurationUS > 0 {
		fmt.Fprintf(&b, " %s", time.Duration(ev.DurationUS)*time.Microsecond)
	}
	if ev.Payload != "" {
		fmt.Fprintf(&b, " payload=%s", ev.Payload)
	}
	return b.String()
}
