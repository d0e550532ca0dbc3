package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/protogate/protogate/gateway/authn"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/limit"
	"github.com/protogate/protogate/gateway/remote"
	"github.com/protogate/protogate/gateway/topic"
	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/internal/hostname"
)

// nameRE is the syntax of node, handler and listener names.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// builtinRE is the syntax of "builtin:<name>" wasm modules.
var builtinRE = regexp.MustCompile(`^builtin:[A-Za-z0-9_.-]+$`)

// Validate checks c: value ranges, enumerations, addresses, passwords,
// that tls and psk files load and wasm module files are WebAssembly, and the
// cross-field rules (unique listener names and bind addresses, existing
// handler references, keys that apply only to some listener types, ...).
// Values the gateway parses again when it starts (handler addresses,
// passwords, TLS and PSK files, framing, mountpoints, ...) are checked with
// the functions it uses, so they cannot disagree. It does not apply
// defaults. The error is an [Errors] holding every problem, in the order of
// their lines; for a Config built in Go the lines are omitted. Validate also
// sets the warnings that [Config.Warnings] returns.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.run()
	c.warnings = v.warnings()
	if len(v.errs) == 0 {
		return nil
	}
	sortErrors(v.errs)
	return Errors(v.errs)
}

// Warnings returns the problems found by the last Parse, Load, Check or
// Validate that do not stop protogate: a wasm module file that cannot load
// while its handler has a grpc fallback, which serves until the file is
// fixed; an adapter.bind beyond loopback that does not tell callers apart
// (no adapter_token, no tls with verify_client), or that carries tokens
// without tls. In the order of their lines.
func (c *Config) Warnings() []*Error { return append([]*Error(nil), c.warnings...) }

type validator struct {
	c *Config
	// compile makes wasm module files compile, not just be checked for
	// the WebAssembly header (see Check).
	compile bool
	errs    []*Error
	warns   []*Error
}

func (v *validator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, errorf(v.c.lineOf(path), path, format, args...))
}

// configErr records an error of a runtime builder (a *Error naming its
// key) as the validator's own.
func (v *validator) configErr(err error) {
	var e *Error
	if errors.As(err, &e) {
		v.errf(e.Path, "%s", reason(errors.New(e.Msg)))
		return
	}
	v.errs = append(v.errs, &Error{Msg: err.Error()})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.warns = append(v.warns, errorf(v.c.lineOf(path), path, format, args...))
}

func (v *validator) warnings() []*Error {
	sortErrors(v.warns)
	return v.warns
}

// reason returns the message of err without its package prefix (such as
// "authn: "), for errors of the functions the runtime uses.
func reason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i > 0 && !strings.ContainsAny(msg[:i], " \"") {
		return msg[i+2:]
	}
	return msg
}

