// Package config loads and validates the protogate configuration file.
//
// The configuration is a single YAML document (see default.yaml, returned by
// [Default], for a commented example). It is decoded strictly: unknown keys,
// duplicate keys, values of the wrong type and more than one YAML document
// are errors. The error of [Parse], [Load] and [Check] is an [Errors] that
// lists every problem of the document, each an [*Error] whose message names
// the line and the key path, one per line, for example
//
//	config: line 5: listeners[0]: unknown key "bindd"; did you mean "bind"?
//	config: line 12: listeners[0].type: unknown listener type "tpc" (want tcp, ssl, udp or dtls)
//
// Values that the gateway parses again when it starts (handler addresses,
// passwords, TLS and PSK files, framing, mountpoints) are validated with the
// functions the gateway uses (remote.ParseAddress, authn.ParsePassword, the
// methods in runtime.go, ...), so that what validates is what runs.
//
// A key that is absent, or present with an empty (null) value, takes its
// default, documented on each struct field as "Default: ...". YAML anchors,
// aliases and merge keys ("<<: *common") are supported.
//
// Value types: [Duration] ("30s", or a bare integer of seconds), [ByteSize]
// ("1MiB"; KB = KiB = 1024 bytes as in EMQX) and [Rate] ("1000/s", "64KB/s").
//
// Relative file paths (node.data_dir, tls files, psk identities files, wasm
// modules) are resolved against the working directory of the process, as
// EMQX does for its certificate paths.
//
// Wasm module files are checked for the WebAssembly header by Parse and
// compiled by [Check]; with a grpc fallback, a module that cannot load is a
// warning ([Config.Warnings]) rather than an error, since protogate then
// serves through the fallback until the file is fixed.
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

	"github.com/protogate/protogate/gateway/remote"
)

// Listener types.
const (
	ListenerTCP  = "tcp"  // plain TCP
	ListenerSSL  = "ssl"  // TLS over TCP (EMQX calls it "ssl")
	ListenerUDP  = "udp"  // plain UDP datagrams
	ListenerDTLS = "dtls" // DTLS over UDP, with certificates or pre-shared keys
)

// Framing types (Framing.Type).
const (
	// FramingLine splits the byte stream into lines ending in "\n" or
	// "\r\n"; a frame is one line without its line ending.
	FramingLine = "line"
	// FramingLength splits the byte stream into frames that each start with
	// a length prefix of Framing.Bytes bytes in Framing.Endian byte order.
	FramingLength = "length"
)

// Listener limits and defaults.
const (
	// DefaultMaxConnections is the default Listener.MaxConnections (EMQX's
	// dashboard default).
	DefaultMaxConnections = 1024000
	// DefaultMaxConnRate is the default Listener.MaxConnRate.
	DefaultMaxConnRate = 1000
	// DefaultMaxPacketSize is the default Listener.MaxPacketSize of tcp and
	// ssl listeners.
	DefaultMaxPacketSize = 64 * KiB
	// MaxDatagramSize is the largest Listener.MaxPacketSize of udp and dtls
	// listeners, and their default.
	MaxDatagramSize ByteSize = 65535
	// MaxStreamPacketSize is the largest Listener.MaxPacketSize of tcp and
	// ssl listeners.
	MaxStreamPacketSize = 16 * MiB
	// MaxPSKBytes is the longest DTLS pre-shared key, in bytes.
	MaxPSKBytes = 64
	// DefaultMaxSubscriptions is the default Gateway.MaxSubscriptions.
	DefaultMaxSubscriptions = 1000
)

// DefaultAdminBind is the default Admin.Bind: the port of EMQX's
// dashboard, on the loopback interface only.
const DefaultAdminBind = "127.0.0.1:18083"

// gRPC ConnectionHandler service names (GRPCHandler.ServiceName).
const (
	// ServiceUnary is the EMQX 5 unary ExProto handler service
	// (emqx.exproto.v1.ConnectionUnaryHandler).
	ServiceUnary = remote.ServiceUnary
	// ServiceStream is the streaming ExProto handler service
	// (emqx.exproto.v1.ConnectionHandler).
	ServiceStream = remote.ServiceStreaming
	// ServiceLane is protogate's own fast lane
	// (protogate.v1.StreamHandler, proto/protogate.proto).
	ServiceLane = remote.ServiceLane
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
	// gRPC handlers call back into. It is opened only when some handler has
	// a grpc block. Default: see Adapter.
	Adapter Adapter `yaml:"adapter"`
	// Admin configures the admin HTTP server: the admin API that
	// "protogate ctl" and the dashboard use, health checks and metrics.
	// Default: see Admin.
	Admin Admin `yaml:"admin"`
	// Gateway holds defaults inherited by every listener. Default: see
	// Gateway.
	Gateway Gateway `yaml:"gateway"`
	// Registry keeps client ids unique across the nodes of a cluster.
	// Default: see Registry.
	Registry Registry `yaml:"registry"`
	// SecurityProfile is EMQX's security profile: legacy or hardened. In
	// hardened, a failing authentication or authorization backend denies
	// (legacy: it is skipped), no authentication configured denies every
	// client (legacy: allows), and authorization.no_match defaults to
	// deny (legacy: allow). Default: legacy.
	SecurityProfile string `yaml:"security_profile"`
	// Authentication is the authenticator chain: a list of
	// authenticators tried in order (the first allow or deny decides), or
	// the built-in user database alone as a mapping (user_id_type, users).
	// Nil when the "authentication" key is absent (or null): then every
	// client is allowed (legacy profile). Default: nil.
	Authentication *Authentication `yaml:"authentication,omitempty"`
	// Authorization decides what authenticated clients may publish and
	// subscribe to. Nil when absent: everything is allowed. Default: nil.
	Authorization *Authorization `yaml:"authorization,omitempty"`
	// Handlers maps a handler name (letters, digits, '_', '.', '-') to the
	// handler that implements the protocol. At least one is required.
	// Default: none.
	Handlers map[string]Handler `yaml:"handlers"`
	// Listeners are the client-facing sockets. At least one is required.
	// Default: none.
	Listeners []Listener `yaml:"listeners"`

	// pos maps key paths to the line they were found on (set by Parse).
	pos map[string]int
	// set holds the key paths that were given a non-null value (set by
	// Parse).
	set map[string]bool
	// warnings are set by Validate; see Warnings.
	warnings []*Error
}

