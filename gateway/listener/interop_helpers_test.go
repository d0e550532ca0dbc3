package listener_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/listener"
)

// iwait bounds every wait of the interop tests: generous, so that a loaded
// 2-core machine running -race does not make them flaky; reaching it is a
// failure.
const iwait = 10 * time.Second

// peersInstall is how CI (scripts/deps.sh) installs the external peers.
const peersInstall = "sudo apt-get install -y libcoap3-bin openssl"

// lookPeer returns the path of an external peer binary. A missing binary
// fails the test, unless PROTOGATE_SKIP_PEERS=1 (then it skips).
func lookPeer(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("missing peer %s (Debian package %s); install it with: %s (CI does this through scripts/deps.sh)", name, pkg, peersInstall)
	if os.Getenv("PROTOGATE_SKIP_PEERS") == "1" {
		t.Skip("PROTOGATE_SKIP_PEERS=1: " + msg)
	}
	t.Fatal(msg)
	return ""
}

// testLogger returns a logger that writes to the test log at level and goes
// quiet once the test has finished (gateway goroutines may still log while
// the cleanups run).
func testLogger(t *testing.T, level slog.Level) *slog.Logger {
	w := &tlogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tlogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tlogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// interopPKI is a test CA and a server certificate for localhost and
// 127.0.0.1, written to a temporary directory as PEM.
type interopPKI struct {
	caFile, certFile, keyFile string
	server                    tls.Certificate // loaded back from certFile and keyFile
}

func writePKI(t *testing.T) interopPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "protogate interop test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := interopPKI{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "server.pem"),
		keyFile:  filepath.Join(dir, "server.key"),
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{p.caFile, "CERTIFICATE", caDER, 0o644},
		{p.certFile, "CERTIFICATE", der, 0o644},
		{p.keyFile, "PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(f.name, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if p.server, err = tls.LoadX509KeyPair(p.certFile, p.keyFile); err != nil {
		t.Fatal(err)
	}
	return p
}

// created is what a handler learned from one OnSocketCreated.
type created struct {
	handle string
	info   gateway.ConnInfo
}

// recorder records the connections a handler saw created and closed.
type recorder struct {
	created chan created // every OnSocketCreated, in order
	closed  chan string  // the handle of every OnSocketClosed

	mu      sync.Mutex
	peers   map[string]string // handle -> peer address of every created connection
	reasons map[string]string // handle -> close reason of every closed connection
}

func newRecorder() *recorder {
	return &recorder{created: make(chan created, 1024), closed: make(chan string, 1024), peers: make(map[string]string), reasons: make(map[string]string)}
}

func (r *recorder) onCreated(c *gateway.Conn, info *gateway.ConnInfo) {
	r.mu.Lock()
	r.peers[c.Handle()] = info.Peer.String()
	r.mu.Unlock()
	select {
	case r.created <- created{handle: c.Handle(), info: *info}:
	default:
	}
}

func (r *recorder) onClosed(c *gateway.Conn, reason string) {
	r.mu.Lock()
	r.reasons[c.Handle()] = reason
	r.mu.Unlock()
	select {
	case r.closed <- c.Handle():
	default:
	}
}

// nextCreated returns the next connection the handler saw created.
func (r *recorder) nextCreated(t *testing.T) created {
	t.Helper()
	select {
	case c := <-r.created:
		return c
	case <-time.After(iwait):
		t.Fatal("the handler saw no connection created")
		return created{}
	}
}

// waitClosed waits until the handler has seen handle closed.
func (r *recorder) waitClosed(t *testing.T, handle string) {
	t.Helper()
	deadline := time.After(iwait)
	for {
		select {
		case h := <-r.closed:
			if h == handle {
				return
			}
		case <-deadline:
			t.Fatalf("the handler did not see connection %s closed", handle)
		}
	}
}

// closeReasons returns the close reason of every closed connection, by
// peer address.
func (r *recorder) closeReasons() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string)
	for h, reason := range r.reasons {
		out[r.peers[h]] = reason
	}
	return out
}

// createdPeers returns the peer address of every connection the handler saw
// created.
func (r *recorder) createdPeers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.peers {
		out = append(out, p)
	}
	return out
}

// echoHandler sends every datagram back.
type echoHandler struct{ *recorder }

func (h echoHandler) OnSocketCreated(_ context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	h.onCreated(c, info)
	return nil
}

func (h echoHandler) OnReceivedBytes(_ context.Context, c *gateway.Conn, b []byte) error {
	return c.Send(b)
}

func (echoHandler) OnTimerTimeout(context.Context, *gateway.Conn, gateway.TimerType) error {
	return nil
}

func (echoHandler) OnReceivedMessages(context.Context, *gateway.Conn, []*gateway.Message) error {
	return nil
}

func (h echoHandler) OnSocketClosed(_ context.Context, c *gateway.Conn, reason string) error {
	h.onClosed(c, reason)
	return nil
}

// gw is a gateway serving one DTLS listener on 127.0.0.1.
type gw struct {
	srv  *gateway.Server
	udp  *listener.UDPListener
	l    *gateway.Listener
	addr *net.UDPAddr
}

// startGateway serves a DTLS listener named name with cfg and h, and shuts
// the gateway down at the end of the test.
func startGateway(t *testing.T, name string, cfg listener.DTLSConfig, h gateway.Handler, log *slog.Logger) *gw {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = log
	}
	d, err := listener.NewDTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ul, err := listener.ListenUDP("127.0.0.1:0", listener.UDPConfig{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hsTimeout := cfg.HandshakeTimeout
	if hsTimeout <= 0 {
		hsTimeout = listener.DefaultHandshakeTimeout
	}
	srv := gateway.New(gateway.Options{Logger: log, HandshakeTimeout: hsTimeout, WriteTimeout: iwait})
	l := &gateway.Listener{Name: name, Type: gateway.DTLS, Handshaker: d, Handler: h}
	g := &gw{srv: srv, udp: ul, l: l, addr: ul.Addr().(*net.UDPAddr)}
	done := make(chan error, 1)
	// The clients may start at once: the listener reads nothing until
	// Serve has installed its admission check (see ListenUDP).
	go func() { done <- srv.Serve(ul, l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), iwait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, gateway.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(iwait):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return g
}

// waitFor polls cond until it returns nil, failing the test with its last
// error after iwait.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(iwait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine (exec's copier)
// and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)
