package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	coapoptions "github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/protogate/protogate/internal/loadstat"
)

// The coap group's own processes, started by the suite from its own
// binary as hidden subcommands (protogate-bench coap-serve ...), so that
// the plain server and the load run as separate processes, as every other
// group's do:
//
//	coap-serve    the baseline: a plain go-coap v3 UDP server answering
//	              POST|PUT /ps/... with 2.04 Changed; with -raw, the
//	              floor: one goroutine answering the same by hand
//	coap-load     N go-coap v3 UDP clients per server, each a CON POST and
//	              its piggybacked reply after the other, for a fixed time;
//	              with several servers, each loaded in turn, round after
//	              round
//	coap-observe  N raw UDP sockets each observing one topic (GET
//	              Observe:0); on "publish" from stdin, one CON POST to the
//	              topic and how many observers are notified
//
// coap-load prints one JSON line (internal/loadstat.Result) per server on
// stdout when it ends, coap-observe one.

// hiddenCommands are the subcommands main runs instead of the suite.
var hiddenCommands = map[string]func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error{
	"coap-serve":   cmdCoapServe,
	"coap-load":    cmdCoapLoad,
	"coap-observe": cmdCoapObserve,
}

// runHidden runs a hidden subcommand and returns the exit status.
func runHidden(name string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := hiddenCommands[name](ctx, args, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// cmdCoapServe is the baseline server: go-coap's UDP server with a handler
// that answers a POST or PUT under /ps/ with 2.04 Changed and anything else
// with 4.04. It prints "listening <addr>" and runs until SIGTERM. With
// -raw, it is serveCoapRaw.
func cmdCoapServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("coap-serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "UDP `host:port` to listen on")
	raw := fs.Bool("raw", false, "answer by hand in one goroutine instead of with go-coap's server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *raw {
		return serveCoapRaw(ctx, *listen, stdout)
	}
	l, err := coapnet.NewListenUDP("udp", *listen)
	if err != nil {
		return fmt.Errorf("protogate-bench: coap-serve: %w", err)
	}
	defer l.Close()
	s := udp.NewServer(coapoptions.WithHandlerFunc(func(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message) {
		code := codes.NotFound
		if p, err := r.Path(); err == nil && strings.HasPrefix(p, "/ps/") && (r.Code() == codes.POST || r.Code() == codes.PUT) {
			code = codes.Changed
		}
		w.SetResponse(code, message.TextPlain, nil)
	}))
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	fmt.Fprintf(stdout, "listening %s\n", l.LocalAddr())
	select {
	case <-ctx.Done():
		s.Stop()
		<-done
		return nil
	case err := <-done:
		return fmt.Errorf("protogate-bench: coap-serve: %w", err)
	}
}

// serveCoapRaw is the floor of the CoAP cases, as serve-echo -udp is of
// the udp group: one goroutine reads each datagram, parses it and answers
// a CON POST or PUT under /ps/ with a piggybacked 2.04, an empty CON with
// RST and any other CON with 4.04; no deduplication, no state per peer.
func serveCoapRaw(ctx context.Context, listen string, stdout io.Writer) error {
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return fmt.Errorf("protogate-bench: coap-serve: %w", err)
	}
	uc := pc.(*net.UDPConn)
	fmt.Fprintf(stdout, "listening %s\n", uc.LocalAddr())
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	buf := make([]byte, 65536)
	var out []byte
	var m coapMsg
	for {
		n, from, err := uc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("protogate-bench: coap-serve: %w", err)
		}
		if parseCoap(buf[:n], &m) != nil || m.typ != coapCON {
			continue
		}
		switch {
		case m.code == 0:
			out = appendCoap(out[:0], coapRST, 0, m.mid, nil, nil, nil)
		case (m.code == coapPOST || m.code == coapPUT) && m.underPS():
			out = appendCoap(out[:0], coapACK, coapChanged, m.mid, m.token, nil, nil)
		default:
			out = appendCoap(out[:0], coapACK, coapNotFound, m.mid, m.token, nil, nil)
		}
		uc.WriteToUDPAddrPort(out, from)
	}
}

