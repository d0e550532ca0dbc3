package config

// This file is the check of "protogate validate" that dials the routes of
// broker.cluster.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// routeProbeTimeout bounds the dial and the INFO read of one route.
const routeProbeTimeout = time.Second

// routeInfo is what a route port says first: INFO {...}.
type routeInfo struct {
	ID      string `json:"server_id"`
	Name    string `json:"server_name"`
	Cluster string `json:"cluster"`
}

// probeRoute dials a route URL and reads the server's INFO line.
func probeRoute(u *url.URL, timeout time.Duration) (*routeInfo, error) {
	conn, err := net.DialTimeout("tcp", u.Host, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReaderSize(conn, 64<<10).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("no INFO line: %w", err)
	}
	rest, ok := strings.CutPrefix(line, "INFO ")
	if !ok {
		return nil, fmt.Errorf("not a NATS route port: it sent %.40q", line)
	}
	var info routeInfo
	if err := json.Unmarshal([]byte(rest), &info); err != nil {
		return nil, fmt.Errorf("not a NATS route port: bad INFO: %w", err)
	}
	return &info, nil
}

// probeRoutes dials the routes of cl (those at index in routes, already
// checked) but this node's own, and fails a route whose node has this
// node's name, or is in another cluster. A route that cannot be reached
// is a warning: protogate run keeps trying it.
func (v *validator) probeRoutes(cl *BrokerCluster, routes map[int]*url.URL) {
	type result struct {
		info *routeInfo
		err  error
	}
	res := make(map[int]result, len(routes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, u := range routes {
		if isOwnRoute(cl.Listen, u) {
			continue
		}
		wg.Go(func() {
			info, err := probeRoute(u, routeProbeTimeout)
			mu.Lock()
			res[i] = result{info, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, r := range res {
		u := routes[i]
		rp := joinIndex("broker.cluster.routes", i)
		switch {
		case r.err != nil:
			v.warnf(rp, "cannot check the node at %s: %v (protogate run keeps trying to reach it)", u.Host, r.err)
		case r.info.Name == v.c.Node.Name:
			v.errf(rp, "the node at %s (server_id %s) already has node.name %q: every node of a cluster needs its own name",
				u.Host, r.info.ID, r.info.Name)
		case r.info.Cluster != "" && r.info.Cluster != cl.Name:
			v.errf(rp, "the node at %s (%s) is in cluster %q, not %q (broker.cluster.name): the nodes would not join",
				u.Host, r.info.Name, r.info.Cluster, cl.Name)
		}
	}
}

// isOwnRoute reports whether route u leads to listen, this node's cluster
// address: same port, and the same host, or a host of this machine.
func isOwnRoute(listen string, u *url.URL) bool {
	host, port, msg := splitBind(listen)
	if msg != "" || u.Port() != strconv.Itoa(port) {
		return false
	}
	rh := strings.ToLower(u.Hostname())
	if rh == host {
		return true
	}
	ips, err := net.LookupIP(rh)
	if err != nil {
		return false
	}
	local := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				local[n.IP.String()] = true
			}
		}
	}
	for _, ip := range ips {
		if ip.IsLoopback() || local[ip.String()] {
			return host == "*" || isLoopback(host) || local[host] || ip.String() == host
		}
	}
	return false
}