// Node identifies this protogate process.
type Node struct {
	// Name is the node name, also used as the NATS server name. Non-empty,
	// letters, digits, '_', '.' and '-' only. Default: "protogate-1".
	Name string `yaml:"name"`
	// DataDir is the directory for persistent state: the compile cache of
	// wasm modules (wasm-cache/, so that a restart does not compile them
	// again) and, with MQTT on, JetStream storage for MQTT sessions (nats/).
	// Default: "./data".
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
	// MaxBuffered bounds the messages the broker holds for the gateway's
	// subscribers while they are behind, between 1MiB and 1GiB.
	// Publishing devices pause long before it fills; messages from NATS
	// and MQTT clients beyond it are dropped and counted.
	// Default: 64MiB.
	MaxBuffered ByteSize `yaml:"max_buffered"`
	// Users may log in to NATSListen and MQTTListen with a user name and
	// password (MQTT clients in CONNECT, NATS clients as user info). With
	// at least one user or nkey, clients must log in, unless
	// AllowAnonymous. Default: none.
	Users []BrokerUser `yaml:"users,omitempty"`
	// NKeys may log in to NATSListen by signing with a user nkey; MQTT
	// clients cannot. Default: none.
	NKeys []BrokerNKey `yaml:"nkeys,omitempty"`
	// AllowAnonymous lets clients that send no credentials in, next to
	// Users and NKeys, with every subject but the reserved ones (see
	// BrokerPermissions). Without users and nkeys clients are anonymous
	// anyway; but a NATSListen or MQTTListen whose host is not a
	// loopback address (127.0.0.0/8, ::1, localhost) is then refused
	// unless AllowAnonymous is true (or TLS has VerifyClient): anyone on
	// the network could read every device's traffic and publish to every
	// device. Default: false.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// TLS makes both listeners TLS only; with VerifyClient every client
	// must present a certificate signed by CAFile. The gateway's own
	// connection is in-process and needs none. Default: nil (plain TCP).
	TLS *ServerTLS `yaml:"tls,omitempty"`
	// Cluster joins this node to other protogate nodes (NATS routes), in
	// one pub/sub space. Node.Name must then be set, unique in the
	// cluster. Nil when absent. Default: nil.
	Cluster *BrokerCluster `yaml:"cluster,omitempty"`
	// LeafNode joins this node to an existing NATS server or cluster as a
	// leaf node. Nil when absent. Default: nil.
	LeafNode *BrokerLeafNode `yaml:"leafnode,omitempty"`
}

// BrokerCluster joins the embedded NATS server to the other protogate
// nodes of a cluster. Every node has the same Name and Routes (its own
// route included) and a unique Node.Name. A clustered node always listens
// for NATS clients: with NATSListen empty, on 127.0.0.1 with a random
// port. It runs JetStream under Node.DataDir/nats, clustered with the
// others.
type BrokerCluster struct {
	// Name is the cluster name, the same on every node: letters, digits,
	// '_' and '-'. Required. Default: "".
	Name string `yaml:"name"`
	// Listen is the host:port the routes of the other nodes connect to.
	// Required. Default: "".
	Listen string `yaml:"listen"`
	// Advertise is the host:port the other nodes are told to reach this
	// one on, when Listen is not reachable as is (0.0.0.0, NAT).
	// Default: "".
	Advertise string `yaml:"advertise"`
	// Routes are the route URLs of every node of the cluster, this one
	// included (nats-server skips its own): nats-route://host:port (or
	// nats://, tls://). At least one. Default: none.
	Routes []string `yaml:"routes"`
	// User and Password, set together, are required of the routes that
	// connect to this node and sent on those it opens (unless the route
	// URL has user info). Default: "" (routes without authentication).
	User string `yaml:"user"`
	// Password goes with User, in plain text: this node sends it.
	// Default: "".
	Password string `yaml:"password"`
	// TLS makes routes TLS, in both directions: every node presents its
	// certificate (valid for TLS server and client authentication) and
	// verifies the other's against CAFile. Every node has TLS or none.
	// Default: nil (plain TCP).
	TLS *RouteTLS `yaml:"tls,omitempty"`
}

// RouteTLS is the TLS configuration of cluster routes.
type RouteTLS struct {
	// CertFile is the PEM certificate (chain) of this node. Required.
	// Default: "".
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Required. Default: "".
	KeyFile string `yaml:"key_file"`
	// CAFile is the PEM bundle of CAs that verify the other nodes.
	// Required. Default: "".
	CAFile string `yaml:"ca_file"`
}

// BrokerLeafNode joins the embedded NATS server to hubs as a leaf node.
type BrokerLeafNode struct {
	// Remotes are the hubs to connect to. At least one. Default: none.
	Remotes []LeafRemote `yaml:"remotes"`
	// TLS makes the connections to the remotes TLS. Default: nil (plain
	// TCP, unless the hub requires TLS).
	TLS *ClientTLS `yaml:"tls,omitempty"`
}