// coapLoadConfig configures runCoapLoad.
type coapLoadConfig struct {
	addrs, labels, nats []string // per target; nats[i] "" for none
	topic               string
	conns, size, rounds int
	duration, warmup    time.Duration // per round
	timeout             time.Duration // one request's deadline
}

func cmdCoapLoad(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	var c coapLoadConfig
	var addrs, labels, natsURLs string
	fs := flag.NewFlagSet("coap-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&addrs, "addr", "", "UDP `host:port` of each CoAP server measured, comma separated (required)")
	fs.StringVar(&labels, "label", "", "comma-separated names of the servers, the results' targets (default -addr)")
	fs.StringVar(&natsURLs, "nats", "", "comma-separated NATS `URL`s, one per server or empty: before the run, check that a POST arrives there")
	fs.StringVar(&c.topic, "topic", "bench/coap/load", "the topic: requests are POST /ps/TOPIC")
	fs.IntVar(&c.conns, "conns", 100, "go-coap clients per server, each with its own socket")
	fs.IntVar(&c.size, "size", 64, "payload `bytes`")
	fs.IntVar(&c.rounds, "rounds", 1, "rounds: in each, every server in turn gets -warmup then -duration of load")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time per server and round")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "time before measuring starts, per server and round")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "a request not answered within this time is an error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.addrs = strings.Split(addrs, ",")
	c.labels, c.nats = c.addrs, make([]string, len(c.addrs))
	if labels != "" {
		c.labels = strings.Split(labels, ",")
	}
	if natsURLs != "" {
		c.nats = strings.Split(natsURLs, ",")
	}
	if addrs == "" || len(c.labels) != len(c.addrs) || len(c.nats) != len(c.addrs) {
		return errors.New("protogate-bench: coap-load: -addr is required, and -label and -nats, when given, name as many as it")
	}
	if c.conns <= 0 || c.size < 0 || c.rounds <= 0 || c.duration <= 0 || c.warmup < 0 || c.timeout <= 0 {
		return errors.New("protogate-bench: coap-load: -conns, -rounds, -duration and -timeout must be positive")
	}
	rs, err := runCoapLoad(ctx, c, stderr)
	if err != nil {
		return err
	}
	for _, r := range rs {
		fmt.Fprintln(stderr, r.Summary())
		if err := r.WriteJSON(stdout); err != nil {
			return err
		}
	}
	return nil
}

// coapTarget is one server of a coap-load run and what it measured.
type coapTarget struct {
	addr, label string
	clients     []*udpclient.Conn // nil: failed its probe
	h           loadstat.Histogram
	r           loadstat.Result
}

// runCoapLoad dials the clients of every server and checks each gets a
// 2.04 (and, with a NATS URL, that a POST arrives on the broker), then
// loads the servers one after the other, round after round, so that what
// else the machine does weighs on each about alike. It returns a result
// per server, in order.
func runCoapLoad(ctx context.Context, c coapLoadConfig, stderr io.Writer) ([]*loadstat.Result, error) {
	path := "/ps/" + c.topic
	payload := bytes.Repeat([]byte("c"), c.size)
	ts := make([]*coapTarget, len(c.addrs))
	for i, addr := range c.addrs {
		t := &coapTarget{addr: addr, label: c.labels[i], clients: make([]*udpclient.Conn, c.conns)}
		t.r = loadstat.Result{Scenario: "coap", Target: t.label, Conns: c.conns, Size: c.size, Depth: 1}
		ts[i] = t
		var probeErrs atomic.Uint64
		var firstErr atomic.Pointer[string]
		var wg sync.WaitGroup
		for j := range t.clients {
			co, err := udp.Dial(addr)
			if err != nil {
				return nil, fmt.Errorf("protogate-bench: coap-load: %w", err)
			}
			defer co.Close()
			t.clients[j] = co
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The first request of a client, answered however late
				// (go-coap retransmits it).
				pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				resp, err := co.Post(pctx, path, message.AppOctets, bytes.NewReader(payload))
				if err != nil || resp.Code() != codes.Changed {
					what := fmt.Sprint(err)
					if err == nil {
						what = resp.Code().String()
					}
					firstErr.CompareAndSwap(nil, &what)
					probeErrs.Add(1)
					t.clients[j] = nil
					return
				}
				co.ReleaseMessage(resp)
			}()
		}
		wg.Wait()
		t.r.Errors = probeErrs.Load()
		if int(t.r.Errors) == c.conns {
			return nil, fmt.Errorf("protogate-bench: coap-load: no client got 2.04 Changed from %s: %s", addr, *firstErr.Load())
		}
		if c.nats[i] != "" {
			ok := slices.DeleteFunc(slices.Clone(t.clients), func(co *udpclient.Conn) bool { return co == nil })
			if err := checkNATS(ctx, c.nats[i], c.topic, ok[0], path); err != nil {
				return nil, err
			}
		}
	}
	for round := range c.rounds {
		for _, t := range ts {
			if err := ctx.Err(); err != nil {
				break
			}
			t.phase(ctx, c, path, payload)
			fmt.Fprintf(stderr, "coap-load: round %d/%d, %s: %d msgs so far\n", round+1, c.rounds, t.label, t.r.Msgs)
		}
	}
	rs := make([]*loadstat.Result, len(ts))
	for i, t := range ts {
		if t.r.Seconds > 0 {
			t.r.MsgsPerS = float64(t.r.Msgs) / t.r.Seconds
		}
		t.r.SetLatency(&t.h)
		rs[i] = &t.r
	}
	return rs, nil
}

