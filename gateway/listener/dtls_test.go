package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/protogate/protogate/gateway"
)

// testPKI is a CA with a server and a client certificate, made in-test.
type testPKI struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
	other  tls.Certificate // a client certificate from a CA nobody trusts
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func getPKI(t *testing.T) testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		caKey, caCert := makeCA(t, "protogate test CA")
		pki.pool = x509.NewCertPool()
		pki.pool.AddCert(caCert)
		pki.server = makeLeaf(t, caCert, caKey, pkix.Name{CommonName: "localhost"}, x509.ExtKeyUsageServerAuth)
		pki.client = makeLeaf(t, caCert, caKey, pkix.Name{CommonName: "device-1", Organization: []string{"protogate"}}, x509.ExtKeyUsageClientAuth)
		otherKey, otherCA := makeCA(t, "untrusted CA")
		pki.other = makeLeaf(t, otherCA, otherKey, pkix.Name{CommonName: "intruder"}, x509.ExtKeyUsageClientAuth)
	})
	if pki.pool == nil {
		t.Fatal("test PKI not built")
	}
	return pki
}

var serialNo atomic.Int64

func makeCA(t *testing.T, cn string) (*ecdsa.PrivateKey, *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serialNo.Add(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func makeLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, subj pkix.Name, usage x509.ExtKeyUsage) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serialNo.Add(1)),
		Subject:      subj,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// hsResult is what the test server learned of one handshake.
type hsResult struct {
	peer string
	id   gateway.PeerIdentity
	err  error
}

// dtlsServer accepts pseudo-connections and runs each handshake in its own
// goroutine, as the gateway core does, then echoes application data.
type dtlsServer struct {
	l       *UDPListener
	d       *DTLS
	started chan string   // peer address of each accepted connection
	results chan hsResult // one per finished handshake
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startDTLS(t *testing.T, cfg DTLSConfig) *dtlsServer {
	t.Helper()
	d, err := NewDTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ListenUDP("127.0.0.1:0", UDPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &dtlsServer{l: l, d: d, started: make(chan string, 64), results: make(chan hsResult, 64), cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			s.started <- nc.RemoteAddr().String()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				dc, id, err := d.Handshake(ctx, nc)
				s.results <- hsResult{peer: nc.RemoteAddr().String(), id: id, err: err}
				if err != nil {
					return
				}
				stop := context.AfterFunc(ctx, func() { dc.Close() })
				defer stop()
				defer dc.Close()
				buf := make([]byte, 65536)
				for {
					n, err := dc.Read(buf)
					if err != nil {
						return
					}
					// As the gateway core does before every send.
					dc.SetWriteDeadline(time.Now().Add(time.Minute))
					if _, err := dc.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		l.Close()
		s.wg.Wait()
	})
	return s
}

func (s *dtlsServer) addr() *net.UDPAddr { return s.l.Addr().(*net.UDPAddr) }

// next returns the next handshake result, failing the test after wait.
func (s *dtlsServer) next(t *testing.T) hsResult {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(wait):
		t.Fatal("no handshake finished")
		return hsResult{}
	}
}

// nextStarted returns the peer of the next accepted connection.
func (s *dtlsServer) nextStarted(t *testing.T) string {
	t.Helper()
	select {
	case p := <-s.started:
		return p
	case <-time.After(wait):
		t.Fatal("no connection accepted")
		return ""
	}
}

func certClient(p testPKI, withCert *tls.Certificate) *dtls.Config {
	cfg := &dtls.Config{RootCAs: p.pool, ServerName: "localhost"}
	if withCert != nil {
		cfg.Certificates = []tls.Certificate{*withCert}
	}
	return cfg
}

func pskClient(identity string, key []byte) *dtls.Config {
	return &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(identity),
		CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
	}
}

