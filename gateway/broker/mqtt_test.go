package broker_test

// MQTT interop tests against the embedded server's MQTT listener.
//
// The client is a minimal MQTT 3.1.1 implementation written here (CONNECT,
// SUBSCRIBE, PUBLISH at QoS 0 and 1, PUBACK, DISCONNECT). nats-server speaks
// MQTT 3.1.1 only (protocol level 4; reference §2.2), and
// github.com/eclipse/paho.golang implements MQTT 5 only: its maintainers
// declined 3.1.1 support (eclipse-paho/paho.golang#89, PR #104), so it
// cannot connect here. A hand-written client keeps the tests free of new
// dependencies and lets them wait for CONNACK, SUBACK and PUBACK explicitly
// instead of guessing when a subscription is live.
//
// TestMQTTMosquittoClients additionally drives Debian's mosquitto_pub and
// mosquitto_sub (installed by scripts/deps.sh) as an independent client
// implementation; it is skipped when they are not on PATH.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
)

// MQTT 3.1.1 control packet types.
const (
	mqttCONNECT     = 1
	mqttCONNACK     = 2
	mqttPUBLISH     = 3
	mqttPUBACK      = 4
	mqttSUBSCRIBE   = 8
	mqttSUBACK      = 9
	mqttDISCONNECT  = 14
	mqttMaxPacketSz = 1 << 20
)

type mqttPublish struct {
	topic   string
	qos     byte
	payload []byte
}

type mqttClient struct {
	t       *testing.T
	id      string
	conn    net.Conn
	r       *bufio.Reader
	pid     uint16
	pending []mqttPublish // PUBLISHes read while waiting for something else
}

// mqttLogin is what a client sends to log in: a user name and password
// (none when empty), over TLS when tls is set.
type mqttLogin struct {
	user, password string
	tls            *tls.Config
}

// dialMQTT connects anonymously with a clean session and waits for a
// successful CONNACK.
func dialMQTT(t *testing.T, addr, clientID string) *mqttClient {
	t.Helper()
	return dialMQTTAs(t, addr, clientID, mqttLogin{})
}

// dialMQTTAs is dialMQTT with a login.
func dialMQTTAs(t *testing.T, addr, clientID string, l mqttLogin) *mqttClient {
	t.Helper()
	c, code, err := connectMQTT(addr, clientID, l)
	if err != nil {
		t.Fatalf("mqtt %s: %v", clientID, err)
	}
	c.t = t
	t.Cleanup(func() { c.conn.Close() })
	if code != 0 {
		t.Fatalf("mqtt %s: CONNECT answered with CONNACK return code %d, want accepted", clientID, code)
	}
	return c
}

// tryMQTT connects, returns the CONNACK return code and disconnects. The
// error is that of a connection that got no CONNACK.
func tryMQTT(addr, clientID string, l mqttLogin) (byte, error) {
	c, code, err := connectMQTT(addr, clientID, l)
	if c != nil {
		c.conn.Close()
	}
	return code, err
}

// connectMQTT dials addr, sends CONNECT and reads the CONNACK. The
// returned client has no t yet.
func connectMQTT(addr, clientID string, l mqttLogin) (*mqttClient, byte, error) {
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: waitTimeout}
	if l.tls != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, l.tls)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &mqttClient{id: clientID, conn: conn, r: bufio.NewReader(conn)}

	var vh bytes.Buffer
	writeString(&vh, "MQTT")
	vh.WriteByte(4)     // protocol level: 3.1.1
	flags := byte(0x02) // clean session
	if l.user != "" {
		flags |= 0x80
	}
	if l.password != "" {
		flags |= 0x40
	}
	vh.WriteByte(flags)
	binary.Write(&vh, binary.BigEndian, uint16(60))
	writeString(&vh, clientID)
	if l.user != "" {
		writeString(&vh, l.user)
	}
	if l.password != "" {
		writeString(&vh, l.password)
	}
	if err := c.writePacket(mqttCONNECT<<4, vh.Bytes()); err != nil {
		return c, 0, err
	}
	typ, _, body, err := c.readPacket(mqttTimeout)
	if err != nil {
		return c, 0, err
	}
	if typ != mqttCONNACK || len(body) != 2 {
		return c, 0, fmt.Errorf("CONNECT answered with type %d %x, want CONNACK", typ, body)
	}
	return c, body[1], nil
}