func (v *validator) run() {
	c := v.c

	if c.Node.Name == "" {
		v.errf("node.name", "must not be empty")
	} else if !nameRE.MatchString(c.Node.Name) {
		v.errf("node.name", "invalid name %q (use letters, digits, '_', '.' and '-')", c.Node.Name)
	}
	if c.Node.DataDir == "" {
		v.errf("node.data_dir", "must not be empty")
	}

	if _, err := c.Log.SlogLevel(); err != nil {
		v.errf("log.level", "%s", reason(err))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.errf("log.format", "unknown log format %q (want text or json)", c.Log.Format)
	}

	// TCP and UDP ports are separate: tcp and ssl listeners, the adapter and
	// the broker (all TCP) share binds; udp and dtls listeners udpBinds.
	binds, udpBinds := &bindSet{}, &bindSet{}
	v.broker(binds, &c.Broker)

	// The adapter is opened only when a handler may call it: otherwise
	// its address clashes with nothing.
	if c.Adapter.Bind == "" {
		v.errf("adapter.bind", "must not be empty (want host:port such as 127.0.0.1:9100)")
	} else if c.NeedsAdapter() {
		v.bind(binds, "adapter.bind", c.Adapter.Bind)
	} else {
		v.bind(&bindSet{}, "adapter.bind", c.Adapter.Bind)
	}
	if c.Adapter.TLS != nil {
		v.serverTLS("adapter.tls", c.Adapter.TLS)
	}
	if c.NeedsAdapter() {
		v.adapterDoor()
	}
	v.admin(binds, &c.Admin)

	v.registry(&c.Registry)

	v.duration("gateway.idle_timeout", c.Gateway.IdleTimeout, false)
	if n := c.Gateway.MaxPendingMessages; n < 1 || n > 1000000 {
		v.errf("gateway.max_pending_messages", "%d is out of range (want 1 to 1000000)", n)
	}
	if d := time.Duration(c.Gateway.MaxDeliveryWait); d < time.Millisecond || d > time.Minute {
		v.errf("gateway.max_delivery_wait", "%s is out of range (want 1ms to 1m)", c.Gateway.MaxDeliveryWait)
	}
	v.mountpoint("gateway.mountpoint", c.Gateway.Mountpoint)
	v.maxSubscriptions("gateway.max_subscriptions", c.Gateway.MaxSubscriptions)
	if b := c.Gateway.MaxQueuedBytes; b < 64*KiB || b > 1024*MiB {
		v.errf("gateway.max_queued_bytes", "%s is out of range (want 64KiB to 1GiB)", b)
	}

	if a := c.Authentication; a != nil {
		switch a.UserIDType {
		case UserIDUsername, UserIDClientID:
		default:
			v.errf("authentication.user_id_type", "unknown user id type %q (want username or clientid)", a.UserIDType)
		}
		if len(a.Users) == 0 && len(a.Chain) == 0 {
			v.errf("authentication.users", "at least one user is required (remove the authentication block to allow every client)")
		}
		for _, id := range sortedKeys(a.Users) {
			p := joinKey("authentication.users", id)
			if id == "" {
				v.errf(p, "user id must not be empty")
				continue
			}
			// The parser authn.NewStatic uses: what validates logs in.
			if _, err := authn.ParsePassword(a.Users[id]); err != nil {
				v.errf(p, "%s", reason(err))
			}
		}
	}

	// What the gateway builds at start, built here: what validates runs.
	if prof, err := c.Profile(); err != nil {
		v.errf("security_profile", "%s", reason(err))
	} else {
		quiet := slog.New(slog.DiscardHandler)
		if a := c.Authentication; a != nil && len(a.Chain) > 0 {
			for i := range a.Chain {
				if _, err := a.Chain[i].source(fmt.Sprintf("authentication[%d]", i), prof, quiet); err != nil {
					v.configErr(err)
				}
			}
		}
		if _, _, err := c.Authorizer(quiet); err != nil {
			v.configErr(err)
		}
	}

	if len(c.Handlers) == 0 {
		v.errf("handlers", "at least one handler is required")
	}
	for _, name := range sortedKeys(c.Handlers) {
		v.handler(joinKey("handlers", name), name, c.Handlers[name])
	}

	if len(c.Listeners) == 0 {
		v.errf("listeners", "at least one listener is required")
	}
	names := map[string]int{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := joinIndex("listeners", i)
		switch {
		case l.Name == "":
			v.errf(p+".name", "missing listener name")
		case !nameRE.MatchString(l.Name):
			v.errf(p+".name", "invalid name %q (use letters, digits, '_', '.' and '-')", l.Name)
		default:
			if j, dup := names[l.Name]; dup {
				v.errf(p+".name", "duplicate listener name %q (also used by listeners[%d])", l.Name, j)
			} else {
				names[l.Name] = i
			}
		}
		switch l.Type {
		case ListenerTCP:
			if l.TLS != nil {
				v.errf(p+".tls", "tls is not allowed for a tcp listener (use type: ssl)")
			}
		case ListenerSSL:
			if l.TLS == nil {
				v.errf(p+".tls", "an ssl listener needs tls with cert_file and key_file")
			}
		case ListenerUDP:
			if l.TLS != nil {
				v.errf(p+".tls", "tls is not allowed for a udp listener (use type: dtls)")
			}
		case ListenerDTLS:
			if l.TLS == nil && l.PSK == nil {
				v.errf(p+".tls", "a dtls listener needs tls with cert_file and key_file, or psk")
			}
		case "":
			v.errf(p+".type", "missing listener type (want tcp, ssl, udp or dtls)")
		default:
			v.errf(p+".type", "unknown listener type %q (want tcp, ssl, udp or dtls)", l.Type)
		}
		if l.TLS != nil && (l.Type == ListenerSSL || l.Type == ListenerDTLS) {
			v.serverTLS(p+".tls", l.TLS)
		}
		if l.Bind == "" {
			v.errf(p+".bind", "missing bind address (want host:port such as 0.0.0.0:7993)")
		} else if isDatagram(l.Type) {
			v.bind(udpBinds, p+".bind", l.Bind)
		} else {
			v.bind(binds, p+".bind", l.Bind)
		}
		if l.Handler == "" {
			v.errf(p+".handler", "missing handler (want one of: %s)", handlerList(c.Handlers))
		} else if _, ok := c.Handlers[l.Handler]; !ok && len(c.Handlers) > 0 {
			v.errf(p+".handler", "unknown handler %q (want one of: %s)", l.Handler, handlerList(c.Handlers))
		}
		// A value inherited from gateway was checked there.
		if v.given(p+".idle_timeout") || l.IdleTimeout != c.Gateway.IdleTimeout {
			v.duration(p+".idle_timeout", l.IdleTimeout, false)
		}
		if v.given(p+".mountpoint") || l.Mountpoint != c.Gateway.Mountpoint {
			v.mountpoint(p+".mountpoint", l.Mountpoint)
		}
		if v.given(p+".max_subscriptions") || l.MaxSubscriptions != c.Gateway.MaxSubscriptions {
			v.maxSubscriptions(p+".max_subscriptions", l.MaxSubscriptions)
		}
		v.connManagement(p, l)
	}
}

// maxSubscriptions checks a max_subscriptions value.
func (v *validator) maxSubscriptions(p string, n int) {
	if n < 0 {
		v.errf(p, "%d is out of range (want 0 or more, or infinity; 0 and infinity mean no limit)", n)
	}
}

