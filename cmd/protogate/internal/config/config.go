// Package config loads and validates the protogate configuration file.
//
// The configuration is a single YAML document (see default.yaml, returned by
// [Default], for a commented example). It is decoded strictly: unknown keys,
// duplicate keys, values of the wrong type and more than one YAML document
// are errors. Every error is an [*Error] whose message names the line and the
// key path, for example
//
//	config: line 5: listeners[0]: unknown key "bindd"
//	config: line 12: listeners[0].type: unknown listener type "tpc" (want tcp or ssl)
//
// A key that is absent, or present with an empty (null) value, takes its
// default, documented on each struct field as "Default: ...". YAML anchors,
// aliases and merge keys ("<<: *common") are supported.
//
// Value types: [Duration] ("30s", or a bare integer of seconds), [ByteSize]
// ("1MiB"; KB = KiB = 1024 bytes as in EMQX) and [Rate] ("1000/s", "64KB/s").
//
// Relative file paths (node.data_dir, tls files, wasm modules) are resolved
// against the working directory of the process, as EMQX does for its
// certificate paths.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Listener types.
const (
	ListenerTCP = "tcp" // plain TCP
	ListenerSSL = "ssl" // TLS over TCP (EMQX calls it "ssl")
)

// gRPC ConnectionHandler service names (GRPCHandler.ServiceName).
const (
	// ServiceUnary is the EMQX 5 unary ExProto handler service
	// (emqx.exproto.v1.ConnectionUnaryHandler).
	ServiceUnary = "ConnectionUnaryHandler"
	// ServiceStream is the streaming ExProto handler service
	// (emqx.exproto.v1.ConnectionHandler).
	ServiceStream = "ConnectionHandler"
)

// Authentication user id types (Authentication.UserIDType).
const (
	UserIDUsername = "username"
	UserIDClientID = "clientid"
)

// Config is the whole configuration file.
type Config struct {
	// Node identifies this protogate process. Default: see Node.
	Node Node `yaml:"node"`
	// Log configures logging. Default: see Log.
	Log Log `yaml:"log"`
	// Broker configures the embedded NATS server. Default: see Broker.
	Broker Broker `yaml:"broker"`
	// Adapter configures the ExProto ConnectionAdapter gRPC server that
	// handlers call back into. Default: see Adapter.
	Adapter Adapter `yaml:"adapter"`
	// Gateway holds defaults inherited by every listener. Default: see
	// Gateway.
	Gateway Gateway `yaml:"gateway"`
	// Authentication is the built-in user database. Nil when the
	// "authentication" key is absent (or null): then every client is
	// allowed. Default: nil.
	Authentication *Authentication `yaml:"authentication,omitempty"`
	// Handlers maps a handler name (letters, digits, '_', '.', '-') to the
	// handler that implements the protocol. At least one is required.
	// Default: none.
	Handlers map[string]Handler `yaml:"handlers"`
	// Listeners are the client-facing sockets. At least one is required.
	// Default: none.
	Listeners []Listener `yaml:"listeners"`

	// pos maps key paths to the line they were found on (set by Parse).
	pos map[string]int
}

// Node identifies this protogate process.
type Node struct {
	// Name is the node name, also used as the NATS server name. Non-empty,
	// letters, digits, '_', '.' and '-' only. Default: "protogate-1".
	Name string `yaml:"name"`
	// DataDir is the directory for persistent state (JetStream storage for
	// MQTT sessions). Default: "./data".
	DataDir string `yaml:"data_dir"`
}

// Log configures logging.
type Log struct {
	// Level is the minimum level logged: debug, info, warn or error.
	// Default: "info".
	Level string `yaml:"level"`
	// Format is the log line format: text or json. Default: "text".
	Format string `yaml:"format"`
}

// Broker configures the embedded NATS server.
type Broker struct {
	// NATSListen is the host:port on which NATS clients can connect. Empty
	// means the server is reachable in-process only. Default: "".
	NATSListen string `yaml:"nats_listen"`
	// MQTTListen is the host:port of the MQTT 3.1.1 listener provided by
	// nats-server. Empty disables MQTT. MQTT needs JetStream, which stores
	// its data under Node.DataDir. Default: "".
	MQTTListen string `yaml:"mqtt_listen"`
	// MaxPayload is the largest message payload accepted, between 1 byte
	// and 64MiB. Default: 1MiB.
	MaxPayload ByteSize `yaml:"max_payload"`
}

// Adapter configures the ExProto ConnectionAdapter gRPC server.
type Adapter struct {
	// Bind is the host:port the ConnectionAdapter gRPC server listens on;
	// handlers must be able to reach it. Default: "127.0.0.1:9100".
	Bind string `yaml:"bind"`
	// TLS enables TLS on the adapter server when set. Default: nil (plain
	// HTTP/2).
	TLS *ServerTLS `yaml:"tls,omitempty"`
}

