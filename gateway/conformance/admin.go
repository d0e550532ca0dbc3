package conformance

// This file holds the cases that drive the gateway through its admin API
// (package admin over real HTTP): what an operator does to a device must
// work the same whichever back end serves its handler.

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/admin"
	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authn"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// adminAPI serves the admin API of env on loopback.
type adminAPI struct {
	t    testing.TB
	base string
	srv  *admin.Server
}

func (env *Env) admin(t testing.TB) *adminAPI {
	t.Helper()
	secret, err := authn.ParsePassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(admin.Config{
		Node:      "conformance",
		Gateway:   env.Server,
		Listeners: []admin.Listener{{Name: env.Listener.Name, Type: env.Type.String(), Bind: env.Addr, Handler: env.backend.Name}},
		Handlers:  []admin.Handler{{Name: env.backend.Name, Handler: env.Rec}},
		APIKeys:   map[string]authn.Password{"ops": secret},
		Logger:    env.Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return &adminAPI{t: t, base: hs.URL, srv: srv}
}

// do sends a request and decodes a JSON answer into out (if not nil),
// returning the status.
func (a *adminAPI) do(method, path, body string, out any) int {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.SetBasicAuth("ops", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// apiClient is the part of the API's client object the cases check.
type apiClient struct {
	ClientID      string  `json:"clientid"`
	Username      string  `json:"username"`
	Conn          string  `json:"conn"`
	Listener      string  `json:"listener"`
	Handler       string  `json:"handler"`
	IPAddress     string  `json:"ip_address"`
	Port          int     `json:"port"`
	ConnState     string  `json:"conn_state"`
	Connected     bool    `json:"connected"`
	ConnectedAt   *string `json:"connected_at"`
	Keepalive     int     `json:"keepalive"`
	Mountpoint    string  `json:"mountpoint"`
	Subscriptions int     `json:"subscriptions_cnt"`
	RecvOct       uint64  `json:"recv_oct"`
	SendOct       uint64  `json:"send_oct"`
	RecvMsg       uint64  `json:"recv_msg"`
	SendMsg       uint64  `json:"send_msg"`
}

type apiPage struct {
	Data []apiClient `json:"data"`
	Meta struct {
		Page    int  `json:"page"`
		Limit   int  `json:"limit"`
		Count   *int `json:"count"`
		HasNext bool `json:"hasnext"`
	} `json:"meta"`
}

// testAdminClients lists, filters and pages connections, authenticated or
// not, and reads one client's detail.
func testAdminClients(t *testing.T, env *Env) {
	api := env.admin(t)
	a := env.dial(t)
	a.connect("adm-a", 30, 0)
	a.subscribe("s/1", 0, 0)
	a.publish("p/1", 0, "x", 0)
	b := env.dial(t)
	// b stays before Authenticate: exactly what an operator hunts for.

	var all apiPage
	if st := api.do("GET", "/api/v1/clients", "", &all); st != 200 {
		t.Fatalf("list: %d", st)
	}
	if len(all.Data) != 2 || all.Meta.Count == nil || *all.Meta.Count != 2 || all.Meta.HasNext || all.Meta.Limit != 100 {
		t.Fatalf("list = %+v", all)
	}
	if all.Data[0].Conn != a.handle || all.Data[1].Conn != b.handle {
		t.Errorf("order %s %s, want oldest first %s %s", all.Data[0].Conn, all.Data[1].Conn, a.handle, b.handle)
	}
	ca, cb := all.Data[0], all.Data[1]
	if ca.ClientID != "adm-a" || ca.ConnState != "connected" || !ca.Connected || ca.ConnectedAt == nil ||
		ca.Keepalive != 30 || ca.Subscriptions != 1 || ca.RecvMsg != 1 || ca.RecvOct == 0 || ca.SendOct == 0 ||
		ca.Listener != env.Listener.Name || ca.Handler != env.backend.Name || ca.IPAddress != "127.0.0.1" {
		t.Errorf("client a = %+v", ca)
	}
	if cb.ClientID != "" || cb.ConnState != "connecting" || cb.Connected || cb.ConnectedAt != nil {
		t.Errorf("client b = %+v", cb)
	}

	for _, tc := range []struct {
		query string
		want  []string // handles
		count bool
	}{
		{"clientid=adm-a", []string{a.handle}, true},
		{"clientid=nobody", nil, true},
		{"like_clientid=adm", []string{a.handle}, false},
		{"conn_state=connecting", []string{b.handle}, true},
		{"ip_address=127.0.0.1&listener=" + url.QueryEscape(env.Listener.Name), []string{a.handle, b.handle}, true},
		{"listener=other", nil, true},
		{"handler=" + url.QueryEscape(env.backend.Name) + "&conn_state=connected", []string{a.handle}, true},
		{"gte_created_at=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), nil, true},
		{"lte_created_at=" + fmt.Sprint(time.Now().Add(time.Hour).UnixMilli()), []string{a.handle, b.handle}, true},
		{"limit=1", []string{a.handle}, true},
		{"limit=1&page=2", []string{b.handle}, true},
		{"limit=1&page=3", nil, true},
	} {
		var p apiPage
		if st := api.do("GET", "/api/v1/clients?"+tc.query, "", &p); st != 200 {
			t.Errorf("%s: status %d", tc.query, st)
			continue
		}
		var got []string
		for _, c := range p.Data {
			got = append(got, c.Conn)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.query, got, tc.want)
		}
		if tc.count != (p.Meta.Count != nil) {
			t.Errorf("%s: count %v, want present=%v", tc.query, p.Meta.Count, tc.count)
		}
		if tc.query == "limit=1" && !p.Meta.HasNext {
			t.Errorf("%s: hasnext false", tc.query)
		}
	}

	for _, tc := range []struct{ query, param string }{
		{"limit=0", "limit"}, {"limit=10001", "limit"}, {"limit=x", "limit"}, {"page=0", "page"},
		{"ip_address=nope", "ip_address"}, {"conn_state=sleeping", "conn_state"},
		{"gte_created_at=yesterday", "gte_created_at"}, {"color=red", "color"},
	} {
		var e struct{ Code, Message string }
		if st := api.do("GET", "/api/v1/clients?"+tc.query, "", &e); st != 400 || e.Code != "BAD_REQUEST" || !strings.HasPrefix(e.Message, tc.param+":") {
			t.Errorf("%s: %d %+v, want 400 naming %s", tc.query, st, e, tc.param)
		}
	}

	var one apiClient
	if st := api.do("GET", "/api/v1/clients/adm-a", "", &one); st != 200 || one.Conn != a.handle {
		t.Errorf("by client id: %d %+v", st, one)
	}
	if st := api.do("GET", "/api/v1/clients/"+b.handle, "", &one); st != 200 || one.Conn != b.handle {
		t.Errorf("by handle: %d %+v", st, one)
	}
	var e struct{ Code string }
	if st := api.do("GET", "/api/v1/clients/nobody", "", &e); st != 404 || e.Code != "NOT_FOUND" {
		t.Errorf("unknown client: %d %+v", st, e)
	}
	// None of it disturbed the devices.
	a.publish("p/1", 0, "y", 0)
	b.connect("adm-b", 0, 0)
}

// testAdminKick kicks a device: its handler sees {shutdown,kicked} and its
// socket closes.
func testAdminKick(t *testing.T, env *Env) {
	api := env.admin(t)
	a := env.dial(t)
	a.connect("kick-me", 0, 0)
	other := env.dial(t)
	other.connect("stay", 0, 0)
	if st := api.do("DELETE", "/api/v1/clients/kick-me", "", nil); st != 204 {
		t.Fatalf("kick: %d", st)
	}
	env.expectClosed(t, a)
	if r := env.Rec.waitClosed(t, a.handle); r != gateway.ReasonKicked {
		t.Errorf("reason %q, want %q", r, gateway.ReasonKicked)
	}
	env.waitGone(t, a.handle)
	if st := api.do("DELETE", "/api/v1/clients/kick-me", "", nil); st != 404 {
		t.Errorf("second kick: %d, want 404", st)
	}
	// A connection not authenticated is kicked by its handle.
	b := env.dial(t)
	if st := api.do("DELETE", "/api/v1/clients/"+b.handle, "", nil); st != 204 {
		t.Fatalf("kick by handle: %d", st)
	}
	env.expectClosed(t, b)
	other.publish("still/here", 0, "x", 0)
}

// testAdminSubscriptions adds and removes a subscription through the API,
// with the mountpoint applied as a handler's Subscribe would.
func testAdminSubscriptions(t *testing.T, env *Env) {
	api := env.admin(t)
	c := env.dial(t)
	c.connect("dev1", 0, 0)
	c.subscribe("own/1", 0, 0)

	var subs []struct {
		Topic string `json:"topic"`
		QoS   int    `json:"qos"`
	}
	if st := api.do("GET", "/api/v1/clients/dev1/subscriptions", "", &subs); st != 200 || len(subs) != 1 || subs[0].Topic != "ct/dev1/own/1" {
		t.Fatalf("subscriptions: %d %+v", st, subs)
	}
	var added struct {
		Topic string `json:"topic"`
		QoS   int    `json:"qos"`
	}
	if st := api.do("POST", "/api/v1/clients/dev1/subscriptions", `{"topic":"adm/+","qos":1}`, &added); st != 201 || added.Topic != "ct/dev1/adm/+" || added.QoS != 1 {
		t.Fatalf("subscribe: %d %+v", st, added)
	}
	if err := env.NATS.Publish("ct.dev1.adm.x", []byte("from-nats")); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(jp.Publish, 0); f.Topic != "adm/x" || f.Payload != "from-nats" {
		t.Errorf("delivery = %+v, want unmounted adm/x", f)
	}
	if st := api.do("GET", "/api/v1/clients/dev1/subscriptions", "", &subs); st != 200 || len(subs) != 2 {
		t.Errorf("after subscribe: %d %+v", st, subs)
	}
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{}`, 400},
		{`{"topic":"a/#/b"}`, 400},
		{`{"topic":"x","qos":3}`, 400},
		{`{"topic":"x","color":1}`, 400},
		{`not json`, 400},
		{`{"topic":"` + strings.Repeat("x", 70<<10) + `"}`, 413},
	} {
		if st := api.do("POST", "/api/v1/clients/dev1/subscriptions", tc.body, nil); st != tc.want {
			t.Errorf("subscribe %.40s: %d, want %d", tc.body, st, tc.want)
		}
	}
	if st := api.do("DELETE", "/api/v1/clients/dev1/subscriptions/"+url.PathEscape("adm/+"), "", nil); st != 204 {
		t.Fatalf("unsubscribe: %d", st)
	}
	if st := api.do("DELETE", "/api/v1/clients/dev1/subscriptions/"+url.PathEscape("adm/+"), "", nil); st != 404 {
		t.Errorf("second unsubscribe: %d, want 404", st)
	}
	if st := api.do("POST", "/api/v1/clients/nobody/subscriptions", `{"topic":"x"}`, nil); st != 404 {
		t.Errorf("subscribe unknown client: %d, want 404", st)
	}
	// The device's own subscription still delivers.
	if err := env.NATS.Publish("ct.dev1.own.1", []byte("own")); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(jp.Publish, 0); f.Topic != "own/1" {
		t.Errorf("delivery = %+v", f)
	}
}

// traceLine is one event of the trace stream.
type traceLine struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Size     int    `json:"size"`
	Topic    string `json:"topic"`
	Code     string `json:"code"`
	Payload  string `json:"payload"`
	Reason   string `json:"reason"`
	Duration int64  `json:"duration_us"`
}

// testAdminTrace follows one device's callbacks and handler calls live.
func testAdminTrace(t *testing.T, env *Env) {
	api := env.admin(t)
	c := env.dial(t)
	c.connect("traced", 0, 0)
	req, err := http.NewRequest("GET", api.base+"/api/v1/trace?clientid=traced&payload=64&format=jsonl", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ops", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("trace: %d", resp.StatusCode)
	}
	// Only one trace per connection.
	if st := api.do("GET", "/api/v1/trace?clientid=traced", "", nil); st != 409 {
		t.Errorf("second trace: %d, want 409", st)
	}
	if st := api.do("GET", "/api/v1/trace?clientid=nobody", "", nil); st != 404 {
		t.Errorf("trace unknown: %d, want 404", st)
	}
	c.publish("tr/1", 0, "hi", 0)
	frame := string(jp.AppendLine(nil, jp.Frame{Type: jp.Publish, Topic: "tr/1", QoS: 0, Payload: "hi"}))
	c.send(jp.Frame{Type: jp.Disconnect})

	lines := make(chan traceLine)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l traceLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()
	var got []string
	var first *traceLine
	timeout := time.After(Timeout)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				done = true
				break
			}
			got = append(got, l.Kind+" "+l.Name)
			if first == nil && l.Kind == "callback" && l.Name == "on_received_bytes" {
				first = &l
			}
			if l.Kind == "end" {
				if l.Reason != gateway.ReasonNormal {
					t.Errorf("end reason %q", l.Reason)
				}
				done = true
			}
		case <-timeout:
			t.Fatalf("trace incomplete: %v", got)
		}
	}
	// The published frame: callback, the handler's publish and its
	// puback (send), its return; then disconnect, close, closed.
	seq := strings.Join(got, ", ")
	for _, want := range []string{
		"callback on_received_bytes, call publish, call send, return on_received_bytes",
		"callback on_socket_closed, return on_socket_closed, end closed",
	} {
		if !env.backend.AsyncCallbacks && !strings.Contains(seq, want) {
			t.Errorf("trace %q lacks %q", seq, want)
		}
	}
	if !strings.Contains(seq, "call close") {
		t.Errorf("trace %q lacks the handler's close", seq)
	}
	if first == nil {
		t.Fatalf("no on_received_bytes in %q", seq)
	}
	if p, _ := hex.DecodeString(first.Payload); !strings.HasPrefix(frame, string(p)) || len(p) == 0 {
		t.Errorf("payload %q is not the start of %q", p, frame)
	}
}
