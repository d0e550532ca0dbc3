package listener_test

// Interop tests: the gateway's DTLS listener (gateway/listener on
// pion/dtls/v2, served by the gateway core) against real, independent DTLS
// stacks: the openssl command line (OpenSSL 3), libcoap's coap-client built
// on GnuTLS and on OpenSSL, and go-coap on pion/dtls/v3. They need
// `apt-get install -y libcoap3-bin openssl` (scripts/deps.sh does it); a
// missing binary fails the test unless PROTOGATE_SKIP_PEERS=1.
//
// TestInteropDTLSFlood floods a DTLS listener with junk and failing
// handshakes and checks that established and new clients are still served;
// TestInteropDTLSSpoofedRecords forges datagrams from an established
// client's address.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/listener"
)

// The PSK credentials of the CoAP tests. libcoap's -k takes the key as text
// (libcoap 4.3.1 has no hex form), so the listener's table holds the raw
// bytes of that text.
const (
	coapIdentity = "protogate-interop"
	coapKey      = "interop-secret-key-1"
)

// peerCmd runs a peer process with a deadline. Its stdout and stderr are
// collected; a peer still running at the end of the test is killed.
type peerCmd struct {
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
}

func newPeerCmd(ctx context.Context, name string, args ...string) *peerCmd {
	p := &peerCmd{cmd: exec.CommandContext(ctx, name, args...)}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	// A polite stop first, so that the peer can send its close_notify.
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = 2 * time.Second
	return p
}

func (p *peerCmd) String() string { return strings.Join(p.cmd.Args, " ") }

// run runs the peer to its end and returns its stdout; the peer must exit
// with status 0 before ctx ends.
func (p *peerCmd) run(t *testing.T) string {
	t.Helper()
	t.Logf("running: %s", p)
	err := p.cmd.Run()
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", p, err, p.stdout.String(), p.stderr.String())
	}
	return p.stdout.String()
}

// sClient runs `openssl s_client -dtls1_2` with args against g, whose
// handler echoes, and checks the connection the handler sees with check.
// It sends a few lines, each of which must come back, then closes the
// client's input: s_client sends close_notify and exits 0, and the handler
// must see the connection closed. It returns s_client's stderr, where
// -brief reports the protocol and the cipher suite.
func sClient(t *testing.T, g *gw, rec *recorder, check func(gateway.ConnInfo) error, args ...string) string {
	t.Helper()
	openssl := lookPeer(t, "openssl", "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*iwait)
	defer cancel()
	// OpenSSL 3.0: -brief prints the connection parameters to stderr and,
	// like -quiet, keeps everything but the received data off stdout and
	// implies -ign_eof, which -no_ign_eof undoes: at the end of its input
	// the client sends close_notify and exits.
	args = append([]string{"s_client", "-dtls1_2", "-connect", g.addr.String(), "-brief", "-no_ign_eof"}, args...)
	p := newPeerCmd(ctx, openssl, args...)
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = nil // read through a pipe instead
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("running: %s", p)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		// Wait only once stdout is read to its end (os/exec's rule).
		exited <- p.cmd.Wait()
	}()
	var exitErr error
	running := true
	defer func() {
		if running {
			stdin.Close()
			cancel() // SIGTERM, then SIGKILL after WaitDelay
			for range lines {
			}
			<-exited
		}
	}()

	var c created
	select {
	case c = <-rec.created:
	case err := <-exited:
		running = false
		t.Fatalf("%s exited before the handshake: %v\nstderr:\n%s", p, err, p.stderr.String())
	case <-time.After(iwait):
		t.Fatalf("the handler saw no connection; stderr:\n%s", p.stderr.String())
	}
	if c.info.SockType != gateway.DTLS || c.info.Listener != g.l.Name {
		t.Fatalf("ConnInfo %+v, want SockType dtls on listener %s", c.info, g.l.Name)
	}
	if c.info.Peer.Addr().String() != "127.0.0.1" || c.info.Local.Port() != uint16(g.addr.Port) {
		t.Fatalf("ConnInfo peer %s local %s", c.info.Peer, c.info.Local)
	}
	if err := check(c.info); err != nil {
		t.Fatalf("ConnInfo %+v: %v", c.info, err)
	}

	for i := range 3 {
		msg := fmt.Sprintf("hello protogate from openssl over dtls, line %d", i)
		if _, err := io.WriteString(stdin, msg+"\n"); err != nil {
			t.Fatalf("write to %s: %v", p, err)
		}
		deadline := time.After(iwait)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("%s closed its stdout before the echo of %q; stderr:\n%s", p, msg, p.stderr.String())
				}
				if l == msg {
					break read
				}
				t.Logf("openssl stdout: %s", l)
			case <-deadline:
				t.Fatalf("no echo of %q from %s; stderr:\n%s", msg, p, p.stderr.String())
			}
		}
	}

	stdin.Close()
	select {
	case exitErr = <-exited:
		running = false
	case <-time.After(iwait):
		t.Fatalf("%s did not exit at the end of its input", p)
	}
	if exitErr != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", p, exitErr, p.stderr.String())
	}
	rec.waitClosed(t, c.handle)
	return p.stderr.String()
}