// LeafRemote is one hub a leaf node connects to, and how it logs in: at
// most one of Credentials, User (with Password) and NKeySeedFile, or none
// for a hub without authentication.
type LeafRemote struct {
	// URL is the hub's leaf node URL: nats-leaf://host:port (or nats://,
	// tls://, ws://, wss://). Required. Default: "".
	URL string `yaml:"url"`
	// Credentials is a NATS credentials file (a user JWT and its seed,
	// as nsc makes). Default: "".
	Credentials string `yaml:"credentials"`
	// User logs in with a user name and Password. Default: "".
	User string `yaml:"user"`
	// Password goes with User, in plain text. Default: "".
	Password string `yaml:"password"`
	// NKeySeedFile is a file holding a user nkey seed (SU...), with which
	// the node signs in. Default: "".
	NKeySeedFile string `yaml:"nkey_seed_file"`
}

// BrokerUser is a user of the broker's NATS and MQTT listeners.
type BrokerUser struct {
	// User is the user name, unique among Broker.Users. Required.
	// Default: "".
	User string `yaml:"user"`
	// Password is the password in plain text, or its bcrypt hash
	// ("$2a$...", "$2b$..." or "$2y$..."; "nats server passwd" makes
	// one), which nats-server compares with. Required. Default: "".
	Password string `yaml:"password"`
	// ConnectionTypes limits the user to some listeners: nats, mqtt.
	// Default: none (both).
	ConnectionTypes []string `yaml:"connection_types,omitempty"`
	// Permissions are the subjects the user may publish and subscribe
	// to. Default: every subject but the reserved ones.
	Permissions BrokerPermissions `yaml:"permissions,omitempty"`
}

// BrokerNKey is a NATS client of the broker that logs in with an nkey.
type BrokerNKey struct {
	// NKey is the public user nkey: 56 characters starting with U
	// ("nk -gen user -pubout" prints a seed and it). Unique. Required.
	// Default: "".
	NKey string `yaml:"nkey"`
	// Permissions are as for BrokerUser. Default: every subject but the
	// reserved ones.
	Permissions BrokerPermissions `yaml:"permissions,omitempty"`
}

// BrokerPermissions limit what a client of the broker's listeners may
// publish and subscribe to, as NATS subjects ('.' between tokens, '*'
// for one token, '>' for the rest). MQTT clients are checked on the
// subject their topic maps to: "/" is ".", "+" is "*", "#" is ">", a "."
// inside a level is "//" (so MQTT "a/+/c" is "a.*.c"); an MQTT
// subscription to "a/#" is one to "a.>" and one to "a", and needs both.
//
// Deny wins over allow; no allow list allows every subject. Every client
// is also denied the subjects nats-server uses internally: $JS.> (the
// JetStream API, that can delete the streams holding MQTT sessions),
// $JSC.>, $NRG.>, $SYS.>, $KV.>, $O.>, $OBJ.> and $MQTT.> (the MQTT
// listener's sessions and messages; for subscribing, users that may use
// MQTT keep $MQTT.sub.> and $MQTT.deliver.>, where nats-server delivers
// to its MQTT clients), and $PG.> (protogate's own: the gateway's reply
// subjects, requests between nodes). An allow entry that starts with one of those
// first tokens ("$JS.API.>") grants what it overlaps.
type BrokerPermissions struct {
	// Publish are the subjects the client may publish to. Default: all
	// but the reserved ones.
	Publish SubjectRules `yaml:"publish,omitempty"`
	// Subscribe are the subjects the client may subscribe to; an entry
	// may name a queue group after a space ("jobs.* workers").
	// Default: all but the reserved ones.
	Subscribe SubjectRules `yaml:"subscribe,omitempty"`
}

// SubjectRules are the allow and deny lists of one direction.
type SubjectRules struct {
	// Allow lists the subjects allowed; none allows every subject.
	// Default: none.
	Allow []string `yaml:"allow,omitempty"`
	// Deny lists the subjects denied, also when Allow matches.
	// Default: none.
	Deny []string `yaml:"deny,omitempty"`
}

// Adapter configures the ExProto ConnectionAdapter gRPC server.
type Adapter struct {
	// Bind is the host:port the ConnectionAdapter gRPC server listens on;
	// gRPC handlers must be able to reach it. Nothing listens on it when no
	// handler has a grpc block. Default: "127.0.0.1:9100".
	Bind string `yaml:"bind"`
	// TLS enables TLS on the adapter server when set. Default: nil (plain
	// HTTP/2).
	TLS *ServerTLS `yaml:"tls,omitempty"`
}

// Admin configures the admin HTTP server: the admin API under /api/v1
// (list and kick clients, manage their subscriptions, reload handlers,
// trace connections), /healthz, /readyz, /metrics and the dashboard.
// Anyone who can reach the admin API controls the gateway, so a Bind whose
// host is not a loopback address needs APIKeys.
type Admin struct {
	// Bind is the host:port the admin HTTP server listens on; empty turns
	// it off. A host other than a loopback address (127.0.0.0/8, ::1 or
	// localhost; 0.0.0.0 and an empty host are not) is refused without
	// APIKeys. Default: "127.0.0.1:18083".
	Bind string `yaml:"bind"`
	// TLS serves the admin HTTP server over HTTPS when set; with ca_file,
	// client certificates are verified as for the other servers.
	// Default: nil (plain HTTP).
	TLS *ServerTLS `yaml:"tls,omitempty"`
	// APIKeys are the credentials of the admin API: with at least one,
	// every request except /healthz and /readyz must carry HTTP Basic
	// authentication with a key and its secret; with none, no request
	// is authenticated (allowed only on a loopback Bind). Keys are unique.
	// Default: none.
	APIKeys []APIKey `yaml:"api_keys,omitempty"`
}

