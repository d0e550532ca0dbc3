// Package conformance is the behaviour suite every handler back end must
// pass. Run builds a complete gateway from real parts (an embedded NATS
// server, TCP, TLS, UDP and DTLS listeners on 127.0.0.1) around the back end
// under test, and drives it with real socket clients speaking the JSON test
// protocol of EMQX's ExProto suite (package internal/jsonproto). The handler
// under test must implement that protocol: the reference remote handler
// (internal/jsonhandler, behind gateway/remote) and the builtin:exproto-json
// Wasm guest do.
//
// The suite knows no back end: each back end's tests pass in a [Backend]
// whose Handler builds the handler under test around the assembled gateway
// (the remote back end serves its ConnectionAdapter on [Env.Server]).
//
// Between the gateway and the back end the suite inserts a recorder that
// checks the event-model guarantees on every connection: OnSocketCreated
// first, never two callbacks at once, OnSocketClosed last and exactly once.
package conformance

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/dtls/v2"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/framing"
	"github.com/protogate/protogate/gateway/listener"
)

// Backend is a handler back end under test.
type Backend struct {
	// Name appears in test names.
	Name string
	// Handler returns the handler under test for env, whose Server is built
	// but not yet serving. A back end that needs more of the gateway than
	// the Handler interface (the remote back end's ConnectionAdapter) starts
	// it here on env.Server. Cleanup registered on t runs after the gateway
	// has shut down.
	Handler func(t testing.TB, env *Env) gateway.Handler
	// AsyncCallbacks says that a callback returns once the event is on its
	// way to the handler, not once the handler has run it (ExProto's
	// legacy streaming service). Such a handler answers bytes after the
	// gateway has moved on, so an answer to bytes that arrived with the
	// device's close can come too late to be written.
	AsyncCallbacks bool
}

// Env is one gateway assembled for a test.
type Env struct {
	Server   *gateway.Server
	Broker   *broker.Broker
	Logger   *slog.Logger // the gateway's logger: to t.Log, warnings and up
	NATS     *nats.Conn   // an ordinary NATS client of the embedded server
	Addr     string       // the device listener
	Type     gateway.SocketType
	TLS      *tls.Config  // client TLS config for SSL listeners
	DTLS     *dtls.Config // client DTLS config for DTLS listeners
	UDP      *listener.UDPListener
	Rec      *Recorder
	Listener *gateway.Listener
	backend  Backend
}

// envOptions tune one Env.
type envOptions struct {
	mountpoint   string
	idle         time.Duration
	auth         gateway.Authenticator
	authz        gateway.Authorizer
	disableAuthn bool
	maxPayload   int
	clientCert   bool
	psk          bool // DTLS clients use PSK instead of certificates
	framing      bool // the stream listener frames by line
	proxy        bool // the stream listener reads a PROXY header first
	maxPending   int  // gateway.Options.MaxPendingMessages
	maxSubs      int  // gateway.Listener.MaxSubscriptions
}

// The PSK the DTLS listener knows and PSK clients use.
const (
	PSKIdentity = "psk-device-0001"
	pskKeyHex   = "000102030405060708090a0b0c0d0e0f"
)

// HealthRequest and HealthReply are the UDP and DTLS listeners' health check.
const (
	HealthRequest = "are you there?"
	HealthReply   = "protogate is"
)

// datagram reports whether env's listener carries datagrams.
func (env *Env) datagram() bool { return env.Type == gateway.UDP || env.Type == gateway.DTLS }

// Timeout bounds every wait of the suite. It is generous: a loaded 2-core
// machine runs the suite with -race.
const Timeout = 15 * time.Second

