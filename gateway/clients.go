package gateway

// This file holds what an operator sees of connections: their status and
// subscriptions, and how to find them.

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"
	"time"
)

// Connection states, as ConnStatus.State reports them (EMQX's conn_state).
const (
	StateConnecting   = "connecting"   // not authenticated yet
	StateConnected    = "connected"    // authenticated
	StateDisconnected = "disconnected" // closing
)

// ConnStatus is a snapshot of one connection, for operators.
type ConnStatus struct {
	ID       uint64
	Handle   string
	Listener string
	Handler  Handler
	SockType SocketType
	Peer     netip.AddrPort
	State    string // StateConnecting, StateConnected or StateDisconnected

	ClientID, Username  string // empty before Authenticate
	ProtoName, ProtoVer string
	Mountpoint          string
	CreatedAt           time.Time
	ConnectedAt         time.Time     // when Authenticate succeeded; zero before
	Keepalive           time.Duration // the StartTimer interval; 0 if none

	Subscriptions int
	// RecvBytes and SentBytes count socket bytes, RecvMsgs the messages the
	// connection published, SentMsgs those delivered to its handler.
	RecvBytes, SentBytes, RecvMsgs, SentMsgs uint64
	Pending                                  int    // deliveries queued for the handler
	Dropped                                  uint64 // deliveries dropped while the connection was slow
}

// Status returns a snapshot of c.
func (c *Conn) Status() ConnStatus {
	st := ConnStatus{
		ID:        c.id,
		Handle:    c.handle,
		Listener:  c.l.Name,
		Handler:   c.l.Handler,
		SockType:  c.info.SockType,
		Peer:      c.info.Peer,
		CreatedAt: c.start,
		RecvBytes: c.recvOct.Load(),
		SentBytes: c.sendOct.Load(),
		RecvMsgs:  c.recvMsg.Load(),
		SentMsgs:  c.sendMsg.Load(),
		Dropped:   c.dropped.Load(),
	}
	c.mu.Lock()
	switch {
	case c.state != stateOpen:
		st.State = StateDisconnected
	case c.authed:
		st.State = StateConnected
	default:
		st.State = StateConnecting
	}
	st.ClientID, st.Username = c.clientID, c.username
	st.ProtoName, st.ProtoVer = c.protoName, c.protoVer
	st.Mountpoint, st.ConnectedAt = c.mountpoint, c.connectedAt
	st.Keepalive = c.keepalive * 2 / 3 // keepalive holds 1.5 x the interval
	st.Pending = c.pending
	c.mu.Unlock()
	c.subMu.Lock()
	st.Subscriptions = len(c.subs)
	c.subMu.Unlock()
	return st
}

// SubscriptionStatus is one subscription of a connection.
type SubscriptionStatus struct {
	Filter string // as subscribed, without the mountpoint
	Topic  string // with the mountpoint: what the broker matches
	QoS    uint8
}

// Subscriptions returns c's subscriptions, sorted by filter.
func (c *Conn) Subscriptions() []SubscriptionStatus {
	c.mu.Lock()
	mp := c.mountpoint
	c.mu.Unlock()
	c.subMu.Lock()
	out := make([]SubscriptionStatus, 0, len(c.subs))
	for f, e := range c.subs {
		out = append(out, SubscriptionStatus{Filter: f, Topic: mountFilter(mp, f), QoS: e.qos})
	}
	c.subMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Filter < out[j].Filter })
	return out
}

// Subscribed reports whether c is subscribed to filter (without the
// mountpoint).
func (c *Conn) Subscribed(filter string) bool {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	_, ok := c.subs[filter]
	return ok
}

// MountedTopic returns filter with c's mountpoint applied.
func (c *Conn) MountedTopic(filter string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return mountFilter(c.mountpoint, filter)
}

// Conns returns the live connections, oldest first (in the order they were
// created, which their ids do not show). It takes no lock that traffic
// needs, so listing many connections does not stall them.
func (s *Server) Conns() []*Conn {
	out := make([]*Conn, 0, s.nconns.Load())
	s.conns.Range(func(_, v any) bool {
		out = append(out, v.(*Conn))
		return true
	})
	slices.SortFunc(out, func(a, b *Conn) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// ClientConn returns the live connection that authenticated with client id
// id, or nil.
func (s *Server) ClientConn(id string) *Conn {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	return s.clients[id]
}

// NumClients returns the number of authenticated connections.
func (s *Server) NumClients() int {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	return len(s.clients)
}

// Find returns the live connection named by id: a client id, or else a
// connection handle. It returns nil when there is none.
func (s *Server) Find(id string) *Conn {
	if c := s.ClientConn(id); c != nil {
		return c
	}
	if h, ok := parseHandle(id); ok {
		return s.Conn(h)
	}
	return nil
}

// Started returns when the server was created.
func (s *Server) Started() time.Time { return s.started }