// TestInteropOpenSSL runs `openssl s_client -dtls1_2` against one DTLS
// listener with a certificate and a PSK table, whose handler echoes every
// datagram: in certificate mode the client verifies the server certificate
// against the test CA (and the name localhost); in PSK mode it offers only
// TLS_PSK_WITH_AES_128_CCM_8 (OpenSSL's PSK-AES128-CCM8), CoAP's mandatory
// PSK suite.
func TestInteropOpenSSL(t *testing.T) {
	lookPeer(t, "openssl", "openssl")
	pki := writePKI(t)
	rec := newRecorder()
	const identity = "openssl-client"
	key := []byte{0x5e, 0xc2, 0xe7, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff}
	g := startGateway(t, "interop-openssl", listener.DTLSConfig{
		Certificates: []tls.Certificate{pki.server},
		PSK:          map[string][]byte{identity: key},
	}, echoHandler{rec}, testLogger(t, slog.LevelInfo))

	t.Run("certificate", func(t *testing.T) {
		// -verify_return_error makes a failed verification fatal (by
		// default s_client only reports it); -verify_hostname checks the
		// name in the certificate.
		out := sClient(t, g, rec, func(info gateway.ConnInfo) error {
			if info.PeerCert != nil || info.PSKIdentity != "" {
				return errors.New("want no peer certificate and no PSK identity")
			}
			return nil
		}, "-servername", "localhost", "-CAfile", pki.caFile, "-verify_return_error", "-verify_hostname", "localhost")
		t.Logf("openssl: %s", out)
		if !strings.Contains(out, "Verification: OK") {
			t.Fatalf("s_client did not report the server certificate verified:\n%s", out)
		}
	})
	t.Run("psk", func(t *testing.T) {
		out := sClient(t, g, rec, func(info gateway.ConnInfo) error {
			if info.PeerCert != nil || info.PSKIdentity != identity {
				return fmt.Errorf("want PSK identity %q and no peer certificate", identity)
			}
			return nil
		}, "-psk_identity", identity, "-psk", hex.EncodeToString(key), "-cipher", "PSK-AES128-CCM8")
		t.Logf("openssl: %s", out)
		if !strings.Contains(out, "Ciphersuite: PSK-AES128-CCM8") {
			t.Fatalf("s_client did not report PSK-AES128-CCM8:\n%s", out)
		}
	})
	if st := g.srv.ListenerStats(g.l.Name); len(st.Refused) != 0 {
		t.Fatalf("listener refused connections: %+v", st.Refused)
	}
}

// startCoAPGateway serves a PSK-only DTLS listener with the CoAP responder.
// coapHandshakeTimeout is the handshake timeout of the CoAP gateways: a
// failed PSK handshake (unknown identity, wrong key) lasts that long.
const coapHandshakeTimeout = 3 * time.Second

func startCoAPGateway(t *testing.T, name, hint string) (*gw, *coapHandler) {
	h := newCoAPHandler()
	g := startGateway(t, name, listener.DTLSConfig{
		PSK:              map[string][]byte{coapIdentity: []byte(coapKey), "someone-else": []byte("another key")},
		PSKIdentityHint:  hint,
		HandshakeTimeout: coapHandshakeTimeout,
	}, h, testLogger(t, slog.LevelInfo))
	return g, h
}

