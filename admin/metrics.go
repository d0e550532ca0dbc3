package admin

// This file holds the Prometheus metrics. The gateway counts with atomics
// where things happen; the collector here turns them into metrics at
// scrape time, so instrumentation costs traffic nothing more and a scrape
// takes no lock traffic needs. Labels come only from bounded sets: the
// configured listener and handler names and fixed enums, never a client
// id, topic, address or connection handle.

import (
	"net/http"
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/protogate/protogate/gateway"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("protogate_"+name, help, labels, nil)
}

var (
	mBuildInfo = desc("build_info", "Build information; always 1.", "version", "goversion")
	mStartTime = desc("start_time_seconds", "When the gateway started, in seconds since the Unix epoch.")
	mReady     = desc("ready", "1 when the gateway is ready (see /readyz), else 0.")

	mConns       = desc("connections", "Connections open now.", "listener")
	mClients     = desc("clients", "Authenticated connections (registered client ids) now.")
	mMaxConns    = desc("listener_max_connections", "The listener's connection limit; 0 for none.", "listener")
	mListenerUp  = desc("listener_up", "1 while the listener accepts connections.", "listener")
	mAccepted    = desc("connections_accepted_total", "Connections that reached the handler.", "listener")
	mRejected    = desc("connections_rejected_total", "Connections refused before reaching the handler, by reason.", "listener", "reason")
	mClosed      = desc("connections_closed_total", "Connections closed, by reason class.", "listener", "reason")
	mRecvBytes   = desc("received_bytes_total", "Bytes received from devices.", "listener")
	mSentBytes   = desc("sent_bytes_total", "Bytes sent to devices.", "listener")
	mPublished   = desc("messages_published_total", "Messages the listener's devices published.", "listener")
	mDelivered   = desc("messages_delivered_total", "Messages delivered to the handlers of the listener's connections.", "listener")
	mDgramDrops  = desc("datagrams_dropped_total", "Datagrams dropped for max_bytes_rate or max_packet_size.", "listener")
	mOversize    = desc("frames_oversize_total", "Connections closed for a frame over max_packet_size.", "listener")
	mMsgsDropped = desc("messages_dropped_total", "Deliveries dropped, by reason.", "reason")

	mCallbacks  = desc("handler_callbacks_total", "Handler callbacks, by outcome.", "handler", "backend", "callback", "outcome")
	mCallbackS  = desc("handler_callback_duration_seconds", "Time handler callbacks took.", "handler", "backend", "callback")
	mHandlerUp  = desc("handler_up", "1 while the handler has a usable back end.", "handler")
	mAdapter    = desc("adapter_requests_total", "Calls handlers made on the gateway (ConnectionAdapter methods or Wasm host calls), by result code.", "rpc", "code")
	mPanics     = desc("handler_panics_total", "Panics of handler back ends the gateway recovered.")
	mGRPCState  = desc("grpc_channel_ready", "1 while the gRPC channel to the handler is READY.", "handler")
	mLaneStream = desc("lane_streams_total", "Fast-lane streams opened to the handler (protogate.v1.StreamHandler).", "handler")
	mLaneLate   = desc("lane_unknown_results_total", "Fast-lane callback results naming no callback in flight (late answers to callbacks that timed out), dropped.", "handler")
	mLaneFailed = desc("lane_failed_calls_total", "Fast-lane calls without an answer that failed.", "handler")
	mWasmInfo   = desc("wasm_module_info", "The Wasm module version serving new connections; always 1.", "handler", "version", "sha256")
	mWasmInst   = desc("wasm_instances", "Live instances of the current Wasm module version.", "handler")
	mWasmFaults = desc("wasm_version_faults", "Faults of the current Wasm module version.", "handler")
	mWasmFaultK = desc("wasm_faults_total", "Wasm instance faults of every module version, by kind.", "handler", "kind")
	mAuthn      = desc("authn_total", "Authentication answers, by authenticator and result (allow, deny, ignore, error).", "authenticator", "result")
	mAuthz      = desc("authz_total", "Authorization answers, by action and result.", "action", "result")
	mAdDenied   = desc("adapter_denied_total", "ConnectionAdapter calls refused for their credentials (no token, another handler's token or certificate).")
	mAuthzHits  = desc("authz_cache_hits_total", "Authorization answers taken from a connection's cache.")
	mTakeovers  = desc("clientid_takeovers_total", "Connections closed because another one authenticated with their client id.")
	mWasmBreak  = desc("wasm_breaker_open", "1 when the current Wasm module version tripped its breaker.", "handler")
	mWasmReload = desc("wasm_reloads_total", "Wasm module reloads, by result.", "handler", "result")

	mNATSConns  = desc("nats_connections", "Connections to the embedded NATS server.")
	mNATSSubs   = desc("nats_subscriptions", "Subscriptions on the embedded NATS server.")
	mNATSRoutes = desc("nats_routes", "Cluster routes of the embedded NATS server.")
	mNATSInMsg  = desc("nats_in_msgs_total", "Messages the embedded NATS server received.")
	mNATSOutMsg = desc("nats_out_msgs_total", "Messages the embedded NATS server sent.")
	mNATSInB    = desc("nats_in_bytes_total", "Bytes the embedded NATS server received.")
	mNATSOutB   = desc("nats_out_bytes_total", "Bytes the embedded NATS server sent.")
	mNATSSlow   = desc("nats_slow_consumers_total", "Slow consumers the embedded NATS server saw.")

	mClusterPeers    = desc("cluster_peers", "Cluster nodes connected to this one (broker.cluster).")
	mClusterExpected = desc("cluster_nodes_expected", "Nodes of the cluster, this one included (broker.cluster.routes).")
	mLeafConns       = desc("leaf_connections", "Leaf node connections to hubs up (broker.leafnode).")

	mRegAvailable   = desc("registry_available", "1 while the client-id registry takes claims.")
	mRegClaims      = desc("registry_claims_total", "Client id claims confirmed cluster-wide.")
	mRegTakeovers   = desc("registry_takeovers_total", "Claims that discarded a connection on another node.")
	mRegDiscarded   = desc("registry_discarded_total", "Connections of this node discarded by another node's claim.")
	mRegUnavailable = desc("registry_unavailable_total", "Claims the registry could not answer within registry.claim_timeout.")
	mRegReclaimed   = desc("registry_reclaimed_total", "Claims allowed on this node alone (on_unavailable: local) and later made cluster-wide.")
	mJailed         = desc("clientid_jailed_total", "Authenticate calls held back because their client id was taken over less than a second before.")
)

