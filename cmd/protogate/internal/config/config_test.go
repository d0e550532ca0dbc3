package config

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authn"
	"github.com/protogate/protogate/gateway/remote"
)

// doc joins lines into a YAML document; line i of the result is lines[i-1],
// which keeps the expected line numbers in the tables easy to check.
func doc(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// handlersAndListener is a valid tail: a handler "h" and a tcp listener "l".
// Prepended documents must keep it at the top level.
var handlersAndListener = []string{
	"handlers:",
	"  h:",
	"    grpc:",
	"      address: http://127.0.0.1:9001",
	"listeners:",
	"  - name: l",
	"    type: tcp",
	"    bind: 0.0.0.0:7993",
	"    handler: h",
}

// withBase returns lines followed by handlersAndListener.
func withBase(lines ...string) string {
	return doc(append(append([]string{}, lines...), handlersAndListener...)...)
}

// withHandler returns a document whose only handler "h" has the given body
// lines (indented under "  h:") starting at line 3, plus a listener.
func withHandler(body ...string) string {
	lines := []string{"handlers:", "  h:"}
	lines = append(lines, body...)
	lines = append(lines, "listeners:", "  - {name: l, type: tcp, bind: 0.0.0.0:7993, handler: h}")
	return doc(lines...)
}

// withListener returns a document with handler "h" (lines 1-4) and the
// given listeners lines starting at line 6 (line 5 is "listeners:").
func withListener(lines ...string) string {
	l := []string{"handlers:", "  h:", "    grpc:", "      address: http://127.0.0.1:9001", "listeners:"}
	return doc(append(l, lines...)...)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the whole error message
	}{
		// Document level.
		{"empty", "", `config: line 1: document is empty`},
		{"only comments", "# nothing\n", `config: line 1: document is empty`},
		{"syntax", doc("node: {}", "log: {}", "broker 2", "adapter: {}"), `config: line 3: invalid yaml: could not find expected ':'`},
		{"tab indent", doc("node:", "\tname: x"), `config: line 2: invalid yaml: found character that cannot start any token`},
		{"root list", doc("- a", "- b"), `config: line 1: want a mapping, got a list`},
		{"root scalar", doc("hello"), `config: line 1: want a mapping, got "hello"`},
		{"two documents", doc("node: {}", "---", "log: {}"), `config: line 2: found a second yaml document; want exactly one`},
		{"unknown top key", withBase("nodes:", "  name: x"), `config: line 1: unknown key "nodes"; did you mean "node"?`},
		{"unknown top key no hint", withBase("cluster: {}"), `config: line 1: unknown key "cluster"`},
		{"duplicate top key", withBase("log: {}", "log: {}"), `config: line 2: duplicate key "log" (first at line 1)`},
		{"non-string key", withBase("[a]: 1"), `config: line 1: keys must be strings, got a list`},
		{"null key", withBase("~: 1"), `config: line 1: keys must be strings, got "~"`},

		// node
		{"node not mapping", withBase("node: gw"), `config: line 1: node: want a mapping, got "gw"`},
		{"node unknown key", withBase("node:", "  name: gw", "  datadir: x"), `config: line 3: node: unknown key "datadir"; did you mean "data_dir"?`},
		{"node name empty", withBase("node:", "  name: ''"), `config: line 2: node.name: must not be empty`},
		{"node name chars", withBase("node:", "  name: my node"), `config: line 2: node.name: invalid name "my node" (use letters, digits, '_', '.' and '-')`},
		{"node name list", withBase("node:", "  name: [a]"), `config: line 2: node.name: want a string, got a list`},
		{"data_dir empty", withBase("node: {data_dir: \"\"}"), `config: line 1: node.data_dir: must not be empty`},

		// log
		{"log level", withBase("log:", "  level: verbose"), `config: line 2: log.level: unknown log level "verbose" (want debug, info, warn or error)`},
		{"log format", withBase("log:", "  format: xml"), `config: line 2: log.format: unknown log format "xml" (want text or json)`},

		// broker
		{"nats listen", withBase("broker:", "  nats_listen: 127.0.0.1"), `config: line 2: broker.nats_listen: invalid address "127.0.0.1" (want host:port such as 0.0.0.0:7993 or [::1]:7993)`},
		{"mqtt bare port", withBase("broker:", "  mqtt_listen: 1883"), `config: line 2: broker.mqtt_listen: address "1883" is only a port; want host:port such as "0.0.0.0:1883"`},
		{"bind port range", withBase("broker:", "  nats_listen: 0.0.0.0:70000"), `config: line 2: broker.nats_listen: invalid port "70000" in address "0.0.0.0:70000" (want 0 to 65535)`},
		{"bind bad host", withBase("broker:", "  nats_listen: bad_-host!:4222"), `config: line 2: broker.nats_listen: invalid host "bad_-host!" in address "bad_-host!:4222"`},
		{"max payload zero", withBase("broker:", "  max_payload: 0"), `config: line 2: broker.max_payload: 0B is out of range (want 1B to 64MiB)`},
		{"max payload big", withBase("broker:", "  max_payload: 65MB"), `config: line 2: broker.max_payload: 65MiB is out of range (want 1B to 64MiB)`},
		{"max payload fraction", withBase("broker:", "  max_payload: 1.5MB"), `config: line 2: broker.max_payload: invalid byte size "1.5MB" (want an integer with an optional unit B, KB, KiB, MB, MiB, GB or GiB; KB = KiB = 1024 bytes)`},
		{"max payload unit", withBase("broker:", "  max_payload: 10XB"), `config: line 2: broker.max_payload: invalid byte size "10XB" (want an integer with an optional unit B, KB, KiB, MB, MiB, GB or GiB; KB = KiB = 1024 bytes)`},
		{"max payload list", withBase("broker:", "  max_payload: [1]"), `config: line 2: broker.max_payload: want a byte size such as 1MiB, got a list`},
		{"max buffered small", withBase("broker:", "  max_buffered: 512KiB"), `config: line 2: broker.max_buffered: 512KiB is out of range (want 1MiB to 1GiB)`},
		{"max pending zero", withBase("gateway:", "  max_pending_messages: 0"), `config: line 2: gateway.max_pending_messages: 0 is out of range (want 1 to 1000000)`},
		{"max subscriptions negative", withBase("gateway:", "  max_subscriptions: -1"), `config: line 2: gateway.max_subscriptions: -1 is out of range (want 0 or more, or infinity; 0 and infinity mean no limit)`},
		{"max subscriptions word", withBase("gateway:", "  max_subscriptions: lots"), `config: line 2: gateway.max_subscriptions: want an integer or infinity, got "lots"`},
		{"listener max subscriptions negative", withListener("  - {name: l, type: tcp, bind: ':1', handler: h, max_subscriptions: -2}"), `config: line 6: listeners[0].max_subscriptions: -2 is out of range (want 0 or more, or infinity; 0 and infinity mean no limit)`},
		{"max queued bytes small", withBase("gateway:", "  max_queued_bytes: 1KiB"), `config: line 2: gateway.max_queued_bytes: 1KiB is out of range (want 64KiB to 1GiB)`},
		{"max queued bytes large", withBase("gateway:", "  max_queued_bytes: 2GiB"), `config: line 2: gateway.max_queued_bytes: 2GiB is out of range (want 64KiB to 1GiB)`},
		{"registry backend", withBase("registry:", "  backend: raft"), `config: line 2: registry.backend: unknown backend "raft" (want auto, local, kv or notices)`},
		{"registry policy", withBase("registry:", "  on_unavailable: retry"), `config: line 2: registry.on_unavailable: unknown policy "retry" (want reject or local)`},
		{"registry claim timeout", withBase("registry:", "  claim_timeout: 0s"), `config: line 2: registry.claim_timeout: 0s is out of range (want 1ms to 1m)`},
		{"registry kv alone", withBase("registry:", "  backend: kv"), `config: line 2: registry.backend: kv needs broker.cluster: its bucket is replicated by the cluster's JetStream (a leaf node's is its own; use notices there)`},
		{"max delivery wait zero", withBase("gateway:", "  max_delivery_wait: 0"), `config: line 2: gateway.max_delivery_wait: 0s is out of range (want 1ms to 1m)`},
		{"max delivery wait long", withBase("gateway:", "  max_delivery_wait: 2m"), `config: line 2: gateway.max_delivery_wait: 2m0s is out of range (want 1ms to 1m)`},
		{"nats clashes mqtt", withBase("broker:", "  nats_listen: 0.0.0.0:4222", "  mqtt_listen: 127.0.0.1:4222", "  allow_anonymous: true"), `config: line 3: broker.mqtt_listen: address "127.0.0.1:4222" clashes with broker.nats_listen ("0.0.0.0:4222")`},

		// adapter
		{"adapter bind empty", withBase("adapter:", "  bind: ''"), `config: line 2: adapter.bind: must not be empty (want host:port such as 127.0.0.1:9100)`},
		{"adapter bind no port", withBase("adapter:", "  bind: localhost"), `config: line 2: adapter.bind: invalid address "localhost" (want host:port such as 0.0.0.0:7993 or [::1]:7993)`},
		{"adapter tls empty", withBase("adapter:", "  tls: {}"), `config: line 2: adapter.tls: cert_file and key_file are required`},
		{"adapter tls no key", withBase("adapter:", "  tls:", "    cert_file: testdata/certs/server.pem"), `config: line 2: adapter.tls.key_file: missing (cert_file and key_file must be set together)`},
		{"adapter tls no cert", withBase("adapter:", "  tls:", "    key_file: testdata/certs/server.key"), `config: line 2: adapter.tls.cert_file: missing (cert_file and key_file must be set together)`},
		{"adapter tls missing file", withBase("adapter:", "  tls:", "    cert_file: testdata/certs/server.pem", "    key_file: testdata/certs/nope.key"), `config: line 4: adapter.tls.key_file: file "testdata/certs/nope.key" does not exist`},
		{"adapter tls directory", withBase("adapter:", "  tls:", "    cert_file: testdata/certs", "    key_file: testdata/certs/server.key"), `config: line 3: adapter.tls.cert_file: "testdata/certs" is a directory, want a file`},
		{"adapter verify without ca", withBase("adapter:", "  tls:", "    cert_file: testdata/certs/server.pem", "    key_file: testdata/certs/server.key", "    verify_client: true"), `config: line 2: adapter.tls.ca_file: missing; verify_client needs a ca_file to verify client certificates against`},
		{"adapter verify not bool", withBase("adapter:", "  tls:", "    verify_client: yes"), "config: line 2: adapter.tls: cert_file and key_file are required\n" +
			`config: line 3: adapter.tls.verify_client: want true or false, got "yes"`},
		{"adapter tls unknown key", withBase("adapter:", "  tls:", "    certfile: x"), `config: line 3: adapter.tls: unknown key "certfile"; did you mean "cert_file"?`},
		{"adapter clashes nats", withBase("broker:", "  nats_listen: 127.0.0.1:9100"), `config: line 2: broker.nats_listen: address "127.0.0.1:9100" clashes with adapter.bind ("127.0.0.1:9100")`},

		// admin
		{"admin bind port only", withBase("admin:", "  bind: 18083"), `config: line 2: admin.bind: address "18083" is only a port; want host:port such as "0.0.0.0:18083"`},
		{"admin bind no port", withBase("admin:", "  bind: localhost"), `config: line 2: admin.bind: invalid address "localhost" (want host:port such as 0.0.0.0:7993 or [::1]:7993)`},
		{"admin bind port range", withBase("admin:", "  bind: 127.0.0.1:65536"), `config: line 2: admin.bind: invalid port "65536" in address "127.0.0.1:65536" (want 0 to 65535)`},
		{"admin bind bad host", withBase("admin:", "  bind: -admin:18083"), `config: line 2: admin.bind: invalid host "-admin" in address "-admin:18083"`},
		{"admin bind list", withBase("admin:", "  bind: [127.0.0.1:1]"), `config: line 2: admin.bind: want a string, got a list`},
		{"admin bind any without keys", withBase("admin:", "  bind: 0.0.0.0:18083"), `config: line 2: admin.bind: ` + notLoopback("0.0.0.0:18083")},
		{"admin bind empty host without keys", withBase("admin:", "  bind: ':18083'"), `config: line 2: admin.bind: ` + notLoopback(":18083")},
		{"admin bind ipv6 any without keys", withBase("admin:", "  bind: '[::]:18083'"), `config: line 2: admin.bind: ` + notLoopback("[::]:18083")},
		{"admin bind lan without keys", withBase("admin:", "  bind: 192.168.1.10:18083"), `config: line 2: admin.bind: ` + notLoopback("192.168.1.10:18083")},
		{"admin bind name without keys", withBase("admin:", "  bind: gw.example.com:18083"), `config: line 2: admin.bind: ` + notLoopback("gw.example.com:18083")},
		{"admin bind not quite localhost", withBase("admin:", "  bind: localhost.example.com:18083"), `config: line 2: admin.bind: ` + notLoopback("localhost.example.com:18083")},
		{"admin bind empty keys", withBase("admin:", "  bind: 0.0.0.0:18083", "  api_keys: []"), `config: line 2: admin.bind: ` + notLoopback("0.0.0.0:18083")},
		{"admin bind keys misspelt", withBase("admin:", "  bind: 0.0.0.0:18083", "  api_key: [{key: ops, secret: s}]"), "config: line 2: admin.bind: " + notLoopback("0.0.0.0:18083") + "\n" +
			`config: line 3: admin: unknown key "api_key"; did you mean "api_keys"?`},
		{"admin clashes adapter", withBase("admin:", "  bind: 127.0.0.1:9100"), `config: line 2: admin.bind: address "127.0.0.1:9100" clashes with adapter.bind ("127.0.0.1:9100")`},
		{"admin clashes nats", withBase("admin:", "  bind: '[::1]:4222'", "broker:", "  nats_listen: ':4222'", "  allow_anonymous: true"), `config: line 4: broker.nats_listen: address ":4222" clashes with admin.bind ("[::1]:4222")`},
		{"admin clash and open", withBase("admin:", "  bind: 0.0.0.0:9100"), "config: line 2: admin.bind: address \"0.0.0.0:9100\" clashes with adapter.bind (\"127.0.0.1:9100\")\n" +
			"config: line 2: admin.bind: " + notLoopback("0.0.0.0:9100")},
		{"listener clashes admin", withListener("  - {name: a, type: tcp, bind: '0.0.0.0:18083', handler: h}"), `config: line 6: listeners[0].bind: address "0.0.0.0:18083" clashes with admin.bind ("127.0.0.1:18083")`},
		{"admin tls empty", withBase("admin:", "  tls: {}"), `config: line 2: admin.tls: cert_file and key_file are required`},
		{"admin tls no key", withBase("admin:", "  tls:", "    cert_file: testdata/certs/server.pem"), `config: line 2: admin.tls.key_file: missing (cert_file and key_file must be set together)`},
		{"admin tls missing file", withBase("admin:", "  tls:", "    cert_file: testdata/certs/nope.pem", "    key_file: testdata/certs/server.key"), `config: line 3: admin.tls.cert_file: file "testdata/certs/nope.pem" does not exist`},
		{"admin tls wrong key", withBase("admin:", "  tls:", "    cert_file: testdata/certs/server.pem", "    key_file: testdata/certs/client.key"), `config: line 2: admin.tls: cert_file and key_file: tls: private key does not match public key`},
		{"admin tls unknown key", withBase("admin:", "  tls: {cert: x}"), "config: line 2: admin.tls: unknown key \"cert\"\nconfig: line 2: admin.tls: cert_file and key_file are required"},
		{"admin api_keys mapping", withBase("admin:", "  api_keys: {ops: s}"), `config: line 2: admin.api_keys: want a list, got a mapping`},
		{"admin api_keys scalar item", withBase("admin:", "  api_keys:", "    - ops"), `config: line 3: admin.api_keys[0]: want a mapping, got "ops"`},
		{"admin api_keys unknown key", withBase("admin:", "  api_keys:", "    - {key: ops, secrets: s}"), `config: line 3: admin.api_keys[0]: unknown key "secrets"; did you mean "secret"?`},
		{"admin key empty", withBase("admin:", "  api_keys:", "    - key: ''", "      secret: s"), `config: line 3: admin.api_keys[0].key: must not be empty`},
		{"admin key missing", withBase("admin:", "  api_keys:", "    - secret: s"), `config: line 3: admin.api_keys[0].key: must not be empty`},
		{"admin key colon", withBase("admin:", "  api_keys:", "    - {key: 'ops:1', secret: s}"), `config: line 3: admin.api_keys[0].key: key "ops:1" must not contain ':' (HTTP Basic authentication separates the key from the secret with it)`},
		{"admin key duplicate", withBase("admin:", "  api_keys:", "    - {key: ops, secret: a}", "    - {key: ci, secret: b}", "    - {key: ops, secret: c}"), `config: line 5: admin.api_keys[2].key: duplicate key "ops" (also used by admin.api_keys[0])`},
		{"admin secret empty", withBase("admin:", "  api_keys:", "    - key: ops", "      secret: ''"), `config: line 4: admin.api_keys[0].secret: must not be empty`},
		{"admin secret missing", withBase("admin:", "  api_keys:", "    - key: ops"), `config: line 3: admin.api_keys[0].secret: must not be empty`},
		{"admin secret null", withBase("admin:", "  api_keys:", "    - key: ops", "      secret:"), `config: line 4: admin.api_keys[0].secret: must not be empty`},
		{"admin secret short digest", withBase("admin:", "  api_keys:", "    - {key: ops, secret: 'sha256:abc'}"), `config: line 3: admin.api_keys[0].secret: ` + badDigest},
		{"admin secret 63 digits", withBase("admin:", "  api_keys:", "    - {key: ops, secret: 'SHA256:"+strings.Repeat("a", 63)+"'}"), `config: line 3: admin.api_keys[0].secret: ` + badDigest},
		{"admin secret 65 digits", withBase("admin:", "  api_keys:", "    - {key: ops, secret: 'sha256:"+strings.Repeat("a", 65)+"'}"), `config: line 3: admin.api_keys[0].secret: ` + badDigest},
		{"admin secret not hex", withBase("admin:", "  api_keys:", "    - {key: ops, secret: 'sha256:"+strings.Repeat("g", 64)+"'}"), `config: line 3: admin.api_keys[0].secret: ` + badDigest},
		{"admin secret list", withBase("admin:", "  api_keys:", "    - {key: ops, secret: [s]}"), `config: line 3: admin.api_keys[0].secret: want a string, got a list`},
		{"admin every problem", withBase("admin:", "  bind: 0.0.0.0:18083", "  api_keys:", "    - {key: '', secret: 'sha256:0'}", "    - {key: 'a:b', secret: ''}"), strings.Join([]string{
			`config: line 4: admin.api_keys[0].key: must not be empty`,
			`config: line 4: admin.api_keys[0].secret: ` + badDigest,
			`config: line 5: admin.api_keys[1].key: key "a:b" must not contain ':' (HTTP Basic authentication separates the key from the secret with it)`,
			`config: line 5: admin.api_keys[1].secret: must not be empty`,
		}, "\n")},

		// gateway
		{"idle negative", withBase("gateway:", "  idle_timeout: -5s"), `config: line 2: gateway.idle_timeout: duration "-5s" must not be negative`},
		{"idle negative int", withBase("gateway:", "  idle_timeout: -5"), `config: line 2: gateway.idle_timeout: duration "-5" must not be negative`},
		{"idle bad", withBase("gateway:", "  idle_timeout: 5 minutes"), `config: line 2: gateway.idle_timeout: invalid duration "5 minutes" (want e.g. 30s, 1m30s, 500ms, or an integer number of seconds)`},
		{"idle days", withBase("gateway:", "  idle_timeout: 7d"), `config: line 2: gateway.idle_timeout: invalid duration "7d" (want e.g. 30s, 1m30s, 500ms, or an integer number of seconds)`},
		{"idle mapping", withBase("gateway:", "  idle_timeout: {s: 1}"), `config: line 2: gateway.idle_timeout: want a duration such as 30s, got a mapping`},
		{"mountpoint placeholder", withBase("gateway:", "  mountpoint: ${peerhost}/"), `config: line 2: gateway.mountpoint: unknown placeholder "${peerhost}" in mountpoint (want ${clientid} or ${username})`},
		{"mountpoint unterminated", withBase("gateway:", "  mountpoint: a/${clientid"), `config: line 2: gateway.mountpoint: mountpoint "a/${clientid" has an unterminated ${ placeholder`},
		{"mountpoint wildcard", withBase("gateway:", "  mountpoint: a/+/"), `config: line 2: gateway.mountpoint: mountpoint "a/+/" must not contain the MQTT wildcards + or #`},

		// authentication
		{"authn user id type", withBase("authentication:", "  user_id_type: email", "  users: {a: b}"), `config: line 2: authentication.user_id_type: unknown user id type "email" (want username or clientid)`},
		{"authn no users", withBase("authentication:", "  user_id_type: clientid"), `config: line 1: authentication.users: at least one user is required (remove the authentication block to allow every client)`},
		{"authn users list", withBase("authentication:", "  users: [alice]"), `config: line 2: authentication.users: want a mapping, got a list`},
		{"authn empty password", withBase("authentication:", "  users:", "    alice:", "    bob: x"), `config: line 3: authentication.users.alice: password must not be empty`},
		{"authn bad digest", withBase("authentication:", "  users:", "    alice: ok", "    bob: sha256:abc"), `config: line 4: authentication.users.bob: a sha256: password must be followed by 64 hex digits (the SHA-256 digest of the password)`},
		{"authn odd user id", withBase("authentication:", "  users:", "    alice@example.com: ''"), `config: line 3: authentication.users["alice@example.com"]: password must not be empty`},
		{"authn duplicate user", withBase("authentication:", "  users:", "    alice: a", "    alice: b"), `config: line 4: authentication.users: duplicate key "alice" (first at line 3)`},

		// handlers
		{"no handlers", doc("listeners:", "  - {name: l, type: tcp, bind: 0.0.0.0:1, handler: h}"), `config: line 1: handlers: at least one handler is required`},
		{"handlers empty", doc("node: {}", "handlers: {}", "listeners: []"), "config: line 2: handlers: at least one handler is required\nconfig: line 3: listeners: at least one listener is required"},
		{"handler empty", withHandler("    {}"), `config: line 2: handlers.h: handler needs grpc or wasm`},
		{"handler null", withHandler(), `config: line 2: handlers.h: handler needs grpc or wasm`},
		{"handler name quoted", doc("handlers:", "  my h: {grpc: {address: 'http://a:1'}}", "listeners: [{name: l, type: tcp, bind: ':1', handler: my h}]"), `config: line 2: handlers["my h"]: invalid handler name "my h" (use letters, digits, '_', '.' and '-')`},
		{"handler dotted", doc("handlers:", "  my.h: {}", "listeners: [{name: l, type: tcp, bind: ':1', handler: my.h}]"), `config: line 2: handlers["my.h"]: handler needs grpc or wasm`},
		{"handler unknown key", withHandler("    grcp: {}"), `config: line 3: handlers.h: unknown key "grcp"; did you mean "grpc"?`},
		{"grpc missing address", withHandler("    grpc:", "      timeout: 1s"), `config: line 3: handlers.h.grpc.address: missing address (want a URL such as http://127.0.0.1:9001)`},
		{"grpc null", withHandler("    grpc:"), `config: line 2: handlers.h: handler needs grpc or wasm`},
		{"grpc no scheme", withHandler("    grpc:", "      address: 127.0.0.1:9001"), `config: line 4: handlers.h.grpc.address: address "127.0.0.1:9001" has no scheme; write "http://127.0.0.1:9001" (or https:// for TLS)`},
		{"grpc no scheme host", withHandler("    grpc:", "      address: localhost:9001"), `config: line 4: handlers.h.grpc.address: address "localhost:9001" has no scheme; write "http://localhost:9001" (or https:// for TLS)`},
		{"grpc scheme", withHandler("    grpc:", "      address: grpc://127.0.0.1:9001"), `config: line 4: handlers.h.grpc.address: unsupported scheme "grpc" in "grpc://127.0.0.1:9001" (want http:// or https://)`},
		{"grpc port zero", withHandler("    grpc:", "      address: http://handler.local:0"), `config: line 4: handlers.h.grpc.address: invalid port "0" in address "http://handler.local:0" (want 1 to 65535)`},
		{"grpc bad host", withHandler("    grpc:", "      address: http://-handler:9001"), `config: line 4: handlers.h.grpc.address: invalid host "-handler" in address "http://-handler:9001"`},
		{"grpc path", withHandler("    grpc:", "      address: http://handler.local:9001/exproto"), `config: line 4: handlers.h.grpc.address: address "http://handler.local:9001/exproto" must be scheme://host:port without a path or query`},
		{"grpc no host", withHandler("    grpc:", "      address: http://:9001"), `config: line 4: handlers.h.grpc.address: address "http://:9001" has no host`},
		{"grpc bad url", withHandler("    grpc:", "      address: http://a b:1"), `config: line 4: handlers.h.grpc.address: invalid address "http://a b:1": invalid character " " in host name`},
		{"grpc service", withHandler("    grpc:", "      address: http://a:1", "      service_name: emqx.exproto.v1.ConnectionHandler"), `config: line 5: handlers.h.grpc.service_name: unknown service "emqx.exproto.v1.ConnectionHandler" (want ConnectionUnaryHandler, ConnectionHandler or protogate.v1.StreamHandler)`},
		{"grpc timeout zero", withHandler("    grpc:", "      address: http://a:1", "      timeout: 0s"), `config: line 5: handlers.h.grpc.timeout: must be greater than 0`},
		{"grpc tls with http", withHandler("    grpc:", "      address: http://a:1", "      tls: {}"), `config: line 5: handlers.h.grpc.tls: tls needs an https:// address`},
		{"grpc tls cert alone", withHandler("    grpc:", "      address: https://a:1", "      tls:", "        cert_file: testdata/certs/client.pem"), `config: line 5: handlers.h.grpc.tls: cert_file and key_file must be set together`},
		{"grpc tls ca missing", withHandler("    grpc:", "      address: https://a:1", "      tls:", "        ca_file: /nonexistent/ca.pem"), `config: line 6: handlers.h.grpc.tls.ca_file: file "/nonexistent/ca.pem" does not exist`},
		{"grpc tls skip not bool", withHandler("    grpc:", "      address: https://a:1", "      tls:", "        insecure_skip_verify: 1"), `config: line 6: handlers.h.grpc.tls.insecure_skip_verify: want true or false, got "1"`},

		// wasm
		{"wasm no path", withHandler("    wasm: {instances: 1}"), `config: line 3: handlers.h.wasm.path: missing module path (want a file path or builtin:<name>)`},
		{"wasm missing file", withHandler("    wasm:", "      path: ./nope.wasm"), `config: line 4: handlers.h.wasm.path: file "./nope.wasm" does not exist`},
		{"wasm builtin", withHandler("    wasm:", "      path: 'builtin:'"), `config: line 4: handlers.h.wasm.path: invalid builtin module "builtin:" (want builtin:<name>)`},
		{"wasm instances", withHandler("    wasm:", "      path: builtin:echo", "      instances: -1"), `config: line 5: handlers.h.wasm.instances: -1 is out of range (want 0 to 1024; 0 means GOMAXPROCS)`},
		{"wasm instances type", withHandler("    wasm:", "      path: builtin:echo", "      instances: four"), `config: line 5: handlers.h.wasm.instances: want an integer, got "four"`},
		{"wasm instances float", withHandler("    wasm:", "      path: builtin:echo", "      instances: 1.5"), `config: line 5: handlers.h.wasm.instances: want an integer, got "1.5"`},
		{"wasm memory", withHandler("    wasm:", "      path: builtin:echo", "      memory_limit: 1KB"), `config: line 5: handlers.h.wasm.memory_limit: 1KiB is out of range (want 64KiB to 4GiB)`},
		{"wasm call timeout", withHandler("    wasm:", "      path: builtin:echo", "      call_timeout: 0"), `config: line 5: handlers.h.wasm.call_timeout: must be greater than 0`},
		{"wasm breaker cooldown short", withHandler("    wasm:", "      path: builtin:echo", "      breaker_cooldown: 10ms"), `config: line 5: handlers.h.wasm.breaker_cooldown: 10ms is out of range (want 100ms to 24h)`},
		{"wasm breaker cooldown long", withHandler("    wasm:", "      path: builtin:echo", "      breaker_cooldown: 25h", "      breaker_max_cooldown: 25h"), `config: line 5: handlers.h.wasm.breaker_cooldown: 25h0m0s is out of range (want 100ms to 24h)
config: line 6: handlers.h.wasm.breaker_max_cooldown: 25h0m0s is out of range (want breaker_cooldown to 24h)`},
		{"wasm breaker max below cooldown", withHandler("    wasm:", "      path: builtin:echo", "      breaker_cooldown: 5m", "      breaker_max_cooldown: 1m"), `config: line 6: handlers.h.wasm.breaker_max_cooldown: 1m0s is shorter than breaker_cooldown (5m0s)`},
		{"wasm max timers zero", withHandler("    wasm:", "      path: builtin:echo", "      max_timers: 0"), `config: line 5: handlers.h.wasm.max_timers: 0 is out of range (want 1 to 65536)`},
		{"wasm max timers big", withHandler("    wasm:", "      path: builtin:echo", "      max_timers: 65537"), `config: line 5: handlers.h.wasm.max_timers: 65537 is out of range (want 1 to 65536)`},
		{"wasm breaker max below default cooldown", withHandler("    wasm:", "      path: builtin:echo", "      breaker_max_cooldown: 10s"), `config: line 5: handlers.h.wasm.breaker_max_cooldown: 10s is shorter than breaker_cooldown (30s)`},

		// listeners
		{"no listeners", doc("handlers:", "  h: {grpc: {address: 'http://a:1'}}"), `config: line 1: listeners: at least one listener is required`},
		{"listeners mapping", withListener("  tcp: {}"), `config: line 6: listeners: want a list, got a mapping`},
		{"listener unknown key", withListener("  - name: l", "    type: tcp", "    bindd: 0.0.0.0:1", "    handler: h"), `config: line 8: listeners[0]: unknown key "bindd"; did you mean "bind"?`},
		{"listener type typo", withListener("  - name: l", "    type: tpc", "    bind: 0.0.0.0:1", "    handler: h"), `config: line 7: listeners[0].type: unknown listener type "tpc" (want tcp, ssl, udp or dtls)`},
		{"listener type case", withListener("  - name: l", "    type: UDP", "    bind: 0.0.0.0:1", "    handler: h"), `config: line 7: listeners[0].type: unknown listener type "UDP" (want tcp, ssl, udp or dtls)`},
		{"listener type missing", withListener("  - name: l", "    bind: 0.0.0.0:1", "    handler: h"), `config: line 6: listeners[0].type: missing listener type (want tcp, ssl, udp or dtls)`},
		{"listener name missing", withListener("  - type: tcp", "    bind: 0.0.0.0:1", "    handler: h"), `config: line 6: listeners[0].name: missing listener name`},
		{"listener name chars", withListener("  - {name: 'a/b', type: tcp, bind: '0.0.0.0:1', handler: h}"), `config: line 6: listeners[0].name: invalid name "a/b" (use letters, digits, '_', '.' and '-')`},
		{"listener name duplicate", withListener("  - {name: a, type: tcp, bind: '0.0.0.0:1', handler: h}", "  - {name: a, type: tcp, bind: '0.0.0.0:2', handler: h}"), `config: line 7: listeners[1].name: duplicate listener name "a" (also used by listeners[0])`},
		{"listener bind missing", withListener("  - name: l", "    type: tcp", "    handler: h"), `config: line 6: listeners[0].bind: missing bind address (want host:port such as 0.0.0.0:7993)`},
		{"listener bind port only", withListener("  - name: l", "    type: tcp", "    bind: 7993", "    handler: h"), `config: line 8: listeners[0].bind: address "7993" is only a port; want host:port such as "0.0.0.0:7993"`},
		{"listener bind ipv6 unbracketed", withListener("  - {name: l, type: tcp, bind: '::1:7993', handler: h}"), `config: line 6: listeners[0].bind: invalid address "::1:7993" (want host:port such as 0.0.0.0:7993 or [::1]:7993)`},
		{"listener bind duplicate", withListener("  - {name: a, type: tcp, bind: '127.0.0.1:7993', handler: h}", "  - {name: b, type: tcp, bind: '127.0.0.1:7993', handler: h}"), `config: line 7: listeners[1].bind: address "127.0.0.1:7993" clashes with listeners[0].bind ("127.0.0.1:7993")`},
		{"listener bind wildcard clash", withListener("  - {name: a, type: tcp, bind: '127.0.0.1:7993', handler: h}", "  - {name: b, type: tcp, bind: ':7993', handler: h}"), `config: line 7: listeners[1].bind: address ":7993" clashes with listeners[0].bind ("127.0.0.1:7993")`},
		{"listener bind wildcard first", withListener("  - {name: a, type: tcp, bind: '[::]:7993', handler: h}", "  - {name: b, type: tcp, bind: '10.0.0.1:7993', handler: h}"), `config: line 7: listeners[1].bind: address "10.0.0.1:7993" clashes with listeners[0].bind ("[::]:7993")`},
		{"listener bind adapter", withListener("  - {name: a, type: tcp, bind: '0.0.0.0:9100', handler: h}"), `config: line 6: listeners[0].bind: address "0.0.0.0:9100" clashes with adapter.bind ("127.0.0.1:9100")`},
		{"listener handler missing", withListener("  - {name: a, type: tcp, bind: ':1'}"), `config: line 6: listeners[0].handler: missing handler (want one of: h)`},
		{"listener handler unknown", withListener("  - {name: a, type: tcp, bind: ':1', handler: default}"), `config: line 6: listeners[0].handler: unknown handler "default" (want one of: h)`},
		{"listener ssl without tls", withListener("  - {name: a, type: ssl, bind: ':1', handler: h}"), `config: line 6: listeners[0].tls: an ssl listener needs tls with cert_file and key_file`},
		{"listener ssl empty tls", withListener("  - name: a", "    type: ssl", "    bind: ':1'", "    handler: h", "    tls: {ca_file: testdata/certs/ca.pem}"), `config: line 10: listeners[0].tls: cert_file and key_file are required`},
		{"listener ssl missing cert", withListener("  - name: a", "    type: ssl", "    bind: ':1'", "    handler: h", "    tls:", "      cert_file: server.pem", "      key_file: testdata/certs/server.key"), `config: line 11: listeners[0].tls.cert_file: file "server.pem" does not exist`},
		{"listener tcp with tls", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    tls: {cert_file: x, key_file: y}"), `config: line 10: listeners[0].tls: tls is not allowed for a tcp listener (use type: ssl)`},
		{"listener idle", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, idle_timeout: soon}"), `config: line 6: listeners[0].idle_timeout: invalid duration "soon" (want e.g. 30s, 1m30s, 500ms, or an integer number of seconds)`},
		{"listener mountpoint", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, mountpoint: '${user}/'}"), `config: line 6: listeners[0].mountpoint: unknown placeholder "${user}" in mountpoint (want ${clientid} or ${username})`},
		{"listener enable_authn", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, enable_authn: 'true'}"), `config: line 6: listeners[0].enable_authn: want true or false, got "true"`},
		{"listener item scalar", withListener("  - tcp-default"), `config: line 6: listeners[0]: want a mapping, got "tcp-default"`},
		{"second listener line", withListener("  - {name: a, type: tcp, bind: ':1', handler: h}", "", "  - name: b", "    type: tcp", "    bind: ':2'", "    handler: nope"), `config: line 11: listeners[1].handler: unknown handler "nope" (want one of: h)`},

		// udp and dtls listeners
		{"udp with tls", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    tls: {cert_file: x, key_file: y}"), `config: line 10: listeners[0].tls: tls is not allowed for a udp listener (use type: dtls)`},
		{"dtls without tls or psk", withListener("  - {name: a, type: dtls, bind: ':1', handler: h}"), `config: line 6: listeners[0].tls: a dtls listener needs tls with cert_file and key_file, or psk`},
		{"dtls null tls and psk", withListener("  - {name: a, type: dtls, bind: ':1', handler: h, tls: ~, psk: ~}"), `config: line 6: listeners[0].tls: a dtls listener needs tls with cert_file and key_file, or psk`},
		{"dtls incomplete tls with psk", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk: {identities: {d: '00'}}", "    tls: {ca_file: testdata/certs/ca.pem}"), `config: line 11: listeners[0].tls: cert_file and key_file are required`},
		{"dtls tls missing file", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    tls: {cert_file: nope.pem, key_file: testdata/certs/server.key}"), `config: line 10: listeners[0].tls.cert_file: file "nope.pem" does not exist`},
		{"dtls verify without ca", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    tls:", "      cert_file: testdata/certs/server.pem", "      key_file: testdata/certs/server.key", "      verify_client: true"), `config: line 10: listeners[0].tls.ca_file: missing; verify_client needs a ca_file to verify client certificates against`},
		{"udp binds clash", withListener("  - {name: a, type: udp, bind: '127.0.0.1:7993', handler: h}", "  - {name: b, type: dtls, bind: ':7993', handler: h, psk: {identities: {d: '00'}}}"), `config: line 7: listeners[1].bind: address ":7993" clashes with listeners[0].bind ("127.0.0.1:7993")`},
		{"udp bind invalid", withListener("  - {name: a, type: udp, bind: '7993', handler: h}"), `config: line 6: listeners[0].bind: address "7993" is only a port; want host:port such as "0.0.0.0:7993"`},
		{"tcp binds still clash", withListener("  - {name: a, type: udp, bind: ':7993', handler: h}", "  - {name: b, type: tcp, bind: ':7993', handler: h}", "  - {name: c, type: ssl, bind: '127.0.0.1:7993', handler: h, tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}}"), `config: line 8: listeners[2].bind: address "127.0.0.1:7993" clashes with listeners[1].bind (":7993")`},

		// health_check
		{"health_check on tcp", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    health_check: {request: ping, reply: pong}"), `config: line 10: listeners[0].health_check: health_check applies to udp and dtls listeners, not tcp`},
		{"health_check on ssl", withListener("  - {name: a, type: ssl, bind: ':1', handler: h, health_check: {request: ping, reply: pong}, tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}}"), `config: line 6: listeners[0].health_check: health_check applies to udp and dtls listeners, not ssl`},
		{"health_check empty request", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    health_check:", "      request: ''", "      reply: pong"), `config: line 11: listeners[0].health_check.request: must not be empty`},
		{"health_check missing reply", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk: {identities: {d: '00'}}", "    health_check: {request: ping}"), `config: line 11: listeners[0].health_check.reply: must not be empty`},
		{"health_check empty", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    health_check: {}"), "config: line 10: listeners[0].health_check.request: must not be empty\nconfig: line 10: listeners[0].health_check.reply: must not be empty"},
		{"health_check scalar", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    health_check: ping"), `config: line 10: listeners[0].health_check: want a mapping, got "ping"`},
		{"health_check unknown key", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    health_check:", "      request: ping", "      replay: pong"), `config: line 12: listeners[0].health_check: unknown key "replay"; did you mean "reply"?`},
		{"health_check list value", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    health_check: {request: [p], reply: pong}"), `config: line 10: listeners[0].health_check.request: want a string, got a list`},

		// psk
		{"psk on udp", withListener("  - {name: a, type: udp, bind: ':1', handler: h, psk: {identities: {d: '00'}}}"), `config: line 6: listeners[0].psk: psk applies to dtls listeners, not udp`},
		{"psk on ssl", withListener("  - name: a", "    type: ssl", "    bind: ':1'", "    handler: h", "    tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}", "    psk:", "      identities_file: testdata/psk.txt"), `config: line 11: listeners[0].psk: psk applies to dtls listeners, not ssl`},
		{"psk on tcp", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, psk: {identities: {d: '00'}}}"), `config: line 6: listeners[0].psk: psk applies to dtls listeners, not tcp`},
		{"psk empty", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk: {}"), `config: line 10: listeners[0].psk: psk needs identities_file or identities`},
		{"psk empty identities", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities: {}", "      identity_hint: gw"), `config: line 10: listeners[0].psk: psk needs identities_file or identities`},
		{"psk file missing", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities_file: testdata/nope.txt"), `config: line 11: listeners[0].psk.identities_file: file "testdata/nope.txt" does not exist`},
		{"psk file directory", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities_file: testdata"), `config: line 11: listeners[0].psk.identities_file: "testdata" is a directory, want a file`},
		{"psk key not hex", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        device-1: 0x1234"), `config: line 12: listeners[0].psk.identities.device-1: key must be hex digits (want 2 to 128 hex digits: 1 to 64 bytes)`},
		{"psk key odd", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        device-1: '00'", "        device-2: abc"), `config: line 13: listeners[0].psk.identities.device-2: key has an odd number of hex digits (want 2 to 128 hex digits: 1 to 64 bytes)`},
		{"psk key too long", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        device-1: "+strings.Repeat("ab", 65)), `config: line 12: listeners[0].psk.identities.device-1: key is 65 bytes long (want 1 to 64 bytes: 2 to 128 hex digits)`},
		{"psk key empty", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        device-1: ''"), `config: line 12: listeners[0].psk.identities.device-1: key must not be empty (want 2 to 128 hex digits: 1 to 64 bytes)`},
		{"psk key null", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        device-1:"), `config: line 12: listeners[0].psk.identities.device-1: key must not be empty (want 2 to 128 hex digits: 1 to 64 bytes)`},
		{"psk key list", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        device-1: [1]"), `config: line 12: listeners[0].psk.identities.device-1: want a string, got a list`},
		{"psk identity empty", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        '': '00'"), `config: line 12: listeners[0].psk.identities[""]: identity must not be empty`},
		{"psk identity quoted", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        dev 1: zz"), `config: line 12: listeners[0].psk.identities["dev 1"]: key must be hex digits (want 2 to 128 hex digits: 1 to 64 bytes)`},
		{"psk identities list", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities: [device-1]"), `config: line 11: listeners[0].psk.identities: want a mapping, got a list`},
		{"psk identity duplicate", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identities:", "        d: '00'", "        d: '01'"), `config: line 13: listeners[0].psk.identities: duplicate key "d" (first at line 12)`},
		{"psk unknown key", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk:", "      identites: {d: '00'}"), `config: line 11: listeners[0].psk: unknown key "identites"; did you mean "identities"?`},

		// framing
		{"framing on udp", withListener("  - {name: a, type: udp, bind: ':1', handler: h, framing: {type: line}}"), `config: line 6: listeners[0].framing: framing applies to tcp and ssl listeners; a udp datagram is already one frame`},
		{"framing on dtls", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk: {identities_file: testdata/psk.txt}", "    framing: {}"), `config: line 11: listeners[0].framing: framing applies to tcp and ssl listeners; a dtls datagram is already one frame`},
		{"framing missing type", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing: {bytes: 2}"), `config: line 10: listeners[0].framing.type: missing framing type (want line or length)`},
		{"framing unknown type", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing:", "      type: lines"), `config: line 11: listeners[0].framing.type: unknown framing type "lines" (want line or length)`},
		{"framing bytes 3", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing:", "      type: length", "      bytes: 3"), `config: line 12: listeners[0].framing.bytes: 3 is not a valid length prefix size (want 2 or 4)`},
		{"framing bytes 0", withListener("  - name: a", "    type: ssl", "    bind: ':1'", "    handler: h", "    tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}", "    framing:", "      type: length", "      bytes: 0"), `config: line 13: listeners[0].framing.bytes: 0 is not a valid length prefix size (want 2 or 4)`},
		{"framing bytes string", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing:", "      type: length", "      bytes: two"), `config: line 12: listeners[0].framing.bytes: want an integer, got "two"`},
		{"framing endian", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing:", "      type: length", "      endian: network"), `config: line 12: listeners[0].framing.endian: unknown byte order "network" (want big or little)`},
		{"framing line bytes", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing:", "      type: line", "      bytes: 2"), `config: line 12: listeners[0].framing.bytes: bytes applies only to framing type length`},
		{"framing line endian", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing:", "      type: line", "      endian: big"), `config: line 12: listeners[0].framing.endian: endian applies only to framing type length`},
		{"framing scalar", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing: line"), `config: line 10: listeners[0].framing: want a mapping, got "line"`},
		{"framing unknown key", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    framing: {type: length, endianness: big}"), `config: line 10: listeners[0].framing: unknown key "endianness"`},

		// max_connections
		{"max_connections negative", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_connections: -1"), `config: line 10: listeners[0].max_connections: -1 is out of range (want 0 or more, or infinity; 0 and infinity mean no limit)`},
		{"max_connections word", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_connections: unlimited"), `config: line 10: listeners[0].max_connections: want an integer or infinity, got "unlimited"`},
		{"max_connections Infinity", withListener("  - {name: a, type: udp, bind: ':1', handler: h, max_connections: Infinity}"), `config: line 6: listeners[0].max_connections: want an integer or infinity, got "Infinity"`},
		{"max_connections float", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, max_connections: 1.5}"), `config: line 6: listeners[0].max_connections: want an integer or infinity, got "1.5"`},
		{"max_connections rate", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, max_connections: 1000/s}"), `config: line 6: listeners[0].max_connections: want an integer or infinity, got "1000/s"`},
		{"max_connections list", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, max_connections: [1]}"), `config: line 6: listeners[0].max_connections: want an integer or infinity, got a list`},

		// max_conn_rate
		{"max_conn_rate negative", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_conn_rate: -5"), `config: line 10: listeners[0].max_conn_rate: -5 is out of range (want 0 or more; 0 means no limit)`},
		{"max_conn_rate bytes", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_conn_rate: 64KB/s"), `config: line 10: listeners[0].max_conn_rate: rate "64KB/s" counts bytes; want a number per second such as 1000 or 1000/s`},
		{"max_conn_rate fraction", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_conn_rate: 1/m"), `config: line 10: listeners[0].max_conn_rate: rate "1/m" is not a whole number per second (want e.g. 1000/s or 6000/m)`},
		{"max_conn_rate zero rate", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_conn_rate: 0/s"), `config: line 10: listeners[0].max_conn_rate: rate "0/s": amount must be positive`},
		{"max_conn_rate bad period", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_conn_rate: 10/d"), `config: line 10: listeners[0].max_conn_rate: invalid rate "10/d" (want <amount>/<period> such as 1000/s, 64KB/s or 100/10s)`},
		{"max_conn_rate word", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_conn_rate: fast"), `config: line 10: listeners[0].max_conn_rate: want an integer or a rate such as 1000/s, got "fast"`},
		{"max_conn_rate infinity", withListener("  - {name: a, type: udp, bind: ':1', handler: h, max_conn_rate: infinity}"), `config: line 6: listeners[0].max_conn_rate: want an integer or a rate such as 1000/s, got "infinity"`},
		{"max_conn_rate mapping", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, max_conn_rate: {n: 1}}"), `config: line 6: listeners[0].max_conn_rate: want an integer or a rate such as 1000/s, got a mapping`},

		// access_rules
		{"access_rules bad cidr", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    access_rules:", "      - allow 10.0.0.0/8", "      - deny 10.0.0.0/33", "      - allow all"), `config: line 12: listeners[0].access_rules[1]: invalid access rule "deny 10.0.0.0/33": bad CIDR: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		{"access_rules third listener", withListener("  - {name: a, type: tcp, bind: ':1', handler: h}", "  - {name: b, type: udp, bind: ':1', handler: h}", "  - name: c", "    type: tcp", "    bind: ':2'", "    handler: h", `    access_rules: ["permit all"]`), `config: line 12: listeners[2].access_rules[0]: invalid access rule "permit all": bad verb "permit", want allow or deny`},
		{"access_rules empty rule", withListener("  - {name: a, type: udp, bind: ':1', handler: h, access_rules: ['allow all', '']}"), `config: line 6: listeners[0].access_rules[1]: invalid access rule "": empty rule`},
		{"access_rules no target", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    access_rules:", "      - deny"), `config: line 11: listeners[0].access_rules[0]: invalid access rule "deny": missing target: want an IP address, a CIDR or all`},
		{"access_rules extra", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    access_rules:", "      - allow 10.0.0.1 10.0.0.2"), `config: line 11: listeners[0].access_rules[0]: invalid access rule "allow 10.0.0.1 10.0.0.2": extra fields after the target: "10.0.0.2"`},
		{"access_rules scalar", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    access_rules: allow all"), `config: line 10: listeners[0].access_rules: want a list, got "allow all"`},
		{"access_rules mapping item", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    access_rules:", "      - allow: all"), `config: line 11: listeners[0].access_rules[0]: want a string, got a mapping`},

		// max_bytes_rate
		{"max_bytes_rate count", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_bytes_rate: 1000/s"), `config: line 10: listeners[0].max_bytes_rate: "1000/s" counts messages, not bytes (want a byte rate such as 64KB/s)`},
		{"max_bytes_rate no period", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    max_bytes_rate: 64KB"), `config: line 10: listeners[0].max_bytes_rate: invalid rate "64KB" (want <amount>/<period> such as 1000/s, 64KB/s or 100/10s)`},
		{"max_bytes_rate zero", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_bytes_rate: 0KB/s"), `config: line 10: listeners[0].max_bytes_rate: rate "0KB/s": amount must be positive`},
		{"max_bytes_rate mapping", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_bytes_rate: {kb: 64}"), `config: line 10: listeners[0].max_bytes_rate: want a rate such as 1000/s or 64KB/s, got a mapping`},

		// max_packet_size
		{"max_packet_size zero", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_packet_size: 0"), `config: line 10: listeners[0].max_packet_size: 0B is out of range (want 1B to 16MiB)`},
		{"max_packet_size big", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    max_packet_size: 17MiB"), `config: line 10: listeners[0].max_packet_size: 17MiB is out of range (want 1B to 16MiB)`},
		{"max_packet_size udp", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    max_packet_size: 64KiB"), `config: line 10: listeners[0].max_packet_size: 64KiB is out of range for a udp listener (want 1B to 65535B, the largest datagram)`},
		{"max_packet_size dtls", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk: {identities: {d: '00'}}", "    max_packet_size: 65536"), `config: line 11: listeners[0].max_packet_size: 64KiB is out of range for a dtls listener (want 1B to 65535B, the largest datagram)`},
		{"max_packet_size udp zero", withListener("  - {name: a, type: udp, bind: ':1', handler: h, max_packet_size: 0B}"), `config: line 6: listeners[0].max_packet_size: 0B is out of range for a udp listener (want 1B to 65535B, the largest datagram)`},
		{"max_packet_size fraction", withListener("  - {name: a, type: tcp, bind: ':1', handler: h, max_packet_size: 1.5KB}"), `config: line 6: listeners[0].max_packet_size: invalid byte size "1.5KB" (want an integer with an optional unit B, KB, KiB, MB, MiB, GB or GiB; KB = KiB = 1024 bytes)`},

		// proxy_protocol
		{"proxy_protocol on udp", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    proxy_protocol: true"), `config: line 10: listeners[0].proxy_protocol: proxy_protocol applies to tcp and ssl listeners, not udp`},
		{"proxy_protocol false on dtls", withListener("  - name: a", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk: {identities: {d: '00'}}", "    proxy_protocol: false"), `config: line 11: listeners[0].proxy_protocol: proxy_protocol applies to tcp and ssl listeners, not dtls`},
		{"proxy_protocol_timeout on udp", withListener("  - name: a", "    type: udp", "    bind: ':1'", "    handler: h", "    proxy_protocol_timeout: 3s"), `config: line 10: listeners[0].proxy_protocol_timeout: proxy_protocol_timeout applies to tcp and ssl listeners, not udp`},
		{"proxy_protocol_timeout zero", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    proxy_protocol: true", "    proxy_protocol_timeout: 0s"), `config: line 11: listeners[0].proxy_protocol_timeout: must be greater than 0`},
		{"proxy_protocol_timeout negative", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    proxy_protocol_timeout: -1s"), `config: line 10: listeners[0].proxy_protocol_timeout: duration "-1s" must not be negative`},
		{"proxy_protocol not bool", withListener("  - name: a", "    type: tcp", "    bind: ':1'", "    handler: h", "    proxy_protocol: yes"), `config: line 10: listeners[0].proxy_protocol: want true or false, got "yes"`},

		// anchors and merge keys
		{"merge bad value", withListener("  - <<: 5", "    name: a"), `config: line 6: listeners[0]: the value of a << merge key must be a mapping or a list of mappings, got "5"`},
		{"merge unknown key", withBase("x-common: &c {bindd: ':1'}"), `config: line 1: unknown key "x-common"`},
		{"merged key error line", withListener("  - &l {name: a, type: tcp, bind: ':1', handler: h}", "  - <<: *l", "    bind: ':2'"), `config: line 6: listeners[1].name: duplicate listener name "a" (also used by listeners[0])`},
		{"alias error", withListener("  - &l {name: a, type: tcp, bind: ':1', handler: h, idle_timeout: x}", "  - *l"), "config: line 6: listeners[0].idle_timeout: invalid duration \"x\" (want e.g. 30s, 1m30s, 500ms, or an integer number of seconds)\n" +
			"config: line 6: listeners[1].idle_timeout: invalid duration \"x\" (want e.g. 30s, 1m30s, 500ms, or an integer number of seconds)\n" +
			"config: line 6: listeners[1].name: duplicate listener name \"a\" (also used by listeners[0])\n" +
			`config: line 6: listeners[1].bind: address ":1" clashes with listeners[0].bind (":1")`},
		{"self merge", withListener("  - &l {<<: *l}"), `config: line 6: listeners[0]: a << merge key refers to the mapping that contains it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error %q\ninput:\n%s", c, tt.want, tt.in)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("wrong error\n got: %s\nwant: %s\ninput:\n%s", got, tt.want, numbered(tt.in))
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is %T, want *Error", err)
			}
		})
	}
}

// notLoopback is the message of an admin.bind that is not a loopback
// address, without admin.api_keys.
func notLoopback(addr string) string {
	return fmt.Sprintf("address %q is not a loopback address and admin.api_keys is empty: "+
		"anyone who can reach the admin API controls the gateway (it can kick devices and reload handlers); "+
		"add admin.api_keys, or bind to 127.0.0.1", addr)
}

// badDigest is the message of an admin api key secret that starts with
// "sha256:" but is not followed by 64 hex digits.
const badDigest = "a sha256: secret must be followed by 64 hex digits (the SHA-256 digest of the secret)"

// numbered prefixes the lines of s with their numbers, for failure output.
func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		fmt.Fprintf(&b, "%3d| %s\n", i+1, l)
	}
	return b.String()
}

// billionLaughs builds a document whose aliases expand exponentially.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("listeners:\n  - &a0 {name: x}\n")
	for i := 1; i <= 30; i++ {
		b.WriteString("  - &a" + strconv.Itoa(i) + " {<<: [*a" + strconv.Itoa(i-1) + ", *a" + strconv.Itoa(i-1) + "]}\n")
	}
	b.WriteString("handlers: {h: {grpc: {address: 'http://a:1'}}}\n")
	return b.String()
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(withBase()))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Node:            Node{Name: "protogate-1", DataDir: "./data"},
		Log:             Log{Level: "info", Format: "text"},
		Broker:          Broker{NATSListen: "", MQTTListen: "", MaxPayload: 1 << 20, MaxBuffered: 64 * MiB},
		Adapter:         Adapter{Bind: "127.0.0.1:9100"},
		Admin:           Admin{Bind: "127.0.0.1:18083"},
		SecurityProfile: "legacy",
		Registry:        Registry{Backend: RegistryAuto, OnUnavailable: "reject", ClaimTimeout: Duration(2 * time.Second)},
		Gateway: Gateway{IdleTimeout: Duration(30 * time.Second), MaxPendingMessages: 1000, MaxDeliveryWait: Duration(time.Second), MaxSubscriptions: 1000,
			MaxQueuedBytes: 4 * MiB},
		Handlers: map[string]Handler{"h": {GRPC: &GRPCHandler{
			Address:     "http://127.0.0.1:9001",
			ServiceName: ServiceUnary,
			Timeout:     Duration(30 * time.Second),
		}}},
		Listeners: []Listener{{
			Name:                 "l",
			Type:                 ListenerTCP,
			Bind:                 "0.0.0.0:7993",
			Handler:              "h",
			IdleTimeout:          Duration(30 * time.Second),
			MaxSubscriptions:     1000,
			EnableAuthn:          true,
			MaxConnections:       1024000,
			MaxConnRate:          1000,
			MaxPacketSize:        64 * KiB,
			ProxyProtocolTimeout: Duration(3 * time.Second),
		}},
	}
	assertConfig(t, c, want)
}

// TestListenerDefaults checks the defaults of the connection management
// keys, the type-dependent defaults and the alternative value forms.
func TestListenerDefaults(t *testing.T) {
	in := withListener(
		"  - {name: a, type: tcp, bind: ':1', handler: h}",
		"  - {name: b, type: udp, bind: ':1', handler: h}",
		"  - {name: c, type: dtls, bind: ':2', handler: h, psk: {identities_file: testdata/psk.txt}}",
		"  - {name: d, type: tcp, bind: ':3', handler: h, framing: {type: length}}",
		"  - {name: e, type: tcp, bind: ':4', handler: h, framing: {type: length, bytes: ~, endian: ~}}",
		"  - {name: f, type: tcp, bind: ':5', handler: h, framing: {type: line}}",
		"  - {name: g, type: tcp, bind: ':6', handler: h, max_connections: infinity, max_conn_rate: 1000/10s, max_bytes_rate: '', access_rules: []}",
		"  - {name: i, type: udp, bind: ':7', handler: h, max_packet_size: 512, max_conn_rate: 5/500ms, max_connections: 0}",
		"  - {name: j, type: ssl, bind: ':8', handler: h, tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key},",
		"     max_connections: ~, max_conn_rate: ~, max_packet_size: ~, proxy_protocol: ~, proxy_protocol_timeout: ~, max_bytes_rate: ~, access_rules: ~, framing: ~}",
		"  - {name: k, type: tcp, bind: ':9', handler: h, max_conn_rate: 6000/m, max_bytes_rate: 1MB/10s, proxy_protocol: true, proxy_protocol_timeout: 500ms}",
		"  - {name: m, type: dtls, bind: ':10', handler: h, max_packet_size: 65535B, psk: {identities: {a: '00', b: "+strings.Repeat("0aF9", 32)+"}}}",
		"  - {name: n, type: udp, bind: ':11', handler: h, health_check: {request: ' ', reply: \"\\0\"}}",
	)
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("%v\n%s", err, numbered(in))
	}
	base := func(name, typ, bind string) Listener {
		return Listener{
			Name: name, Type: typ, Bind: bind, Handler: "h",
			IdleTimeout: Duration(30 * time.Second), EnableAuthn: true, MaxSubscriptions: 1000,
			MaxConnections: 1024000, MaxConnRate: 1000, MaxPacketSize: 64 * KiB,
			ProxyProtocolTimeout: Duration(3 * time.Second),
		}
	}
	want := []Listener{
		base("a", ListenerTCP, ":1"),
		base("b", ListenerUDP, ":1"),
		base("c", ListenerDTLS, ":2"),
		base("d", ListenerTCP, ":3"),
		base("e", ListenerTCP, ":4"),
		base("f", ListenerTCP, ":5"),
		base("g", ListenerTCP, ":6"),
		base("i", ListenerUDP, ":7"),
		base("j", ListenerSSL, ":8"),
		base("k", ListenerTCP, ":9"),
		base("m", ListenerDTLS, ":10"),
		base("n", ListenerUDP, ":11"),
	}
	want[1].MaxPacketSize = 65535
	want[2].MaxPacketSize = 65535
	want[2].PSK = &PSK{IdentitiesFile: "testdata/psk.txt"}
	want[3].Framing = &Framing{Type: FramingLength, Bytes: 2, Endian: "big"}
	want[4].Framing = &Framing{Type: FramingLength, Bytes: 2, Endian: "big"}
	want[5].Framing = &Framing{Type: FramingLine}
	want[6].MaxConnections, want[6].MaxConnRate = 0, 100
	want[7].MaxPacketSize, want[7].MaxConnRate, want[7].MaxConnections = 512, 10, 0
	want[8].TLS = &ServerTLS{CertFile: "testdata/certs/server.pem", KeyFile: "testdata/certs/server.key"}
	want[9].MaxConnRate = 100
	want[9].MaxBytesRate = Rate{Amount: 1 << 20, Bytes: true, Period: 10 * time.Second}
	want[9].ProxyProtocol, want[9].ProxyProtocolTimeout = true, Duration(500*time.Millisecond)
	want[10].MaxPacketSize = 65535
	want[10].PSK = &PSK{Identities: map[string]string{"a": "00", "b": strings.Repeat("0aF9", 32)}}
	want[11].MaxPacketSize = 65535
	want[11].HealthCheck = &HealthCheck{Request: " ", Reply: "\x00"}
	if len(c.Listeners) != len(want) {
		t.Fatalf("got %d listeners, want %d", len(c.Listeners), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(c.Listeners[i], want[i]) {
			t.Errorf("listeners[%d]:\n got %+v\nwant %+v", i, c.Listeners[i], want[i])
		}
	}
}

// TestDatagramBinds checks that udp and dtls listeners clash only with each
// other: TCP and UDP ports are separate.
func TestDatagramBinds(t *testing.T) {
	in := doc(
		"broker: {nats_listen: '0.0.0.0:4222', mqtt_listen: '[::]:1883', allow_anonymous: true}",
		"handlers:",
		"  h: {grpc: {address: 'http://127.0.0.1:9001'}}",
		"listeners:",
		"  - {name: t, type: tcp, bind: '0.0.0.0:7993', handler: h}",
		"  - {name: u, type: udp, bind: '0.0.0.0:7993', handler: h}",
		"  - {name: s, type: ssl, bind: ':7994', handler: h, tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key}}",
		"  - {name: d, type: dtls, bind: ':7994', handler: h, psk: {identities_file: testdata/psk.txt}}",
		"  - {name: a, type: udp, bind: '127.0.0.1:9100', handler: h}",
		"  - {name: n, type: udp, bind: '10.0.0.1:4222', handler: h}",
		"  - {name: m, type: dtls, bind: '[::1]:1883', handler: h, psk: {identities: {x: '00'}}}",
		"  - {name: z1, type: udp, bind: ':0', handler: h}",
		"  - {name: z2, type: udp, bind: ':0', handler: h}",
	)
	if _, err := Parse([]byte(in)); err != nil {
		t.Fatalf("%v\n%s", err, numbered(in))
	}
}

// TestAdmin checks the admin block values that are accepted: a loopback
// bind needs no api keys, any other bind does, and "" turns the admin
// server off.
func TestAdmin(t *testing.T) {
	digest := "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" // sha256("secret")
	keys := "  api_keys:\n    - {key: ops, secret: secret}\n"
	for _, tc := range []struct {
		name, admin string
		want        Admin
	}{
		{"absent", "", Admin{Bind: DefaultAdminBind}},
		{"null", "admin:\n", Admin{Bind: DefaultAdminBind}},
		{"null bind", "admin:\n  bind:\n", Admin{Bind: DefaultAdminBind}},
		{"off", "admin:\n  bind: ''\n", Admin{}},
		{"off without keys", "admin: {bind: '', api_keys: []}\n", Admin{}},
		{"loopback", "admin: {bind: '127.0.0.1:9999'}\n", Admin{Bind: "127.0.0.1:9999"}},
		{"loopback net", "admin: {bind: '127.8.9.10:1'}\n", Admin{Bind: "127.8.9.10:1"}},
		{"loopback port 0", "admin: {bind: '127.0.0.1:0'}\n", Admin{Bind: "127.0.0.1:0"}},
		{"loopback ipv6", "admin: {bind: '[::1]:18083'}\n", Admin{Bind: "[::1]:18083"}},
		{"loopback ipv4-mapped", "admin: {bind: '[::ffff:127.0.0.1]:18083'}\n", Admin{Bind: "[::ffff:127.0.0.1]:18083"}},
		{"localhost", "admin: {bind: 'localhost:18083'}\n", Admin{Bind: "localhost:18083"}},
		{"localhost upper case", "admin: {bind: 'LocalHost.:18083'}\n", Admin{Bind: "LocalHost.:18083"}},
		{"any with keys", "admin:\n  bind: 0.0.0.0:18083\n" + keys, Admin{Bind: "0.0.0.0:18083", APIKeys: []APIKey{{"ops", "secret"}}}},
		{"empty host with keys", "admin:\n  bind: ':18083'\n" + keys, Admin{Bind: ":18083", APIKeys: []APIKey{{"ops", "secret"}}}},
		{"name with keys", "admin:\n  bind: gw.example.com:18083\n" + keys, Admin{Bind: "gw.example.com:18083", APIKeys: []APIKey{{"ops", "secret"}}}},
		{"loopback with keys", "admin:\n" + keys, Admin{Bind: DefaultAdminBind, APIKeys: []APIKey{{"ops", "secret"}}}},
		{"digests", "admin:\n  bind: 10.0.0.1:18083\n  api_keys:\n" +
			"    - {key: a, secret: 'sha256:" + digest + "'}\n" +
			"    - {key: b, secret: 'SHA256:" + strings.ToUpper(digest) + "'}\n" +
			"    - {key: c, secret: 'sha256-" + digest + "'}\n" +
			"    - {key: 'd e@f', secret: ' '}\n",
			Admin{Bind: "10.0.0.1:18083", APIKeys: []APIKey{{"a", "sha256:" + digest}, {"b", "SHA256:" + strings.ToUpper(digest)}, {"c", "sha256-" + digest}, {"d e@f", " "}}}},
		{"tls", "admin:\n  tls: {cert_file: testdata/certs/server.pem, key_file: testdata/certs/server.key, ca_file: testdata/certs/ca.pem, verify_client: true}\n",
			Admin{Bind: DefaultAdminBind, TLS: &ServerTLS{CertFile: "testdata/certs/server.pem", KeyFile: "testdata/certs/server.key", CAFile: "testdata/certs/ca.pem", VerifyClient: true}}},
		// A udp listener does not clash with the admin server (TCP).
		{"udp listener on the admin port", "admin: {bind: '127.0.0.1:7993'}\n", Admin{Bind: "127.0.0.1:7993"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.admin + doc(
				"handlers:",
				"  h: {grpc: {address: 'http://127.0.0.1:9001'}}",
				"listeners:",
				"  - {name: l, type: udp, bind: '0.0.0.0:7993', handler: h}",
			)
			c, err := Parse([]byte(in))
			if err != nil {
				t.Fatalf("%v\n%s", err, numbered(in))
			}
			if !reflect.DeepEqual(c.Admin, tc.want) {
				t.Errorf("admin = %+v, want %+v", c.Admin, tc.want)
			}
		})
	}
}

// TestValidateBuiltAdmin validates admin blocks built in Go: no lines.
func TestValidateBuiltAdmin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		admin Admin
		want  string
	}{
		{"default", Admin{Bind: DefaultAdminBind}, ""},
		{"off", Admin{}, ""},
		{"any", Admin{Bind: "0.0.0.0:18083"}, "config: admin.bind: " + notLoopback("0.0.0.0:18083")},
		{"any with keys", Admin{Bind: "0.0.0.0:18083", APIKeys: []APIKey{{"ops", "s"}}}, ""},
		{"ipv6 any", Admin{Bind: "[::]:1"}, "config: admin.bind: " + notLoopback("[::]:1")},
		{"zoned loopback", Admin{Bind: "[::1%lo]:1"}, ""},
		{"bad keys", Admin{Bind: "[::1]:1", APIKeys: []APIKey{{"", "s"}, {"a", ""}, {"a", "sha256:x"}}}, strings.Join([]string{
			"config: admin.api_keys[0].key: must not be empty",
			"config: admin.api_keys[1].secret: must not be empty",
			`config: admin.api_keys[2].key: duplicate key "a" (also used by admin.api_keys[1])`,
			"config: admin.api_keys[2].secret: " + badDigest,
		}, "\n")},
		{"clash", Admin{Bind: "127.0.0.1:7993"}, `config: listeners[0].bind: address "0.0.0.0:7993" clashes with admin.bind ("127.0.0.1:7993")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(Default())
			if err != nil {
				t.Fatal(err)
			}
			c.pos, c.set = nil, nil
			c.Admin = tc.admin
			err = c.Validate()
			if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && got != tc.want {
				t.Errorf("Validate = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestValidateBuiltListeners validates listeners built in Go: the
// type-specific rules hold without the document.
func TestValidateBuiltListeners(t *testing.T) {
	udp := Listener{Name: "u", Type: ListenerUDP, Bind: ":7993", Handler: "default", MaxPacketSize: MaxDatagramSize}
	tcp := Listener{Name: "t", Type: ListenerTCP, Bind: ":7995", Handler: "default", MaxPacketSize: 1, ProxyProtocolTimeout: 1}
	for _, tt := range []struct {
		name string
		l    Listener
		edit func(l *Listener)
		want string
	}{
		{"udp ok", udp, func(*Listener) {}, ""},
		{"tcp ok", tcp, func(l *Listener) { l.AccessRules = []string{"allow ::1", "deny all"} }, ""},
		{"udp proxy", udp, func(l *Listener) { l.ProxyProtocol = true }, `config: listeners[1].proxy_protocol: proxy_protocol applies to tcp and ssl listeners, not udp`},
		{"udp framing", udp, func(l *Listener) { l.Framing = &Framing{Type: FramingLine} }, `config: listeners[1].framing: framing applies to tcp and ssl listeners; a udp datagram is already one frame`},
		{"udp packet", udp, func(l *Listener) { l.MaxPacketSize = 0 }, `config: listeners[1].max_packet_size: 0B is out of range for a udp listener (want 1B to 65535B, the largest datagram)`},
		{"udp health", udp, func(l *Listener) { l.HealthCheck = &HealthCheck{Request: "x"} }, `config: listeners[1].health_check.reply: must not be empty`},
		{"dtls psk key", udp, func(l *Listener) { l.Type = ListenerDTLS; l.PSK = &PSK{Identities: map[string]string{"d.1": "zz"}} }, `config: listeners[1].psk.identities["d.1"]: key must be hex digits (want 2 to 128 hex digits: 1 to 64 bytes)`},
		{"dtls none", udp, func(l *Listener) { l.Type = ListenerDTLS }, `config: listeners[1].tls: a dtls listener needs tls with cert_file and key_file, or psk`},
		{"tcp timeout", tcp, func(l *Listener) { l.ProxyProtocolTimeout = 0 }, `config: listeners[1].proxy_protocol_timeout: must be greater than 0`},
		{"tcp packet", tcp, func(l *Listener) { l.MaxPacketSize = 16*MiB + 1 }, `config: listeners[1].max_packet_size: 16777217B is out of range (want 1B to 16MiB)`},
		{"tcp count rate", tcp, func(l *Listener) { l.MaxBytesRate = Rate{Amount: 10, Period: time.Second} }, `config: listeners[1].max_bytes_rate: "10/s" counts messages, not bytes (want a byte rate such as 64KB/s)`},
		{"tcp bad rate", tcp, func(l *Listener) { l.MaxBytesRate = Rate{Amount: 10, Bytes: true} }, `config: listeners[1].max_bytes_rate: invalid rate (amount and period must be positive)`},
		{"tcp rules", tcp, func(l *Listener) { l.AccessRules = []string{"allow all", "deny x"} }, `config: listeners[1].access_rules[1]: invalid access rule "deny x": bad IP address: ParseAddr("x"): unable to parse IP`},
		{"tcp conns", tcp, func(l *Listener) { l.MaxConnections = -2 }, `config: listeners[1].max_connections: -2 is out of range (want 0 or more, or infinity; 0 and infinity mean no limit)`},
		{"tcp rate", tcp, func(l *Listener) { l.MaxConnRate = -2 }, `config: listeners[1].max_conn_rate: -2 is out of range (want 0 or more; 0 means no limit)`},
		{"tcp framing", tcp, func(l *Listener) { l.Framing = &Framing{Type: FramingLine, Endian: "big"} }, `config: listeners[1].framing.endian: endian applies only to framing type length`},
		{"tcp framing length", tcp, func(l *Listener) { l.Framing = &Framing{Type: FramingLength, Endian: "big"} }, `config: listeners[1].framing.bytes: 0 is not a valid length prefix size (want 2 or 4)`},
		{"tcp framing length twice", tcp, func(l *Listener) { l.Framing = &Framing{Type: FramingLength} }, "config: listeners[1].framing.bytes: 0 is not a valid length prefix size (want 2 or 4)\n" +
			`config: listeners[1].framing.endian: unknown byte order "" (want big or little)`},
		{"tcp health", tcp, func(l *Listener) { l.HealthCheck = &HealthCheck{} }, `config: listeners[1].health_check: health_check applies to udp and dtls listeners, not tcp`},
		{"tcp psk", tcp, func(l *Listener) { l.PSK = &PSK{} }, `config: listeners[1].psk: psk applies to dtls listeners, not tcp`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(Default())
			if err != nil {
				t.Fatal(err)
			}
			c.pos, c.set = nil, nil
			l := tt.l
			tt.edit(&l)
			c.Listeners = append(c.Listeners, l)
			err = c.Validate()
			if got := fmt.Sprint(err); tt.want == "" && err != nil || tt.want != "" && got != tt.want {
				t.Errorf("Validate = %v\nwant %s", err, tt.want)
			}
		})
	}
}

// assertConfig compares the exported parts of two configs.
func assertConfig(t *testing.T, got, want *Config) {
	t.Helper()
	g, w := *got, *want
	g.pos, w.pos = nil, nil
	g.set, w.set = nil, nil
	if !reflect.DeepEqual(g, w) {
		gy, _ := yaml.Marshal(g)
		wy, _ := yaml.Marshal(w)
		t.Errorf("config mismatch\ngot:\n%s\nwant:\n%s", gy, wy)
	}
}

func TestDefaultsNestedAndNull(t *testing.T) {
	// Null values and empty mappings keep defaults; wasm and authentication
	// get theirs; listeners inherit gateway settings written after them.
	in := doc(
		"node:",
		"log: {}",
		"broker: ~",
		"authentication:",
		"  users: {alice: secret}",
		"handlers:",
		"  w:",
		"    wasm: {path: 'builtin:echo'}",
		"listeners:",
		"  - {name: a, type: tcp, bind: ':1', handler: w}",
		"  - {name: b, type: tcp, bind: ':2', handler: w, idle_timeout: 0, mountpoint: '', enable_authn: false, max_subscriptions: infinity}",
		"  - {name: c, type: tcp, bind: ':3', handler: w, idle_timeout: ~, mountpoint: ~, enable_authn: ~, max_subscriptions: ~}",
		"gateway:",
		"  idle_timeout: 2m",
		"  mountpoint: gw/${username}/",
		"  max_subscriptions: 7",
	)
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.Name != "protogate-1" || c.Log.Level != "info" || c.Broker.MaxPayload != MiB {
		t.Errorf("top-level defaults lost: %+v %+v %+v", c.Node, c.Log, c.Broker)
	}
	if a := c.Authentication; a == nil || a.UserIDType != UserIDUsername || a.Users["alice"] != "secret" {
		t.Errorf("authentication = %+v", a)
	}
	w := c.Handlers["w"].Wasm
	if w == nil || w.Instances != 0 || w.MemoryLimit != 64*MiB || time.Duration(w.CallTimeout) != 100*time.Millisecond ||
		time.Duration(w.BreakerCooldown) != 30*time.Second || time.Duration(w.BreakerMaxCooldown) != 10*time.Minute || w.MaxTimers != 64 {
		t.Errorf("wasm = %+v", w)
	}
	type eff struct {
		idle  time.Duration
		mount string
		authn bool
		subs  int
	}
	want := []eff{
		{2 * time.Minute, "gw/${username}/", true, 7},
		{0, "", false, 0},
		{2 * time.Minute, "gw/${username}/", true, 7},
	}
	for i, l := range c.Listeners {
		if got := (eff{time.Duration(l.IdleTimeout), l.Mountpoint, l.EnableAuthn, l.MaxSubscriptions}); got != want[i] {
			t.Errorf("listeners[%d] = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestAuthenticationAbsent(t *testing.T) {
	for _, in := range []string{withBase(), withBase("authentication:"), withBase("authentication: ~")} {
		c, err := Parse([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if c.Authentication != nil {
			t.Errorf("Authentication = %+v, want nil", c.Authentication)
		}
	}
}

func TestDefaultFile(t *testing.T) {
	c, err := Parse(Default())
	if err != nil {
		t.Fatalf("Parse(Default()): %v", err)
	}
	if c.Node.Name != "protogate-1" || c.Node.DataDir != "./data" || c.Adapter.Bind != "127.0.0.1:9100" {
		t.Errorf("node/adapter = %+v %+v", c.Node, c.Adapter)
	}
	h, ok := c.Handlers["default"]
	if len(c.Handlers) != 1 || !ok || h.Wasm == nil || h.Wasm.Path != "builtin:linepubsub" || h.GRPC != nil {
		t.Errorf("handlers = %+v", c.Handlers)
	}
	if len(c.Listeners) != 1 {
		t.Fatalf("listeners = %+v", c.Listeners)
	}
	l := c.Listeners[0]
	if l.Name != "tcp-default" || l.Type != ListenerTCP || l.Bind != "0.0.0.0:7993" || l.Handler != "default" || l.TLS != nil {
		t.Errorf("listener = %+v", l)
	}
	if l.MaxConnections != 1024000 || l.MaxConnRate != 1000 || l.MaxPacketSize != 64*KiB || l.ProxyProtocol ||
		time.Duration(l.ProxyProtocolTimeout) != 3*time.Second || l.Framing != nil || l.AccessRules != nil || !l.MaxBytesRate.IsZero() {
		t.Errorf("connection management defaults = %+v", l)
	}
	if c.Authentication != nil || c.Adapter.TLS != nil || c.Admin.TLS != nil || c.Admin.APIKeys != nil {
		t.Errorf("optional blocks set: %+v %+v %+v", c.Authentication, c.Adapter.TLS, c.Admin)
	}
	if c.Admin.Bind != DefaultAdminBind {
		t.Errorf("admin.bind = %q, want %q", c.Admin.Bind, DefaultAdminBind)
	}
	// Default returns a copy.
	Default()[0] = 'X'
	if Default()[0] == 'X' {
		t.Error("Default() returned shared memory")
	}
}

// TestDefaultFileCommentedBlocks checks that the commented-out examples in
// default.yaml are valid too once uncommented (paths swapped for test files).
func TestDefaultFileCommentedBlocks(t *testing.T) {
	keys := knownKeys()
	keys["alice"], keys["bob"], keys["device-1"] = true, true, true
	var lines []string
	for _, l := range strings.Split(string(Default()), "\n") {
		// Uncomment "# key: ..." lines whose key is a schema key; the
		// rest is prose.
		trimmed := strings.TrimLeft(l, " ")
		indent := l[:len(l)-len(trimmed)]
		if rest, ok := strings.CutPrefix(trimmed, "# "); ok {
			key, _, _ := strings.Cut(strings.TrimLeft(strings.TrimPrefix(strings.TrimLeft(rest, " "), "- "), " "), ":")
			if keys[key] {
				l = indent + rest
			}
		}
		lines = append(lines, l)
	}
	in := strings.Join(lines, "\n")
	r := strings.NewReplacer(
		"/etc/protogate/adapter.pem", "testdata/certs/server.pem",
		"/etc/protogate/adapter.key", "testdata/certs/server.key",
		"/etc/protogate/admin.pem", "testdata/certs/server.pem",
		"/etc/protogate/admin.key", "testdata/certs/server.key",
		"/etc/protogate/server.pem", "testdata/certs/server.pem",
		"/etc/protogate/server.key", "testdata/certs/server.key",
		"/etc/protogate/client.pem", "testdata/certs/client.pem",
		"/etc/protogate/client.key", "testdata/certs/client.key",
		"/etc/protogate/ca.pem", "testdata/certs/ca.pem",
		"address: http://127.0.0.1:9001", "address: https://127.0.0.1:9001",
		"./my-protocol.wasm", "testdata/full.yaml",
		"/etc/protogate/psk.txt", "testdata/psk.txt",
		"/etc/protogate/users.csv", "testdata/users.csv",
		"/etc/protogate/route.pem", "testdata/certs/server.pem",
		"/etc/protogate/route.key", "testdata/certs/server.key",
		"/etc/protogate/leaf.creds", "testdata/leaf.nk",
		"/etc/protogate/leaf.nk", "testdata/leaf.nk",
	)
	in = r.Replace(in)
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatalf("uncommented default: %v\n%s", err, numbered(in))
	}
	if cl := c.Broker.Cluster; cl == nil || len(cl.Routes) != 3 || cl.TLS == nil || c.Broker.LeafNode == nil || len(c.Broker.LeafNode.Remotes) != 3 || c.Broker.LeafNode.TLS == nil {
		t.Errorf("cluster and leafnode blocks were not all uncommented: %+v %+v", c.Broker.Cluster, c.Broker.LeafNode)
	}
	if c.Authentication == nil || c.Adapter.TLS == nil || c.Handlers["default"].Wasm == nil ||
		c.Handlers["default"].GRPC.TLS == nil || len(c.Listeners) != 4 || c.Listeners[1].TLS == nil {
		t.Fatalf("commented blocks were not all uncommented:\n%s", numbered(in))
	}
	if l := c.Listeners[0]; l.Framing == nil || l.MaxBytesRate.IsZero() || len(l.AccessRules) == 0 || !c.set["listeners[0].max_connections"] ||
		!c.set["listeners[0].max_conn_rate"] || !c.set["listeners[0].max_packet_size"] || !c.set["listeners[0].proxy_protocol_timeout"] {
		t.Errorf("connection management keys were not all uncommented: %+v", l)
	}
	if l := c.Listeners[2]; l.Type != ListenerUDP || l.HealthCheck == nil {
		t.Errorf("udp listener = %+v", l)
	}
	if l := c.Listeners[3]; l.Type != ListenerDTLS || l.TLS == nil || l.PSK == nil || l.PSK.IdentitiesFile != "testdata/psk.txt" || len(l.PSK.Identities) != 1 {
		t.Errorf("dtls listener = %+v", l)
	}
	a, err := c.Authenticator(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := a.Authenticate(context.Background(), &gateway.AuthRequest{Client: gateway.ClientInfo{Username: u}, Password: "secret"}); err != nil {
			t.Errorf("example user %s does not verify with password secret: %v", u, err)
		}
	}
	if a := c.Admin; a.TLS == nil || len(a.APIKeys) != 1 || a.APIKeys[0].Key != "ops" {
		t.Errorf("admin = %+v", a)
	} else if creds, err := a.Credentials(); err != nil || !creds["ops"].Match("secret") {
		t.Errorf("the example api key does not verify with secret secret: %v", err)
	}
}

// knownKeys returns every yaml key of the schema.
func knownKeys() map[string]bool {
	keys := map[string]bool{}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || rt == reflect.TypeFor[Rate]() || seen[rt] {
			return
		}
		seen[rt] = true
		for name, i := range fieldsOf(rt).index {
			keys[name] = true
			walk(rt.FieldByIndex(i).Type)
		}
	}
	walk(reflect.TypeFor[Config]())
	return keys
}

func TestFullExample(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &ServerTLS{CertFile: "testdata/certs/server.pem", KeyFile: "testdata/certs/server.key", CAFile: "testdata/certs/ca.pem"}
	adapterTLS := *serverTLS
	adapterTLS.VerifyClient = true
	want := &Config{
		Node:            Node{Name: "edge-gw.eu-1", DataDir: "/var/lib/protogate"},
		Log:             Log{Level: "debug", Format: "json"},
		Broker:          fullBroker,
		Adapter:         Adapter{Bind: "127.0.0.1:9100", TLS: &adapterTLS},
		SecurityProfile: "legacy",
		Registry:        Registry{Backend: RegistryLocal, OnUnavailable: "local", ClaimTimeout: Duration(500 * time.Millisecond)},
		Admin: Admin{Bind: "0.0.0.0:18083", TLS: &ServerTLS{CertFile: "testdata/certs/server.pem", KeyFile: "testdata/certs/server.key"}, APIKeys: []APIKey{
			{Key: "ops", Secret: "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"},
			{Key: "ci", Secret: "s3cret"},
		}},
		Gateway: Gateway{IdleTimeout: Duration(90 * time.Second), Mountpoint: "devices/${clientid}/", MaxPendingMessages: 1000, MaxDeliveryWait: Duration(time.Second),
			MaxSubscriptions: 100, MaxQueuedBytes: 512 * KiB},
		Authentication: &Authentication{UserIDType: UserIDClientID, Users: map[string]string{
			"alice": "secret",
			"bob":   "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
		}},
		Handlers: map[string]Handler{
			"tracker": {GRPC: &GRPCHandler{Address: "http://127.0.0.1:9001", ServiceName: ServiceUnary, Timeout: Duration(5 * time.Second)}},
			"meter": {GRPC: &GRPCHandler{Address: "https://handlers.example.com:9443", ServiceName: ServiceStream, Timeout: Duration(10 * time.Second),
				TLS: &ClientTLS{CAFile: "testdata/certs/ca.pem", CertFile: "testdata/certs/client.pem", KeyFile: "testdata/certs/client.key", ServerName: "localhost"}}},
			"echo": {Wasm: &WasmHandler{Path: "builtin:echo", Instances: 4, MemoryLimit: 16 * MiB, CallTimeout: Duration(250 * time.Millisecond),
				BreakerCooldown: Duration(time.Minute), BreakerMaxCooldown: Duration(time.Hour), MaxTimers: 16}},
		},
		Listeners: []Listener{
			{Name: "tracker-tcp", Type: ListenerTCP, Bind: "0.0.0.0:7993", Handler: "tracker", MaxSubscriptions: 100, IdleTimeout: Duration(90 * time.Second), Mountpoint: "devices/${clientid}/", EnableAuthn: true,
				MaxConnections: 100000, MaxConnRate: 1000,
				AccessRules:   []string{"deny 10.1.0.0/16", "allow 10.0.0.0/8", "allow 2001:db8::/32", "deny all"},
				MaxBytesRate:  Rate{Amount: 64 << 10, Bytes: true, Period: time.Second},
				MaxPacketSize: 4 * KiB, ProxyProtocol: true, ProxyProtocolTimeout: Duration(5 * time.Second),
				Framing: &Framing{Type: FramingLength, Bytes: 4, Endian: "little"}},
			{Name: "meter-ssl", Type: ListenerSSL, Bind: "0.0.0.0:7994", Handler: "meter", IdleTimeout: Duration(5 * time.Minute), Mountpoint: "meters/${username}/", TLS: serverTLS,
				MaxConnections: 0, MaxConnRate: 0, MaxPacketSize: 64 * KiB, ProxyProtocolTimeout: Duration(3 * time.Second),
				Framing: &Framing{Type: FramingLine}},
			{Name: "echo-tcp", Type: ListenerTCP, Bind: "127.0.0.1:0", Handler: "echo", MaxSubscriptions: 100, EnableAuthn: true,
				MaxConnections: 1024000, MaxConnRate: 1000, MaxPacketSize: 64 * KiB, ProxyProtocolTimeout: Duration(3 * time.Second)},
			{Name: "tracker-udp", Type: ListenerUDP, Bind: "0.0.0.0:7993", Handler: "tracker", MaxSubscriptions: 100, IdleTimeout: Duration(90 * time.Second), Mountpoint: "devices/${clientid}/", EnableAuthn: true,
				HealthCheck:    &HealthCheck{Request: "ping", Reply: "pong"},
				MaxConnections: 50000, MaxConnRate: 100,
				AccessRules:   []string{"allow 192.168.0.0/16", "deny all"},
				MaxBytesRate:  Rate{Amount: 1 << 20, Bytes: true, Period: 10 * time.Second},
				MaxPacketSize: 1472, ProxyProtocolTimeout: Duration(3 * time.Second)},
			{Name: "meter-dtls", Type: ListenerDTLS, Bind: "0.0.0.0:7994", Handler: "meter", MaxSubscriptions: 100, IdleTimeout: Duration(90 * time.Second), Mountpoint: "devices/${clientid}/", EnableAuthn: true,
				HealthCheck: &HealthCheck{Request: "HEALTH?", Reply: "OK"},
				TLS:         &adapterTLS,
				PSK: &PSK{IdentitiesFile: "testdata/psk.txt", IdentityHint: "meters.example.com", Identities: map[string]string{
					"meter-0001": "00112233445566778899AABBCCDDEEFF",
					"meter 0002": "7f",
				}},
				MaxConnections: 1024000, MaxConnRate: 1000, MaxPacketSize: 65535, ProxyProtocolTimeout: Duration(3 * time.Second)},
		},
	}
	assertConfig(t, c, want)
	for name, w := range map[string]struct {
		target string
		tls    bool
	}{"tracker": {"127.0.0.1:9001", false}, "meter": {"handlers.example.com:9443", true}} {
		a, err := remote.ParseAddress(c.Handlers[name].GRPC.Address)
		if err != nil || a.HostPort() != w.target || a.TLS != w.tls {
			t.Errorf("%s: ParseAddress = %+v, %v; want %q, %v", name, a, err, w.target, w.tls)
		}
	}
	if !verify(c.Authentication, "alice", "secret") || !verify(c.Authentication, "bob", "secret") ||
		verify(c.Authentication, "bob", "Secret") || verify(c.Authentication, "carol", "secret") || verify(c.Authentication, "alice", "") {
		t.Error("verify gave a wrong answer")
	}
}

// verify reports whether the gateway would let user id in with password.
func verify(a *Authentication, id, password string) bool {
	st, err := authn.NewStatic(a.Users, false)
	if err != nil {
		return false
	}
	_, err = st.Authenticate(context.Background(), &gateway.AuthRequest{Client: gateway.ClientInfo{Username: id}, Password: password})
	return err == nil
}

// TestRoundTrip marshals parsed configs with yaml.v3 and parses them again.
func TestRoundTrip(t *testing.T) {
	for _, in := range [][]byte{Default(), mustRead(t, "testdata/full.yaml")} {
		c, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		assertConfig(t, c2, c)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAnchorsAndMerge(t *testing.T) {
	in := doc(
		"handlers:",
		"  h: &h",
		"    grpc: {address: 'http://127.0.0.1:9001', timeout: 3s}",
		"  h2: *h",
		"listeners:",
		"  - &common",
		"    name: a",
		"    type: ssl",
		"    bind: 0.0.0.0:8001",
		"    handler: h",
		"    tls: &tls",
		"      cert_file: testdata/certs/server.pem",
		"      key_file: testdata/certs/server.key",
		"  - <<: *common",
		"    name: b",
		"    bind: 0.0.0.0:8002",
		"    handler: h2",
		"  - <<: [{name: c, bind: ':8003'}, *common]",
		"    idle_timeout: 10s",
	)
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Handlers["h2"].GRPC; g == nil || g.Address != "http://127.0.0.1:9001" || time.Duration(g.Timeout) != 3*time.Second {
		t.Errorf("h2 = %+v", g)
	}
	type got struct{ name, bind, handler string }
	for i, w := range []got{{"a", "0.0.0.0:8001", "h"}, {"b", "0.0.0.0:8002", "h2"}, {"c", ":8003", "h"}} {
		l := c.Listeners[i]
		if (got{l.Name, l.Bind, l.Handler}) != w || l.Type != ListenerSSL || l.TLS == nil || l.TLS.CertFile != "testdata/certs/server.pem" {
			t.Errorf("listeners[%d] = %+v", i, l)
		}
	}
	if time.Duration(c.Listeners[2].IdleTimeout) != 10*time.Second || time.Duration(c.Listeners[1].IdleTimeout) != 30*time.Second {
		t.Errorf("idle timeouts %v %v", c.Listeners[1].IdleTimeout, c.Listeners[2].IdleTimeout)
	}
	// The listeners share no memory even though they come from one anchor.
	if c.Listeners[0].TLS == c.Listeners[1].TLS {
		t.Error("listeners share a *ServerTLS")
	}
}

func TestExcessiveAliasing(t *testing.T) {
	// Exponential merge chains are flattened once per mapping: this is fast
	// and fails only on the incomplete listeners.
	start := time.Now()
	_, err := Parse([]byte(billionLaughs()))
	if err == nil || !strings.Contains(err.Error(), "line 2: listeners[0].type: missing listener type") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}

	// The work budget stops everything else.
	defer func(old int) { maxDecodeWork = old }(maxDecodeWork)
	maxDecodeWork = 20
	_, err = Parse(mustRead(t, "testdata/full.yaml"))
	if err == nil || !strings.Contains(err.Error(), "document too complex") {
		t.Errorf("err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(bad, []byte(withBase("log:", "  level: loud")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(bad)
	if want := "config: " + bad + ": line 2: log.level: unknown log level \"loud\" (want debug, info, warn or error)"; err == nil || err.Error() != want {
		t.Errorf("Load = %v\nwant %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != bad || e.Line != 2 || e.Path != "log.level" {
		t.Errorf("Error fields = %+v", e)
	}

	missing := filepath.Join(dir, "nope.yaml")
	_, err = Load(missing)
	if want := "config: " + missing + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error does not wrap fs.ErrNotExist: %v", err)
	}

	_, err = Load("testdata")
	if err == nil || !strings.HasPrefix(err.Error(), "config: testdata: ") {
		t.Errorf("Load(dir) = %v", err)
	}
}

// TestValidateBuilt validates configs built in Go: no line numbers.
func TestValidateBuilt(t *testing.T) {
	c, err := Parse(Default())
	if err != nil {
		t.Fatal(err)
	}
	c.pos = nil
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Listeners = append(c.Listeners, Listener{Name: "x", Type: "ssl", Bind: "[::]:7993", Handler: "default", IdleTimeout: -1})
	c.Gateway.Mountpoint = "a/#"
	err = c.Validate()
	want := strings.Join([]string{
		`config: gateway.mountpoint: mountpoint "a/#" must not contain the MQTT wildcards + or #`,
		`config: listeners[1].tls: an ssl listener needs tls with cert_file and key_file`,
		`config: listeners[1].bind: address "[::]:7993" clashes with listeners[0].bind ("0.0.0.0:7993")`,
		`config: listeners[1].idle_timeout: duration -1ns must not be negative`,
		`config: listeners[1].max_packet_size: 0B is out of range (want 1B to 16MiB)`,
		`config: listeners[1].proxy_protocol_timeout: must be greater than 0`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %v\nwant %s", err, want)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 6 || es[1].Path != "listeners[1].tls" {
		t.Errorf("Validate error = %#v, want an Errors of 6", err)
	}

	var zero Config
	err = zero.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "config: node.name: must not be empty\n") {
		t.Errorf("zero Validate = %v, want node.name first", err)
	}
}

// TestValidateReportsAll checks that every problem is reported, in the
// order of their lines, decoding errors among them.
func TestValidateReportsAll(t *testing.T) {
	in := doc(
		"listeners:",
		"  - {name: l, type: tpc, bind: ':1', handler: h}",
		"  - {name: m, type: tcp, bindd: ':2', handler: h}",
		"handlers:",
		"  h: {}",
		"log: {level: loud, format: [json]}",
		"node:",
		"  name: [x]",
	)
	_, err := Parse([]byte(in))
	want := strings.Join([]string{
		`config: line 2: listeners[0].type: unknown listener type "tpc" (want tcp, ssl, udp or dtls)`,
		`config: line 3: listeners[1]: unknown key "bindd"; did you mean "bind"?`,
		`config: line 5: handlers.h: handler needs grpc or wasm`,
		`config: line 6: log.format: want a string, got a list`,
		`config: line 6: log.level: unknown log level "loud" (want debug, info, warn or error)`,
		`config: line 8: node.name: want a string, got a list`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Path != "listeners[0].type" {
		t.Errorf("errors.As found %+v, want the first error", e)
	}
}

func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{Msg: "m"}, "config: m"},
		{Error{Line: 3, Msg: "m"}, "config: line 3: m"},
		{Error{Path: "a.b", Msg: "m"}, "config: a.b: m"},
		{Error{File: "f.yaml", Line: 3, Path: "a[0]", Msg: "m"}, "config: f.yaml: line 3: a[0]: m"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestPaths(t *testing.T) {
	p := joinKey(joinIndex(joinKey(joinKey("", "handlers"), `a.b"[x]`), 3), "tls")
	if want := `handlers["a.b\"[x]"][3].tls`; p != want {
		t.Fatalf("path = %s, want %s", p, want)
	}
	for _, want := range []string{`handlers["a.b\"[x]"][3]`, `handlers["a.b\"[x]"]`, "handlers", ""} {
		p = parentPath(p)
		if p != want {
			t.Fatalf("parent = %s, want %s", p, want)
		}
	}
}

// TestFieldDocs checks that every field of the exported structs has a doc
// comment that states its default.
func TestFieldDocs(t *testing.T) {
	fset := token.NewFileSet()
	for _, name := range []string{"config.go", "units.go"} {
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || !ts.Name.IsExported() {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fld := range st.Fields.List {
				for _, id := range fld.Names {
					if !id.IsExported() {
						continue
					}
					if doc := fld.Doc.Text(); doc == "" || !strings.Contains(doc, "Default:") {
						t.Errorf("%s: %s.%s: doc comment must state the default (\"Default: ...\")", fset.Position(id.Pos()), ts.Name.Name, id.Name)
					}
				}
			}
			return true
		})
	}
}

// TestFieldTags checks that every exported field has a yaml tag, so that
// the strict decoder sees it.
func TestFieldTags(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || seen[rt] || rt.PkgPath() != reflect.TypeFor[Config]().PkgPath() || rt == reflect.TypeFor[Rate]() {
			return
		}
		seen[rt] = true
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Tag.Get("yaml") == "" {
				t.Errorf("%s.%s has no yaml tag", rt.Name(), f.Name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[Config]())
	if len(seen) < 10 {
		t.Errorf("walked only %d struct types", len(seen))
	}
}
