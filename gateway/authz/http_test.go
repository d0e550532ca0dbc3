package authz

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/internal/authhttp"
)

func reply(status int, ctype, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype == "-" {
			w.Header()["Content-Type"] = nil
		} else if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func newHTTPSource(t *testing.T, h http.Handler, c HTTPConfig) *HTTP {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c.URL = srv.URL + c.URL
	if c.URL == srv.URL {
		c.URL += "/authz"
	}
	s, err := NewHTTP(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func azReq(a gateway.Action, topic string) *gateway.AuthzRequest {
	return &gateway.AuthzRequest{
		Action: a, Topic: topic, QoS: 1,
		Client:   gateway.ClientInfo{ProtoName: "coap", ClientID: "c1", Username: "u1"},
		Peer:     netip.MustParseAddrPort("198.51.100.4:5683"),
		Listener: "udp:default",
		PeerCert: &gateway.CertInfo{CN: "dev", DN: "CN=dev"},
		Identity: &gateway.Identity{Attrs: map[string]string{"group": "g/1"}},
	}
}

// TestHTTPDecisions checks EMQX's response contract (ops-security §3.7).
func TestHTTPDecisions(t *testing.T) {
	const js = "application/json"
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		want    gateway.Decision
		wantErr string
	}{
		{"204", reply(204, "", ""), gateway.Allow, ""},
		{"allow", reply(200, js, `{"result":"allow"}`), gateway.Allow, ""},
		{"deny", reply(200, js, `{"result":"deny"}`), gateway.Deny, ""},
		{"ignore", reply(200, js, `{"result":"ignore"}`), gateway.NoMatch, ""},
		{"form allow", reply(200, "application/x-www-form-urlencoded", `result=allow`), gateway.Allow, ""},
		{"form deny", reply(200, "application/x-www-form-urlencoded; charset=utf-8", `result=deny`), gateway.Deny, ""},
		{"no result", reply(200, js, `{}`), 0, "no result"},
		{"other result", reply(200, js, `{"result":"yes"}`), 0, "result yes"},
		{"result not a string", reply(200, js, `{"result":true}`), 0, "result true"},
		{"text", reply(200, "text/plain", `allow`), 0, "content type"},
		{"no content type", reply(200, "-", `{"result":"allow"}`), 0, "no content type"},
		{"invalid JSON", reply(200, js, `{"result":`), 0, "invalid JSON"},
		{"huge", reply(200, js, `{"result":"allow","x":"`+strings.Repeat("x", authhttp.MaxBody)+`"}`), 0, "exceeds"},
		{"403", reply(403, js, `{"result":"allow"}`), gateway.NoMatch, ""},
		{"404", reply(404, "", ``), gateway.NoMatch, ""},
		{"500", reply(500, "", ``), gateway.NoMatch, ""},
		{"302", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/x", http.StatusFound) }, gateway.NoMatch, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newHTTPSource(t, tc.h, HTTPConfig{})
			d, err := s.Authorize(context.Background(), azReq(gateway.ActionPublish, "t"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Authorize = %v, %v; want an error with %q", d, err, tc.wantErr)
				}
				return
			}
			if err != nil || d != tc.want {
				t.Fatalf("Authorize = %v, %v; want %v", d, err, tc.want)
			}
		})
	}
}

// TestHTTPFailures checks that a timeout and a transport error are
// backend failures, and how the Chain takes them in each profile.
func TestHTTPFailures(t *testing.T) {
	release := make(chan struct{})
	slow := newHTTPSource(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}), HTTPConfig{RequestTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { close(release) })
	if _, err := slow.Authorize(context.Background(), azReq(gateway.ActionSubscribe, "t")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Authorize: %v; want a timeout", err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	down, err := NewHTTP(HTTPConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Authorize(context.Background(), azReq(gateway.ActionSubscribe, "t")); err == nil {
		t.Fatal("Authorize on a closed server succeeded")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name      string
		chain     Chain
		allow     bool
		cacheable bool
	}{
		{"legacy skips, no_match allow", Chain{Sources: []Source{down}, NoMatchAllow: true, Logger: quiet}, true, false},
		{"legacy skips to the next source", Chain{Sources: []Source{down, Rules{{Allow: false, Action: All}}}, NoMatchAllow: true, Logger: quiet}, false, false},
		{"hardened denies", Chain{Sources: []Source{down}, NoMatchAllow: true, FailureDenies: true, Logger: quiet}, false, false},
	} {
		allow, cacheable := tc.chain.Authorize(context.Background(), azReq(gateway.ActionPublish, "t"))
		if allow != tc.allow || cacheable != tc.cacheable {
			t.Errorf("%s: Authorize = %v, %v; want %v, %v", tc.name, allow, cacheable, tc.allow, tc.cacheable)
		}
	}
	// Another status is no match, not a failure: the chain goes on and
	// may cache the answer.
	nomatch := newHTTPSource(t, reply(500, "", ""), HTTPConfig{})
	c := Chain{Sources: []Source{nomatch}, FailureDenies: true, NoMatchAllow: true, Logger: quiet}
	if allow, cacheable := c.Authorize(context.Background(), azReq(gateway.ActionPublish, "t")); !allow || !cacheable {
		t.Errorf("status 500 under hardened: Authorize = %v, %v; want no match (allowed by no_match), cacheable", allow, cacheable)
	}
}

