#!/usr/bin/env bash
# fuzz.sh runs every native Go fuzz target of the module for FUZZTIME
# (default 10s) each, one after the other, and stops at the first failure
# with a non-zero status. `make test` already runs every target's seed
# corpus (the f.Add seeds and testdata/fuzz/FuzzXxx/); this explores
# beyond it. `make fuzz` and CI (.ci/run, after `make test`) call it.
#
# The targets are the FuzzXxx functions of the test files `go list` gives
# for each package (so build tags are respected). A failure prints go
# test's output (the error and stack) and the input go test wrote to the
# package's testdata/fuzz/FuzzXxx/, which CI's clean checkout would lose
# otherwise; `go test -run '^FuzzXxx/NAME$' ./pkg` replays it.
#
# Environment: FUZZTIME (a duration or Nx, as go test -fuzztime takes),
# FUZZ_TIMEOUT (go test -timeout of each run, default 10m; raise it with
# FUZZTIME), FUZZ_RUN (a regexp: only the targets whose "pkg FuzzXxx"
# matches), GO.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10m}
FUZZ_RUN=${FUZZ_RUN:-}

targets=()
while read -r pkg dir files; do
	[ -n "$files" ] || continue
	names=$(cd "$dir" && grep -ho '^func Fuzz[A-Za-z0-9_]*(' $files | sed 's/^func //; s/($//' | sort -u || true)
	for name in $names; do
		if [ -z "$FUZZ_RUN" ] || [[ "$pkg $name" =~ $FUZZ_RUN ]]; then
			targets+=("$pkg $dir $name")
		fi
	done
done < <($GO list -f '{{.ImportPath}} {{.Dir}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./...)

# deadlineOnly reports whether go test's output in $1 failed with nothing
# but "context deadline exceeded" and wrote no input: Go's fuzzing
# coordinator races its own -fuzztime deadline on a loaded machine and
# reports the expiry as a failure of the target (go.dev/issue/75804, fixed
# in Go 1.27). The target has fuzzed for its whole time by then.
deadlineOnly() {
	! grep -q 'Failing input written to' "$1" &&
		awk '/^--- FAIL: Fuzz/ {in_fail = 1; next}
		     in_fail && /^FAIL$/ {in_fail = 0; next}
		     in_fail {lines++; if ($0 != "    context deadline exceeded") other = 1}
		     END {exit !(lines == 1 && !other)}' "$1"
}

n=${#targets[@]}
echo "fuzz.sh: $n targets, $FUZZTIME each"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
i=0
for t in "${targets[@]}"; do
	read -r pkg dir name <<<"$t"
	i=$((i + 1))
	echo "== [$i/$n] $pkg $name"
	rc=0
	$GO test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -timeout "$FUZZ_TIMEOUT" "$pkg" >"$log" 2>&1 || rc=$?
	cat "$log"
	if [ "$rc" -eq 0 ]; then
		continue
	fi
	if deadlineOnly "$log"; then
		echo "fuzz.sh: $pkg $name: only \"context deadline exceeded\" at the end of -fuzztime and no input written: go.dev/issue/75804, counted as passed"
		continue
	fi
	echo "fuzz.sh: $pkg $name FAILED after $((SECONDS - start))s"
	for input in $(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$log"); do
		echo "--- $dir/$input:"
		cat "$dir/$input"
		echo "--- replay: go test -run '^$name/$(basename "$input")\$' $pkg"
	done
	exit 1
done
echo "fuzz.sh: $n targets passed in $((SECONDS - start))s"