func writeString(b *bytes.Buffer, s string) {
	binary.Write(b, binary.BigEndian, uint16(len(s)))
	b.WriteString(s)
}

func (c *mqttClient) write(header byte, body []byte) {
	c.t.Helper()
	if err := c.writePacket(header, body); err != nil {
		c.t.Fatalf("mqtt %s: write: %v", c.id, err)
	}
}

func (c *mqttClient) writePacket(header byte, body []byte) error {
	var pkt bytes.Buffer
	pkt.WriteByte(header)
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		pkt.WriteByte(d)
		if n == 0 {
			break
		}
	}
	pkt.Write(body)
	c.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	_, err := c.conn.Write(pkt.Bytes())
	return err
}

// read reads one control packet, waiting at most timeout.
func (c *mqttClient) read(timeout time.Duration) (typ, flags byte, body []byte) {
	c.t.Helper()
	typ, flags, body, err := c.readPacket(timeout)
	if err != nil {
		c.t.Fatalf("mqtt %s: %v", c.id, err)
	}
	return typ, flags, body
}

func (c *mqttClient) readPacket(timeout time.Duration) (typ, flags byte, body []byte, err error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("read: %w", err)
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, 0, nil, fmt.Errorf("read length: %w", err)
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, 0, nil, errors.New("malformed remaining length")
		}
	}
	if n > mqttMaxPacketSz {
		return 0, 0, nil, fmt.Errorf("%d byte packet", n)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, 0, nil, fmt.Errorf("read body: %w", err)
	}
	return h >> 4, h & 0x0f, body, nil
}

// await reads packets until one of type want arrives. PUBLISHes that arrive
// meanwhile are acknowledged and kept for readPublish.
func (c *mqttClient) await(want byte, deadline time.Time) (flags byte, body []byte) {
	c.t.Helper()
	for {
		typ, flags, body := c.read(time.Until(deadline))
		if typ == want {
			return flags, body
		}
		if typ != mqttPUBLISH {
			c.t.Fatalf("mqtt %s: got packet type %d while waiting for %d", c.id, typ, want)
		}
		c.pending = append(c.pending, c.decodePublish(flags, body))
	}
}

func (c *mqttClient) decodePublish(flags byte, body []byte) mqttPublish {
	c.t.Helper()
	if len(body) < 2 {
		c.t.Fatalf("mqtt %s: short PUBLISH", c.id)
	}
	tl := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+tl {
		c.t.Fatalf("mqtt %s: short PUBLISH topic", c.id)
	}
	p := mqttPublish{topic: string(body[2 : 2+tl]), qos: flags >> 1 & 3}
	rest := body[2+tl:]
	if p.qos > 0 {
		if len(rest) < 2 {
			c.t.Fatalf("mqtt %s: PUBLISH without packet id", c.id)
		}
		if p.qos == 1 {
			c.write(mqttPUBACK<<4, rest[:2])
		}
		rest = rest[2:]
	}
	p.payload = rest
	return p
}

func (c *mqttClient) nextID() []byte {
	c.pid++
	if c.pid == 0 {
		c.pid = 1
	}
	return binary.BigEndian.AppendUint16(nil, c.pid)
}

// subscribe subscribes and waits for a SUBACK granting the subscription.
func (c *mqttClient) subscribe(filter string, qos byte) {
	c.t.Helper()
	if code := c.trySubscribe(filter, qos); code == 0x80 || code > qos {
		c.t.Fatalf("mqtt %s: SUBSCRIBE %q QoS %d answered with SUBACK return code %#x", c.id, filter, qos, code)
	}
}

