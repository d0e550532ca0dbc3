// Command coap is a protogate guest that speaks CoAP (RFC 7252) with
// Observe (RFC 7641) over UDP (and DTLS, where the listener provides it),
// bridging it to publish/subscribe with EMQX-compatible URIs:
//
//	POST|PUT /ps/{topic...}            publish the payload      2.04 Changed
//	GET /ps/{filter...} Observe:0      subscribe                2.05 + Observe, then notifications
//	GET /ps/{filter...} Observe:1      unsubscribe (by token)   2.05
//	GET /ps/{topic...}                 (no retained read)       4.04 no retained value
//	POST /mqtt/connection?clientid=&username=&password=         2.01, payload = token
//	PUT /mqtt/connection?clientid=&token=   heartbeat           2.04
//	DELETE /mqtt/connection?clientid=&token= disconnect         2.02, then close
//	GET /.well-known/core                                       2.05 </ps>;rt="core.ps"
//
// Each UDP peer (or DTLS session) is one connection. Without
// /mqtt/connection the connection is connectionless: its first /ps request
// authenticates it, with clientid (or c) from the query, or
// "coap-<random>", and username/password (u/p). On DTLS the client id is
// the session's identity (the certificate's CN, or the PSK identity), and a
// different clientid in the query is answered 4.01. Later requests reuse that
// identity; a different clientid is answered 4.01. After /mqtt/connection,
// every request must carry clientid and the token (4.00 if missing, 4.01 if
// wrong).
//
// Query parameters of /ps: qos (q) 0-2, default CON -> 1 and NON -> 0.
// retain (r) is accepted and ignored.
//
// Replies are piggybacked on the ACK of a CON request, or NON replies to a
// NON request. A per-connection cache of message ids answers a duplicate
// CON with the same reply and ignores a duplicate NON, so a publish is never
// made twice. Notifications are CON for messages of QoS 1 or more, NON
// otherwise; one CON is in flight per connection (at most 100 queued,
// oldest dropped), retransmitted with RFC 7252's backoff (2-3 s doubling, 4
// retransmissions). An RST to a notification, or a CON that is never
// acknowledged, ends its observation. Notifications carry the raw payload,
// no Content-Format; one that would exceed 1152 bytes is dropped (Block2 is
// not implemented). Request bodies over 1024 bytes, and Block1 with more
// blocks, are answered 4.13 with Size1 1024.
//
// Malformed datagrams are answered with RST (CON) or ignored; they never
// fail a callback.
package main

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/abi"
	protogate "github.com/protogate/protogate/sdk/go"
)

// Limits and RFC 7252 transmission parameters.
const (
	MaxDatagram     = 1152 // the largest datagram sent (RFC 7252 §4.6)
	MaxBody         = 1024 // the largest request body accepted
	MaxObservations = 64   // per connection; more get 2.05 without Observe
	MaxQueue        = 100  // CON notifications waiting behind the one in flight
	DedupEntries    = 32   // message ids remembered per connection
	NonRing         = 32   // NON notifications remembered for RSTs

	AckTimeout       = 2 * time.Second
	MaxRetransmit    = 4
	ExchangeLifetime = 247 * time.Second
	NonLifetime      = 145 * time.Second

	// Heartbeat is the keepalive (seconds) started when a connection
	// authenticates: 1.5 x this without a datagram closes it.
	Heartbeat = 90
)

type guest struct {
	conns map[protogate.Conn]*conn
	in    Message // reused for parsing
	out   []byte  // reused for encoding
}

// conn is the state of one connection (one UDP peer).
type conn struct {
	authed   bool
	clientID string
	connMode bool   // created with POST /mqtt/connection
	token    string // connection mode's token
	closed   bool
	dtlsID   string // the DTLS identity (certificate CN or PSK identity), or ""

	nextMID uint16
	dedup   []dedupEntry // ring, oldest first when full
	dedupAt int

	obs     []*observation // in registration order
	nonMIDs [NonRing]nonSent
	nonAt   int

	inflight *pending
	queue    []*pending
	timer    protogate.Timer
}

