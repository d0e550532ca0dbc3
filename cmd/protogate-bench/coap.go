package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

// The coap group: CoAP publishes through builtin:coap on a udp listener,
// as a ratio to a plain go-coap server under the same load; and many
// observing peers held by the gateway, with the memory each costs.

// coapHandler is the YAML of the builtin:coap handler. The call timeout is
// the cluster group's: the default 100ms is short for a guest call on two
// cores shared with the load.
const coapHandler = "handlers:\n  coap:\n    wasm:\n      path: builtin:coap\n      call_timeout: 1s\n"

// coapBody is a gateway config with builtin:coap on a udp listener (with
// the extra listener YAML), the embedded NATS server open on natsPort and
// the admin API on adminPort (not on its default port, which another
// protogate on the machine may hold).
func coapBody(udpPort, natsPort, adminPort int, extra string) string {
	return fmt.Sprintf("admin:\n  bind: 127.0.0.1:%d\nbroker:\n  nats_listen: 127.0.0.1:%d\n%slisteners:\n%s%s",
		adminPort, natsPort, coapHandler, listener("udp", udpPort, "coap"), extra)
}

// smallPackets caps a udp listener's datagrams at CoAP's 1152 bytes (RFC
// 7252 §4.6). Until issue 13 the gateway gave each peer a read buffer of
// max_packet_size + 1 bytes, 64 KiB by default; now a peer holds none, and
// the row shows that the setting no longer changes what a peer costs.
const smallPackets = "    max_packet_size: 1152\n"

// self is this binary, which runs the group's server and load as hidden
// subcommands.
func self() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("protogate-bench: %w", err)
	}
	return exe, nil
}

// coapCases: the publish load against the plain go-coap server, then
// against builtin:coap; then the observers on a fresh gateway.
func (s *suite) coapCases(ctx context.Context) error {
	exe, err := self()
	if err != nil {
		return err
	}
	if err := s.coapPublish(ctx, exe); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	// The observers with the listener's defaults, then with datagrams
	// capped at 1152 bytes.
	if err := s.coapObserve("coap-observe", exe, ""); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	return s.coapObserve("coap-observe-1152", exe, smallPackets)
}

// coapPublish starts the floor (by hand, one goroutine), the plain go-coap
// server and a gateway, all three at once, and runs one coap-load that
// loads them in turn, round after round: on a machine shared with other
// work, a ratio of two runs made in turn is steadier than one of two runs
// made one after the other. Idle, the two servers that are not loaded
// take no CPU.
func (s *suite) coapPublish(ctx context.Context, exe string) error {
	ports, err := freePorts(3, true)
	if err != nil {
		return err
	}
	udpAddr, nats := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	return s.withGateway("gw-coap", coapBody(ports[0], ports[1], ports[2], ""), 0, func(g *proc) error {
		var addrs []string
		for _, b := range []struct{ name, flag string }{{"floor-coap-raw", "-raw"}, {"floor-coap", "-raw=false"}} {
			p, err := s.start(b.name, exe, "coap-serve", b.flag, "-listen", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer func() {
				if err := p.stop(10 * time.Second); err != nil {
					fmt.Fprintf(os.Stderr, "protogate-bench: %v\n", err)
				}
			}()
			addr, err := p.listening(10 * time.Second)
			if err != nil {
				return err
			}
			if err := waitCoap(addr, p, 10*time.Second); err != nil {
				return err
			}
			addrs = append(addrs, addr)
		}
		if err := waitCoap(udpAddr, g, 20*time.Second); err != nil {
			return err
		}
		addrs = append(addrs, udpAddr)
		rs, err := s.loadResults(ctx, "load-coap", exe, 3, "coap-load",
			"-addr", strings.Join(addrs, ","), "-label", "raw,go-coap,builtin:coap", "-nats", ",,nats://"+nats,
			"-conns", s.n(100, 10), "-size", "64", "-rounds", s.n(3, 1),
			"-duration", s.dur(4*time.Second, time.Second), "-warmup", s.dur(time.Second, 200*time.Millisecond))
		if err != nil {
			return err
		}
		for i, name := range []string{"floor-coap-raw", "floor-coap", "wasm-coap"} {
			s.record(name, rs[i], nil)
		}
		return nil
	})
}

// coapObserve starts a gateway (its udp listener with the extra YAML),
// takes its idle RSS, registers the observers (coap-observe), takes the RSS
// again with all of them held, then has one message published and counts
// the observers it reaches. The result is recorded as case name.
func (s *suite) coapObserve(name, exe, extra string) error {
	peers := s.n(10000, 200)
	n, _ := strconv.Atoi(peers)
	ports, err := freePorts(3, true)
	if err != nil {
		return err
	}
	settle := time.Second
	if s.opts.quick {
		settle = 200 * time.Millisecond
	}
	return s.withGateway("gw-"+name, coapBody(ports[0], ports[1], ports[2], extra), 0, func(g *proc) error {
		if err := waitCoap(fmt.Sprintf("127.0.0.1:%d", ports[0]), g, 20*time.Second); err != nil {
			return err
		}
		base, err := medianRSS(g, settle)
		if err != nil {
			return err
		}
		obs, err := s.startStdin("load-"+name, exe, "coap-observe", "-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
			"-peers", peers, "-deadline", "10s")
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  load-%s: %d observers\n", name, n)
		defer obs.stop(10 * time.Second)
		if _, err := obs.waitLine("registered ", 5*time.Minute); err != nil {
			return err
		}
		held, err := medianRSS(g, settle)
		if err != nil {
			return err
		}
		if _, err := obs.stdin.Write([]byte("publish\n")); err != nil {
			return fmt.Errorf("protogate-bench: load-%s: %w", name, err)
		}
		select {
		case <-obs.done:
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("protogate-bench: load-%s did not end within 2m of the publish", name)
		}
		if obs.err != nil {
			return fmt.Errorf("protogate-bench: load-%s: %w", name, obs.err)
		}
		var r loadstat.Result
		if err := json.Unmarshal([]byte(obs.lastLine()), &r); err != nil {
			return fmt.Errorf("protogate-bench: load-%s: reading its result: %w", name, err)
		}
		m := memResult{BaseKiB: base, PeakKiB: held}
		if r.Held > 0 {
			m.PerConnKB = (held - base) / float64(r.Held)
		}
		s.record(name, &r, &m)
		return nil
	})
}

// waitCoap waits until a CoAP server answers a ping (an empty CON, which
// RFC 7252 answers with RST) on the UDP address addr: the gateway opens its
// udp listeners after its broker, and go-coap gives up on a socket that
// got ICMP port unreachable.
func waitCoap(addr string, p *proc, timeout time.Duration) error {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("protogate-bench: %w", err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	var m coapMsg
	for mid := uint16(1); ; mid++ {
		if err := p.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("protogate-bench: %s: no CoAP answer on %s within %v", p.name, addr, timeout)
		}
		uc, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return fmt.Errorf("protogate-bench: %w", err)
		}
		uc.Write(appendCoap(nil, coapCON, 0, mid, nil, nil, nil))
		uc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := uc.Read(buf)
		uc.Close()
		if err == nil && parseCoap(buf[:n], &m) == nil && m.mid == mid && m.typ == coapRST {
			return nil
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			time.Sleep(50 * time.Millisecond) // refused: not listening yet
		}
	}
}

