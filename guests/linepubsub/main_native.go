//go:build !wasip1

package main

import "github.com/protogate/protogate/sdk/go/serve"

// main serves the same handler natively, as a remote handler on
// protogate's fast lane (service_name: protogate.v1.StreamHandler).
func main() { serve.Main() }
