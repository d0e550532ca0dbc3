package admin

// This file holds the status, listener and handler endpoints, and
// readiness.

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/protogate/protogate/gateway"
)

type statusJSON struct {
	Node          string   `json:"node"`
	Version       string   `json:"version"`
	StartedAt     string   `json:"started_at"`
	UptimeSeconds int64    `json:"uptime_seconds"`
	Ready         bool     `json:"ready"`
	Reasons       []string `json:"reasons"`
	Connections   int      `json:"connections"`
	Clients       int      `json:"clients"`
}

func (s *Server) statusNow() statusJSON {
	reasons := s.notReady()
	return statusJSON{
		Node:          s.cfg.Node,
		Version:       s.cfg.Version,
		StartedAt:     rfc3339(s.started),
		UptimeSeconds: int64(time.Since(s.started) / time.Second),
		Ready:         len(reasons) == 0,
		Reasons:       reasons,
		Connections:   s.cfg.Gateway.NumConns(),
		Clients:       s.cfg.Gateway.NumClients(),
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.statusNow())
}

// notReady returns why the gateway is not ready to serve devices: a
// listener not bound, the broker down, a handler without a usable back
// end. Empty means ready.
func (s *Server) notReady() []string {
	reasons := []string{}
	byName := s.listenerStats()
	for _, l := range s.cfg.Listeners {
		if st, ok := byName[l.Name]; !ok || !st.Running {
			reasons = append(reasons, fmt.Sprintf("listener %s: not listening", l.Name))
		}
	}
	if b := s.cfg.Broker; b != nil {
		if err := b.Ready(); err != nil {
			reasons = append(reasons, "broker: "+err.Error())
		}
	}
	if s.cfg.Registry != nil {
		// Until a kv registry has its buckets (a cluster forming, a node
		// starting), every login would be refused under reject.
		if rs := s.cfg.Registry(); !rs.Available && rs.OnUnavailable == "reject" {
			reasons = append(reasons, "registry: client id registry ("+rs.Backend+") not available yet, and registry.on_unavailable is reject")
		}
	}
	for i := range s.cfg.Handlers {
		if why := handlerProblem(&s.cfg.Handlers[i]); why != "" {
			reasons = append(reasons, fmt.Sprintf("handler %s: %s", s.cfg.Handlers[i].Name, why))
		}
	}
	return reasons
}

// handlerProblem says why h has no usable back end, or "". A Wasm handler
// with a gRPC fallback is usable while either is.
func handlerProblem(h *Handler) string {
	var wasmWhy, grpcWhy string
	if h.Wasm != nil {
		st := h.Wasm.WasmStatus()
		switch {
		case st.Version == 0:
			wasmWhy = "no wasm module loaded"
			if st.LastError != "" {
				wasmWhy += ": " + st.LastError
			}
		case st.Broken:
			wasmWhy = fmt.Sprintf("wasm version %d is broken (its breaker tripped); reload a fixed module", st.Version)
		}
		if wasmWhy == "" {
			return ""
		}
	}
	if h.GRPC != nil {
		switch state := h.GRPC.State(); state {
		case "READY", "CONNECTING", "IDLE":
			return ""
		default:
			grpcWhy = "grpc channel to " + h.GRPC.Address() + " is " + state
		}
	}
	return strings.TrimPrefix(wasmWhy+"; "+grpcWhy, "; ")
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers readiness, with the cluster state when there is one:
// peers that are down do not make this node not ready, since it serves
// its own devices (RATIONALE.md).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	reasons := s.notReady()
	body := map[string]any{"ready": len(reasons) == 0, "reasons": reasons}
	if s.cfg.Cluster != nil {
		body["cluster"] = s.clusterStatus()
	}
	if len(reasons) > 0 {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// cluster answers the cluster state, or 404 when the node is neither
// clustered nor a leaf.
func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cluster == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "this node has no broker.cluster nor broker.leafnode")
		return
	}
	writeJSON(w, http.StatusOK, s.clusterStatus())
}

// clusterStatus is the cluster state with the registry's.
func (s *Server) clusterStatus() ClusterStatus {
	cs := s.cfg.Cluster()
	if s.cfg.Registry != nil {
		rs := s.cfg.Registry()
		cs.Registry = &rs
	}
	return cs
}

