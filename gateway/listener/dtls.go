package listener

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/logging"

	"github.com/protogate/protogate/gateway"
)

// DefaultHandshakeTimeout bounds a DTLS handshake when
// DTLSConfig.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// Cipher suites offered, in no particular order: pion/dtls picks the first
// suite of the client's list that the server offers.
var (
	// certSuites are offered in certificate mode; pion keeps those that
	// match the key of the first certificate (ECDSA or RSA).
	// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 is CoAP's mandatory suite for
	// certificates (RFC 7252 9.1.3.3).
	certSuites = []dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		dtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	}
	// pskSuites are offered in PSK mode. TLS_PSK_WITH_AES_128_CCM_8 is
	// CoAP's mandatory suite for PSK (RFC 7252 9.1.3.1); LwM2M 1.0 adds
	// TLS_PSK_WITH_AES_128_CBC_SHA256.
	pskSuites = []dtls.CipherSuiteID{
		dtls.TLS_PSK_WITH_AES_128_CCM_8,
		dtls.TLS_PSK_WITH_AES_128_CCM,
		dtls.TLS_PSK_WITH_AES_256_CCM_8,
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
		dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
	}
)

// DTLSConfig configures NewDTLS. At least one of Certificates and PSK must
// be set; with both, one listener serves certificate and PSK clients alike
// (each client's cipher suites decide which it gets).
type DTLSConfig struct {
	// Certificates are the server's certificate chains (certificate mode).
	Certificates []tls.Certificate
	// ClientCAs verify client certificates. With it, the server asks
	// certificate-mode clients for a certificate; one that is sent must
	// verify, and its subject reaches the handler (ConnInfo.PeerCert).
	// Without it, client certificates are not asked for.
	ClientCAs *x509.CertPool
	// VerifyClient refuses certificate-mode clients without a verified
	// certificate. It needs ClientCAs. PSK clients are not affected: their
	// key authenticates them.
	VerifyClient bool
	// PSK maps identities to keys (PSK mode); see LoadPSKFile. Identities
	// and keys must not be empty. A client with an identity the table
	// lacks fails as one with a wrong key does, silently at
	// HandshakeTimeout, so that probing does not tell which identities
	// exist.
	PSK map[string][]byte
	// PSKIdentityHint is sent to PSK clients, if set.
	PSKIdentityHint string
	// HandshakeTimeout bounds one handshake. Default: 10s.
	HandshakeTimeout time.Duration
	// Logger receives pion/dtls's messages about single handshakes, at
	// debug level. Default: slog.Default().
	Logger *slog.Logger
}

// DTLS runs DTLS 1.2 server handshakes on pion/dtls/v2 for the gateway core.
// It implements gateway.Handshaker. It is immutable once built and safe for
// concurrent use: each Handshake runs in its caller's goroutine, on its own
// copy of the configuration, so handshakes of different peers never wait
// for one another.
type DTLS struct {
	base        dtls.Config // template; copied for every handshake
	psk         map[string][]byte
	timeout     time.Duration
	requireCert bool // refuse certificate-suite clients without a certificate
}

var _ gateway.Handshaker = (*DTLS)(nil)

