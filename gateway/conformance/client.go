package conformance

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	jp "github.com/protogate/protogate/internal/jsonproto"
)

// client is a device speaking the JSON test protocol. It is not safe for
// concurrent use.
type client struct {
	t      testing.TB
	nc     net.Conn
	dec    *jp.Decoder
	buf    []byte
	handle string // the gateway's handle for this connection

	datagram bool // UDP or DTLS: one write is one datagram
	primed   bool // a newline datagram was sent to create the connection
}

func newClient(t testing.TB, nc net.Conn) *client {
	return &client{t: t, nc: nc, dec: jp.NewDecoder(1 << 20), buf: make([]byte, 64<<10)}
}

// send writes one frame.
func (c *client) send(f jp.Frame) {
	c.t.Helper()
	c.write(jp.Encode(f))
}

func (c *client) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame from the gateway.
func (c *client) next() jp.Frame {
	c.t.Helper()
	f, err := c.tryNext(Timeout)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

func (c *client) tryNext(d time.Duration) (jp.Frame, error) {
	deadline := time.Now().Add(d)
	for {
		f, ok, err := c.dec.Next()
		if err != nil {
			return jp.Frame{}, err
		}
		if ok {
			return f, nil
		}
		c.nc.SetReadDeadline(deadline)
		n, err := c.nc.Read(c.buf)
		c.dec.Feed(c.buf[:n])
		if err != nil && n == 0 {
			return jp.Frame{}, err
		}
	}
}

// expectBytes reads exactly want from the connection, bypassing the frame
// decoder: on a datagram transport the next datagram must be want.
func (c *client) expectBytes(want string) {
	c.t.Helper()
	if n := c.dec.Buffered(); n != 0 {
		c.t.Fatalf("expectBytes: %d bytes already read and not decoded", n)
	}
	c.nc.SetReadDeadline(time.Now().Add(Timeout))
	var got []byte
	var err error
	if c.datagram {
		var n int
		n, err = c.nc.Read(c.buf)
		got = c.buf[:n]
	} else {
		got = make([]byte, len(want))
		var n int
		n, err = io.ReadFull(c.nc, got)
		got = got[:n]
	}
	if err != nil {
		c.t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		c.t.Fatalf("got %q, want %q", got, want)
	}
}

// expect reads the next frame and checks its type and code.
func (c *client) expect(typ jp.Type, code int) jp.Frame {
	c.t.Helper()
	f := c.next()
	if f.Type != typ || f.Code != code {
		c.t.Fatalf("got %s code %d (%+v), want %s code %d", f.Type, f.Code, f, typ, code)
	}
	return f
}

// connect sends CONNECT and expects CONNACK with code.
func (c *client) connect(clientID string, keepalive uint32, code int) {
	c.t.Helper()
	c.connectAs(jp.ClientInfo{ProtoName: "exproto", ProtoVer: "1.0", ClientID: clientID, Keepalive: keepalive}, "", code)
}

func (c *client) connectAs(ci jp.ClientInfo, password string, code int) {
	c.t.Helper()
	c.send(jp.Frame{Type: jp.Connect, ClientInfo: ci, Password: password})
	c.expect(jp.Connack, code)
}

func (c *client) subscribe(topic string, qos uint32, code int) {
	c.t.Helper()
	c.send(jp.Frame{Type: jp.Subscribe, Topic: topic, QoS: qos})
	c.expect(jp.Suback, code)
}

func (c *client) publish(topic string, qos uint32, payload string, code int) {
	c.t.Helper()
	c.send(jp.Frame{Type: jp.Publish, Topic: topic, QoS: qos, Payload: payload})
	c.expect(jp.Puback, code)
}

// expectClosed waits until the gateway closes the socket; frames still in
// flight are skipped.
func (c *client) expectClosed() {
	c.t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		_, err := c.tryNext(time.Until(deadline))
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("the gateway did not close the connection")
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return
		}
		c.t.Fatalf("waiting for close: %v", err)
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

// alive checks the connection still works with a SUBSCRIBE round trip to a
// topic nobody uses; it is refused (code 1) before CONNECT and accepted after.
func (c *client) alive(code int) {
	c.t.Helper()
	c.subscribe("conformance/alive", 0, code)
}
