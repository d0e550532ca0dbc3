package listener_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
)

// Helpers of the flood test: DTLS clients on pion/dtls/v2 (the gateway's
// own stack, as a well-behaved peer), junk datagrams and failing handshakes.

// floodFlight is the handshake retransmission interval of the test's pion
// clients: short, so that a flight lost in the flood (the gateway's socket
// buffer overflows) is sent again well within the handshake timeout.
const floodFlight = 100 * time.Millisecond

// pionPSK returns a pion/dtls/v2 client configuration for PSK mode with
// CoAP's mandatory suite.
func pionPSK(identity string, key []byte) *dtls.Config {
	return &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(identity),
		CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		FlightInterval:  floodFlight,
	}
}

// pionClient is a DTLS client of the gateway, with its UDP socket.
type pionClient struct {
	*dtls.Conn
	udp *net.UDPConn
}

// dialPion runs a handshake with cfg from a new socket; ctx bounds it.
func dialPion(ctx context.Context, addr *net.UDPAddr, cfg *dtls.Config) (*pionClient, error) {
	pc, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		return nil, err
	}
	dc, err := dtls.ClientWithContext(ctx, pc, cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &pionClient{Conn: dc, udp: pc}, nil
}

// mustDialPion is dialPion for a client that must get through within iwait;
// the client is closed at the end of the test.
func mustDialPion(t *testing.T, addr *net.UDPAddr, cfg *dtls.Config) *pionClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), iwait)
	defer cancel()
	c, err := dialPion(ctx, addr, cfg)
	if err != nil {
		t.Fatalf("dtls handshake with the gateway: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoRetransmit is how long an echo waits before sending its datagram
// again: the flood may make the gateway's socket drop it, as UDP may.
const echoRetransmit = 150 * time.Millisecond

// echoWithin sends msg until its echo comes back or within passes, as a
// CoAP client retransmits a confirmable request; echoes of earlier messages
// are skipped. It returns how long the echo took, or an error.
func echoWithin(c *pionClient, msg string, within time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(within)
	defer c.SetDeadline(time.Time{}) // pion keeps a goroutine per pending deadline
	buf := make([]byte, 2048)
	for sends := 1; ; sends++ {
		c.SetWriteDeadline(deadline)
		if _, err := c.Write([]byte(msg)); err != nil {
			return 0, err
		}
		rd := time.Now().Add(echoRetransmit)
		if rd.After(deadline) {
			rd = deadline
		}
		c.SetReadDeadline(rd)
		for {
			n, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					return 0, err
				}
				if !time.Now().Before(deadline) {
					return 0, fmt.Errorf("no echo of %q within %v (%d sends)", msg, within, sends)
				}
				break // send again
			}
			if string(buf[:n]) == msg {
				return time.Since(start), nil
			}
		}
	}
}

// captureClientHello returns the first datagram of a pion/dtls/v2 client
// handshake: a genuine ClientHello record, to be sent truncated.
func captureClientHello(t *testing.T) []byte {
	t.Helper()
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	pc, err := net.DialUDP("udp", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		dtls.ClientWithContext(ctx, pc, pionPSK("capture", []byte("capture")))
	}()
	defer func() {
		cancel()
		<-done
	}()
	sink.SetReadDeadline(time.Now().Add(iwait))
	buf := make([]byte, 4096)
	n, _, err := sink.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	if n < 25 || buf[0] != 22 || buf[13] != 1 {
		t.Fatalf("captured datagram % x is not a ClientHello", buf[:n])
	}
	return append([]byte(nil), buf[:n]...)
}

// junk returns a random datagram of 1 to max bytes.
func junk(r *rand.Rand, max int) []byte {
	b := make([]byte, 1+r.IntN(max))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sendAll sends each datagram from a new socket per group of perSocket
// datagrams and returns how many sends failed (a full socket buffer on a
// loaded machine: the flood is best effort, as an attacker's is).
func sendAll(addr *net.UDPAddr, datagrams [][]byte, perSocket int) (sent, failed int, err error) {
	var pc *net.UDPConn
	defer func() {
		if pc != nil {
			pc.Close()
		}
	}()
	for i, d := range datagrams {
		if i%perSocket == 0 {
			if pc != nil {
				pc.Close()
			}
			if pc, err = net.DialUDP("udp", nil, addr); err != nil {
				return sent, failed, err
			}
		}
		if _, err := pc.Write(d); err != nil {
			failed++
			continue
		}
		sent++
	}
	return sent, failed, nil
}

// record returns one DTLS 1.2 record.
func record(contentType byte, epoch uint16, seq uint64, payload []byte) []byte {
	b := []byte{contentType, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch),
		byte(seq >> 40), byte(seq >> 32), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq),
		byte(len(payload) >> 8), byte(len(payload))}
	return append(b, payload...)
}

// firstFragment rewrites a one-record ClientHello datagram into a record
// that carries only the first n bytes of the message body: a whole record,
// a handshake header with the full length and a shorter fragment length.
func firstFragment(hello []byte, n int) []byte {
	const rh, hh = 13, 12 // record and handshake header sizes
	b := append([]byte(nil), hello[:rh+hh+n]...)
	l := hh + n
	b[11], b[12] = byte(l>>8), byte(l)
	b[rh+9], b[rh+10], b[rh+11] = byte(n>>16), byte(n>>8), byte(n)
	return b
}
