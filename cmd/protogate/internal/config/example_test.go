package config_test

import (
	"fmt"
	"time"

	"github.com/protogate/protogate/cmd/protogate/internal/config"
)

func Example() {
	cfg, err := config.Parse([]byte(`
node:
  name: gw-1
gateway:
  idle_timeout: 1m
handlers:
  tracker:
    grpc:
      address: http://127.0.0.1:9001
listeners:
  - name: tracker-tcp
    type: tcp
    bind: 0.0.0.0:7993
    handler: tracker
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	l := cfg.Listeners[0]
	h := cfg.Handlers[l.Handler].GRPC
	fmt.Println(cfg.Node.Name, cfg.Broker.MaxPayload, cfg.Adapter.Bind)
	fmt.Println(l.Name, l.Type, l.Bind, time.Duration(l.IdleTimeout), l.EnableAuthn)
	fmt.Println(h.Address, h.ServiceName, time.Duration(h.Timeout))

	// Every problem is reported, each with its line and key path.
	_, err = config.Parse([]byte(`
handlers:
  tracker:
    grpc:
      address: 127.0.0.1:9001
listeners:
  - name: tracker-tcp
    type: tpc
    bind: 0.0.0.0:7993
    handler: tracker
`))
	fmt.Println(err)
	// Output:
	// gw-1 1MiB 127.0.0.1:9100
	// tracker-tcp tcp 0.0.0.0:7993 1m0s true
	// http://127.0.0.1:9001 ConnectionUnaryHandler 30s
	// config: line 5: handlers.tracker.grpc.address: address "127.0.0.1:9001" has no scheme; write "http://127.0.0.1:9001" (or https:// for TLS)
	// config: line 8: listeners[0].type: unknown listener type "tpc" (want tcp, ssl, udp or dtls)
}

func ExampleParseByteSize() {
	for _, s := range []string{"1048576", "64KB", "64KiB", "1mb"} {
		b, _ := config.ParseByteSize(s)
		fmt.Println(s, "=", int64(b), "bytes =", b)
	}
	// Output:
	// 1048576 = 1048576 bytes = 1MiB
	// 64KB = 65536 bytes = 64KiB
	// 64KiB = 65536 bytes = 64KiB
	// 1mb = 1048576 bytes = 1MiB
}

func ExampleParseRate() {
	r, _ := config.ParseRate("64KB/s")
	fmt.Println(r, r.Bytes, r.PerSecond())
	r, _ = config.ParseRate("100/10s")
	fmt.Println(r, r.Bytes, r.PerSecond())
	// Output:
	// 64KiB/s true 65536
	// 100/10s false 10
}
