package admin

// This file holds the client endpoints: the paged list with EMQX's
// filters, one client's detail, kick, and subscriptions.

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/gateway"
)

// kickWait bounds how long a kick waits for the connection to finish.
const kickWait = 5 * time.Second

// Paging bounds, as EMQX's; maxPage x limit bounds the offset.
const (
	defaultLimit = 100
	maxLimit     = 10000
	maxPage      = 1 << 40
)

type clientJSON struct {
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
	Port             uint16  `json:"port"`
	ConnState        string  `json:"conn_state"`
	Connected        bool    `json:"connected"`
	CreatedAt        string  `json:"created_at"`
	ConnectedAt      *string `json:"connected_at"`
	Keepalive        int64   `json:"keepalive"`
	Mountpoint       string  `json:"mountpoint"`
	SubscriptionsCnt int     `json:"subscriptions_cnt"`
	RecvOct          uint64  `json:"recv_oct"`
	SendOct          uint64  `json:"send_oct"`
	RecvMsg          uint64  `json:"recv_msg"`
	SendMsg          uint64  `json:"send_msg"`
	MqueueLen        int     `json:"mqueue_len"`
	MqueueDropped    uint64  `json:"mqueue_dropped"`
}

// handlerOf returns the configured handler whose gateway.Handler is h.
func (s *Server) handlerOf(h gateway.Handler) *Handler {
	for i := range s.cfg.Handlers {
		if s.cfg.Handlers[i].Handler == h {
			return &s.cfg.Handlers[i]
		}
	}
	return nil
}

func (s *Server) clientView(st *gateway.ConnStatus) clientJSON {
	cj := clientJSON{
		ClientID: st.ClientID, Username: st.Username, Conn: st.Handle, Node: s.cfg.Node,
		Listener: st.Listener, ProtoName: st.ProtoName, ProtoVer: st.ProtoVer,
		IPAddress: st.Peer.Addr().String(), Port: st.Peer.Port(),
		ConnState: st.State, Connected: st.State == gateway.StateConnected,
		CreatedAt: rfc3339(st.CreatedAt), Keepalive: int64(st.Keepalive / time.Second),
		Mountpoint: st.Mountpoint, SubscriptionsCnt: st.Subscriptions,
		RecvOct: st.RecvBytes, SendOct: st.SentBytes, RecvMsg: st.RecvMsgs, SendMsg: st.SentMsgs,
		MqueueLen: st.Pending, MqueueDropped: st.Dropped,
	}
	if h := s.handlerOf(st.Handler); h != nil {
		cj.Handler, cj.Backend = h.Name, h.Backend()
	}
	if !st.ConnectedAt.IsZero() {
		t := rfc3339(st.ConnectedAt)
		cj.ConnectedAt = &t
	}
	return cj
}

// clientFilter is a parsed client query.
type clientFilter struct {
	clientID, likeClientID string
	username, likeUsername string
	ip                     netip.Addr
	connState              string
	listener, handler      string
	gteCreated, lteCreated time.Time
	page, limit            int
	fuzzy                  bool // a like_* filter is set: no count, as EMQX
}

// queryParams are the query parameters of GET /clients, for the error on
// an unknown one.
var queryParams = []string{"clientid", "like_clientid", "username", "like_username", "ip_address", "conn_state",
	"listener", "handler", "gte_created_at", "lte_created_at", "page", "limit", "node"}

