package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/internal/authhttp"
)

// fixedNow is the clock of the tests that check expiry.
var fixedNow = time.Unix(1_700_000_000, 0)

func authReq() *gateway.AuthRequest {
	return &gateway.AuthRequest{
		Client:   gateway.ClientInfo{ProtoName: "lwm2m", ProtoVer: "1.0", ClientID: "c1", Username: "u1"},
		Password: "secret",
		Peer:     netip.MustParseAddrPort("[::ffff:10.0.0.1]:40000"),
		Listener: "tcp:default",
		PeerCert: &gateway.CertInfo{CN: "dev-1", DN: "CN=dev-1,O=Acme"},
	}
}

// reply returns a handler that answers status, content type and body.
func reply(status int, ctype, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype == "-" {
			w.Header()["Content-Type"] = nil // no content type, and no sniffing
		} else if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func newHTTPAuth(t *testing.T, h http.Handler, c HTTPConfig) *HTTP {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if c.URL == "" {
		c.URL = srv.URL + "/auth"
	} else {
		c.URL = srv.URL + c.URL
	}
	a, err := NewHTTP(c)
	if err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return fixedNow }
	t.Cleanup(func() { a.Close() })
	return a
}

func pubReq(topic string) *gateway.AuthzRequest {
	return &gateway.AuthzRequest{Action: gateway.ActionPublish, Topic: topic, Client: gateway.ClientInfo{ClientID: "c1", Username: "u1"}}
}

func subReq(topic string) *gateway.AuthzRequest {
	return &gateway.AuthzRequest{Action: gateway.ActionSubscribe, Topic: topic, Client: gateway.ClientInfo{ClientID: "c1", Username: "u1"}}
}

