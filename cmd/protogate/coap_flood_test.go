package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
	"github.com/protogate/protogate/gateway"
)

// Garbage of the flood test.
const (
	floodSeed     = 7252 // the flood's datagrams are the same in every run
	floodPorts    = 400  // source ports hitting the udp listener
	floodPerPort  = 8    // datagrams from each
	floodDTLS     = 100  // source ports hitting the dtls listener
	floodIdleTime = 2 * time.Second
)

// garbage returns a malformed or unwanted datagram: random bytes, truncated
// headers, versions other than 1, TKL over 8, option deltas and lengths
// that overrun the datagram or use the reserved nibble 15, option numbers
// over 65535, empty messages with data, responses, ACKs and RSTs nobody
// asked for, reserved code classes, oversized datagrams, pings. None
// carries a Uri-Path "ps", so none authenticates its connection.
func garbage(r *rand.Rand) []byte {
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return b
	}
	hdr := func(ver, typ, tkl int, code byte) []byte {
		b := []byte{byte(ver<<6 | typ<<4 | tkl), code, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(r.UintN(1<<16)))
		return b
	}
	typ := int(r.UintN(4))
	switch r.UintN(12) {
	case 0: // random bytes
		return random(1 + int(r.UintN(64)))
	case 1: // truncated header
		return random(1 + int(r.UintN(3)))
	case 2: // version 0, 2 or 3
		return append(hdr([]int{0, 2, 3}[r.UintN(3)], typ, int(r.UintN(9)), byte(r.UintN(256))), random(int(r.UintN(32)))...)
	case 3: // TKL 9 to 15, with or without the bytes
		tkl := 9 + int(r.UintN(7))
		return append(hdr(1, typ, tkl, 0x01+byte(r.UintN(4))), random(int(r.UintN(20)))...)
	case 4: // an option length past the end
		b := append(hdr(1, typ, 0, 0x01), 0xb0|byte(1+r.UintN(12)))
		return append(b, random(int(r.UintN(2)))...)
	case 5: // an extended delta or length whose bytes are missing, or nibble 15
		b := hdr(1, typ, 0, 0x02)
		return append(b, []byte{0xd0, 0xe0, 0x0d, 0x0e, 0xf0, 0x1f, 0xe1}[r.UintN(7)])
	case 6: // option numbers over 65535
		return append(hdr(1, typ, 0, 0x01), 0xe0, 0xff, 0xff, 0xe0, 0xff, 0xff)
	case 7: // empty message with a token or data
		b := hdr(1, typ, int(r.UintN(9)), 0)
		return append(b, random(1+int(r.UintN(8)))...)
	case 8: // a response, ACK or RST nobody asked for, or a reserved class
		code := []byte{0x45, 0x44, 0x84, 0xa0, 0x20, 0x3f, 0xc0, 0xe5, 0x00}[r.UintN(9)]
		b := hdr(1, typ, int(r.UintN(9)), code)
		return append(b, random(int(r.UintN(16)))...)
	case 9: // a payload marker without payload, in a request
		return append(hdr(1, typ, 0, 0x02), 0xff)
	case 10: // larger than any CoAP message (1152 bytes)
		return random(1200 + int(r.UintN(2800)))
	default: // a ping (the one well-formed message: answered with RST)
		return hdr(1, 0, 0, 0)
	}
}

// flood sends garbage to addr, perPort datagrams from each new source
// port, in bursts of 10 ports every 20 ms, until stop is closed and at
// least minPorts ports were used (it calls reached once then, or when
// it returns before), or
// maxPorts were. It returns the number of ports used.
func flood(addr string, r *rand.Rand, perPort, minPorts, maxPorts int, reached func(), stop <-chan struct{}) (int, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, err
	}
	once := sync.OnceFunc(reached)
	defer once()
	for i := 0; i < maxPorts; i++ {
		if i == minPorts {
			once()
		}
		if i >= minPorts {
			select {
			case <-stop:
				return i, nil
			default:
			}
		}
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return i, err
		}
		for range perPort {
			if _, err := pc.WriteToUDP(garbage(r), raddr); err != nil {
				pc.Close()
				return i, err
			}
		}
		pc.Close()
		if i%10 == 9 {
			// Pacing, not ordering: the flood lasts as long as the good
			// clients' exchanges rather than filling the kernel's
			// receive buffer once.
			time.Sleep(20 * time.Millisecond)
		}
	}
	return maxPorts, nil
}

