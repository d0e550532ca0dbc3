package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/protogate/protogate/gateway/limit"
	"github.com/protogate/protogate/guests/builtin"
)

// nameRE is the syntax of node, handler and listener names.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// builtinRE is the syntax of "builtin:<name>" wasm modules.
var builtinRE = regexp.MustCompile(`^builtin:[A-Za-z0-9_.-]+$`)

// hexDigestRE is the syntax of a "sha256:" password digest.
var hexDigestRE = regexp.MustCompile(`^[0-9A-Fa-f]{64}$`)

// Validate checks c: value ranges, enumerations, addresses, that tls and psk
// files exist, and the cross-field rules (unique listener names and bind
// addresses, existing handler references, keys that apply only to some
// listener types, ...). It does not apply defaults.
// For a Config returned by Parse the error names the line; for one built in
// Go the line is omitted. When there are several problems, the one earliest
// in the document is returned.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.run()
	if len(v.errs) == 0 {
		return nil
	}
	sort.SliceStable(v.errs, func(i, j int) bool {
		a, b := v.errs[i].Line, v.errs[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
	return v.errs[0]
}

type validator struct {
	c    *Config
	errs []*Error
}

func (v *validator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, errorf(v.c.lineOf(path), path, format, args...))
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

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errf("log.level", "unknown log level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.errf("log.format", "unknown log format %q (want text or json)", c.Log.Format)
	}

	// TCP and UDP ports are separate: tcp and ssl listeners, the adapter and
	// the broker (all TCP) share binds; udp and dtls listeners udpBinds.
	binds, udpBinds := &bindSet{}, &bindSet{}
	if c.Broker.NATSListen != "" {
		v.bind(binds, "broker.nats_listen", c.Broker.NATSListen)
	}
	if c.Broker.MQTTListen != "" {
		v.bind(binds, "broker.mqtt_listen", c.Broker.MQTTListen)
	}
	if c.Broker.MaxPayload < 1 || c.Broker.MaxPayload > 64*MiB {
		v.errf("broker.max_payload", "%s is out of range (want 1B to 64MiB)", c.Broker.MaxPayload)
	}

	if c.Adapter.Bind == "" {
		v.errf("adapter.bind", "must not be empty (want host:port such as 127.0.0.1:9100)")
	} else {
		v.bind(binds, "adapter.bind", c.Adapter.Bind)
	}
	if c.Adapter.TLS != nil {
		v.serverTLS("adapter.tls", c.Adapter.TLS)
	}

	v.duration("gateway.idle_timeout", c.Gateway.IdleTimeout, false)
	v.mountpoint("gateway.mountpoint", c.Gateway.Mountpoint)

	if a := c.Authentication; a != nil {
		switch a.UserIDType {
		case UserIDUsername, UserIDClientID:
		default:
			v.errf("authentication.user_id_type", "unknown user id type %q (want username or clientid)", a.UserIDType)
		}
		if len(a.Users) == 0 {
			v.errf("authentication.users", "at least one user is required (remove the authentication block to allow every client)")
		}
		for _, id := range sortedKeys(a.Users) {
			p := joinKey("authentication.users", id)
			pw := a.Users[id]
			switch {
			case id == "":
				v.errf(p, "user id must not be empty")
			case pw == "":
				v.errf(p, "password must not be empty")
			case hasPrefixFold(pw, "sha256:"):
				if !hexDigestRE.MatchString(pw[len("sha256:"):]) {
					v.errf(p, "a sha256: password must be followed by 64 hex digits (the SHA-256 digest of the password)")
				}
			}
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
		} else if _, ok := c.Handlers[l.Handler]; !ok {
			v.errf(p+".handler", "unknown handler %q (want one of: %s)", l.Handler, handlerList(c.Handlers))
		}
		v.duration(p+".idle_timeout", l.IdleTimeout, false)
		v.mountpoint(p+".mountpoint", l.Mountpoint)
		v.connManagement(p, l)
	}
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
		if f := l.Framing; f != nil {
			v.framing(p+".framing", f)
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

func (v *validator) framing(p string, f *Framing) {
	switch f.Type {
	case FramingLength:
		if f.Bytes != 2 && f.Bytes != 4 {
			v.errf(p+".bytes", "%d is not a valid length prefix size (want 2 or 4)", f.Bytes)
		}
		if f.Endian != "big" && f.Endian != "little" {
			v.errf(p+".endian", "unknown byte order %q (want big or little)", f.Endian)
		}
		return
	case FramingLine:
	case "":
		v.errf(p+".type", "missing framing type (want line or length)")
	default:
		v.errf(p+".type", "unknown framing type %q (want line or length)", f.Type)
	}
	if f.Bytes != 0 || v.given(p+".bytes") {
		v.errf(p+".bytes", "bytes applies only to framing type length")
	}
	if f.Endian != "" || v.given(p+".endian") {
		v.errf(p+".endian", "endian applies only to framing type length")
	}
}

func (v *validator) psk(p string, k *PSK) {
	if k.IdentitiesFile == "" && len(k.Identities) == 0 {
		v.errf(p, "psk needs identities_file or identities")
	}
	v.file(p+".identities_file", k.IdentitiesFile)
	for _, id := range sortedKeys(k.Identities) {
		ip := joinKey(p+".identities", id)
		if id == "" {
			v.errf(ip, "identity must not be empty")
			continue
		}
		// The key is a secret: never quote it.
		key := k.Identities[id]
		switch {
		case key == "":
			v.errf(ip, "key must not be empty (want 2 to 128 hex digits: 1 to 64 bytes)")
		case !isHex(key):
			v.errf(ip, "key must be hex digits (want 2 to 128 hex digits: 1 to 64 bytes)")
		case len(key)%2 != 0:
			v.errf(ip, "key has an odd number of hex digits (want 2 to 128 hex digits: 1 to 64 bytes)")
		case len(key)/2 > MaxPSKBytes:
			v.errf(ip, "key is %d bytes long (want 1 to 64 bytes: 2 to 128 hex digits)", len(key)/2)
		}
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
		scheme := v.grpcAddress(gp+".address", g.Address)
		switch g.ServiceName {
		case ServiceUnary, ServiceStream:
		default:
			v.errf(gp+".service_name", "unknown service %q (want ConnectionUnaryHandler or ConnectionHandler)", g.ServiceName)
		}
		v.duration(gp+".timeout", g.Timeout, true)
		if t := g.TLS; t != nil {
			if scheme == "http" {
				v.errf(gp+".tls", "tls needs an https:// address")
			}
			if (t.CertFile == "") != (t.KeyFile == "") {
				v.errf(gp+".tls", "cert_file and key_file must be set together")
			}
			v.file(gp+".tls.ca_file", t.CAFile)
			v.file(gp+".tls.cert_file", t.CertFile)
			v.file(gp+".tls.key_file", t.KeyFile)
		}
	}
	if w := h.Wasm; w != nil {
		wp := p + ".wasm"
		switch {
		case w.Path == "":
			v.errf(wp+".path", "missing module path (want a file path or builtin:<name>)")
		case strings.HasPrefix(w.Path, "builtin:"):
			if !builtinRE.MatchString(w.Path) {
				v.errf(wp+".path", "invalid builtin module %q (want builtin:<name>)", w.Path)
			} else if _, ok := builtin.Lookup(strings.TrimPrefix(w.Path, "builtin:")); !ok {
				v.errf(wp+".path", "no built-in module %q (have builtin:%s)", w.Path, strings.Join(builtin.Names(), ", builtin:"))
			}
		default:
			v.file(wp+".path", w.Path)
		}
		if w.Instances < 0 || w.Instances > 1024 {
			v.errf(wp+".instances", "%d is out of range (want 0 to 1024; 0 means GOMAXPROCS)", w.Instances)
		}
		if w.MemoryLimit < 64*KiB || w.MemoryLimit > 4*GiB {
			v.errf(wp+".memory_limit", "%s is out of range (want 64KiB to 4GiB)", w.MemoryLimit)
		}
		v.duration(wp+".call_timeout", w.CallTimeout, true)
	}
}

// grpcAddress checks a handler address and returns its scheme ("" if bad).
func (v *validator) grpcAddress(p, addr string) string {
	if addr == "" {
		v.errf(p, "missing address (want a URL such as http://127.0.0.1:9001)")
		return ""
	}
	if !strings.Contains(addr, "://") {
		v.errf(p, "address %q has no scheme; write %q (or https:// for TLS)", addr, "http://"+addr)
		return ""
	}
	u, err := url.Parse(addr)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		v.errf(p, "invalid address %q: %v", addr, err)
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		v.errf(p, "unsupported scheme %q in %q (want http:// or https://)", u.Scheme, addr)
	case u.User != nil:
		v.errf(p, "address %q must not contain user information", addr)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.Opaque != "":
		v.errf(p, "address %q must be scheme://host:port without a path or query", addr)
	case u.Hostname() == "":
		v.errf(p, "address %q has no host", addr)
	case u.Port() == "":
		v.errf(p, "address %q has no port; want e.g. %s://%s:9001", addr, scheme, u.Host)
	default:
		if port, err := strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
			v.errf(p, "address %q has an invalid port", addr)
		} else {
			return scheme
		}
	}
	return ""
}

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
	v.file(p+".cert_file", t.CertFile)
	v.file(p+".key_file", t.KeyFile)
	v.file(p+".ca_file", t.CAFile)
}

