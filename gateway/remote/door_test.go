package remote_test

// The tests in this file check the ConnectionAdapter's door, over real gRPC
// on loopback: which connections a call reaches (only those a remote
// Handler serves) and which calls may act on them (per-handler tokens and
// client certificates).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/remote"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// guest stands in for a Wasm guest: a handler in the process that echoes
// what its devices send, and that no gRPC handler serves.
type guest struct{ created chan *gateway.Conn }

func newGuest() *guest { return &guest{created: make(chan *gateway.Conn, 16)} }

func (g *guest) OnSocketCreated(_ context.Context, c *gateway.Conn, _ *gateway.ConnInfo) error {
	g.created <- c
	return nil
}
func (g *guest) OnReceivedBytes(_ context.Context, c *gateway.Conn, b []byte) error { return c.Send(b) }
func (g *guest) OnTimerTimeout(context.Context, *gateway.Conn, gateway.TimerType) error {
	return nil
}
func (g *guest) OnReceivedMessages(context.Context, *gateway.Conn, []*gateway.Message) error {
	return nil
}
func (g *guest) OnSocketClosed(context.Context, *gateway.Conn, string) error { return nil }

// withFallback stands in for a Wasm handler with a gRPC fallback, as
// wasmhost.Handler hands over the connections it cannot serve: each new
// connection goes to the guest, or to the fallback while toFallback is set,
// and stays there.
type withFallback struct {
	guest, fallback gateway.Handler
	toFallback      atomic.Bool
}

func (w *withFallback) OnSocketCreated(ctx context.Context, c *gateway.Conn, info *gateway.ConnInfo) error {
	h := w.guest
	if w.toFallback.Load() {
		h = w.fallback
	}
	c.SetHandlerState(h)
	return h.OnSocketCreated(ctx, c, info)
}

func (w *withFallback) to(c *gateway.Conn) gateway.Handler { return c.HandlerState().(gateway.Handler) }

func (w *withFallback) OnReceivedBytes(ctx context.Context, c *gateway.Conn, b []byte) error {
	return w.to(c).OnReceivedBytes(ctx, c, b)
}
func (w *withFallback) OnTimerTimeout(ctx context.Context, c *gateway.Conn, t gateway.TimerType) error {
	return w.to(c).OnTimerTimeout(ctx, c, t)
}
func (w *withFallback) OnReceivedMessages(ctx context.Context, c *gateway.Conn, m []*gateway.Message) error {
	return w.to(c).OnReceivedMessages(ctx, c, m)
}
func (w *withFallback) OnSocketClosed(ctx context.Context, c *gateway.Conn, reason string) error {
	return w.to(c).OnSocketClosed(ctx, c, reason)
}

// nopPubSub accepts every publish and subscription, so that RawPublish
// and Subscribe succeed without a broker.
type nopPubSub struct{}

func (nopPubSub) Publish(*gateway.Message) error { return nil }
func (nopPubSub) Subscribe(context.Context, string, gateway.Subscriber) (gateway.Subscription, error) {
	return nopSub{}, nil
}

type nopSub struct{}

func (nopSub) Unsubscribe() error { return nil }

// door is a gateway whose listeners tests add, with an adapter on real gRPC.
type door struct {
	t   *testing.T
	srv *gateway.Server
	log *slog.Logger
}

func newDoor(t *testing.T) *door {
	log := slog.New(slog.DiscardHandler)
	srv := gateway.New(gateway.Options{PubSub: nopPubSub{}, Logger: log})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &door{t: t, srv: srv, log: log}
}

// serve serves a tcp listener with h and returns its address.
func (d *door) serve(name string, h gateway.Handler) string {
	ln := listen(d.t)
	go d.srv.Serve(ln, &gateway.Listener{Name: name, Type: gateway.TCP, Handler: h})
	return ln.Addr().String()
}