type dedupEntry struct {
	mid     uint16
	used    bool
	reply   []byte // nil: a NON, or a request that was not answered
	expires time.Time
}

type nonSent struct {
	mid uint16
	obs *observation
}

type observation struct {
	token  string
	filter string
	seq    uint32
}

// pending is a CON notification.
type pending struct {
	obs      *observation
	msg      []byte
	mid      uint16
	attempts int
	timeout  time.Duration
}

func newGuest() *guest { return &guest{conns: make(map[protogate.Conn]*conn)} }

func init() { protogate.Register(newGuest()) }

func main() {}

// OnSocketCreated creates the connection's state.
// On DTLS, the certificate's CN, or the PSK identity (which the host
// passes as the CN), is the connection's client id.
func (g *guest) OnSocketCreated(c protogate.Conn, info protogate.ConnInfo) error {
	st := &conn{nextMID: uint16(rand.Uint32())}
	if info.SockType == protogate.DTLS && info.PeerCert != nil {
		st.dtlsID = info.PeerCert.CN
	}
	g.conns[c] = st
	return nil
}

// OnSocketClosed forgets the connection (its subscriptions end with it).
func (g *guest) OnSocketClosed(c protogate.Conn, _ string) error {
	delete(g.conns, c)
	return nil
}

// OnTimerTimeout: the host closes the connection after it.
func (g *guest) OnTimerTimeout(protogate.Conn, protogate.TimerType) error { return nil }

func (st *conn) mid() uint16 {
	st.nextMID++
	return st.nextMID
}

// send writes b; a failure (the connection is gone) is logged, not
// returned, so that it never fails a callback.
func send(c protogate.Conn, b []byte) {
	if err := c.Send(b); err != nil && !errors.Is(err, abi.StatusNotAlive) {
		protogate.Log(protogate.LevelWarn, "coap: send: "+err.Error())
	}
}

// rst sends an RST for mid.
func (g *guest) rst(c protogate.Conn, mid uint16) {
	m := Message{Type: RST, MID: mid}
	g.out = m.Append(g.out[:0])
	send(c, g.out)
}

// OnReceivedBytes handles one datagram.
func (g *guest) OnReceivedBytes(c protogate.Conn, b []byte) error {
	st := g.conns[c]
	if st == nil || st.closed {
		return nil
	}
	m := &g.in
	switch err := Parse(b, m); err {
	case nil:
	case errFormat:
		if m.Type == CON {
			g.rst(c, m.MID)
		}
		return nil
	default:
		return nil
	}
	class := m.Code >> 5
	switch {
	case m.Code == CodeEmpty:
		switch m.Type {
		case CON: // CoAP ping
			g.rst(c, m.MID)
		case ACK:
			g.acked(c, st, m.MID)
		case RST:
			g.reset(c, st, m.MID)
		}
		return nil
	case class == 0: // a request
		if m.Type == ACK || m.Type == RST {
			return nil
		}
		g.request(c, st, m)
	case class == 2 || class == 4 || class == 5: // a response
		switch m.Type {
		case ACK:
			g.acked(c, st, m.MID)
		case RST:
			g.reset(c, st, m.MID)
		case CON:
			g.rst(c, m.MID) // a response we did not ask for
		}
	default: // reserved classes 1, 6, 7
		if m.Type == CON {
			g.rst(c, m.MID)
		}
	}
	return nil
}