type listenerJSON struct {
	Name               string            `json:"name"`
	Type               string            `json:"type"`
	Bind               string            `json:"bind"`
	Address            string            `json:"address"`
	Handler            string            `json:"handler"`
	Running            bool              `json:"running"`
	CurrentConnections int64             `json:"current_connections"`
	MaxConnections     int               `json:"max_connections"`
	Accepted           uint64            `json:"accepted"`
	Refused            map[string]uint64 `json:"refused"`
	Closed             map[string]uint64 `json:"closed"`
	RecvOct            uint64            `json:"recv_oct"`
	SendOct            uint64            `json:"send_oct"`
	RecvMsg            uint64            `json:"recv_msg"`
	SendMsg            uint64            `json:"send_msg"`
	DatagramsDropped   uint64            `json:"datagrams_dropped"`
	OversizeClosed     uint64            `json:"oversize_closed"`
}

func (s *Server) listenerStats() map[string]gateway.ListenerStats {
	m := make(map[string]gateway.ListenerStats)
	for _, st := range s.cfg.Gateway.Listeners() {
		m[st.Name] = st
	}
	return m
}

func (s *Server) listenersNow() []listenerJSON {
	byName := s.listenerStats()
	out := make([]listenerJSON, 0, len(s.cfg.Listeners))
	for _, l := range s.cfg.Listeners {
		out = append(out, listenerView(l, byName[l.Name]))
	}
	return out
}

func listenerView(l Listener, st gateway.ListenerStats) listenerJSON {
	refused := make(map[string]uint64)
	for _, c := range gateway.Causes() {
		refused[c] = st.Refused[c]
	}
	closed := st.Closed
	if closed == nil {
		closed = make(map[string]uint64)
	}
	return listenerJSON{
		Name: l.Name, Type: l.Type, Bind: l.Bind, Address: st.Addr, Handler: l.Handler,
		Running: st.Running, CurrentConnections: st.Active, MaxConnections: l.MaxConnections,
		Accepted: st.Accepted, Refused: refused, Closed: closed,
		RecvOct: st.RecvBytes, SendOct: st.SentBytes, RecvMsg: st.RecvMsgs, SendMsg: st.SentMsgs,
		DatagramsDropped: st.Dropped, OversizeClosed: st.Oversize,
	}
}

func (s *Server) listeners(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": s.listenersNow()})
}

func (s *Server) listener(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, l := range s.cfg.Listeners {
		if l.Name == name {
			writeJSON(w, http.StatusOK, listenerView(l, s.cfg.Gateway.ListenerStats(name)))
			return
		}
	}
	notFound(w, fmt.Sprintf("no listener %q", name))
}

type handlerJSON struct {
	Name      string        `json:"name"`
	Backend   string        `json:"backend"`
	Ready     bool          `json:"ready"`
	Reason    string        `json:"reason"`
	GRPC      *grpcJSON     `json:"grpc,omitempty"`
	Wasm      *wasmJSON     `json:"wasm,omitempty"`
	Callbacks callbacksJSON `json:"callbacks"`
}

type grpcJSON struct {
	Address string `json:"address"`
	Service string `json:"service"`
	State   string `json:"state"`
}

type wasmJSON struct {
	Module       string            `json:"module"`
	Version      int               `json:"version"`
	SHA256       string            `json:"sha256"`
	Instances    int               `json:"instances"`
	Versions     int               `json:"versions"`
	Faults       int               `json:"faults"`
	FaultsByKind map[string]uint64 `json:"faults_by_kind"`
	Breaker      string            `json:"breaker"`
	NextRetry    *string           `json:"next_retry"`
	CooldownSec  float64           `json:"cooldown_seconds"`
	LastFault    string            `json:"last_fault"`
	LastFaultAt  *string           `json:"last_fault_at"`
	LastError    string            `json:"last_error"`
	Reloads      uint64            `json:"reloads"`
	ReloadErrors uint64            `json:"reload_errors"`
}

type callbacksJSON struct {
	Total    uint64             `json:"total"`
	Failed   uint64             `json:"failed"`
	Timeouts uint64             `json:"timeouts"`
	Faults   uint64             `json:"faults"`
	Panics   uint64             `json:"panics"`
	Latency  map[string]float64 `json:"latency_seconds"`
}

// handlerCallbacks sums the callback stats of every listener that h serves.
func (s *Server) handlerCallbacks(h *Handler, lstats []gateway.ListenerStats) gateway.CallbackStats {
	var cs gateway.CallbackStats
	for i := range lstats {
		if lstats[i].Handler == h.Handler {
			cs.Add(&lstats[i].Callbacks)
		}
	}
	return cs
}