// handler serves a scripted ExProto handler and returns it with a remote
// Handler calling it, made with cfg (Address and Logger filled in).
func (d *door) handler(cfg remote.Config) (*scripted, *remote.Handler) {
	d.t.Helper()
	sc := newScripted()
	gs := grpc.NewServer()
	pb.RegisterConnectionUnaryHandlerServer(gs, sc)
	ln := listen(d.t)
	go gs.Serve(ln)
	cfg.Address, cfg.Logger = "http://"+ln.Addr().String(), d.log
	if cfg.Timeout == 0 {
		cfg.Timeout = wait
	}
	h, err := remote.New(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	// Cleanups run last-in first-out: the gateway shuts down (and tells
	// the handler) before the handler goes.
	d.t.Cleanup(func() { h.Close(); gs.Stop() })
	return sc, h
}

// adapter serves the ConnectionAdapter for handlers, with TLS if tc is
// set, and returns its address.
func (d *door) adapter(tc *tls.Config, handlers ...*remote.Handler) string {
	d.t.Helper()
	var opts []grpc.ServerOption
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	gs := grpc.NewServer(opts...)
	remote.NewAdapter(d.srv, d.log, handlers...).Register(gs)
	ln := listen(d.t)
	go gs.Serve(ln)
	d.t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// client returns a ConnectionAdapter client of addr, over TLS if tc is set.
func (d *door) client(addr string, tc *tls.Config) pb.ConnectionAdapterClient {
	d.t.Helper()
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { cc.Close() })
	return pb.NewConnectionAdapterClient(cc)
}

// device connects to a listener and returns the connection's handle, as
// created reports it.
func device[T any](t *testing.T, addr string, created chan T, handle func(T) string) (net.Conn, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	select {
	case v := <-created:
		return nc, handle(v)
	case <-time.After(wait):
		t.Fatal("no OnSocketCreated")
		return nil, ""
	}
}

func remoteDevice(t *testing.T, addr string, sc *scripted) (net.Conn, string) {
	return device(t, addr, sc.created, func(h string) string { return h })
}

func guestDevice(t *testing.T, addr string, g *guest) (net.Conn, string) {
	return device(t, addr, g.created, (*gateway.Conn).Handle)
}

// expect reads exactly want from nc.
func expect(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	buf := make([]byte, len(want))
	nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != want {
		t.Fatalf("device read %q, %v; want %q", buf, err, want)
	}
}

// echoFirst checks that a guest's device is still served and got nothing
// from the adapter: the echo of what it sends now is the first thing it
// reads (bytes sent through the adapter would be ahead of it, since Send
// returns once they are written).
func echoFirst(t *testing.T, nc net.Conn, msg string) {
	t.Helper()
	nc.SetWriteDeadline(time.Now().Add(wait))
	if _, err := nc.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	expect(t, nc, msg)
}

func neighbour(t *testing.T, handle string, delta int64) string {
	t.Helper()
	id, err := strconv.ParseUint(handle, 16, 64)
	if err != nil {
		t.Fatalf("handle %q: %v", handle, err)
	}
	return fmt.Sprintf("%016x", id+uint64(delta))
}

// everyRPC calls each adapter rpc that names a connection on conn.
func everyRPC(ctx context.Context, a pb.ConnectionAdapterClient, conn string) map[string]func() (*pb.CodeResponse, error) {
	return map[string]func() (*pb.CodeResponse, error){
		"Send": func() (*pb.CodeResponse, error) {
			return a.Send(ctx, &pb.SendBytesRequest{Conn: conn, Bytes: []byte("INJECTED")})
		},
		"Authenticate": func() (*pb.CodeResponse, error) {
			return a.Authenticate(ctx, &pb.AuthenticateRequest{Conn: conn,
				Clientinfo: &pb.ClientInfo{ProtoName: "p", ProtoVer: "1", Clientid: "intruder"}})
		},
		"StartTimer": func() (*pb.CodeResponse, error) {
			return a.StartTimer(ctx, &pb.TimerRequest{Conn: conn, Interval: 1})
		},
		"Publish": func() (*pb.CodeResponse, error) {
			return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: "t", Payload: []byte("INJECTED")})
		},
		"Subscribe": func() (*pb.CodeResponse, error) {
			return a.Subscribe(ctx, &pb.SubscribeRequest{Conn: conn, Topic: "t"})
		},
		"Unsubscribe": func() (*pb.CodeResponse, error) {
			return a.Unsubscribe(ctx, &pb.UnsubscribeRequest{Conn: conn, Topic: "t"})
		},
		"Close": func() (*pb.CodeResponse, error) {
			return a.Close(ctx, &pb.CloseSocketRequest{Conn: conn})
		},
	}
}