// ServerTLS is the TLS configuration of a server socket (adapter, ssl
// listeners).
type ServerTLS struct {
	// CertFile is the PEM certificate (chain) file. Required. Default: "".
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key file of CertFile. Required.
	// Default: "".
	KeyFile string `yaml:"key_file"`
	// CAFile is a PEM bundle of CAs used to verify client certificates.
	// Required when VerifyClient is true; without VerifyClient a client
	// certificate is optional but, if sent, verified against it.
	// Default: "" (no client certificates).
	CAFile string `yaml:"ca_file"`
	// VerifyClient requires every client to present a certificate signed by
	// CAFile (EMQX "verify_peer" with "fail_if_no_peer_cert"). Default: false.
	VerifyClient bool `yaml:"verify_client"`
}

// ClientTLS is the TLS configuration of an outgoing connection (gRPC
// handlers reached over https://).
type ClientTLS struct {
	// CAFile is a PEM bundle of CAs that verify the server. Default: ""
	// (the system roots).
	CAFile string `yaml:"ca_file"`
	// CertFile is the PEM client certificate for mutual TLS; set together
	// with KeyFile. Default: "" (no client certificate).
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Default: "".
	KeyFile string `yaml:"key_file"`
	// ServerName overrides the host name verified in the server
	// certificate (and sent as SNI). Default: "" (the host of the address).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables server certificate verification. For
	// testing only. Default: false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Gateway holds the defaults that listeners inherit.
type Gateway struct {
	// IdleTimeout closes a client connection that sends nothing for this
	// long; 0 disables it. Listeners inherit it. Default: 30s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Mountpoint is a topic prefix added to every topic a client publishes
	// or subscribes to, e.g. "exproto/${clientid}/". It may contain the
	// placeholders ${clientid} and ${username}, and no MQTT wildcards.
	// Listeners inherit it. Default: "" (none).
	Mountpoint string `yaml:"mountpoint"`
}

// Authentication is the built-in user database (like EMQX's built-in
// database authenticator).
type Authentication struct {
	// UserIDType selects what a client's credentials are matched on:
	// username or clientid. Default: "username".
	UserIDType string `yaml:"user_id_type"`
	// Users maps a user id to its password: either the password in plain
	// text, or "sha256:" (any case) followed by the 64 hex digits of the
	// SHA-256 digest of the password. At least one user is required; use
	// Verify to check a password. Default: none.
	Users map[string]string `yaml:"users"`
}

// Handler implements a protocol. At least one of GRPC and Wasm is set.
type Handler struct {
	// GRPC is an ExProto ConnectionHandler reached over gRPC.
	// Default: nil.
	GRPC *GRPCHandler `yaml:"grpc,omitempty"`
	// Wasm is a WebAssembly handler (parsed and validated; not implemented
	// yet). Default: nil.
	Wasm *WasmHandler `yaml:"wasm,omitempty"`
}

// GRPCHandler is an ExProto ConnectionHandler gRPC server.
type GRPCHandler struct {
	// Address is the handler's URL: http:// or https:// followed by
	// host:port (host names allowed), e.g. "http://127.0.0.1:9001".
	// https:// enables TLS. Use Target for the dial address. Required.
	// Default: "".
	Address string `yaml:"address"`
	// ServiceName is the gRPC service called: ConnectionUnaryHandler or
	// ConnectionHandler (streaming). Default: "ConnectionUnaryHandler".
	ServiceName string `yaml:"service_name"`
	// Timeout is the deadline of each callback, > 0. Default: 30s.
	Timeout Duration `yaml:"timeout"`
	// TLS configures the https:// connection; refused with http://.
	// Default: nil (system roots, no client certificate).
	TLS *ClientTLS `yaml:"tls,omitempty"`
}

// WasmHandler is a WebAssembly handler module.
type WasmHandler struct {
	// Path is the module file, or "builtin:<name>" for a module compiled
	// into protogate. Required. Default: "".
	Path string `yaml:"path"`
	// Instances is the number of module instances, 0 to 1024; 0 means
	// GOMAXPROCS. Default: 0.
	Instances int `yaml:"instances"`
	// MemoryLimit caps the linear memory of each instance, 64KiB to 4GiB.
	// Default: 64MiB.
	MemoryLimit ByteSize `yaml:"memory_limit"`
	// CallTimeout is the deadline of each call into the module, > 0.
	// Default: 100ms.
	CallTimeout Duration `yaml:"call_timeout"`
}

// Listener is a client-facing socket.
type Listener struct {
	// Name identifies the listener in logs and metrics; unique, letters,
	// digits, '_', '.' and '-'. Required. Default: "".
	Name string `yaml:"name"`
	// Type is the transport: tcp or ssl (udp and dtls are not supported
	// yet). Required. Default: "".
	Type string `yaml:"type"`
	// Bind is the host:port to listen on; port 0 picks a free port. Must not
	// clash with another listener, adapter.bind or the broker listeners.
	// Required. Default: "".
	Bind string `yaml:"bind"`
	// Handler names the entry of Config.Handlers that serves this
	// listener's connections. Required. Default: "".
	Handler string `yaml:"handler"`
	// IdleTimeout overrides Gateway.IdleTimeout; 0 disables it.
	// Default: gateway.idle_timeout.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Mountpoint overrides Gateway.Mountpoint (same syntax).
	// Default: gateway.mountpoint.
	Mountpoint string `yaml:"mountpoint"`
	// EnableAuthn makes clients of this listener authenticate against
	// Config.Authentication; it has no effect when that is nil. Set false
	// to let every client of this listener in. Default: true.
	EnableAuthn bool `yaml:"enable_authn"`
	// TLS is the server TLS configuration: required for ssl (with
	// cert_file and key_file), refused for tcp. Default: nil.
	TLS *ServerTLS `yaml:"tls,omitempty"`
}

func (c *Config) setDefaults() {
	c.Node = Node{Name: "protogate-1", DataDir: "./data"}
	c.Log = Log{Level: "info", Format: "text"}
	c.Broker = Broker{MaxPayload: 1 * MiB}
	c.Adapter = Adapter{Bind: "127.0.0.1:9100"}
	c.Gateway = Gateway{IdleTimeout: Duration(30 * time.Second)}
}

func (a *Authentication) setDefaults() { a.UserIDType = UserIDUsername }

func (g *GRPCHandler) setDefaults() {
	g.ServiceName = ServiceUnary
	g.Timeout = Duration(30 * time.Second)
}

func (w *WasmHandler) setDefaults() {
	w.MemoryLimit = 64 * MiB
	w.CallTimeout = Duration(100 * time.Millisecond)
}

func (l *Listener) setDefaults() { l.EnableAuthn = true }

//go:embed default.yaml
var defaultYAML string

// Default returns the default configuration file, a commented starting
// point for users. Parse(Default()) succeeds.
func Default() []byte { return []byte(defaultYAML) }

// Load reads and parses the configuration file at path. Errors are
// [*Error] values with File set, e.g.
// "config: gw.yaml: line 3: log.level: ...".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, &Error{File: path, Msg: msg, Err: err}
	}
	c, err := Parse(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = path
			return nil, e
		}
		return nil, &Error{File: path, Msg: err.Error(), Err: err}
	}
	return c, nil
}