// dial runs a client handshake over a fresh socket and returns the
// connection, or the handshake error.
func dial(t *testing.T, s *dtlsServer, cfg *dtls.Config) (*dtls.Conn, error) {
	t.Helper()
	pc, err := net.DialUDP("udp", nil, s.addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dc, err := dtls.ClientWithContext(ctx, pc, cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	t.Cleanup(func() { dc.Close() })
	return dc, nil
}

// echo checks that application data flows both ways.
func echo(t *testing.T, c *dtls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != msg {
		t.Fatalf("echo %q, want %q", buf[:n], msg)
	}
	// pion/dtls keeps a goroutine per pending deadline.
	c.SetDeadline(time.Time{})
}

func mustSucceed(t *testing.T, r hsResult) gateway.PeerIdentity {
	t.Helper()
	if r.err != nil {
		t.Fatalf("server handshake with %s: %v", r.peer, r.err)
	}
	return r.id
}

func TestDTLSCertificateWithoutClientCert(t *testing.T) {
	p := getPKI(t)
	s := startDTLS(t, DTLSConfig{Certificates: []tls.Certificate{p.server}})
	c, err := dial(t, s, certClient(p, nil))
	if err != nil {
		t.Fatal(err)
	}
	id := mustSucceed(t, s.next(t))
	if id.Cert != nil || id.PSKIdentity != "" {
		t.Fatalf("identity %+v, want none", id)
	}
	echo(t, c, "hello over dtls")
}

func TestDTLSCertificateWithClientCert(t *testing.T) {
	p := getPKI(t)
	s := startDTLS(t, DTLSConfig{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, VerifyClient: true})

	c, err := dial(t, s, certClient(p, &p.client))
	if err != nil {
		t.Fatal(err)
	}
	id := mustSucceed(t, s.next(t))
	if id.Cert == nil || id.Cert.CN != "device-1" || id.Cert.DN != "CN=device-1,O=protogate" || id.PSKIdentity != "" {
		t.Fatalf("identity %+v (cert %+v)", id, id.Cert)
	}
	echo(t, c, "with a client certificate")

	// VerifyClient: no certificate, no connection.
	if _, err := dial(t, s, certClient(p, nil)); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	if r := s.next(t); r.err == nil {
		t.Fatal("the server accepted a client without a certificate")
	}
	// An untrusted certificate fails too.
	if _, err := dial(t, s, certClient(p, &p.other)); err == nil {
		t.Fatal("a client with an untrusted certificate got through")
	}
	if r := s.next(t); r.err == nil {
		t.Fatal("the server accepted an untrusted certificate")
	}
}

func TestDTLSOptionalClientCert(t *testing.T) {
	p := getPKI(t)
	s := startDTLS(t, DTLSConfig{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool})
	if _, err := dial(t, s, certClient(p, nil)); err != nil {
		t.Fatal(err)
	}
	if id := mustSucceed(t, s.next(t)); id.Cert != nil {
		t.Fatalf("identity %+v", id)
	}
	if _, err := dial(t, s, certClient(p, &p.client)); err != nil {
		t.Fatal(err)
	}
	if id := mustSucceed(t, s.next(t)); id.Cert == nil || id.Cert.CN != "device-1" {
		t.Fatalf("identity %+v", id)
	}
}

var (
	pskKey   = []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	wrongKey = []byte("not the right key")
)

func TestDTLSPSK(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: map[string][]byte{"sensor-7": pskKey}, PSKIdentityHint: "protogate"})
	c, err := dial(t, s, pskClient("sensor-7", pskKey))
	if err != nil {
		t.Fatal(err)
	}
	id := mustSucceed(t, s.next(t))
	if id.PSKIdentity != "sensor-7" || id.Cert != nil {
		t.Fatalf("identity %+v", id)
	}
	echo(t, c, "coap over psk")
}

// alertWatch is a client's socket that tells whether the server sent an
// alert record (content type 21).
type alertWatch struct {
	*net.UDPConn
	alerts atomic.Int32
}

func (c *alertWatch) Read(b []byte) (int, error) {
	n, err := c.UDPConn.Read(b)
	for off := 0; off < n; {
		h, err := parseRecordHeader(b[off:n])
		if err != nil {
			break
		}
		if h.contentType == 21 {
			c.alerts.Add(1)
		}
		off += recordHeaderLen + h.length
	}
	return n, err
}

