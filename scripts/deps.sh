#!/usr/bin/env bash
# deps.sh installs the real peers the tests drive, when they are missing:
# protoc and grpc_python_plugin (to generate Python stubs at test time),
# python3-grpcio/python3-protobuf (a handler written in Python, as EMQX's
# examples are), mosquitto-clients, and the DTLS peers of the interop tests in
# gateway/listener: libcoap3-bin (coap-client-gnutls, coap-client-openssl)
# and openssl (s_client); and chromium-headless-shell (with fonts-liberation,
# a recommendation that --no-install-recommends leaves out) for the dashboard
# tests in admin/, unless a Chromium or Chrome is there already; and prometheus
# for promtool, which checks the /metrics scrape; and nats-server, the hub
# a protogate leaf node joins in cmd/protogate's leaf test; clang, lld,
# wasi-libc and libclang-rt-dev-wasm32, which build the C SDK's guests;
# nodejs and npm, which build the AssemblyScript SDK's guests (make
# sdk-guests-as) and run its tests; and Debian's rustc, cargo and
# libstd-rust-dev-wasm32 for the Rust SDK. It needs root
# for apt-get; without it, it only says what is missing.
set -euo pipefail

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null || need+=(protobuf-compiler-grpc)
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null || need+=(python3-protobuf)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
{ command -v coap-client-gnutls && command -v coap-client-openssl; } >/dev/null || need+=(libcoap3-bin)
command -v openssl >/dev/null || need+=(openssl)
command -v promtool >/dev/null || need+=(prometheus)
# The NATS hub of the leaf node test in cmd/protogate.
# Debian installs it in /usr/sbin, which a user's PATH may lack.
{ command -v nats-server || test -x /usr/sbin/nats-server; } >/dev/null || need+=(nats-server)
# The C SDK's guests (make sdk-guests-c): clang for wasm32-wasi, its linker
# and C library, and the compiler-rt builtins that wasm-ld links.
{ command -v clang && command -v wasm-ld && test -e /usr/include/wasm32-wasi/stdlib.h &&
	ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a; } >/dev/null 2>&1 ||
	need+=(clang lld wasi-libc libclang-rt-dev-wasm32)
# The AssemblyScript compiler (sdk/assemblyscript, installed by npm ci).
{ command -v node && command -v npm; } >/dev/null || need+=(nodejs npm)
# Debian's Rust toolchain for sdk/rust and guests/rust (make sdk-guests-rust,
# sdk/rust's cargo test): always /usr/bin's, whatever else is on PATH.
{ test -x /usr/bin/rustc && test -x /usr/bin/cargo; } || need+=(rustc cargo)
test -d /usr/lib/rustlib/wasm32-wasi || need+=(libstd-rust-dev-wasm32)
# The names internal/browser.Find looks for.
{ command -v chromium-headless-shell || command -v chromium || command -v chromium-browser || command -v google-chrome; } >/dev/null ||
	need+=(chromium-headless-shell fonts-liberation)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
	exit 1
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