// Parse decodes a configuration document strictly, applies defaults
// (listeners inherit gateway.idle_timeout and gateway.mountpoint unless set)
// and validates the result. Errors are [*Error] values.
func Parse(data []byte) (*Config, error) {
	root, err := parseYAML(data)
	if err != nil {
		return nil, err
	}
	c := new(Config)
	c.setDefaults()
	d := &decoder{
		pos:    map[string]int{"": root.Line},
		set:    map[string]bool{},
		budget: maxDecodeWork,
	}
	if err := d.decode(root, reflect.ValueOf(c).Elem(), ""); err != nil {
		return nil, err
	}
	c.pos = d.pos
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := joinIndex("listeners", i)
		if !d.set[p+".idle_timeout"] {
			l.IdleTimeout = c.Gateway.IdleTimeout
		}
		if !d.set[p+".mountpoint"] {
			l.Mountpoint = c.Gateway.Mountpoint
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// yamlLine matches the "yaml: line N: msg" form of yaml.v3 syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses data into the root node of its single document.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		// yaml.v3 panics on a few internal errors; never let them escape.
		if r := recover(); r != nil {
			root, err = nil, errorf(0, "", "invalid yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errorf(1, "", "document is empty")
		}
		return nil, yamlError(err)
	}
	// Trailing empty documents (a final "---") are harmless; anything else
	// after the first document is refused.
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, yamlError(err)
		}
		if len(extra.Content) == 1 && extra.Content[0] != nil && isNull(extra.Content[0]) && extra.Content[0].Value == "" {
			continue
		}
		return nil, errorf(extra.Line, "", "found a second yaml document; want exactly one")
	}
	root = &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) != 1 || doc.Content[0] == nil {
			return nil, errorf(1, "", "document is empty")
		}
		root = doc.Content[0]
	}
	return root, nil
}

// yamlError converts a yaml.v3 syntax error into an *Error.
func yamlError(err error) *Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Msg: "invalid yaml: " + m[2], Err: err}
	}
	return &Error{Msg: "invalid yaml: " + strings.TrimPrefix(msg, "yaml: "), Err: err}
}

// lineOf returns the line of path, or of its closest ancestor that was in
// the document, or 0.
func (c *Config) lineOf(path string) int {
	for {
		if l, ok := c.pos[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}