// admin checks the admin block. The admin server is a TCP socket of this
// process: its address must not clash with the others in binds.
func (v *validator) admin(binds *bindSet, a *Admin) {
	if a.Bind != "" {
		v.bind(binds, "admin.bind", a.Bind)
		// An address that does not parse was reported by bind.
		host, _, err := net.SplitHostPort(a.Bind)
		if _, _, msg := splitBind(a.Bind); msg == "" && err == nil && !isLoopback(host) && len(a.APIKeys) == 0 {
			v.errf("admin.bind", "address %q is not a loopback address and admin.api_keys is empty: "+
				"anyone who can reach the admin API controls the gateway (it can kick devices and reload handlers); "+
				"add admin.api_keys, or bind to 127.0.0.1", a.Bind)
		}
	}
	if a.TLS != nil {
		v.serverTLS("admin.tls", a.TLS)
	}
	keys := map[string]int{}
	for i, k := range a.APIKeys {
		p := joinIndex("admin.api_keys", i)
		switch {
		case k.Key == "":
			v.errf(p+".key", "must not be empty")
		case strings.Contains(k.Key, ":"):
			v.errf(p+".key", "key %q must not contain ':' (HTTP Basic authentication separates the key from the secret with it)", k.Key)
		default:
			if j, dup := keys[k.Key]; dup {
				v.errf(p+".key", "duplicate key %q (also used by admin.api_keys[%d])", k.Key, j)
			} else {
				keys[k.Key] = i
			}
		}
		// The parser of stored passwords; the message never quotes the
		// secret.
		if k.Secret == "" {
			v.errf(p+".secret", "must not be empty")
		} else if _, err := authn.ParsePassword(k.Secret); err != nil {
			v.errf(p+".secret", "a sha256: secret must be followed by 64 hex digits (the SHA-256 digest of the secret)")
		}
	}
}

// broker checks the broker block. Its listeners are TCP sockets of this
// process: their addresses must not clash with the others in binds.
// Users, nkeys and permissions are checked with the functions
// broker.Start checks them with.
func (v *validator) broker(binds *bindSet, b *Broker) {
	if b.NATSListen != "" {
		v.bind(binds, "broker.nats_listen", b.NATSListen)
	}
	if b.MQTTListen != "" {
		v.bind(binds, "broker.mqtt_listen", b.MQTTListen)
	}
	if b.MaxPayload < 1 || b.MaxPayload > 64*MiB {
		v.errf("broker.max_payload", "%s is out of range (want 1B to 64MiB)", b.MaxPayload)
	}
	if b.MaxBuffered < 1*MiB || b.MaxBuffered > 1024*MiB {
		v.errf("broker.max_buffered", "%s is out of range (want 1MiB to 1GiB)", b.MaxBuffered)
	}

	users := map[string]int{}
	mqttUsers := 0
	for i, u := range b.Users {
		p := joinIndex("broker.users", i)
		if u.User == "" {
			v.errf(p+".user", "must not be empty")
		} else if j, dup := users[u.User]; dup {
			v.errf(p+".user", "duplicate user %q (also used by broker.users[%d])", u.User, j)
		} else {
			users[u.User] = i
		}
		// The message never quotes the password.
		if u.Password == "" {
			v.errf(p+".password", "must not be empty")
		} else if err := broker.CheckPassword(u.Password); err != nil {
			v.errf(p+".password", "%s", reason(err))
		}
		mqtt := len(u.ConnectionTypes) == 0
		for j, t := range u.ConnectionTypes {
			if err := broker.CheckConnectionType(t); err != nil {
				v.errf(joinIndex(p+".connection_types", j), "%s", reason(err))
			}
			mqtt = mqtt || t == broker.ConnMQTT
		}
		if mqtt {
			mqttUsers++
		}
		v.brokerPermissions(p+".permissions", u.Permissions)
	}
	keys := map[string]int{}
	for i, k := range b.NKeys {
		p := joinIndex("broker.nkeys", i)
		if err := broker.CheckNKey(k.NKey); err != nil {
			v.errf(p+".nkey", "%s", reason(err))
		} else if j, dup := keys[k.NKey]; dup {
			v.errf(p+".nkey", "duplicate nkey %q (also used by broker.nkeys[%d])", k.NKey, j)
		} else {
			keys[k.NKey] = i
		}
		v.brokerPermissions(p+".permissions", k.Permissions)
	}
	if b.TLS != nil {
		v.serverTLS("broker.tls", b.TLS)
	}

	// An open listener on the network without authentication.
	authn := len(b.Users)+len(b.NKeys) > 0 || b.TLS != nil && b.TLS.VerifyClient
	for _, l := range []struct{ path, addr string }{
		{"broker.nats_listen", b.NATSListen}, {"broker.mqtt_listen", b.MQTTListen},
	} {
		if l.addr == "" || authn || b.AllowAnonymous {
			continue
		}
		// An address that does not parse was reported by bind.
		host, _, err := net.SplitHostPort(l.addr)
		if _, _, msg := splitBind(l.addr); msg == "" && err == nil && !isLoopback(host) {
			v.errf(l.path, "address %q is not a loopback address and the broker has no users: "+
				"anyone on the network could read every device's traffic and publish to every device; "+
				"add broker.users (or broker.nkeys, or broker.tls with verify_client: true), bind to 127.0.0.1, "+
				"or set broker.allow_anonymous: true to accept the risk", l.addr)
		}
	}
	if b.Cluster != nil {
		v.cluster(binds, b.Cluster)
	}
	if b.LeafNode != nil {
		v.leafNode(b.LeafNode)
	}
	if b.MQTTListen != "" && mqttUsers == 0 && len(b.Users)+len(b.NKeys) > 0 && !b.AllowAnonymous {
		v.warnf("broker.mqtt_listen", "no MQTT client can log in: nkeys and users limited to connection_types [nats] are for NATS clients; "+
			"add a user that may use mqtt, or set broker.allow_anonymous: true")
	}
}

