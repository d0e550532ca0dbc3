package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/protogate/protogate/internal/loadstat"
)

// The cluster group: fan-out from a device on one node of a 3-node cluster
// to devices on the two others, against the same fan-out on one
// unclustered node, in the same run.

// linepubsubHandler is the handler of the cluster group's listeners. The
// default call_timeout (100ms) is short for a guest call on two cores
// loaded with 3 gateways and a 1,000-connection load tool.
const linepubsubHandler = "handlers:\n  line:\n    wasm:\n      path: builtin:linepubsub\n      call_timeout: 1s\n"

// fanoutDeviceArgs are the protogate-load arguments of a fan-out from a
// device publisher on pub to the subscribers on subs (comma separated).
func (s *suite) fanoutDeviceArgs(pub, subs, label string) []string {
	return []string{"fanout", "-pubgateway", pub, "-gateway", subs, "-subs", s.n(1000, 50), "-size", "64",
		"-duration", s.dur(10*time.Second, time.Second), "-warmup", s.dur(2*time.Second, 200*time.Millisecond),
		"-topic", "bench/fanout", "-label", label}
}

// clusterCases: the baseline, a device publishing to 1,000 devices on one
// unclustered node; then 3 clustered nodes, the publishing device on node
// A and the 1,000 subscribers split between B and C, so every message
// crosses a route to each of them.
func (s *suite) clusterCases(ctx context.Context) error {
	ports, err := freePorts(2, false)
	if err != nil {
		return err
	}
	dev := fmt.Sprintf("127.0.0.1:%d", ports[0])
	body := fmt.Sprintf("admin:\n  bind: 127.0.0.1:%d\n%slisteners:\n%s", ports[1], linepubsubHandler, listener("tcp", ports[0], "line"))
	err = s.withGateway("gw-cluster-single", body, ports[0], func(*proc) error {
		r, err := s.load(ctx, "load-cluster-single", s.fanoutDeviceArgs(dev, dev, "one node")...)
		if err != nil {
			return err
		}
		s.record("cluster-single", r, nil)
		return nil
	})
	if err != nil {
		return err
	}
	return s.withCluster(ctx, 3, func(devs []string) error {
		r, err := s.load(ctx, "load-cluster-cross", s.fanoutDeviceArgs(devs[0], devs[1]+","+devs[2], "cluster: node A to nodes B and C")...)
		if err != nil {
			return err
		}
		s.record("cluster-cross", r, nil)
		return nil
	})
}

// withCluster starts n protogate nodes clustered with routes on 127.0.0.1,
// each with a linepubsub listener, waits until every node sees the others
// and the client-id registry takes claims, runs f with the listeners'
// addresses and stops the nodes.
func (s *suite) withCluster(ctx context.Context, n int, f func(devs []string) error) error {
	// Per node: the device listener, the route listener, admin, adapter.
	ports, err := freePorts(4*n, false)
	if err != nil {
		return err
	}
	var routes, devs, admins []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[4*i+1]))
		devs = append(devs, fmt.Sprintf("127.0.0.1:%d", ports[4*i]))
		admins = append(admins, fmt.Sprintf("127.0.0.1:%d", ports[4*i+2]))
	}
	var nodes []*proc
	stop := func() error {
		errs := make(chan error, len(nodes))
		for _, p := range nodes {
			go func() { errs <- p.stop(30 * time.Second) }()
		}
		var all []error
		for range nodes {
			all = append(all, <-errs)
		}
		return errors.Join(all...)
	}
	for i := range n {
		node := "node-" + string(rune('a'+i))
		body := fmt.Sprintf("admin:\n  bind: %s\nbroker:\n  cluster:\n    name: bench\n    listen: 127.0.0.1:%d\n    routes: [%s]\n%slisteners:\n%s",
			admins[i], ports[4*i+1], strings.Join(routes, ", "), linepubsubHandler, listener("tcp", ports[4*i], "line"))
		p, err := s.gatewayNode("gw-cluster-"+node, node, fmt.Sprintf("127.0.0.1:%d", ports[4*i+3]), body)
		if err != nil {
			stop()
			return err
		}
		nodes = append(nodes, p)
	}
	t0 := time.Now()
	for i, p := range nodes {
		if err := waitTCP(devs[i], p, 30*time.Second); err != nil {
			stop()
			return err
		}
		if err := waitClustered(ctx, p, admins[i], n, 60*time.Second); err != nil {
			stop()
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "  %d nodes clustered in %v\n", n, time.Since(t0).Round(time.Millisecond))
	ferr := f(devs)
	serr := stop()
	if ferr != nil {
		return ferr
	}
	return serr
}

// clusterStatus is what the suite reads of GET /api/v1/cluster.
type clusterStatus struct {
	Peers           []string `json:"peers"`
	JetStreamLeader string   `json:"jetstream_leader"`
	Registry        *struct {
		Backend   string `json:"backend"`
		Available bool   `json:"available"`
	} `json:"registry"`
}

// waitClustered waits until the node whose admin API is at admin is
// connected to the n-1 others, JetStream has a meta leader and the
// client-id registry takes claims (a device that connects before it does
// is refused).
func waitClustered(ctx context.Context, p *proc, admin string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		st, err := getCluster(ctx, "http://"+admin+"/api/v1/cluster")
		if err == nil {
			if len(st.Peers) == n-1 && st.JetStreamLeader != "" && (st.Registry == nil || st.Registry.Available) {
				return nil
			}
			b, _ := json.Marshal(st)
			last = string(b)
		} else {
			last = err.Error()
		}
		if err := p.alive(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("protogate-bench: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("protogate-bench: %s: not clustered after %v: %s", p.name, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getCluster(ctx context.Context, url string) (*clusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var st clusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return &st, nil
}

// clusterRows are the cluster group's rows of the table.
func clusterRows(res map[string]*loadstat.Result) []row {
	var rows []row
	one, cl := res["cluster-single"], res["cluster-cross"]
	if one != nil {
		rows = append(rows, row{name: fmt.Sprintf("one node: 1 linepubsub device publishing to %d linepubsub devices", one.Conns),
			measured: perf(one), met: yes(clean(one))})
	}
	if cl != nil {
		r := row{name: fmt.Sprintf("cross-node fan-out: device on node A of 3 to %d devices on nodes B and C", cl.Conns),
			measured: perf(cl), target: "(none)", met: yes(clean(cl))}
		if one != nil {
			r.baseline = fmt.Sprintf("one node: %.0f msgs/s, p99 %.0f µs", one.MsgsPerS, one.P99us)
			r.ratio = fmt.Sprintf("%.2f x deliveries/s, %.2f x p99", cl.MsgsPerS/one.MsgsPerS, cl.P99us/one.P99us)
		}
		rows = append(rows, r)
	}
	return rows
}