// checkCoAPConn checks the connection the CoAP handler saw next: DTLS, the
// PSK identity of the test, no certificate.
func checkCoAPConn(t *testing.T, h *coapHandler, name string) created {
	t.Helper()
	c := h.nextCreated(t)
	if c.info.SockType != gateway.DTLS || c.info.PSKIdentity != coapIdentity || c.info.PeerCert != nil || c.info.Listener != name {
		t.Fatalf("ConnInfo %+v, want SockType dtls, PSKIdentity %q, no certificate, listener %s", c.info, coapIdentity, name)
	}
	return c
}

// gnutlsCCM8Only is a GnuTLS system priority file (GNUTLS_SYSTEM_PRIORITY_FILE)
// whose overrides disable every PSK cipher suite libcoap offers but
// TLS_PSK_WITH_AES_128_CCM_8. libcoap sets its own priority string, which
// the [overrides] section still applies to; coap-client has no option to
// choose suites.
const gnutlsCCM8Only = `[overrides]
tls-disabled-kx = ECDHE-PSK
tls-disabled-kx = DHE-PSK
tls-disabled-kx = RSA-PSK
tls-disabled-cipher = AES-128-CBC
tls-disabled-cipher = AES-256-CBC
tls-disabled-cipher = AES-128-GCM
tls-disabled-cipher = AES-256-GCM
tls-disabled-cipher = AES-128-CCM
tls-disabled-cipher = AES-256-CCM
tls-disabled-cipher = AES-256-CCM-8
tls-disabled-cipher = CHACHA20-POLY1305
tls-disabled-cipher = CAMELLIA-128-CBC
tls-disabled-cipher = CAMELLIA-256-CBC
tls-disabled-cipher = CAMELLIA-128-GCM
tls-disabled-cipher = CAMELLIA-256-GCM
tls-disabled-cipher = 3DES-CBC
`

// negotiatedSuite finds the cipher suite in coap-client's -v 9 log: GnuTLS
// says "Selected cipher suite: X", OpenSSL "Using cipher: X".
var negotiatedSuite = regexp.MustCompile(`(?:Selected cipher suite|Using cipher): (\S+)`)