// APIKey is one credential of the admin API, sent as the user name and
// password of HTTP Basic authentication.
type APIKey struct {
	// Key identifies the credential (the Basic user name): non-empty,
	// without ':', unique among Admin.APIKeys. Required. Default: "".
	Key string `yaml:"key"`
	// Secret is the password of Key: either in plain text, or "sha256:"
	// (any case) followed by the 64 hex digits of the SHA-256 digest of
	// the secret, as the passwords of Authentication.Users (read by
	// authn.ParsePassword). Required. Default: "".
	Secret string `yaml:"secret"`
}

// ServerTLS is the TLS configuration of a server socket (adapter, admin,
// ssl listeners).
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
	// MaxPendingMessages bounds the deliveries queued for one connection
	// while its handler is busy, between 1 and 1000000. Default: 1000.
	MaxPendingMessages int `yaml:"max_pending_messages"`
	// MaxDeliveryWait is how long a write to a subscriber whose queue is
	// full may wait for its device to read, before it counts as a slow
	// subscriber that loses what exceeds max_pending_messages (as does one
	// whose handler takes nothing for ten times as long).
	// Subscribers that keep up lose nothing: publishers are slowed down
	// instead. Between 1ms and 1m. Default: 1s.
	MaxDeliveryWait Duration `yaml:"max_delivery_wait"`
	// MaxSubscriptions bounds the topic filters one connection may be
	// subscribed to (EMQX: max_subscriptions); a Subscribe beyond it
	// answers PERMISSION_DENY and the connection keeps the ones it has.
	// In YAML an integer >= 0 or "infinity"; 0 and infinity mean no limit
	// (EMQX's default). Listeners inherit it. Default: 1000.
	MaxSubscriptions int `yaml:"max_subscriptions" config:"infinity"`
	// MaxQueuedBytes bounds the bytes a Wasm handler may have queued for
	// one connection's socket, not yet written; a send beyond it answers
	// PERMISSION_DENY and the connection stays open (one whose device
	// does not read is closed when a write has waited 15s). gRPC
	// handlers' sends are written at once. Between 64KiB and 1GiB.
	// Default: 4MiB.
	MaxQueuedBytes ByteSize `yaml:"max_queued_bytes"`
}

// Authentication is the built-in user database (like EMQX's built-in
// database authenticator).
type Authentication struct {
	// UserIDType selects what a client's credentials are matched on:
	// username or clientid. Default: "username".
	UserIDType string `yaml:"user_id_type"`
	// Users maps a user id to its password: either the password in plain
	// text, or "sha256:" (any case) followed by the 64 hex digits of the
	// SHA-256 digest of the password (read by authn.ParsePassword).
	// Default: none.
	Users map[string]string `yaml:"users"`
	// Chain lists the authenticators tried after Users, in order; written
	// as the list form of authentication. Default: none.
	Chain []Authenticator `yaml:"chain"`
}

func (*Authentication) listField() string { return "chain" }

// Authenticator types (Authenticator.Type).
const (
	AuthnBuiltinDatabase = "built_in_database"
	AuthnHTTP            = "http"
	AuthnJWT             = "jwt"
)

// Authenticator is one authenticator of the chain.
type Authenticator struct {
	// Type is built_in_database, http or jwt. Required. Default: none.
	Type string `yaml:"type"`
	// UserIDType (built_in_database) is username or clientid. Default:
	// username.
	UserIDType string `yaml:"user_id_type"`
	// PasswordHashAlgorithm (built_in_database) says how passwords are
	// stored, as EMQX's. Default: sha256 with a prefix salt.
	PasswordHashAlgorithm HashAlgorithm `yaml:"password_hash_algorithm"`
	// Users (built_in_database) are the users. Default: none.
	Users []User `yaml:"users"`
	// UsersFile (built_in_database) is a users file in EMQX's export
	// formats: .json (an array of objects) or .csv (with a header line),
	// each user with user_id, password_hash and salt (or password in
	// plain text) and is_superuser. Default: none.
	UsersFile string `yaml:"users_file"`

	// HTTPBackend (http) is the authentication service.
	HTTPBackend `yaml:",inline"`

	// From (jwt) is where the token is: password or username. Default:
	// password.
	From string `yaml:"from"`
	// Algorithm (jwt) is hmac-based or public-key. Default: none.
	Algorithm string `yaml:"algorithm"`
	// Secret (jwt, hmac-based) is the HMAC secret. Default: none.
	Secret string `yaml:"secret"`
	// SecretBase64Encoded (jwt) says Secret is base64. Default: false.
	SecretBase64Encoded bool `yaml:"secret_base64_encoded"`
	// PublicKey (jwt, public-key) is a PEM public key or certificate, as
	// text or as the path of a file. Default: none.
	PublicKey string `yaml:"public_key"`
	// UseJWKS (jwt) verifies with the keys of a JWKS. Default: false.
	UseJWKS bool `yaml:"use_jwks"`
	// Endpoint (jwt, use_jwks) is the JWKS: an https URL or a file.
	// Default: none.
	Endpoint string `yaml:"endpoint"`
	// RefreshInterval (jwt, use_jwks) is how often the JWKS is fetched
	// again. Default: 5m.
	RefreshInterval Duration `yaml:"refresh_interval"`
	// VerifyClaims (jwt) are claims the token must carry with these
	// values; ${clientid} and ${username} are replaced. Default: none.
	VerifyClaims map[string]string `yaml:"verify_claims"`
	// ACLClaimName (jwt) is the claim holding the client's ACL. Default:
	// acl.
	ACLClaimName string `yaml:"acl_claim_name"`
	// DisconnectAfterExpire (jwt) closes the connection when the token
	// expires. Default: true.
	DisconnectAfterExpire bool `yaml:"disconnect_after_expire"`
}