// phase runs the closed loop of t's clients for c.warmup, then measures
// for c.duration: a request counts when it started and ended within it.
func (t *coapTarget) phase(ctx context.Context, c coapLoadConfig, path string, payload []byte) {
	start := time.Now()
	from, end := start.Add(c.warmup), start.Add(c.warmup+c.duration)
	type worker struct {
		h              loadstat.Histogram
		n, errs, wrong uint64
	}
	ws := make([]worker, len(t.clients))
	var wg sync.WaitGroup
	for i, co := range t.clients {
		if co == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &ws[i]
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, c.timeout)
				resp, err := co.Post(rctx, path, message.AppOctets, bytes.NewReader(payload))
				cancel()
				t1 := time.Now()
				measured := !t0.Before(from) && !t1.After(end)
				switch {
				case err != nil:
					if measured && ctx.Err() == nil {
						w.errs++
					}
					continue
				case resp.Code() != codes.Changed:
					if measured {
						w.wrong++
					}
				case measured:
					w.n++
					w.h.Record(t1.Sub(t0))
				}
				co.ReleaseMessage(resp)
			}
		}()
	}
	wg.Wait()
	for i := range ws {
		t.h.Merge(&ws[i].h)
		t.r.Msgs += ws[i].n
		t.r.Errors += ws[i].errs
		t.r.Mismatch += ws[i].wrong
	}
	measured := c.duration
	if el := time.Since(from); el < measured {
		measured = max(el, time.Millisecond) // cut short by a signal
	}
	t.r.Seconds += measured.Seconds()
}

// checkNATS subscribes to topic's subject on the broker at url and POSTs
// once through co: the message must arrive on NATS.
func checkNATS(ctx context.Context, url, topic string, co *udpclient.Conn, path string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("protogate-bench: coap-load: %w", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(strings.ReplaceAll(topic, "/", "."))
	if err != nil {
		return fmt.Errorf("protogate-bench: coap-load: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("protogate-bench: coap-load: %w", err)
	}
	want := []byte("nats-check")
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := co.Post(rctx, path, message.AppOctets, bytes.NewReader(want))
	if err != nil {
		return fmt.Errorf("protogate-bench: coap-load: nats check: %w", err)
	}
	co.ReleaseMessage(resp)
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			return fmt.Errorf("protogate-bench: coap-load: the POST did not arrive on NATS subject %s: %w", sub.Subject, err)
		}
		if bytes.Equal(m.Data, want) {
			return nil
		}
	}
}

