// Package admin is protogate's operator interface: an HTTP API with EMQX's
// shapes (status, listeners, clients with kick and subscriptions, handlers
// with reload, a live trace of one client), health and readiness probes,
// Prometheus metrics and an embedded dashboard.
//
// It reads the gateway through gateway.Server and knows the handler back
// ends and the broker only through the small interfaces below; cmd/protogate
// wires the implementations in.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authn"
)

// Config configures a Server. Gateway is required.
type Config struct {
	// Node names this gateway in answers (status, clients).
	Node string
	// Version is the gateway's version string.
	Version string
	// Gateway is the server whose connections and listeners are shown.
	Gateway *gateway.Server
	// Listeners describes the configured listeners, in config order.
	Listeners []Listener
	// Handlers describes the configured handlers.
	Handlers []Handler
	// Broker is the pub/sub; nil leaves it out of readiness and metrics.
	Broker Broker
	// Kicker kicks a client connected to another node of the cluster
	// (the client-id registry); nil on a single node.
	Kicker gateway.ClientKicker
	// Cluster returns what the node sees of its cluster and leaf node
	// connections, for /api/v1/cluster, /readyz and the metrics; nil
	// when the node is neither clustered nor a leaf. It must be safe for
	// concurrent use. Missing peers do not make the node not ready: it
	// serves its own devices.
	Cluster func() ClusterStatus
	// Registry returns the client-id registry's state, shown with the
	// cluster's and in the metrics; nil leaves it out.
	Registry func() RegistryStatus
	// APIKeys maps each API key to its secret: the credentials accepted as
	// HTTP Basic key:secret. With none, requests need no credentials
	// (config refuses that off loopback).
	APIKeys map[string]authn.Password
	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
	// AuthnStats returns the authenticators' results, by authenticator
	// and result; nil leaves them out of the metrics.
	AuthnStats func() map[string]map[string]uint64
	// AdapterDenied counts ConnectionAdapter calls refused for their
	// credentials; nil without an adapter.
	AdapterDenied func() uint64
	// MaxTraces bounds the traces running at once. Default: 4.
	MaxTraces int
	// MaxTraceDuration caps a trace's duration. Default: 1h.
	MaxTraceDuration time.Duration
}

// Listener describes one configured listener.
type Listener struct {
	Name           string
	Type           string // tcp, ssl, udp, dtls
	Bind           string // as configured
	Handler        string // the handler's name
	MaxConnections int    // 0: no limit
}

// Handler describes one configured handler. Wasm, GRPC or both are set.
type Handler struct {
	Name string
	// Handler is what the gateway calls, to match listeners and
	// connections to this handler.
	Handler gateway.Handler
	Wasm    WasmModule  // nil without a wasm block
	GRPC    GRPCChannel // nil without a grpc block
}

// Backend names the handler's back end: wasm, grpc, or wasm+grpc (Wasm
// with a gRPC fallback).
func (h *Handler) Backend() string {
	switch {
	case h.Wasm != nil && h.GRPC != nil:
		return "wasm+grpc"
	case h.Wasm != nil:
		return "wasm"
	}
	return "grpc"
}

// WasmModule is a Wasm handler, as the API sees it. Implementations must
// be safe for concurrent use.
type WasmModule interface {
	// WasmStatus returns a snapshot of the module's state.
	WasmStatus() WasmStatus
	// Reload loads the module again, as SIGHUP does.
	Reload() error
}

// WasmStatus is a snapshot of a Wasm handler.
type WasmStatus struct {
	Module       string            // path, or builtin:name
	Version      int               // generation of the current version; 0 if none loaded
	SHA256       string            // prefix of the current version's digest
	Instances    int               // live instances of the current version
	Versions     int               // versions still serving connections
	Faults       int               // faults of the current version
	FaultsByKind map[string]uint64 // faults of every version since start, by kind
	Broken       bool              // the current version's breaker is open or half-open
	BreakerState string            // closed, open or half_open; "" means closed
	NextRetry    time.Time         // open: when the breaker tries a fresh instance
	Cooldown     time.Duration     // the breaker's current cool-down
	LastFault    string            // the last fault's text
	LastFaultAt  time.Time         // when it happened
	LastError    string            // why the last load failed
	Reloads      uint64            // reloads that succeeded
	ReloadErrors uint64            // reloads that failed
}

// GRPCChannel is a remote gRPC handler, as the API sees it (gateway/remote's
// Handler). Implementations must be safe for concurrent use.
type GRPCChannel interface {
	// State returns the channel's connectivity state (READY, CONNECTING,
	// IDLE, TRANSIENT_FAILURE, SHUTDOWN).
	State() string
	Address() string
	ServiceName() string
}

// LaneCounter is implemented by a GRPCChannel that can serve protogate's
// fast lane (gateway/remote.Handler); the counts are exported as metrics
// when it does.
type LaneCounter interface {
	// LaneCounts returns the streams opened, the results that named no
	// callback in flight, and the calls without an answer that failed.
	LaneCounts() (streams, unknownResults, failedCalls uint64)
}

// laneService is the service name of the fast lane.
const laneService = "protogate.v1.StreamHandler"