// TestDTLSPSKFailures checks that a wrong key and an unknown identity fail
// alike, so that a prober cannot tell which identities exist: the server
// cannot decrypt the client's Finished and, as DTLS wants, drops it; the
// handshake ends at the handshake timeout, and the client gets no alert.
func TestDTLSPSKFailures(t *testing.T) {
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct {
		name    string
		cfg     *dtls.Config
		unknown bool
	}{
		{"wrong key", pskClient("sensor-7", wrongKey), false},
		{"unknown identity", pskClient("sensor-8", pskKey), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startDTLS(t, DTLSConfig{PSK: map[string][]byte{"sensor-7": pskKey}, HandshakeTimeout: timeout})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pc, err := net.DialUDP("udp", nil, s.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			aw := &alertWatch{UDPConn: pc}
			clientErr := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := dtls.ClientWithContext(ctx, aw, tc.cfg)
				clientErr <- err
			}()
			r := s.next(t)
			if r.err == nil {
				t.Fatalf("the server accepted %+v", r.id)
			}
			t.Logf("server: %v", r.err)
			if !errors.Is(r.err, context.DeadlineExceeded) {
				t.Fatalf("server error %v, want the handshake timeout", r.err)
			}
			if took := time.Since(start); took < timeout {
				t.Fatalf("the handshake failed after %v, before the timeout %v", took, timeout)
			}
			if got := strings.Contains(r.err.Error(), "unknown psk identity"); got != tc.unknown {
				t.Fatalf("server error %q: mentions an unknown identity: %v, want %v", r.err, got, tc.unknown)
			}
			select {
			case err := <-clientErr:
				t.Fatalf("the client's handshake ended before the server gave up: %v", err)
			default:
			}
			if n := aw.alerts.Load(); n != 0 {
				t.Fatalf("the client got %d alerts", n)
			}
			cancel()
			if err := <-clientErr; err == nil {
				t.Fatal("the client got through")
			}
		})
	}
}

func TestDTLSMixedListener(t *testing.T) {
	p := getPKI(t)
	s := startDTLS(t, DTLSConfig{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.pool,
		VerifyClient: true,
		PSK:          map[string][]byte{"sensor-7": pskKey},
	})

	cc, err := dial(t, s, certClient(p, &p.client))
	if err != nil {
		t.Fatal(err)
	}
	if id := mustSucceed(t, s.next(t)); id.Cert == nil || id.Cert.CN != "device-1" || id.PSKIdentity != "" {
		t.Fatalf("certificate client identity %+v", id)
	}
	echo(t, cc, "cert")

	pc, err := dial(t, s, pskClient("sensor-7", pskKey))
	if err != nil {
		t.Fatal(err)
	}
	if id := mustSucceed(t, s.next(t)); id.PSKIdentity != "sensor-7" || id.Cert != nil {
		t.Fatalf("psk client identity %+v", id)
	}
	echo(t, pc, "psk")

	// VerifyClient still applies to certificate clients.
	if _, err := dial(t, s, certClient(p, nil)); err == nil {
		t.Fatal("a certificate client without a certificate got through")
	}
	if r := s.next(t); r.err == nil {
		t.Fatal("the server accepted a certificate client without a certificate")
	}
}

// stallConn passes a client's first datagram (its ClientHello) and then
// swallows everything it writes, so its handshake stalls on the server. It
// records the first datagram the server sends back.
type stallConn struct {
	*net.UDPConn
	writes atomic.Int32
	first  chan []byte
}

