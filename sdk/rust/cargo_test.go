// Package rust runs the Rust SDK's native tests (sdk/rust) and those of the
// Rust guests (guests/rust) with Debian's cargo, so that go test ./... (and
// make test) covers them. The SDK itself is the Rust crate in this
// directory; this file only drives cargo.
package rust

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Debian's toolchain: a newer rustc on PATH (~/.cargo/bin) may lack the
// wasm32-wasi std, and the builds must not depend on which one comes first.
const (
	cargo   = "/usr/bin/cargo"
	rustc   = "/usr/bin/rustc"
	rustdoc = "/usr/bin/rustdoc"
)

// TestCargo runs cargo test --offline for the SDK and for the guests'
// workspace.
func TestCargo(t *testing.T) {
	if _, err := os.Stat(cargo); err != nil {
		t.Skipf("%s is missing: install Debian's rustc, cargo and libstd-rust-dev-wasm32 (make deps) to test sdk/rust", cargo)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, manifest := range []string{"sdk/rust/Cargo.toml", "guests/rust/Cargo.toml"} {
		t.Run(filepath.Dir(manifest), func(t *testing.T) {
			cmd := exec.Command(cargo, "test", "--offline", "--quiet", "--manifest-path", filepath.Join(root, manifest))
			cmd.Env = append(os.Environ(),
				"PATH=/usr/bin:"+os.Getenv("PATH"),
				"RUSTC="+rustc,
				"RUSTDOC="+rustdoc,
				"CARGO_TARGET_DIR="+filepath.Join(root, ".bin", "cargo"),
			)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("cargo test %s: %v\n%s", manifest, err, out)
			}
			t.Logf("cargo test %s:\n%s", manifest, out)
		})
	}
}