// HTTPBackend is an HTTP authentication or authorization service, as
// EMQX's: a templated request, a contract on the answer.
type HTTPBackend struct {
	// Method is get or post. Default: post.
	Method string `yaml:"method"`
	// URL is the service's URL, with placeholders in its path and query.
	// Default: none.
	URL string `yaml:"url"`
	// Headers are sent with every request (templates). Default: none.
	Headers map[string]string `yaml:"headers"`
	// Body maps fields to templates: a JSON object or form (post), or
	// query parameters (get). Default: none.
	Body map[string]string `yaml:"body"`
	// RequestTimeout bounds one request. Default: 5s.
	RequestTimeout Duration `yaml:"request_timeout"`
	// PoolSize bounds the connections to the service. Default: 8.
	PoolSize int `yaml:"pool_size"`
	// TLS configures https. Default: the system's roots.
	TLS *ClientTLS `yaml:"tls,omitempty"`
}

// AuthzSource is an authorization source after the rules.
type AuthzSource struct {
	// Type is http. Required. Default: none.
	Type string `yaml:"type"`
	// HTTPBackend (http) is the authorization service.
	HTTPBackend `yaml:",inline"`
}

// HashAlgorithm is EMQX's password_hash_algorithm.
type HashAlgorithm struct {
	// Name is plain, md5, sha, sha256, sha512, bcrypt or pbkdf2.
	// Default: sha256.
	Name string `yaml:"name"`
	// SaltPosition is prefix, suffix or disable (plain and the digests).
	// Default: prefix.
	SaltPosition string `yaml:"salt_position"`
	// SaltRounds is bcrypt's cost for passwords given in plain text, 5
	// to 10. Default: 10.
	SaltRounds int `yaml:"salt_rounds"`
	// MacFun is pbkdf2's hash: sha, sha224, sha256, sha384 or sha512.
	// Default: none (required for pbkdf2).
	MacFun string `yaml:"mac_fun"`
	// Iterations is pbkdf2's iteration count. Default: none (required
	// for pbkdf2).
	Iterations int `yaml:"iterations"`
	// DKLength is pbkdf2's derived key length in bytes. Default: 0, the
	// hash's size.
	DKLength int `yaml:"dk_length"`
}

// User is one user of a built_in_database.
type User struct {
	// UserID is the username or client id. Required. Default: none.
	UserID string `yaml:"user_id"`
	// Password is the password in plain text, hashed at start. Give it
	// or PasswordHash. Default: none.
	Password string `yaml:"password"`
	// PasswordHash is the password as the algorithm stores it (lowercase
	// or uppercase hex for the digests, $2b$... for bcrypt). Default: none.
	PasswordHash string `yaml:"password_hash"`
	// Salt is the salt PasswordHash was made with. Default: none.
	Salt string `yaml:"salt"`
	// IsSuperuser skips authorization for this user. Default: false.
	IsSuperuser bool `yaml:"is_superuser"`
}

// Authorization configures what clients may publish and subscribe to.
type Authorization struct {
	// NoMatch decides what no rule matched: allow or deny. Default: allow
	// (legacy profile), deny (hardened).
	NoMatch string `yaml:"no_match"`
	// Cache keeps each connection's recent answers. Default: on, 32
	// entries, 1m.
	Cache AuthzCache `yaml:"cache"`
	// Rules are EMQX's ACL rules; the first that matches decides.
	// Default: none.
	Rules []ACLRule `yaml:"rules"`
	// Sources are asked after the rules, in order (EMQX's http source).
	// Default: none.
	Sources []AuthzSource `yaml:"sources"`
}

// AuthzCache is the per-connection cache of authorization answers.
type AuthzCache struct {
	// Enable turns the cache on. Default: true.
	Enable bool `yaml:"enable"`
	// MaxSize is the entries per connection, 1 to 1024. Default: 32.
	MaxSize int `yaml:"max_size"`
	// TTL is how long an answer is used: rules changed by a reload apply
	// to a connection at most this late. Default: 1m.
	TTL Duration `yaml:"ttl"`
}

// ACLRule is one authorization rule.
type ACLRule struct {
	// Permission is allow or deny. Required. Default: none.
	Permission string `yaml:"permission"`
	// Who selects the clients. Default: every client.
	Who ACLWho `yaml:"who"`
	// Action is publish, subscribe or all. Default: all.
	Action string `yaml:"action"`
	// QoS limits the rule to these QoS levels. Default: any.
	QoS []int `yaml:"qos"`
	// Topics are MQTT filters, with ${clientid}, ${username},
	// ${cert_common_name} and ${client_attrs.NAME} placeholders, or
	// "eq <filter>" for a filter a subscription must name literally.
	// Default: every topic.
	Topics []string `yaml:"topics"`
}