// defaultNodeName is the default Node.Name, which two nodes of a cluster
// would share.
const defaultNodeName = "protogate-1"

// cluster checks broker.cluster.
func (v *validator) cluster(binds *bindSet, cl *BrokerCluster) {
	const p = "broker.cluster"
	// A config built in Go has no record of the keys given: its default
	// name is taken as not given.
	if named := v.given("node.name"); v.c.set != nil && !named || v.c.set == nil && v.c.Node.Name == defaultNodeName {
		v.errf(p, "node.name must be set explicitly with a cluster: every node needs its own name, unique in the cluster, "+
			"and the default %q would be every node's", defaultNodeName)
	}
	if cl.Name == "" {
		v.errf(p+".name", "must not be empty (the cluster name, the same on every node)")
	} else if err := broker.CheckClusterName(cl.Name); err != nil {
		v.errf(p+".name", "%s", reason(err))
	}
	if cl.Listen == "" {
		v.errf(p+".listen", "must not be empty (want host:port such as 0.0.0.0:6222)")
	} else {
		v.bind(binds, p+".listen", cl.Listen)
	}
	if cl.Advertise != "" {
		if _, port, msg := splitBind(cl.Advertise); msg != "" {
			v.errf(p+".advertise", "%s", msg)
		} else if port == 0 {
			v.errf(p+".advertise", "port 0 cannot be reached; want the host:port other nodes connect to")
		}
	}
	if len(cl.Routes) == 0 {
		v.errf(p+".routes", "must list the route of every node of the cluster, this one's included (e.g. nats-route://10.0.0.1:6222)")
	}
	seen := map[string]int{}
	valid := map[int]*url.URL{}
	_, listenPort, _ := splitBind(cl.Listen)
	self := false
	for i, r := range cl.Routes {
		rp := joinIndex(p+".routes", i)
		u, err := broker.CheckRouteURL(r)
		if err != nil {
			v.errf(rp, "%s", reason(err))
			continue
		}
		if j, dup := seen[strings.ToLower(u.Host)]; dup {
			v.errf(rp, "duplicate route %q (also %s)", u.Redacted(), joinIndex(p+".routes", j))
			continue
		}
		seen[strings.ToLower(u.Host)] = i
		valid[i] = u
		self = self || u.Port() == strconv.Itoa(listenPort)
	}
	// protogate validate (Check) dials the routes: a node that already
	// has this node's name would refuse this one's routes.
	if v.compile && v.c.Node.Name != "" {
		v.probeRoutes(cl, valid)
	}
	if len(seen) > 0 && listenPort != 0 && !self {
		v.warnf(p+".routes", "no route has the port of broker.cluster.listen (%d): list this node's own route too, "+
			"so that every node has the same list (nats-server skips its own) and the cluster size counts it", listenPort)
	}
	if (cl.User == "") != (cl.Password == "") {
		v.errf(p, "user and password must be set together")
	}
	if t := cl.TLS; t != nil {
		tp := p + ".tls"
		ok := true
		for _, f := range []struct{ key, name string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}} {
			if f.name == "" {
				v.errf(tp+"."+f.key, "missing (routes need cert_file, key_file and ca_file: each node verifies the other)")
				ok = false
			} else {
				ok = v.file(tp+"."+f.key, f.name) && ok
			}
		}
		if ok {
			if _, err := t.TLSConfig(); err != nil {
				v.errf(tp, "%s", reason(err))
			}
		}
	}
}

// leafNode checks broker.leafnode.
func (v *validator) leafNode(l *BrokerLeafNode) {
	const p = "broker.leafnode"
	if len(l.Remotes) == 0 {
		v.errf(p+".remotes", "must list at least one hub (url: nats-leaf://hub:7422)")
	}
	for i, r := range l.Remotes {
		rp := joinIndex(p+".remotes", i)
		var userInURL bool
		if r.URL == "" {
			v.errf(rp+".url", "must not be empty (want nats-leaf://host:port)")
		} else if u, err := broker.CheckLeafURL(r.URL); err != nil {
			v.errf(rp+".url", "%s", reason(err))
		} else {
			userInURL = u.User != nil
		}
		logins := 0
		for _, set := range []bool{r.Credentials != "", r.User != "" || userInURL, r.NKeySeedFile != ""} {
			if set {
				logins++
			}
		}
		if logins > 1 {
			v.errf(rp, "credentials, user (in the url or the user key) and nkey_seed_file are alternatives: set one")
		}
		if r.User != "" && r.Password == "" || r.User == "" && r.Password != "" {
			v.errf(rp, "user and password must be set together")
		}
		v.file(rp+".credentials", r.Credentials)
		if r.NKeySeedFile != "" && v.file(rp+".nkey_seed_file", r.NKeySeedFile) {
			if err := broker.CheckNKeySeedFile(r.NKeySeedFile); err != nil {
				v.errf(rp+".nkey_seed_file", "%s", reason(err))
			}
		}
	}
	if t := l.TLS; t != nil {
		n := len(v.errs)
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.errf(p+".tls", "cert_file and key_file must be set together")
		}
		v.file(p+".tls.ca_file", t.CAFile)
		v.file(p+".tls.cert_file", t.CertFile)
		v.file(p+".tls.key_file", t.KeyFile)
		if len(v.errs) == n {
			if _, err := t.TLSConfig(); err != nil {
				v.errf(p+".tls", "%s", reason(err))
			}
		}
	}
}

