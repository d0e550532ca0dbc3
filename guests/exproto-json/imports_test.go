package main

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestImportsOnlySDKAndCodec checks the guest's import graph as the wasip1
// build sees it: of the project's packages, only the SDK, abi and the
// stdlib-only codec of the JSON test protocol.
func TestImportsOnlySDKAndCodec(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "list", "-deps", "-f", "{{.ImportPath}}", ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/protogate/protogate/"
	allowed := []string{mod + "abi", mod + "sdk/go", mod + "internal/jsonproto", mod + "guests/exproto-json"}
	var got []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, mod) {
			got = append(got, p)
			if !slices.Contains(allowed, p) {
				t.Errorf("the guest imports %s", p)
			}
		}
	}
	if !slices.Contains(got, mod+"internal/jsonproto") {
		t.Errorf("go list found no codec among %v", got)
	}
}