// TestCoAPGarbageFlood: while a go-coap client observes a topic and another
// publishes to it (CON POSTs, so QoS 1 and CON notifications), and a go-coap
// DTLS client publishes too, thousands of malformed datagrams from hundreds
// of source ports hit the udp listener, and non-DTLS garbage hits the dtls
// listener. Every publish is answered and every notification arrives, once
// and in order; the guest never faults (no failed callback, no instance
// replaced, no breaker trip, none in the metrics).
//
// What happens to the garbage peers: the udp listener makes a
// pseudo-connection for each source ip:port (OnSocketCreated); the guest
// answers RST to the CONs and ignores the rest, and neither authenticates
// nor starts a keepalive for them, nor closes them itself. The gateway
// reaps such a connection after the listener's idle_timeout without a
// datagram (default 30 s; 2 s here), so the count returns to the good
// clients within it. (max_connections and max_conn_rate bound how many
// there can be meanwhile.) On the dtls listener, garbage fails the
// handshake at its first datagram (not a ClientHello): refused at once,
// with no connection for the guest.
func TestCoAPGarbageFlood(t *testing.T) {
	dir := dataDirSharingCache(t)
	cfg, err := config.Parse([]byte(`
node: {name: coap-flood, data_dir: ` + dir + `}
broker:
  nats_listen: "127.0.0.1:0"
  mqtt_listen: "127.0.0.1:0"
` + opsYAML + `
handlers:
  coap: {wasm: {path: "builtin:coap", call_timeout: 5s}}
listeners:
  - {name: coap, type: udp, bind: "127.0.0.1:0", handler: coap, idle_timeout: ` + floodIdleTime.String() + `}
  - name: psk
    type: dtls
    bind: "127.0.0.1:0"
    handler: coap
    idle_timeout: ` + floodIdleTime.String() + `
    psk: {identities: {` + coapPSKIdentity + `: "` + hex.EncodeToString([]byte(coapPSK)) + `"}, identity_hint: protogate}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, cfg)
	n := &coapNode{interopNode: &interopNode{r: r, natsURL: "nats://" + r.broker.NATSAddr().String()}, coap: r.listeners["coap"].String()}
	dtlsAddr := r.listeners["psk"].String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()

	pub := dialCoap(t, n.coap)
	sub := dialCoap(t, n.coap)
	notes := make(chan string, 1000)
	obs, err := sub.Observe(ctx, "/ps/f/t", func(m *pool.Message) {
		body, _ := m.ReadBody()
		notes <- string(body)
	}, query("clientid=flood-sub"))
	if err != nil {
		t.Fatal(err)
	}
	if got := <-notes; got != "" {
		t.Fatalf("registration %q", got)
	}
	n.waitSubs(t, subjects(t, "f/t")...)
	resp, err := pub.Post(ctx, "/ps/f/t", message.TextPlain, bytes.NewReader([]byte("m-1")), query("clientid=flood-pub"))
	checkCode(t, "first publish", resp, err, codes.Changed)
	sent := []string{"m-1"}
	dco, err := coapdtls.Dial(dtlsAddr, coapdtls.NewDTLSClientOptions(
		piondtls.WithPSK(func([]byte) ([]byte, error) { return []byte(coapPSK), nil }),
		piondtls.WithPSKIdentityHint([]byte(coapPSKIdentity)),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
	))
	if err != nil {
		t.Fatal(err)
	}
	defer dco.Close()
	resp, err = dco.Post(ctx, "/ps/f/t", message.TextPlain, bytes.NewReader([]byte("d-1")))
	checkCode(t, "first dtls publish", resp, err, codes.Changed)
	sent = append(sent, "d-1")
	n.waitStats(t, "coap", "the good clients connected", func(st gateway.ListenerStats) bool { return st.Active == 2 })
	n.waitStats(t, "psk", "the dtls client connected", func(st gateway.ListenerStats) bool { return st.Active == 1 })
	base := r.server.ListenerStats("coap")
	dbase := r.server.ListenerStats("psk")

	// The flood, from two goroutines on the udp listener and one on the
	// dtls listener, lasts as long as the good clients' exchanges below,
	// but at most three times its minimum (a loaded machine drops the
	// good clients' datagrams too, and their retransmissions take
	// seconds).
	start := time.Now()
	rnd := rand.New(rand.NewPCG(floodSeed, 0))
	seeds := [3]uint64{rnd.Uint64(), rnd.Uint64(), rnd.Uint64()}
	errs := make(chan error, 3)
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	defer halt() // a failure below ends the flood too
	var wg sync.WaitGroup
	var reached sync.WaitGroup
	var udpPorts, dtlsPorts atomic.Int64
	for i, job := range []struct {
		addr                        string
		perPort, minPorts, maxPorts int
		ports                       *atomic.Int64
	}{
		{n.coap, floodPerPort, floodPorts / 2, 3 * floodPorts / 2, &udpPorts},
		{n.coap, floodPerPort, floodPorts / 2, 3 * floodPorts / 2, &udpPorts},
		{dtlsAddr, 3, floodDTLS, 3 * floodDTLS, &dtlsPorts},
	} {
		reached.Add(1)
		wg.Go(func() {
			k, err := flood(job.addr, rand.New(rand.NewPCG(seeds[i], uint64(i))), job.perPort, job.minPorts, job.maxPorts, reached.Done, stop)
			job.ports.Add(int64(k))
			if err != nil {
				errs <- err
			}
		})
	}
	minSent := make(chan struct{})
	go func() { reached.Wait(); close(minSent) }()

	// The good clients meanwhile: at least 20 rounds, and until every
	// flooder has used its minimum of ports.
	flooding := func() bool {
		select {
		case <-minSent:
			return false
		default:
			return true
		}
	}
	for i := 0; i < 20 || flooding(); i++ {
		var resp *pool.Message
		var err error
		p := fmt.Sprintf("m%d", i)
		if i%4 == 3 {
			p = fmt.Sprintf("d%d", i)
			resp, err = dco.Post(ctx, "/ps/f/t", message.TextPlain, bytes.NewReader([]byte(p)))
		} else {
			resp, err = pub.Post(ctx, "/ps/f/t", message.TextPlain, bytes.NewReader([]byte(p)))
		}
		checkCode(t, "publish "+p, resp, err, codes.Changed)
		sent = append(sent, p)
	}
	halt()
	wg.Wait()
	t.Logf("%d publishes answered in %v, meanwhile a flood of %d datagrams from %d ports (udp) and %d from %d (dtls)",
		len(sent)-2, time.Since(start), udpPorts.Load()*floodPerPort, udpPorts.Load(), dtlsPorts.Load()*3, dtlsPorts.Load())
	close(errs)
	for err := range errs {
		t.Fatalf("flood: %v", err)
	}
	var got []string
	for len(got) < len(sent) {
		select {
		case s := <-notes:
			got = append(got, s)
		case <-time.After(wait):
			t.Fatalf("notifications %q, want %q", got, sent)
		}
	}
	if !slices.Equal(got, sent) {
		t.Errorf("notifications %q, want %q", got, sent)
	}

	// The garbage peers' pseudo-connections are reaped at the idle
	// timeout; the good clients' stay.
	st := n.waitStats(t, "coap", "the garbage connections reaped", func(st gateway.ListenerStats) bool { return st.Active == 2 })
	garbageConns := st.Accepted - base.Accepted
	reaped := st.Closed[gateway.CloseIdleTimeout] - base.Closed[gateway.CloseIdleTimeout]
	t.Logf("udp: %d garbage connections (the other ports lost every datagram before the guest: in the kernel or the accept queue), %d reaped at the idle timeout, %d datagrams over max_packet_size", garbageConns, reaped, st.Dropped-base.Dropped)
	if garbageConns == 0 || garbageConns > uint64(udpPorts.Load()) {
		t.Errorf("%d garbage connections, want 1 to %d", garbageConns, udpPorts.Load())
	}
	if reaped != garbageConns {
		t.Errorf("%d garbage connections, %d closed at the idle timeout", garbageConns, reaped)
	}
	dst := n.waitStats(t, "psk", "the dtls garbage refused", func(st gateway.ListenerStats) bool {
		return st.Active == 1 && st.Refused[gateway.CauseHandshake] > dbase.Refused[gateway.CauseHandshake]
	})
	t.Logf("dtls: %d handshakes refused", dst.Refused[gateway.CauseHandshake]-dbase.Refused[gateway.CauseHandshake])
	if dst.Accepted != dbase.Accepted {
		t.Errorf("dtls: %d connections of garbage reached the guest", dst.Accepted-dbase.Accepted)
	}

	// The good clients still work, on the same connections.
	resp, err = pub.Post(ctx, "/ps/f/t", message.TextPlain, bytes.NewReader([]byte("after")))
	checkCode(t, "publish after the flood", resp, err, codes.Changed)
	select {
	case s := <-notes:
		if s != "after" {
			t.Errorf("notification %q after the flood", s)
		}
	case <-time.After(wait):
		t.Fatal("no notification after the flood")
	}
	if err := obs.Cancel(ctx); err != nil {
		t.Errorf("cancel: %v", err)
	}
	noFaults(t, n, "coap")
	noFaults(t, n, "psk")
	// And as an operator sees it: no Wasm fault, breaker closed, one
	// instance version, no faulted callback.
	_, body := adminGet(t, r, "/metrics")
	sc := bufio.NewScanner(bytes.NewReader(body))
	families := map[string]int{
		"protogate_wasm_faults_total":       0,
		"protogate_wasm_version_faults":     0,
		"protogate_wasm_breaker_open":       0,
		"protogate_handler_callbacks_total": 0,
	}
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || !strings.Contains(name, `handler="coap"`) {
			continue
		}
		family, _, _ := strings.Cut(name, "{")
		if _, ok := families[family]; !ok || strings.Contains(name, `outcome="ok"`) {
			continue
		}
		families[family]++
		if value != "0" {
			t.Errorf("metrics: %s", line)
		}
	}
	for f, k := range families {
		if k == 0 {
			t.Errorf("metrics: no %s for the coap handler in\n%s", f, body)
		}
	}
}