// collector reads the gateway at scrape time.
type collector struct{ s *Server }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mBuildInfo, mStartTime, mReady, mConns, mClients, mMaxConns, mListenerUp,
		mAccepted, mRejected, mClosed, mRecvBytes, mSentBytes, mPublished, mDelivered, mDgramDrops, mOversize,
		mMsgsDropped, mCallbacks, mCallbackS, mHandlerUp, mAdapter, mPanics, mGRPCState, mLaneStream, mLaneLate, mLaneFailed, mWasmInfo, mWasmInst,
		mWasmFaults, mWasmFaultK, mTakeovers, mAuthn, mAuthz, mAuthzHits, mAdDenied, mWasmBreak, mWasmReload, mNATSConns, mNATSSubs, mNATSRoutes, mNATSInMsg, mNATSOutMsg,
		mNATSInB, mNATSOutB, mNATSSlow, mClusterPeers, mClusterExpected, mLeafConns,
		mRegAvailable, mRegClaims, mRegTakeovers, mRegDiscarded, mRegUnavailable, mRegReclaimed, mJailed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	g := s.cfg.Gateway
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- constMetric(d, prometheus.GaugeValue, v, labels)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- constMetric(d, prometheus.CounterValue, float64(v), labels)
	}
	gauge(mBuildInfo, 1, s.cfg.Version, runtime.Version())
	gauge(mStartTime, float64(s.started.UnixNano())/1e9)
	gauge(mReady, b2f(len(s.notReady()) == 0))
	gauge(mClients, float64(g.NumClients()))

	lstats := g.Listeners()
	byName := make(map[string]*gateway.ListenerStats, len(lstats))
	for i := range lstats {
		byName[lstats[i].Name] = &lstats[i]
	}
	for _, l := range s.cfg.Listeners {
		st := byName[l.Name]
		if st == nil {
			st = &gateway.ListenerStats{}
		}
		gauge(mConns, float64(st.Active), l.Name)
		gauge(mMaxConns, float64(l.MaxConnections), l.Name)
		gauge(mListenerUp, b2f(st.Running), l.Name)
		counter(mAccepted, st.Accepted, l.Name)
		for _, cause := range gateway.Causes() {
			counter(mRejected, st.Refused[cause], l.Name, cause)
		}
		for _, class := range gateway.CloseClasses {
			counter(mClosed, st.Closed[class], l.Name, class)
		}
		counter(mRecvBytes, st.RecvBytes, l.Name)
		counter(mSentBytes, st.SentBytes, l.Name)
		counter(mPublished, st.RecvMsgs, l.Name)
		counter(mDelivered, st.SentMsgs, l.Name)
		counter(mDgramDrops, st.Dropped, l.Name)
		counter(mOversize, st.Oversize, l.Name)
	}
	counter(mMsgsDropped, g.Dropped(), "slow_consumer")
	var bs BrokerStats
	if b := s.cfg.Broker; b != nil {
		bs = b.BrokerStats()
	}
	counter(mMsgsDropped, bs.Dropped, "broker_buffer_full")

	for i := range s.cfg.Handlers {
		h := &s.cfg.Handlers[i]
		be := h.Backend()
		cs := s.handlerCallbacks(h, lstats)
		for cb, name := range gateway.Callbacks {
			var count uint64
			for o, outcome := range gateway.Outcomes {
				counter(mCallbacks, cs.Outcomes[cb][o], h.Name, be, name, outcome)
				count += cs.Outcomes[cb][o]
			}
			buckets := make(map[float64]uint64, len(gateway.LatencyBuckets))
			var cum uint64
			for b, le := range gateway.LatencyBuckets {
				cum += cs.Buckets[cb][b]
				buckets[le] = cum
			}
			m, err := prometheus.NewConstHistogram(mCallbackS, count, cs.Sum[cb].Seconds(), buckets, h.Name, be, name)
			if err != nil {
				m = prometheus.NewInvalidMetric(mCallbackS, err)
			}
			ch <- m
		}
		gauge(mHandlerUp, b2f(handlerProblem(h) == ""), h.Name)
		if gc := h.GRPC; gc != nil {
			gauge(mGRPCState, b2f(gc.State() == "READY"), h.Name)
			if lc, ok := gc.(LaneCounter); ok && gc.ServiceName() == laneService {
				streams, late, failed := lc.LaneCounts()
				counter(mLaneStream, streams, h.Name)
				counter(mLaneLate, late, h.Name)
				counter(mLaneFailed, failed, h.Name)
			}
		}
		if m := h.Wasm; m != nil {
			st := m.WasmStatus()
			if st.Version > 0 {
				gauge(mWasmInfo, 1, h.Name, strconv.Itoa(st.Version), st.SHA256)
			}
			gauge(mWasmInst, float64(st.Instances), h.Name)
			gauge(mWasmFaults, float64(st.Faults), h.Name)
			for kind, n := range st.FaultsByKind {
				counter(mWasmFaultK, n, h.Name, kind)
			}
			gauge(mWasmBreak, b2f(st.Broken), h.Name)
			counter(mWasmReload, st.Reloads, h.Name, "ok")
			counter(mWasmReload, st.ReloadErrors, h.Name, "error")
		}
	}
	calls := g.Calls()
	codes := gateway.Codes()
	for i, rpc := range gateway.CallNames {
		for j, code := range codes {
			counter(mAdapter, calls[i][j], rpc, code.String())
		}
	}
	counter(mPanics, g.Panics())
	counter(mTakeovers, g.Takeovers())
	as := g.AuthStats()
	for _, action := range []string{"publish", "subscribe"} {
		counter(mAuthz, as.Allow[action], action, "allow")
		counter(mAuthz, as.Deny[action], action, "deny")
	}
	counter(mAuthzHits, as.CacheHits)
	if f := s.cfg.AdapterDenied; f != nil {
		counter(mAdDenied, f())
	}
	if f := s.cfg.AuthnStats; f != nil {
		for src, results := range f() {
			for res, n := range results {
				counter(mAuthn, n, src, res)
			}
		}
	}

	if s.cfg.Broker != nil {
		gauge(mNATSConns, float64(bs.Connections))
		gauge(mNATSSubs, float64(bs.Subscriptions))
		gauge(mNATSRoutes, float64(bs.Routes))
		counter(mNATSInMsg, bs.InMsgs)
		counter(mNATSOutMsg, bs.OutMsgs)
		counter(mNATSInB, bs.InBytes)
		counter(mNATSOutB, bs.OutBytes)
		counter(mNATSSlow, bs.SlowConsumers)
	}
	if s.cfg.Cluster != nil {
		cs := s.cfg.Cluster()
		if cs.Name != "" {
			gauge(mClusterPeers, float64(len(cs.Peers)))
			gauge(mClusterExpected, float64(cs.Expected))
		}
		if cs.LeafRemotes > 0 {
			gauge(mLeafConns, float64(len(cs.Leafs)))
		}
	}
	if s.cfg.Registry != nil {
		rs := s.cfg.Registry()
		avail := 0.0
		if rs.Available {
			avail = 1
		}
		gauge(mRegAvailable, avail)
		counter(mRegClaims, rs.Claims)
		counter(mRegTakeovers, rs.Takeovers)
		counter(mRegDiscarded, rs.Discarded)
		counter(mRegUnavailable, rs.Unavailable)
		counter(mRegReclaimed, rs.Reclaimed)
		counter(mJailed, rs.Jailed)
	}
}

// constMetric returns a metric, or an invalid one that fails the scrape
// of that metric alone (a label count that does not match its Desc).
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler returns the /metrics handler: the gateway's metrics plus
// the Go runtime and process collectors.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}, ErrorHandling: promhttp.ContinueOnError})
}

// slogPrinter adapts the server's logger to promhttp's ErrorLog.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("admin: metrics", "err", v) }
