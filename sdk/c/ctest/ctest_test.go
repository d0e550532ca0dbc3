// Package ctest_test runs the C SDK's native tests (sdk/c/test, guests/c) as
// part of go test ./...: each test program is compiled with the system C
// compiler against the fake host (sdk/c/test/fakehost.c) and run. With a
// compiler that supports them, the programs are built with AddressSanitizer
// and UndefinedBehaviorSanitizer, so an overflow in the SDK's length checks
// fails the test instead of passing by luck.
package ctest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// root is the repository root, relative to this package. (The test lives
// here, not in sdk/c, because go refuses a package directory holding C
// files without cgo.)
const root = "../../.."

// sdk are the sources every program links.
var sdk = []string{"sdk/c/protogate.c", "sdk/c/test/fakehost.c"}

// programs are the native C tests; each one's main returns non-zero on a
// failed check, printing where.
var programs = []struct {
	name    string
	sources []string
}{
	{"sdk", []string{"sdk/c/test/sdk_test.c"}},
	{"echo", []string{"guests/c/echo.c", "guests/c/echo_test.c"}},
	{"linepubsub", []string{"guests/c/linepubsub_test.c"}},
}

// cflags are strict on purpose: the SDK's headers must compile warning-free
// in handlers built with -Werror.
var cflags = []string{"-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
	"-I" + filepath.Join(root, "sdk/c"), "-I" + filepath.Join(root, "sdk/c/test")}

var sanitizers = []string{"-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"}

// compiler returns the system C compiler, or skips the test without one.
func compiler(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CC"), "cc", "gcc", "clang"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no C compiler (cc, gcc or clang; or $CC): the C SDK's native tests cannot run (Debian: apt-get install gcc)")
	return ""
}

var (
	sanOnce sync.Once
	sanOK   bool
)

// canSanitize reports whether cc links a program with the sanitizers (some
// distributions ship the compiler without their runtimes).
func canSanitize(t *testing.T, cc string) bool {
	sanOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pg-csan")
		if err != nil {
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "m.c")
		if os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644) != nil {
			return
		}
		bin := filepath.Join(dir, "m")
		args := append(append([]string{}, sanitizers...), "-o", bin, src)
		if exec.Command(cc, args...).Run() == nil && exec.Command(bin).Run() == nil {
			sanOK = true
		}
	})
	if !sanOK {
		t.Log("the C compiler cannot link the sanitizers; building without them")
	}
	return sanOK
}

func TestNative(t *testing.T) {
	cc := compiler(t)
	san := canSanitize(t, cc)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			bin := filepath.Join(t.TempDir(), p.name)
			args := append([]string{}, cflags...)
			if san {
				args = append(args, sanitizers...)
			}
			args = append(args, "-o", bin)
			for _, s := range append(append([]string{}, p.sources...), sdk...) {
				args = append(args, filepath.Join(root, s))
			}
			if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
				t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
			}
			cmd := exec.Command(bin)
			// Leak checking needs ptrace, which some sandboxes forbid, and
			// the fake host keeps what it records until exit.
			cmd.Env = append(os.Environ(), "ASAN_OPTIONS=detect_leaks=0")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", p.name, err, out)
			}
			t.Logf("%s", strings.TrimSpace(string(out)))
		})
	}
}