// trySubscribe subscribes and returns the SUBACK's return code: the QoS
// granted, or 0x80 for a failure.
func (c *mqttClient) trySubscribe(filter string, qos byte) byte {
	c.t.Helper()
	id := c.nextID()
	var b bytes.Buffer
	b.Write(id)
	writeString(&b, filter)
	b.WriteByte(qos)
	c.write(mqttSUBSCRIBE<<4|0x02, b.Bytes())
	_, body := c.await(mqttSUBACK, time.Now().Add(mqttTimeout))
	if len(body) != 3 || !bytes.Equal(body[:2], id) {
		c.t.Fatalf("mqtt %s: SUBSCRIBE %q QoS %d answered with SUBACK %x", c.id, filter, qos, body)
	}
	return body[2]
}

// publish publishes; at QoS 1 it waits for the PUBACK.
func (c *mqttClient) publish(topic string, qos byte, payload []byte) {
	c.t.Helper()
	var b bytes.Buffer
	writeString(&b, topic)
	var id []byte
	if qos > 0 {
		id = c.nextID()
		b.Write(id)
	}
	b.Write(payload)
	c.write(mqttPUBLISH<<4|qos<<1, b.Bytes())
	if qos == 1 {
		_, body := c.await(mqttPUBACK, time.Now().Add(mqttTimeout))
		if !bytes.Equal(body, id) {
			c.t.Fatalf("mqtt %s: PUBACK %x for packet id %x", c.id, body, id)
		}
	}
}

// readPublish returns the next PUBLISH the server sends.
func (c *mqttClient) readPublish() mqttPublish {
	c.t.Helper()
	if len(c.pending) > 0 {
		p := c.pending[0]
		c.pending = c.pending[1:]
		return p
	}
	flags, body := c.await(mqttPUBLISH, time.Now().Add(waitTimeout))
	return c.decodePublish(flags, body)
}

func (c *mqttClient) close() {
	c.write(mqttDISCONNECT<<4, nil)
	c.conn.Close()
}

// startMQTTBroker starts a broker with NATS and MQTT listeners on loopback
// and JetStream under a temporary directory.
func startMQTTBroker(t *testing.T) *broker.Broker {
	t.Helper()
	return startBroker(t, broker.Config{
		Node:       "mqtt-node",
		DataDir:    t.TempDir(),
		NATSListen: "127.0.0.1:0",
		MQTTListen: "127.0.0.1:0",
	})
}

func TestMQTTAddr(t *testing.T) {
	b := startBroker(t, broker.Config{})
	if a := b.MQTTAddr(); a != "" {
		t.Errorf("broker without MQTT: MQTTAddr() = %q, want empty", a)
	}
	b = startMQTTBroker(t)
	addr := b.MQTTAddr()
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("MQTTAddr() = %q: %v", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if host != "127.0.0.1" || err != nil || port <= 0 || port > 65535 {
		t.Fatalf("MQTTAddr() = %q, want 127.0.0.1 and the real port (0 was asked)", addr)
	}
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatalf("dial MQTTAddr() %s: %v", addr, err)
	}
	c.Close()
}

// TestMQTTSubscriberGetsGatewayPublish: an MQTT subscriber on a/b receives a
// gateway publish on a/b, always as QoS 0 (reference §2.4).
func TestMQTTSubscriberGetsGatewayPublish(t *testing.T) {
	b := startMQTTBroker(t)
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprint("sub-qos", qos), func(t *testing.T) {
			mc := dialMQTT(t, b.MQTTAddr(), fmt.Sprint("sub-", qos))
			defer mc.close()
			mc.subscribe("a/b", qos)
			for _, gq := range []uint8{0, 1} {
				payload := fmt.Sprintf("gateway qos %d", gq)
				publish(t, b, &gateway.Message{From: "dev-1", QoS: gq, Topic: "a/b", Payload: []byte(payload)})
				p := mc.readPublish()
				if p.topic != "a/b" || string(p.payload) != payload || p.qos != 0 {
					t.Fatalf("MQTT got %q %q QoS %d, want a/b %q QoS 0", p.topic, p.payload, p.qos, payload)
				}
			}
		})
	}
}