// parseClientFilter parses q, or returns an error naming the parameter.
func parseClientFilter(q url.Values) (*clientFilter, error) {
	f := &clientFilter{page: 1, limit: defaultLimit}
	for k := range q {
		known := false
		for _, p := range queryParams {
			known = known || k == p
		}
		if !known {
			return nil, fmt.Errorf("%s: unknown parameter (have %s)", k, strings.Join(queryParams, ", "))
		}
	}
	f.clientID, f.likeClientID = q.Get("clientid"), q.Get("like_clientid")
	f.username, f.likeUsername = q.Get("username"), q.Get("like_username")
	f.listener, f.handler = q.Get("listener"), q.Get("handler")
	f.fuzzy = f.likeClientID != "" || f.likeUsername != ""
	if v := q.Get("ip_address"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("ip_address: %q is not an IP address", v)
		}
		f.ip = a.Unmap()
	}
	switch v := q.Get("conn_state"); v {
	case "", gateway.StateConnecting, gateway.StateConnected, gateway.StateDisconnected:
		f.connState = v
	default:
		return nil, fmt.Errorf("conn_state: %q is not connecting, connected or disconnected", v)
	}
	var err error
	if f.gteCreated, err = parseTime("gte_created_at", q.Get("gte_created_at")); err != nil {
		return nil, err
	}
	if f.lteCreated, err = parseTime("lte_created_at", q.Get("lte_created_at")); err != nil {
		return nil, err
	}
	if v := q.Get("page"); v != "" {
		if f.page, err = strconv.Atoi(v); err != nil || f.page < 1 {
			return nil, fmt.Errorf("page: %q is not a page number (1 or more)", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.limit, err = strconv.Atoi(v); err != nil || f.limit < 1 || f.limit > maxLimit {
			return nil, fmt.Errorf("limit: %q is not in 1..%d", v, maxLimit)
		}
	}
	if f.page > maxPage/f.limit {
		// (page-1)*limit must not wrap around: no gateway holds more
		// connections than this anyway.
		return nil, fmt.Errorf("page: %d is past the last possible page (limit %d)", f.page, f.limit)
	}
	return f, nil
}

// parseTime reads epoch milliseconds or RFC 3339, as EMQX does.
func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is neither epoch milliseconds nor RFC 3339", name, v)
	}
	return t, nil
}

func (f *clientFilter) match(s *Server, st *gateway.ConnStatus) bool {
	switch {
	case f.clientID != "" && st.ClientID != f.clientID,
		f.likeClientID != "" && !strings.Contains(st.ClientID, f.likeClientID),
		f.username != "" && st.Username != f.username,
		f.likeUsername != "" && !strings.Contains(st.Username, f.likeUsername),
		f.ip.IsValid() && st.Peer.Addr() != f.ip,
		f.connState != "" && st.State != f.connState,
		f.listener != "" && st.Listener != f.listener,
		!f.gteCreated.IsZero() && st.CreatedAt.Before(f.gteCreated),
		!f.lteCreated.IsZero() && st.CreatedAt.After(f.lteCreated):
		return false
	}
	if f.handler != "" {
		h := s.handlerOf(st.Handler)
		if h == nil || h.Name != f.handler {
			return false
		}
	}
	return true
}

type pageMeta struct {
	Page    int  `json:"page"`
	Limit   int  `json:"limit"`
	Count   *int `json:"count,omitempty"`
	HasNext bool `json:"hasnext"`
}