// TestInteropCoAPLibcoapPSK runs libcoap's coap-client, on GnuTLS and on
// OpenSSL, in PSK mode against the CoAP responder: a confirmable and a
// non-confirmable GET /hello must both return the payload. coap-client
// exits 0 even when nothing was received, so what it wrote (-o) is what is
// checked. The suites are left to the two libraries, except in the
// gnutls-ccm8 case, where GnuTLS may offer only TLS_PSK_WITH_AES_128_CCM_8
// (OpenSSL's libcoap back end sets its own cipher list, which OPENSSL_CONF
// cannot narrow; TestInteropOpenSSL covers that suite with s_client).
func TestInteropCoAPLibcoapPSK(t *testing.T) {
	for _, tc := range []struct {
		name, bin string
		env       func(t *testing.T, dir string) []string
		suite     string // the suite that must be negotiated; "" for any
		noHint    bool   // the listener sends no PSK identity hint
	}{
		{name: "gnutls", bin: "coap-client-gnutls"},
		// GnuTLS prefers ECDHE-PSK, which the listener offers only with a
		// hint: pion/dtls v2 writes its ServerKeyExchange without the
		// empty hint's length, which GnuTLS cannot decode.
		{name: "gnutls-no-hint", bin: "coap-client-gnutls", noHint: true},
		{name: "gnutls-ccm8", bin: "coap-client-gnutls", suite: "GNUTLS_PSK_AES_128_CCM_8", env: func(t *testing.T, dir string) []string {
			f := filepath.Join(dir, "gnutls-priority.conf")
			if err := os.WriteFile(f, []byte(gnutlsCCM8Only), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"GNUTLS_SYSTEM_PRIORITY_FILE=" + f}
		}},
		{name: "openssl", bin: "coap-client-openssl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits for a failed handshake to time out
			path := lookPeer(t, tc.bin, "libcoap3-bin")
			name := "interop-libcoap-" + tc.name
			hint := "protogate"
			if tc.noHint {
				hint = ""
			}
			g, h := startCoAPGateway(t, name, hint)
			dir := t.TempDir()
			for i, mode := range []struct {
				name string
				args []string
				want string // the request as the handler records it
			}{
				{"CON", nil, "CON 0x1 /hello"},
				{"NON", []string{"-N"}, "NON 0x1 /hello"},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), iwait)
				// -B bounds the wait for the response (seconds); -v 9 logs
				// the (D)TLS library's debug messages to stdout; -o writes
				// the response payload to a file. -k is the key as text.
				outFile := filepath.Join(dir, fmt.Sprintf("payload-%d", i))
				args := []string{"-v", "9", "-B", "5", "-o", outFile, "-m", "get", "-u", coapIdentity, "-k", coapKey}
				args = append(args, mode.args...)
				args = append(args, fmt.Sprintf("coaps://127.0.0.1:%d/hello", g.addr.Port))
				p := newPeerCmd(ctx, path, args...)
				if tc.env != nil {
					p.cmd.Env = append(os.Environ(), tc.env(t, dir)...)
				}
				log := p.run(t)
				cancel()
				got, err := os.ReadFile(outFile)
				if err != nil || string(got) != coapPayload {
					t.Fatalf("%s (%s): payload %q (%v), want %q; requests served %q\nlog:\n%s\nstderr:\n%s",
						p, mode.name, got, err, coapPayload, h.served(), log, p.stderr.String())
				}
				m := negotiatedSuite.FindStringSubmatch(log)
				if m == nil {
					t.Fatalf("%s: no cipher suite in its log:\n%s", p, log)
				}
				t.Logf("%s %s: cipher suite %s", tc.bin, mode.name, m[1])
				if tc.suite != "" && m[1] != tc.suite {
					t.Fatalf("%s negotiated %s, want %s", p, m[1], tc.suite)
				}
				c := checkCoAPConn(t, h, name)
				// coap-client ends its session with close_notify.
				h.waitClosed(t, c.handle)
				if served := h.served(); len(served) != i+1 || served[i] != mode.want {
					t.Fatalf("requests served %q, want the last to be %q", served, mode.want)
				}
			}
			if st := g.srv.ListenerStats(name); len(st.Refused) != 0 {
				t.Fatalf("listener refused connections: %+v", st.Refused)
			}

			// An identity the listener does not know: the handshake fails
			// as a wrong key's does, at the handshake timeout (coap-client
			// still exits 0), nothing reaches the handler, and the listener
			// counts a handshake refusal.
			ctx, cancel := context.WithTimeout(context.Background(), iwait)
			defer cancel()
			outFile := filepath.Join(dir, "payload-unknown")
			wait := fmt.Sprint(int(coapHandshakeTimeout / time.Second))
			p := newPeerCmd(ctx, path, "-v", "9", "-B", wait, "-o", outFile, "-m", "get", "-u", "nobody", "-k", coapKey,
				fmt.Sprintf("coaps://127.0.0.1:%d/hello", g.addr.Port))
			if tc.env != nil {
				p.cmd.Env = append(os.Environ(), tc.env(t, dir)...)
			}
			log := p.run(t)
			if got, err := os.ReadFile(outFile); err == nil && len(got) > 0 {
				t.Fatalf("%s: an unknown identity got a response %q", p, got)
			}
			// GnuTLS sends the ClientKeyExchange, ChangeCipherSpec and
			// Finished of its last flight in separate datagrams: those that
			// arrive after the gateway gave up open pseudo-connections of
			// their own, each refused at once (not a ClientHello). So:
			// every pseudo-connection but the two sessions above refused.
			var st gateway.ListenerStats
			waitFor(t, "the handshake refusals", func() error {
				st = g.srv.ListenerStats(name)
				us := g.udp.Stats()
				if n := st.Refused[gateway.CauseHandshake]; st.Active != 0 || n == 0 || n != us.Accepted-2 {
					return fmt.Errorf("listener stats %+v, udp stats %+v", st, us)
				}
				return nil
			})
			if len(st.Refused) != 1 {
				t.Fatalf("listener refusals %v, want handshake_failed only", st.Refused)
			}
			t.Logf("unknown identity: %d handshake refusals", st.Refused[gateway.CauseHandshake])
			select {
			case c := <-h.created:
				t.Fatalf("the handler saw the unknown identity's connection: %+v\n%s", c.info, log)
			default:
			}
		})
	}
}

