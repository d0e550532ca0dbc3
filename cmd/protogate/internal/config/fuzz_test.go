package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, that every error is an *Error
// with the "config: " prefix, and that a successful Parse yields a config
// that validates and survives a yaml.Marshal round trip.
func FuzzParse(f *testing.F) {
	f.Add(Default())
	f.Add([]byte(withBase()))
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range seeds {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"",
		"~",
		"a: &a [*a]",
		"listeners: [&l {<<: *l}]",
		billionLaughs(),
		"node: {name: x}\n---\nlog: {}\n",
		"broker: {max_payload: 64MiB, nats_listen: '[::1]:0'}\n" + withBase(),
		withListener("  - {name: a, type: ssl, bind: ':1', handler: h, tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}}"),
		withHandler("    wasm: {path: 'builtin:x', instances: 3, memory_limit: 1GiB}"),
		withListener("  - {name: u, type: udp, bind: ':1', handler: h, health_check: {request: a, reply: b}, max_packet_size: 512, max_conn_rate: 100/10s}"),
		withListener("  - {name: d, type: dtls, bind: ':1', handler: h, psk: {identities_file: testdata/psk.txt, identities: {a: '0f'}, identity_hint: x}}"),
		withListener("  - {name: t, type: tcp, bind: ':1', handler: h, max_connections: infinity, access_rules: ['deny 10.0.0.0/8', 'allow all'], max_bytes_rate: 64KB/s, proxy_protocol: true, framing: {type: length, bytes: 4}}"),
		withListener("  - {name: t, type: tcp, bind: ':1', handler: h, framing: {type: line}, access_rules: [], max_bytes_rate: ''}"),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error lacks prefix: %v", err)
			}
			if c != nil {
				t.Fatal("non-nil config with error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse succeeded but Validate fails: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		assertConfig(t, c2, c)
	})
}
