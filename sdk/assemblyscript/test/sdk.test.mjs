// The AssemblyScript SDK's logic tests: the test guest (test/guest.ts) and
// the reference guests (guests/assemblyscript/) run in Node's WebAssembly
// with JavaScript imports faking the host. Run: npm test (in
// sdk/assemblyscript), or go test ./sdk/assemblyscript/ (make test does).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
const root = join(sdk, "..", "..");
const out = mkdtempSync(join(tmpdir(), "protogate-as-"));
process.on("exit", () => rmSync(out, { recursive: true, force: true }));

// build compiles an AssemblyScript guest with the SDK's build.sh, adding
// the asc options in ASC_EXTRA (ASC_EXTRA="--runtime stub" shows the memory
// test failing).
function build(src, name) {
  const wasm = join(out, name + ".wasm");
  return new Promise((resolve, reject) => {
    const p = spawn(join(sdk, "build.sh"), [src, wasm, ...(process.env.ASC_EXTRA || "").split(" ").filter(Boolean)], { cwd: root });
    let log = "";
    p.stdout.on("data", (d) => (log += d));
    p.stderr.on("data", (d) => (log += d));
    p.on("error", reject);
    p.on("close", (code) => {
      if (code !== 0) reject(new Error(`build ${src}: ${log}`));
      else resolve(new WebAssembly.Module(readFileSync(wasm)));
    });
  });
}

// The compiler runs once per module, in parallel; npm ci first, if needed,
// so that the builds do not race to install it.
if (!existsSync(join(sdk, "node_modules", ".bin", "asc"))) {
  const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: sdk, stdio: "inherit" });
  if (r.status !== 0) throw new Error("npm ci failed");
}
const [guest, echo, linepubsub, faulty] = await Promise.all([
  build(join(sdk, "test", "guest.ts"), "guest"),
  build("guests/assemblyscript/echo.ts", "echo"),
  build("guests/assemblyscript/linepubsub.ts", "linepubsub"),
  build("guests/assemblyscript/faulty.ts", "faulty"),
]);
const modules = { guest, echo, linepubsub, faulty };

// ---- protobuf, as far as the tests need it ----

const enc = new TextEncoder();
const dec = new TextDecoder();

