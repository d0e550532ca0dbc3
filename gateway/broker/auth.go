package broker

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// nats-server's connection types (jwt.ConnectionType*).
const (
	connStandard  = "STANDARD"
	connMQTT      = "MQTT"
	connInProcess = "IN_PROCESS"
)

// Connection types a User may be limited to (User.ConnectionTypes).
const (
	ConnNATS = "nats" // NATS clients of Config.NATSListen
	ConnMQTT = "mqtt" // MQTT clients of Config.MQTTListen
)

// User may connect to the NATS and MQTT listeners with a user name and a
// password. MQTT clients send them in CONNECT, NATS clients as user info
// (nats://user:password@host:port, or nats.UserInfo).
type User struct {
	// Name is the user name, non-empty and unique among Config.Users.
	Name string
	// Password is the password in plain text, or its bcrypt hash
	// ("$2a$...", "$2b$..."; nats-server compares with
	// golang.org/x/crypto/bcrypt). Non-empty.
	Password string
	// ConnectionTypes limits the user to some listeners: ConnNATS,
	// ConnMQTT. Empty means both.
	ConnectionTypes []string
	// Permissions are the subjects the user may publish and subscribe
	// to, on top of the reserved subjects denied to every outside client
	// (see Permissions).
	Permissions Permissions
}

// NKey may connect to the NATS listener by signing the server's nonce with
// the private key of a user nkey (nats.Nkey, nats.NkeyOptionFromSeed, or
// the nats CLI's --nkey). MQTT clients cannot sign, so an NKey is for NATS
// clients only.
type NKey struct {
	// PublicKey is the public user nkey: 56 characters starting with 'U'.
	PublicKey string
	// Permissions are as for User.
	Permissions Permissions
}

// Permissions limit what an outside client publishes and subscribes to.
// Entries are NATS subjects, with the wildcards '*' (one token) and '>'
// (one or more tokens, last). MQTT clients are checked on the subject
// their topic maps to (package topic): "a/b" is "a.b", "+" is "*", "#" is
// ">", "." inside a level is "//". A subscription to "a/#" is two, to
// "a.>" and "a", and needs both allowed.
//
// Deny wins over allow, and an empty Allow allows every subject. Every
// outside client is denied, in addition, the subjects nats-server uses
// internally:
//
//   - "$JS.>" (the JetStream API, that could delete the streams holding
//     MQTT sessions, and JetStream acks), "$JSC.>" and "$NRG.>"
//     (clustering), "$SYS.>" (the system account's requests and events),
//     "$KV.>", "$O.>" and "$OBJ.>" (key-value and object stores);
//   - "$MQTT.>" (the streams of the MQTT listener: sessions, retained and
//     QoS 1 and 2 messages). To subscribe, a user that may use MQTT keeps
//     "$MQTT.sub.>" and "$MQTT.deliver.>", where nats-server delivers QoS
//     1 and 2 messages to its MQTT clients and which it checks against
//     the client's deny list. MQTT clients cannot subscribe to "$MQTT/..."
//     topics; a NATS client of such a user can, unless it has a subscribe
//     allow list (which applies to NATS clients' "$MQTT.sub"
//     subscriptions) or is limited to ConnNATS (which denies all of
//     "$MQTT.>");
//   - "$PG.>", protogate's own: the reply subjects of the gateway's
//     requests (JetStream API calls that fetch retained messages).
//
// An allow entry that names one of these subtrees by its first token
// lifts the denies it overlaps, for this client: Publish.Allow
// ["$JS.API.>", ...] grants the JetStream API, ["$MQTT.>"] all of
// "$MQTT.>" (and, as any allow list, limits the client to what it names).
// An entry whose first token is a wildcard (">", "*.b") grants nothing
// reserved.
type Permissions struct {
	Publish, Subscribe Rules
}

// Rules are the allow and deny lists of one direction. A subscribe entry
// may name a queue group after the subject ("orders.* workers").
type Rules struct {
	Allow, Deny []string
}

// reservedPublish are denied to every outside publisher unless granted
// (see Permissions): nats-server's JetStream API and acks ($JS), its
// clustering and RAFT traffic ($JSC, $NRG), the system account ($SYS), the
// key-value and object stores ($KV, $O, $OBJ), the streams of the MQTT
// listener ($MQTT), and protogate's own subjects ($PG: the gateway's
// request inboxes and the client-id registry's requests between nodes).
var reservedPublish = []string{"$JS.>", "$JSC.>", "$NRG.>", "$SYS.>", "$KV.>", "$O.>", "$OBJ.>", "$MQTT.>", "$PG.>"}