// observeConfig configures runCoapObserve.
type observeConfig struct {
	addr, topic string
	peers       int
	window      int           // registrations in flight at once
	deadline    time.Duration // for every observer to get the publish
}

func cmdCoapObserve(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var c observeConfig
	fs := flag.NewFlagSet("coap-observe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "", "UDP `host:port` of the CoAP server (required)")
	fs.StringVar(&c.topic, "topic", "bench/coap/obs", "the topic observed: GET /ps/TOPIC with Observe 0")
	fs.IntVar(&c.peers, "peers", 10000, "observers, each a UDP socket of its own")
	fs.IntVar(&c.window, "window", 256, "registrations in flight at once")
	fs.DurationVar(&c.deadline, "deadline", 10*time.Second, "time for every observer to get the published message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.addr == "" || c.peers <= 0 || c.window <= 0 || c.deadline <= 0 {
		return errors.New("protogate-bench: coap-observe: -addr, and positive -peers, -window and -deadline, are required")
	}
	r, err := runCoapObserve(ctx, c, stdin, stdout, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "coap-observe: %d of %d registered at %.0f/s\n", r.Held, r.Conns, r.AcceptPS)
	if r.Published > 0 {
		fmt.Fprintf(stderr, "coap-observe: the publish reached %d within %v, p50 %.0f p99 %.0f µs\n", r.Msgs, c.deadline, r.P50us, r.P99us)
	}
	return r.WriteJSON(stdout)
}

// observer is one observing socket.
type observer struct {
	uc         *net.UDPConn
	token      [4]byte
	got        atomic.Int64 // when the publish arrived (ns since the publish was sent), 0: not yet
	wrong      atomic.Uint64
	registered bool
}

// runCoapObserve registers the observers, prints "registered N" on stdout
// and waits for a line on stdin: "publish" publishes one message to the
// topic and waits for the observers to get it; anything else, or EOF, ends
// the run without a publish. Observers are held until it returns.
func runCoapObserve(ctx context.Context, c observeConfig, stdin io.Reader, stdout, stderr io.Writer) (*loadstat.Result, error) {
	if limit, ok := fileLimit(); ok && uint64(c.peers)+64 > limit {
		return nil, fmt.Errorf("protogate-bench: coap-observe: %d sockets do not fit in the limit of %d open files", c.peers, limit)
	}
	raddr, err := net.ResolveUDPAddr("udp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("protogate-bench: coap-observe: %w", err)
	}
	path := "/ps/" + c.topic
	obs := make([]*observer, c.peers)
	defer func() {
		for _, o := range obs {
			if o != nil {
				o.uc.Close()
			}
		}
	}()
	for i := range obs {
		uc, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return nil, fmt.Errorf("protogate-bench: coap-observe: socket %d: %w", i, err)
		}
		o := &observer{uc: uc}
		o.token = [4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		obs[i] = o
	}

	var published atomic.Int64 // clock of the publish, 0 before
	want := []byte("bench-coap-observe")
	sem := make(chan struct{}, c.window)
	var reg, readers sync.WaitGroup
	var failed atomic.Uint64
	start := time.Now()
	for i, o := range obs {
		reg.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				failed.Add(1)
				reg.Done()
				return
			}
			o.registered = o.register(uint16(i), path)
			<-sem
			if !o.registered {
				failed.Add(1)
			}
			reg.Done()
			if o.registered {
				o.notifications(want, &published)
			}
		}()
	}
	reg.Wait()
	regTime := time.Since(start)
	held := c.peers - int(failed.Load())
	r := &loadstat.Result{Scenario: "coap-observe", Target: c.addr, Conns: c.peers, Seconds: regTime.Seconds(),
		Held: held, AcceptPS: float64(held) / regTime.Seconds(), Errors: failed.Load()}
	fmt.Fprintf(stdout, "registered %d of %d in %v\n", held, c.peers, regTime.Round(time.Millisecond))
	fmt.Fprintf(stderr, "coap-observe: registered %d of %d in %v\n", held, c.peers, regTime.Round(time.Millisecond))

	line, _ := bufio.NewReader(stdin).ReadString('\n')
	if strings.TrimSpace(line) == "publish" && held > 0 {
		pub, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return nil, fmt.Errorf("protogate-bench: coap-observe: %w", err)
		}
		defer pub.Close()
		t0 := time.Now()
		published.Store(int64(time.Since(observeStart)))
		if err := publishOnce(pub, path, want); err != nil {
			return nil, err
		}
		r.Published = 1
		deadline := t0.Add(c.deadline)
		count := func() int {
			n := 0
			for _, o := range obs {
				if o.got.Load() != 0 {
					n++
				}
			}
			return n
		}
		for count() < held && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		var h loadstat.Histogram
		for _, o := range obs {
			if d := o.got.Load(); d != 0 && d <= int64(c.deadline) {
				h.Record(time.Duration(d))
				r.Msgs++
			}
			r.Mismatch += o.wrong.Load()
		}
		r.Lost = uint64(held) - r.Msgs
		r.SetLatency(&h)
	}
	for _, o := range obs {
		o.uc.Close() // ends the readers
	}
	readers.Wait()
	return r, nil
}