// TestInteropCoAPGoCoAPPSK runs go-coap (on pion/dtls/v3, an independent
// version of the DTLS stack the gateway uses) against the CoAP responder
// with TLS_PSK_WITH_AES_128_CCM_8.
func TestInteropCoAPGoCoAPPSK(t *testing.T) {
	const name = "interop-go-coap"
	g, h := startCoAPGateway(t, name, "protogate")
	// go-coap's default periodic runner (expiring requests) outlives the
	// connection by up to 4s; this one ends with it, and the test waits
	// for it.
	var runners sync.WaitGroup
	defer runners.Wait()
	runner := func(f func(now time.Time) bool) {
		runners.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for now := range tick.C {
				if !f(now) {
					return
				}
			}
		})
	}
	co, err := coapdtls.Dial(g.addr.String(), coapdtls.NewDTLSClientOptions(
		piondtls.WithPSK(func([]byte) ([]byte, error) { return []byte(coapKey), nil }),
		piondtls.WithPSKIdentityHint([]byte(coapIdentity)),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
	), options.WithPeriodicRunner(runner))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			co.Close()
		}
	}()
	get := func(path string) (codes.Code, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), iwait)
		defer cancel()
		resp, err := co.Get(ctx, path)
		if err != nil {
			t.Fatalf("GET %s: %v (requests served: %q)", path, err, h.served())
		}
		var body []byte
		if resp.Body() != nil {
			if body, err = io.ReadAll(resp.Body()); err != nil {
				t.Fatal(err)
			}
		}
		return resp.Code(), string(body)
	}
	if code, body := get("/hello"); code != codes.Content || body != coapPayload {
		t.Fatalf("GET /hello: %v %q, want %v %q", code, body, codes.Content, coapPayload)
	}
	c := checkCoAPConn(t, h, name)
	// The same session serves more requests.
	if code, _ := get("/nothing-here"); code != codes.NotFound {
		t.Fatalf("GET /nothing-here: %v, want %v", code, codes.NotFound)
	}
	if code, body := get("/hello"); code != codes.Content || body != coapPayload {
		t.Fatalf("second GET /hello: %v %q", code, body)
	}
	if served := h.served(); len(served) != 3 || served[0] != "CON 0x1 /hello" {
		t.Fatalf("requests served %q", served)
	}
	closed = true
	if err := co.Close(); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(t, c.handle)
	select {
	case extra := <-h.created:
		t.Fatalf("a second connection %+v", extra.info)
	default:
	}
}