// reservedSubscribeMQTT are denied to outside subscribers that may use
// MQTT (see Permissions): reservedPublish, but for "$MQTT.sub.>" and
// "$MQTT.deliver.>". nats-server's MQTT clients receive QoS 1 and 2
// messages on their own "$MQTT.sub.<random>" subscription, which it
// checks against the client's deny list. Subjects of nats-server
// v2.15.2, server/mqtt.go.
var reservedSubscribeMQTT = []string{
	"$JS.>", "$JSC.>", "$NRG.>", "$SYS.>", "$KV.>", "$O.>", "$OBJ.>", "$PG.>",
	"$MQTT.sess.>", "$MQTT.msgs.>", "$MQTT.rmsgs", "$MQTT.rmsgs.>", "$MQTT.qos2.>",
	"$MQTT.out.>", "$MQTT.pubrel.>", "$MQTT.JSA.>",
}

// CheckPassword returns an error when p cannot be a User.Password: empty,
// or shaped as a bcrypt hash (nats-server then compares it as one) without
// being a valid one. The error never quotes p.
func CheckPassword(p string) error {
	if p == "" {
		return errors.New("broker: password must not be empty")
	}
	if looksBcrypt(p) {
		if _, err := bcrypt.Cost([]byte(p)); err != nil {
			return fmt.Errorf("broker: password starts as a bcrypt hash but is not one (%v): "+
				"nats-server would compare it as a hash and no password would match; give a complete hash or another password", err)
		}
	}
	return nil
}

// bcryptPrefix is what nats-server takes for a bcrypt hash (isBcrypt in
// server/auth.go).
var bcryptPrefix = regexp.MustCompile(`^\$2[abxy]\$\d{2}\$.*`)

func looksBcrypt(p string) bool { return bcryptPrefix.MatchString(p) }

// CheckNKey returns an error when k is not a public user nkey.
func CheckNKey(k string) error {
	if !nkeys.IsValidPublicUserKey(k) {
		return fmt.Errorf("broker: %q is not a public user nkey (want the 56 characters starting with U that \"nk -gen user -pubout\" or \"nsc\" print)", k)
	}
	return nil
}

// CheckConnectionType returns an error when t is not ConnNATS or ConnMQTT.
func CheckConnectionType(t string) error {
	switch t {
	case ConnNATS, ConnMQTT:
		return nil
	}
	return fmt.Errorf("broker: unknown connection type %q (want %s or %s)", t, ConnNATS, ConnMQTT)
}

// CheckSubject returns an error when s is not a valid permission entry: a
// NATS subject, with wildcards, and for subscribe (queue true) optionally
// followed by a space and a queue group name; the check nats-server
// applies to its own permissions.
func CheckSubject(s string, queue bool) error {
	if server.IsValidSubject(s) {
		return nil
	}
	if f := strings.Fields(s); queue && len(f) == 2 {
		if !server.IsValidSubject(f[0]) {
			return fmt.Errorf("broker: %q is not a valid NATS subject", f[0])
		}
		if !server.IsValidSubject(f[1]) {
			return fmt.Errorf("broker: %q is not a valid queue group name", f[1])
		}
		return nil
	}
	return fmt.Errorf("broker: %q is not a valid NATS subject (tokens separated by '.', the wildcards '*' and '>' as whole tokens, '>' last)", s)
}

// mqttTopicLike matches subjects that look like MQTT topics: MQTT's
// wildcards, or a '/' between two ordinary characters (MQTT's level
// separator; a subject mapped from a topic has '/' only next to '.' or
// another '/').
var mqttTopicLike = regexp.MustCompile(`[#+]|[^./]/[^./]`)

// LooksLikeMQTT reports whether a permission entry looks like an MQTT
// topic filter written where a NATS subject belongs (such as "a/b/#" for
// "a.b.>"). Such an entry is a valid subject, one that no MQTT topic maps
// to.
func LooksLikeMQTT(s string) bool {
	if f := strings.Fields(s); len(f) > 0 {
		s = f[0]
	}
	return mqttTopicLike.MatchString(s)
}

