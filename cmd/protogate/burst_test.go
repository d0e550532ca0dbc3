package main

import (
	"bufio"
	"bytes"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
)

// TestBurstArrivesWhole is the burst of issue [5] through builtin:linepubsub:
// a device publishes 100,000 lines of 1 KB as fast as TCP takes them to a
// filter another device subscribes to and reads as fast as it can. Every
// message arrives, in order, with and without a second subscriber that
// reads nothing, and the gateway's heap stays bounded: the publisher is
// slowed down, nothing piles up.
func TestBurstArrivesWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 100 MB through the gateway")
	}
	for _, stalled := range []bool{false, true} {
		t.Run(fmt.Sprintf("stalled=%v", stalled), func(t *testing.T) {
			cfg, err := config.Parse([]byte(`
node: {data_dir: ` + sharedDataDir + `}
handlers:
  line: {wasm: {path: "builtin:linepubsub", call_timeout: 5s}}
listeners:
  - {name: l, type: tcp, bind: "127.0.0.1:0", handler: line}
`))
			if err != nil {
				t.Fatal(err)
			}
			r := startRun(t, cfg)
			addr := r.listeners["l"].String()
			sub := dialLines(t, addr)
			if got := sub.cmd("SUB burst/#"); got != "OK" {
				t.Fatalf("SUB: %q", got)
			}
			if stalled {
				st := dialLines(t, addr)
				if got := st.cmd("SUB burst/#"); got != "OK" {
					t.Fatalf("SUB: %q", got)
				}
			}
			pub := dialLines(t, addr)
			// The publisher's OKs are read, so that it is not a slow reader
			// itself.
			var wg sync.WaitGroup
			defer wg.Wait()
			wg.Add(2)
			go func() {
				defer wg.Done()
				pub.nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
				var b [64 << 10]byte
				for {
					if _, err := pub.nc.Read(b[:]); err != nil {
						return
					}
				}
			}()
			const n, warm, size = 100000, 2000, 1024
			payload := bytes.Repeat([]byte("x"), size-8)
			warmed := make(chan struct{})
			var once sync.Once
			release := func() { once.Do(func() { close(warmed) }) }
			defer release() // before wg.Wait, on every path
			go func() {
				defer wg.Done()
				w := bufio.NewWriterSize(pub.nc, 64<<10)
				pub.nc.SetWriteDeadline(time.Now().Add(5 * time.Minute))
				for i := range warm + n {
					fmt.Fprintf(w, "PUB burst/a %08d%s\n", i, payload)
					if i == warm-1 {
						// The first messages warm the gateway up (guest
						// memory, buffers): what the burst adds is
						// measured from there.
						w.Flush()
						<-warmed
					}
				}
				w.Flush()
			}()
			defer pub.nc.Close()

			// The live heap as of the last collection: what the gateway
			// holds, without the garbage a burst leaves between two.
			live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			liveHeap := func() uint64 {
				metrics.Read(live)
				return live[0].Value.Uint64()
			}
			var base, peak uint64
			var start time.Time
			next := time.Now()
			br := bufio.NewReaderSize(sub.nc, 256<<10)
			prefix := []byte("MSG burst/a ")
			for i := range warm + n {
				sub.nc.SetReadDeadline(time.Now().Add(wait))
				line, err := br.ReadSlice('\n')
				if err != nil {
					t.Fatalf("the subscriber got %d of %d messages: %v (the gateway dropped %d, the broker %d)",
						i, warm+n, err, r.server.Dropped(), r.broker.Dropped())
				}
				want := fmt.Appendf(prefix[:len(prefix):len(prefix)], "%08d", i)
				if !bytes.HasPrefix(line, want) || len(line) != len(prefix)+size+1 {
					t.Fatalf("message %d: %.40q (the gateway dropped %d, the broker %d)",
						i, line, r.server.Dropped(), r.broker.Dropped())
				}
				switch {
				case i == warm-1:
					runtime.GC()
					base = liveHeap()
					peak = base
					start = time.Now()
					release()
				case i >= warm && time.Now().After(next):
					peak = max(peak, liveHeap())
					next = time.Now().Add(10 * time.Millisecond)
				}
			}
			el := time.Since(start)
			t.Logf("%d messages of %d bytes in %v (%.0f/s); live heap %d MiB before, at most %d MiB during",
				n, size, el.Round(time.Millisecond), n/el.Seconds(), base>>20, peak>>20)
			if grew := int64(peak) - int64(base); grew > 48<<20 {
				t.Errorf("the heap grew by %d MiB during the burst", grew>>20)
			}
		})
	}
}