// TestInteropDTLSFlood floods a DTLS listener, whose admission is unlimited
// (no max_connections, no max_conn_rate), while a client is established:
// thousands of junk datagrams and truncated or fragmentary ClientHellos from
// other sockets, junk on the established client's own address (as a
// spoofing attacker would send), and a few dozen handshakes that fail
// (wrong key, unknown identity). During and after the flood the
// established client must keep echoing and new clients must get through;
// the failed handshakes must never reach the handler, and the listener must
// count them as handshake_failed refusals.
func TestInteropDTLSFlood(t *testing.T) {
	const (
		name        = "interop-flood"
		hsTimeout   = 2 * time.Second
		identity    = "sensor-1"
		junkCount   = 4096 // junk datagrams from other sockets
		junkPerSock = 4    // so about a thousand sockets, each a failed handshake
		hellos      = 128  // sockets that send a truncated ClientHello, then junk
		wrongKeys   = 16   // handshakes with the right identity and a wrong key
		unknownIDs  = 16   // handshakes with an unknown identity
		ownJunk     = 256  // junk datagrams on the established client's address
		// echoWait bounds each echo of the established client: generous
		// for a loaded 2-core machine under -race; it retransmits every
		// echoRetransmit meanwhile.
		echoWait = 5 * time.Second
	)
	key := []byte("the right key for sensor-1")
	rec := newRecorder()
	g := startGateway(t, name, listener.DTLSConfig{
		PSK:              map[string][]byte{identity: key, "sensor-2": []byte("another key")},
		HandshakeTimeout: hsTimeout,
	}, echoHandler{rec}, testLogger(t, slog.LevelWarn))
	if g.l.MaxConnections != 0 || g.l.MaxConnRate != 0 {
		t.Fatal("the flood listener must be unlimited")
	}

	good := map[string]bool{} // local addresses of the good clients
	newGood := func(what string) *pionClient {
		t.Helper()
		start := time.Now()
		c := mustDialPion(t, g.addr, pionPSK(identity, key))
		good[c.LocalAddr().String()] = true
		cr := rec.nextCreated(t)
		if cr.info.Peer.String() != c.LocalAddr().String() || cr.info.PSKIdentity != identity || cr.info.SockType != gateway.DTLS {
			t.Fatalf("%s: the handler saw %+v, want %s with PSK identity %s", what, cr.info, c.LocalAddr(), identity)
		}
		if d, err := echoWithin(c, what, echoWait); err != nil {
			t.Fatalf("%s: %v", what, err)
		} else {
			t.Logf("%s: handshake and echo in %v (echo %v)", what, time.Since(start).Round(time.Millisecond), d.Round(time.Millisecond))
		}
		return c
	}
	est := newGood("established client")

	// The established client echoes all through the flood.
	stopEcho := make(chan struct{})
	echoDone := make(chan error, 1)
	var echoes int
	var slowest time.Duration
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stopEcho:
				echoDone <- nil
				return
			default:
			}
			d, err := echoWithin(est, fmt.Sprintf("echo %d during the flood", i), echoWait)
			if err != nil {
				echoDone <- fmt.Errorf("established client, echo %d: %w (connections closed, by peer: %v)", i, err, rec.closeReasons())
				return
			}
			echoes, slowest = i+1, max(slowest, d)
		}
	}()

	// How many connections the listener held at most during the flood.
	var peakActive atomic.Int64
	stopSampling := make(chan struct{})
	samplingDone := make(chan struct{})
	go func() {
		defer close(samplingDone)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if a := g.srv.ListenerStats(name).Active; a > peakActive.Load() {
					peakActive.Store(a)
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		<-samplingDone
	}()

	hello := captureClientHello(t)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))
	var junkSet, helloSet, ownSet [][]byte
	for range junkCount {
		junkSet = append(junkSet, junk(r, 300))
	}
	// A truncated ClientHello passes the listener's first-datagram check
	// when it has a whole record and handshake header (25 bytes); pion
	// then waits for the rest until the handshake timeout. Shorter ones
	// fail at once. A first fragment (a whole record carrying part of the
	// message) waits for the other fragments.
	cuts := []int{1, 13, 24, 25, 40, len(hello) / 2, len(hello) - 1}
	for i := range hellos {
		if i%(len(cuts)+1) == len(cuts) {
			helloSet = append(helloSet, firstFragment(hello, 20))
		} else {
			helloSet = append(helloSet, hello[:cuts[i%(len(cuts)+1)]])
		}
		for range 7 {
			helloSet = append(helloSet, junk(r, 200))
		}
	}
	// Junk on the established client's address that DTLS must discard:
	// random bytes, datagrams longer than pion's 8 KiB buffer, records of
	// the session's epoch that do not decrypt, and plaintext epoch-0
	// records (see TestInteropDTLSSpoofedRecords).
	epoch0 := []byte{21, 22, 23, 99} // alert, handshake, application data, unknown
	for i := range ownJunk {
		switch i % 4 {
		case 0:
			ownSet = append(ownSet, junk(r, 500))
		case 1:
			ownSet = append(ownSet, junk(r, 30000))
		case 2:
			ownSet = append(ownSet, record(23, 1, uint64(1000+i), junk(r, 100)))
		case 3:
			ownSet = append(ownSet, record(epoch0[(i/4)%len(epoch0)], 0, uint64(1000+i), junk(r, 40)))
		}
	}

	type result struct {
		what         string
		sent, failed int
		err          error
	}
	results := make(chan result, 8)
	half := make(chan struct{})
	go func() {
		sent, failed, err := sendAll(g.addr, junkSet[:junkCount/2], junkPerSock)
		close(half)
		s2, f2, err2 := sendAll(g.addr, junkSet[junkCount/2:], junkPerSock)
		results <- result{"junk", sent + s2, failed + f2, errors.Join(err, err2)}
	}()
	go func() {
		sent, failed, err := sendAll(g.addr, helloSet, 8)
		results <- result{"truncated hellos", sent, failed, err}
	}()
	go func() {
		var sent, failed int
		for _, d := range ownSet {
			if _, err := est.udp.Write(d); err != nil {
				failed++
			} else {
				sent++
			}
		}
		results <- result{"junk on the established address", sent, failed, nil}
	}()
	bad := make(chan error, wrongKeys+unknownIDs)
	for i := range wrongKeys + unknownIDs {
		cfg := pionPSK(identity, []byte("not the key"))
		if i >= wrongKeys {
			cfg = pionPSK(fmt.Sprintf("stranger-%d", i), key)
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), hsTimeout+time.Second)
			defer cancel()
			c, err := dialPion(ctx, g.addr, cfg)
			if err == nil {
				c.Close()
				err = fmt.Errorf("a bad handshake (%s) got through", cfg.PSKIdentityHint)
			} else {
				err = nil
			}
			bad <- err
		}()
	}

	// A new client in the middle of the flood.
	select {
	case <-half:
	case <-time.After(iwait):
		t.Fatal("the junk senders are stuck")
	}
	newGood("client during the flood")

	deadline := time.After(3 * iwait)
	for range 3 {
		select {
		case res := <-results:
			if res.err != nil {
				t.Fatalf("%s: %v", res.what, res.err)
			}
			t.Logf("flood: %s: %d datagrams sent, %d sends failed", res.what, res.sent, res.failed)
		case <-deadline:
			t.Fatal("the flood senders did not finish")
		}
	}
	for range wrongKeys + unknownIDs {
		select {
		case err := <-bad:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("the failing handshakes did not end")
		}
	}
	close(stopEcho)
	select {
	case err := <-echoDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(echoWait + iwait):
		t.Fatal("the echo loop did not stop")
	}
	close(stopSampling)
	<-samplingDone
	t.Logf("established client: %d echoes during the flood, slowest %v", echoes, slowest.Round(time.Millisecond))
	if echoes == 0 {
		t.Fatal("the established client echoed nothing during the flood")
	}

	// After the flood: the established client still echoes and a new
	// client gets through.
	if _, err := echoWithin(est, "after the flood", echoWait); err != nil {
		t.Fatalf("established client after the flood: %v", err)
	}
	newGood("client after the flood")

	// Every pseudo-connection the listener handed out but those of the
	// good clients ends in a failed handshake: once none is pending,
	// handshake_failed refusals = accepted - good.
	var st gateway.ListenerStats
	var us listener.UDPStats
	waitFor(t, "the failed handshakes to end", func() error {
		st, us = g.srv.ListenerStats(name), g.udp.Stats()
		if st.Active != int64(len(good)) || st.Refused[gateway.CauseHandshake] != us.Accepted-uint64(len(good)) {
			return fmt.Errorf("listener stats %+v, udp stats %+v", st, us)
		}
		return nil
	})
	t.Logf("listener stats: %+v; udp stats: %+v", st, us)
	if len(st.Refused) != 1 {
		t.Fatalf("refusals %v, want handshake_failed only", st.Refused)
	}
	// Each failing handshake reached the gateway (pion retransmits, and
	// the wrong-key clients go on retransmitting after the gateway gave
	// up on them, each time a new refusal); of the junk sockets, those
	// whose datagrams were not all dropped by the kernel (the flood
	// overflows the gateway's socket buffer, more so on a loaded machine).
	if n, want := st.Refused[gateway.CauseHandshake], uint64(wrongKeys+unknownIDs+64); n < want {
		t.Fatalf("%d handshake_failed refusals, want at least %d", n, want)
	}
	if peak := peakActive.Load(); peak <= int64(len(good)) {
		t.Fatalf("at most %d connections were pending at once: the flood did not hold handshakes", peak)
	} else {
		t.Logf("up to %d connections admitted at once (pending handshakes and good clients)", peak)
	}
	// The handler saw the good clients only, and none of them closed.
	if peers := rec.createdPeers(); len(peers) != len(good) {
		t.Fatalf("the handler saw %d connections created (%v), want the %d good clients", len(peers), peers, len(good))
	} else {
		for _, p := range peers {
			if !good[p] {
				t.Fatalf("the handler saw %s, not a good client", p)
			}
		}
	}
	select {
	case h := <-rec.closed:
		t.Fatalf("connection %s closed during the flood", h)
	default:
	}
	if _, err := echoWithin(est, "at the end", echoWait); err != nil {
		t.Fatalf("established client at the end: %v", err)
	}
}

