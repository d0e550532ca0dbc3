// Package jsonproto is the codec of the JSON test protocol that EMQX's ExProto
// echo handler speaks (emqx_exproto_echo_svr.erl) and that the conformance
// suite, the reference remote handler and the reference Wasm guest share.
//
// A frame is one JSON object whose "type" member selects the frame type and
// which other members it carries:
//
//	type  name         members
//	1     CONNECT      clientinfo{proto_name, proto_ver, clientid, username, mountpoint, keepalive}, password
//	2     CONNACK      code
//	3     PUBLISH      topic, qos, payload
//	4     PUBACK       code
//	5     SUBSCRIBE    topic, qos
//	6     SUBACK       code
//	7     UNSUBSCRIBE  topic
//	8     UNSUBACK     code
//	9     DISCONNECT   (none)
//	10    RAW_PUBLISH  topic, qos, payload
//
// The payload is a JSON string, so it carries text, not arbitrary bytes. EMQX's
// test server writes one object per TCP segment or datagram with no delimiter;
// EMQX's bench client and its Erlang example handler append "##" after every
// object. [Encode] writes a bare object. [AppendLine] adds a newline, and is
// what protogate's reference handlers (internal/jsonhandler and the
// guests/exproto-json Wasm guest) write, so that a person typing frames into
// nc sees one answer per line; JSON allows whitespace after a value, so a
// client that decodes one object per segment or datagram reads it as before.
// [Decoder] accepts all three styles and reassembles objects that arrive
// split or coalesced.
//
// The package uses only the standard library so that it also builds for
// GOOS=wasip1.
package jsonproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Type is a frame type, the "type" member of a frame.
type Type int

// The frame types of the JSON test protocol.
const (
	Connect     Type = 1
	Connack     Type = 2
	Publish     Type = 3
	Puback      Type = 4
	Subscribe   Type = 5
	Suback      Type = 6
	Unsubscribe Type = 7
	Unsuback    Type = 8
	Disconnect  Type = 9
	RawPublish  Type = 10
)

