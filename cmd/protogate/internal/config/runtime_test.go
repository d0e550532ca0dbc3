package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/guests/builtin"
)

// Tiny WebAssembly modules for the module file checks.
var (
	// emptyModule is the smallest valid module: the header alone.
	emptyModule = []byte("\x00asm\x01\x00\x00\x00")
	// bigMemoryModule declares a memory of at least 2000 pages (125 MiB),
	// over the default limit of 64 MiB.
	bigMemoryModule = append(append([]byte{}, emptyModule...), 0x05, 0x04, 0x01, 0x00, 0xd0, 0x0f)
	// truncatedModule has a section longer than the file.
	truncatedModule = append(append([]byte{}, emptyModule...), 0x01, 0x7f, 0x01)
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWasmModuleFile(t *testing.T) {
	goSource := writeFile(t, "main.go", []byte("package main\n\nfunc main() {}\n"))
	empty := writeFile(t, "empty.wasm", nil)
	short := writeFile(t, "short.wasm", []byte("\x00asm\x01"))
	component := writeFile(t, "component.wasm", []byte("\x00asm\x0d\x00\x01\x00"))
	echo, _ := builtin.Lookup("echo")
	ok := writeFile(t, "ok.wasm", echo)
	notHandler := writeFile(t, "empty-module.wasm", emptyModule)
	big := writeFile(t, "big.wasm", bigMemoryModule)
	truncated := writeFile(t, "truncated.wasm", truncatedModule)
	for _, tc := range []struct {
		name, path string
		parse      string // Parse error ("" for none)
		check      string // Check error ("" for none)
	}{
		{"go source", goSource, "is not a WebAssembly module (it does not start with \\0asm); build one with GOOS=wasip1", "is not a WebAssembly module"},
		{"empty file", empty, "is not a WebAssembly module", "is not a WebAssembly module"},
		{"short header", short, "ends within its header", "ends within its header"},
		{"component", component, "not a WebAssembly core module of binary version 1", "binary version 1"},
		{"directory", t.TempDir(), "is a directory", "is a directory"},
		{"device", "/dev/zero", "is not a regular file", "is not a regular file"},
		{"missing", filepath.Join(t.TempDir(), "nope.wasm"), "does not exist", "does not exist"},
		{"valid", ok, "", ""},
		{"not a protogate handler", notHandler, "", "not a protogate handler: the module exports no protogate_abi_v"},
		{"memory over the limit", big, "", "cannot be loaded"},
		{"truncated", truncated, "", "cannot be loaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := withHandler("    wasm:", "      path: '"+tc.path+"'")
			cfg := writeFile(t, "gw.yaml", []byte(in))
			for _, step := range []struct {
				name string
				load func(string) (*Config, error)
				want string
			}{{"Load", Load, tc.parse}, {"Check", Check, tc.check}} {
				_, err := step.load(cfg)
				switch {
				case step.want == "" && err != nil:
					t.Errorf("%s: %v", step.name, err)
				case step.want != "" && (err == nil || !strings.Contains(err.Error(), step.want)):
					t.Errorf("%s = %v, want an error containing %q", step.name, err, step.want)
				case step.want != "" && !strings.Contains(err.Error(), "line 4: handlers.h.wasm.path: "):
					t.Errorf("%s = %v, want it to name line 4 and handlers.h.wasm.path", step.name, err)
				}
			}

			// With a grpc fallback the same problem is a warning.
			in = withHandler("    wasm:", "      path: '"+tc.path+"'", "    grpc: {address: 'http://127.0.0.1:9001'}")
			c, err := Check(writeFile(t, "fallback.yaml", []byte(in)))
			if err != nil {
				t.Fatalf("with a fallback: %v", err)
			}
			w := c.Warnings()
			if tc.check == "" && len(w) != 0 || tc.check != "" && (len(w) != 1 || !strings.Contains(w[0].Error(), tc.check) ||
				!strings.Contains(w[0].Error(), "the grpc handler serves until it is fixed") || w[0].Line != 4) {
				t.Errorf("warnings = %v, want one containing %q", w, tc.check)
			}
		})
	}
}