// request handles a CON or NON request, with deduplication.
func (g *guest) request(c protogate.Conn, st *conn, m *Message) {
	now := time.Now()
	for i := range st.dedup {
		e := &st.dedup[i]
		if e.used && e.mid == m.MID && now.Before(e.expires) {
			if m.Type == CON && e.reply != nil {
				send(c, e.reply)
			}
			return
		}
	}
	reply := g.handle(c, st, m)
	e := dedupEntry{mid: m.MID, used: true, expires: now.Add(NonLifetime)}
	if m.Type == CON {
		e.expires = now.Add(ExchangeLifetime)
		e.reply = append([]byte(nil), reply...)
	}
	if len(st.dedup) < DedupEntries {
		st.dedup = append(st.dedup, e)
	} else {
		st.dedup[st.dedupAt] = e
		st.dedupAt = (st.dedupAt + 1) % DedupEntries
	}
	if reply != nil {
		send(c, reply)
	}
	if st.closed {
		if err := c.Close(); err != nil && !errors.Is(err, abi.StatusNotAlive) {
			protogate.Log(protogate.LevelWarn, "coap: close: "+err.Error())
		}
	}
}

// req is what handle needs of a request's options.
type req struct {
	path    []string
	query   []string
	observe int64 // -1: absent
	block1  uint32
	hasB1   bool
	block2  uint32
	hasB2   bool
	accept  int64 // -1: absent
}

// isCritical reports an odd (critical) option number.
func isCritical(n uint16) bool { return n&1 == 1 }

// handle runs a request and returns the encoded reply (aliasing g.out), or
// nil for none.
func (g *guest) handle(c protogate.Conn, st *conn, m *Message) []byte {
	var r req
	r.observe, r.accept = -1, -1
	var prev uint16
	for i, o := range m.Options {
		dup := i > 0 && o.Num == prev
		prev = o.Num
		switch o.Num {
		case OptURIPath:
			r.path = append(r.path, string(o.Val))
		case OptURIQuery:
			r.query = append(r.query, string(o.Val))
		case OptURIHost, OptURIPort:
			if dup {
				return g.badOption(st, m, o.Num)
			}
		case OptObserve:
			if v, ok := Uint(o.Val); ok && !dup {
				r.observe = int64(v)
			}
		case OptAccept:
			v, ok := Uint(o.Val)
			if !ok || dup {
				return g.badOption(st, m, o.Num)
			}
			r.accept = int64(v)
		case OptBlock1, OptBlock2:
			v, ok := Uint(o.Val)
			if !ok || dup {
				return g.badOption(st, m, o.Num)
			}
			if v&7 == 7 {
				return g.reply(st, m, CodeBadRequest, nil, "invalid block size")
			}
			if o.Num == OptBlock1 {
				r.block1, r.hasB1 = v, true
			} else {
				r.block2, r.hasB2 = v, true
			}
		default:
			if isCritical(o.Num) {
				return g.badOption(st, m, o.Num)
			}
		}
	}
	if m.Code > CodeDELETE {
		return g.reply(st, m, CodeMethodNotAllowed, nil, "method not allowed")
	}
	if r.hasB2 && r.block2>>4 != 0 {
		return g.reply(st, m, CodeBadOption, nil, "block2 not supported")
	}
	switch {
	case len(r.path) >= 1 && r.path[0] == "ps":
		return g.pubsub(c, st, m, &r)
	case len(r.path) == 2 && r.path[0] == "mqtt" && r.path[1] == "connection":
		return g.connection(c, st, m, &r)
	case len(r.path) == 2 && r.path[0] == ".well-known" && r.path[1] == "core":
		if m.Code != CodeGET {
			return g.reply(st, m, CodeMethodNotAllowed, nil, "method not allowed")
		}
		if r.accept >= 0 && r.accept != 40 {
			return g.reply(st, m, CodeNotAcceptable, nil, "only link-format")
		}
		return g.reply(st, m, CodeContent, []Option{{Num: OptContentFormat, Val: []byte{40}}}, `</ps>;rt="core.ps"`)
	}
	return g.reply(st, m, CodeNotFound, nil, "not found")
}

func (g *guest) badOption(st *conn, m *Message, n uint16) []byte {
	if m.Type != CON {
		return nil // RFC 7252 §5.4.1: a NON is rejected
	}
	return g.reply(st, m, CodeBadOption, nil, "bad option "+strconv.Itoa(int(n)))
}