// TestHTTPResponses checks EMQX's response contract (ops-security §3.3),
// hostile answers included.
func TestHTTPResponses(t *testing.T) {
	const js = "application/json"
	exp := fixedNow.Unix() + 3600
	tests := []struct {
		name    string
		h       http.HandlerFunc
		want    Result
		wantErr string // a substring of the error; "" for none
		check   func(*testing.T, *gateway.Identity)
	}{
		{name: "204", h: reply(204, "", ""), want: Allow, check: notSuper},
		{name: "204 with a body", h: reply(204, js, `{"result":"deny"}`), want: Allow, check: notSuper},
		{name: "allow", h: reply(200, js, `{"result":"allow"}`), want: Allow, check: notSuper},
		{name: "allow charset", h: reply(200, "application/json; charset=utf-8", `{"result":"allow","is_superuser":true}`), want: Allow, check: super},
		{name: "deny", h: reply(200, js, `{"result":"deny","is_superuser":true}`), want: Deny},
		{name: "ignore", h: reply(200, js, `{"result":"ignore"}`), want: Ignore},
		{name: "missing result", h: reply(200, js, `{"is_superuser":true}`), want: Ignore},
		{name: "other result", h: reply(200, js, `{"result":"maybe"}`), wantErr: `result "maybe"`},
		{name: "result not a string", h: reply(200, js, `{"result":1}`), wantErr: "result 1"},
		{name: "result null", h: reply(200, js, `{"result":null}`), wantErr: "result null"},
		{name: "form allow", h: reply(200, "application/x-www-form-urlencoded", `result=allow&is_superuser=1`), want: Allow, check: super},
		{name: "form deny", h: reply(200, "application/x-www-form-urlencoded", `result=deny`), want: Deny},
		{name: "bad form", h: reply(200, "application/x-www-form-urlencoded", `result=%zz`), wantErr: "invalid form"},
		{name: "text plain", h: reply(200, "text/plain", `allow`), wantErr: `content type "text/plain"`},
		{name: "no content type", h: reply(200, "-", `{"result":"allow"}`), wantErr: "no content type"},
		{name: "invalid JSON", h: reply(200, js, `{"result":"allow"`), wantErr: "invalid JSON"},
		{name: "JSON array", h: reply(200, js, `[{"result":"allow"}]`), wantErr: "invalid JSON"},
		{name: "JSON null", h: reply(200, js, `null`), wantErr: "want a JSON object"},
		{name: "trailing data", h: reply(200, js, `{"result":"deny"}{"result":"allow"}`), wantErr: "data after"},
		{name: "empty 200", h: reply(200, js, ``), wantErr: "invalid JSON"},
		{name: "500", h: reply(500, js, `{"result":"allow"}`), wantErr: "status 500"},
		{name: "403", h: reply(403, "", ``), wantErr: "status 403"},
		{name: "401 allow body", h: reply(401, js, `{"result":"allow"}`), wantErr: "status 401"},
		{name: "redirect not followed", h: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/auth" {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
				return
			}
			reply(200, js, `{"result":"allow"}`)(w, r)
		}, wantErr: "status 302"},
		{name: "huge body", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", js)
			io.WriteString(w, `{"result":"allow","x":"`)
			chunk := strings.Repeat("a", 64<<10)
			for range 2 * authhttp.MaxBody / len(chunk) {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
			io.WriteString(w, `"}`)
		}, wantErr: "exceeds"},
		{name: "superuser string true", h: reply(200, js, `{"result":"allow","is_superuser":"true"}`), want: Allow, check: super},
		{name: "superuser string 1", h: reply(200, js, `{"result":"allow","is_superuser":"1"}`), want: Allow, check: super},
		{name: "superuser int 5", h: reply(200, js, `{"result":"allow","is_superuser":5}`), want: Allow, check: super},
		{name: "superuser string 7", h: reply(200, js, `{"result":"allow","is_superuser":"7"}`), want: Allow, check: super},
		{name: "superuser false", h: reply(200, js, `{"result":"allow","is_superuser":false}`), want: Allow, check: notSuper},
		{name: "superuser 0", h: reply(200, js, `{"result":"allow","is_superuser":0}`), want: Allow, check: notSuper},
		{name: "superuser yes", h: reply(200, js, `{"result":"allow","is_superuser":"yes"}`), want: Allow, check: notSuper},
		{name: "superuser float", h: reply(200, js, `{"result":"allow","is_superuser":1.5}`), want: Allow, check: notSuper},
		{name: "superuser negative", h: reply(200, js, `{"result":"allow","is_superuser":-1}`), want: Allow, check: notSuper},
		{name: "expire_at", h: reply(200, js, fmt.Sprintf(`{"result":"allow","expire_at":%d}`, exp)), want: Allow,
			check: func(t *testing.T, id *gateway.Identity) {
				if !id.ExpireAt.Equal(time.Unix(exp, 0)) {
					t.Errorf("ExpireAt = %v, want %v", id.ExpireAt, time.Unix(exp, 0))
				}
			}},
		{name: "expire_at now", h: reply(200, js, fmt.Sprintf(`{"result":"allow","expire_at":%d}`, fixedNow.Unix())), want: Allow},
		{name: "expire_at past", h: reply(200, js, fmt.Sprintf(`{"result":"allow","expire_at":%d}`, fixedNow.Unix()-1)), want: Deny},
		{name: "expire_at in ms", h: reply(200, js, fmt.Sprintf(`{"result":"allow","expire_at":%d}`, exp*1000)), want: Deny},
		{name: "expire_at string", h: reply(200, js, fmt.Sprintf(`{"result":"allow","expire_at":"%d"}`, exp)), want: Deny},
		{name: "expire_at float", h: reply(200, js, fmt.Sprintf(`{"result":"allow","expire_at":%d.5}`, exp)), want: Deny},
		{name: "expire_at huge", h: reply(200, js, `{"result":"allow","expire_at":123456789012345678901234567890}`), want: Deny},
		{name: "expire_at form", h: reply(200, "application/x-www-form-urlencoded", fmt.Sprintf(`result=allow&expire_at=%d`, exp)), want: Deny},
		{name: "client_attrs", h: reply(200, js, `{"result":"allow","client_attrs":{"group":"g1","bad key":"x","_x":"y","n":1,"a-b_c":"z"}}`), want: Allow,
			check: func(t *testing.T, id *gateway.Identity) {
				if len(id.Attrs) != 2 || id.Attrs["group"] != "g1" || id.Attrs["a-b_c"] != "z" {
					t.Errorf("Attrs = %v, want group and a-b_c only", id.Attrs)
				}
			}},
		{name: "client_attrs not an object", h: reply(200, js, `{"result":"allow","client_attrs":"g1"}`), want: Deny},
		{name: "acl rules", h: reply(200, js, `{"result":"allow","acl":[{"permission":"allow","action":"publish","topic":"t/${clientid}"},{"permission":"deny","action":"all","topic":"#"}]}`), want: Allow,
			check: func(t *testing.T, id *gateway.Identity) {
				wantMatch(t, id.ACL, pubReq("t/c1"), gateway.Allow)
				wantMatch(t, id.ACL, pubReq("t/c2"), gateway.Deny)
			}},
		{name: "acl rules no match", h: reply(200, js, `{"result":"allow","acl":[{"permission":"allow","action":"publish","topic":"t/1"}]}`), want: Allow,
			check: func(t *testing.T, id *gateway.Identity) { wantMatch(t, id.ACL, subReq("t/1"), gateway.NoMatch) }},
		{name: "acl object", h: reply(200, js, `{"result":"allow","acl":{"pub":["up/${clientid}/#"],"sub":["down/+"],"all":["both"]}}`), want: Allow,
			check: func(t *testing.T, id *gateway.Identity) {
				wantMatch(t, id.ACL, pubReq("up/c1/x"), gateway.Allow)
				wantMatch(t, id.ACL, subReq("down/1"), gateway.Allow)
				wantMatch(t, id.ACL, pubReq("both"), gateway.Allow)
				wantMatch(t, id.ACL, subReq("up/c1/x"), gateway.Deny)
				wantMatch(t, id.ACL, pubReq("down/1"), gateway.Deny)
			}},
		{name: "acl empty object denies all", h: reply(200, js, `{"result":"allow","acl":{"pub":[]}}`), want: Allow,
			check: func(t *testing.T, id *gateway.Identity) { wantMatch(t, id.ACL, pubReq("a"), gateway.Deny) }},
		{name: "bad acl permission", h: reply(200, js, `{"result":"allow","acl":[{"permission":"maybe","action":"publish","topic":"t"}]}`), want: Deny},
		{name: "bad acl topic", h: reply(200, js, `{"result":"allow","acl":[{"permission":"allow","action":"publish","topic":"a/#/b"}]}`), want: Deny},
		{name: "bad acl type", h: reply(200, js, `{"result":"allow","acl":"allow all"}`), want: Deny},
		{name: "bad acl object", h: reply(200, js, `{"result":"allow","acl":{"pub":"a/b"}}`), want: Deny},
		{name: "no acl", h: reply(200, js, `{"result":"allow"}`), want: Allow,
			check: func(t *testing.T, id *gateway.Identity) {
				if id.ACL != nil || id.Attrs != nil || !id.ExpireAt.IsZero() {
					t.Errorf("identity = %+v, want none of ACL, Attrs, ExpireAt", id)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newHTTPAuth(t, tc.h, HTTPConfig{})
			r, id, err := a.Check(context.Background(), authReq())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Check = %v, %v; want an error with %q", r, err, tc.wantErr)
				}
				return
			}
			if err != nil || r != tc.want {
				t.Fatalf("Check = %v, %v; want %v", r, err, tc.want)
			}
			if r == Allow && id == nil {
				t.Fatal("Allow without an Identity")
			}
			if r != Allow && id != nil {
				t.Fatalf("%v with an Identity %+v", r, id)
			}
			if tc.check != nil {
				tc.check(t, id)
			}
		})
	}
}