function varint(v) {
  v = BigInt(v);
  const b = [];
  while (v >= 0x80n) {
    b.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  b.push(Number(v));
  return b;
}

// pb encodes fields given as [num, value]: a number or bigint is a varint,
// a string or Uint8Array or array (a sub-message's bytes) a bytes field.
function pb(...fields) {
  const out = [];
  for (const [num, v] of fields) {
    if (typeof v === "number" || typeof v === "bigint") {
      out.push(...varint((num << 3) | 0), ...varint(v));
    } else {
      const b = typeof v === "string" ? enc.encode(v) : Uint8Array.from(v);
      out.push(...varint((num << 3) | 2), ...varint(b.length), ...b);
    }
  }
  return Uint8Array.from(out);
}

// unpb decodes a message into {num: [values]} (bytes as Uint8Array, varints as bigint).
function unpb(b) {
  const f = {};
  let i = 0;
  const rv = () => {
    let v = 0n, s = 0n;
    for (;;) {
      const c = b[i++];
      v |= BigInt(c & 0x7f) << s;
      s += 7n;
      if (c < 0x80) return v;
    }
  };
  while (i < b.length) {
    const tag = rv();
    const num = Number(tag >> 3n), typ = Number(tag & 7n);
    let v;
    if (typ === 0) v = rv();
    else {
      const l = Number(rv());
      v = b.slice(i, i + l);
      i += l;
    }
    (f[num] ||= []).push(v);
  }
  return f;
}

// ---- the fake host ----

const S = { SUCCESS: 0, UNKNOWN: 1, NOT_ALIVE: 2, MISSED: 3, TYPE: 4, DENY: 5 };

class FakeHost {
  constructor(mod) {
    this.sent = []; // [conn, text]
    this.calls = []; // [name, ...args]
    this.logs = []; // [level, text]
    this.fails = {}; // name -> [status, message]: the next call of name fails
    this.lastErr = "";
    this.nextTimer = 1n;
    const h = this;
    const fail = (name) => {
      const f = h.fails[name];
      if (!f) return 0;
      delete h.fails[name];
      h.lastErr = f[1];
      return f[0];
    };
    const rec = (name, ...args) => {
      h.calls.push([name, ...args]);
      return fail(name);
    };
    const bytes = (p, n) => h.bytes(p, n);
    this.instance = new WebAssembly.Instance(mod, {
      protogate: {
        send: (c, p, n) => {
          const st = fail("send");
          if (st === 0) h.sent.push([c, dec.decode(bytes(p, n))]);
          return st;
        },
        close: (c) => rec("close", c),
        authenticate: (c, p, n) => rec("authenticate", c, unpb(bytes(p, n))),
        start_timer: (c, t, i) => rec("start_timer", c, t, i),
        publish: (c, tp, tn, q, p, n) => rec("publish", c, bytes(tp, tn), q, bytes(p, n)),
        raw_publish: (tp, tn, q, p, n) => rec("raw_publish", bytes(tp, tn), q, bytes(p, n)),
        subscribe: (c, tp, tn, q) => rec("subscribe", c, dec.decode(bytes(tp, tn)), q),
        unsubscribe: (c, tp, tn) => rec("unsubscribe", c, dec.decode(bytes(tp, tn))),
        set_timer: (c, ms) => {
          const st = rec("set_timer", c, ms);
          return st ? -BigInt(st) : h.nextTimer++;
        },
        cancel_timer: (c, t) => rec("cancel_timer", c, t),
        log: (level, p, n) => h.logs.push([level, dec.decode(bytes(p, n))]),
        last_error: (p, cap) => {
          const b = enc.encode(h.lastErr);
          h.mem().set(b.subarray(0, Math.min(cap, b.length)), p);
          return b.length;
        },
      },
    });
    this.ex = this.instance.exports;
    this.ex._initialize();
    assert.equal(this.ex.protogate_init(), 0);
  }
  mem() {
    return new Uint8Array(this.ex.memory.buffer);
  }
  bytes(p, n) {
    assert.ok(p + n <= this.ex.memory.buffer.byteLength, "pointer range outside linear memory");
    return this.mem().slice(p, p + n);
  }
  // call runs a callback with payload in the inbox, as the host does.
  call(name, conn, payload) {
    const b = typeof payload === "string" ? enc.encode(payload) : payload;
    const p = this.ex.protogate_inbox(b.length);
    assert.ok(p !== 0 && p + b.length <= this.ex.memory.buffer.byteLength);
    this.mem().set(b, p);
    return this.ex["protogate_on_" + name](conn, b.length);
  }
  bytesIn(conn, s) {
    return this.call("received_bytes", conn, s);
  }
  // take returns and clears what was sent.
  take() {
    const t = this.sent.map(([, s]) => s);
    this.sent = [];
    return t;
  }
}

const C = 0x0123456789abcdefn;
const conninfo = pb([1, 1], [2, pb([1, "1.2.3.4"], [2, 5555])], [3, pb([1, "::1"], [2, 7993])], [4, pb([1, "dev"], [2, "CN=dev"])]);

// ---- the SDK ----

test("exports and imports are those of ABI v1", () => {
  for (const mod of Object.values(modules)) {
    const ex = WebAssembly.Module.exports(mod).map((e) => e.name);
    for (const name of ["protogate_abi_v1", "protogate_inbox", "protogate_init", "memory", "_initialize"]) {
      assert.ok(ex.includes(name), name);
    }
    assert.ok(!ex.includes("protogateAbort"));
    for (const im of WebAssembly.Module.imports(mod)) assert.equal(im.module, "protogate", im.name);
  }
});

test("init runs once and logs", () => {
  const h = new FakeHost(modules.guest);
  assert.deepEqual(h.logs, [[0, "init"]]);
  h.bytesIn(C, "init");
  assert.deepEqual(h.take(), ["init 1"]);
});

test("on_socket_created decodes ConnInfo", () => {
  const h = new FakeHost(modules.guest);
  assert.equal(h.call("socket_created", C, pb([1, "0123456789abcdef"], [2, conninfo])), 0);
  assert.deepEqual(h.take(), ["created 0123456789abcdef 1 1.2.3.4:5555 ::1:7993 cert dev/CN=dev"]);
  // No certificate, an unknown field, default socket type.
  assert.equal(h.call("socket_created", 5n, pb([2, pb([2, pb([1, "h"])], [9, "?"])])), 0);
  assert.deepEqual(h.take(), ["created 0000000000000005 0 h:0 :0"]);
});

test("malformed payloads fail the callback with PARAMS_TYPE_ERROR", () => {
  const h = new FakeHost(modules.guest);
  for (const [cb, b] of [
    ["socket_created", [0x0a, 0xff]],
    ["socket_created", pb([2, [0x12, 0x05, 0x0a]])],
    ["received_messages", pb([2, [0x28, 0x01]])], // topic as a varint
    ["socket_closed", [0x0b]], // wire type 3
  ]) {
    h.logs = [];
    assert.equal(h.call(cb, C, Uint8Array.from(b)), S.TYPE, cb);
    assert.equal(h.logs.length, 1);
    assert.equal(h.logs[0][0], 8);
    assert.match(h.logs[0][1], new RegExp(`protogate: on_${cb}: malformed protobuf`));
  }
  assert.deepEqual(h.take(), []);
});

test("host calls pass their arguments", () => {
  const h = new FakeHost(modules.guest);
  h.bytesIn(C, "auth c1");
  const [name, conn, req] = h.calls.pop();
  assert.equal(name, "authenticate");
  assert.equal(conn, C);
  assert.equal(req[1], undefined); // conn is left to the call's argument
  const ci = unpb(req[2][0]);
  assert.deepEqual([1, 2, 3, 4].map((n) => dec.decode(ci[n][0])), ["p", "v1", "c1", "u"]);
  assert.equal(dec.decode(req[3][0]), "pw");

  h.bytesIn(C, "pub hello");
  assert.deepEqual(h.calls.pop(), ["publish", C, enc.encode("t/é"), 1, enc.encode("hello")]);
  h.bytesIn(C, "rawpub x");
  assert.deepEqual(h.calls.pop(), ["raw_publish", enc.encode("raw"), 2, enc.encode("x")]);
  h.bytesIn(C, "sub a/+");
  assert.deepEqual(h.calls.pop(), ["subscribe", C, "a/+", 1]);
  h.bytesIn(C, "unsub a/+");
  assert.deepEqual(h.calls.pop(), ["unsubscribe", C, "a/+"]);
  h.bytesIn(C, "keepalive 30");
  assert.deepEqual(h.calls.pop(), ["start_timer", C, 0, 30]);
  h.bytesIn(C, "close");
  assert.deepEqual(h.calls.pop(), ["close", C]);
  assert.deepEqual(h.take(), ["auth ok", "pub ok", "rawpub ok", "sub ok", "unsub ok", "keepalive ok", "close ok"]);
});

test("a failed call returns its status and last_error has the message", () => {
  const h = new FakeHost(modules.guest);
  h.fails.subscribe = [S.DENY, "too many subscriptions"];
  h.bytesIn(C, "sub x");
  h.fails.publish = [S.NOT_ALIVE, ""];
  h.bytesIn(C, "pub y");
  // A message longer than the SDK's first buffer (256 bytes).
  const long = "é".repeat(200) + "!";
  h.fails.authenticate = [S.DENY, long];
  h.bytesIn(C, "auth z");
  assert.deepEqual(h.take(), ["sub PERMISSION_DENY too many subscriptions", "pub CONN_PROCESS_NOT_ALIVE ", "auth PERMISSION_DENY " + long]);
});

test("timers: set_timer ids and failures, on_timer, cancel", () => {
  const h = new FakeHost(modules.guest);
  h.bytesIn(C, "timer 250");
  assert.deepEqual(h.calls.pop(), ["set_timer", C, 250]);
  h.bytesIn(C, "timer 0"); // 0 is rounded up to 1 ms
  assert.deepEqual(h.calls.pop(), ["set_timer", C, 1]);
  h.fails.set_timer = [S.DENY, "max_timers"];
  h.bytesIn(C, "timer 5");
  assert.equal(h.ex.protogate_on_timer(C, 1n), 0);
  h.bytesIn(C, "cancel 2");
  assert.deepEqual(h.calls.pop(), ["cancel_timer", C, 2n]);
  assert.equal(h.ex.protogate_on_timer_timeout(C, 0), 0);
  assert.deepEqual(h.take(), ["timer 1", "timer 2", "timer error PERMISSION_DENY max_timers", "fired 1", "cancel ok", "timeout 0"]);
});

test("on_received_messages decodes every message", () => {
  const h = new FakeHost(modules.guest);
  const m1 = pb([1, "n1"], [2, "id1"], [3, 1], [4, "c9"], [5, "a/b"], [6, "p1"], [7, 1700000000000n]);
  const m2 = pb([5, "é/x"], [6, ""]);
  assert.equal(h.call("received_messages", C, pb([1, "0123456789abcdef"], [2, m1], [2, m2])), 0);
  assert.equal(h.call("received_messages", C, pb([1, "x"])), 0);
  assert.deepEqual(h.take(), ["msgs 2 [n1|id1|1|c9|a/b|p1|1700000000000] [||0||é/x||0]", "msgs 0"]);
});

test("on_socket_closed passes the reason", () => {
  const h = new FakeHost(modules.guest);
  assert.equal(h.call("socket_closed", C, pb([1, "x"], [2, "{shutdown,normal}"])), 0);
  assert.deepEqual(h.take(), ["closed {shutdown,normal}"]);
});

test("callback statuses: failures pass, invalid ones become UNKNOWN", () => {
  const h = new FakeHost(modules.guest);
  assert.equal(h.bytesIn(C, "status 3"), 3);
  assert.match(h.logs.pop()[1], /onReceivedBytes failed \(REQUIRED_PARAMS_MISSED\)/);
  assert.equal(h.bytesIn(C, "status 42"), S.UNKNOWN);
  assert.match(h.logs.pop()[1], /returned 42, not an ABI v1 status/);
  assert.equal(h.bytesIn(C, "status 0"), 0);
});

test("the inbox grows and stays put between growths", () => {
  const h = new FakeHost(modules.echo);
  const p1 = h.ex.protogate_inbox(10);
  assert.equal(h.ex.protogate_inbox(4096), p1);
  const big = "z".repeat(300_000);
  assert.equal(h.bytesIn(C, big), 0);
  assert.deepEqual(h.take(), [big]);
  const p2 = h.ex.protogate_inbox(300_000);
  assert.equal(h.ex.protogate_inbox(5), p2);
});

test("abort and throw log their message and trap", () => {
  const h = new FakeHost(modules.faulty);
  assert.throws(() => h.bytesIn(C, "abort"), WebAssembly.RuntimeError);
  assert.deepEqual(h.logs, [[8, "abort: faulty: abort requested"]]);
  const h2 = new FakeHost(modules.faulty);
  assert.throws(() => h2.bytesIn(C, "throw"), WebAssembly.RuntimeError);
  assert.equal(h2.logs.length, 1);
  assert.match(h2.logs[0][1], /^abort: faulty: thrown at .*faulty\.ts:\d+:\d+$/);
});

test("a long-running echo does not grow its memory (the collector frees)", () => {
  const h = new FakeHost(modules.echo);
  const msg = "m".repeat(1000);
  let early = 0;
  for (let i = 0; i < 100_000; i++) {
    assert.equal(h.bytesIn(C, msg), 0);
    h.sent.length = 0;
    if (i === 10_000) early = h.ex.memory.buffer.byteLength;
  }
  assert.ok(h.ex.memory.buffer.byteLength <= early + 256 * 1024, `memory ${early} -> ${h.ex.memory.buffer.byteLength}`);
});

// ---- linepubsub, byte for byte with the Go guest ----

function lineHost() {
  const h = new FakeHost(modules.linepubsub);
  assert.equal(h.call("socket_created", C, pb([1, "0123456789abcdef"], [2, conninfo])), 0);
  const [name, conn, req] = h.calls.pop();
  assert.equal(name, "authenticate");
  const ci = unpb(req[2][0]);
  assert.deepEqual([1, 2, 3].map((n) => dec.decode(ci[n][0])), ["line", "1", "line-0123456789abcdef"]);
  return h;
}

test("linepubsub: commands and replies", () => {
  const h = lineHost();
  h.fails.subscribe = [S.TYPE, "invalid topic filter bad/#/filter"];
  h.bytesIn(C, "PING\nping\r\nNOPE x\n\nSUB bad/#/filter\nSUB t/+\nUNSUB t/+\nPUB t/1 hello  world \r\nPUB t/2\n");
  assert.deepEqual(h.take(), ["PONG\n", "PONG\n", "ERR unknown command\n", "ERR invalid topic filter bad/#/filter\n", "OK\n", "OK\n", "OK\n", "OK\n"]);
  assert.deepEqual(h.calls.slice(-4), [
    ["subscribe", C, "t/+", 0],
    ["unsubscribe", C, "t/+"],
    ["publish", C, enc.encode("t/1"), 0, enc.encode("hello  world ")],
    ["publish", C, enc.encode("t/2"), 0, new Uint8Array(0)],
  ]);
  // A failure without a message: the status name.
  h.fails.publish = [S.NOT_ALIVE, ""];
  h.bytesIn(C, "pub x y\n");
  assert.deepEqual(h.take(), ["ERR CONN_PROCESS_NOT_ALIVE\n"]);
});

test("linepubsub: split lines, deliveries, a long line", () => {
  const h = lineHost();
  h.bytesIn(C, "PUB t/3");
  h.bytesIn(C, "/x spl");
  h.bytesIn(C, "it\nPI");
  h.bytesIn(C, "NG\n");
  assert.deepEqual(h.take(), ["OK\n", "PONG\n"]);
  assert.deepEqual(h.calls.pop(), ["publish", C, enc.encode("t/3/x"), 0, enc.encode("split")]);
  h.call("received_messages", C, pb([2, pb([5, "a/b"], [6, "one"])], [2, pb([5, "c"], [6, "two words"])]));
  assert.deepEqual(h.take(), ["MSG a/b one\nMSG c two words\n"]);
  // Exactly 64 KiB is fine; one byte more closes.
  h.bytesIn(C, "x".repeat(64 << 10) + "\n");
  assert.deepEqual(h.take(), ["ERR unknown command\n"]);
  h.bytesIn(C, "y".repeat(40 << 10));
  h.bytesIn(C, "y".repeat((24 << 10) + 1));
  assert.deepEqual(h.take(), ["ERR line too long\n"]);
  assert.deepEqual(h.calls.pop(), ["close", C]);
  h.bytesIn(C, "PING\n"); // ignored after close
  assert.deepEqual(h.take(), []);
  assert.equal(h.call("socket_closed", C, pb([2, "{shutdown,normal}"])), 0);
});

test("linepubsub: a refused authentication is reported, then the connection closes", () => {
  const h = new FakeHost(modules.linepubsub);
  h.fails.authenticate = [S.DENY, "client id taken"];
  assert.equal(h.call("socket_created", 9n, pb([2, conninfo])), 0);
  assert.deepEqual(h.take(), ["ERR authentication failed: client id taken\n"]);
  assert.deepEqual(h.calls.pop(), ["close", 9n]);
  h.bytesIn(9n, "PING\n");
  assert.deepEqual(h.take(), []);
});
