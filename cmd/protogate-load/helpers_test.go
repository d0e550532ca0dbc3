package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/broker"
	"github.com/protogate/protogate/gateway/listener"
	"github.com/protogate/protogate/guests/builtin"
	"github.com/protogate/protogate/wasmhost"
)

// wait bounds what a test waits for that should take milliseconds.
const wait = 30 * time.Second

var quiet = slog.New(slog.DiscardHandler)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.stop != nil {
		shared.stop()
	}
	os.Exit(code)
}

// noLoadGoroutines fails the test if a goroutine of a load scenario is
// still running: every run must have joined its goroutines when it returns.
// A goroutine may still be on its way out after signaling that it is done,
// so this waits a little for them to go.
func noLoadGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		g := loadGoroutine()
		if g == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a load goroutine is still running:\n%s", g)
		}
		time.Sleep(time.Millisecond)
	}
}

// loadGoroutine returns the stack of a goroutine of a load scenario, or "".
func loadGoroutine() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"(*echoRun)", "(*udpRun)", "(*fanRun)", "progress(", "parallel"} {
			if strings.Contains(g, "protogate-load."+fn) {
				return g
			}
		}
	}
	return ""
}

// startServeEcho runs serveEcho until the test ends and returns its address.
func startServeEcho(t *testing.T, udp bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveEcho(ctx, ServeEchoConfig{Listen: "127.0.0.1:0", UDP: udp}, func(a net.Addr) { addrc <- a })
	}()
	select {
	case a := <-addrc:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serveEcho: %v", err)
			}
		})
		return a.String()
	case err := <-done:
		cancel()
		t.Fatalf("serveEcho: %v", err)
	}
	return ""
}

// startTCP runs a TCP server that calls handle on each connection in its
// own goroutine (with the connection's accept index), until the test ends.
func startTCP(t *testing.T, handle func(i int, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(i, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// corruptEcho echoes, flipping every 97th byte of the stream.
func corruptEcho(_ int, c net.Conn) {
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := c.Read(buf)
		for i := range n {
			if (total+i)%97 == 50 {
				buf[i] ^= 0xff
			}
		}
		total += n
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// startUDP runs a UDP server that answers what reply returns (nil: no
// answer) until the test ends.
func startUDP(t *testing.T, reply func(n int, b []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for n := 0; ; n++ {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(n, buf[:m]); out != nil {
				pc.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().String()
}

// closedPort returns an address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// selfSigned returns a server certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "protogate-load test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testGateway is a protogate gateway running in the test process with the
// builtin guests.
type testGateway struct {
	echo    string // TCP listener, builtin:echo
	echoUDP string // UDP listener, builtin:echo
	line    string // TCP listener, builtin:linepubsub
	nats    string // nats:// URL of its embedded server
}

// shared is the gateway the tests share, started by the first that needs
// it and stopped by TestMain.
var shared struct {
	once sync.Once
	gw   *testGateway
	err  error
	stop func()
}

// startGateway returns the shared gateway.
func startGateway(t *testing.T) *testGateway {
	t.Helper()
	shared.once.Do(func() { shared.gw, shared.stop, shared.err = newTestGateway() })
	if shared.err != nil {
		t.Fatalf("gateway: %v", shared.err)
	}
	return shared.gw
}

func newTestGateway() (*testGateway, func(), error) {
	br, err := broker.Start(broker.Config{NATSListen: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	var (
		mu      sync.Mutex
		closers []func()
	)
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		br.Shutdown(ctx)
	})
	// Compiling a guest takes seconds under -race; a compile cache on disk
	// spares the runs after the first (wazero keys it by module and
	// version, and writes it atomically).
	cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(os.TempDir(), "protogate-load-test-wasm-cache"))
	if err != nil {
		cache = wazero.NewCompilationCache()
	}
	closers = append(closers, func() { cache.Close(context.Background()) })
	handler := func(name string) (*wasmhost.Handler, error) {
		wasm, ok := builtin.Lookup(name)
		if !ok {
			return nil, errors.New("no builtin " + name)
		}
		// A call timeout roomy enough for -race on a loaded machine.
		h, err := wasmhost.New(wasmhost.Config{Name: name, Wasm: wasm, Instances: 1, CallTimeout: 10 * time.Second, Cache: cache, Logger: quiet})
		if err == nil {
			mu.Lock()
			closers = append(closers, func() { h.Close() })
			mu.Unlock()
		}
		return h, err
	}
	// Compile both guests at once.
	var echo, line *wasmhost.Handler
	var echoErr, lineErr error
	var compiling sync.WaitGroup
	compiling.Go(func() { echo, echoErr = handler("echo") })
	line, lineErr = handler("linepubsub")
	compiling.Wait()
	if err := errors.Join(echoErr, lineErr); err != nil {
		stop()
		return nil, nil, err
	}
	srv := gateway.New(gateway.Options{PubSub: br, Logger: quiet})
	var serving sync.WaitGroup
	closers = append(closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
		serving.Wait()
	})
	serve := func(ln net.Listener, l *gateway.Listener) string {
		serving.Add(1)
		go func() {
			defer serving.Done()
			srv.Serve(ln, l)
		}()
		return ln.Addr().String()
	}
	gw := &testGateway{nats: "nats://" + br.NATSAddr().String()}
	for _, l := range []struct {
		addr    *string
		typ     gateway.SocketType
		handler gateway.Handler
	}{
		{&gw.echo, gateway.TCP, echo},
		{&gw.line, gateway.TCP, line},
		{&gw.echoUDP, gateway.UDP, echo},
	} {
		var ln net.Listener
		if l.typ == gateway.UDP {
			ln, err = listener.ListenUDP("127.0.0.1:0", listener.UDPConfig{Logger: quiet})
		} else {
			ln, err = net.Listen("tcp", "127.0.0.1:0")
		}
		if err != nil {
			stop()
			return nil, nil, err
		}
		*l.addr = serve(ln, &gateway.Listener{Name: "test", Type: l.typ, Handler: l.handler})
	}
	return gw, stop, nil
}