// register sends the observation request and waits for its 2.05 with an
// Observe option, retransmitting it as RFC 7252 says (2 s doubling, 4
// retransmissions).
func (o *observer) register(mid uint16, path string) bool {
	req := observeRequest(mid, o.token[:], path)
	buf := make([]byte, 1500)
	var m coapMsg
	timeout := 2 * time.Second
	for range 5 {
		if _, err := o.uc.Write(req); err != nil {
			return false
		}
		o.uc.SetReadDeadline(time.Now().Add(timeout))
		for {
			n, err := o.uc.Read(buf)
			if err != nil {
				break // timeout: retransmit
			}
			if parseCoap(buf[:n], &m) != nil || m.mid != mid || m.typ != coapACK {
				continue
			}
			o.uc.SetReadDeadline(time.Time{})
			_, observed := m.observe()
			return m.code == coapContent && bytes.Equal(m.token, o.token[:]) && observed
		}
		timeout *= 2
	}
	return false
}

// notifications reads the observer's notifications until its socket is
// closed, acknowledging each CON one and recording when the published
// message arrives.
func (o *observer) notifications(want []byte, published *atomic.Int64) {
	buf := make([]byte, 1500)
	var m coapMsg
	for {
		n, err := o.uc.Read(buf)
		if err != nil {
			return
		}
		if parseCoap(buf[:n], &m) != nil {
			continue
		}
		if m.typ == coapCON {
			o.uc.Write(emptyACK(m.mid))
		}
		if (m.typ != coapCON && m.typ != coapNON) || m.code != coapContent || !bytes.Equal(m.token, o.token[:]) {
			continue
		}
		if p := published.Load(); p != 0 && bytes.Equal(m.payload, want) {
			o.got.CompareAndSwap(0, max(int64(time.Since(observeStart))-p, 1))
		} else {
			o.wrong.Add(1)
		}
	}
}

// observeStart is the origin of the publish clock of coap-observe.
var observeStart = time.Now()

// publishOnce sends a CON POST of payload to path and waits for its 2.04.
func publishOnce(uc *net.UDPConn, path string, payload []byte) error {
	const mid = 0xbe01
	req := appendCoap(nil, coapCON, coapPOST, mid, []byte{0xbe}, pathOpts(path), payload)
	buf := make([]byte, 1500)
	var m coapMsg
	timeout := 2 * time.Second
	for range 5 {
		if _, err := uc.Write(req); err != nil {
			return fmt.Errorf("protogate-bench: coap-observe: publish: %w", err)
		}
		uc.SetReadDeadline(time.Now().Add(timeout))
		for {
			n, err := uc.Read(buf)
			if err != nil {
				break
			}
			if parseCoap(buf[:n], &m) != nil || m.mid != mid || m.typ != coapACK {
				continue
			}
			if m.code != coapChanged {
				return fmt.Errorf("protogate-bench: coap-observe: publish answered %d.%02d", m.code>>5, m.code&31)
			}
			return nil
		}
		timeout *= 2
	}
	return errors.New("protogate-bench: coap-observe: publish not answered")
}