// TestMQTTPublishReachesGateway: MQTT publishes at QoS 0 and 1 reach a
// gateway subscriber, with Message.QoS from the Nmqtt-Pub header.
func TestMQTTPublishReachesGateway(t *testing.T) {
	b := startMQTTBroker(t)
	s := newChanSub(t, "x/+")
	subscribe(t, b, "x/+", s)
	// Everything the "#" subscriber sees, JetStream and $MQTT traffic
	// included, must be device topics.
	all := newChanSub(t, "#")
	subscribe(t, b, "#", all)
	nc := natsConnect(t, b)
	natsSub := natsSubscribe(t, nc, "x.y")

	mc := dialMQTT(t, b.MQTTAddr(), "pub-1")
	defer mc.close()
	for _, qos := range []byte{0, 1} {
		before := time.Now().UnixMilli()
		payload := fmt.Sprint("mqtt qos ", qos)
		mc.publish("x/y", qos, []byte(payload))
		m := s.next(t)
		after := time.Now().UnixMilli()
		if m.Topic != "x/y" || string(m.Payload) != payload || m.QoS != qos {
			t.Errorf("gateway got %s=%q QoS %d, want x/y=%q QoS %d", m.Topic, m.Payload, m.QoS, payload, qos)
		}
		if m.Node != "mqtt-node" || !idRE.MatchString(m.ID) || m.From != "" || m.Timestamp < before || m.Timestamp > after {
			t.Errorf("message from MQTT: %+v", m)
		}
		nm := natsNext(t, natsSub)
		if got := nm.Header.Get("Nmqtt-Pub"); got != fmt.Sprint(qos) {
			t.Errorf("NATS view of the MQTT publish: Nmqtt-Pub %q, want %d", got, qos)
		}
	}
	mc.publish("x/end", 0, []byte("end"))
	got := all.until(t, "end")
	if len(got) != 2 {
		t.Errorf("# subscriber got %q, want the two x/y messages", topics(got))
	}
	for _, m := range got {
		if strings.HasPrefix(m.Topic, "$") {
			t.Errorf("# subscriber got internal topic %q", m.Topic)
		}
	}
}

// TestMQTTDotMapping checks the "." <-> "//" rule with a Sparkplug-style
// topic across MQTT, the gateway and NATS.
func TestMQTTDotMapping(t *testing.T) {
	b := startMQTTBroker(t)
	nc := natsConnect(t, b)
	natsSub := natsSubscribe(t, nc, "spBv1//0.>")
	gw := newChanSub(t, "spBv1.0/#")
	subscribe(t, b, "spBv1.0/#", gw)
	mc := dialMQTT(t, b.MQTTAddr(), "edge-node")
	defer mc.close()
	mc.subscribe("spBv1.0/group/+/edge1", 0)

	// Gateway -> MQTT and NATS.
	pub(t, b, "spBv1.0/group/NBIRTH/edge1", "birth")
	if p := mc.readPublish(); p.topic != "spBv1.0/group/NBIRTH/edge1" || string(p.payload) != "birth" {
		t.Errorf("MQTT got %q %q, want spBv1.0/group/NBIRTH/edge1", p.topic, p.payload)
	}
	if m := natsNext(t, natsSub); m.Subject != "spBv1//0.group.NBIRTH.edge1" {
		t.Errorf("NATS got subject %q, want spBv1//0.group.NBIRTH.edge1", m.Subject)
	}
	if m := gw.next(t); m.Topic != "spBv1.0/group/NBIRTH/edge1" {
		t.Errorf("gateway got %q", m.Topic)
	}

	// MQTT -> gateway and NATS. "spBv1.0/group" is the parent level of the
	// gateway's "spBv1.0/#".
	mc.publish("spBv1.0/group", 1, []byte("state"))
	if m := gw.next(t); m.Topic != "spBv1.0/group" || string(m.Payload) != "state" || m.QoS != 1 {
		t.Errorf("gateway got %s=%s QoS %d, want spBv1.0/group=state QoS 1", m.Topic, m.Payload, m.QoS)
	}
	if m := natsNext(t, natsSub); m.Subject != "spBv1//0.group" || m.Header.Get("Nmqtt-Pub") != "1" {
		t.Errorf("NATS got subject %q Nmqtt-Pub %q, want spBv1//0.group and 1", m.Subject, m.Header.Get("Nmqtt-Pub"))
	}

	// NATS -> MQTT.
	if err := nc.Publish("spBv1//0.group.DDATA.edge1", []byte("data")); err != nil {
		t.Fatal(err)
	}
	if p := mc.readPublish(); p.topic != "spBv1.0/group/DDATA/edge1" || string(p.payload) != "data" {
		t.Errorf("MQTT got %q %q, want spBv1.0/group/DDATA/edge1", p.topic, p.payload)
	}
}

