package registry

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClaim measures one claim of a new client id on a 3-node
// cluster, sequentially, from node 1 (as a device's Authenticate waits for
// it), and one takeover: a claim of an id held on node 0. It reports the
// latency percentiles.
func BenchmarkClaim(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			_, regs := startNodes(b, k, 3)
			for _, mode := range []string{"new", "takeover"} {
				b.Run(mode, func(b *testing.B) {
					lat := make([]time.Duration, 0, b.N)
					ctx := context.Background()
					for i := range b.N {
						id := fmt.Sprintf("%s-%s-%d", k.name, mode, i)
						if mode == "takeover" {
							if _, err := regs[0].Claim(ctx, id, newConn("h"+id)); err != nil {
								b.Fatal(err)
							}
						}
						c := newConn("b" + id)
						start := time.Now()
						release, err := regs[1].Claim(ctx, id, c)
						lat = append(lat, time.Since(start))
						if err != nil {
							b.Fatal(err)
						}
						release()
					}
					reportLatency(b, lat)
				})
			}
		})
	}
}

// BenchmarkClaimStorm is many devices reconnecting at once, after an outage:
// 64 claimers on each of 3 nodes claim new ids as fast as the registry
// answers. It reports claims per second and the latency of a claim.
func BenchmarkClaimStorm(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			_, regs := startNodes(b, k, 3)
			const perNode = 64
			var next atomic.Int64
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for n, r := range regs {
				for range perNode {
					wg.Go(func() {
						var mine []time.Duration
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								break
							}
							id := fmt.Sprintf("storm-%s-%d", k.name, i)
							t0 := time.Now()
							_, err := r.Claim(context.Background(), id, newConn(fmt.Sprintf("s%d-%d", n, i)))
							mine = append(mine, time.Since(t0))
							if err != nil {
								b.Error(err)
								return
							}
						}
						mu.Lock()
						lat = append(lat, mine...)
						mu.Unlock()
					})
				}
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "claims/s")
			reportLatency(b, lat)
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}
