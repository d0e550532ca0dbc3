package listener_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/protogate/protogate/gateway"
)

// A tiny CoAP (RFC 7252) responder, just enough for the interop tests: it
// answers every GET with 2.05 Content and a fixed text payload.

// CoAP message types and codes used here.
const (
	coapCON = 0
	coapNON = 1
	coapACK = 2
	coapRST = 3

	coapEmpty    = 0x00 // 0.00
	coapGET      = 0x01 // 0.01
	coapContent  = 0x45 // 2.05
	coapNotFound = 0x84 // 4.04
	coapBadReq   = 0x80 // 4.00

	coapOptUriPath       = 11
	coapOptContentFormat = 12
)

const coapPayload = "hello from protogate"

// coapMsg is a parsed CoAP message; only what the responder needs.
type coapMsg struct {
	typ     byte
	code    byte
	mid     uint16
	token   []byte
	path    []string // Uri-Path options
	payload []byte
}

var errCoAP = errors.New("malformed coap message")

// parseCoAP parses the 4-byte header, the token and the options of b.
func parseCoAP(b []byte) (*coapMsg, error) {
	if len(b) < 4 || b[0]>>6 != 1 {
		return nil, fmt.Errorf("%w: bad header", errCoAP)
	}
	tkl := int(b[0] & 0x0f)
	if tkl > 8 || len(b) < 4+tkl {
		return nil, fmt.Errorf("%w: bad token length %d", errCoAP, tkl)
	}
	m := &coapMsg{
		typ:   (b[0] >> 4) & 0x03,
		code:  b[1],
		mid:   uint16(b[2])<<8 | uint16(b[3]),
		token: append([]byte(nil), b[4:4+tkl]...),
	}
	rest := b[4+tkl:]
	opt := 0
	for len(rest) > 0 {
		if rest[0] == 0xff {
			if len(rest) == 1 {
				return nil, fmt.Errorf("%w: payload marker without a payload", errCoAP)
			}
			m.payload = append([]byte(nil), rest[1:]...)
			break
		}
		delta, length := int(rest[0]>>4), int(rest[0]&0x0f)
		rest = rest[1:]
		var err error
		if delta, rest, err = coapExt(delta, rest); err != nil {
			return nil, err
		}
		if length, rest, err = coapExt(length, rest); err != nil {
			return nil, err
		}
		if len(rest) < length {
			return nil, fmt.Errorf("%w: option value past the end", errCoAP)
		}
		opt += delta
		if opt == coapOptUriPath {
			m.path = append(m.path, string(rest[:length]))
		}
		rest = rest[length:]
	}
	return m, nil
}

// coapExt decodes an extended option delta or length nibble.
func coapExt(v int, b []byte) (int, []byte, error) {
	switch v {
	case 13:
		if len(b) < 1 {
			return 0, nil, fmt.Errorf("%w: truncated option", errCoAP)
		}
		return int(b[0]) + 13, b[1:], nil
	case 14:
		if len(b) < 2 {
			return 0, nil, fmt.Errorf("%w: truncated option", errCoAP)
		}
		return int(b[0])<<8 | int(b[1]) + 269, b[2:], nil
	case 15:
		return 0, nil, fmt.Errorf("%w: reserved option nibble", errCoAP)
	}
	return v, b, nil
}

// encodeCoAP encodes a message with at most a text/plain Content-Format
// option (when there is a payload) and the payload.
func encodeCoAP(typ, code byte, mid uint16, token, payload []byte) []byte {
	b := []byte{1<<6 | typ<<4 | byte(len(token)), code, byte(mid >> 8), byte(mid)}
	b = append(b, token...)
	if len(payload) > 0 {
		// Content-Format (12) = 0 (text/plain; charset=utf-8): delta 12,
		// length 0.
		b = append(b, coapOptContentFormat<<4)
		b = append(b, 0xff)
		b = append(b, payload...)
	}
	return b
}

// coapHandler is a gateway.Handler that serves CoAP: a CON request gets a
// piggybacked ACK, a NON request a NON response; GET /hello is 2.05 with
// coapPayload, any other path 4.04.
type coapHandler struct {
	*recorder

	mu       sync.Mutex
	nextMID  uint16
	requests []string // "TYPE METHOD /path" of every request served
}

func newCoAPHandler() *coapHandler { return &coapHandler{recorder: newRecorder(), nextMID: 0x7000} }

func (h *coapHandler) OnSocketCreated(_ context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	h.onCreated(c, info)
	return nil
}

func (h *coapHandler) OnReceivedBytes(_ context.Context, c *gateway.Conn, b []byte) error {
	m, err := parseCoAP(b)
	if err != nil {
		// CoAP ignores malformed messages (RFC 7252 4.2, 4.3).
		return nil
	}
	if m.code == coapEmpty {
		if m.typ == coapCON {
			// A CoAP ping: answered with a Reset.
			return c.Send(encodeCoAP(coapRST, coapEmpty, m.mid, nil, nil))
		}
		return nil
	}
	if m.code>>5 != 0 || m.typ == coapACK || m.typ == coapRST {
		return nil // a response or an ACK/RST: not for a server
	}
	code, payload := byte(coapContent), []byte(coapPayload)
	switch {
	case m.code != coapGET:
		code, payload = coapBadReq, nil
	case strings.Join(m.path, "/") != "hello":
		code, payload = coapNotFound, nil
	}
	typ := map[byte]string{coapCON: "CON", coapNON: "NON"}[m.typ]
	h.mu.Lock()
	h.requests = append(h.requests, fmt.Sprintf("%s %#x /%s", typ, m.code, strings.Join(m.path, "/")))
	mid := h.nextMID
	h.nextMID++
	h.mu.Unlock()
	if m.typ == coapCON {
		return c.Send(encodeCoAP(coapACK, code, m.mid, m.token, payload))
	}
	return c.Send(encodeCoAP(coapNON, code, mid, m.token, payload))
}

func (*coapHandler) OnTimerTimeout(context.Context, *gateway.Conn, gateway.TimerType) error {
	return nil
}

func (*coapHandler) OnReceivedMessages(context.Context, *gateway.Conn, []*gateway.Message) error {
	return nil
}

func (h *coapHandler) OnSocketClosed(_ context.Context, c *gateway.Conn, reason string) error {
	h.onClosed(c, reason)
	return nil
}

// served returns the requests served so far.
func (h *coapHandler) served() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.requests...)
}
