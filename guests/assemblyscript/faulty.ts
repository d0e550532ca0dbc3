// faulty is the fault guest of the AssemblyScript SDK's tests
// (wasmhost/assemblyscript_test.go). It echoes what it receives, except for
// these chunks (trailing spaces, "\r" and "\n" are ignored, so nc works):
//
//	abort    calls abort() with a message: a trap, the message logged
//	throw    throws an Error: the same as abort in AssemblyScript
//	trap     runs unreachable()
//	loop     loops forever: the call runs past call_timeout
//	bomb     keeps 1 MiB arrays until the memory limit: an out-of-memory abort
//	fail     returns PERMISSION_DENY: only this connection closes
//	timer N  arms a timer of N ms; sends "timer" when it fires
//
// Build (from the repository root): make sdk-guests-as, or
//
//	sdk/assemblyscript/build.sh guests/assemblyscript/faulty.ts .bin/guests/faulty-as.wasm
import { Conn, Handler, Status, logInfo, register } from "../../sdk/assemblyscript/assembly";
export * from "../../sdk/assemblyscript/assembly/exports";

// kept holds the bomb's arrays, so that the collector cannot free them.
const kept: Uint8Array[] = [];

let spins: i64 = 0;

class Faulty extends Handler {
  onReceivedBytes(conn: Conn, data: Uint8Array): Status {
    let n = data.length;
    while (n > 0) {
      const c = data[n - 1];
      if (c != 0x20 && c != 0x0d && c != 0x0a) break;
      n--;
    }
    const cmd = String.UTF8.decodeUnsafe(data.dataStart, <usize>n);
    if (cmd == "abort") {
      abort("faulty: abort requested");
    } else if (cmd == "throw") {
      throw new Error("faulty: thrown");
    } else if (cmd == "trap") {
      unreachable();
    } else if (cmd == "loop") {
      while (true) spins++;
    } else if (cmd == "bomb") {
      while (true) {
        const b = new Uint8Array(1 << 20);
        b[0] = 1;
        kept.push(b);
      }
    } else if (cmd == "fail") {
      return Status.PermissionDeny;
    } else if (cmd.startsWith("timer ")) {
      const ms = <u32>I32.parseInt(cmd.substring(6));
      const id = conn.setTimer(ms);
      if (id < 0) return conn.sendString("timer error " + (-id).toString());
      return Status.Success;
    }
    logInfo("faulty: echo");
    return conn.send(data);
  }

  onTimer(conn: Conn, timer: i64): Status {
    return conn.sendString("timer");
  }
}

register(new Faulty());
