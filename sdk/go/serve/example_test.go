package serve_test

import (
	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/serve"
)

// echo is a whole handler: what a device sends comes back.
type echo struct{ protogate.Base }

func (echo) OnReceivedBytes(c protogate.Conn, b []byte) error { return c.Send(b) }

// A native handler registers its Handler, as a Wasm guest does, and its
// main is serve.Main. Built with GOOS=wasip1 the same package is a guest
// whose main does nothing; built natively it serves protogate.v1.StreamHandler
// on -listen (default 127.0.0.1:9001), for a gateway handler configured
// with grpc: {address: http://127.0.0.1:9001, service_name: protogate.v1.StreamHandler}.
func Example() {
	protogate.Register(echo{}) // in a real handler: in an init function
	main := func() { serve.Main() }
	_ = main
}