func newStallConn(t *testing.T, s *dtlsServer) *stallConn {
	pc, err := net.DialUDP("udp", nil, s.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &stallConn{UDPConn: pc, first: make(chan []byte, 1)}
}

func (c *stallConn) Write(b []byte) (int, error) {
	if c.writes.Add(1) > 1 {
		return len(b), nil
	}
	return c.UDPConn.Write(b)
}

func (c *stallConn) Read(b []byte) (int, error) {
	n, err := c.UDPConn.Read(b)
	if n > 0 {
		select {
		case c.first <- append([]byte(nil), b[:n]...):
		default:
		}
	}
	return n, err
}

// countingConn closes reached when the client has written at flights.
type countingConn struct {
	*net.UDPConn
	at      int32
	writes  atomic.Int32
	reached chan struct{}
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.UDPConn.Write(b)
	if c.writes.Add(1) == c.at {
		close(c.reached)
	}
	return n, err
}

// startStalled starts a client handshake over a stallConn and returns once
// the server has accepted its connection and answered its ClientHello.
func startStalled(t *testing.T, s *dtlsServer, cfg *dtls.Config) (*stallConn, <-chan error) {
	t.Helper()
	sc := newStallConn(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := dtls.ClientWithContext(ctx, sc, cfg)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if peer := s.nextStarted(t); peer != sc.LocalAddr().String() {
		t.Fatalf("accepted %s, want the stalled client %s", peer, sc.LocalAddr())
	}
	select {
	case <-sc.first:
	case <-time.After(wait):
		t.Fatal("the server did not answer the ClientHello")
	}
	return sc, done
}

func TestDTLSCookieExchange(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: map[string][]byte{"sensor-7": pskKey}})
	sc := newStallConn(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dtls.ClientWithContext(ctx, sc, pskClient("sensor-7", pskKey))
	select {
	case b := <-sc.first:
		// Record header (13 bytes): content type 22 = handshake; then the
		// handshake header, whose type 3 = hello_verify_request.
		if len(b) < 14 || b[0] != 22 || b[13] != 3 {
			t.Fatalf("first server datagram % x is not a HelloVerifyRequest", b)
		}
	case <-time.After(wait):
		t.Fatal("no answer to the ClientHello")
	}
}

// TestDTLSHandshakesAreConcurrent runs a client that stalls after its
// ClientHello and a client with a wrong key, then a good client on the same
// listener: the good handshake must finish while both bad ones are still
// pending on the server.
func TestDTLSHandshakesAreConcurrent(t *testing.T) {
	p := getPKI(t)
	s := startDTLS(t, DTLSConfig{
		Certificates:     []tls.Certificate{p.server},
		PSK:              map[string][]byte{"sensor-7": pskKey},
		HandshakeTimeout: time.Minute, // the bad handshakes outlive the test
	})
	stalled, _ := startStalled(t, s, pskClient("sensor-7", pskKey))
	// The wrong-key client sends its whole side of the exchange (its third
	// flight carries the key exchange and a Finished the server cannot
	// decrypt) and then waits for a Finished that never comes: its server
	// handshake stays pending as well.
	wrongCtx, cancelWrong := context.WithCancel(context.Background())
	wrongDone := make(chan error, 1)
	udp, err := net.DialUDP("udp", nil, s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	wrongPC := &countingConn{UDPConn: udp, at: 3, reached: make(chan struct{})}
	go func() {
		_, err := dtls.ClientWithContext(wrongCtx, wrongPC, pskClient("sensor-7", wrongKey))
		wrongDone <- err
	}()
	defer func() {
		cancelWrong()
		<-wrongDone
	}()
	if peer := s.nextStarted(t); peer != wrongPC.LocalAddr().String() {
		t.Fatalf("accepted %s, want the wrong-key client %s", peer, wrongPC.LocalAddr())
	}
	select {
	case <-wrongPC.reached:
	case <-time.After(wait):
		t.Fatal("the wrong-key client did not send its key exchange")
	}

	for _, cfg := range []*dtls.Config{pskClient("sensor-7", pskKey), certClient(p, nil)} {
		c, err := dial(t, s, cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := s.next(t)
		if r.peer != c.LocalAddr().String() {
			// Any other result is a bad handshake's, finished first.
			t.Fatalf("first finished handshake is %s's (%v), want the good client %s's", r.peer, r.err, c.LocalAddr())
		}
		mustSucceed(t, r)
		echo(t, c, "not delayed")
	}
	select {
	case r := <-s.results:
		t.Fatalf("a bad handshake ended: %s: %v", r.peer, r.err)
	default:
	}
	_ = stalled
}

func TestDTLSHandshakeTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := startDTLS(t, DTLSConfig{PSK: map[string][]byte{"sensor-7": pskKey}, HandshakeTimeout: timeout})
	start := time.Now()
	startStalled(t, s, pskClient("sensor-7", pskKey))
	r := s.next(t)
	if r.err == nil {
		t.Fatal("a stalled handshake succeeded")
	}
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("error %v does not wrap context.DeadlineExceeded", r.err)
	}
	if elapsed := time.Since(start); elapsed < timeout {
		t.Fatalf("handshake gave up after %v, before the %v timeout", elapsed, timeout)
	}
}

func TestDTLSHandshakeHonoursContext(t *testing.T) {
	s := startDTLS(t, DTLSConfig{PSK: map[string][]byte{"sensor-7": pskKey}, HandshakeTimeout: time.Minute})
	startStalled(t, s, pskClient("sensor-7", pskKey))
	s.cancel()
	r := s.next(t)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("error %v does not wrap context.Canceled", r.err)
	}
}

