// The guest exports of protogate ABI v1. A guest's entry file re-exports
// them:
//
//   export * from "<sdk>/assembly/exports";

import {
  Address, CertInfo, Conn, ConnInfo, Handler, Message, Status, SocketType,
  handler, logError, logWarn, statusName,
} from "./index";
import { Reader } from "./wire";
// The abort function build.sh names (--use abort=...): loaded, not exported.
import "./abort";

// The inbox: the host writes callback payloads here. It is held by a global
// (so the collector never frees it) and only replaced, by a bigger one, in
// protogate_inbox, as ABI v1 allows. AssemblyScript's collector does not
// move objects, so its address stays valid.
let inbox = new Uint8Array(4096);

// Scratch for onReceivedMessages, reused across calls.
const msgs: Message[] = [];

/** The ABI version marker; never called. */
export function protogate_abi_v1(): void {}

export function protogate_inbox(size: u32): usize {
  if (<u64>size > <u64>inbox.length) {
    let n: u64 = 4096;
    while (n < <u64>size) n *= 2;
    inbox = new Uint8Array(<i32>n);
  }
  return inbox.dataStart;
}

export function protogate_init(): i32 {
  const h = handler();
  if (h == null) {
    logError("protogate: no Handler registered: call register(new MyHandler()) at the top level of the module");
    return Status.Unknown;
  }
  return failed("init", h.init());
}

// begin returns the handler, or null after logging why the callback fails.
function begin(callback: string, n: u32): Handler | null {
  const h = handler();
  if (h == null) {
    logError("protogate: " + callback + ": no Handler registered");
    return null;
  }
  if (<u64>n > <u64>inbox.length) {
    logError("protogate: " + callback + ": payload of " + n.toString() + " bytes is larger than the inbox (" + inbox.length.toString() + " bytes)");
    return null;
  }
  return h;
}

// failStatus is the status of a callback that begin refused.
function refused(n: u32): i32 {
  return handler() == null ? Status.Unknown : Status.ParamsTypeError;
}

function failed(method: string, st: Status): i32 {
  if (st == Status.Success) return Status.Success;
  if (st < Status.Unknown || st > Status.PermissionDeny) {
    logWarn("protogate: " + method + " returned " + (<i32>st).toString() + ", not an ABI v1 status: failing it with UNKNOWN");
    return Status.Unknown;
  }
  logWarn("protogate: " + method + " failed (" + statusName(st) + ")");
  return st;
}

function malformed(callback: string, r: Reader): i32 {
  logError("protogate: " + callback + ": " + r.err!);
  return Status.ParamsTypeError;
}

function decodeAddress(r: Reader, a: Address): void {
  while (r.next()) {
    if (r.num == 1) {
      if (r.want(2)) a.host = r.str();
    } else if (r.num == 2) {
      if (r.want(0)) a.port = <u16>r.x;
    }
  }
}

// decodeConnInfo decodes a ConnInfo; on an error it is in r.err (or a
// sub-reader's, copied to r).
function decodeConnInfo(r: Reader, ci: ConnInfo): void {
  while (r.next()) {
    if (r.num == 1) {
      if (r.want(0)) ci.sockType = <SocketType>(<i32>r.x);
      continue;
    }
    if (r.num < 2 || r.num > 4) continue;
    if (!r.want(2)) return;
    const s = r.sub();
    if (r.num == 2) decodeAddress(s, ci.peer);
    else if (r.num == 3) decodeAddress(s, ci.local);
    else {
      const c = new CertInfo();
      while (s.next()) {
        if (s.num == 1) { if (s.want(2)) c.cn = s.str(); }
        else if (s.num == 2) { if (s.want(2)) c.dn = s.str(); }
      }
      ci.peerCert = c;
    }
    if (s.err != null) {
      r.err = s.err;
      return;
    }
  }
}

export function protogate_on_socket_created(conn: u64, n: u32): i32 {
  const h = begin("on_socket_created", n);
  if (h == null) return refused(n);
  const r = new Reader(inbox, 0, <i32>n);
  const info = new ConnInfo();
  while (r.next()) {
    if (r.num == 1) {
      r.want(2);
    } else if (r.num == 2) {
      if (!r.want(2)) break;
      const s = r.sub();
      decodeConnInfo(s, info);
      if (s.err != null) r.err = s.err;
    }
  }
  if (r.err != null) return malformed("on_socket_created", r);
  return failed("onSocketCreated", h.onSocketCreated(new Conn(conn), info));
}

export function protogate_on_received_bytes(conn: u64, n: u32): i32 {
  const h = begin("on_received_bytes", n);
  if (h == null) return refused(n);
  return failed("onReceivedBytes", h.onReceivedBytes(new Conn(conn), inbox.subarray(0, <i32>n)));
}

export function protogate_on_timer_timeout(conn: u64, type: i32): i32 {
  const h = begin("on_timer_timeout", 0);
  if (h == null) return refused(0);
  return failed("onTimerTimeout", h.onTimerTimeout(new Conn(conn), type));
}

function decodeMessage(r: Reader, m: Message): void {
  while (r.next()) {
    switch (r.num) {
      case 1: if (r.want(2)) m.node = r.str(); break;
      case 2: if (r.want(2)) m.id = r.str(); break;
      case 3: if (r.want(0)) m.qos = <u8>r.x; break;
      case 4: if (r.want(2)) m.from = r.str(); break;
      case 5: if (r.want(2)) m.topicBytes = r.bytes(); break;
      case 6: if (r.want(2)) m.payload = r.bytes(); break;
      case 7: if (r.want(0)) m.timestamp = <i64>r.x; break;
    }
  }
}

export function protogate_on_received_messages(conn: u64, n: u32): i32 {
  const h = begin("on_received_messages", n);
  if (h == null) return refused(n);
  const r = new Reader(inbox, 0, <i32>n);
  msgs.length = 0;
  while (r.next()) {
    if (r.num == 1) {
      r.want(2);
    } else if (r.num == 2) {
      if (!r.want(2)) break;
      const s = r.sub();
      const m = new Message();
      decodeMessage(s, m);
      if (s.err != null) {
        r.err = s.err;
        break;
      }
      msgs.push(m);
    }
  }
  if (r.err != null) {
    msgs.length = 0;
    return malformed("on_received_messages", r);
  }
  const st = h.onReceivedMessages(new Conn(conn), msgs);
  msgs.length = 0; // let the collector have them
  return failed("onReceivedMessages", st);
}

export function protogate_on_socket_closed(conn: u64, n: u32): i32 {
  const h = begin("on_socket_closed", n);
  if (h == null) return refused(n);
  const r = new Reader(inbox, 0, <i32>n);
  let reason = "";
  while (r.next()) {
    if (r.num == 1) r.want(2);
    else if (r.num == 2 && r.want(2)) reason = r.str();
  }
  if (r.err != null) return malformed("on_socket_closed", r);
  return failed("onSocketClosed", h.onSocketClosed(new Conn(conn), reason));
}

export function protogate_on_timer(conn: u64, timer: i64): i32 {
  const h = begin("on_timer", 0);
  if (h == null) return refused(0);
  return failed("onTimer", h.onTimer(new Conn(conn), timer));
}