// file checks that name, if set, is an existing regular file (or symlink to
// one).
func (v *validator) file(p, name string) {
	if name == "" {
		return
	}
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.errf(p, "file %q does not exist", name)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		v.errf(p, "cannot use file %q: %v", name, err)
	case fi.IsDir():
		v.errf(p, "%q is a directory, want a file", name)
	}
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
	if !validHostname(h) {
		return "", 0, fmt.Sprintf("invalid host %q in address %q", h, addr)
	}
	return strings.ToLower(h), port, ""
}

// validHostname reports whether h is a plausible DNS host name.
func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
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

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// Target returns the host:port to dial for g.Address and whether the
// connection uses TLS (https://). It is meaningful only for a validated
// config; for an invalid address it returns "", false.
func (g *GRPCHandler) Target() (hostport string, useTLS bool) {
	u, err := url.Parse(g.Address)
	if err != nil {
		return "", false
	}
	return u.Host, strings.EqualFold(u.Scheme, "https")
}

// Verify reports whether password is correct for the user id, comparing in
// constant time. Passwords stored as "sha256:<hex>" are compared by
// digest. A nil Authentication (the block is absent) allows everyone.
func (a *Authentication) Verify(id, password string) bool {
	if a == nil {
		return true
	}
	stored, ok := a.Users[id]
	got := sha256.Sum256([]byte(password))
	var want []byte
	switch {
	case !ok || stored == "":
		// Compare anyway so that unknown ids take the same time.
		subtle.ConstantTimeCompare(got[:], got[:])
		return false
	case hasPrefixFold(stored, "sha256:"):
		var err error
		if want, err = hex.DecodeString(stored[len("sha256:"):]); err != nil {
			return false
		}
	default:
		sum := sha256.Sum256([]byte(stored))
		want = sum[:]
	}
	return subtle.ConstantTimeCompare(got[:], want) == 1
}