// NewDTLS validates cfg and returns a handshaker. It copies the PSK table,
// so later changes to cfg.PSK have no effect; it keeps cfg.Certificates and
// cfg.ClientCAs, which must not be modified afterwards.
//
// The HelloVerifyRequest cookie exchange is always on: a spoofed source
// address gets one small HelloVerifyRequest and can go no further, so the
// gateway neither amplifies floods nor sends its certificate chain to
// forged addresses. Each spoofed address still costs a pseudo-connection
// and a pending handshake until the handshake timeout (pion keeps cookie
// state per connection, not statelessly), which the UDP listener's
// admission (max_connections, max_conn_rate) bounds.
func NewDTLS(cfg DTLSConfig) (*DTLS, error) {
	if len(cfg.Certificates) == 0 && len(cfg.PSK) == 0 {
		return nil, errors.New("listener: dtls needs certificates, a psk table or both")
	}
	if cfg.ClientCAs != nil && len(cfg.Certificates) == 0 {
		return nil, errors.New("listener: dtls client_cas needs a server certificate (client certificates are asked for in certificate mode only)")
	}
	if cfg.VerifyClient && cfg.ClientCAs == nil {
		return nil, errors.New("listener: dtls verify_client needs client_cas")
	}
	if cfg.PSKIdentityHint != "" && len(cfg.PSK) == 0 {
		return nil, errors.New("listener: dtls psk_identity_hint needs a psk table")
	}
	for i, c := range cfg.Certificates {
		if len(c.Certificate) == 0 || c.PrivateKey == nil {
			return nil, fmt.Errorf("listener: dtls certificate %d needs a chain and its private key", i)
		}
	}
	d := &DTLS{timeout: cfg.HandshakeTimeout}
	if d.timeout <= 0 {
		d.timeout = DefaultHandshakeTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	b := dtls.Config{
		// Explicitly what the zero values mean, to make the choice visible:
		// cookies on, extended master secret when the client offers it.
		InsecureSkipVerifyHello: false,
		ExtendedMasterSecret:    dtls.RequestExtendedMasterSecret,
		LoggerFactory:           pionLoggers{log: logger},
	}
	if len(cfg.Certificates) > 0 {
		b.Certificates = cfg.Certificates
		b.CipherSuites = append(b.CipherSuites, certSuites...)
		if cfg.ClientCAs != nil {
			b.ClientCAs = cfg.ClientCAs
			b.ClientAuth = dtls.VerifyClientCertIfGiven
		}
		if cfg.VerifyClient {
			if len(cfg.PSK) == 0 {
				b.ClientAuth = dtls.RequireAndVerifyClientCert
			} else {
				// pion applies ClientAuth to PSK suites too, so
				// RequireAndVerifyClientCert would refuse every PSK
				// client; the certificate is required by Handshake's
				// VerifyConnection instead, for certificate suites only.
				d.requireCert = true
			}
		}
	}
	if len(cfg.PSK) > 0 {
		d.psk = make(map[string][]byte, len(cfg.PSK))
		for id, key := range cfg.PSK {
			if id == "" {
				return nil, errors.New("listener: dtls psk table has an empty identity")
			}
			if len(key) == 0 {
				return nil, fmt.Errorf("listener: dtls psk identity %q has an empty key", id)
			}
			d.psk[id] = append([]byte(nil), key...)
		}
		if cfg.PSKIdentityHint != "" {
			b.CipherSuites = append(b.CipherSuites, pskSuites...)
			b.PSKIdentityHint = []byte(cfg.PSKIdentityHint)
		} else {
			// Without a hint, pion/dtls v2 writes an ECDHE-PSK
			// ServerKeyExchange without the (empty) hint's length
			// field, which GnuTLS cannot decode: coap-client-gnutls,
			// which prefers that suite, failed every handshake. The
			// plain PSK suites carry no hint there.
			for _, s := range pskSuites {
				if s != dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 {
					b.CipherSuites = append(b.CipherSuites, s)
				}
			}
		}
		// A placeholder: Handshake installs a per-handshake callback. pion
		// needs PSK non-nil here to validate a PSK-only configuration.
		b.PSK = func([]byte) ([]byte, error) { return nil, errors.New("no psk") }
	}
	d.base = b
	// Let pion check the configuration now rather than at the first
	// client: a handshake on nopConn fails at its first read, after pion
	// validated the configuration; an invalid one fails before.
	_, err := dtls.Server(nopConn{}, d.config(&handshakeState{}))
	var he *dtls.HandshakeError
	if err == nil || !errors.As(err, &he) || !errors.Is(err, errNopConn) {
		return nil, fmt.Errorf("listener: dtls config: %w", err)
	}
	return d, nil
}

// handshakeState is what one handshake's callbacks learned. The callbacks
// run on pion's goroutines, so it is guarded.
type handshakeState struct {
	mu       sync.Mutex
	psk      bool // a PSK suite was negotiated with a known identity
	identity string
	// unknown is set when the client sent an identity the table lacks;
	// decoy is the random key it was given (see config).
	unknown         bool
	unknownIdentity string
	decoy           []byte
}

// decoyKeyLen is the length of the random key an unknown PSK identity gets.
const decoyKeyLen = 32

// config returns a copy of the template whose callbacks record into hs.
func (d *DTLS) config(hs *handshakeState) *dtls.Config {
	cfg := d.base
	if d.psk != nil {
		cfg.PSK = func(identity []byte) ([]byte, error) {
			key, ok := d.psk[string(identity)]
			hs.mu.Lock()
			defer hs.mu.Unlock()
			if !ok {
				// An unknown identity gets a random key instead of an
				// error, so that its handshake fails as a wrong key's
				// does: the server cannot decrypt the client's Finished
				// and gives up at the handshake timeout, without an
				// alert. An error would end it at once with an alert,
				// telling a prober which identities exist.
				if hs.decoy == nil {
					hs.decoy = make([]byte, decoyKeyLen)
					rand.Read(hs.decoy) // never fails (crypto/rand)
				}
				hs.unknown, hs.unknownIdentity = true, string(identity)
				return hs.decoy, nil
			}
			hs.psk, hs.identity = true, string(identity)
			return key, nil
		}
	}
	if d.requireCert {
		cfg.VerifyConnection = func(s *dtls.State) error {
			hs.mu.Lock()
			psk := hs.psk
			hs.mu.Unlock()
			if !psk && len(s.PeerCertificates) == 0 {
				return errors.New("listener: client certificate required")
			}
			return nil
		}
	}
	return &cfg
}

// Handshake runs a DTLS server handshake on nc, a pseudo-connection of a
// UDPListener, in the calling goroutine. It gives up when ctx ends or the
// handshake timeout passes, whichever is first. On success the returned
// connection carries the application data (one Read returns one record's
// payload, so read with a buffer as large as the largest datagram), and the
// identity holds the verified client certificate's subject or the PSK
// identity. On failure nc is closed and the error says why; nothing of the
// peer reaches a handler. Once the handshake has completed, plaintext
// (epoch-0) records that reach nc are dropped before pion sees them, so
// that forged ones cannot end or stall the session (see dtlsTransport).
func (d *DTLS) Handshake(ctx context.Context, nc net.Conn) (net.Conn, gateway.PeerIdentity, error) {
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	fail := func(err error) (net.Conn, gateway.PeerIdentity, error) {
		nc.Close()
		if ctxErr := hctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		return nil, gateway.PeerIdentity{}, fmt.Errorf("listener: dtls handshake with %s: %w", nc.RemoteAddr(), err)
	}
	first, err := readClientHello(hctx, nc)
	if err != nil {
		return fail(err)
	}
	hs := &handshakeState{}
	tr := &dtlsTransport{Conn: nc, first: first}
	dc, err := dtls.ServerWithContext(hctx, tr, d.config(hs))
	hs.mu.Lock()
	unknown, unknownID, psk, identity := hs.unknown, hs.unknownIdentity, hs.psk, hs.identity
	hs.mu.Unlock()
	if unknown && !psk {
		if err == nil {
			// Cannot happen: the client would have had to guess the
			// random key.
			dc.Close()
			err = errors.New("handshake completed with a decoy key")
		}
		return fail(fmt.Errorf("unknown psk identity %q: %w", unknownID, err))
	}
	if err != nil {
		return fail(err)
	}
	tr.established.Store(true)
	var id gateway.PeerIdentity
	if psk {
		id.PSKIdentity = identity
	}
	if raw := dc.ConnectionState().PeerCertificates; len(raw) > 0 {
		// pion verified the chain against ClientCAs (VerifyClientCertIfGiven
		// or RequireAndVerifyClientCert); without ClientCAs no certificate
		// is asked for.
		cert, err := x509.ParseCertificate(raw[0])
		if err != nil {
			dc.Close()
			return nil, gateway.PeerIdentity{}, fmt.Errorf("listener: dtls handshake with %s: client certificate: %w", nc.RemoteAddr(), err)
		}
		id.Cert = &gateway.CertInfo{CN: cert.Subject.CommonName, DN: cert.Subject.String()}
	}
	return dtlsConn{dc}, id, nil
}

// dtlsConn is the connection Handshake returns: pion's, whose Close also
// clears its deadlines. pion runs a goroutine for each pending deadline
// until it passes, even after Close; clearing them ends those goroutines
// with the connection instead of up to a write timeout later.
type dtlsConn struct{ *dtls.Conn }

var _ gateway.DatagramReader = dtlsConn{}

// dtlsReadBufs holds the buffers dtlsConn.ReadDatagram reads into.
var dtlsReadBufs = sync.Pool{New: func() any {
	b := make([]byte, maxRecord)
	return &b
}}

// ReadDatagram implements gateway.DatagramReader: it reads the next
// record's payload into a pooled buffer of maxRecord bytes, calls f with it
// and puts the buffer back. No payload is longer: pion reads each datagram
// into a buffer of that size (maxRecord) and decrypts in place. pion's Read
// needs the buffer while it waits, so a waiting reader holds one; that is
// 8 KiB, where the gateway's generic read buffer is max_packet_size + 1
// bytes (64 KiB by default).
func (c dtlsConn) ReadDatagram(f func(b []byte)) error {
	p := dtlsReadBufs.Get().(*[]byte)
	defer dtlsReadBufs.Put(p)
	n, err := c.Conn.Read(*p)
	if err != nil {
		return err
	}
	f((*p)[:n])
	return nil
}

// Close closes the DTLS connection (sending close_notify) and the
// pseudo-connection under it.
func (c dtlsConn) Close() error {
	err := c.Conn.Close()
	c.Conn.SetDeadline(time.Time{})
	return err
}

// ErrNotClientHello is wrapped by the error of a handshake whose first
// datagram is not a DTLS ClientHello.
var ErrNotClientHello = errors.New("first datagram is not a dtls clienthello")

// maxRecord is the largest datagram pion reads (its inbound buffer).
const maxRecord = 8192

// readClientHello reads nc's first datagram and returns it if it starts
// with a DTLS ClientHello record (content type handshake, epoch 0,
// handshake type client_hello). Anything else fails the handshake at once
// instead of holding it until the timeout: junk, and the retransmissions or
// records of a client whose session the gateway no longer has (after a
// handshake timed out, or a restart), which would otherwise each open a
// pseudo-connection and wait for a ClientHello that is not coming. Such a
// client starts over with a new ClientHello, which is served.
func readClientHello(ctx context.Context, nc net.Conn) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Unix(0, 1)) })
	buf := make([]byte, maxRecord)
	n, err := nc.Read(buf)
	if !stop() {
		return nil, ctx.Err()
	}
	if err != nil {
		if errors.Is(err, io.ErrShortBuffer) {
			return nil, fmt.Errorf("%w: longer than %d bytes", ErrNotClientHello, maxRecord)
		}
		return nil, err
	}
	const (
		recordHeader    = 13 // type, version (2), epoch (2), sequence (6), length (2)
		handshakeHeader = 12 // type, length (3), message_seq (2), fragment offset (3) and length (3)
	)
	b := buf[:n]
	if n < recordHeader+handshakeHeader || b[0] != 22 || b[1] != 0xfe || b[3] != 0 || b[4] != 0 || b[recordHeader] != 1 {
		return nil, ErrNotClientHello
	}
	return b, nil
}

