package main

import (
	"encoding/binary"
	"errors"
)

// Message types (RFC 7252 §3).
const (
	CON uint8 = 0
	NON uint8 = 1
	ACK uint8 = 2
	RST uint8 = 3
)

// Codes, as c.dd bytes (class << 5 | detail).
const (
	CodeEmpty   uint8 = 0x00
	CodeGET     uint8 = 0x01
	CodePOST    uint8 = 0x02
	CodePUT     uint8 = 0x03
	CodeDELETE  uint8 = 0x04
	CodeCreated uint8 = 0x41 // 2.01
	CodeDeleted uint8 = 0x42 // 2.02
	CodeChanged uint8 = 0x44 // 2.04
	CodeContent uint8 = 0x45 // 2.05

	CodeBadRequest       uint8 = 0x80 // 4.00
	CodeUnauthorized     uint8 = 0x81 // 4.01
	CodeBadOption        uint8 = 0x82 // 4.02
	CodeNotFound         uint8 = 0x84 // 4.04
	CodeMethodNotAllowed uint8 = 0x85 // 4.05
	CodeNotAcceptable    uint8 = 0x86 // 4.06
	CodeIncomplete       uint8 = 0x88 // 4.08
	CodeTooLarge         uint8 = 0x8D // 4.13
	CodeInternal         uint8 = 0xA0 // 5.00
	CodeUnavailable      uint8 = 0xA3 // 5.03
)

// Option numbers (RFC 7252 §5.10, RFC 7641, RFC 7959, RFC 7967, RFC 9175).
const (
	OptIfMatch       = 1
	OptURIHost       = 3
	OptETag          = 4
	OptIfNoneMatch   = 5
	OptObserve       = 6
	OptURIPort       = 7
	OptLocationPath  = 8
	OptURIPath       = 11
	OptContentFormat = 12
	OptMaxAge        = 14
	OptURIQuery      = 15
	OptAccept        = 17
	OptLocationQuery = 20
	OptBlock2        = 23
	OptBlock1        = 27
	OptSize2         = 28
	OptProxyURI      = 35
	OptProxyScheme   = 39
	OptSize1         = 60
	OptNoResponse    = 258
	OptRequestTag    = 292
)

// Option is one option; Val aliases the parsed datagram.
type Option struct {
	Num uint16
	Val []byte
}

// Message is a parsed or to-be-encoded CoAP message. Token, option values
// and Payload alias the datagram it was parsed from.
type Message struct {
	Type    uint8
	Code    uint8
	MID     uint16
	Token   []byte
	Options []Option // sorted by Num (parsing guarantees it; encoding requires it)
	Payload []byte
}

// Parse errors. errVersion means "silently ignore"; errFormat is a message
// format error (RFC 7252 §4.2/§4.3: RST a CON, ignore a NON); errShort is a
// datagram too short to have a header (ignored).
var (
	errShort   = errors.New("coap: shorter than a header")
	errVersion = errors.New("coap: version is not 1")
	errFormat  = errors.New("coap: message format error")
)

// Parse decodes b into m, reusing m.Options. On errFormat, m.Type and
// m.MID are set from the header so that a CON can be answered with RST.
func Parse(b []byte, m *Message) error {
	m.Options = m.Options[:0]
	m.Token, m.Payload = nil, nil
	if len(b) < 4 {
		return errShort
	}
	if b[0]>>6 != 1 {
		return errVersion
	}
	m.Type = (b[0] >> 4) & 3
	tkl := int(b[0] & 0x0f)
	m.Code = b[1]
	m.MID = binary.BigEndian.Uint16(b[2:4])
	if tkl > 8 {
		return errFormat
	}
	if m.Code == CodeEmpty && (len(b) != 4 || tkl != 0) {
		return errFormat
	}
	if len(b) < 4+tkl {
		return errFormat
	}
	m.Token = b[4 : 4+tkl]
	b = b[4+tkl:]
	num := 0
	for len(b) > 0 {
		if b[0] == 0xff {
			if len(b) == 1 {
				return errFormat // payload marker with no payload
			}
			m.Payload = b[1:]
			return nil
		}
		delta, length := int(b[0]>>4), int(b[0]&0x0f)
		b = b[1:]
		var ok bool
		if delta, b, ok = extend(delta, b); !ok {
			return errFormat
		}
		if length, b, ok = extend(length, b); !ok {
			return errFormat
		}
		num += delta
		if num > 0xffff || length > len(b) {
			return errFormat
		}
		m.Options = append(m.Options, Option{Num: uint16(num), Val: b[:length]})
		b = b[length:]
	}
	return nil
}

// extend reads the extension bytes of an option delta or length nibble.
func extend(v int, b []byte) (int, []byte, bool) {
	switch v {
	case 13:
		if len(b) < 1 {
			return 0, b, false
		}
		return int(b[0]) + 13, b[1:], true
	case 14:
		if len(b) < 2 {
			return 0, b, false
		}
		return int(binary.BigEndian.Uint16(b)) + 269, b[2:], true
	case 15:
		return 0, b, false
	}
	return v, b, true
}

// Append encodes m after dst. m.Options must be sorted by Num.
func (m *Message) Append(dst []byte) []byte {
	dst = append(dst, 1<<6|m.Type<<4|uint8(len(m.Token)), m.Code, byte(m.MID>>8), byte(m.MID))
	dst = append(dst, m.Token...)
	prev := 0
	for _, o := range m.Options {
		dst = appendOption(dst, int(o.Num)-prev, o.Val)
		prev = int(o.Num)
	}
	if len(m.Payload) > 0 {
		dst = append(dst, 0xff)
		dst = append(dst, m.Payload...)
	}
	return dst
}

func appendOption(dst []byte, delta int, val []byte) []byte {
	dn, dx := nibble(delta)
	ln, lx := nibble(len(val))
	dst = append(dst, byte(dn<<4|ln))
	dst = append(dst, dx...)
	dst = append(dst, lx...)
	return append(dst, val...)
}

// nibble returns the 4-bit field and the extension bytes for v.
func nibble(v int) (int, []byte) {
	switch {
	case v < 13:
		return v, nil
	case v < 269:
		return 13, []byte{byte(v - 13)}
	default:
		v -= 269
		return 14, []byte{byte(v >> 8), byte(v)}
	}
}

// Uint decodes a uint option value (leading zero bytes allowed); ok is
// false when it is longer than 4 bytes.
func Uint(v []byte) (uint32, bool) {
	if len(v) > 4 {
		return 0, false
	}
	var n uint32
	for _, c := range v {
		n = n<<8 | uint32(c)
	}
	return n, true
}

// AppendUint encodes n in the fewest bytes (0 is zero-length).
func AppendUint(dst []byte, n uint32) []byte {
	switch {
	case n == 0:
		return dst
	case n < 1<<8:
		return append(dst, byte(n))
	case n < 1<<16:
		return append(dst, byte(n>>8), byte(n))
	case n < 1<<24:
		return append(dst, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// CodeString formats a code as "c.dd".
func CodeString(c uint8) string {
	d := c & 0x1f
	return string([]byte{'0' + c>>5, '.', '0' + d/10, '0' + d%10})
}