// brokerPermissions checks the subjects of a broker user's permissions.
func (v *validator) brokerPermissions(p string, perms BrokerPermissions) {
	for _, l := range []struct {
		path  string
		list  []string
		queue bool
	}{
		{p + ".publish.allow", perms.Publish.Allow, false},
		{p + ".publish.deny", perms.Publish.Deny, false},
		{p + ".subscribe.allow", perms.Subscribe.Allow, true},
		{p + ".subscribe.deny", perms.Subscribe.Deny, true},
	} {
		for i, s := range l.list {
			ep := joinIndex(l.path, i)
			if err := broker.CheckSubject(s, l.queue); err != nil {
				v.errf(ep, "%s", reason(err))
			} else if broker.LooksLikeMQTT(s) {
				v.warnf(ep, "%q looks like an MQTT topic, but permissions take NATS subjects: "+
					"MQTT a/b/# is a.b.> (and a.b), a/+/c is a.*.c", s)
			}
		}
	}
}

// isLoopback reports whether host (of a host:port address) is a loopback
// address: in 127.0.0.0/8, ::1 (also IPv4-mapped or with a zone), or the
// name localhost. The empty host and unspecified addresses (0.0.0.0, ::)
// listen on every interface, and are not.
func isLoopback(host string) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().IsLoopback()
	}
	return strings.EqualFold(strings.TrimSuffix(host, "."), "localhost")
}

// isDatagram reports whether a listener type is carried over UDP.
func isDatagram(typ string) bool { return typ == ListenerUDP || typ == ListenerDTLS }

// isStream reports whether a listener type is carried over TCP.
func isStream(typ string) bool { return typ == ListenerTCP || typ == ListenerSSL }

// given reports whether the key at path was written with a non-null value
// (always false for a Config built in Go).
func (v *validator) given(path string) bool { return v.c.set[path] }

// connManagement checks the connection management keys of listener l at p,
// and the keys that apply only to some listener types. Type-specific keys
// are not checked on a listener of an unknown type.
func (v *validator) connManagement(p string, l *Listener) {
	if l.MaxConnections < 0 {
		v.errf(p+".max_connections", "%d is out of range (want 0 or more, or infinity; 0 and infinity mean no limit)", l.MaxConnections)
	}
	if l.MaxConnRate < 0 {
		v.errf(p+".max_conn_rate", "%d is out of range (want 0 or more; 0 means no limit)", l.MaxConnRate)
	}
	for i, rule := range l.AccessRules {
		// One rule at a time, so that the error names the element.
		if _, err := limit.ParseRules([]string{rule}); err != nil {
			msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("limit: access rule 1 %q: ", rule))
			v.errf(joinIndex(p+".access_rules", i), "invalid access rule %q: %s", rule, msg)
		}
	}
	if r := l.MaxBytesRate; !r.IsZero() {
		switch {
		case r.Amount <= 0 || r.Period <= 0:
			v.errf(p+".max_bytes_rate", "invalid rate (amount and period must be positive)")
		case !r.Bytes:
			v.errf(p+".max_bytes_rate", "%q counts messages, not bytes (want a byte rate such as 64KB/s)", r.String())
		}
	}
	if isDatagram(l.Type) {
		if l.MaxPacketSize < 1 || l.MaxPacketSize > MaxDatagramSize {
			v.errf(p+".max_packet_size", "%s is out of range for a %s listener (want 1B to 65535B, the largest datagram)", l.MaxPacketSize, l.Type)
		}
	} else if l.MaxPacketSize < 1 || l.MaxPacketSize > MaxStreamPacketSize {
		v.errf(p+".max_packet_size", "%s is out of range (want 1B to 16MiB)", l.MaxPacketSize)
	}

	if isDatagram(l.Type) {
		if l.Framing != nil {
			v.errf(p+".framing", "framing applies to tcp and ssl listeners; a %s datagram is already one frame", l.Type)
		}
		if l.ProxyProtocol || v.given(p+".proxy_protocol") {
			v.errf(p+".proxy_protocol", "proxy_protocol applies to tcp and ssl listeners, not %s", l.Type)
		}
		if v.given(p + ".proxy_protocol_timeout") {
			v.errf(p+".proxy_protocol_timeout", "proxy_protocol_timeout applies to tcp and ssl listeners, not %s", l.Type)
		}
	}
	if isStream(l.Type) {
		v.duration(p+".proxy_protocol_timeout", l.ProxyProtocolTimeout, true)
		if f := l.Framing; f != nil && v.framing(p+".framing", f) {
			// What the gateway checks when the listener starts.
			if err := l.FramingConfig().Validate(); err != nil {
				v.errf(p+".framing", "%s", reason(err))
			}
		}
		if l.HealthCheck != nil {
			v.errf(p+".health_check", "health_check applies to udp and dtls listeners, not %s", l.Type)
		}
	}
	if h := l.HealthCheck; h != nil && isDatagram(l.Type) {
		if h.Request == "" {
			v.errf(p+".health_check.request", "must not be empty")
		}
		if h.Reply == "" {
			v.errf(p+".health_check.reply", "must not be empty")
		}
	}
	if k := l.PSK; k != nil {
		switch l.Type {
		case ListenerDTLS:
			v.psk(p+".psk", k)
		case ListenerTCP, ListenerSSL, ListenerUDP:
			v.errf(p+".psk", "psk applies to dtls listeners, not %s", l.Type)
		}
	}
}

