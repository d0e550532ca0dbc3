package config

// This file is the check of "protogate validate" that dials the routes of
// broker.cluster.

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/protogate/protogate/gateway/broker"
)

// routeProbeTimeout bounds the dial and the INFO read of one route.
const routeProbeTimeout = time.Second

// probeRoutes dials the routes of cl (those at index in routes, already
// checked) but this node's own, and fails a route whose node has this
// node's name, or is in another cluster. A route that cannot be reached
// is a warning: protogate run keeps trying it.
func (v *validator) probeRoutes(cl *BrokerCluster, routes map[int]*url.URL) {
	type result struct {
		info broker.RouteInfo
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
			info, err := broker.ProbeRoute(u.Host, routeProbeTimeout)
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
			v.warnf(rp, "cannot check the node at %s: %s (protogate run keeps trying to reach it)", u.Host, reason(r.err))
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