func TestDTLSNotClientHello(t *testing.T) {
	d, err := NewDTLS(DTLSConfig{PSK: map[string][]byte{"sensor-7": pskKey}, HandshakeTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	l := listenUDP(t, UDPConfig{})
	a := dialUDP(t, l)
	// An application-data record (type 23) of a session the server does
	// not have, as a client sends after a gateway restart.
	send(t, a, "\x17\xfe\xfd\x00\x01\x00\x00\x00\x00\x00\x05\x00\x10stale record....")
	nc := accept(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, _, err = d.Handshake(ctx, nc)
	if !errors.Is(err, ErrNotClientHello) {
		t.Fatalf("error %v does not wrap ErrNotClientHello", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the handshake waited instead of failing at once")
	}
	// A failed handshake closes the pseudo-connection: the peer is forgotten.
	if _, err := nc.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("pseudo-connection after a failed handshake: %v", err)
	}
}

func TestNewDTLSValidation(t *testing.T) {
	p := getPKI(t)
	for _, tc := range []struct {
		name string
		cfg  DTLSConfig
	}{
		{"nothing", DTLSConfig{}},
		{"client CAs without a certificate", DTLSConfig{PSK: map[string][]byte{"a": pskKey}, ClientCAs: p.pool}},
		{"verify without CAs", DTLSConfig{Certificates: []tls.Certificate{p.server}, VerifyClient: true}},
		{"hint without PSK", DTLSConfig{Certificates: []tls.Certificate{p.server}, PSKIdentityHint: "x"}},
		{"empty identity", DTLSConfig{PSK: map[string][]byte{"": pskKey}}},
		{"empty key", DTLSConfig{PSK: map[string][]byte{"a": nil}}},
		{"certificate without a key", DTLSConfig{Certificates: []tls.Certificate{{Certificate: p.server.Certificate}}}},
		{"bad key type", DTLSConfig{Certificates: []tls.Certificate{{Certificate: p.server.Certificate, PrivateKey: "nope"}}}},
	} {
		if _, err := NewDTLS(tc.cfg); err == nil {
			t.Errorf("%s: NewDTLS accepted it", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

// TestDTLSLeavesNoGoroutines serves a good, a failing and a stalled
// handshake, shuts everything down, and checks that no goroutine is left.
func TestDTLSLeavesNoGoroutines(t *testing.T) {
	getPKI(t)
	before := runtime.NumGoroutine()
	t.Run("serve", func(t *testing.T) {
		s := startDTLS(t, DTLSConfig{PSK: map[string][]byte{"sensor-7": pskKey}, HandshakeTimeout: time.Minute})
		c, err := dial(t, s, pskClient("sensor-7", pskKey))
		if err != nil {
			t.Fatal(err)
		}
		mustSucceed(t, s.next(t))
		echo(t, c, "bye")
		// A client with no cipher suite in common fails at once.
		if _, err := dial(t, s, certClient(getPKI(t), nil)); err == nil {
			t.Fatal("a certificate client got through a psk-only listener")
		}
		if r := s.next(t); r.err == nil {
			t.Fatal("a certificate client accepted by a psk-only listener")
		}
		s.nextStarted(t)
		s.nextStarted(t)
		startStalled(t, s, pskClient("sensor-7", pskKey))
	}) // its cleanups close the clients, the listener and the server
	waitGoroutines(t, before)
}
