package gateway

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway/framing"
	"github.com/protogate/protogate/gateway/proxyproto"
)

// TestSendAndCloseAtOnce is the connection leak of a device whose last bytes
// and close (FIN) arrive together: the gateway must answer the bytes and
// then see the close, on every stream read path. Many devices do it at once,
// so that data and FIN are both queued before the gateway's first read.
func TestSendAndCloseAtOnce(t *testing.T) {
	testSendAndCloseAtOnce(t)
}

// TestSendAndCloseAtOnceWithoutINQ is TestSendAndCloseAtOnce on a kernel
// without TCP_INQ, where raw sockets are read until EAGAIN.
func TestSendAndCloseAtOnceWithoutINQ(t *testing.T) {
	setNoINQ(t)
	testSendAndCloseAtOnce(t)
}

func testSendAndCloseAtOnce(t *testing.T) {
	serverTLS, clientTLS := selfSignedTLS(t)
	cases := []struct {
		name string
		l    Listener
		// queue answers with Conn.Queue (as Wasm guests do) instead of Send.
		queue bool
	}{
		{name: "tcp"},
		{name: "tcp-queue", queue: true},
		{name: "tcp-framing", l: Listener{Framing: framing.Config{Kind: framing.Line}}},
		{name: "tcp-proxy", l: Listener{ProxyProtocol: true}},
		{name: "ssl", l: Listener{Type: SSL, TLSConfig: serverTLS}},
		{name: "ssl-framing-proxy", l: Listener{Type: SSL, TLSConfig: serverTLS, ProxyProtocol: true,
			Framing: framing.Config{Kind: framing.Line}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newChecker(t)
			h.onBytes = func(c *Conn, b []byte) error {
				if tc.queue {
					return c.Queue([]byte("PONG\n"))
				}
				return c.Send([]byte("PONG\n"))
			}
			s, addr := serve(t, h, Options{}, tc.l)
			const devices = 100
			var wg sync.WaitGroup
			for i := range devices {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := sendAndClose(addr, tc.l, clientTLS, i); err != nil {
						t.Errorf("device %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			for range devices {
				recv(t, h.closed)
			}
			// Every connection is gone from the gateway and from the
			// kernel: none waits in CLOSE-WAIT for a close that never
			// comes.
			deadline := time.Now().Add(wait)
			for s.NumConns() != 0 || closeWait(t, addr) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections registered, %d sockets in CLOSE-WAIT", s.NumConns(), closeWait(t, addr))
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, r := range h.reasonsOf() {
				if r != ReasonTCPClosed && r != ReasonSSLClosed {
					t.Errorf("close reason %q, want the peer's close", r)
					break
				}
			}
		})
	}
}

// sendAndClose is one device: it sends PING, shuts its write side at once
// and expects PONG and then the end of the stream.
func sendAndClose(addr string, l Listener, clientTLS *tls.Config, i int) error {
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(wait))
	var pre []byte
	if l.ProxyProtocol {
		src := netip.MustParseAddrPort(fmt.Sprintf("10.0.0.1:%d", 1000+i))
		pre = proxyproto.AppendV1(nil, proxyproto.Header{Version: 1, Command: proxyproto.Proxy,
			Source: src, Destination: netip.MustParseAddrPort("10.0.0.2:7993")})
	}
	var rw io.ReadWriter = nc
	closeWrite := nc.(*net.TCPConn).CloseWrite
	if l.Type == SSL {
		if _, err := nc.Write(pre); err != nil {
			return err
		}
		pre = nil
		tc := tls.Client(nc, clientTLS)
		if err := tc.Handshake(); err != nil {
			return err
		}
		rw, closeWrite = tc, tc.CloseWrite
	}
	// One write for the header and the data where possible, and the FIN
	// right behind it.
	if _, err := rw.Write(append(pre, "PING\n"...)); err != nil {
		return err
	}
	if err := closeWrite(); err != nil {
		return err
	}
	br := bufio.NewReader(rw)
	line, err := br.ReadString('\n')
	if err != nil || line != "PONG\n" {
		return fmt.Errorf("read %q, %v; want PONG", line, err)
	}
	if b, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("after PONG: %q, %v; want the end of the stream", b, err)
	}
	return nil
}

func (h *checker) reasonsOf() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rs []string
	for _, r := range h.reasons {
		rs = append(rs, r)
	}
	return rs
}

// closeWait counts the sockets in CLOSE-WAIT whose local address is addr,
// from /proc/net/tcp; it is 0 where that file does not exist.
func closeWait(t *testing.T, addr string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0
	}
	ap := netip.MustParseAddrPort(addr)
	ip := ap.Addr().As4()
	// /proc/net/tcp prints the address as a little-endian hex word.
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == local && f[3] == "08" { // TCP_CLOSE_WAIT
			n++
		}
	}
	return n
}

// selfSignedTLS returns a server config with a fresh self-signed
// certificate for 127.0.0.1 and a client config that trusts it.
func selfSignedTLS(t testing.TB) (*tls.Config, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gateway"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	return server, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}