// framing checks f and reports whether it is valid.
func (v *validator) framing(p string, f *Framing) bool {
	n := len(v.errs)
	switch f.Type {
	case FramingLength:
		if f.Bytes != 2 && f.Bytes != 4 {
			v.errf(p+".bytes", "%d is not a valid length prefix size (want 2 or 4)", f.Bytes)
		}
		if f.Endian != "big" && f.Endian != "little" {
			v.errf(p+".endian", "unknown byte order %q (want big or little)", f.Endian)
		}
		return len(v.errs) == n
	case FramingLine:
	case "":
		v.errf(p+".type", "missing framing type (want line or length)")
		return false
	default:
		v.errf(p+".type", "unknown framing type %q (want line or length)", f.Type)
		return false
	}
	if f.Bytes != 0 || v.given(p+".bytes") {
		v.errf(p+".bytes", "bytes applies only to framing type length")
	}
	if f.Endian != "" || v.given(p+".endian") {
		v.errf(p+".endian", "endian applies only to framing type length")
	}
	return len(v.errs) == n
}

// psk checks k with the parsers PSK.Keys uses.
func (v *validator) psk(p string, k *PSK) {
	if k.IdentitiesFile == "" && len(k.Identities) == 0 {
		v.errf(p, "psk needs identities_file or identities")
	}
	if k.IdentitiesFile != "" && v.file(p+".identities_file", k.IdentitiesFile) {
		if _, err := loadPSKFile(k.IdentitiesFile); err != nil {
			v.errf(p+".identities_file", "%s", reason(err))
		}
	}
	for _, id := range sortedKeys(k.Identities) {
		ip := joinKey(p+".identities", id)
		if id == "" {
			v.errf(ip, "identity must not be empty")
			continue
		}
		if _, msg := parsePSKKey(k.Identities[id]); msg != "" {
			v.errf(ip, "%s", msg)
		}
	}
}

// adapterDoor warns when the adapter listens beyond this machine without a
// way to tell its callers apart: any process that reaches it could then act
// on every gRPC-served connection whose handle it learns.
func (v *validator) adapterDoor() {
	c := v.c
	if host, _, msg := splitBind(c.Adapter.Bind); msg != "" || isLoopback(host) {
		return // a bad address was reported by bind
	}
	tokens, cns := false, false
	for _, h := range c.Handlers {
		if g := h.GRPC; g != nil {
			tokens = tokens || g.AdapterToken != ""
			cns = cns || g.AdapterClientCN != ""
		}
	}
	t := c.Adapter.TLS
	switch {
	case !tokens && !cns && t == nil:
		v.warnf("adapter.bind", "address %q is not a loopback address, and the adapter has neither tls nor any handler's adapter_token: "+
			"any process that reaches it can send to, publish as and close the devices of gRPC handlers whose handles it learns; "+
			"set handlers.<name>.grpc.adapter_token, serve adapter.tls with verify_client, or bind to 127.0.0.1", c.Adapter.Bind)
	case !tokens && !cns && !t.VerifyClient:
		v.warnf("adapter.bind", "address %q is not a loopback address, and adapter.tls without verify_client encrypts but admits any client, "+
			"while no handler has an adapter_token: any process that reaches the adapter can act on the devices of gRPC handlers whose handles it learns; "+
			"set handlers.<name>.grpc.adapter_token or adapter.tls.verify_client, or bind to 127.0.0.1", c.Adapter.Bind)
	case tokens && t == nil:
		v.warnf("adapter.bind", "address %q is not a loopback address, and the adapter has no tls: "+
			"adapter tokens cross the network in clear text, for anyone on the path to read and reuse; add adapter.tls", c.Adapter.Bind)
	}
}