// reply encodes the response to m: piggybacked on the ACK of a CON, or a
// NON with a new message id.
func (g *guest) reply(st *conn, m *Message, code uint8, opts []Option, payload string) []byte {
	r := Message{Type: ACK, Code: code, MID: m.MID, Token: m.Token, Options: opts, Payload: []byte(payload)}
	if m.Type == NON {
		r.Type, r.MID = NON, st.mid()
	}
	g.out = r.Append(g.out[:0])
	return g.out
}

// queryValue returns the value of the first query parameter named long or
// short.
func queryValue(q []string, long, short string) (string, bool) {
	for _, kv := range q {
		k, v, _ := strings.Cut(kv, "=")
		if k == long || k == short {
			return v, true
		}
	}
	return "", false
}

// statusCode maps a failed host call to a response code.
func statusCode(err error) uint8 {
	if errors.Is(err, abi.StatusPermissionDeny) {
		return CodeUnauthorized
	}
	return CodeUnavailable
}

// message is the text of a failed host call.
func message(err error) string {
	var e *protogate.Error
	if errors.As(err, &e) {
		if e.Msg != "" {
			return e.Msg
		}
		return e.Status.String()
	}
	return err.Error()
}

// identify authenticates a connectionless connection on its first /ps
// request, and checks the identity of later ones. It returns 0 when the
// request may go on, otherwise the code and diagnostic of the reply.
func (g *guest) identify(c protogate.Conn, st *conn, r *req) (uint8, string) {
	cid, hasCID := queryValue(r.query, "clientid", "c")
	if st.connMode {
		tok, hasTok := queryValue(r.query, "token", "t")
		if !hasCID || !hasTok {
			return CodeBadRequest, "Missing token or clientid in connection mode"
		}
		if cid != st.clientID || tok != st.token {
			return CodeUnauthorized, "Invalid token or clientid in connection mode"
		}
		return 0, ""
	}
	if st.authed {
		if hasCID && cid != st.clientID {
			return CodeUnauthorized, "clientid differs from the connection's"
		}
		return 0, ""
	}
	if st.dtlsID != "" {
		if hasCID && cid != st.dtlsID {
			return CodeUnauthorized, "clientid differs from the DTLS identity"
		}
		cid = st.dtlsID
	} else if !hasCID || cid == "" {
		cid = "coap-" + strconv.FormatUint(rand.Uint64(), 16)
	}
	user, _ := queryValue(r.query, "username", "u")
	pass, _ := queryValue(r.query, "password", "p")
	if err := c.Authenticate(protogate.ClientInfo{ProtoName: "coap", ProtoVer: "1", ClientID: cid, Username: user}, pass); err != nil {
		return CodeUnauthorized, "authentication failed: " + message(err)
	}
	st.authed, st.clientID = true, cid
	if err := c.StartTimer(protogate.KeepAlive, Heartbeat); err != nil {
		protogate.Log(protogate.LevelWarn, "coap: start keepalive: "+err.Error())
	}
	return 0, ""
}

// validTopic reports whether t can be published to.
func validTopic(t string) bool {
	return t != "" && len(t) <= 65535 && !strings.ContainsAny(t, "+#") && t[0] != '$'
}

