package main

import (
	"encoding/binary"
	"errors"
	"strings"
)

// The few CoAP (RFC 7252) bytes the observers of the coap group build and
// read by hand: 10,000 go-coap clients would cost 10,000 sets of
// goroutines and timers in the load process; a raw socket per observer
// costs a descriptor and one goroutine.

// CoAP message types and the codes the group uses.
const (
	coapCON = 0
	coapNON = 1
	coapACK = 2
	coapRST = 3

	coapGET      = 0x01
	coapPOST     = 0x02
	coapPUT      = 0x03
	coapCreated  = 0x41 // 2.01
	coapChanged  = 0x44 // 2.04
	coapContent  = 0x45 // 2.05
	coapNotFound = 0x84 // 4.04

	optObserve  = 6
	optURIPath  = 11
	optURIQuery = 15
)

// coapOpt is one option of a message.
type coapOpt struct {
	num uint16
	val []byte
}

// coapMsg is a parsed CoAP message; its slices point into the datagram.
type coapMsg struct {
	typ, code uint8
	mid       uint16
	token     []byte
	opts      []coapOpt
	payload   []byte
}

// observe returns the Observe option's value; ok is false without one.
func (m *coapMsg) observe() (v uint32, ok bool) {
	for _, o := range m.opts {
		if o.num == optObserve {
			for _, b := range o.val {
				v = v<<8 | uint32(b)
			}
			return v, true
		}
	}
	return 0, false
}

// underPS reports whether the message's Uri-Path is /ps/ and at least one
// more segment.
func (m *coapMsg) underPS() bool {
	var segs int
	for _, o := range m.opts {
		if o.num != optURIPath {
			continue
		}
		if segs == 0 && string(o.val) != "ps" {
			return false
		}
		segs++
	}
	return segs > 1
}

var errCoapShort = errors.New("protogate-bench: coap: datagram too short")

// parseCoap parses a datagram. The options are appended to m.opts[:0].
func parseCoap(b []byte, m *coapMsg) error {
	if len(b) < 4 {
		return errCoapShort
	}
	if b[0]>>6 != 1 {
		return errors.New("protogate-bench: coap: not version 1")
	}
	tkl := int(b[0] & 0x0f)
	if tkl > 8 || len(b) < 4+tkl {
		return errors.New("protogate-bench: coap: bad token length")
	}
	m.typ, m.code, m.mid = b[0]>>4&3, b[1], binary.BigEndian.Uint16(b[2:4])
	m.token = b[4 : 4+tkl]
	m.opts, m.payload = m.opts[:0], nil
	b = b[4+tkl:]
	num := 0
	for len(b) > 0 {
		if b[0] == 0xff {
			if len(b) == 1 {
				return errors.New("protogate-bench: coap: payload marker without payload")
			}
			m.payload = b[1:]
			return nil
		}
		delta, length := int(b[0]>>4), int(b[0]&0x0f)
		b = b[1:]
		var err error
		if delta, b, err = coapExt(delta, b); err != nil {
			return err
		}
		if length, b, err = coapExt(length, b); err != nil {
			return err
		}
		if len(b) < length {
			return errCoapShort
		}
		num += delta
		m.opts = append(m.opts, coapOpt{num: uint16(num), val: b[:length]})
		b = b[length:]
	}
	return nil
}

// coapExt reads the extended form of an option delta or length nibble.
func coapExt(n int, b []byte) (int, []byte, error) {
	switch n {
	case 13:
		if len(b) < 1 {
			return 0, nil, errCoapShort
		}
		return int(b[0]) + 13, b[1:], nil
	case 14:
		if len(b) < 2 {
			return 0, nil, errCoapShort
		}
		return int(binary.BigEndian.Uint16(b)) + 269, b[2:], nil
	case 15:
		return 0, nil, errors.New("protogate-bench: coap: reserved option nibble")
	}
	return n, b, nil
}

// appendCoap appends a message with the options (in ascending number
// order) and payload.
func appendCoap(b []byte, typ, code uint8, mid uint16, token []byte, opts []coapOpt, payload []byte) []byte {
	b = append(b, 1<<6|typ<<4|uint8(len(token)), code, byte(mid>>8), byte(mid))
	b = append(b, token...)
	prev := 0
	for _, o := range opts {
		b = appendCoapOpt(b, int(o.num)-prev, len(o.val))
		b = append(b, o.val...)
		prev = int(o.num)
	}
	if len(payload) > 0 {
		b = append(b, 0xff)
		b = append(b, payload...)
	}
	return b
}

func appendCoapOpt(b []byte, delta, length int) []byte {
	nib := func(v int) (byte, []byte) {
		switch {
		case v < 13:
			return byte(v), nil
		case v < 269:
			return 13, []byte{byte(v - 13)}
		default:
			return 14, []byte{byte((v - 269) >> 8), byte(v - 269)}
		}
	}
	d, dx := nib(delta)
	l, lx := nib(length)
	b = append(b, d<<4|l)
	b = append(b, dx...)
	return append(b, lx...)
}

// pathOpts returns the Uri-Path options of path ("/ps/a/b").
func pathOpts(path string) []coapOpt {
	var opts []coapOpt
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		opts = append(opts, coapOpt{num: optURIPath, val: []byte(seg)})
	}
	return opts
}

// observeRequest is a CON GET of path with Observe 0.
func observeRequest(mid uint16, token []byte, path string) []byte {
	opts := append([]coapOpt{{num: optObserve}}, pathOpts(path)...)
	return appendCoap(nil, coapCON, coapGET, mid, token, opts, nil)
}

// emptyACK acknowledges the CON message mid.
func emptyACK(mid uint16) []byte {
	return appendCoap(nil, coapACK, 0, mid, nil, nil, nil)
}
