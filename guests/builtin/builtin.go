// Package builtin holds the reference guests, built to WebAssembly, that
// protogate ships inside its binary: "echo", "linepubsub", "exproto-json"
// and "coap" (sources in guests/<name>). The gateway's configuration
// names them as builtin:<name>.
package builtin

import (
	"embed"
	"slices"
	"strings"
)

// The modules are built reproducibly from guests/<name> by `make guests`,
// which runs, for each name:
//
//	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath \
//		-buildvcs=false -ldflags='-s -w -buildid=' -o guests/builtin/<name>.wasm ./guests/<name>
//
// `make check` fails if they are stale.
//
//go:embed echo.wasm linepubsub.wasm exproto-json.wasm coap.wasm
var modules embed.FS

// Lookup returns a copy of the module of the builtin guest called name,
// such as "echo".
func Lookup(name string) ([]byte, bool) {
	if name == "" || strings.ContainsAny(name, "/.") {
		return nil, false
	}
	b, err := modules.ReadFile(name + ".wasm")
	if err != nil {
		return nil, false
	}
	return b, true
}

// Names returns the names of the builtin guests, sorted.
func Names() []string {
	entries, _ := modules.ReadDir(".")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".wasm"))
	}
	slices.Sort(names)
	return names
}
