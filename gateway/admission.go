package gateway

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/protogate/protogate/gateway/limit"
)

// Refusal causes, as counted in ListenerStats.Refused and logged.
const (
	CauseAccessDenied   = "access_denied"
	CauseMaxConnections = "max_connections"
	CauseMaxConnRate    = "max_conn_rate"
	CauseProxyProtocol  = "proxy_protocol"
	CauseHandshake      = "handshake_failed"
)

var causes = [...]string{CauseAccessDenied, CauseMaxConnections, CauseMaxConnRate, CauseProxyProtocol, CauseHandshake}

// refusalLogEvery bounds the "connection refused" log lines: at most one per
// cause and listener in this interval, with the count since the last one.
const refusalLogEvery = 10 * time.Second

// lstate is the running state of one Listener passed to Serve.
type lstate struct {
	l      *Listener
	srv    *Server
	active atomic.Int64 // admitted connections not yet finished
	rate   *limit.Bucket

	refused  [len(causes)]atomic.Uint64
	dropped  atomic.Uint64 // datagrams dropped: over max_bytes_rate or max_packet_size
	overflow atomic.Uint64 // frames over max_packet_size (connection closed)

	running  atomic.Bool            // Serve is accepting
	addr     atomic.Pointer[string] // the bound address
	accepted atomic.Uint64          // connections that reached the handler
	closed   [len(CloseClasses)]atomic.Uint64
	traffic
	cb cbStats

	logMu   sync.Mutex
	lastLog [len(causes)]time.Time
	unlog   [len(causes)]uint64 // refusals since the last log line
}

func (s *Server) newLState(l *Listener) *lstate {
	ls := &lstate{l: l, srv: s}
	if l.MaxConnRate > 0 {
		// A burst of one second's worth: a restart's reconnect storm is
		// spread, not refused wholesale.
		ls.rate = limit.NewBucket(l.MaxConnRate, max(l.MaxConnRate, 1))
	}
	s.mu.Lock()
	if old := s.lstates[l.Name]; old != nil {
		for i, o := range s.lorder {
			if o == old {
				s.lorder[i] = ls
			}
		}
	} else {
		s.lorder = append(s.lorder, ls)
	}
	s.lstates[l.Name] = ls
	s.mu.Unlock()
	return ls
}

// admit decides on a new connection from remote before any work is spent on
// it. A nil error reserves a slot, which release gives back.
func (ls *lstate) admit(remote net.Addr, checkRules bool) error {
	if checkRules {
		if err := ls.checkRules(remote); err != nil {
			return err
		}
	}
	if max := ls.l.MaxConnections; max > 0 && ls.active.Load() >= int64(max) {
		return ls.refuse(CauseMaxConnections, remote)
	}
	if ls.rate != nil && !ls.rate.Allow(1) {
		return ls.refuse(CauseMaxConnRate, remote)
	}
	ls.active.Add(1)
	return nil
}

func (ls *lstate) checkRules(remote net.Addr) error {
	if ls.l.Access == nil {
		return nil
	}
	ap := addrPort(remote)
	if !ls.l.Access.Allow(ap.Addr()) {
		return ls.refuse(CauseAccessDenied, remote)
	}
	return nil
}

// checkAddr applies the access rules to an address learned later (the real
// client behind a PROXY header).
func (ls *lstate) checkAddr(ip netip.AddrPort) error {
	if ls.l.Access == nil || ls.l.Access.Allow(ip.Addr()) {
		return nil
	}
	return ls.refuse(CauseAccessDenied, net.TCPAddrFromAddrPort(ip))
}

func (ls *lstate) release() { ls.active.Add(-1) }

// refuse counts a refusal and logs it, rate-limited per cause.
func (ls *lstate) refuse(cause string, remote net.Addr) error {
	i := causeIndex(cause)
	ls.refused[i].Add(1)
	now := time.Now()
	ls.logMu.Lock()
	ls.unlog[i]++
	if now.Sub(ls.lastLog[i]) >= refusalLogEvery {
		n := ls.unlog[i]
		ls.unlog[i] = 0
		ls.lastLog[i] = now
		ls.logMu.Unlock()
		peer := "?"
		if remote != nil {
			peer = remote.String()
		}
		ls.srv.log.Warn("gateway: connection refused", "listener", ls.l.Name, "cause", cause, "peer", peer, "refused_since_last_log", n)
	} else {
		ls.logMu.Unlock()
	}
	return Errorf(CodePermissionDeny, "gateway: listener %q: connection refused: %s", ls.l.Name, cause)
}

func causeIndex(cause string) int {
	for i, c := range causes {
		if c == cause {
			return i
		}
	}
	return 0
}