// TestAdapterCannotReachGuestConnections is the attack of issue 10: a
// handler that knows its own connection's handle tries its neighbours, and
// the handle of a connection served in the process, to reach a device it
// does not serve. Every call answers CONN_PROCESS_NOT_ALIVE, exactly as for
// a connection that does not exist, and nothing reaches the device.
func TestAdapterCannotReachGuestConnections(t *testing.T) {
	d := newDoor(t)
	sc, rh := d.handler(remote.Config{})
	g := newGuest()
	grpcAddr, guestAddr := d.serve("grpc", rh), d.serve("echo", g)
	a := d.client(d.adapter(nil, rh), nil)
	ctx := context.Background()

	gdev, gconn := guestDevice(t, guestAddr, g)
	rdev, rconn := remoteDevice(t, grpcAddr, sc)
	nobody, err := a.Send(ctx, &pb.SendBytesRequest{Conn: neighbour(t, gconn, 1<<62), Bytes: []byte("INJECTED")})
	if code(t, nobody, err) != pb.ResultCode_CONN_PROCESS_NOT_ALIVE {
		t.Fatalf("Send to no connection: %v", nobody)
	}
	for _, guess := range []string{neighbour(t, rconn, -1), neighbour(t, rconn, 1), gconn} {
		for name, call := range everyRPC(ctx, a, guess) {
			resp, err := call()
			if code(t, resp, err) != pb.ResultCode_CONN_PROCESS_NOT_ALIVE || resp.GetMessage() != nobody.GetMessage() {
				t.Errorf("%s(%s) = %v %q; want %v %q, as for no connection", name, guess, resp.GetCode(), resp.GetMessage(),
					nobody.GetCode(), nobody.GetMessage())
			}
		}
	}
	echoFirst(t, gdev, "ping")
	d.untouched(gconn)

	// The gRPC-served connection is reachable.
	resp, err := a.Send(ctx, &pb.SendBytesRequest{Conn: rconn, Bytes: []byte("ok")})
	if code(t, resp, err) != pb.ResultCode_SUCCESS {
		t.Fatalf("Send to the handler's own connection: %v", resp)
	}
	expect(t, rdev, "ok")
}

// untouched checks that the connection named conn is as its guest left
// it: open, not authenticated, without subscriptions or keepalive.
func (d *door) untouched(conn string) {
	d.t.Helper()
	c, err := d.srv.Lookup(conn)
	if err != nil {
		d.t.Fatalf("the guest's connection: %v", err)
	}
	if st := c.Status(); st.State != gateway.StateConnecting || st.ClientID != "" || st.Subscriptions != 0 || st.Keepalive != 0 {
		d.t.Errorf("the guest's connection was acted on: %+v", st)
	}
}

// TestAdapterReachesOnlyFallbackConnections has a Wasm-like handler with a
// gRPC fallback serve two devices, one each: the adapter reaches the one
// the fallback serves, not the guest's.
func TestAdapterReachesOnlyFallbackConnections(t *testing.T) {
	d := newDoor(t)
	sc, rh := d.handler(remote.Config{})
	g := newGuest()
	w := &withFallback{guest: g, fallback: rh}
	addr := d.serve("wasm", w)
	a := d.client(d.adapter(nil, rh), nil)
	ctx := context.Background()

	gdev, gconn := guestDevice(t, addr, g)
	w.toFallback.Store(true)
	fdev, fconn := remoteDevice(t, addr, sc)

	resp, err := a.Send(ctx, &pb.SendBytesRequest{Conn: gconn, Bytes: []byte("INJECTED")})
	if code(t, resp, err) != pb.ResultCode_CONN_PROCESS_NOT_ALIVE {
		t.Errorf("Send to the guest's connection: %v", resp)
	}
	echoFirst(t, gdev, "still the guest's")
	d.untouched(gconn)

	resp, err = a.Send(ctx, &pb.SendBytesRequest{Conn: fconn, Bytes: []byte("fallback")})
	if code(t, resp, err) != pb.ResultCode_SUCCESS {
		t.Fatalf("Send to the fallback's connection: %v", resp)
	}
	expect(t, fdev, "fallback")
}

// withToken returns ctx with metadata "authorization: <value>".
func withToken(ctx context.Context, value string) context.Context {
	if value == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", value)
}

const (
	tokenA = "token-of-handler-a-0123456789"
	tokenB = "token-of-handler-b-0123456789"
)

