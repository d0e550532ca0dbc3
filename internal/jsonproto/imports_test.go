package jsonproto

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStdlibOnly checks that the codec imports only the standard library,
// for the wasip1 build of the guests and natively.
func TestStdlibOnly(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	for _, env := range [][]string{nil, {"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, gobin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".")
		cmd.Env = append(append(os.Environ(), "GOFLAGS="), env...)
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("go list %v: %v", env, err)
		}
		for _, p := range strings.Fields(string(out)) {
			if p != "github.com/protogate/protogate/internal/jsonproto" {
				t.Errorf("%v: the codec imports %s", env, p)
			}
		}
	}
}