// Broker is the pub/sub, as the API sees it. Implementations must be safe
// for concurrent use.
type Broker interface {
	// Ready returns nil when the broker accepts work, or why not.
	Ready() error
	// BrokerStats returns its counters.
	BrokerStats() BrokerStats
}

// BrokerStats are the embedded NATS server's counters.
type BrokerStats struct {
	Connections, Subscriptions, Routes uint64
	InMsgs, OutMsgs, InBytes, OutBytes uint64
	SlowConsumers                      uint64
	// Dropped counts deliveries the broker dropped (its buffer was full).
	Dropped uint64
}

// ClusterStatus is what a node sees of its cluster and leaf node
// connections.
type ClusterStatus struct {
	// Name is the cluster name, "" when the node is not clustered.
	Name string `json:"name"`
	// Node is this node's name.
	Node string `json:"node"`
	// Listen is the address routes connect to, "" without a cluster.
	Listen string `json:"listen"`
	// Expected is the number of nodes of the cluster, this one included.
	Expected int `json:"expected"`
	// Peers are the names of the nodes connected to this one.
	Peers []string `json:"peers"`
	// Routes are the configured routes, this node's own left out.
	Routes []string `json:"routes"`
	// Unreachable are the routes without a connection.
	Unreachable []string `json:"unreachable"`
	// Leafs are the connected leaf node connections to hubs.
	Leafs []ClusterLeaf `json:"leafs"`
	// LeafRemotes is the number of configured hubs.
	LeafRemotes int `json:"leaf_remotes"`
	// JetStreamLeader names the node leading JetStream's meta group, ""
	// when there is none.
	JetStreamLeader string `json:"jetstream_leader"`
	// Registry is the client-id registry's state.
	Registry *RegistryStatus `json:"registry,omitempty"`
}

// RegistryStatus describes the client-id registry (config registry).
type RegistryStatus struct {
	// Backend is local, kv or notices.
	Backend string `json:"backend"`
	// Available is false while the registry cannot take claims (kv: its
	// buckets are not bound yet); the node is then not ready when
	// OnUnavailable is reject.
	Available bool `json:"available"`
	// OnUnavailable is registry.on_unavailable: reject or local.
	OnUnavailable string `json:"on_unavailable"`
	// Claims counts claims that succeeded cluster-wide; Takeovers those
	// that discarded a connection on another node; Discarded this node's
	// connections discarded by another node's claim; Unavailable claims
	// past registry.claim_timeout; Reclaimed claims allowed locally and
	// later made cluster-wide; Jailed Authenticate calls held back by the
	// jail of an id just taken over (all since start).
	Claims      uint64 `json:"claims"`
	Takeovers   uint64 `json:"takeovers"`
	Discarded   uint64 `json:"discarded"`
	Unavailable uint64 `json:"unavailable"`
	Reclaimed   uint64 `json:"reclaimed"`
	Jailed      uint64 `json:"jailed"`
}

// ClusterLeaf is one leaf node connection to a hub.
type ClusterLeaf struct {
	// Name is the hub server's name.
	Name string `json:"name"`
	// Addr is its host:port.
	Addr string `json:"addr"`
}

// maxBody bounds a request body: the API takes small JSON objects only.
const maxBody = 64 << 10

// Server serves the admin API. It is safe for concurrent use; create it
// with New and stop its traces with Close.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	keys    map[string]authn.Password
	limiter *failLimiter
	csrf    *http.CrossOriginProtection
	started time.Time

	traceMu sync.Mutex
	traces  map[*gateway.Trace]struct{}
	closed  bool
	done    chan struct{} // closed by Close: ends every trace
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Gateway == nil {
		return nil, errors.New("admin: no gateway")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxTraces <= 0 {
		cfg.MaxTraces = 4
	}
	if cfg.MaxTraceDuration <= 0 {
		cfg.MaxTraceDuration = time.Hour
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		mux:     http.NewServeMux(),
		limiter: newFailLimiter(),
		csrf:    http.NewCrossOriginProtection(),
		started: cfg.Gateway.Started(),
		traces:  make(map[*gateway.Trace]struct{}),
		done:    make(chan struct{}),
	}
	s.keys = cfg.APIKeys
	s.routes()
	return s, nil
}

// route is one endpoint of the API. The OpenAPI test checks this table
// against the document.
type route struct {
	pattern string // method and path, as http.ServeMux takes it
	public  bool   // served without credentials
	h       http.HandlerFunc
}

func (s *Server) routeTable() []route {
	return []route{
		{"GET /healthz", true, s.healthz},
		{"GET /readyz", true, s.readyz},
		{"GET /api/v1/status", false, s.status},
		{"GET /api/v1/overview", false, s.overview},
		{"GET /api/v1/cluster", false, s.cluster},
		{"GET /api/v1/listeners", false, s.listeners},
		{"GET /api/v1/listeners/{name}", false, s.listener},
		{"GET /api/v1/clients", false, s.clients},
		{"GET /api/v1/clients/{id}", false, s.client},
		{"DELETE /api/v1/clients/{id}", false, s.kick},
		{"GET /api/v1/clients/{id}/subscriptions", false, s.subscriptions},
		{"POST /api/v1/clients/{id}/subscriptions", false, s.subscribe},
		{"DELETE /api/v1/clients/{id}/subscriptions/{topic}", false, s.unsubscribe},
		{"GET /api/v1/handlers", false, s.handlers},
		{"GET /api/v1/handlers/{name}", false, s.handler},
		{"POST /api/v1/handlers/{name}/reload", false, s.reload},
		{"GET /api/v1/trace", false, s.trace},
		{"GET /api/v1/openapi.json", false, s.openapi},
	}
}

