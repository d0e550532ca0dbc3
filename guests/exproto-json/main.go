// Command exproto-json is a protogate guest that speaks the JSON test
// protocol of EMQX's ExProto suite (package internal/jsonproto) and behaves
// exactly like the reference remote handler, internal/jsonhandler, so the
// gateway's conformance suite runs against it unchanged. Of the project's
// packages it imports only the SDK, abi and the codec.
//
// Frames from the device are handled as follows:
//
//	CONNECT      Authenticate; on success StartTimer(KeepAlive) if keepalive > 0
//	             and CONNACK{code:0}; otherwise CONNACK{code:1} and Close
//	PUBLISH      Publish, then PUBACK{code: 0 on success, else 1}
//	RAW_PUBLISH  RawPublish, then PUBACK
//	SUBSCRIBE    Subscribe, then SUBACK
//	UNSUBSCRIBE  Unsubscribe, then UNSUBACK
//	DISCONNECT   Close
//	anything else, or bytes that are not the protocol: Close
//
// After Close the rest of the connection's bytes are ignored. Deliveries are
// written to the device as one PUBLISH frame per message, and a keepalive
// timeout sends DISCONNECT and then Close. Each frame goes out in one Send,
// ended by a newline (jsonproto.AppendLine). A failed host call is logged and
// the callback still succeeds, as the reference handler does with a
// non-SUCCESS result code (a Wasm guest has no transport errors, the
// reference handler's only reason to fail a callback).
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o exproto-json.wasm .
package main

import (
	"strconv"

	jp "github.com/protogate/protogate/internal/jsonproto"
	protogate "github.com/protogate/protogate/sdk/go"
)

// guest is the handler: per-connection decoder state, and one buffer for
// encoding frames. An instance runs one callback at a time, so they need no
// locks.
type guest struct {
	conns map[protogate.Conn]*conn
	out   []byte
}

// conn is the state of one connection: the decoder that reassembles frames
// across OnReceivedBytes calls.
type conn struct {
	dec    jp.Decoder
	closed bool // Close was requested; later bytes are ignored
}

func newGuest() *guest {
	return &guest{conns: make(map[protogate.Conn]*conn)}
}

func init() { protogate.Register(newGuest()) }

// state returns the state of c, creating it if needed.
func (g *guest) state(c protogate.Conn) *conn {
	st, ok := g.conns[c]
	if !ok {
		st = &conn{}
		g.conns[c] = st
	}
	return st
}

// OnSocketCreated creates the connection's decoder state. It makes no host
// calls: the device authenticates with a CONNECT frame.
func (g *guest) OnSocketCreated(c protogate.Conn, _ protogate.ConnInfo) error {
	g.state(c)
	return nil
}

// OnSocketClosed drops the connection's decoder state.
func (g *guest) OnSocketClosed(c protogate.Conn, _ string) error {
	delete(g.conns, c)
	return nil
}

// OnReceivedBytes feeds b to the connection's decoder and handles every
// complete frame. Bytes that are not the protocol close the connection.
func (g *guest) OnReceivedBytes(c protogate.Conn, b []byte) error {
	st := g.state(c)
	if st.closed {
		logf(protogate.LevelDebug, c, "ignoring bytes after close")
		return nil
	}
	st.dec.Feed(b)
	for {
		f, ok, err := st.dec.Next()
		if err != nil {
			logf(protogate.LevelWarn, c, "closing connection: bad frame: "+err.Error())
			st.closed = true
			g.close(c)
			return nil
		}
		if !ok {
			return nil
		}
		if g.handleFrame(c, f) {
			st.closed = true
			return nil
		}
	}
}

// OnTimerTimeout sends DISCONNECT to the device and closes the connection.
func (g *guest) OnTimerTimeout(c protogate.Conn, t protogate.TimerType) error {
	if st, ok := g.conns[c]; ok {
		st.closed = true
	}
	logf(protogate.LevelInfo, c, "keepalive timeout, type "+strconv.Itoa(int(t)))
	g.send(c, jp.Frame{Type: jp.Disconnect})
	g.close(c)
	return nil
}

