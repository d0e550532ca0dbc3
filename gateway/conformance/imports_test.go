package conformance

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestImportsNoBackEnd checks that the suite depends on no handler back end:
// each back end's tests pass theirs in through Backend.
func TestImportsNoBackEnd(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gobin, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/protogate/protogate/"
	for _, p := range strings.Fields(string(out)) {
		for _, backEnd := range []string{mod + "gateway/remote", mod + "wasmhost", mod + "internal/jsonhandler"} {
			if p == backEnd || strings.HasPrefix(p, backEnd+"/") {
				t.Errorf("the suite imports %s", p)
			}
		}
	}
	if !strings.Contains(string(out), mod+"gateway\n") {
		t.Errorf("go list found no gateway among:\n%s", out)
	}
}