// TestRealModuleCompiles checks that Check accepts a real guest module
// file, and logs how long it took.
func TestRealModuleCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a 3 MB module")
	}
	wasm, ok := builtin.Lookup("linepubsub")
	if !ok {
		t.Fatal("no builtin:linepubsub")
	}
	in := withHandler("    wasm: {path: '" + writeFile(t, "linepubsub.wasm", wasm) + "'}")
	start := time.Now()
	c, err := Check(writeFile(t, "gw.yaml", []byte(in)))
	if err != nil || len(c.Warnings()) != 0 {
		t.Fatalf("Check = %v, warnings %v", err, c.Warnings())
	}
	t.Logf("Check of a %d-byte module took %v", len(wasm), time.Since(start))
}

func TestPasswords(t *testing.T) {
	sum := sha256.Sum256([]byte("secret"))
	digest := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		stored string
		err    string
	}{
		{"secret", ""},
		{"sha256:" + digest, ""},
		{"SHA256:" + digest, ""},
		{"Sha256:" + strings.ToUpper(digest), ""},
		{"SHA256:" + digest[:63], "a sha256: password must be followed by 64 hex digits"},
		{"sha256:" + digest + "0", "a sha256: password must be followed by 64 hex digits"},
		{"sha256:", "a sha256: password must be followed by 64 hex digits"},
	} {
		_, err := Parse([]byte(withBase("authentication:", "  users:", "    u: '"+tc.stored+"'")))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.stored, err)
		case tc.err != "" && (err == nil || err.Error() != "config: line 3: authentication.users.u: "+tc.err+" (the SHA-256 digest of the password)"):
			t.Errorf("%q: err = %v, want %q", tc.stored, err, tc.err)
		}
	}
}

