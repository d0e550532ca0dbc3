package config

// The functions in this file turn configuration values into what the
// gateway runs with. The validator calls the same ones, so that a value
// that validates is the value that runs, and one the runtime would refuse
// is refused by "protogate validate" too.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"

	"github.com/protogate/protogate/wasmhost"

	"github.com/protogate/protogate/gateway/authn"
	"github.com/protogate/protogate/gateway/framing"
	"github.com/protogate/protogate/gateway/listener"
)

// TLSConfig loads the files of t into the configuration of a TLS server:
// the certificate and its key, and with CAFile the pool that verifies
// client certificates (required with VerifyClient, optional otherwise).
func (t *ServerTLS) TLSConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("config: cert_file and key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := loadPool(t.CAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if t.VerifyClient {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// TLSConfig loads the files of t into the configuration of a TLS client.
func (t *ClientTLS) TLSConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pool, err := loadPool(t.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("config: cert_file and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config: ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("config: ca_file %s: no PEM certificates", file)
	}
	return pool, nil
}

// Keys returns the pre-shared keys of p: those of IdentitiesFile (read by
// listener.LoadPSKFile), then those of Identities, which win over the
// file's for the same identity. Every key is 1 to MaxPSKBytes bytes.
func (p *PSK) Keys() (map[string][]byte, error) {
	keys := make(map[string][]byte)
	if p.IdentitiesFile != "" {
		m, err := loadPSKFile(p.IdentitiesFile)
		if err != nil {
			return nil, err
		}
		maps.Copy(keys, m)
	}
	for id, h := range p.Identities {
		key, msg := parsePSKKey(h)
		if msg != "" {
			return nil, fmt.Errorf("config: psk identity %q: %s", id, msg)
		}
		keys[id] = key
	}
	return keys, nil
}

// parsePSKKey decodes a hex PSK key; msg says what is wrong with it. The
// key is a secret: msg never quotes it.
func parsePSKKey(h string) (key []byte, msg string) {
	switch {
	case h == "":
		return nil, "key must not be empty (want 2 to 128 hex digits: 1 to 64 bytes)"
	case !isHex(h):
		return nil, "key must be hex digits (want 2 to 128 hex digits: 1 to 64 bytes)"
	case len(h)%2 != 0:
		return nil, "key has an odd number of hex digits (want 2 to 128 hex digits: 1 to 64 bytes)"
	case len(h)/2 > MaxPSKBytes:
		return nil, fmt.Sprintf("key is %d bytes long (want 1 to 64 bytes: 2 to 128 hex digits)", len(h)/2)
	}
	key = make([]byte, len(h)/2)
	for i := range key {
		key[i] = unhex(h[2*i])<<4 | unhex(h[2*i+1])
	}
	return key, ""
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// loadPSKFile reads a PSK identities file with listener.LoadPSKFile and
// checks the length of its keys as parsePSKKey does.
func loadPSKFile(name string) (map[string][]byte, error) {
	m, err := listener.LoadPSKFile(name)
	if err != nil {
		return nil, err
	}
	for _, id := range sortedKeys(m) {
		if n := len(m[id]); n > MaxPSKBytes {
			return nil, fmt.Errorf("config: psk file %s: the key of identity %q is %d bytes long (want 1 to 64 bytes)", name, id, n)
		}
	}
	return m, nil
}

// Credentials returns the API keys of a, each with its secret parsed by
// authn.ParsePassword (the parser the validator checks them with), for the
// admin server to check HTTP Basic credentials against with
// authn.Password.Match. It is nil when a has no API keys: then no request
// is authenticated. Errors never quote a secret.
func (a *Admin) Credentials() (map[string]authn.Password, error) {
	if len(a.APIKeys) == 0 {
		return nil, nil
	}
	creds := make(map[string]authn.Password, len(a.APIKeys))
	for _, k := range a.APIKeys {
		if k.Key == "" || strings.Contains(k.Key, ":") {
			return nil, fmt.Errorf("config: admin api key %q: want a non-empty key without ':'", k.Key)
		}
		if _, dup := creds[k.Key]; dup {
			return nil, fmt.Errorf("config: admin api key %q: duplicate key", k.Key)
		}
		p, err := authn.ParsePassword(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("config: admin api key %q: secret: %w", k.Key, err)
		}
		creds[k.Key] = p
	}
	return creds, nil
}

// SlogLevel returns the slog level named by l.Level.
func (l Log) SlogLevel() (slog.Level, error) {
	switch l.Level {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("config: unknown log level %q (want debug, info, warn or error)", l.Level)
}

// builtinPrefix starts the Path of a module compiled into protogate.
const builtinPrefix = "builtin:"

// Builtin returns the name of the built-in module w.Path names
// ("builtin:echo" names "echo"), or false when Path is a file.
func (w *WasmHandler) Builtin() (name string, ok bool) {
	return strings.CutPrefix(w.Path, builtinPrefix)
}

// FramingConfig returns the framing.Config of the listener's Framing (the
// zero Config, no framing, when Framing is nil). MaxFrame is the
// listener's MaxPacketSize.
func (l *Listener) FramingConfig() framing.Config {
	f := l.Framing
	if f == nil {
		return framing.Config{}
	}
	fc := framing.Config{MaxFrame: int(l.MaxPacketSize)}
	switch f.Type {
	case FramingLine:
		fc.Kind = framing.Line
	case FramingLength:
		fc.Kind, fc.LengthBytes, fc.BigEndian = framing.Length, f.Bytes, f.Endian != "little"
	default:
		fc.Kind = -1 // refused by Validate
	}
	return fc
}

// NeedsAdapter reports whether some handler has a grpc block (a wasm
// handler's fallback counts): only then is the ConnectionAdapter served.
func (c *Config) NeedsAdapter() bool {
	for _, h := range c.Handlers {
		if h.GRPC != nil {
			return true
		}
	}
	return false
}

// wasmHeader is the start of every WebAssembly core module of binary
// version 1: the magic number "\0asm" and the version, little-endian.
var wasmHeader = []byte("\x00asm\x01\x00\x00\x00")

// checkModuleFile reports what is wrong with the module file name, or "".
// It reads the header; with compile, it also compiles the whole module
// with wazero, under the memory limit of the handler, which finds what
// protogate would refuse when loading it: a malformed or invalid module,
// or one whose memory does not fit the limit. Compiling takes about half
// a second for a 3 MB Go module, so Parse leaves it to Check.
func checkModuleFile(name string, memoryLimit ByteSize, compile bool) string {
	fi, err := os.Stat(name)
	if err != nil {
		return fileProblem(name, err)
	}
	if msg := notRegular(name, fi); msg != "" {
		return msg
	}
	f, err := os.Open(name)
	if err != nil {
		return fileProblem(name, err)
	}
	defer f.Close()
	head := make([]byte, len(wasmHeader))
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("cannot read %q: %v", name, err)
	}
	head = head[:n]
	switch {
	case !bytes.HasPrefix(head, wasmHeader[:4]):
		return fmt.Sprintf("%q is not a WebAssembly module (it does not start with \\0asm); build one with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared", name)
	case len(head) < len(wasmHeader):
		return fmt.Sprintf("%q is not a WebAssembly module: it ends within its header", name)
	case !bytes.Equal(head, wasmHeader):
		return fmt.Sprintf("%q is not a WebAssembly core module of binary version 1 (a component or a newer format?)", name)
	}
	if !compile {
		return ""
	}
	wasm, err := os.ReadFile(name)
	if err != nil {
		return fmt.Sprintf("cannot read %q: %v", name, err)
	}
	// What the Wasm host checks when it loads the module, without
	// running it.
	if err := wasmhost.Check(wasm, uint64(memoryLimit)); err != nil {
		return fmt.Sprintf("%q cannot be loaded: %v", name, err)
	}
	return ""
}