// TestInteropDTLSSpoofedRecords sends forged datagrams from an established
// client's own address, as an attacker who can spoof it (or is on the path)
// would, and checks that the session survives them: DTLS must silently
// discard records it cannot authenticate (RFC 6347 4.1.2.7). pion/dtls/v2
// acts on plaintext epoch-0 records after the handshake (an alert ends the
// session, application data or an unknown content type fails its Read, a
// handshake record stalls it for about 1s); the gateway drops them before
// pion sees them once the handshake has completed (dtlsTransport).
func TestInteropDTLSSpoofedRecords(t *testing.T) {
	const (
		identity = "sensor-1"
		// spoofWait bounds the echo after the forged datagrams.
		spoofWait = 3 * time.Second
	)
	key := []byte("the right key for sensor-1")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for _, tc := range []struct {
		name      string
		datagrams [][]byte
	}{
		{name: "random bytes", datagrams: [][]byte{junk(r, 200), junk(r, 200), junk(r, 200)}},
		{name: "oversized datagram", datagrams: [][]byte{junk(r, 20000), junk(r, 60000)}},
		{name: "epoch-1 record that does not decrypt", datagrams: [][]byte{record(23, 1, 5000, junk(r, 60)), record(21, 1, 5001, junk(r, 30))}},
		{name: "epoch-0 change_cipher_spec", datagrams: [][]byte{record(20, 0, 5000, []byte{1})}},
		{name: "epoch-0 close_notify alert", datagrams: [][]byte{record(21, 0, 5000, []byte{1, 0})}},
		{name: "epoch-0 fatal alert", datagrams: [][]byte{record(21, 0, 5000, []byte{2, 40})}},
		{name: "epoch-0 application data", datagrams: [][]byte{record(23, 0, 5000, []byte("forged"))}},
		{name: "epoch-0 unknown content type", datagrams: [][]byte{record(99, 0, 5000, []byte{0, 0})}},
		{name: "epoch-0 handshake records", datagrams: [][]byte{
			record(22, 0, 5000, junk(r, 40)), record(22, 0, 5001, junk(r, 40)), record(22, 0, 5002, junk(r, 40)),
			record(22, 0, 5003, junk(r, 40)), record(22, 0, 5004, junk(r, 40)), record(22, 0, 5005, junk(r, 40)),
		}},
		{name: "epoch-0 clienthello", datagrams: [][]byte{captureClientHello(t)}},
		{name: "epoch-0 alert after an epoch-1 record in one datagram", datagrams: [][]byte{
			append(record(23, 1, 5000, junk(r, 60)), record(21, 0, 5001, []byte{2, 40})...),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			g := startGateway(t, "interop-spoof", listener.DTLSConfig{PSK: map[string][]byte{identity: key}}, echoHandler{rec}, testLogger(t, slog.LevelWarn))
			c := mustDialPion(t, g.addr, pionPSK(identity, key))
			rec.nextCreated(t)
			if _, err := echoWithin(c, "before", iwait); err != nil {
				t.Fatal(err)
			}
			for _, d := range tc.datagrams {
				if _, err := c.udp.Write(d); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				if _, err := echoWithin(c, fmt.Sprintf("after %d", i), spoofWait); err != nil {
					t.Fatalf("the session did not survive: %v (connections closed: %v)", err, rec.closeReasons())
				}
			}
			select {
			case h := <-rec.closed:
				t.Fatalf("the gateway closed the session (%s): %v", h, rec.closeReasons())
			default:
			}
		})
	}
}