// isHex reports whether s is made of hex digits only.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (v *validator) handler(p, name string, h Handler) {
	if !nameRE.MatchString(name) {
		v.errf(p, "invalid handler name %q (use letters, digits, '_', '.' and '-')", name)
	}
	if h.GRPC == nil && h.Wasm == nil {
		v.errf(p, "handler needs grpc or wasm")
	}
	if g := h.GRPC; g != nil {
		gp := p + ".grpc"
		// The parser remote.New dials with.
		a, err := remote.ParseAddress(g.Address)
		if err != nil {
			v.errf(gp+".address", "%s", reason(err))
		}
		switch g.ServiceName {
		case ServiceUnary, ServiceStream, ServiceLane:
		default:
			v.errf(gp+".service_name", "unknown service %q (want ConnectionUnaryHandler, ConnectionHandler or protogate.v1.StreamHandler)", g.ServiceName)
		}
		v.duration(gp+".timeout", g.Timeout, true)
		if g.AdapterToken != "" {
			// The check remote.New makes.
			if err := remote.CheckAdapterToken(g.AdapterToken); err != nil {
				v.errf(gp+".adapter_token", "%s", reason(err))
			}
		}
		if g.AdapterClientCN != "" {
			if t := v.c.Adapter.TLS; t == nil || t.CAFile == "" {
				v.errf(gp+".adapter_client_cn", "needs adapter.tls with a ca_file, to verify the client certificates that adapter calls present")
			}
		}
		if t := g.TLS; t != nil {
			if err == nil && !a.TLS {
				v.errf(gp+".tls", "tls needs an https:// address")
			}
			n := len(v.errs)
			if (t.CertFile == "") != (t.KeyFile == "") {
				v.errf(gp+".tls", "cert_file and key_file must be set together")
			}
			v.file(gp+".tls.ca_file", t.CAFile)
			v.file(gp+".tls.cert_file", t.CertFile)
			v.file(gp+".tls.key_file", t.KeyFile)
			if len(v.errs) == n {
				if _, err := t.TLSConfig(); err != nil {
					v.errf(gp+".tls", "%s", reason(err))
				}
			}
		}
	}
	if w := h.Wasm; w != nil {
		wp := p + ".wasm"
		if name, ok := w.Builtin(); ok {
			if !builtinRE.MatchString(w.Path) {
				v.errf(wp+".path", "invalid builtin module %q (want builtin:<name>)", w.Path)
			} else if _, ok := builtin.View(name); !ok {
				v.errf(wp+".path", "no built-in module %q (have builtin:%s)", w.Path, strings.Join(builtin.Names(), ", builtin:"))
			}
		} else if w.Path == "" {
			v.errf(wp+".path", "missing module path (want a file path or builtin:<name>)")
		} else if msg := checkModuleFile(w.Path, w.MemoryLimit, v.compile && validMemoryLimit(w.MemoryLimit)); msg != "" {
			// With a grpc fallback protogate serves through it until the
			// file is fixed (it reloads when the file changes).
			if h.GRPC != nil {
				v.warnf(wp+".path", "%s; the grpc handler serves until it is fixed", msg)
			} else {
				v.errf(wp+".path", "%s", msg)
			}
		}
		if w.Instances < 0 || w.Instances > 1024 {
			v.errf(wp+".instances", "%d is out of range (want 0 to 1024; 0 means GOMAXPROCS)", w.Instances)
		}
		if !validMemoryLimit(w.MemoryLimit) {
			v.errf(wp+".memory_limit", "%s is out of range (want 64KiB to 4GiB)", w.MemoryLimit)
		}
		v.duration(wp+".call_timeout", w.CallTimeout, true)
		const maxCooldown = 24 * time.Hour
		cd, maxCD := time.Duration(w.BreakerCooldown), time.Duration(w.BreakerMaxCooldown)
		if cd < 100*time.Millisecond || cd > maxCooldown {
			v.errf(wp+".breaker_cooldown", "%s is out of range (want 100ms to 24h)", w.BreakerCooldown)
		}
		switch {
		case maxCD > maxCooldown:
			v.errf(wp+".breaker_max_cooldown", "%s is out of range (want breaker_cooldown to 24h)", w.BreakerMaxCooldown)
		case maxCD < cd:
			v.errf(wp+".breaker_max_cooldown", "%s is shorter than breaker_cooldown (%s)", w.BreakerMaxCooldown, w.BreakerCooldown)
		}
		if w.MaxTimers < 1 || w.MaxTimers > 65536 {
			v.errf(wp+".max_timers", "%d is out of range (want 1 to 65536)", w.MaxTimers)
		}
	}
}

// validMemoryLimit reports whether b is a valid wasm.memory_limit. A module
// is compiled under the limit only when it is.
func validMemoryLimit(b ByteSize) bool { return b >= 64*KiB && b <= 4*GiB }

func (v *validator) serverTLS(p string, t *ServerTLS) {
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		v.errf(p, "cert_file and key_file are required")
	case t.CertFile == "":
		v.errf(p+".cert_file", "missing (cert_file and key_file must be set together)")
	case t.KeyFile == "":
		v.errf(p+".key_file", "missing (cert_file and key_file must be set together)")
	}
	if t.VerifyClient && t.CAFile == "" {
		v.errf(p+".ca_file", "missing; verify_client needs a ca_file to verify client certificates against")
	}
	ok := t.CertFile != "" && t.KeyFile != ""
	ok = v.file(p+".cert_file", t.CertFile) && ok
	ok = v.file(p+".key_file", t.KeyFile) && ok
	ok = v.file(p+".ca_file", t.CAFile) && ok
	if ok {
		// Load the files as the listener or adapter will.
		if _, err := t.TLSConfig(); err != nil {
			v.errf(p, "%s", reason(err))
		}
	}
}

// file checks that name, if set, is an existing regular file (or symlink to
// one), and reports whether it is (true for an empty name).
func (v *validator) file(p, name string) bool {
	if name == "" {
		return true
	}
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		v.errf(p, "%s", fileProblem(name, err))
	default:
		if msg := notRegular(name, fi); msg != "" {
			v.errf(p, "%s", msg)
			return false
		}
		return true
	}
	return false
}