// dtlsTransport is the connection pion runs on: nc, with the ClientHello
// readClientHello took from it put back in front. It also hands pion whole
// datagrams only: one longer than pion's read buffer, which pion would
// report as a fatal error during the handshake or as a read error after it,
// is skipped instead, so junk with a spoofed source cannot end a session.
//
// Once the handshake has completed (established), it drops every epoch-0
// record: those are plaintext, and anyone who can spoof the peer's address
// can forge them, while pion/dtls/v2 acts on them after the handshake (an
// alert ends the session, application data or an unknown content type makes
// it fail the session's Read, a handshake record makes it resend its last
// flight and stall its reader for the retransmission interval). By then the
// peer writes in epoch 1: the server completes only once it has the peer's
// Finished, a record it could decrypt with the epoch-1 keys, which the peer
// sends after its ChangeCipherSpec. The one legitimate epoch-0 traffic left
// is a retransmission of the peer's final flight when the server's final
// flight was lost (RFC 6347 4.2.4): its ClientKeyExchange (with Certificate
// and CertificateVerify) and ChangeCipherSpec are epoch 0, but its Finished
// is epoch 1, and that authenticated Finished alone makes pion resend its
// final flight (it keeps the rest of the handshake in its cache), so the
// peer still completes. A new ClientHello from the same address (a client
// that restarted, RFC 6347 4.2.8) is dropped as well; pion/dtls/v2 cannot
// start a second handshake on a connection anyway, and the client gets
// through once the old session has ended (its keepalive expires, say).
type dtlsTransport struct {
	net.Conn
	mu          sync.Mutex
	first       []byte      // not yet read; guarded by mu
	established atomic.Bool // the handshake has completed: drop epoch-0 records
}