// validFilter reports whether f is an MQTT topic filter.
func validFilter(f string) bool {
	if f == "" || len(f) > 65535 {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// qos returns the qos query parameter, or the default for the message type;
// ok is false for an invalid value.
func qos(r *req, typ uint8) (uint8, bool) {
	v, has := queryValue(r.query, "qos", "q")
	if !has {
		if typ == CON {
			return 1, true
		}
		return 0, true
	}
	switch v {
	case "0", "1", "2":
		return v[0] - '0', true
	}
	return 0, false
}

// pubsub handles /ps/...
func (g *guest) pubsub(c protogate.Conn, st *conn, m *Message, r *req) []byte {
	topic := strings.Join(r.path[1:], "/")
	switch m.Code {
	case CodePOST, CodePUT:
		if len(r.path) < 2 || !validTopic(topic) {
			return g.reply(st, m, CodeBadRequest, nil, "invalid topic")
		}
		if r.hasB1 {
			if r.block1&8 != 0 {
				return g.reply(st, m, CodeTooLarge, []Option{{Num: OptSize1, Val: AppendUint(nil, MaxBody)}}, "body too large")
			}
			if r.block1>>4 != 0 {
				return g.reply(st, m, CodeIncomplete, nil, "block1 not supported")
			}
		}
		if len(m.Payload) > MaxBody {
			return g.reply(st, m, CodeTooLarge, []Option{{Num: OptSize1, Val: AppendUint(nil, MaxBody)}}, "body too large")
		}
		q, ok := qos(r, m.Type)
		if !ok {
			return g.reply(st, m, CodeBadRequest, nil, "invalid qos")
		}
		if code, diag := g.identify(c, st, r); code != 0 {
			return g.reply(st, m, code, nil, diag)
		}
		if err := c.Publish(topic, q, m.Payload); err != nil {
			return g.reply(st, m, statusCode(err), nil, message(err))
		}
		return g.reply(st, m, CodeChanged, nil, "")
	case CodeGET:
	default:
		return g.reply(st, m, CodeMethodNotAllowed, nil, "method not allowed")
	}
	switch r.observe {
	case -1:
		return g.reply(st, m, CodeNotFound, nil, "no retained value")
	case 0:
	case 1:
		g.deregister(c, st, string(m.Token))
		return g.reply(st, m, CodeContent, nil, "")
	default:
		return g.reply(st, m, CodeBadRequest, nil, "invalid observe value")
	}
	if len(m.Token) == 0 {
		return g.reply(st, m, CodeBadRequest, nil, "observe without token")
	}
	if len(r.path) < 2 || !validFilter(topic) {
		return g.reply(st, m, CodeBadRequest, nil, "invalid topic")
	}
	q, ok := qos(r, m.Type)
	if !ok {
		return g.reply(st, m, CodeBadRequest, nil, "invalid qos")
	}
	if code, diag := g.identify(c, st, r); code != 0 {
		return g.reply(st, m, code, nil, diag)
	}
	tok := string(m.Token)
	o := st.find(tok)
	if o != nil && o.filter != topic {
		g.deregister(c, st, tok) // the token moves to another filter
		o = nil
	}
	if o == nil {
		if len(st.obs) >= MaxObservations {
			return g.reply(st, m, CodeContent, nil, "") // not observed (RFC 7641 §4.1)
		}
		if !st.observed(topic) {
			if err := c.Subscribe(topic, q); err != nil {
				return g.reply(st, m, statusCode(err), nil, message(err))
			}
		}
		o = &observation{token: tok, filter: topic, seq: 1}
		st.obs = append(st.obs, o)
	}
	o.seq = (o.seq + 1) & 0xffffff
	return g.reply(st, m, CodeContent, []Option{{Num: OptObserve, Val: AppendUint(nil, o.seq)}}, "")
}

// observed reports whether an observation of the connection has filter.
func (st *conn) observed(filter string) bool {
	for _, o := range st.obs {
		if o.filter == filter {
			return true
		}
	}
	return false
}

func (st *conn) find(token string) *observation {
	for _, o := range st.obs {
		if o.token == token {
			return o
		}
	}
	return nil
}

// deregister ends the observation of token, if any: it unsubscribes its
// filter unless another observation uses it, drops its queued
// notifications and stops retransmitting its notification in flight.
func (g *guest) deregister(c protogate.Conn, st *conn, token string) {
	var gone *observation
	for i, o := range st.obs {
		if o.token == token {
			gone = o
			st.obs = append(st.obs[:i], st.obs[i+1:]...)
			break
		}
	}
	if gone == nil {
		return
	}
	q := st.queue[:0]
	for _, p := range st.queue {
		if p.obs != gone {
			q = append(q, p)
		}
	}
	clear(st.queue[len(q):])
	st.queue = q
	if !st.observed(gone.filter) {
		if err := c.Unsubscribe(gone.filter); err != nil && !errors.Is(err, abi.StatusNotAlive) {
			protogate.Log(protogate.LevelWarn, "coap: unsubscribe: "+err.Error())
		}
	}
	if st.inflight != nil && st.inflight.obs == gone {
		g.next(c, st) // stop retransmitting it
	}
}

// connection handles /mqtt/connection.
func (g *guest) connection(c protogate.Conn, st *conn, m *Message, r *req) []byte {
	switch m.Code {
	case CodePOST:
		cid, _ := queryValue(r.query, "clientid", "c")
		if st.dtlsID != "" {
			if cid != "" && cid != st.dtlsID {
				return g.reply(st, m, CodeUnauthorized, nil, "clientid differs from the DTLS identity")
			}
			cid = st.dtlsID
		}
		if cid == "" {
			return g.reply(st, m, CodeBadRequest, nil, "Login Failed: clientid is required")
		}
		if st.authed {
			return g.reply(st, m, CodeBadRequest, nil, "client has connected")
		}
		user, _ := queryValue(r.query, "username", "u")
		pass, _ := queryValue(r.query, "password", "p")
		if err := c.Authenticate(protogate.ClientInfo{ProtoName: "coap", ProtoVer: "1", ClientID: cid, Username: user}, pass); err != nil {
			return g.reply(st, m, CodeBadRequest, nil, "Login Failed: "+message(err))
		}
		st.authed, st.connMode, st.clientID = true, true, cid
		st.token = strconv.FormatUint(uint64(rand.Uint32()), 10)
		if err := c.StartTimer(protogate.KeepAlive, Heartbeat); err != nil {
			protogate.Log(protogate.LevelWarn, "coap: start keepalive: "+err.Error())
		}
		return g.reply(st, m, CodeCreated, nil, st.token)
	case CodePUT:
		if code, diag := g.checkConn(st, r); code != 0 {
			return g.reply(st, m, code, nil, diag)
		}
		return g.reply(st, m, CodeChanged, nil, "")
	case CodeDELETE:
		if st.connMode {
			if code, diag := g.checkConn(st, r); code != 0 {
				return g.reply(st, m, code, nil, diag)
			}
		}
		st.closed = true
		return g.reply(st, m, CodeDeleted, nil, "")
	}
	return g.reply(st, m, CodeMethodNotAllowed, nil, "method not allowed")
}

func (g *guest) checkConn(st *conn, r *req) (uint8, string) {
	cid, hasCID := queryValue(r.query, "clientid", "c")
	tok, hasTok := queryValue(r.query, "token", "t")
	if !hasCID || !hasTok {
		return CodeBadRequest, "Missing token or clientid in connection mode"
	}
	if !st.connMode || cid != st.clientID || tok != st.token {
		return CodeUnauthorized, "Invalid token or clientid in connection mode"
	}
	return 0, ""
}

// matches reports whether topic matches the MQTT filter.
func matches(filter, topic string) bool {
	if filter != "" && (filter[0] == '+' || filter[0] == '#') && topic != "" && topic[0] == '$' {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		t, trest, tmore := strings.Cut(topic, "/")
		switch {
		case f == "#":
			return true
		case f != "+" && f != t:
			return false
		}
		if !fmore || !tmore {
			return !fmore && !tmore || (fmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}

// OnReceivedMessages turns each message into one notification per
// matching observation.
func (g *guest) OnReceivedMessages(c protogate.Conn, msgs []protogate.Message) error {
	st := g.conns[c]
	if st == nil || st.closed {
		return nil
	}
	for _, msg := range msgs {
		for _, o := range st.obs {
			if matches(o.filter, msg.Topic) {
				g.notify(c, st, o, msg)
			}
		}
	}
	return nil
}

func (g *guest) notify(c protogate.Conn, st *conn, o *observation, msg protogate.Message) {
	o.seq = (o.seq + 1) & 0xffffff
	n := Message{Type: NON, Code: CodeContent, Token: []byte(o.token), Payload: msg.Payload,
		Options: []Option{{Num: OptObserve, Val: AppendUint(nil, o.seq)}}}
	if msg.QoS > 0 {
		n.Type = CON
	}
	// The message id is set when it is sent; measure the size first.
	g.out = n.Append(g.out[:0])
	if len(g.out) > MaxDatagram {
		protogate.Log(protogate.LevelWarn, "coap: notification of "+strconv.Itoa(len(g.out))+
			" bytes on "+msg.Topic+" dropped (over 1152 bytes)")
		return
	}
	if n.Type == NON {
		n.MID = st.mid()
		g.out = n.Append(g.out[:0])
		st.nonMIDs[st.nonAt] = nonSent{mid: n.MID, obs: o}
		st.nonAt = (st.nonAt + 1) % NonRing
		send(c, g.out)
		return
	}
	p := &pending{obs: o, msg: append([]byte(nil), g.out...)}
	if st.inflight != nil {
		if len(st.queue) >= MaxQueue {
			protogate.Log(protogate.LevelWarn, "coap: notification queue full, oldest dropped")
			st.queue = append(st.queue[:0], st.queue[1:]...)
		}
		st.queue = append(st.queue, p)
		return
	}
	g.transmit(c, st, p)
}

// transmit sends p as the connection's CON in flight.
func (g *guest) transmit(c protogate.Conn, st *conn, p *pending) {
	p.mid = st.mid()
	p.msg[2], p.msg[3] = byte(p.mid>>8), byte(p.mid)
	p.timeout = AckTimeout + time.Duration(rand.Int64N(int64(AckTimeout/2)))
	st.inflight = p
	send(c, p.msg)
	g.arm(c, st)
}

func (g *guest) arm(c protogate.Conn, st *conn) {
	t, err := c.SetTimer(st.inflight.timeout)
	if err != nil {
		protogate.Log(protogate.LevelWarn, "coap: set timer: "+err.Error())
	}
	st.timer = t
}

// next sends the next queued CON notification, if any.
func (g *guest) next(c protogate.Conn, st *conn) {
	st.inflight = nil
	if st.timer != 0 {
		_ = c.CancelTimer(st.timer)
		st.timer = 0
	}
	if len(st.queue) > 0 {
		p := st.queue[0]
		st.queue[0] = nil
		st.queue = st.queue[1:]
		g.transmit(c, st, p)
	}
}

// acked handles an ACK for mid.
func (g *guest) acked(c protogate.Conn, st *conn, mid uint16) {
	if st.inflight != nil && st.inflight.mid == mid {
		g.next(c, st)
	}
}

// reset handles an RST for mid: it ends the observation of the
// notification it answers.
func (g *guest) reset(c protogate.Conn, st *conn, mid uint16) {
	if p := st.inflight; p != nil && p.mid == mid {
		g.deregister(c, st, p.obs.token) // and sends the next
		return
	}
	for i, n := range st.nonMIDs {
		if n.obs != nil && n.mid == mid {
			st.nonMIDs[i] = nonSent{}
			if st.find(n.obs.token) == n.obs {
				g.deregister(c, st, n.obs.token)
			}
			return
		}
	}
}

// OnTimer retransmits the CON notification in flight, or gives up on it
// and its observation after MaxRetransmit retransmissions.
func (g *guest) OnTimer(c protogate.Conn, t protogate.Timer) error {
	st := g.conns[c]
	if st == nil || st.inflight == nil || t != st.timer {
		return nil
	}
	p := st.inflight
	if p.attempts >= MaxRetransmit {
		protogate.Log(protogate.LevelInfo, "coap: notification not acknowledged; observation of "+p.obs.filter+" removed")
		st.timer = 0
		g.deregister(c, st, p.obs.token) // and sends the next
		return nil
	}
	p.attempts++
	p.timeout *= 2
	send(c, p.msg)
	g.arm(c, st)
	return nil
}
