// Package conformance is the behaviour suite every handler back end must
// pass. Run builds a complete gateway from real parts (an embedded NATS
// server, the ConnectionAdapter on gRPC over loopback, TCP and TLS listeners
// on 127.0.0.1) around the back end under test, and drives it with real
// socket clients speaking the JSON test protocol of EMQX's ExProto suite
// (package jsonproto). The handler under test must implement that protocol:
// the reference remote handler (gateway/remote/exprotojson) and the
// builtin:exproto-json Wasm guest do.
//
// Between the gateway and the back end the suite inserts a recorder that
// checks the event-model guarantees on every connection: OnSocketCreated
// first, never two callbacks at once, OnSocketClosed last and exactly once.
package conformance

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/remote"
)

// Backend is a handler back end under test.
type Backend struct {
	// Name appears in test names.
	Name string
	// Handler returns the handler under test for env. Back ends that call
	// the ConnectionAdapter over gRPC find it at env.AdapterAddr. Cleanup
	// registered on t runs after the gateway has shut down.
	Handler func(t testing.TB, env *Env) gateway.Handler
}

// Env is one gateway assembled for a test.
type Env struct {
	Server      *gateway.Server
	Broker      *broker.Broker
	AdapterAddr string     // host:port of the ConnectionAdapter
	NATS        *nats.Conn // an ordinary NATS client of the embedded server
	Addr        string     // the device listener
	Type        gateway.SocketType
	TLS         *tls.Config // client TLS config for SSL listeners
	Rec         *Recorder
	Listener    *gateway.Listener
}

// envOptions tune one Env.
type envOptions struct {
	mountpoint   string
	idle         time.Duration
	auth         gateway.Authenticator
	disableAuthn bool
	maxPayload   int
	clientCert   bool
}

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
	nc, err := nats.Connect("nats://" + br.NATSAddr().String())
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)

	srv := gateway.New(gateway.Options{PubSub: br, Authenticator: o.auth, Logger: log})
	env := &Env{Server: srv, Broker: br, NATS: nc, Type: typ}

	gs := grpc.NewServer()
	remote.NewAdapter(srv, log).Register(gs)
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env.AdapterAddr = aln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		gs.Serve(aln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		wg.Wait()
	})

	env.Rec = newRecorder(b.Handler(t, env))
	env.Listener = &gateway.Listener{
		Name:         "conformance-" + typ.String(),
		Type:         typ,
		Handler:      env.Rec,
		IdleTimeout:  o.idle,
		Mountpoint:   o.mountpoint,
		DisableAuthn: o.disableAuthn,
	}
	if typ == gateway.SSL {
		pki := newPKI(t)
		env.Listener.TLSConfig = pki.serverConfig()
		env.TLS = pki.clientConfig(o.clientCert)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
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

// dial connects a device client to the env's listener.
func (env *Env) dial(t testing.TB) *client {
	t.Helper()
	d := net.Dialer{Timeout: Timeout}
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
	// The connection is registered once the handler has seen it created.
	c.handle = env.Rec.waitCreated(t, nc.LocalAddr().String())
	return c
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
