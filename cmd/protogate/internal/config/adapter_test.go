package config

import (
	"strings"
	"testing"
)

// adapterTLS is an adapter block with tls; extra is added to the tls
// mapping (ca_file, verify_client).
func adapterTLS(bind, extra string) string {
	return "adapter:\n  bind: '" + bind + "'\n  tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key" + extra + "}\n"
}

// TestAdapterCredentialKeys covers handlers.NAME.grpc.adapter_token and
// adapter_client_cn: what is accepted, and the exact error otherwise.
func TestAdapterCredentialKeys(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	grpc := func(keys ...string) string {
		return doc(append(append([]string{"handlers:", "  h:", "    grpc:", "      address: http://127.0.0.1:9001"}, keys...),
			"listeners:", "  - {name: l, type: tcp, bind: 0.0.0.0:7993, handler: h}")...)
	}
	withCA := adapterTLS("127.0.0.1:9100", ", ca_file: testdata/certs/ca.pem")
	for _, tc := range []struct {
		name, in string
		want     string // the whole error; "" for none
		token    string
		cn       string
	}{
		{"none", grpc(), "", "", ""},
		{"token", grpc("      adapter_token: " + token), "", token, ""},
		{"token punctuation", grpc(`      adapter_token: "!#$%&()*+,-./:;<=>?@[]^_{|}~"`), "", "!#$%&()*+,-./:;<=>?@[]^_{|}~", ""},
		{"empty token", grpc("      adapter_token: ''"), "", "", ""},
		{"null token", grpc("      adapter_token:"), "", "", ""},
		{"short token", grpc("      adapter_token: secret"),
			`config: line 5: handlers.h.grpc.adapter_token: adapter token has 6 characters; want 16 to 1024 (make one with: openssl rand -hex 32)`, "", ""},
		{"long token", grpc("      adapter_token: " + strings.Repeat("a", 1025)),
			`config: line 5: handlers.h.grpc.adapter_token: adapter token has 1025 characters; want 16 to 1024 (make one with: openssl rand -hex 32)`, "", ""},
		{"token with a space", grpc("      adapter_token: 'my secret adapter token'"),
			`config: line 5: handlers.h.grpc.adapter_token: adapter token has a space, a control or a non-ASCII character at byte 2; want printable ASCII only (make one with: openssl rand -hex 32)`, "", ""},
		{"token not ascii", grpc("      adapter_token: 'jeton-très-secret-123'"),
			`config: line 5: handlers.h.grpc.adapter_token: adapter token has a space, a control or a non-ASCII character at byte 8; want printable ASCII only (make one with: openssl rand -hex 32)`, "", ""},
		{"token list", grpc("      adapter_token: [a]"), `config: line 5: handlers.h.grpc.adapter_token: want a string, got a list`, "", ""},
		{"token misspelt", grpc("      adapter_tokens: " + token), `config: line 5: handlers.h.grpc: unknown key "adapter_tokens"; did you mean "adapter_token"?`, "", ""},
		{"cn", withCA + grpc("      adapter_client_cn: handler-h"), "", "", "handler-h"},
		{"cn and token", withCA + grpc("      adapter_client_cn: handler-h", "      adapter_token: "+token), "", token, "handler-h"},
		{"cn without adapter tls", grpc("      adapter_client_cn: handler-h"),
			`config: line 5: handlers.h.grpc.adapter_client_cn: needs adapter.tls with a ca_file, to verify the client certificates that adapter calls present`, "", ""},
		{"cn without ca_file", adapterTLS("127.0.0.1:9100", "") + grpc("      adapter_client_cn: handler-h"),
			`config: line 8: handlers.h.grpc.adapter_client_cn: needs adapter.tls with a ca_file, to verify the client certificates that adapter calls present`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%v\n%s", err, numbered(tc.in))
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("error = %v\nwant    %s\n%s", err, tc.want, numbered(tc.in))
			case tc.want != "":
				if strings.Contains(err.Error(), "secret adapter token") || strings.Contains(err.Error(), "très") {
					t.Errorf("the error quotes the token: %v", err)
				}
				return
			}
			if g := c.Handlers["h"].GRPC; g.AdapterToken != tc.token || g.AdapterClientCN != tc.cn {
				t.Errorf("adapter_token %q, adapter_client_cn %q; want %q, %q", g.AdapterToken, g.AdapterClientCN, tc.token, tc.cn)
			}
		})
	}
}