// ACLWho selects clients; every condition given must hold.
type ACLWho struct {
	// Username is the exact username. Default: any.
	Username string `yaml:"username"`
	// UsernameRE is a regular expression the username matches (RE2
	// syntax). Default: any.
	UsernameRE string `yaml:"username_re"`
	// ClientID is the exact client id. Default: any.
	ClientID string `yaml:"clientid"`
	// ClientIDRE is a regular expression the client id matches.
	// Default: any.
	ClientIDRE string `yaml:"clientid_re"`
	// IPAddr is the peer's address or CIDR range. Default: any.
	IPAddr string `yaml:"ipaddr"`
	// IPAddrs are more addresses or ranges; the peer is in one of them.
	// Default: any.
	IPAddrs []string `yaml:"ipaddrs"`
	// Listener is the listener's name. Default: any.
	Listener string `yaml:"listener"`
	// ClientAttrs are client attributes (from authentication) that must
	// have these values. Default: any.
	ClientAttrs map[string]string `yaml:"client_attrs"`
	// Any holds alternatives, EMQX's 'or': one of them must hold too.
	// Default: none.
	Any []ACLWho `yaml:"any"`
}

// Handler implements a protocol. At least one of GRPC and Wasm is set.
type Handler struct {
	// GRPC is an ExProto ConnectionHandler reached over gRPC.
	// Default: nil.
	GRPC *GRPCHandler `yaml:"grpc,omitempty"`
	// Wasm is a WebAssembly handler run inside protogate. With GRPC set
	// too, GRPC serves while the module cannot load or keeps crashing.
	// Default: nil.
	Wasm *WasmHandler `yaml:"wasm,omitempty"`
}

// GRPCHandler is an ExProto ConnectionHandler gRPC server.
type GRPCHandler struct {
	// Address is the handler's URL: http:// or https:// followed by
	// host:port (host names allowed), e.g. "http://127.0.0.1:9001".
	// https:// enables TLS; without a port, http means 80 and https 443.
	// The scheme is required, as in EMQX. Read by remote.ParseAddress.
	// Required. Default: "".
	Address string `yaml:"address"`
	// ServiceName is the gRPC service called: ConnectionUnaryHandler or
	// ConnectionHandler (streaming), ExProto's, or protogate.v1.StreamHandler,
	// protogate's fast lane (one stream carries every connection's
	// callbacks and the handler's calls in batches; no ConnectionAdapter).
	// Default: "ConnectionUnaryHandler".
	ServiceName string `yaml:"service_name"`
	// Timeout is the deadline of each callback, > 0. Default: 30s.
	Timeout Duration `yaml:"timeout"`
	// TLS configures the https:// connection; refused with http://.
	// Default: nil (system roots, no client certificate).
	TLS *ClientTLS `yaml:"tls,omitempty"`
	// AdapterToken is a secret the handler sends with every
	// ConnectionAdapter call, as gRPC metadata "authorization: Bearer
	// <token>"; when set, calls without it cannot act on this handler's
	// connections (PERMISSION_DENY), and calls with it act on no other
	// handler's. 16 to 1024 printable ASCII characters without spaces
	// (openssl rand -hex 32 makes one); read by
	// remote.CheckAdapterToken. Handlers written for EMQX send none: it
	// is opt-in. Default: "" (none).
	AdapterToken string `yaml:"adapter_token"`
	// AdapterClientCN is the common name of the client certificate the
	// handler presents to the ConnectionAdapter; when set, only calls
	// from such a certificate, verified by adapter.tls (which then needs
	// ca_file), can act on this handler's connections. With AdapterToken
	// set too, a call needs both. Default: "" (none).
	AdapterClientCN string `yaml:"adapter_client_cn"`
}

// WasmHandler is a WebAssembly handler module.
type WasmHandler struct {
	// Path is the module file (a WebAssembly core module; it is reloaded
	// when it changes), or "builtin:<name>" for a module compiled into
	// protogate. Required. Default: "".
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
	// BreakerCooldown is how long the crash-loop breaker (opened by 5
	// faults within a minute) stays open, new connections going to the
	// grpc fallback or being refused, before one fresh instance is tried
	// (half-open); 100ms to 24h. Each failed trial doubles it, up to
	// BreakerMaxCooldown. Default: 30s.
	BreakerCooldown Duration `yaml:"breaker_cooldown"`
	// BreakerMaxCooldown caps the doubling cool-down, from
	// BreakerCooldown to 24h. Default: 10m.
	BreakerMaxCooldown Duration `yaml:"breaker_max_cooldown"`
	// MaxTimers caps the guest timers (set_timer) one connection may have
	// pending, 1 to 65536; set_timer beyond it answers PERMISSION_DENY to
	// the guest. Default: 64.
	MaxTimers int `yaml:"max_timers"`
}