// TestMQTTMappingVectors sends the reference §2.3 vectors from the gateway
// to an MQTT "#" subscriber, and from MQTT to the gateway, so that the
// server's own conversion is the oracle.
func TestMQTTMappingVectors(t *testing.T) {
	b := startMQTTBroker(t)
	gw := newChanSub(t, "#")
	subscribe(t, b, "#", gw)
	mc := dialMQTT(t, b.MQTTAddr(), "vectors")
	defer mc.close()
	mc.subscribe("#", 0)
	for _, v := range mappingVectors {
		pub(t, b, v.topic, "gw")
		if p := mc.readPublish(); p.topic != v.topic || string(p.payload) != "gw" {
			t.Errorf("gateway publish on %q reached MQTT as %q %q", v.topic, p.topic, p.payload)
		}
		if m := gw.next(t); m.Topic != v.topic {
			t.Errorf("gateway publish on %q came back as %q", v.topic, m.Topic)
		}
		mc.publish(v.topic, 0, []byte("mqtt"))
		if p := mc.readPublish(); p.topic != v.topic || string(p.payload) != "mqtt" {
			t.Errorf("MQTT echo of %q: %q %q", v.topic, p.topic, p.payload)
		}
		if m := gw.next(t); m.Topic != v.topic || string(m.Payload) != "mqtt" {
			t.Errorf("MQTT publish on %q reached the gateway as %q %q", v.topic, m.Topic, m.Payload)
		}
	}
}

// TestMQTTMosquittoClients repeats the basic interop with mosquitto_pub and
// mosquitto_sub, an independent MQTT 3.1.1 implementation.
func TestMQTTMosquittoClients(t *testing.T) {
	for _, bin := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs mosquitto-clients)", bin)
		}
	}
	b := startMQTTBroker(t)
	host, port, err := net.SplitHostPort(b.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mqttTimeout)
	defer cancel()

	// mosquitto_pub -> gateway, QoS 0 and 1.
	s := newChanSub(t, "x/+")
	subscribe(t, b, "x/+", s)
	for _, qos := range []int{0, 1} {
		payload := fmt.Sprint("mosquitto qos ", qos)
		cmd := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv311", "-h", host, "-p", port,
			"-i", fmt.Sprint("mpub-", qos), "-q", fmt.Sprint(qos), "-t", "x/y", "-m", payload)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
		m := s.next(t)
		if m.Topic != "x/y" || string(m.Payload) != payload || m.QoS != uint8(qos) {
			t.Errorf("gateway got %s=%q QoS %d, want x/y=%q QoS %d", m.Topic, m.Payload, m.QoS, payload, qos)
		}
	}

	// gateway -> mosquitto_sub. Its subscription is live once the server
	// holds the NATS subscription the MQTT SUBSCRIBE creates.
	cmd := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", host, "-p", port,
		"-i", "msub", "-q", "1", "-t", "spBv1.0/+", "-C", "1", "-v")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited { // a failed wait: kill it and reap it
			cancel()
			cmd.Wait()
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	waitNATSSubs(t, b, "spBv1//0.*", "", 1)
	pub(t, b, "spBv1.0/group", "to mosquitto")
	var l string
	select {
	case l = <-lines:
	case <-ctx.Done():
	}
	if l == "" {
		t.Fatalf("mosquitto_sub: no message: %v\n%s", ctx.Err(), stderr.String())
	}
	if l != "spBv1.0/group to mosquitto" {
		t.Errorf("mosquitto_sub printed %q, want %q", l, "spBv1.0/group to mosquitto")
	}
	for range lines { // it exits after one message (-C 1)
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Errorf("mosquitto_sub: %v\n%s", err, stderr.String())
	}
}