// OnReceivedMessages sends one PUBLISH frame per delivered message.
func (g *guest) OnReceivedMessages(c protogate.Conn, msgs []protogate.Message) error {
	for _, m := range msgs {
		g.send(c, jp.Frame{Type: jp.Publish, Topic: m.Topic, QoS: uint32(m.QoS), Payload: string(m.Payload)})
	}
	return nil
}

// handleFrame handles one frame from the device and reports whether it
// closed the connection.
func (g *guest) handleFrame(c protogate.Conn, f jp.Frame) (closed bool) {
	switch f.Type {
	case jp.Connect:
		return g.connect(c, f)
	case jp.Publish:
		g.ack(c, "Publish", jp.Puback, c.Publish(f.Topic, qos(f.QoS), []byte(f.Payload)))
	case jp.RawPublish:
		g.ack(c, "RawPublish", jp.Puback, protogate.RawPublish(f.Topic, qos(f.QoS), []byte(f.Payload)))
	case jp.Subscribe:
		g.ack(c, "Subscribe", jp.Suback, c.Subscribe(f.Topic, qos(f.QoS)))
	case jp.Unsubscribe:
		g.ack(c, "Unsubscribe", jp.Unsuback, c.Unsubscribe(f.Topic))
	case jp.Disconnect:
		g.close(c)
		return true
	default:
		// EMQX's echo handler has no clause for these and crashes, which
		// makes the gateway close the connection; close it cleanly instead.
		logf(protogate.LevelWarn, c, "closing connection: unexpected frame "+f.Type.String())
		g.close(c)
		return true
	}
	return false
}

// qos passes a frame's QoS to the host. QoS values that do not fit the
// SDK's uint8 become 255, which the host refuses like any QoS above 2.
func qos(q uint32) uint8 {
	return uint8(min(q, 255))
}

func (g *guest) connect(c protogate.Conn, f jp.Frame) (closed bool) {
	ci := f.ClientInfo
	err := c.Authenticate(protogate.ClientInfo{
		ProtoName: ci.ProtoName,
		ProtoVer:  ci.ProtoVer,
		ClientID:  ci.ClientID,
		Username:  ci.Username,
	}, f.Password)
	if !check(c, "Authenticate", err) {
		g.send(c, jp.Frame{Type: jp.Connack, Code: 1})
		g.close(c)
		return true
	}
	if ci.Keepalive > 0 {
		check(c, "StartTimer", c.StartTimer(protogate.KeepAlive, ci.Keepalive))
	}
	g.send(c, jp.Frame{Type: jp.Connack, Code: 0})
	return false
}

// ack answers a Publish, RawPublish, Subscribe or Unsubscribe with an ack
// frame of type t: code 0 if err is nil, 1 otherwise.
func (g *guest) ack(c protogate.Conn, call string, t jp.Type, err error) {
	code := 0
	if !check(c, call, err) {
		code = 1
	}
	g.send(c, jp.Frame{Type: t, Code: code})
}

func (g *guest) send(c protogate.Conn, f jp.Frame) {
	g.out = jp.AppendLine(g.out[:0], f)
	check(c, "Send", c.Send(g.out))
}

func (g *guest) close(c protogate.Conn) {
	check(c, "Close", c.Close())
}

// check reports whether a host call succeeded, logging a failure.
func check(c protogate.Conn, call string, err error) bool {
	if err != nil {
		logf(protogate.LevelInfo, c, "host call refused: "+call+": "+err.Error())
		return false
	}
	return true
}

// logf logs msg about connection c.
func logf(level protogate.Level, c protogate.Conn, msg string) {
	protogate.Log(level, "conn="+strconv.FormatUint(uint64(c), 16)+" "+msg)
}