// Listener is a client-facing socket.
type Listener struct {
	// Name identifies the listener in logs and metrics; unique, letters,
	// digits, '_', '.' and '-'. Required. Default: "".
	Name string `yaml:"name"`
	// Type is the transport: tcp, ssl (TLS over TCP), udp or dtls (DTLS over
	// UDP). Required. Default: "".
	Type string `yaml:"type"`
	// Bind is the host:port to listen on; port 0 picks a free port. The
	// address of a tcp or ssl listener must not clash with another tcp or ssl
	// listener, adapter.bind or the broker listeners (all TCP); that of a udp
	// or dtls listener only with another udp or dtls listener, so a tcp and a
	// udp listener can share a port. Required. Default: "".
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
	// MaxSubscriptions overrides Gateway.MaxSubscriptions (same syntax).
	// Default: gateway.max_subscriptions.
	MaxSubscriptions int `yaml:"max_subscriptions" config:"infinity"`
	// EnableAuthn makes clients of this listener authenticate against
	// Config.Authentication; it has no effect when that is nil. Set false
	// to let every client of this listener in. Default: true.
	EnableAuthn bool `yaml:"enable_authn"`
	// TLS is the server TLS configuration (with cert_file and key_file):
	// required for ssl; for dtls required unless PSK is set; refused for tcp
	// and udp. Default: nil.
	TLS *ServerTLS `yaml:"tls,omitempty"`
	// PSK holds the pre-shared keys of a dtls listener (DTLS-PSK, for
	// devices without certificates); dtls only. Default: nil.
	PSK *PSK `yaml:"psk,omitempty"`
	// HealthCheck answers load balancer probes on a udp or dtls listener
	// without creating a connection; udp and dtls only. Default: nil.
	HealthCheck *HealthCheck `yaml:"health_check,omitempty"`

	// MaxConnections is the most connections (for udp and dtls, peers)
	// served at once; more are refused. In YAML an integer >= 0 or
	// "infinity"; 0 and infinity mean no limit. Default: 1024000.
	MaxConnections int `yaml:"max_connections" config:"infinity"`
	// MaxConnRate is the most new connections accepted per second; more are
	// refused. In YAML an integer >= 0 (0 means no limit), or a count rate
	// as in EMQX ("1000/s", "6000/m", "1000/10s") that comes to a whole
	// number per second. Default: 1000.
	MaxConnRate int `yaml:"max_conn_rate" config:"per_second"`
	// AccessRules admit or refuse peers by IP address, as EMQX's
	// access_rules: "allow <target>" or "deny <target>", where the target is
	// an IP address, a CIDR prefix or "all"; the first rule that matches
	// decides and a peer that no rule matches is allowed (see
	// limit.ParseRules). Default: none (every peer is allowed).
	AccessRules []string `yaml:"access_rules,omitempty"`
	// MaxBytesRate caps the bytes each connection may send, as a byte rate
	// such as "64KB/s" (a count rate such as "1000/s" is refused): tcp and
	// ssl connections are slowed down, udp and dtls datagrams beyond it are
	// dropped. Default: unset (no limit).
	MaxBytesRate Rate `yaml:"max_bytes_rate,omitempty"`
	// MaxPacketSize is the largest frame (with Framing) or datagram a
	// client may send: 1B to 16MiB, and at most 65535B for udp and dtls. A
	// larger frame closes the connection; a larger datagram is dropped.
	// Default: 64KiB for tcp and ssl, 65535B for udp and dtls.
	MaxPacketSize ByteSize `yaml:"max_packet_size"`
	// ProxyProtocol makes a tcp or ssl listener read a PROXY protocol v1 or
	// v2 header first (the listener is behind a load balancer that sends
	// one): the client address it carries is the peer. Connections without
	// one are refused. tcp and ssl only. Default: false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// ProxyProtocolTimeout bounds the wait for the PROXY header, > 0. tcp
	// and ssl only. Default: 3s.
	ProxyProtocolTimeout Duration `yaml:"proxy_protocol_timeout"`
	// Framing splits the byte stream of a tcp or ssl connection into frames,
	// each handed to the handler whole. tcp and ssl only. Default: nil (the
	// bytes are handed over as they arrive, as in EMQX).
	Framing *Framing `yaml:"framing,omitempty"`
}

// Framing splits a byte stream into frames.
type Framing struct {
	// Type is line (frames end in "\n" or "\r\n") or length (each frame
	// starts with a length prefix counting the bytes after it). Required.
	// Default: "".
	Type string `yaml:"type"`
	// Bytes is the size of the length prefix, 2 or 4; length framing only.
	// Default: 2 for length, 0 for line.
	Bytes int `yaml:"bytes,omitempty"`
	// Endian is the byte order of the length prefix, big (network order) or
	// little; length framing only. Default: "big" for length, "" for line.
	Endian string `yaml:"endian,omitempty"`
}

// HealthCheck answers load balancer probes on a datagram listener: a
// datagram equal to Request is answered with Reply and creates no
// connection.
type HealthCheck struct {
	// Request is the probe datagram, non-empty. Default: "".
	Request string `yaml:"request"`
	// Reply is the answer datagram, non-empty. Default: "".
	Reply string `yaml:"reply"`
}

// PSK holds the pre-shared keys of a dtls listener. At least one of
// IdentitiesFile and Identities is set; both may be.
type PSK struct {
	// IdentitiesFile is a file of "identity:hexkey" lines; blank lines and
	// lines starting with '#' are skipped. It must exist. Default: "" (no
	// file).
	IdentitiesFile string `yaml:"identities_file"`
	// Identities maps a client identity to its key in hex: an even number
	// of hex digits, 1 to 64 bytes. Default: none.
	Identities map[string]string `yaml:"identities,omitempty"`
	// IdentityHint is sent to clients to help them choose an identity.
	// Default: "" (none).
	IdentityHint string `yaml:"identity_hint"`
}

// MarshalYAML implements yaml.Marshaler. It leaves out the keys that are
// refused for l.Type (proxy_protocol and proxy_protocol_timeout of udp and
// dtls listeners), so that a marshaled Config parses back.
func (l Listener) MarshalYAML() (any, error) {
	type plain Listener // without this method
	var n yaml.Node
	if err := n.Encode(plain(l)); err != nil {
		return nil, err
	}
	if isDatagram(l.Type) && n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch n.Content[i].Value {
			case "proxy_protocol", "proxy_protocol_timeout":
				continue
			}
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	}
	return &n, nil
}