func super(t *testing.T, id *gateway.Identity) {
	t.Helper()
	if !id.Superuser {
		t.Error("not a superuser")
	}
}

func notSuper(t *testing.T, id *gateway.Identity) {
	t.Helper()
	if id.Superuser {
		t.Error("a superuser")
	}
}

func wantMatch(t *testing.T, acl gateway.ACL, req *gateway.AuthzRequest, want gateway.Decision) {
	t.Helper()
	if acl == nil {
		t.Fatal("no ACL")
	}
	if got := acl.Match(req); got != want {
		t.Errorf("ACL.Match(%v %q) = %v, want %v", req.Action, req.Topic, got, want)
	}
}

// captured is what a test backend received.
type captured struct {
	method, path, rawPath, rawQuery string
	query                           url.Values
	header                          http.Header
	body                            []byte
}

// recorder answers 204 and sends each request it gets on a channel.
func recorder() (http.HandlerFunc, chan captured) {
	ch := make(chan captured, 16)
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- captured{method: r.Method, path: r.URL.Path, rawPath: r.URL.EscapedPath(), rawQuery: r.URL.RawQuery,
			query: r.URL.Query(), header: r.Header.Clone(), body: b}
		w.WriteHeader(http.StatusNoContent)
	}, ch
}

// TestHTTPTemplating checks the requests: placeholders in the path,
// query, headers and body, escaping, GET queries, JSON and form bodies.
func TestHTTPTemplating(t *testing.T) {
	hostile := &gateway.AuthRequest{
		Client:   gateway.ClientInfo{ProtoName: "p", ClientID: "a/b c?d#e", Username: "x&y=z+%"},
		Password: `p"w\n` + "é",
		Peer:     netip.MustParseAddrPort("192.0.2.7:1234"),
		Listener: "ssl:x",
		PeerCert: &gateway.CertInfo{CN: "cn 1", DN: "CN=cn 1,O=Acme"},
	}
	t.Run("GET", func(t *testing.T) {
		h, ch := recorder()
		a := newHTTPAuth(t, h, HTTPConfig{Method: "get", URL: "/auth/${clientid}/x?u=${username}&fixed=1",
			Headers: map[string]string{"X-CN": "${cert_common_name}"},
			Body:    map[string]string{"p": "${password}", "h": "${peerhost}", "port": "${peerport}", "l": "${listener}", "dn": "${cert_subject}", "proto": "${proto_name}"}})
		r, _, err := a.Check(context.Background(), hostile)
		if err != nil || r != Allow {
			t.Fatalf("Check = %v, %v", r, err)
		}
		got := <-ch
		if got.method != "GET" || got.path != "/auth/a/b c?d#e/x" || got.rawPath != "/auth/a%2Fb%20c%3Fd%23e/x" {
			t.Errorf("method %s path %q (raw %q)", got.method, got.path, got.rawPath)
		}
		want := url.Values{"u": {"x&y=z+%"}, "fixed": {"1"}, "p": {hostile.Password}, "h": {"192.0.2.7"}, "port": {"1234"},
			"l": {"ssl:x"}, "dn": {"CN=cn 1,O=Acme"}, "proto": {"p"}}
		if fmt.Sprint(got.query) != fmt.Sprint(want) {
			t.Errorf("query %q = %v, want %v", got.rawQuery, got.query, want)
		}
		if got.header.Get("X-CN") != "cn 1" || got.header.Get("Accept") != "application/json" || got.header.Get("Content-Type") != "" {
			t.Errorf("headers %v", got.header)
		}
		if len(got.body) != 0 {
			t.Errorf("GET body %q", got.body)
		}
	})
	t.Run("POST JSON", func(t *testing.T) {
		h, ch := recorder()
		a := newHTTPAuth(t, h, HTTPConfig{URL: "/auth?c=${clientid}",
			Headers: map[string]string{"Authorization": "Bearer token-1", "x-user": "user=${username}"},
			Body:    map[string]string{"clientid": "${clientid}", "username": "${username}", "password": "${password}", "peer": "${peerhost}:${peerport}", "none": "${cert_common_name}"}})
		req := *hostile
		req.PeerCert = nil
		if r, _, err := a.Check(context.Background(), &req); err != nil || r != Allow {
			t.Fatalf("Check = %v, %v", r, err)
		}
		got := <-ch
		if got.method != "POST" || got.query.Get("c") != hostile.Client.ClientID {
			t.Errorf("method %s query %q", got.method, got.rawQuery)
		}
		if got.header.Get("Content-Type") != "application/json" || got.header.Get("Authorization") != "Bearer token-1" ||
			got.header.Get("X-User") != "user=x&y=z+%" {
			t.Errorf("headers %v", got.header)
		}
		var body map[string]string
		if err := json.Unmarshal(got.body, &body); err != nil {
			t.Fatalf("body %q: %v", got.body, err)
		}
		want := map[string]string{"clientid": hostile.Client.ClientID, "username": hostile.Client.Username,
			"password": hostile.Password, "peer": "192.0.2.7:1234", "none": ""}
		if fmt.Sprint(body) != fmt.Sprint(want) {
			t.Errorf("body %v, want %v", body, want)
		}
	})
	t.Run("POST form", func(t *testing.T) {
		h, ch := recorder()
		a := newHTTPAuth(t, h, HTTPConfig{Method: "POST",
			Headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
			Body:    map[string]string{"u": "${username}", "p": "${password}"}})
		if r, _, err := a.Check(context.Background(), hostile); err != nil || r != Allow {
			t.Fatalf("Check = %v, %v", r, err)
		}
		got := <-ch
		if got.header.Get("Content-Type") != "application/x-www-form-urlencoded; charset=utf-8" {
			t.Errorf("content type %q", got.header.Get("Content-Type"))
		}
		q, err := url.ParseQuery(string(got.body))
		if err != nil || q.Get("u") != hostile.Client.Username || q.Get("p") != hostile.Password {
			t.Errorf("form %q: %v, %v", got.body, q, err)
		}
	})
	t.Run("header CR LF refused", func(t *testing.T) {
		for _, bad := range []string{"a\r\nX-Evil: 1", "a\nb", "a\x00b", "a\rb"} {
			h, ch := recorder()
			a := newHTTPAuth(t, h, HTTPConfig{Headers: map[string]string{"X-User": "${username}"}})
			req := authReq()
			req.Client.Username = bad
			r, _, err := a.Check(context.Background(), req)
			if err == nil || !strings.Contains(err.Error(), "CR, LF or NUL") {
				t.Errorf("username %q: Check = %v, %v; want a refusal", bad, r, err)
			}
			if strings.Contains(err.Error(), bad) {
				t.Errorf("the error quotes the value: %v", err)
			}
			select {
			case got := <-ch:
				t.Errorf("username %q: a request was sent: %v", bad, got.header)
			default:
			}
		}
	})
	t.Run("CR LF in the body is data", func(t *testing.T) {
		h, ch := recorder()
		a := newHTTPAuth(t, h, HTTPConfig{Body: map[string]string{"u": "${username}"}})
		req := authReq()
		req.Client.Username = "a\r\nb"
		if r, _, err := a.Check(context.Background(), req); err != nil || r != Allow {
			t.Fatalf("Check = %v, %v", r, err)
		}
		if got := <-ch; !strings.Contains(string(got.body), `a\r\nb`) {
			t.Errorf("body %q", got.body)
		}
	})
	t.Run("invalid UTF-8 in JSON", func(t *testing.T) {
		h, ch := recorder()
		a := newHTTPAuth(t, h, HTTPConfig{Body: map[string]string{"p": "${password}"}})
		req := authReq()
		req.Password = "\xff\xfe"
		if _, _, err := a.Check(context.Background(), req); err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("Check: %v; want a UTF-8 error", err)
		}
		if len(ch) != 0 {
			t.Error("a request was sent")
		}
	})
	t.Run("no peer", func(t *testing.T) {
		h, ch := recorder()
		a := newHTTPAuth(t, h, HTTPConfig{Method: "get", Body: map[string]string{"h": "${peerhost}", "p": "${peerport}", "cn": "${cert_common_name}"}})
		if _, _, err := a.Check(context.Background(), &gateway.AuthRequest{}); err != nil {
			t.Fatal(err)
		}
		if got := <-ch; got.rawQuery != "cn=&h=&p=" {
			t.Errorf("query %q", got.rawQuery)
		}
	})
}

func TestNewHTTPErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    HTTPConfig
		want string
	}{
		{"no url", HTTPConfig{}, "url: missing"},
		{"method", HTTPConfig{Method: "put", URL: "http://h/"}, `method "put"`},
		{"scheme", HTTPConfig{URL: "ftp://h/"}, "http:// or https://"},
		{"no scheme", HTTPConfig{URL: "h/auth"}, "http:// or https://"},
		{"templated host", HTTPConfig{URL: "http://${username}.example.com/"}, "host or port"},
		{"templated port", HTTPConfig{URL: "http://h:${peerport}/"}, "host or port"},
		{"userinfo", HTTPConfig{URL: "http://u:p@h/"}, "user information"},
		{"fragment", HTTPConfig{URL: "http://h/a#b"}, "fragments"},
		{"no host", HTTPConfig{URL: "http:///a"}, "no host"},
		{"unknown placeholder", HTTPConfig{URL: "http://h/${zone}"}, "unknown placeholder"},
		{"client attrs", HTTPConfig{URL: "http://h/${client_attrs.g}"}, "not known before authentication"},
		{"topic", HTTPConfig{URL: "http://h/", Body: map[string]string{"t": "${topic}"}}, "unknown placeholder"},
		{"unclosed", HTTPConfig{URL: "http://h/${clientid"}, "unclosed"},
		{"empty placeholder", HTTPConfig{URL: "http://h/${}"}, "empty placeholder"},
		{"bad header name", HTTPConfig{URL: "http://h/", Headers: map[string]string{"bad name": "x"}}, "not a valid header name"},
		{"header literal LF", HTTPConfig{URL: "http://h/", Headers: map[string]string{"X": "a\nb"}}, "control character"},
		{"header twice", HTTPConfig{URL: "http://h/", Headers: map[string]string{"X-A": "1", "x-a": "2"}}, "given twice"},
		{"content-length", HTTPConfig{URL: "http://h/", Headers: map[string]string{"Content-Length": "1"}}, "not configurable"},
		{"other content type", HTTPConfig{URL: "http://h/", Headers: map[string]string{"content-type": "text/plain"}}, "want application/json"},
		{"templated content type", HTTPConfig{URL: "http://h/", Headers: map[string]string{"content-type": "${username}"}}, "content type"},
		{"GET content type", HTTPConfig{Method: "get", URL: "http://h/", Headers: map[string]string{"Content-Type": "application/json"}}, "GET request has no body"},
		{"templated host header", HTTPConfig{URL: "http://h/", Headers: map[string]string{"Host": "${username}"}}, "host"},
		{"body placeholder", HTTPConfig{URL: "http://h/", Body: map[string]string{"x": "${nope}"}}, `body field "x"`},
		{"empty body name", HTTPConfig{URL: "http://h/", Body: map[string]string{"": "x"}}, "empty field name"},
		{"tls with http", HTTPConfig{URL: "http://h/", TLS: &tls.Config{}}, "not https"},
		{"negative timeout", HTTPConfig{URL: "http://h/", RequestTimeout: -1}, "request_timeout"},
		{"negative pool", HTTPConfig{URL: "http://h/", PoolSize: -1}, "pool_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHTTP(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "authn: http: ") {
				t.Fatalf("NewHTTP: %v; want an error with %q", err, tc.want)
			}
		})
	}
	for _, u := range []string{"http://h", "https://h:8443/a/b?x=1&y=${clientid}", "HTTP://[::1]:80/${username}", "http://h?c=${clientid}"} {
		if _, err := NewHTTP(HTTPConfig{URL: u}); err != nil {
			t.Errorf("NewHTTP(%q): %v", u, err)
		}
	}
}