func TestLoadedFiles(t *testing.T) {
	longKey := strings.Repeat("ab", 65)
	pskLong := writeFile(t, "long.txt", []byte("dev:"+longKey+"\n"))
	pskBad := writeFile(t, "bad.txt", []byte("# keys\ndev-1 00ff\n"))
	dtls := func(psk string) string {
		return withListener("  - name: d", "    type: dtls", "    bind: ':1'", "    handler: h", "    psk: {identities_file: '"+psk+"'}")
	}
	ssl := func(cert, key string) string {
		return withListener("  - name: s", "    type: ssl", "    bind: ':1'", "    handler: h", "    tls: {cert_file: '"+cert+"', key_file: '"+key+"'}")
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"psk file key too long", dtls(pskLong), `config: line 10: listeners[0].psk.identities_file: psk file ` + pskLong + `: the key of identity "dev" is 65 bytes long (want 1 to 64 bytes)`},
		{"psk file bad line", dtls(pskBad), `config: line 10: listeners[0].psk.identities_file: psk file ` + pskBad + `:2: want identity:hexkey`},
		{"tls key of another cert", ssl("testdata/certs/server.pem", "testdata/certs/client.key"), `config: line 10: listeners[0].tls: cert_file and key_file: tls: private key does not match public key`},
		{"tls not pem", ssl("testdata/psk.txt", "testdata/certs/server.key"), `config: line 10: listeners[0].tls: cert_file and key_file: tls: failed to find any PEM data in certificate input`},
		{"client tls ca not pem", withHandler("    grpc:", "      address: https://a:1", "      tls: {ca_file: testdata/psk.txt}"), `config: line 5: handlers.h.grpc.tls: ca_file testdata/psk.txt: no PEM certificates`},
		{"mountpoint reserved", withBase("gateway: {mountpoint: '$SYS/'}"), `config: line 1: gateway.mountpoint: mountpoint "$SYS/" cannot prefix a topic: reserved subject: "$SYS.topic" starts with $`},
		{"mountpoint space", withBase("gateway: {mountpoint: 'my devices/'}"), `config: line 1: gateway.mountpoint: mountpoint "my devices/" cannot prefix a topic: unsupported character ' ' at byte 2`},
		{"mountpoint wildcard level", withBase("gateway: {mountpoint: 'a/*/'}"), `config: line 1: gateway.mountpoint: mountpoint "a/*/" cannot prefix a topic: wildcard not allowed in publish topic: "a/*/topic": level "*" is a NATS wildcard`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestAdapterBindOnlyWhenNeeded: adapter.bind clashes only when a handler
// has a grpc block, since the adapter is opened only then.
func TestAdapterBindOnlyWhenNeeded(t *testing.T) {
	wasmOnly := doc("handlers:", "  h: {wasm: {path: 'builtin:echo'}}", "listeners:", "  - {name: l, type: tcp, bind: '127.0.0.1:9100', handler: h}")
	if _, err := Parse([]byte(wasmOnly)); err != nil {
		t.Errorf("wasm-only: %v", err)
	}
	withGRPC := doc("handlers:", "  h: {wasm: {path: 'builtin:echo'}, grpc: {address: 'http://127.0.0.1:9001'}}", "listeners:", "  - {name: l, type: tcp, bind: '127.0.0.1:9100', handler: h}")
	if _, err := Parse([]byte(withGRPC)); err == nil || !strings.Contains(err.Error(), `clashes with adapter.bind`) {
		t.Errorf("with a grpc fallback: %v", err)
	}
	bad := doc("adapter: {bind: '9100'}", "handlers:", "  h: {wasm: {path: 'builtin:echo'}}", "listeners:", "  - {name: l, type: tcp, bind: ':1', handler: h}")
	if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "adapter.bind: address \"9100\" is only a port") {
		t.Errorf("a bad adapter.bind is still refused: %v", err)
	}
}

// TestModuleCompiledUnderValidLimitOnly: a bad memory_limit is reported
// once, not also as a module that does not fit it.
func TestModuleCompiledUnderValidLimitOnly(t *testing.T) {
	in := withHandler("    wasm:", "      path: '"+writeFile(t, "big.wasm", bigMemoryModule)+"'", "      memory_limit: 1KB")
	_, err := Check(writeFile(t, "gw.yaml", []byte(in)))
	const want = "line 5: handlers.h.wasm.memory_limit: 1KiB is out of range (want 64KiB to 4GiB)"
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want) {
		t.Errorf("Check = %v, want only %q", err, want)
	}
	in = withHandler("    wasm:", "      path: '"+writeFile(t, "big.wasm", bigMemoryModule)+"'", "      memory_limit: 256MiB")
	// The memory fits; what is left to refuse is that the module is no
	// protogate handler.
	if _, err := Check(writeFile(t, "gw.yaml", []byte(in))); err == nil || !strings.Contains(err.Error(), "not a protogate handler") {
		t.Errorf("a 125 MiB memory under a 256MiB limit: %v, want only the missing exports refused", err)
	}
}

func TestAdminCredentials(t *testing.T) {
	sum := sha256.Sum256([]byte("pw-b"))
	a := &Admin{APIKeys: []APIKey{{"a", "pw-a"}, {"b", "SHA256:" + strings.ToUpper(hex.EncodeToString(sum[:]))}}}
	creds, err := a.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, secret string
		ok          bool
	}{
		{"a", "pw-a", true},
		{"b", "pw-b", true},
		{"a", "pw-b", false},
		{"b", "SHA256:" + strings.ToUpper(hex.EncodeToString(sum[:])), false},
		{"c", "pw-a", false},
	} {
		if got := creds[tc.key].Match(tc.secret); got != tc.ok {
			t.Errorf("key %q secret %q: Match = %v, want %v", tc.key, tc.secret, got, tc.ok)
		}
	}
	if creds, err := (&Admin{}).Credentials(); creds != nil || err != nil {
		t.Errorf("no api keys: Credentials = %v, %v; want nil, nil", creds, err)
	}
	for _, keys := range [][]APIKey{{{"", "s"}}, {{"a:b", "s"}}, {{"a", "s"}, {"a", "t"}}, {{"a", ""}}, {{"a", "sha256:00"}}} {
		if _, err := (&Admin{APIKeys: keys}).Credentials(); err == nil || !strings.HasPrefix(err.Error(), "config: admin api key ") {
			t.Errorf("%+v: Credentials error = %v", keys, err)
		} else if strings.Contains(err.Error(), "sha256:00") {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
}