func (c *Config) setDefaults() {
	c.Node = Node{Name: "protogate-1", DataDir: "./data"}
	c.Log = Log{Level: "info", Format: "text"}
	c.Broker = Broker{MaxPayload: 1 * MiB, MaxBuffered: 64 * MiB}
	c.Adapter = Adapter{Bind: "127.0.0.1:9100"}
	c.Admin = Admin{Bind: DefaultAdminBind}
	c.SecurityProfile = "legacy"
	c.Registry = Registry{Backend: RegistryAuto, OnUnavailable: "reject", ClaimTimeout: Duration(2 * time.Second)}
	c.Gateway = Gateway{IdleTimeout: Duration(30 * time.Second), MaxPendingMessages: 1000, MaxDeliveryWait: Duration(time.Second),
		MaxSubscriptions: DefaultMaxSubscriptions, MaxQueuedBytes: 4 * MiB}
}

func (a *Authentication) setDefaults() { a.UserIDType = UserIDUsername }

func (a *Authenticator) setDefaults() {
	a.UserIDType = UserIDUsername
	a.DisconnectAfterExpire = true
}

func (a *Authorization) setDefaults() {
	a.Cache = AuthzCache{Enable: true, MaxSize: 32, TTL: Duration(time.Minute)}
}

func (r *ACLRule) setDefaults() { r.Action = "all" }

func (g *GRPCHandler) setDefaults() {
	g.ServiceName = ServiceUnary
	g.Timeout = Duration(30 * time.Second)
}

func (w *WasmHandler) setDefaults() {
	w.MemoryLimit = 64 * MiB
	w.CallTimeout = Duration(100 * time.Millisecond)
	w.BreakerCooldown = Duration(30 * time.Second)
	w.BreakerMaxCooldown = Duration(10 * time.Minute)
	w.MaxTimers = 64
}

func (l *Listener) setDefaults() {
	l.EnableAuthn = true
	l.MaxConnections = DefaultMaxConnections
	l.MaxConnRate = DefaultMaxConnRate
	l.MaxPacketSize = DefaultMaxPacketSize
	l.ProxyProtocolTimeout = Duration(3 * time.Second)
}

//go:embed default.yaml
var defaultYAML string

// Default returns the default configuration file, a commented starting
// point for users. Parse(Default()) succeeds.
func Default() []byte { return []byte(defaultYAML) }

// Load reads and parses the configuration file at path. Errors are an
// [Errors] of [*Error] values with File set, e.g.
// "config: gw.yaml: line 3: log.level: ...".
func Load(path string) (*Config, error) { return load(path, false) }

// Check is Load with the checks that take time: every wasm module file is
// compiled (about half a second for a 3 MB module), so that a module that
// protogate could not load is reported with its key. "protogate validate"
// runs it; "protogate run" loads the modules anyway and uses Load.
func Check(path string) (*Config, error) { return load(path, true) }

func load(path string, compile bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, Errors{{File: path, Msg: msg, Err: err}}
	}
	c, err := parse(data, compile)
	var es Errors
	if errors.As(err, &es) {
		for _, e := range es {
			e.File = path
		}
		return nil, es
	}
	for _, w := range c.warnings {
		w.File = path
	}
	return c, nil
}

// Parse decodes a configuration document strictly, applies defaults
// (listeners inherit gateway.idle_timeout, gateway.mountpoint and
// gateway.max_subscriptions unless set;
// udp and dtls listeners default to a max_packet_size of 65535B; length
// framing to 2 bytes, big-endian) and validates the result. The error is an
// [Errors] holding every problem found, in the order of their lines: a
// value that cannot be decoded is reported and the rest of the document is
// still decoded and validated. Only invalid YAML and an excessively aliased
// document stop at the first problem.
func Parse(data []byte) (*Config, error) { return parse(data, false) }

func parse(data []byte, compile bool) (*Config, error) {
	root, e := parseYAML(data)
	if e != nil {
		return nil, Errors{e}
	}
	c := new(Config)
	c.setDefaults()
	d := &decoder{
		pos:    map[string]int{"": root.Line},
		set:    map[string]bool{},
		budget: maxDecodeWork,
	}
	if err := d.decode(root, reflect.ValueOf(c).Elem(), ""); err != nil {
		// Out of budget: nothing after this point was looked at.
		fatal, ok := err.(*Error)
		if !ok {
			fatal = &Error{Msg: err.Error(), Err: err}
		}
		errs := append(d.errs, fatal)
		sortErrors(errs)
		return nil, Errors(errs)
	}
	c.pos, c.set = d.pos, d.set
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := joinIndex("listeners", i)
		if !d.set[p+".idle_timeout"] {
			l.IdleTimeout = c.Gateway.IdleTimeout
		}
		if !d.set[p+".mountpoint"] {
			l.Mountpoint = c.Gateway.Mountpoint
		}
		if !d.set[p+".max_subscriptions"] {
			l.MaxSubscriptions = c.Gateway.MaxSubscriptions
		}
		if !d.set[p+".max_packet_size"] && isDatagram(l.Type) {
			l.MaxPacketSize = MaxDatagramSize
		}
		if f := l.Framing; f != nil && f.Type == FramingLength {
			if !d.set[p+".framing.bytes"] {
				f.Bytes = 2
			}
			if !d.set[p+".framing.endian"] {
				f.Endian = "big"
			}
		}
	}
	v := &validator{c: c, compile: compile}
	v.run()
	c.warnings = v.warnings()
	errs := d.errs
	for _, e := range v.errs {
		if !d.hides(e.Path) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, Errors(errs)
	}
	return c, nil
}

// yamlLine matches the "yaml: line N: msg" form of yaml.v3 syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses data into the root node of its single document.
func parseYAML(data []byte) (root *yaml.Node, err *Error) {
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