// TestHTTPTimeout checks that a backend that never answers is a failure
// after the request timeout, and how the profiles take it.
func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	stall := func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
	// The server's Close waits for handlers: release them first.
	a := newHTTPAuth(t, http.HandlerFunc(stall), HTTPConfig{RequestTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { close(release) })
	start := time.Now()
	r, id, err := a.Check(context.Background(), authReq())
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("Check = %v, %v, %v; want a timeout", r, id, err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error holds the password: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timed out after %v", d)
	}
	if arrived.Load() != 1 {
		t.Errorf("%d requests arrived", arrived.Load())
	}
	// The caller's own deadline also bounds the request.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := a.Check(ctx, authReq()); err == nil {
		t.Error("Check with a cancelled context succeeded")
	}

	allow := allowSource{}
	for _, tc := range []struct {
		profile Profile
		allowed bool
	}{{Legacy, true}, {Hardened, false}} {
		c := NewChain(tc.profile, nil, a, allow)
		_, err := c.Authenticate(context.Background(), authReq())
		if (err == nil) != tc.allowed {
			t.Errorf("%v: Authenticate = %v; want allowed %v", tc.profile, err, tc.allowed)
		}
		if !tc.allowed && !errors.Is(err, ErrBackend) {
			t.Errorf("%v: %v does not wrap ErrBackend", tc.profile, err)
		}
	}
}