func (s *Server) clients(w http.ResponseWriter, r *http.Request) {
	f, err := parseClientFilter(r.URL.Query())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	data := []clientJSON{}
	meta := pageMeta{Page: f.page, Limit: f.limit}
	if node := r.URL.Query().Get("node"); node != "" && node != s.cfg.Node {
		// One node: another's clients are none of ours.
		n := 0
		meta.Count = &n
		writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": meta})
		return
	}
	skip := (f.page - 1) * f.limit
	matched := 0
	if f.clientID != "" && f.likeClientID == "" {
		// An exact client id names at most one connection.
		if c := s.cfg.Gateway.ClientConn(f.clientID); c != nil {
			st := c.Status()
			if f.match(s, &st) {
				matched = 1
				if skip == 0 {
					data = append(data, s.clientView(&st))
				}
			}
		}
	} else {
		for _, c := range s.cfg.Gateway.Conns() {
			st := c.Status()
			if !f.match(s, &st) {
				continue
			}
			matched++
			if matched > skip && len(data) < f.limit {
				data = append(data, s.clientView(&st))
			} else if len(data) == f.limit && f.fuzzy {
				// Without a count, one more match is all hasnext needs.
				break
			}
		}
	}
	meta.HasNext = matched > skip+len(data)
	if !f.fuzzy {
		meta.Count = &matched
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": meta})
}

// findConn returns the connection the {id} path value names (a client id
// or a connection handle), answering 404 itself when there is none.
func (s *Server) findConn(w http.ResponseWriter, r *http.Request) *gateway.Conn {
	id := r.PathValue("id")
	if c := s.cfg.Gateway.Find(id); c != nil {
		return c
	}
	notFound(w, fmt.Sprintf("client %q not found (give a client id or a connection handle)", id))
	return nil
}

func (s *Server) client(w http.ResponseWriter, r *http.Request) {
	if c := s.findConn(w, r); c != nil {
		st := c.Status()
		writeJSON(w, http.StatusOK, s.clientView(&st))
	}
}

func (s *Server) kick(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c := s.cfg.Gateway.Find(id)
	if c == nil && s.cfg.Kicker != nil {
		s.kickElsewhere(w, r, id)
		return
	}
	if c == nil {
		notFound(w, fmt.Sprintf("client %q not found (give a client id or a connection handle)", id))
		return
	}
	s.log.Info("admin: client kicked", "conn", c.Handle(), "clientid", c.ClientID(), "remote", r.RemoteAddr)
	c.Kick()
	// As EMQX's kick, answer once the connection is gone (its handler
	// has seen OnSocketClosed), so that a list right after it does not
	// show it; a handler slow to take the close delays the answer at
	// most kickWait.
	t := time.NewTimer(kickWait)
	defer t.Stop()
	select {
	case <-c.Finished():
	case <-t.C:
	case <-r.Context().Done():
	}
	w.WriteHeader(http.StatusNoContent)
}

// kickElsewhere kicks a client id that no connection of this node holds,
// wherever in the cluster it is connected.
func (s *Server) kickElsewhere(w http.ResponseWriter, r *http.Request, id string) {
	ctx, cancel := context.WithTimeout(r.Context(), kickWait)
	defer cancel()
	found, err := s.cfg.Kicker.Kick(ctx, id)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", fmt.Sprintf("client %q: %v", id, err))
	case !found:
		notFound(w, fmt.Sprintf("client %q not found on any node (give a client id or a connection handle)", id))
	default:
		s.log.Info("admin: client kicked on another node", "clientid", id, "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusNoContent)
	}
}

type subscriptionJSON struct {
	Topic string `json:"topic"`
	QoS   uint8  `json:"qos"`
	NL    int    `json:"nl"`
	RAP   int    `json:"rap"`
	RH    int    `json:"rh"`
}

func (s *Server) subscriptions(w http.ResponseWriter, r *http.Request) {
	c := s.findConn(w, r)
	if c == nil {
		return
	}
	out := []subscriptionJSON{}
	for _, sub := range c.Subscriptions() {
		out = append(out, subscriptionJSON{Topic: sub.Topic, QoS: sub.QoS})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) subscribe(w http.ResponseWriter, r *http.Request) {
	c := s.findConn(w, r)
	if c == nil {
		return
	}
	var body struct {
		Topic string `json:"topic"`
		QoS   *int   `json:"qos"`
		NL    int    `json:"nl"`
		RAP   int    `json:"rap"`
		RH    int    `json:"rh"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if body.Topic == "" {
		badRequest(w, "topic: missing")
		return
	}
	qos := 0
	if body.QoS != nil {
		qos = *body.QoS
	}
	if qos < 0 || qos > 2 {
		badRequest(w, fmt.Sprintf("qos: %d is not 0, 1 or 2", qos))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := c.Subscribe(ctx, body.Topic, uint32(qos)); err != nil {
		s.callError(w, "topic", err)
		return
	}
	s.log.Info("admin: subscription added", "conn", c.Handle(), "clientid", c.ClientID(), "topic", body.Topic)
	writeJSON(w, http.StatusCreated, subscriptionJSON{Topic: c.MountedTopic(body.Topic), QoS: uint8(qos)})
}

func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	c := s.findConn(w, r)
	if c == nil {
		return
	}
	topic := r.PathValue("topic")
	if !c.Subscribed(topic) {
		notFound(w, fmt.Sprintf("client %s is not subscribed to %q", r.PathValue("id"), topic))
		return
	}
	if err := c.Unsubscribe(topic); err != nil {
		s.callError(w, "topic", err)
		return
	}
	s.log.Info("admin: subscription removed", "conn", c.Handle(), "clientid", c.ClientID(), "topic", topic)
	w.WriteHeader(http.StatusNoContent)
}

// callError answers the error of a gateway call made for the API.
func (s *Server) callError(w http.ResponseWriter, param string, err error) {
	switch gateway.CodeOf(err) {
	case gateway.CodeNotAlive:
		notFound(w, err.Error())
	case gateway.CodeParamsTypeError, gateway.CodeRequiredParamsMissed:
		badRequest(w, param+": "+err.Error())
	default:
		// Not authenticated, closing, no pub/sub: the client's state
		// refuses it.
		writeError(w, http.StatusConflict, "CONFLICT", err.Error())
	}
}