// notRegular says why a file that is not a regular file cannot be used
// (reading a device or a pipe may never end), or returns "".
func notRegular(name string, fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return fmt.Sprintf("%q is a directory, want a file", name)
	case !fi.Mode().IsRegular():
		return fmt.Sprintf("%q is not a regular file", name)
	}
	return ""
}

// fileProblem describes the error of opening or stat'ing file name.
func fileProblem(name string, err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("file %q does not exist", name)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("cannot use file %q: %v", name, err)
}

func (v *validator) duration(p string, d Duration, positive bool) {
	switch {
	case d < 0:
		v.errf(p, "duration %s must not be negative", d)
	case positive && d == 0:
		v.errf(p, "must be greater than 0")
	}
}

// mountpoint checks a topic prefix with ${clientid}/${username} placeholders.
func (v *validator) mountpoint(p, mp string) {
	n := len(v.errs)
	defer func() {
		if len(v.errs) == n {
			v.mountedTopic(p, mp)
		}
	}()
	if !utf8.ValidString(mp) || strings.ContainsRune(mp, 0) {
		v.errf(p, "mountpoint must be valid UTF-8 without NUL characters")
		return
	}
	if strings.ContainsAny(mp, "+#") {
		v.errf(p, "mountpoint %q must not contain the MQTT wildcards + or #", mp)
		return
	}
	rest := mp
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			return
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			v.errf(p, "mountpoint %q has an unterminated ${ placeholder", mp)
			return
		}
		switch name := rest[i+2 : i+j]; name {
		case "clientid", "username":
		default:
			v.errf(p, "unknown placeholder %q in mountpoint (want ${clientid} or ${username})", "${"+name+"}")
			return
		}
		rest = rest[i+j+1:]
	}
}

// mountedTopic checks, as a connection does when it publishes, that the
// mountpoint can prefix a topic: the topic package refuses, for example,
// whitespace and prefixes that map to NATS's reserved "$" subjects.
func (v *validator) mountedTopic(p, mp string) {
	if mp == "" {
		return
	}
	t := topic.Mount(topic.ExpandMountpoint(mp, "client", "user"), "topic")
	if _, err := topic.PublishSubject(t); err != nil {
		v.errf(p, "mountpoint %q cannot prefix a topic: %s", mp, reason(err))
	}
}

// bindSet detects host:port clashes between sockets of this process. A
// wildcard host (empty, 0.0.0.0 or ::) clashes with any host on the same
// port; port 0 never clashes.
type bindSet struct {
	exact map[string]bindUse // normalized host:port -> first use
	port  map[int]bindUse    // port -> first use
	wild  map[int]bindUse    // port -> first use on a wildcard host
}

type bindUse struct{ path, addr string }

func (v *validator) bind(s *bindSet, p, addr string) {
	host, port, msg := splitBind(addr)
	if msg != "" {
		v.errf(p, "%s", msg)
		return
	}
	if port == 0 {
		return
	}
	if s.exact == nil {
		s.exact, s.port, s.wild = map[string]bindUse{}, map[int]bindUse{}, map[int]bindUse{}
	}
	cur := bindUse{p, addr}
	wildcard := host == "*"
	key := net.JoinHostPort(host, strconv.Itoa(port))
	other, clash := s.exact[key]
	if !clash && wildcard {
		other, clash = s.port[port]
	}
	if !clash {
		other, clash = s.wild[port]
	}
	if clash {
		// Report the clash on the key written later in the file; a key
		// that is not in the file (a default) is never blamed if the
		// other one is.
		lc, okc := v.c.pos[cur.path]
		lo, oko := v.c.pos[other.path]
		if oko && (!okc || lo > lc) {
			cur, other = other, cur
		}
		v.errf(cur.path, "address %q clashes with %s (%q)", cur.addr, other.path, other.addr)
		return
	}
	s.exact[key] = cur
	if _, ok := s.port[port]; !ok {
		s.port[port] = cur
	}
	if wildcard {
		s.wild[port] = cur
	}
}

// splitBind parses a host:port bind address. The host is returned
// normalized, "*" for a wildcard. msg is non-empty when addr is invalid.
func splitBind(addr string) (host string, port int, msg string) {
	if isInteger(addr) {
		return "", 0, fmt.Sprintf("address %q is only a port; want host:port such as %q", addr, "0.0.0.0:"+addr)
	}
	h, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Sprintf("invalid address %q (want host:port such as 0.0.0.0:7993 or [::1]:7993)", addr)
	}
	port, err = strconv.Atoi(ps)
	if err != nil || !isInteger(ps) || port < 0 || port > 65535 {
		return "", 0, fmt.Sprintf("invalid port %q in address %q (want 0 to 65535)", ps, addr)
	}
	if h == "" {
		return "*", port, ""
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.IsUnspecified() {
			return "*", port, ""
		}
		return ip.String(), port, ""
	}
	if !hostname.Valid(h) {
		return "", 0, fmt.Sprintf("invalid host %q in address %q", h, addr)
	}
	return strings.ToLower(h), port, ""
}

func handlerList(h map[string]Handler) string {
	if len(h) == 0 {
		return "none defined"
	}
	return strings.Join(sortedKeys(h), ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