// allowSource allows everyone.
type allowSource struct{}

func (allowSource) Name() string { return "allow" }
func (allowSource) Check(context.Context, *gateway.AuthRequest) (Result, *gateway.Identity, error) {
	return Allow, &gateway.Identity{}, nil
}

// TestHTTPSlow checks a backend that answers slowly: headers at once, a
// body that trickles and never ends is a failure at the timeout; a slow
// answer within the timeout is used.
func TestHTTPSlow(t *testing.T) {
	t.Run("trickling body", func(t *testing.T) {
		a := newHTTPAuth(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"result":`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}), HTTPConfig{RequestTimeout: 50 * time.Millisecond})
		if _, _, err := a.Check(context.Background(), authReq()); err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Check: %v; want a timeout", err)
		}
	})
	t.Run("slow within the timeout", func(t *testing.T) {
		a := newHTTPAuth(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select { // answer late, but within the timeout
			case <-time.After(30 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			reply(200, "application/json", `{"result":"allow"}`)(w, r)
		}), HTTPConfig{RequestTimeout: 10 * time.Second})
		if r, _, err := a.Check(context.Background(), authReq()); err != nil || r != Allow {
			t.Fatalf("Check = %v, %v", r, err)
		}
	})
	t.Run("transport error", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		u := srv.URL
		srv.Close()
		a, err := NewHTTP(HTTPConfig{URL: u + "/auth?p=${password}"})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = a.Check(context.Background(), authReq())
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Fatalf("Check: %v; want an error without the password", err)
		}
	})
}

// TestHTTPPool checks that PoolSize bounds the requests in flight.
func TestHTTPPool(t *testing.T) {
	var inflight, most atomic.Int32
	a := newHTTPAuth(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		select { // hold the connection so that requests overlap if they can
		case <-time.After(5 * time.Millisecond):
		case <-r.Context().Done():
		}
		inflight.Add(-1)
		w.WriteHeader(http.StatusNoContent)
	}), HTTPConfig{PoolSize: 2})
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if r, _, err := a.Check(context.Background(), authReq()); err != nil || r != Allow {
				t.Errorf("Check = %v, %v", r, err)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > 2 || m < 1 {
		t.Errorf("%d requests were in flight at once; want at most 2", m)
	}
}

// TestHTTPTLS checks https with the caller's roots, and that an
// unverified server is a failure.
func TestHTTPTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(reply(200, "application/json", `{"result":"allow","is_superuser":true}`))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the unverified client's handshake error
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	a, err := NewHTTP(HTTPConfig{URL: srv.URL + "/auth", TLS: &tls.Config{RootCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	if r, id, err := a.Check(context.Background(), authReq()); err != nil || r != Allow || !id.Superuser {
		t.Fatalf("Check = %v, %v, %v", r, id, err)
	}
	b, err := NewHTTP(HTTPConfig{URL: srv.URL + "/auth"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Check(context.Background(), authReq()); err == nil {
		t.Fatal("an unverified server was trusted")
	}
}

// FuzzHTTPAnswer feeds the response parser hostile bodies: it must not
// panic, and an allow always carries an Identity.
func FuzzHTTPAnswer(f *testing.F) {
	for _, s := range []string{`{"result":"allow","is_superuser":"1","expire_at":1700003600,"client_attrs":{"a":"b"},"acl":[{"permission":"allow","action":"all","topic":"#"}]}`,
		`{"result":"allow","acl":{"pub":["a/${clientid}"],"all":[1]}}`, `{"result":"deny"}`, `{"result":"ignore"}`, `[]`, `{`, `result=allow&is_superuser=true`} {
		f.Add(200, "application/json", []byte(s))
		f.Add(200, "application/x-www-form-urlencoded", []byte(s))
	}
	f.Add(204, "", []byte(nil))
	f.Add(500, "text/plain", []byte("oops"))
	h := &HTTP{now: func() time.Time { return fixedNow }}
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte) {
		r, id, _, err := h.answer(&authhttp.Response{Status: status, ContentType: ctype, Body: body})
		if err == nil && r == Allow && id == nil {
			t.Fatal("allow without an Identity")
		}
		if err != nil && (r != Ignore || id != nil) {
			t.Fatalf("a failure with %v, %v", r, id)
		}
		if id != nil && id.ACL != nil {
			id.ACL.Match(pubReq("a/c1"))
		}
	})
}