func (s *Server) routes() {
	for _, r := range s.routeTable() {
		h := http.Handler(r.h)
		if !r.public {
			h = s.authed(h)
		}
		s.mux.Handle(r.pattern, h)
	}
	for _, r := range s.extraRoutes() {
		s.mux.Handle(r.pattern, s.authed(r.h))
	}
}

// ServeHTTP implements http.Handler. Requests no route takes get a JSON
// error (404, or 405 with Allow), as every other error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	if err := s.csrf.Check(r); err != nil {
		// A browser holding the dashboard's credentials must not be
		// made to kick or reload from another site's page.
		writeError(w, http.StatusForbidden, "FORBIDDEN", "admin: cross-origin request refused: "+err.Error())
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		// The mux, not h, sets the request's path values.
		s.mux.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{header: make(http.Header)}
	h.ServeHTTP(rec, r)
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	switch rec.status {
	case http.StatusMethodNotAllowed:
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path))
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// The mux cleans paths by redirecting; keep that.
		w.Header().Set("Location", rec.header.Get("Location"))
		w.WriteHeader(rec.status)
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint: "+r.URL.Path)
	}
}

// statusRecorder captures what the mux's own 404 and 405 handlers write.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.status = code }

// authed requires valid credentials when the server has API keys.
func (s *Server) authed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.keys) == 0 {
			h.ServeHTTP(w, r)
			return
		}
		ip := clientIP(r)
		if !s.limiter.allow(ip) {
			w.Header().Set("Retry-After", "60")
			writeError(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "too many failed logins from "+ip+"; wait a minute")
			return
		}
		key, secret, ok := r.BasicAuth()
		if ok && s.check(key, secret) {
			h.ServeHTTP(w, r)
			return
		}
		s.limiter.fail(ip)
		s.log.Debug("admin: request refused: bad or missing credentials", "remote", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Basic realm="protogate", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "wrong or missing credentials: use HTTP Basic with an api key and its secret")
	})
}

// check checks key and secret. An unknown key costs a comparison as a
// known one does, so that timing tells little of which keys exist.
func (s *Server) check(key, secret string) bool {
	p, ok := s.keys[key]
	if !ok {
		p = noKey
	}
	return p.Match(secret) && ok
}

// noKey is compared against when the key is unknown; it matches nothing
// anyone can send.
var noKey, _ = authn.ParsePassword("sha256:" + strings.Repeat("0", 64))

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// failLimiter rate-limits failed logins per source address: a burst of
// failBurst, then one more every failEvery.
type failLimiter struct {
	mu    sync.Mutex
	fails map[string]failState
}

type failState struct {
	tokens float64
	at     time.Time
}

const (
	failBurst   = 10
	failEvery   = 6 * time.Second
	failMaxKeys = 10000 // addresses tracked at most; full ones are forgotten first
)

func newFailLimiter() *failLimiter { return &failLimiter{fails: make(map[string]failState)} }

func (l *failLimiter) refill(st failState, now time.Time) failState {
	st.tokens = min(failBurst, st.tokens+float64(now.Sub(st.at))/float64(failEvery))
	st.at = now
	return st
}

func (l *failLimiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.fails[ip]
	if !ok {
		return true
	}
	st = l.refill(st, time.Now())
	l.fails[ip] = st
	return st.tokens >= 1
}

func (l *failLimiter) fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	st, ok := l.fails[ip]
	if !ok {
		if len(l.fails) >= failMaxKeys {
			for k, v := range l.fails {
				if l.refill(v, now).tokens >= failBurst {
					delete(l.fails, k)
				}
			}
			if len(l.fails) >= failMaxKeys {
				// Under a spread-out attack, forget someone.
				for k := range l.fails {
					delete(l.fails, k)
					break
				}
			}
		}
		st = failState{tokens: failBurst, at: now}
	}
	st = l.refill(st, now)
	st.tokens = max(0, st.tokens-1)
	l.fails[ip] = st
}

// apiError is the body of every error answer, as EMQX's.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "BAD_REQUEST", msg)
}

func notFound(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusNotFound, "NOT_FOUND", msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(apiError{Code: "INTERNAL_ERROR", Message: "admin: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// readJSON decodes a request body into v, answering the error itself.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE", fmt.Sprintf("request body over %d bytes", mbe.Limit))
			return false
		}
		badRequest(w, "body: "+err.Error())
		return false
	}
	return true
}

// Close ends every running trace. The HTTP server itself is the caller's.
func (s *Server) Close() error {
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}

// rfc3339 formats t as the API does: UTC with milliseconds.
func rfc3339(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