func (t *dtlsTransport) Read(b []byte) (int, error) {
	t.mu.Lock()
	if first := t.first; first != nil {
		t.first = nil
		t.mu.Unlock()
		if len(b) < len(first) {
			return copy(b, first), io.ErrShortBuffer
		}
		return copy(b, first), nil
	}
	t.mu.Unlock()
	for {
		n, err := t.Conn.Read(b)
		if err != nil {
			if errors.Is(err, io.ErrShortBuffer) {
				continue
			}
			return n, err
		}
		if !t.established.Load() {
			return n, nil
		}
		// Only the records of epoch 1 or later, or nothing: then the next
		// datagram.
		if n = dropEpoch0(b[:n]); n > 0 {
			return n, nil
		}
	}
}

// errNopConn is what nopConn fails with.
var errNopConn = errors.New("listener: config probe")

// nopConn is the connection NewDTLS gives pion to validate a
// configuration: the handshake fails at its first read or write.
type nopConn struct{}

func (nopConn) Read([]byte) (int, error)         { return 0, errNopConn }
func (nopConn) Write([]byte) (int, error)        { return 0, errNopConn }
func (nopConn) Close() error                     { return nil }
func (nopConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (nopConn) RemoteAddr() net.Addr             { return &net.UDPAddr{} }
func (nopConn) SetDeadline(time.Time) error      { return nil }
func (nopConn) SetReadDeadline(time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(time.Time) error { return nil }

// pionLoggers routes pion/dtls's logs to slog at debug level: they concern
// single handshakes (a client's mistakes, junk datagrams), which must not
// flood the gateway's log. pion's own default writes errors to stdout.
type pionLoggers struct{ log *slog.Logger }

func (p pionLoggers) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: p.log.With("component", "pion/"+scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) debug(msg string) {
	l.log.Debug("listener: " + msg)
}

func (l pionLogger) debugf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("listener: " + fmt.Sprintf(format, args...))
	}
}

func (pionLogger) Trace(string)                        {}
func (pionLogger) Tracef(string, ...any)               {}
func (pionLogger) Debug(string)                        {}
func (pionLogger) Debugf(string, ...any)               {}
func (pionLogger) Info(string)                         {}
func (pionLogger) Infof(string, ...any)                {}
func (l pionLogger) Warn(msg string)                   { l.debug(msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.debugf(format, args...) }
func (l pionLogger) Error(msg string)                  { l.debug(msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.debugf(format, args...) }
