package conformance

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/proxyproto"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// testSendAndClose is many devices whose last bytes and close arrive
// together: each sends CONNECT and shuts its write side at once. Every one
// gets its CONNACK (unless the back end's callbacks are asynchronous) and
// then the end of the stream, and the handler sees every connection closed
// by the peer: none is left waiting for a close that already arrived.
func testSendAndClose(t *testing.T, env *Env) {
	const devices = 40
	want := gateway.ReasonTCPClosed
	if env.Type == gateway.SSL {
		want = gateway.ReasonSSLClosed
	}
	peers := make(chan string, devices)
	var wg sync.WaitGroup
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer, err := env.sendAndClose(i)
			if err != nil {
				t.Errorf("device %d: %v", i, err)
				return
			}
			peers <- peer
		}()
	}
	wg.Wait()
	close(peers)
	for peer := range peers {
		h := env.Rec.waitCreated(t, peer)
		if r := env.Rec.waitClosed(t, h); r != want {
			t.Errorf("%s: reason %q, want %q", peer, r, want)
		}
		env.waitGone(t, h)
	}
}

// sendAndClose is one device of testSendAndClose. It returns the peer
// address the gateway knows it by.
func (env *Env) sendAndClose(i int) (string, error) {
	tcp, err := net.DialTimeout("tcp", env.Addr, Timeout)
	if err != nil {
		return "", err
	}
	defer tcp.Close()
	tcp.SetDeadline(time.Now().Add(Timeout))
	peer := tcp.LocalAddr().String()
	var out []byte
	if env.Listener.ProxyProtocol {
		src := netip.AddrPortFrom(netip.MustParseAddr("10.1.2.3"), uint16(20000+i))
		peer = src.String()
		out = proxyproto.AppendV2(out, proxyproto.Header{Version: 2, Command: proxyproto.Proxy,
			Source: src, Destination: netip.MustParseAddrPort("10.1.2.4:7993")})
	}
	frame := jp.AppendLine(nil, jp.Frame{Type: jp.Connect, ClientInfo: jp.ClientInfo{
		ProtoName: "exproto", ProtoVer: "1.0", ClientID: fmt.Sprintf("send-close-%d", i)}})
	var rw io.ReadWriter = tcp
	if env.Type == gateway.SSL {
		if _, err := tcp.Write(out); err != nil {
			return "", err
		}
		out = nil
		tc := tls.Client(tcp, env.TLS)
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		rw = tc
	}
	// The frame and the FIN go out back to back (for TLS: the record,
	// the close_notify and the FIN).
	if _, err := rw.Write(append(out, frame...)); err != nil {
		return "", err
	}
	if tc, ok := rw.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return "", err
		}
	}
	if err := tcp.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	dec := jp.NewDecoder(1 << 16)
	buf := make([]byte, 4096)
	var frames []jp.Frame
	for {
		n, err := rw.Read(buf)
		dec.Feed(buf[:n])
		for {
			f, ok, derr := dec.Next()
			if derr != nil {
				return "", derr
			}
			if !ok {
				break
			}
			frames = append(frames, f)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("after %d frames: %w", len(frames), err)
		}
	}
	if len(frames) == 0 && env.backend.AsyncCallbacks {
		// The handler answered after the gateway had closed.
		return peer, nil
	}
	if len(frames) != 1 || frames[0].Type != jp.Connack || frames[0].Code != 0 {
		return "", fmt.Errorf("got %+v before the end of the stream, want one CONNACK", frames)
	}
	return peer, nil
}

// burstSize and burstPayload size a burst: with maxPending 32 in the env,
// far more than a subscriber's queue holds, and more than the socket
// buffers of a subscriber dialed by dialSmallBuffer.
const (
	burstSize    = 500
	burstPayload = 1024
)

// testBurst: a device publishes a burst as fast as TCP takes it to a
// filter another device subscribes to and reads as fast as it can. The
// subscriber keeps up, so it gets every message, in order: the publisher
// is slowed down instead (deliveries wait for the subscriber's queue, and
// the publisher's reads pause while they are behind).
func testBurst(t *testing.T, env *Env) {
	burst(t, env, false)
}

// testBurstBesideStalled is testBurst with a second subscriber that reads
// nothing: it loses messages at its own bound, the one that reads still
// gets them all.
func testBurstBesideStalled(t *testing.T, env *Env) {
	burst(t, env, true)
}

func burst(t *testing.T, env *Env, stalled bool) {
	// The subscriber reads steadily, but slower than the publisher can
	// publish, through a small socket buffer: without flow control its
	// queue in the gateway would overflow.
	sub := env.dialSmallBuffer(t)
	sub.connect("burst-sub", 0, 0)
	sub.subscribe("burst/#", 0, 0)
	if stalled {
		st := env.dial(t)
		st.connect("burst-stalled", 0, 0)
		st.subscribe("burst/#", 0, 0)
		// st is never read again.
	}
	pub := env.dial(t)
	pub.connect("burst-pub", 0, 0)

	// The publisher's PUBACKs are read (and checked) on their own
	// goroutine, so that the publisher is never the slow reader.
	acks := make(chan error, 1)
	go func() {
		for i := range burstSize {
			f, err := pub.tryNext(2 * Timeout)
			if err == nil && (f.Type != jp.Puback || f.Code != 0) {
				err = fmt.Errorf("got %+v", f)
			}
			if err != nil {
				acks <- fmt.Errorf("PUBACK %d: %w", i, err)
				return
			}
		}
		acks <- nil
	}()
	payload := strings.Repeat("x", burstPayload-8)
	go func() {
		bw := bufio.NewWriterSize(pub.nc, 64<<10)
		pub.nc.SetWriteDeadline(time.Now().Add(4 * Timeout))
		for i := range burstSize {
			bw.Write(jp.AppendLine(nil, jp.Frame{Type: jp.Publish, Topic: "burst/a", Payload: fmt.Sprintf("%08d", i) + payload}))
		}
		bw.Flush()
	}()
	for i := range burstSize {
		// At most 200 messages a second: slower than any back end
		// publishes, even under -race.
		time.Sleep(5 * time.Millisecond)
		f, err := sub.tryNext(2 * Timeout)
		if err != nil {
			t.Fatalf("the subscriber got %d of %d messages: %v (gateway dropped %d)", i, burstSize, err, env.Server.Dropped())
		}
		if f.Type != jp.Publish || !strings.HasPrefix(f.Payload, fmt.Sprintf("%08d", i)) {
			t.Fatalf("message %d: got %s %.16q", i, f.Type, f.Payload)
		}
	}
	if err := <-acks; err != nil {
		t.Fatal(err)
	}
	if d := env.Broker.Dropped(); d != 0 {
		t.Errorf("the broker dropped %d messages", d)
	}
	if !stalled && env.Server.Dropped() != 0 {
		t.Errorf("the gateway dropped %d deliveries with no slow subscriber", env.Server.Dropped())
	}
}

// dialSmallBuffer is dial with a small socket receive buffer, so that the
// gateway's writes to the device wait for the device to read.
func (env *Env) dialSmallBuffer(t testing.TB) *client {
	t.Helper()
	d := net.Dialer{Timeout: Timeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
		})
		return errors.Join(cerr, err)
	}}
	var nc net.Conn
	var err error
	if env.Type == gateway.SSL {
		nc, err = tls.DialWithDialer(&d, "tcp", env.Addr, env.TLS)
	} else {
		nc, err = d.Dial("tcp", env.Addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", env.Addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	c := newClient(t, nc)
	c.handle = env.Rec.waitCreated(t, nc.LocalAddr().String())
	return c
}
