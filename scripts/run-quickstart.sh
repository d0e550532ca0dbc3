#!/usr/bin/env bash
# run-quickstart.sh starts the reference JSON handler (cmd/exproto-json-handler)
# on 127.0.0.1:9001 and the gateway (with the config given, normally
# cmd/exproto-json-handler/protogate.yaml) in the foreground: devices on
# 0.0.0.0:7993, the ConnectionAdapter on 127.0.0.1:9100.
# Ctrl-C stops both.
set -euo pipefail
bin=${1:-.bin}
config=${2:-}

"$bin/exproto-json-handler" -listen 127.0.0.1:9001 -adapter http://127.0.0.1:9100 &
handler=$!
trap 'kill "$handler" 2>/dev/null || true; wait "$handler" 2>/dev/null || true' EXIT

if [ -n "$config" ]; then
	"$bin/protogate" run -c "$config"
else
	"$bin/protogate" run
fi
