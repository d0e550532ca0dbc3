#!/usr/bin/env bash
# emqx-examples.sh runs EMQX's own ExProto example handlers, unchanged, against
# protogate, and reports PASS/FAIL for each:
#
#   exproto-svr-python  (exproto_server.py, a ConnectionUnaryHandler echo)
#   exproto-svr-go      (main.go, run with `go run .`)
#
# from https://github.com/emqx/emqx-extension-examples (branch master).
#
# Usage:
#   scripts/emqx-examples.sh [--from DIR] [--only python|go] [--regen-stubs] [--keep]
#
#   --from DIR      use an existing checkout of emqx-extension-examples instead
#                   of cloning it (no network access to GitHub needed then).
#   --only X        run only the python or the go example.
#   --regen-stubs   always generate the Python stubs, even when the checked-in
#                   exproto_pb2*.py import cleanly.
#   --keep          keep the work directory (logs, configs, copies) on exit.
#
# Environment: PYTHON (a python3 that can `import grpc, google.protobuf`;
# default: /usr/bin/python3 if it can, else python3 on PATH), GO (default go).
#
# What it does, per example:
#   1. copies the example folder into a temporary work directory (the checkout
#      is never modified);
#   2. starts protogate (built with `make build`) with its default config, the
#      handler service (ConnectionUnaryHandler or the legacy streaming
#      ConnectionHandler) set to what the example registers;
#   3. starts the example handler on 127.0.0.1:9001;
#   4. acts as a device on 127.0.0.1:7993 and checks what the example promises:
#      - echo examples (current master): bytes sent come back (published to
#        test/echo, delivered back); and, as both use the fixed client id
#        "test", a second device with the same id takes over: the first one
#        is disconnected and the second one still gets its echo;
#      - the legacy streaming Go example (subscribes test/1, publishes to
#        test/2): the device's bytes show up on NATS subject test.2 and a NATS
#        publish on test.1 reaches the device (protogate's NATS port is opened
#        on 127.0.0.1:4222 for that).
#
# Ports 7993, 9100, 9001 (and 4222 for the legacy check) must be free. Every
# process the script starts is stopped on exit. Exit status 0 iff every
# example that ran passed.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
examples_url=https://github.com/emqx/emqx-extension-examples
examples_branch=master

from=""
only=""
regen_stubs=0
keep=0
while [ $# -gt 0 ]; do
	case "$1" in
	--from) from=${2:?--from needs a directory}; shift 2 ;;
	--from=*) from=${1#--from=}; shift ;;
	--only) only=${2:?--only needs python or go}; shift 2 ;;
	--only=*) only=${1#--only=}; shift ;;
	--regen-stubs) regen_stubs=1; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "emqx-examples: unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$only" in "" | python | go) ;; *) echo "emqx-examples: --only takes python or go" >&2; exit 2 ;; esac

GO=${GO:-go}
work=$(mktemp -d "${TMPDIR:-/tmp}/emqx-examples.XXXXXX")
logs=$work/logs
mkdir -p "$logs"

# ---------------------------------------------------------------------------
# Process management: every background process is started in its own session
# (setsid) so that stopping its process group also stops its children (go run
# starts the compiled example as a child).
# ---------------------------------------------------------------------------
pids=()

start_bg() { # start_bg LOGFILE DIR CMD... ; sets $last_pid
	local log=$1 dir=$2
	shift 2
	if command -v setsid >/dev/null; then
		(cd "$dir" && exec setsid "$@") >"$log" 2>&1 &
	else
		(cd "$dir" && exec "$@") >"$log" 2>&1 &
	fi
	last_pid=$!
	pids+=("$last_pid")
}