// TestAdapterTokens has three gRPC handlers: A and B with their own
// tokens, C without. Each call of the table sends bytes to a device: the
// right token works, a missing or wrong one is refused with
// PERMISSION_DENY, a handler's token acts on no other handler's
// connections, and nothing refused reaches a device.
func TestAdapterTokens(t *testing.T) {
	d := newDoor(t)
	scA, hA := d.handler(remote.Config{AdapterToken: tokenA})
	scB, hB := d.handler(remote.Config{AdapterToken: tokenB})
	scC, hC := d.handler(remote.Config{})
	a := d.client(d.adapter(nil, hA, hB, hC), nil)
	devA, connA := remoteDevice(t, d.serve("a", hA), scA)
	devB, connB := remoteDevice(t, d.serve("b", hB), scB)
	devC, connC := remoteDevice(t, d.serve("c", hC), scC)
	devs := map[string]net.Conn{connA: devA, connB: devB, connC: devC}
	got := map[string]string{} // what each device should have read

	deny, ok := pb.ResultCode_PERMISSION_DENY, pb.ResultCode_SUCCESS
	for _, tc := range []struct {
		name, auth, conn string
		want             pb.ResultCode
		msg              string // in the message of a refusal
	}{
		{"A's token on A", "Bearer " + tokenA, connA, ok, ""},
		{"lowercase scheme, two spaces", "bearer  " + tokenA, connA, ok, ""},
		{"no token on A", "", connA, deny, "does not carry"},
		{"B's token on A", "Bearer " + tokenB, connA, deny, "carries another"},
		{"wrong token on A", "Bearer " + tokenA + "x", connA, deny, "carries another"},
		{"A's token without the scheme", tokenA, connA, deny, "does not carry"},
		{"A's token as Basic", "Basic " + tokenA, connA, deny, "does not carry"},
		{"B's token on B", "Bearer " + tokenB, connB, ok, ""},
		{"A's token on B", "Bearer " + tokenA, connB, deny, "carries another"},
		{"no token on C", "", connC, ok, ""},
		{"unknown token on C", "Bearer not-a-handlers-token-at-all", connC, ok, ""},
		{"A's token on C", "Bearer " + tokenA, connC, deny, "credentials of another handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := withToken(context.Background(), tc.auth)
			resp, err := a.Send(ctx, &pb.SendBytesRequest{Conn: tc.conn, Bytes: []byte(tc.name + ";")})
			if c := code(t, resp, err); c != tc.want || !strings.Contains(resp.GetMessage(), tc.msg) {
				t.Errorf("Send: %v %q; want %v with %q", c, resp.GetMessage(), tc.want, tc.msg)
			}
			if resp.GetCode() == pb.ResultCode_SUCCESS {
				got[tc.conn] += tc.name + ";"
			}
			if strings.Contains(resp.GetMessage(), tokenA) || strings.Contains(resp.GetMessage(), tokenB) {
				t.Errorf("the message quotes a token: %q", resp.GetMessage())
			}
		})
	}
	// Every rpc is guarded, not only Send.
	for name, call := range everyRPC(context.Background(), a, connA) {
		if resp, err := call(); code(t, resp, err) != deny {
			t.Errorf("%s on A without a token: %v", name, resp)
		}
	}
	// Each device read exactly the bytes of the calls that succeeded.
	for conn, dev := range devs {
		end := "end-of-" + conn
		resp, err := a.Send(withToken(context.Background(), map[string]string{connA: "Bearer " + tokenA, connB: "Bearer " + tokenB}[conn]),
			&pb.SendBytesRequest{Conn: conn, Bytes: []byte(end)})
		if code(t, resp, err) != ok {
			t.Fatalf("final Send to %s: %v", conn, resp)
		}
		expect(t, dev, got[conn]+end)
	}
	if n := remote.NewAdapter(nil, nil).Denied(); n != 0 {
		t.Errorf("a new adapter has %d refusals", n)
	}

	// With C's handler open, RawPublish is open too.
	for _, auth := range []string{"", "Bearer " + tokenA} {
		resp, err := a.RawPublish(withToken(context.Background(), auth), &pb.RawPublishRequest{Topic: "t"})
		if code(t, resp, err) != ok {
			t.Errorf("RawPublish with %q while C has no token: %v", auth, resp)
		}
	}
}

// TestAdapterRawPublishNeedsCredentials: once every handler has a token,
// RawPublish, which names no connection, needs one of them.
func TestAdapterRawPublishNeedsCredentials(t *testing.T) {
	d := newDoor(t)
	_, hA := d.handler(remote.Config{AdapterToken: tokenA})
	_, hB := d.handler(remote.Config{AdapterToken: tokenB})
	a := d.client(d.adapter(nil, hA, hB), nil)
	for _, tc := range []struct {
		auth string
		want pb.ResultCode
	}{
		{"", pb.ResultCode_PERMISSION_DENY},
		{"Bearer wrong-token-0123456789", pb.ResultCode_PERMISSION_DENY},
		{"Bearer " + tokenA, pb.ResultCode_SUCCESS},
		{"Bearer " + tokenB, pb.ResultCode_SUCCESS},
	} {
		resp, err := a.RawPublish(withToken(context.Background(), tc.auth), &pb.RawPublishRequest{Topic: "t", Payload: []byte("x")})
		if code(t, resp, err) != tc.want {
			t.Errorf("RawPublish with %q: %v %q, want %v", tc.auth, resp.GetCode(), resp.GetMessage(), tc.want)
		}
	}
}