// publishRetained publishes a retained message and waits for the PUBACK
// (QoS 1), so the server has stored it.
func (c *mqttClient) publishRetained(topic string, payload []byte) {
	c.t.Helper()
	var body bytes.Buffer
	writeString(&body, topic)
	body.Write(c.nextID())
	body.Write(payload)
	c.write(mqttPUBLISH<<4|1<<1|1, body.Bytes())
	c.await(mqttPUBACK, time.Now().Add(mqttTimeout))
}

// awaitRetained connects as clientID and subscribes to topic until its
// retained message arrives, and returns the client that got it. One try is
// not enough: nats-server answers PUBACK once the retained message is stored
// in its stream, but adds it to the map a SUBSCRIBE reads from only when its
// own consumer delivers it back, so a subscriber right after the PUBACK may
// be answered from the map before the message is in it.
func awaitRetained(t *testing.T, addr, clientID string, l mqttLogin, topic string) *mqttClient {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for try := time.Duration(1); ; try++ {
		c := dialMQTTAs(t, addr, clientID, l)
		c.subscribe(topic, 1)
		if len(c.pending) > 0 {
			if p := c.readPublish(); p.topic != topic {
				t.Fatalf("mqtt %s: retained: got %q, want %q", clientID, p.topic, topic)
			}
			return c
		}
		typ, flags, body, err := c.readPacket(min(try*200*time.Millisecond, time.Until(deadline)))
		if err == nil {
			if typ != mqttPUBLISH {
				t.Fatalf("mqtt %s: got packet type %d while waiting for the retained message", clientID, typ)
			}
			if p := c.decodePublish(flags, body); p.topic != topic {
				t.Fatalf("mqtt %s: retained: got %q, want %q", clientID, p.topic, topic)
			}
			return c
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("mqtt %s: no retained message on %q: %v", clientID, topic, err)
		}
		c.close()
		t.Logf("mqtt %s: no retained message on %q yet, subscribing again", clientID, topic)
	}
}

// TestMQTTRetainedReachesGateway: the retained messages of MQTT clients
// reach a gateway subscriber that subscribes later, one per topic, the
// latest, with its QoS; a cleared one does not, and neither does a shared
// subscription.
func TestMQTTRetainedReachesGateway(t *testing.T) {
	b := startMQTTBroker(t)
	mc := dialMQTT(t, b.MQTTAddr(), "retainer")
	defer mc.close()
	mc.publishRetained("r/a", []byte("old"))
	mc.publishRetained("r/a", []byte("one"))
	mc.publishRetained("r/b/c", []byte("two"))
	mc.publishRetained("r/gone", []byte("x"))
	mc.publishRetained("r/gone", nil) // clears it
	mc.publishRetained("other", []byte("no"))

	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"r/a", []string{"r/a=one"}},
		{"r/#", []string{"r/a=one", "r/b/c=two"}},
		{"r/+/c", []string{"r/b/c=two"}},
		{"#", []string{"other=no", "r/a=one", "r/b/c=two"}},
	} {
		s := newChanSub(t, tc.filter)
		subscribe(t, b, tc.filter, s)
		var got []string
		for range tc.want {
			m := s.next(t)
			if m.QoS != 1 || m.From != "" || m.Node != "mqtt-node" || !idRE.MatchString(m.ID) {
				t.Errorf("%s: retained message %+v", tc.filter, m)
			}
			got = append(got, m.Topic+"="+string(m.Payload))
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.filter, got, tc.want)
		}
	}

	// A shared subscription gets none: the first message it sees is live.
	s := newChanSub(t, "$share/g/r/#")
	subscribe(t, b, "$share/g/r/#", s)
	mc.publish("r/live", 0, []byte("live"))
	if m := s.next(t); m.Topic != "r/live" {
		t.Errorf("shared subscription got %s=%q first", m.Topic, m.Payload)
	}
}