func (s *Server) handlerView(h *Handler, lstats []gateway.ListenerStats) handlerJSON {
	why := handlerProblem(h)
	hj := handlerJSON{Name: h.Name, Backend: h.Backend(), Ready: why == "", Reason: why}
	if g := h.GRPC; g != nil {
		hj.GRPC = &grpcJSON{Address: g.Address(), Service: g.ServiceName(), State: g.State()}
	}
	if m := h.Wasm; m != nil {
		st := m.WasmStatus()
		wj := &wasmJSON{Module: st.Module, Version: st.Version, SHA256: st.SHA256, Instances: st.Instances,
			Versions: st.Versions, Faults: st.Faults, FaultsByKind: st.FaultsByKind, Breaker: "closed", LastFault: st.LastFault,
			LastError: st.LastError, Reloads: st.Reloads, ReloadErrors: st.ReloadErrors}
		if wj.FaultsByKind == nil {
			wj.FaultsByKind = map[string]uint64{}
		}
		if st.Broken {
			wj.Breaker = "open"
		}
		if st.BreakerState != "" {
			wj.Breaker = st.BreakerState
		}
		if !st.NextRetry.IsZero() {
			t := rfc3339(st.NextRetry)
			wj.NextRetry = &t
		}
		wj.CooldownSec = st.Cooldown.Seconds()
		if !st.LastFaultAt.IsZero() {
			t := rfc3339(st.LastFaultAt)
			wj.LastFaultAt = &t
		}
		hj.Wasm = wj
	}
	cs := s.handlerCallbacks(h, lstats)
	hj.Callbacks = callbacksJSON{
		Total:    cs.Total(-1),
		Timeouts: cs.Total(outcome(gateway.OutcomeTimeout)),
		Faults:   cs.Total(outcome(gateway.OutcomeFault)),
		Panics:   cs.Total(outcome(gateway.OutcomePanic)),
		Latency:  map[string]float64{"p50": cs.Quantile(0.5), "p90": cs.Quantile(0.9), "p99": cs.Quantile(0.99)},
	}
	hj.Callbacks.Failed = hj.Callbacks.Total - cs.Total(outcome(gateway.OutcomeOK))
	return hj
}

func outcome(name string) int {
	for i, o := range gateway.Outcomes {
		if o == name {
			return i
		}
	}
	return -1
}

func (s *Server) handlersNow() []handlerJSON {
	lstats := s.cfg.Gateway.Listeners()
	out := make([]handlerJSON, 0, len(s.cfg.Handlers))
	for i := range s.cfg.Handlers {
		out = append(out, s.handlerView(&s.cfg.Handlers[i], lstats))
	}
	return out
}

func (s *Server) handlers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": s.handlersNow()})
}

func (s *Server) findHandler(w http.ResponseWriter, r *http.Request) *Handler {
	name := r.PathValue("name")
	for i := range s.cfg.Handlers {
		if s.cfg.Handlers[i].Name == name {
			return &s.cfg.Handlers[i]
		}
	}
	notFound(w, fmt.Sprintf("no handler %q", name))
	return nil
}

func (s *Server) handler(w http.ResponseWriter, r *http.Request) {
	if h := s.findHandler(w, r); h != nil {
		writeJSON(w, http.StatusOK, s.handlerView(h, s.cfg.Gateway.Listeners()))
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	h := s.findHandler(w, r)
	if h == nil {
		return
	}
	if h.Wasm == nil {
		badRequest(w, fmt.Sprintf("handler %s has no wasm module to reload (a grpc handler reconnects by itself)", h.Name))
		return
	}
	if err := h.Wasm.Reload(); err != nil {
		s.log.Warn("admin: reload failed; the running version stays", "handler", h.Name, "err", err)
		writeError(w, http.StatusInternalServerError, "RELOAD_FAILED", err.Error())
		return
	}
	st := h.Wasm.WasmStatus()
	s.log.Info("admin: handler reloaded", "handler", h.Name, "version", st.Version, "sha256", st.SHA256)
	writeJSON(w, http.StatusOK, map[string]any{"name": h.Name, "result": "ok", "version": st.Version, "sha256": st.SHA256})
}

type totalsJSON struct {
	Connections int    `json:"connections"`
	Clients     int    `json:"clients"`
	RecvOct     uint64 `json:"recv_oct"`
	SendOct     uint64 `json:"send_oct"`
	RecvMsg     uint64 `json:"recv_msg"`
	SendMsg     uint64 `json:"send_msg"`
	Dropped     uint64 `json:"dropped"`
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	ls := s.listenersNow()
	t := totalsJSON{Connections: s.cfg.Gateway.NumConns(), Clients: s.cfg.Gateway.NumClients(), Dropped: s.cfg.Gateway.Dropped()}
	for _, l := range ls {
		t.RecvOct += l.RecvOct
		t.SendOct += l.SendOct
		t.RecvMsg += l.RecvMsg
		t.SendMsg += l.SendMsg
	}
	if b := s.cfg.Broker; b != nil {
		t.Dropped += b.BrokerStats().Dropped
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status":    s.statusNow(),
		"listeners": ls,
		"handlers":  s.handlersNow(),
		"totals":    t,
	})
}