// medianRSS lets the process settle and returns the median of 5 RSS
// samples taken over settle.
func medianRSS(p *proc, settle time.Duration) (float64, error) {
	time.Sleep(settle)
	var samples []float64
	for range 5 {
		v, err := p.rssKiB()
		if err != nil {
			return 0, err
		}
		samples = append(samples, float64(v))
		time.Sleep(settle / 5)
	}
	slices.Sort(samples)
	return samples[len(samples)/2], nil
}

// coapRows are the coap group's rows.
func coapRows(res map[string]*loadstat.Result, mem map[string]memResult) []row {
	var rows []row
	raw, fl := res["floor-coap-raw"], res["floor-coap"]
	if raw != nil {
		rows = append(rows, row{name: fmt.Sprintf("floor: plain Go UDP CoAP responder (one goroutine, by hand), %d go-coap clients x 64 B CON POST", raw.Conns),
			measured: perf(raw), met: yes(clean(raw))})
	}
	if fl != nil {
		rows = append(rows, row{name: fmt.Sprintf("baseline: plain go-coap v3 UDP server, %d go-coap clients x 64 B CON POST, 2.04 piggybacked", fl.Conns),
			measured: perf(fl), met: yes(clean(fl))})
	}
	if r := res["wasm-coap"]; r != nil && fl != nil {
		tp := r.MsgsPerS / fl.MsgsPerS
		vsRaw := ""
		if raw != nil {
			vsRaw = fmt.Sprintf(" (%.2f x floor)", r.MsgsPerS/raw.MsgsPerS)
		}
		rows = append(rows, row{name: "CoAP CON publish via builtin:coap (POST /ps/{topic} to NATS, 2.04 piggybacked)", measured: perf(r),
			baseline: "plain go-coap server", ratio: fmt.Sprintf("%.2f x msgs/s, %.2f x p99%s", tp, r.P99us/fl.P99us, vsRaw),
			target: ">= 0.5 x msgs/s", met: yes(tp >= 0.5 && clean(r))})
	}
	for _, c := range []struct{ name, what string }{
		{"coap-observe", ""},
		{"coap-observe-1152", ", listener max_packet_size: 1152"},
	} {
		r := res[c.name]
		if r == nil {
			continue
		}
		m := mem[c.name]
		var base, ratio string
		if d, ok := mem["coap-observe"]; ok && c.name != "coap-observe" && d.PerConnKB > 0 {
			base, ratio = "listener defaults", fmt.Sprintf("%.2f x KiB/peer", m.PerConnKB/d.PerConnKB)
		}
		rows = append(rows, row{name: fmt.Sprintf("%d CoAP observers (GET /ps/{topic} Observe:0) held by builtin:coap%s", r.Conns, c.what), baseline: base, ratio: ratio,
			measured: fmt.Sprintf("%.1f KiB/peer (idle RSS %.0f -> %.0f MiB), %d registered at %.0f/s; 1 publish reached %d within 10 s, p50 %.0f p99 %.0f µs",
				m.PerConnKB, m.BaseKiB/1024, m.PeakKiB/1024, r.Held, r.AcceptPS, r.Msgs, r.P50us, r.P99us),
			target: "all registered and notified", met: yes(r.Held == r.Conns && r.Msgs == uint64(r.Held) && r.Mismatch == 0)})
	}
	return rows
}
