// Package assemblyscript holds the Go test that runs the AssemblyScript
// SDK's own tests (test/sdk.test.mjs, in Node with a fake host), so that
// go test ./... and make test run them.
package assemblyscript

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestSDK runs node test/sdk.test.mjs: it builds the test guest and the
// reference guests with build.sh (npm ci first if node_modules is missing)
// and checks the SDK against a fake host.
func TestSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (scripts/deps.sh installs nodejs and npm): the AssemblyScript SDK's tests need it")
	}
	if testing.Short() {
		t.Skip("-short: the AssemblyScript SDK's tests compile four guests")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test/sdk.test.mjs")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node test/sdk.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