// String returns the protocol name of t, such as "CONNECT", or "Type(42)" for
// an unknown type.
func (t Type) String() string {
	switch t {
	case Connect:
		return "CONNECT"
	case Connack:
		return "CONNACK"
	case Publish:
		return "PUBLISH"
	case Puback:
		return "PUBACK"
	case Subscribe:
		return "SUBSCRIBE"
	case Suback:
		return "SUBACK"
	case Unsubscribe:
		return "UNSUBSCRIBE"
	case Unsuback:
		return "UNSUBACK"
	case Disconnect:
		return "DISCONNECT"
	case RawPublish:
		return "RAW_PUBLISH"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Known reports whether t is one of the ten frame types of the protocol.
func (t Type) Known() bool { return t >= Connect && t <= RawPublish }

// ClientInfo is the "clientinfo" member of a CONNECT frame. All of its members
// are optional on the wire; absent members decode as zero values and zero
// Username, Mountpoint and Keepalive are omitted by [Encode].
type ClientInfo struct {
	ProtoName  string // "proto_name"
	ProtoVer   string // "proto_ver"
	ClientID   string // "clientid"
	Username   string // "username"
	Mountpoint string // "mountpoint"; ignored by EMQX 5.1+ gateways
	Keepalive  uint32 // "keepalive", seconds; 0 means no keepalive timer
}

// Frame is one frame of the JSON test protocol. Only the fields that belong to
// Type (see the package documentation) are encoded and decoded; the others are
// ignored by [Encode] and left zero by [Decoder]. Frame is comparable with ==.
type Frame struct {
	Type       Type
	ClientInfo ClientInfo // CONNECT
	Password   string     // CONNECT
	Topic      string     // PUBLISH, RAW_PUBLISH, SUBSCRIBE, UNSUBSCRIBE
	QoS        uint32     // PUBLISH, RAW_PUBLISH, SUBSCRIBE
	Payload    string     // PUBLISH, RAW_PUBLISH
	Code       int        // CONNACK, PUBACK, SUBACK, UNSUBACK; 0 is success
}

// ErrFrameTooLarge is returned (wrapped) by [Decoder.Next] when a frame is
// larger than the decoder's maximum size.
var ErrFrameTooLarge = errors.New("jsonproto: frame too large")

// members lists which members a frame type carries.
type members uint8

const (
	mClientInfo members = 1 << iota
	mPassword
	mTopic
	mQoS
	mPayload
	mCode
)

func membersOf(t Type) members {
	switch t {
	case Connect:
		return mClientInfo | mPassword
	case Connack, Puback, Suback, Unsuback:
		return mCode
	case Publish, RawPublish:
		return mTopic | mQoS | mPayload
	case Subscribe:
		return mTopic | mQoS
	case Unsubscribe:
		return mTopic
	}
	return 0
}

// Encode returns f as one JSON object with no delimiter, the way EMQX's echo
// handler writes it. The "type" member comes first, followed by exactly the
// members that belong to f.Type, all of them present even when zero (the
// Erlang echo handler requires them). A frame of an unknown type is encoded
// with its type and every non-zero field. Strings that are not valid UTF-8
// have the bad bytes replaced by U+FFFD.
func Encode(f Frame) []byte {
	return AppendEncode(make([]byte, 0, 64+len(f.Topic)+len(f.Payload)), f)
}

// AppendEncode appends the encoding of f, as produced by [Encode], to dst and
// returns the extended slice.
func AppendEncode(dst []byte, f Frame) []byte {
	m := membersOf(f.Type)
	all := !f.Type.Known()
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(f.Type), 10)
	if m&mClientInfo != 0 || (all && f.ClientInfo != ClientInfo{}) {
		dst = appendClientInfo(append(dst, `,"clientinfo":`...), f.ClientInfo)
	}
	if m&mPassword != 0 || (all && f.Password != "") {
		dst = appendString(append(dst, `,"password":`...), f.Password)
	}
	if m&mTopic != 0 || (all && f.Topic != "") {
		dst = appendString(append(dst, `,"topic":`...), f.Topic)
	}
	if m&mQoS != 0 || (all && f.QoS != 0) {
		dst = strconv.AppendUint(append(dst, `,"qos":`...), uint64(f.QoS), 10)
	}
	if m&mPayload != 0 || (all && f.Payload != "") {
		dst = appendString(append(dst, `,"payload":`...), f.Payload)
	}
	if m&mCode != 0 || (all && f.Code != 0) {
		dst = strconv.AppendInt(append(dst, `,"code":`...), int64(f.Code), 10)
	}
	return append(dst, '}')
}

// AppendLine appends the encoding of f, as produced by [Encode], and a
// newline to dst and returns the extended slice: one answer of the
// reference handlers.
func AppendLine(dst []byte, f Frame) []byte {
	return append(AppendEncode(dst, f), '\n')
}

func appendClientInfo(dst []byte, ci ClientInfo) []byte {
	dst = appendString(append(dst, `{"proto_name":`...), ci.ProtoName)
	dst = appendString(append(dst, `,"proto_ver":`...), ci.ProtoVer)
	dst = appendString(append(dst, `,"clientid":`...), ci.ClientID)
	if ci.Username != "" {
		dst = appendString(append(dst, `,"username":`...), ci.Username)
	}
	if ci.Mountpoint != "" {
		dst = appendString(append(dst, `,"mountpoint":`...), ci.Mountpoint)
	}
	if ci.Keepalive != 0 {
		dst = strconv.AppendUint(append(dst, `,"keepalive":`...), uint64(ci.Keepalive), 10)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON as is, but escaped for JavaScript consumers.
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// Decode parses data, which must hold exactly one frame (surrounding
// whitespace and "##" delimiters are allowed), for example one UDP datagram.
func Decode(data []byte) (Frame, error) {
	d := Decoder{max: len(data) + 1}
	d.Feed(data)
	f, ok, err := d.Next()
	if err != nil {
		return Frame{}, err
	}
	if !ok {
		return Frame{}, errors.New("jsonproto: incomplete frame")
	}
	if _, more, err := d.Next(); more || err != nil || d.Buffered() != 0 {
		return Frame{}, errors.New("jsonproto: trailing data after frame")
	}
	return f, nil
}

// decodeObject converts one complete JSON object into a Frame. It checks that
// the frame type is known and that the members the type requires are present
// with the right JSON types; members that do not belong to the type are
// ignored. Member names are case-sensitive. A null member counts as absent.
func decodeObject(obj []byte) (Frame, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(obj, &raw); err != nil {
		return Frame{}, fmt.Errorf("jsonproto: invalid frame: %w", err)
	}
	var f Frame
	found, err := field(raw, "type", &f.Type)
	if err != nil {
		return Frame{}, err
	}
	if !found {
		return Frame{}, errors.New(`jsonproto: frame has no "type"`)
	}
	if !f.Type.Known() {
		return Frame{}, fmt.Errorf("jsonproto: unknown frame type %d", int(f.Type))
	}
	m := membersOf(f.Type)
	if m&mClientInfo != 0 {
		if err := requireField(raw, f.Type, "clientinfo", nil); err != nil {
			return Frame{}, err
		}
		if err := decodeClientInfo(raw["clientinfo"], &f.ClientInfo); err != nil {
			return Frame{}, err
		}
	}
	if m&mPassword != 0 {
		if err := requireField(raw, f.Type, "password", &f.Password); err != nil {
			return Frame{}, err
		}
	}
	if m&mTopic != 0 {
		if err := requireField(raw, f.Type, "topic", &f.Topic); err != nil {
			return Frame{}, err
		}
	}
	if m&mQoS != 0 {
		if err := requireField(raw, f.Type, "qos", &f.QoS); err != nil {
			return Frame{}, err
		}
	}
	if m&mPayload != 0 {
		if err := requireField(raw, f.Type, "payload", &f.Payload); err != nil {
			return Frame{}, err
		}
	}
	if m&mCode != 0 {
		if err := requireField(raw, f.Type, "code", &f.Code); err != nil {
			return Frame{}, err
		}
	}
	return f, nil
}

func decodeClientInfo(data json.RawMessage, ci *ClientInfo) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("jsonproto: invalid clientinfo: %w", err)
	}
	for _, m := range []struct {
		name string
		dst  any
	}{
		{"proto_name", &ci.ProtoName},
		{"proto_ver", &ci.ProtoVer},
		{"clientid", &ci.ClientID},
		{"username", &ci.Username},
		{"mountpoint", &ci.Mountpoint},
		{"keepalive", &ci.Keepalive},
	} {
		if _, err := field(raw, m.name, m.dst); err != nil {
			return fmt.Errorf("jsonproto: clientinfo: %w", err)
		}
	}
	return nil
}

// requireField decodes raw[name] into dst (dst nil: only check presence) and
// fails if it is absent or null.
func requireField(raw map[string]json.RawMessage, t Type, name string, dst any) error {
	if v, ok := raw[name]; !ok || isNull(v) {
		return fmt.Errorf("jsonproto: %s frame has no %q", t, name)
	}
	if dst == nil {
		return nil
	}
	_, err := field(raw, name, dst)
	return err
}

// field decodes raw[name] into dst if it is present and not null.
func field(raw map[string]json.RawMessage, name string, dst any) (bool, error) {
	v, ok := raw[name]
	if !ok || isNull(v) {
		return false, nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return false, fmt.Errorf("jsonproto: member %q: %w", name, err)
	}
	return true, nil
}

func isNull(v json.RawMessage) bool { return string(v) == "null" }