// tlogWriter sends log lines to t.Log until the test ends.
type tlogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newEnv(t testing.TB, b Backend, typ gateway.SocketType, o envOptions) *Env {
	t.Helper()
	lw := &tlogWriter{t: t}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	level := slog.LevelWarn
	if os.Getenv("PROTOGATE_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: level}))

	br, err := broker.Start(broker.Config{
		Node:       "conformance",
		DataDir:    t.TempDir(),
		NATSListen: "127.0.0.1:0",
		MaxPayload: o.maxPayload,
		Logger:     log,
	})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := br.Shutdown(ctx); err != nil {
			t.Errorf("broker shutdown: %v", err)
		}
	})
	nc, err := nats.Connect("nats://"+br.NATSAddr().String(), nats.Timeout(Timeout))
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)

	srv := gateway.New(gateway.Options{PubSub: br, Authenticator: o.auth, Authorizer: o.authz, Logger: log, MaxPendingMessages: o.maxPending})
	env := &Env{Server: srv, Broker: br, Logger: log, NATS: nc, Type: typ, backend: b}

	env.Rec = newRecorder(b.Handler(t, env))
	env.Listener = &gateway.Listener{
		Name:             "conformance-" + typ.String(),
		Type:             typ,
		Handler:          env.Rec,
		IdleTimeout:      o.idle,
		Mountpoint:       o.mountpoint,
		DisableAuthn:     o.disableAuthn,
		MaxSubscriptions: o.maxSubs,
		// JSON frames end with a newline, so line framing hands the
		// handler one frame per OnReceivedBytes.
		ProxyProtocol: o.proxy,
	}
	if o.framing {
		env.Listener.Framing = framing.Config{Kind: framing.Line}
	}
	var ln net.Listener
	switch typ {
	case gateway.SSL:
		pki := newPKI(t)
		env.Listener.TLSConfig = pki.serverConfig()
		env.TLS = pki.clientConfig(o.clientCert)
	case gateway.DTLS:
		pki := newPKI(t)
		key, _ := hex.DecodeString(pskKeyHex)
		d, err := listener.NewDTLS(listener.DTLSConfig{
			Certificates: []tls.Certificate{pki.server},
			ClientCAs:    pki.pool,
			PSK:          map[string][]byte{PSKIdentity: key},
			Logger:       log,
		})
		if err != nil {
			t.Fatal(err)
		}
		env.Listener.Handshaker = d
		env.DTLS = &dtls.Config{RootCAs: pki.pool, ServerName: "localhost"}
		if o.clientCert {
			env.DTLS.Certificates = []tls.Certificate{pki.client}
		}
		if o.psk {
			env.DTLS = &dtls.Config{
				PSK:             func([]byte) ([]byte, error) { return key, nil },
				PSKIdentityHint: []byte(PSKIdentity),
				CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
			}
		}
	}
	if env.datagram() {
		ul, err := listener.ListenUDP("127.0.0.1:0", listener.UDPConfig{
			HealthCheck: &listener.HealthCheck{Request: []byte(HealthRequest), Reply: []byte(HealthReply)},
			Logger:      log,
		})
		if err != nil {
			t.Fatal(err)
		}
		env.UDP, ln = ul, ul
	} else {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	env.Addr = ln.Addr().String()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln, env.Listener) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
		if err := <-serveDone; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		env.Rec.check(t)
	})
	return env
}

// dial connects a device client to the env's listener and waits until the
// handler has seen it created. A UDP client sends a newline first, which
// creates its pseudo-connection and which the JSON protocol ignores.
func (env *Env) dial(t testing.TB) *client {
	t.Helper()
	nc := env.dialRaw(t)
	c := newClient(t, nc)
	c.datagram = env.datagram()
	if env.Type == gateway.UDP {
		c.write([]byte("\n"))
		c.primed = true
	}
	// The connection is registered once the handler has seen it created.
	c.handle = env.Rec.waitCreated(t, nc.LocalAddr().String())
	return c
}

// dialRaw opens a transport connection (with the TLS or DTLS handshake).
func (env *Env) dialRaw(t testing.TB) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: Timeout}
	var nc net.Conn
	var err error
	switch env.Type {
	case gateway.SSL:
		nc, err = tls.DialWithDialer(&d, "tcp", env.Addr, env.TLS)
	case gateway.UDP:
		nc, err = d.Dial("udp", env.Addr)
	case gateway.DTLS:
		var pc net.Conn
		if pc, err = d.Dial("udp", env.Addr); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			nc, err = dtls.ClientWithContext(ctx, pc, env.DTLS)
			cancel()
			if err != nil {
				pc.Close()
			}
		}
	default:
		nc, err = d.Dial("tcp", env.Addr)
	}
	if err != nil {
		t.Fatalf("dial %s %s: %v", env.Type, env.Addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// expectClosed waits until the gateway has closed c: a stream client reads
// EOF; a datagram client cannot tell, so the handler's OnSocketClosed is
// the evidence.
func (env *Env) expectClosed(t testing.TB, c *client) {
	t.Helper()
	if env.Type == gateway.DTLS {
		// DTLS sends a close_notify the client may or may not read first.
		env.Rec.waitClosed(t, c.handle)
		return
	}
	if c.datagram {
		env.Rec.waitClosed(t, c.handle)
		return
	}
	c.expectClosed()
}

// natsSub subscribes an ordinary NATS client and returns its channel.
func (env *Env) natsSub(t testing.TB, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := env.NATS.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.NATS.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return ch
}

func recvNATS(t testing.TB, ch chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(Timeout):
		t.Fatal("no NATS message")
		return nil
	}
}

// waitGone waits until handle is dead: Lookup answers CONN_PROCESS_NOT_ALIVE.
func (env *Env) waitGone(t testing.TB, handle string) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		_, err := env.Server.Lookup(handle)
		if gateway.CodeOf(err) == gateway.CodeNotAlive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("handle %s still answers %v, want CONN_PROCESS_NOT_ALIVE", handle, err)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}
