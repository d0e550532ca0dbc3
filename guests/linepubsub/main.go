// Command linepubsub is a protogate guest that speaks a line protocol meant
// for humans with nc. Each connection is authenticated as it opens, with
// client id "line-" followed by the 16 hex digits of its handle, and then
// accepts one command per line:
//
//	SUB <filter>             subscribe to an MQTT topic filter (QoS 0)
//	UNSUB <filter>           unsubscribe
//	PUB <topic> <payload...> publish the rest of the line (QoS 0)
//	PING                     answered with PONG
//
// Every command is answered with OK, ERR <message> (the gateway's message
// when a call fails) or, for PING, PONG. Messages of the connection's
// subscriptions are written as MSG <topic> <payload>. Lines end with "\n";
// a "\r" before it is ignored, command names are not case-sensitive, and
// empty lines are ignored. A line longer than 64 KiB is answered with
// ERR line too long, and the connection is closed.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o linepubsub.wasm .
package main

import (
	"bytes"
	"errors"
	"fmt"

	protogate "github.com/protogate/protogate/sdk/go"
)

// MaxLine is the longest line accepted, in bytes before its "\n" (a "\r"
// counts).
const MaxLine = 64 << 10

// guest is the handler. Its state is the per-connection map and one output
// buffer; an instance runs one callback at a time, so they need no locks.
type guest struct {
	conns map[protogate.Conn]*conn
	out   []byte // reused for every reply
}

// conn is the state of one connection.
type conn struct {
	partial []byte // the start of a line whose "\n" has not arrived
	closed  bool   // Close was called; ignore the rest
}

func newGuest() *guest {
	return &guest{conns: make(map[protogate.Conn]*conn)}
}

func init() { protogate.Register(newGuest()) }

// ClientID returns the client id a connection authenticates with.
func ClientID(c protogate.Conn) string {
	return fmt.Sprintf("line-%016x", uint64(c))
}

// OnSocketCreated authenticates the connection; if that fails, it tells the
// device why and closes.
func (g *guest) OnSocketCreated(c protogate.Conn, _ protogate.ConnInfo) error {
	st := &conn{}
	g.conns[c] = st
	err := c.Authenticate(protogate.ClientInfo{ProtoName: "line", ProtoVer: "1", ClientID: ClientID(c)}, "")
	if err != nil {
		g.reply(c, "ERR authentication failed: ", message(err))
		st.closed = true
		return c.Close()
	}
	return nil
}

// OnSocketClosed forgets the connection.
func (g *guest) OnSocketClosed(c protogate.Conn, _ string) error {
	delete(g.conns, c)
	return nil
}

// OnReceivedBytes runs every complete line of b, keeping an unfinished one
// for the next call. Lines that arrive whole are run straight from b,
// without copying.
func (g *guest) OnReceivedBytes(c protogate.Conn, b []byte) error {
	st := g.conns[c]
	if st == nil || st.closed {
		return nil
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(st.partial)+len(b) > MaxLine {
				return g.tooLong(c, st)
			}
			st.partial = append(st.partial, b...)
			return nil
		}
		line := b[:i]
		b = b[i+1:]
		if len(st.partial)+len(line) > MaxLine {
			return g.tooLong(c, st)
		}
		if len(st.partial) > 0 {
			st.partial = append(st.partial, line...)
			line = st.partial
		}
		err := g.run(c, line)
		st.partial = st.partial[:0]
		if err != nil || st.closed {
			return err
		}
	}
	return nil
}

func (g *guest) tooLong(c protogate.Conn, st *conn) error {
	st.closed = true
	st.partial = nil
	g.reply(c, "ERR line too long", "")
	return c.Close()
}

// run runs one command line.
func (g *guest) run(c protogate.Conn, line []byte) error {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) == 0 {
		return nil
	}
	cmd, arg, _ := bytes.Cut(line, []byte{' '})
	var err error
	switch {
	case isCmd(cmd, "PING"):
		return g.reply(c, "PONG", "")
	case isCmd(cmd, "SUB"):
		err = c.Subscribe(string(arg), 0)
	case isCmd(cmd, "UNSUB"):
		err = c.Unsubscribe(string(arg))
	case isCmd(cmd, "PUB"):
		topic, payload, _ := bytes.Cut(arg, []byte{' '})
		err = c.Publish(string(topic), 0, payload)
	default:
		return g.reply(c, "ERR unknown command", "")
	}
	if err != nil {
		return g.reply(c, "ERR ", message(err))
	}
	return g.reply(c, "OK", "")
}

// isCmd reports whether cmd is name, ignoring ASCII case.
func isCmd(cmd []byte, name string) bool {
	return len(cmd) == len(name) && bytes.EqualFold(cmd, []byte(name))
}

// reply sends a + b and a newline.
func (g *guest) reply(c protogate.Conn, a, b string) error {
	g.out = append(append(append(g.out[:0], a...), b...), '\n')
	return c.Send(g.out)
}

// message is the text of a failed host call for the device: the host's
// message, or the status name if it gave none.
func message(err error) string {
	var e *protogate.Error
	if errors.As(err, &e) {
		if e.Msg != "" {
			return e.Msg
		}
		return e.Status.String()
	}
	return err.Error()
}

// OnReceivedMessages writes one MSG line per message, all in one Send.
func (g *guest) OnReceivedMessages(c protogate.Conn, msgs []protogate.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	g.out = g.out[:0]
	for _, m := range msgs {
		g.out = append(g.out, "MSG "...)
		g.out = append(g.out, m.Topic...)
		g.out = append(g.out, ' ')
		g.out = append(g.out, m.Payload...)
		g.out = append(g.out, '\n')
	}
	return c.Send(g.out)
}

// OnTimerTimeout does nothing: the guest starts no keepalive.
func (g *guest) OnTimerTimeout(protogate.Conn, protogate.TimerType) error { return nil }