type captured struct {
	method, rawPath string
	query           url.Values
	header          http.Header
	body            []byte
}

func recorder() (http.HandlerFunc, chan captured) {
	ch := make(chan captured, 4)
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- captured{method: r.Method, rawPath: r.URL.EscapedPath(), query: r.URL.Query(), header: r.Header.Clone(), body: b}
		w.WriteHeader(http.StatusNoContent)
	}, ch
}

// TestHTTPTemplating checks the authorization placeholders in a GET
// query, a path and a JSON body.
func TestHTTPTemplating(t *testing.T) {
	t.Run("GET", func(t *testing.T) {
		h, ch := recorder()
		s := newHTTPSource(t, h, HTTPConfig{Method: "get", URL: "/acl?topic=${topic}",
			Headers: map[string]string{"X-Client": "${clientid}"},
			Body: map[string]string{"action": "${action}", "access": "${access}", "qos": "${qos}", "retain": "${retain}",
				"group": "${client_attrs.group}", "none": "${client_attrs.none}", "ip": "${peerhost}", "port": "${peerport}",
				"cn": "${cert_common_name}", "dn": "${cert_subject}", "l": "${listener}", "p": "${proto_name}", "u": "${username}"}})
		if d, err := s.Authorize(context.Background(), azReq(gateway.ActionSubscribe, "a/+/b c&d=#")); err != nil || d != gateway.Allow {
			t.Fatalf("Authorize = %v, %v", d, err)
		}
		got := <-ch
		want := map[string]string{"topic": "a/+/b c&d=#", "action": "subscribe", "access": "1", "qos": "1", "retain": "false",
			"group": "g/1", "none": "", "ip": "198.51.100.4", "port": "5683", "cn": "dev", "dn": "CN=dev", "l": "udp:default", "p": "coap", "u": "u1"}
		for k, v := range want {
			if got.query.Get(k) != v {
				t.Errorf("query %s = %q, want %q", k, got.query.Get(k), v)
			}
		}
		if got.method != "GET" || got.header.Get("X-Client") != "c1" {
			t.Errorf("method %s, headers %v", got.method, got.header)
		}
	})
	t.Run("POST", func(t *testing.T) {
		h, ch := recorder()
		s := newHTTPSource(t, h, HTTPConfig{URL: "/acl/${action}/${topic}",
			Body: map[string]string{"topic": "${topic}", "access": "${access}", "clientid": "${clientid}"}})
		req := azReq(gateway.ActionPublish, "up/../x y")
		req.Identity = nil
		if d, err := s.Authorize(context.Background(), req); err != nil || d != gateway.Allow {
			t.Fatalf("Authorize = %v, %v", d, err)
		}
		got := <-ch
		if got.rawPath != "/acl/publish/up%2F..%2Fx%20y" {
			t.Errorf("path %q", got.rawPath)
		}
		var body map[string]string
		if err := json.Unmarshal(got.body, &body); err != nil || body["topic"] != "up/../x y" || body["access"] != "2" || body["clientid"] != "c1" {
			t.Errorf("body %q: %v", got.body, err)
		}
		if got.header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", got.header.Get("Content-Type"))
		}
	})
	t.Run("header CR LF refused", func(t *testing.T) {
		h, ch := recorder()
		s := newHTTPSource(t, h, HTTPConfig{Headers: map[string]string{"X-Topic": "${topic}"}})
		if _, err := s.Authorize(context.Background(), azReq(gateway.ActionPublish, "a\r\nX-Evil: 1")); err == nil || !strings.Contains(err.Error(), "CR, LF or NUL") {
			t.Fatalf("Authorize: %v; want a refusal", err)
		}
		if len(ch) != 0 {
			t.Error("a request was sent")
		}
	})
}

func TestNewHTTPErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    HTTPConfig
		want string
	}{
		{"password", HTTPConfig{URL: "http://h/", Body: map[string]string{"p": "${password}"}}, "not kept after authentication"},
		{"mountpoint", HTTPConfig{URL: "http://h/${mountpoint}"}, "mountpoint"},
		{"unknown", HTTPConfig{URL: "http://h/", Body: map[string]string{"z": "${zone}"}}, "unknown placeholder"},
		{"bad content type", HTTPConfig{URL: "http://h/", Headers: map[string]string{"Content-Type": "text/xml"}}, "want application/json"},
		{"method", HTTPConfig{Method: "delete", URL: "http://h/"}, "method"},
		{"templated host", HTTPConfig{URL: "http://${topic}/"}, "host or port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHTTP(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "authz: http: ") {
				t.Fatalf("NewHTTP: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// FuzzHTTPDecide checks that no answer panics and that a failure never
// decides.
func FuzzHTTPDecide(f *testing.F) {
	for _, s := range []string{`{"result":"allow"}`, `{"result":"deny"}`, `{"result":"ignore"}`, `{"result":1}`, `[]`, `result=allow`, ``} {
		f.Add(200, "application/json", []byte(s))
		f.Add(200, "application/x-www-form-urlencoded", []byte(s))
	}
	f.Add(204, "", []byte(nil))
	f.Add(503, "text/html", []byte("busy"))
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte) {
		d, err := decide(&authhttp.Response{Status: status, ContentType: ctype, Body: body})
		if err != nil && d != gateway.NoMatch {
			t.Fatalf("a failure decided %v", d)
		}
	})
}