// testPKI is a throw-away CA with a server certificate for 127.0.0.1 and
// client certificates by common name.
type testPKI struct {
	t      *testing.T
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "adapter test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, ca: ca, caKey: key, pool: x509.NewCertPool(), serial: 1}
	p.pool.AddCert(ca)
	return p
}

func (p *testPKI) leaf(cn string, usage x509.ExtKeyUsage) tls.Certificate {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (p *testPKI) client(cn string) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if cn != "" {
		c.Certificates = []tls.Certificate{p.leaf(cn, x509.ExtKeyUsageClientAuth)}
	}
	return c
}

// TestAdapterClientCertificates maps client certificates to handlers: A
// accepts calls from the certificate with CN "handler-a" only, D from
// "handler-d" with D's token too, C has no credentials. The adapter
// verifies client certificates if given (ca_file without verify_client).
func TestAdapterClientCertificates(t *testing.T) {
	p := newTestPKI(t)
	d := newDoor(t)
	scA, hA := d.handler(remote.Config{AdapterClientCN: "handler-a"})
	scC, hC := d.handler(remote.Config{})
	scD, hD := d.handler(remote.Config{AdapterClientCN: "handler-d", AdapterToken: tokenB})
	addr := d.adapter(&tls.Config{
		Certificates: []tls.Certificate{p.leaf("localhost", x509.ExtKeyUsageServerAuth)},
		ClientCAs:    p.pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
	}, hA, hC, hD)
	_, connA := remoteDevice(t, d.serve("a", hA), scA)
	_, connC := remoteDevice(t, d.serve("c", hC), scC)
	_, connD := remoteDevice(t, d.serve("d", hD), scD)
	clients := map[string]pb.ConnectionAdapterClient{}
	for _, cn := range []string{"", "handler-a", "handler-b", "handler-d"} {
		clients[cn] = d.client(addr, p.client(cn))
	}
	deny, ok := pb.ResultCode_PERMISSION_DENY, pb.ResultCode_SUCCESS
	for _, tc := range []struct {
		cn, auth, conn string
		want           pb.ResultCode
		msg            string
	}{
		{"handler-a", "", connA, ok, ""},
		{"", "", connA, deny, `CN "handler-a"; this call presents none`},
		{"handler-b", "", connA, deny, `this call's is "handler-b"`},
		{"handler-d", "Bearer " + tokenB, connA, deny, `CN "handler-a"`},
		{"", "", connC, ok, ""},
		{"handler-b", "", connC, ok, ""},
		{"handler-a", "", connC, deny, "credentials of another handler"},
		{"handler-d", "Bearer " + tokenB, connD, ok, ""},
		{"handler-d", "", connD, deny, "adapter token"},
		{"handler-a", "Bearer " + tokenB, connD, deny, `CN "handler-d"`},
		// Holding only part of D's credentials is holding none: C's
		// connections stay open to such a call.
		{"handler-d", "", connC, ok, ""},
	} {
		ctx := withToken(context.Background(), tc.auth)
		resp, err := clients[tc.cn].Send(ctx, &pb.SendBytesRequest{Conn: tc.conn, Bytes: []byte("x")})
		if c := code(t, resp, err); c != tc.want || !strings.Contains(resp.GetMessage(), tc.msg) {
			t.Errorf("certificate %q, authorization %q, conn %s: %v %q; want %v with %q",
				tc.cn, tc.auth, tc.conn, c, resp.GetMessage(), tc.want, tc.msg)
		}
	}
}

func TestCheckAdapterToken(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want string // in the error; "" for none
	}{
		{"0123456789abcdef", ""},
		{strings.Repeat("x", 1024), ""},
		{"!#$%&'()*+,-./:;<=>?@[]^_`{|}~\"\\", ""},
		{"", "has 0 characters; want 16 to 1024"},
		{"short", "has 5 characters"},
		{strings.Repeat("x", 1025), "has 1025 characters"},
		{"0123456789 abcdef", "at byte 10"},
		{"0123456789abcdef\n", "at byte 16"},
		{"0123456789abcdéf", "non-ASCII"},
	} {
		err := remote.CheckAdapterToken(tc.tok)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckAdapterToken(%q) = %v", tc.tok, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckAdapterToken(%q) = %v, want an error with %q", tc.tok, err, tc.want)
		case err != nil && len(tc.tok) > 0 && strings.Contains(err.Error(), tc.tok):
			t.Errorf("the error quotes the token: %v", err)
		}
	}
	if _, err := remote.New(remote.Config{Address: "http://127.0.0.1:9001", AdapterToken: "short"}); err == nil {
		t.Error("remote.New accepted a 5-character adapter token")
	}
}
