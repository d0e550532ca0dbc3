// Package builtin holds the reference guests, built to WebAssembly, that
// protogate ships inside its binary: "echo", "linepubsub", "exproto-json"
// and "coap" (sources in guests/<name>). The gateway's configuration
// names them as builtin:<name>.
package builtin

import (
	_ "embed" // the modules
	"maps"
	"slices"
	"unsafe"
)

// The modules are built reproducibly from guests/<name> by `make guests`,
// which runs, for each name:
//
//	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath \
//		-buildvcs=false -ldflags='-s -w -buildid=' -o guests/builtin/<name>.wasm ./guests/<name>
//
// `make check` fails if they are stale.
var (
	//go:embed echo.wasm
	echo string
	//go:embed linepubsub.wasm
	linepubsub string
	//go:embed exproto-json.wasm
	exprotoJSON string
	//go:embed coap.wasm
	coap string
)

// modules are the embedded modules by name. Strings rather than an
// embed.FS: a string's bytes are the binary's own read-only data, which
// View hands out without a copy (2 MiB of a Go guest copied costs
// milliseconds of page faults at start-up on some virtual machines).
var modules = map[string]string{
	"echo":         echo,
	"linepubsub":   linepubsub,
	"exproto-json": exprotoJSON,
	"coap":         coap,
}

// Lookup returns a copy of the module of the builtin guest called name,
// such as "echo".
func Lookup(name string) ([]byte, bool) {
	m, ok := modules[name]
	if !ok {
		return nil, false
	}
	return []byte(m), true
}

// View returns the module of the builtin guest called name without
// copying it. The bytes are read-only: they live in the binary's read-only
// data, and writing to them crashes the process. Use Lookup for bytes the
// caller may change.
func View(name string) ([]byte, bool) {
	m, ok := modules[name]
	if !ok {
		return nil, false
	}
	return unsafe.Slice(unsafe.StringData(m), len(m)), true
}

// Names returns the names of the builtin guests, sorted.
func Names() []string {
	return slices.Sorted(maps.Keys(modules))
}