// TestAdapterDoorWarnings checks the warnings about an adapter bound beyond
// loopback: without a way to tell callers apart, or with tokens in clear.
func TestAdapterDoorWarnings(t *testing.T) {
	const (
		token   = "      adapter_token: 0123456789abcdef0123456789abcdef"
		open    = `adapter.bind: address "%s" is not a loopback address, and the adapter has neither tls nor any handler's adapter_token: any process that reaches it can send to, publish as and close the devices of gRPC handlers whose handles it learns; set handlers.<name>.grpc.adapter_token, serve adapter.tls with verify_client, or bind to 127.0.0.1`
		noVerif = `adapter.bind: address "%s" is not a loopback address, and adapter.tls without verify_client encrypts but admits any client, while no handler has an adapter_token`
		clear   = `adapter.bind: address "%s" is not a loopback address, and the adapter has no tls: adapter tokens cross the network in clear text, for anyone on the path to read and reuse; add adapter.tls`
	)
	grpc := func(keys ...string) string {
		return doc(append(append([]string{"handlers:", "  h:", "    grpc:", "      address: http://127.0.0.1:9001"}, keys...),
			"listeners:", "  - {name: l, type: tcp, bind: 0.0.0.0:7993, handler: h}")...)
	}
	wasmOnly := doc("handlers:", "  h: {wasm: {path: 'builtin:echo'}}", "listeners:", "  - {name: l, type: tcp, bind: 0.0.0.0:7993, handler: h}")
	bind := func(b string) string { return "adapter: {bind: '" + b + "'}\n" }
	for _, tc := range []struct {
		name, in string
		want     string // the whole warning, %s the bind; "" for none
		bind     string
	}{
		{"default", grpc(), "", ""},
		{"loopback", bind("127.0.0.1:9100") + grpc(), "", ""},
		{"loopback net", bind("127.1.2.3:9100") + grpc(), "", ""},
		{"loopback ipv6", bind("[::1]:9100") + grpc(), "", ""},
		{"localhost", bind("localhost:9100") + grpc(), "", ""},
		{"any", bind("0.0.0.0:9100") + grpc(), "line 1: " + open, "0.0.0.0:9100"},
		{"empty host", bind(":9100") + grpc(), "line 1: " + open, ":9100"},
		{"ipv6 any", bind("[::]:9100") + grpc(), "line 1: " + open, "[::]:9100"},
		{"lan", bind("10.0.0.5:9100") + grpc(), "line 1: " + open, "10.0.0.5:9100"},
		{"host name", bind("gw.example.com:9100") + grpc(), "line 1: " + open, "gw.example.com:9100"},
		{"token without tls", bind("0.0.0.0:9100") + grpc(token), "line 1: " + clear, "0.0.0.0:9100"},
		{"tls without verify_client", adapterTLS("0.0.0.0:9100", ", ca_file: testdata/certs/ca.pem") + grpc(), "line 2: " + noVerif, "0.0.0.0:9100"},
		{"tls with verify_client", adapterTLS("0.0.0.0:9100", ", ca_file: testdata/certs/ca.pem, verify_client: true") + grpc(), "", ""},
		{"tls and token", adapterTLS("0.0.0.0:9100", "") + grpc(token), "", ""},
		{"tls and client cn", adapterTLS("0.0.0.0:9100", ", ca_file: testdata/certs/ca.pem") + grpc("      adapter_client_cn: h"), "", ""},
		{"wasm only: no adapter", bind("0.0.0.0:9100") + wasmOnly, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatalf("%v\n%s", err, numbered(tc.in))
			}
			w := c.Warnings()
			if tc.want == "" {
				if len(w) != 0 {
					t.Errorf("warnings: %v", w)
				}
				return
			}
			want := "config: " + strings.ReplaceAll(tc.want, "%s", tc.bind)
			if len(w) != 1 || !strings.HasPrefix(w[0].Error(), want) {
				t.Errorf("warnings: %v\nwant one starting %s", w, want)
			}
		})
	}
}
