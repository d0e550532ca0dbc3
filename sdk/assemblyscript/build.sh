#!/usr/bin/env bash
# build.sh GUEST.ts OUT.wasm [asc options...]: compiles an AssemblyScript
# protogate guest. It installs the pinned compiler (npm ci) when
# node_modules is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [[ $# -lt 2 ]]; then
	echo "usage: $0 GUEST.ts OUT.wasm [asc options...]" >&2
	exit 2
fi
src="$1" out="$2"
shift 2
if [[ ! -x "$here/node_modules/.bin/asc" ]]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p "$(dirname "$out")"
# --runtime incremental: a collector frees garbage, so a guest that runs for
# months does not grow. --exportStart _initialize: the top level (where the
# handler registers) runs when the host calls _initialize, under its
# init_timeout, like a Go reactor. --use abort=...: AssemblyScript's abort
# would be imported from "env", which the host refuses; the SDK's
# (assembly/abort.ts, a @global function) logs the message and traps.
exec "$here/node_modules/.bin/asc" "$src" -o "$out" \
	--runtime incremental \
	--exportStart _initialize \
	--use abort=protogateAbort \
	-O3 \
	"$@"