stop_pid() { # stop_pid PID: TERM the process group (or the process), then KILL
	local pid=$1 _ p
	local -a rest=()
	for p in "${pids[@]+"${pids[@]}"}"; do
		[ "$p" = "$pid" ] || rest+=("$p")
	done
	pids=("${rest[@]+"${rest[@]}"}")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

stop_all() {
	local pid
	for pid in "${pids[@]+"${pids[@]}"}"; do
		stop_pid "$pid"
	done
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$?
	stop_all
	if [ "$keep" -eq 1 ]; then
		echo "emqx-examples: work directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "emqx-examples: $*" >&2; }

# port_busy PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT PID SECONDS: wait until PORT accepts connections while PID lives.
wait_port() {
	local port=$1 pid=$2 secs=$3 _
	for _ in $(seq $((secs * 5))); do
		port_busy "$port" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

# wait_log FILE PATTERN PID SECONDS: wait until FILE contains PATTERN while PID lives.
wait_log() {
	local file=$1 pattern=$2 pid=$3 secs=$4 _
	for _ in $(seq $((secs * 5))); do
		grep -q -- "$pattern" "$file" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

show_logs() { # show_logs FILE...: the end of each log, for a failure report
	local f
	for f in "$@"; do
		[ -f "$f" ] || continue
		echo "----- last lines of $(basename "$f") -----" >&2
		tail -n 40 "$f" >&2
	done
}

# ---------------------------------------------------------------------------
# The device client: a small Python program (standard library only), used by
# both checks. It also speaks just enough of the NATS protocol for the legacy
# relay check, so no NATS client has to be installed.
# ---------------------------------------------------------------------------
cat >"$work/device.py" <<'PY'
import socket, sys, time, json

DEV = ("127.0.0.1", 7993)

def read_until(s, want, secs):
    """Read from s until `want` was received, EOF or timeout: (data, eof)."""
    buf, end = b"", time.time() + secs
    while want not in buf:
        left = end - time.time()
        if left <= 0:
            return buf, False
        s.settimeout(left)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            return buf, False
        except ConnectionResetError:
            return buf, True
        if not chunk:
            return buf, True
        buf += chunk
    return buf, False

def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    return ok

def echo(takeover):
    good = True
    payload = b"hello protogate from an emqx example"
    a = socket.create_connection(DEV)
    a.sendall(payload)
    got, _ = read_until(a, payload, 10)
    good &= check(payload in got, "echo: sent %r, received %r" % (payload, got))
    if takeover:
        b = socket.create_connection(DEV)
        b.sendall(b"second device")
        got_b, _ = read_until(b, b"second device", 10)
        good &= check(b"second device" in got_b,
                      "takeover: second device (same clientid) echo %r" % got_b)
        rest, eof = read_until(a, b"\x00never\x00", 5)
        good &= check(eof, "takeover: first device disconnected (eof=%s, extra bytes %r)" % (eof, rest))
        b.close()
    a.close()
    return good

class Nats:
    """Minimal NATS protocol client: SUB, PUB and reading MSG/HMSG."""
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
        if not self.f.readline().startswith(b"INFO"):
            raise RuntimeError("not a NATS server")
        self.s.sendall(b"CONNECT " + json.dumps({"verbose": False, "pedantic": False,
                       "headers": True, "no_responders": False}).encode() + b"\r\n")
    def sub(self, subject):
        self.s.sendall(b"SUB %s 1\r\nPING\r\n" % subject.encode())
        while self.f.readline().strip() != b"PONG":
            pass
    def pub(self, subject, data):
        self.s.sendall(b"PUB %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(data), data))
    def next_msg(self, secs):
        self.s.settimeout(secs)
        try:
            while True:
                line = self.f.readline()
                if not line:
                    return None
                parts = line.split()
                if not parts:
                    continue
                if parts[0] == b"PING":
                    self.s.sendall(b"PONG\r\n")
                elif parts[0] == b"MSG":
                    data = self.f.read(int(parts[-1]) + 2)[:-2]
                    return parts[1].decode(), data
                elif parts[0] == b"HMSG":
                    hdr, total = int(parts[-2]), int(parts[-1])
                    data = self.f.read(total + 2)[:-2]
                    return parts[1].decode(), data[hdr:]
        except socket.timeout:
            return None

def relay(nats_port, sub_subject, pub_subject):
    good = True
    nats = Nats(nats_port)
    nats.sub(pub_subject)  # what the handler publishes the device's bytes to
    d = socket.create_connection(DEV)
    # The legacy handler uses the streaming ConnectionHandler service, whose
    # streams are not ordered with each other: bytes sent at once can reach
    # OnReceivedBytes before OnSocketCreated has authenticated the client, and
    # the Publish is refused (as with EMQX). Give the handler time to log in.
    time.sleep(1.5)
    payload = b"hello protogate from a device"
    d.sendall(payload)
    msg, end = None, time.time() + 10
    while time.time() < end:
        msg = nats.next_msg(end - time.time())
        if msg is None or msg[1] == payload:
            break
    good &= check(msg is not None and msg[1] == payload,
                  "device -> %s: expected %r, got %r" % (pub_subject, payload, msg))
    time.sleep(1)  # the handler's Subscribe may trail its Publish (streams are unordered)
    down = b"hello device from NATS"
    nats.pub(sub_subject, down)
    got, _ = read_until(d, down, 10)
    good &= check(down in got, "%s -> device: expected %r, got %r" % (sub_subject, down, got))
    d.close()
    return good

mode = sys.argv[1]
if mode == "echo":
    ok = echo(sys.argv[2] == "takeover")
elif mode == "relay":
    ok = relay(int(sys.argv[2]), sys.argv[3], sys.argv[4])
else:
    sys.exit("usage: device.py echo takeover|notakeover | relay NATSPORT SUBSUBJECT PUBSUBJECT")
sys.exit(0 if ok else 1)
PY

# ---------------------------------------------------------------------------
# Inputs: the examples checkout, protogate, a Python with grpc.
# ---------------------------------------------------------------------------
if [ -n "$from" ]; then
	examples=$(cd "$from" && pwd)
	log "using checkout $examples"
else
	command -v git >/dev/null || { log "git is required to clone $examples_url (or use --from DIR)"; exit 1; }
	log "cloning $examples_url ($examples_branch)"
	git clone --quiet --depth 1 --branch "$examples_branch" "$examples_url" "$work/emqx-extension-examples"
	examples=$work/emqx-extension-examples
fi
for d in exproto-svr-python exproto-svr-go; do
	[ -d "$examples/$d" ] || { log "$examples/$d is missing: not an emqx-extension-examples checkout?"; exit 1; }
done

log "building protogate (make build)"
make -C "$repo_root" build >"$logs/make-build.log" 2>&1 || { show_logs "$logs/make-build.log"; exit 1; }
protogate=$repo_root/.bin/protogate

find_python() {
	local p
	for p in "${PYTHON:-}" /usr/bin/python3 "$(command -v python3 || true)"; do
		if [ -z "$p" ] || [ ! -x "$p" ]; then continue; fi
		if "$p" -c 'import grpc, google.protobuf' 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
device_python=$(command -v python3 || echo /usr/bin/python3)

# protogate_config SERVICE NATS_LISTEN FILE: the embedded default config with
# the handler service and NATS port set, and data_dir inside the work dir.
protogate_config() {
	local service=$1 nats=$2 file=$3
	"$protogate" config |
		sed -e "s|^\(  *service_name:\).*|\1 $service|" \
			-e "s|^\(  *nats_listen:\).*|\1 \"$nats\"|" \
			-e "s|^\(  *data_dir:\).*|\1 $work/data|" >"$file"
	grep -q "service_name: $service\$" "$file" || { log "could not set service_name in $file"; return 1; }
	"$protogate" validate -c "$file" >/dev/null
}

# ports_free PORT...: fail when one of the ports is already taken.
ports_free() {
	local p
	for p in "$@"; do
		if port_busy "$p"; then
			log "port $p is already in use on 127.0.0.1 (an earlier protogate or handler?)"
			return 1
		fi
	done
}

# run_example NAME DIR SERVICE MODE CMD...: start protogate and the example,
# run the device check, report, and stop both. MODE is echo-takeover, echo or
# relay. Returns 0 on PASS.
run_example() {
	local name=$1 dir=$2 service=$3 mode=$4
	shift 4
	local cfg=$work/protogate-$name.yaml glog=$logs/protogate-$name.log hlog=$logs/$name-example.log
	local dlog=$logs/$name-device.log nats="" gw handler
	local -a ports=(7993 9100 9001)
	if [ "$mode" = relay ]; then
		nats=127.0.0.1:4222
		ports+=(4222)
	fi
	ports_free "${ports[@]}" || return 1
	protogate_config "$service" "$nats" "$cfg" || return 1

	log "$name: starting protogate (service_name: $service)"
	start_bg "$glog" "$work" "$protogate" run -c "$cfg"
	gw=$last_pid
	if ! wait_log "$glog" 'protogate: listening' "$gw" 30 || ! wait_port 9100 "$gw" 10; then
		log "$name: protogate did not start"
		show_logs "$glog"
		return 1
	fi

	log "$name: starting the example: $*"
	start_bg "$hlog" "$dir" "$@"
	handler=$last_pid
	# `go run` may first download modules and compile: allow a few minutes.
	if ! wait_port 9001 "$handler" 300; then
		log "$name: the example did not start listening on 9001"
		show_logs "$hlog" "$glog"
		return 1
	fi

	log "$name: device check ($mode)"
	local rc=0
	case "$mode" in
	echo-takeover) "$device_python" "$work/device.py" echo takeover >"$dlog" 2>&1 || rc=$? ;;
	echo) "$device_python" "$work/device.py" echo notakeover >"$dlog" 2>&1 || rc=$? ;;
	relay) "$device_python" "$work/device.py" relay 4222 test.1 test.2 >"$dlog" 2>&1 || rc=$? ;;
	esac
	sed 's/^/    /' "$dlog" >&2
	sleep 0.5 # let the last callbacks land in the logs
	stop_pid "$handler"
	stop_pid "$gw"
	if [ "$rc" -ne 0 ]; then
		show_logs "$hlog" "$glog"
		return 1
	fi
	return 0
}

# The check an example needs, from what its source does (master: echo on
# test/echo with the fixed client id "test"; legacy Go: test/1 -> test/2).
check_mode() { # check_mode FILE
	if grep -q 'test/echo' "$1"; then
		if grep -Eq '(clientid=|Clientid: *)"test"' "$1"; then echo echo-takeover; else echo echo; fi
	elif grep -q '"test/2"' "$1" && grep -q '"test/1"' "$1"; then
		echo relay
	else
		echo unknown
	fi
}

# service_of FILE UNARY_PATTERN STREAM_PATTERN: the ExProto handler service
# the example registers.
service_of() {
	if grep -q "$2" "$1"; then echo ConnectionUnaryHandler
	elif grep -q "$3" "$1"; then echo ConnectionHandler
	else echo unknown
	fi
}

# ---------------------------------------------------------------------------
# exproto-svr-python
# ---------------------------------------------------------------------------
python_example() {
	local src=$examples/exproto-svr-python dir=$work/python py service mode proto
	[ -f "$src/exproto_server.py" ] || { log "python: $src/exproto_server.py missing"; return 1; }
	py=$(find_python) || {
		log "python: no python3 with grpc and protobuf (apt-get install python3-grpcio python3-protobuf, or pip install grpcio protobuf; or set PYTHON)"
		return 1
	}
	mkdir -p "$dir"
	cp -R "$src/." "$dir/"

	# Stubs: keep the checked-in exproto_pb2*.py when they import with this
	# Python's protobuf/grpc; otherwise generate them from EMQX's own
	# exproto.proto (the Python folder's, else the Go example's), falling back
	# to protogate's wire-identical proto/exproto.proto.
	if [ "$regen_stubs" -eq 1 ] || ! (cd "$dir" && "$py" -c 'import exproto_pb2, exproto_pb2_grpc') >/dev/null 2>&1; then
		for proto in "$src/exproto.proto" "$examples/exproto-svr-go/protos/exproto.proto" "$repo_root/proto/exproto.proto"; do
			[ -f "$proto" ] && break
		done
		log "python: generating exproto_pb2*.py from $proto"
		mkdir -p "$work/proto-py"
		cp "$proto" "$work/proto-py/exproto.proto"
		if "$py" -c 'import grpc_tools' 2>/dev/null; then
			"$py" -m grpc_tools.protoc -I "$work/proto-py" --python_out="$dir" --grpc_python_out="$dir" exproto.proto
		elif command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null; then
			protoc -I "$work/proto-py" --python_out="$dir" --grpc_out="$dir" \
				--plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" exproto.proto
		else
			log "python: need grpcio-tools, or protoc and grpc_python_plugin (apt-get install protobuf-compiler protobuf-compiler-grpc)"
			return 1
		fi
		(cd "$dir" && "$py" -c 'import exproto_pb2, exproto_pb2_grpc') || { log "python: generated stubs do not import"; return 1; }
	else
		log "python: using the checked-in exproto_pb2*.py"
	fi

	service=$(service_of "$dir/exproto_server.py" add_ConnectionUnaryHandlerServicer_to_server add_ConnectionHandlerServicer_to_server)
	mode=$(check_mode "$dir/exproto_server.py")
	if [ "$service" = unknown ] || [ "$mode" = unknown ]; then
		log "python: cannot tell what exproto_server.py does (service=$service, check=$mode)"
		return 1
	fi
	run_example python "$dir" "$service" "$mode" "$py" -u exproto_server.py
}

# ---------------------------------------------------------------------------
# exproto-svr-go
# ---------------------------------------------------------------------------
go_example() {
	local src=$examples/exproto-svr-go dir=$work/go service mode
	[ -f "$src/main.go" ] || { log "go: $src/main.go missing"; return 1; }
	command -v "$GO" >/dev/null || { log "go: the go toolchain is required"; return 1; }
	mkdir -p "$dir"
	cp -R "$src/." "$dir/"
	service=$(service_of "$dir/main.go" RegisterConnectionUnaryHandlerServer RegisterConnectionHandlerServer)
	mode=$(check_mode "$dir/main.go")
	if [ "$service" = unknown ] || [ "$mode" = unknown ]; then
		log "go: cannot tell what main.go does (service=$service, check=$mode)"
		return 1
	fi
	# Build first, so that a compile error is reported as such; keep go.mod
	# and go.sum as committed unless they are incomplete for this toolchain.
	if ! (cd "$dir" && "$GO" build -o /dev/null .) >"$logs/go-build.log" 2>&1; then
		log "go: build with the committed go.mod/go.sum failed; retrying with GOFLAGS=-mod=mod"
		(cd "$dir" && GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" "$GO" build -o /dev/null .) >>"$logs/go-build.log" 2>&1 || {
			show_logs "$logs/go-build.log"
			return 1
		}
		export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
	fi
	run_example go "$dir" "$service" "$mode" "$GO" run .
}

# ---------------------------------------------------------------------------
# Main: run the examples, then report.
# ---------------------------------------------------------------------------
status=0
report=()
for ex in python go; do
	[ -z "$only" ] || [ "$only" = "$ex" ] || continue
	case "$ex" in
	python) if python_example; then r=PASS; else r=FAIL; fi ;;
	go) if go_example; then r=PASS; else r=FAIL; fi ;;
	esac
	stop_all
	[ "$r" = PASS ] || status=1
	report+=("  $r  exproto-svr-$ex")
done

echo
if [ -n "$from" ]; then
	echo "protogate vs emqx-extension-examples (checkout $examples)"
else
	echo "protogate vs emqx-extension-examples ($examples_url, $examples_branch)"
fi
printf '%s\n' "${report[@]}"
exit "$status"