// checkAuth checks the users and nkeys of cfg with the Check functions.
func checkAuth(cfg *Config) error {
	var errs []error
	names := map[string]bool{}
	for i, u := range cfg.Users {
		if u.Name == "" {
			errs = append(errs, fmt.Errorf("users[%d]: user name must not be empty", i))
		} else if names[u.Name] {
			errs = append(errs, fmt.Errorf("users[%d]: duplicate user %q", i, u.Name))
		}
		names[u.Name] = true
		if err := CheckPassword(u.Password); err != nil {
			errs = append(errs, fmt.Errorf("users[%d]: %w", i, err))
		}
		for _, t := range u.ConnectionTypes {
			if err := CheckConnectionType(t); err != nil {
				errs = append(errs, fmt.Errorf("users[%d]: %w", i, err))
			}
		}
		if err := checkPermissions(u.Permissions); err != nil {
			errs = append(errs, fmt.Errorf("users[%d]: %w", i, err))
		}
	}
	keys := map[string]bool{}
	for i, k := range cfg.NKeys {
		if err := CheckNKey(k.PublicKey); err != nil {
			errs = append(errs, fmt.Errorf("nkeys[%d]: %w", i, err))
		} else if keys[k.PublicKey] {
			errs = append(errs, fmt.Errorf("nkeys[%d]: duplicate nkey %q", i, k.PublicKey))
		}
		keys[k.PublicKey] = true
		if err := checkPermissions(k.Permissions); err != nil {
			errs = append(errs, fmt.Errorf("nkeys[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func checkPermissions(p Permissions) error {
	var errs []error
	for _, l := range []struct {
		list  []string
		queue bool
	}{{p.Publish.Allow, false}, {p.Publish.Deny, false}, {p.Subscribe.Allow, true}, {p.Subscribe.Deny, true}} {
		for _, s := range l.list {
			if err := CheckSubject(s, l.queue); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// authSetup configures the authentication of opts for cfg's listeners and
// returns the options with which the gateway's own in-process connection
// logs in.
//
// The gateway connects as a user nkey made for this run, whose private
// key never leaves this process, and that nats-server accepts on
// in-process connections only: it keeps full rights and no outside client
// can use it. Outside clients log in as cfg.Users or cfg.NKeys; with
// anonymous access, a client that sends no credentials is a second
// per-run nkey (nats-server's no_auth_user) that has only the reserved
// subjects denied.
func authSetup(cfg *Config, opts *server.Options) (nats.Option, nkeys.KeyPair, error) {
	gw, err := nkeys.CreateUser()
	if err != nil {
		return nil, nil, err
	}
	gwPub, err := gw.PublicKey()
	if err != nil {
		return nil, nil, err
	}
	opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{
		Nkey:                   gwPub,
		AllowedConnectionTypes: connTypes(connInProcess),
	})
	for _, u := range cfg.Users {
		mqtt := len(u.ConnectionTypes) == 0
		var types []string
		for _, t := range u.ConnectionTypes {
			switch t {
			case ConnNATS:
				types = append(types, connStandard)
			case ConnMQTT:
				types = append(types, connMQTT)
				mqtt = true
			}
		}
		if len(types) == 0 {
			types = []string{connStandard, connMQTT}
		}
		opts.Users = append(opts.Users, &server.User{
			Username:               u.Name,
			Password:               u.Password,
			Permissions:            u.Permissions.server(mqtt),
			AllowedConnectionTypes: connTypes(types...),
		})
	}
	for _, k := range cfg.NKeys {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{
			Nkey:                   k.PublicKey,
			Permissions:            k.Permissions.server(false),
			AllowedConnectionTypes: connTypes(connStandard),
		})
	}
	if cfg.AllowAnonymous || len(cfg.Users)+len(cfg.NKeys) == 0 {
		anon, err := nkeys.CreateUser()
		if err != nil {
			return nil, nil, err
		}
		pub, err := anon.PublicKey()
		anon.Wipe() // nobody signs with it: no_auth_user needs no signature
		if err != nil {
			return nil, nil, err
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{
			Nkey:                   pub,
			Permissions:            Permissions{}.server(true),
			AllowedConnectionTypes: connTypes(connStandard, connMQTT),
		})
		opts.NoAuthUser = pub
	}
	// The in-process handshake must not time out on a loaded machine
	// either (see the nats.Timeout of Start).
	opts.AuthTimeout = 10
	return nats.Nkey(gwPub, gw.Sign), gw, nil
}

func connTypes(types ...string) map[string]struct{} {
	m := make(map[string]struct{}, len(types))
	for _, t := range types {
		m[t] = struct{}{}
	}
	return m
}

// server returns p as nats-server permissions, with the reserved subjects
// denied. mqtt says whether the client may connect over MQTT.
func (p Permissions) server(mqtt bool) *server.Permissions {
	sub := reservedPublish
	if mqtt {
		sub = reservedSubscribeMQTT
	}
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: nonEmpty(p.Publish.Allow),
			Deny:  withReserved(p.Publish, reservedPublish),
		},
		Subscribe: &server.SubjectPermission{
			Allow: nonEmpty(p.Subscribe.Allow),
			Deny:  withReserved(p.Subscribe, sub),
		},
	}
}

// nonEmpty returns nil for an empty list: nats-server denies everything
// for an empty, non-nil allow list.
func nonEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return append([]string(nil), l...)
}

// withReserved returns r.Deny followed by the reserved entries that no
// entry of r.Allow grants.
func withReserved(r Rules, reserved []string) []string {
	deny := append([]string(nil), r.Deny...)
	for _, d := range reserved {
		granted := false
		for _, a := range r.Allow {
			if f := strings.Fields(a); len(f) > 0 && grants(f[0], d) {
				granted = true
				break
			}
		}
		if !granted {
			deny = append(deny, d)
		}
	}
	return deny
}

// grants reports whether the allow entry a grants (part of) the reserved
// subtree d: a names d's first token, "$JS" or "$MQTT", literally, and
// the two overlap. Wildcards in the first token (">", "*.x") grant
// nothing reserved.
func grants(a, d string) bool {
	af, _, _ := strings.Cut(a, ".")
	df, _, _ := strings.Cut(d, ".")
	return af == df && server.SubjectsCollide(a, d)
}
