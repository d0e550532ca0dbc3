// protogate SDK for AssemblyScript: write a protogate protocol handler (an
// ABI v1 WebAssembly guest) by extending Handler.
//
//   import { Conn, Handler, Status, register } from "<sdk>/assembly";
//   export * from "<sdk>/assembly/exports"; // the ABI v1 exports: required
//
//   class Echo extends Handler {
//     onReceivedBytes(conn: Conn, data: Uint8Array): Status { return conn.send(data); }
//   }
//   register(new Echo());
//
// Build with sdk/assemblyscript/build.sh (it picks the runtime and the abort
// function the host needs). Host calls return a Status; lastError() (or
// conn.lastError) gives the host's message for the last failed one. A
// callback returns Status.Success, or another status to have the host close
// that connection. An AssemblyScript `throw`, like any abort or trap, is a
// fault of the whole instance: the host discards it and closes every
// connection pinned to it, so return statuses rather than throw.

import * as host from "./imports";
import { Writer } from "./wire";

export { Reader, Writer } from "./wire";

/** The result of a callback or a host call; the values of emqx.exproto.v1.ResultCode. */
export enum Status {
  Success = 0,
  Unknown = 1,
  NotAlive = 2,
  RequiredParamsMissed = 3,
  ParamsTypeError = 4,
  PermissionDeny = 5,
}

/** The ResultCode name of st, as the host spells it. */
export function statusName(st: Status): string {
  switch (st) {
    case Status.Success: return "SUCCESS";
    case Status.Unknown: return "UNKNOWN";
    case Status.NotAlive: return "CONN_PROCESS_NOT_ALIVE";
    case Status.RequiredParamsMissed: return "REQUIRED_PARAMS_MISSED";
    case Status.ParamsTypeError: return "PARAMS_TYPE_ERROR";
    case Status.PermissionDeny: return "PERMISSION_DENY";
  }
  return "Status(" + (<i32>st).toString() + ")";
}

/** Log levels, as Go's log/slog. */
export enum Level {
  Debug = -4,
  Info = 0,
  Warn = 4,
  Error = 8,
}

/** The ExProto keepalive timer, the only ExProto timer type. */
export const TIMER_KEEPALIVE: i32 = 0;

/** The longest set_timer delay, in milliseconds (24 hours). */
export const MAX_TIMER_DELAY_MS: u32 = 24 * 60 * 60 * 1000;

/** Socket types of ConnInfo.sockType. */
export enum SocketType {
  TCP = 0,
  SSL = 1,
  UDP = 2,
  DTLS = 3,
}

export class Address {
  host: string = "";
  port: u16 = 0;
}

export class CertInfo {
  cn: string = "";
  dn: string = "";
}

/** What the gateway knows of a new connection. */
export class ConnInfo {
  sockType: SocketType = SocketType.TCP;
  peer: Address = new Address();
  local: Address = new Address();
  /** The client certificate's names, or null without one. */
  peerCert: CertInfo | null = null;
}

/** The client a connection authenticates as. */
export class ClientInfo {
  protoName: string = "";
  protoVer: string = "";
  clientId: string = "";
  username: string = "";
}

/**
 * A message of one of the connection's subscriptions. topicBytes and
 * payload are views of the inbox: valid only during the callback (copy
 * them, e.g. with slice(), to keep them).
 */
export class Message {
  node: string = "";
  id: string = "";
  qos: u8 = 0;
  from: string = "";
  topicBytes: Uint8Array = new Uint8Array(0);
  payload: Uint8Array = new Uint8Array(0);
  timestamp: i64 = 0;

  /** The topic, decoded as UTF-8. */
  get topic(): string {
    return String.UTF8.decodeUnsafe(this.topicBytes.dataStart, <usize>this.topicBytes.length);
  }
}

// scratch holds encoded requests of host calls; reused.
const scratch = new Writer();

function utf8(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

/**
 * A connection: its 64-bit handle (never 0) and the calls the handler makes
 * for it. Every call returns the host's Status; on a failure, lastError()
 * has the host's message. Byte arguments are copied by the host before the
 * call returns.
 */
export class Conn {
  constructor(public readonly id: u64) {}

  /** Writes data to the connection. */
  send(data: Uint8Array): Status {
    return <Status>host.send(this.id, data.dataStart, <u32>data.length);
  }

  /** Writes the UTF-8 of s to the connection. */
  sendString(s: string): Status {
    return this.send(utf8(s));
  }

  /** Closes the connection; onSocketClosed follows as a later callback. */
  close(): Status {
    return <Status>host.close(this.id);
  }

  /**
   * Registers the client after the gateway's authenticator accepts it.
   * publish, subscribe and unsubscribe need it. Another connection with the
   * same client id is closed.
   */
  authenticate(ci: ClientInfo, password: string = ""): Status {
    const w = new Writer();
    w.string(1, ci.protoName);
    w.string(2, ci.protoVer);
    w.string(3, ci.clientId);
    w.string(4, ci.username);
    scratch.reset();
    // AuthenticateRequest{clientinfo = 2, password = 3}; conn is ignored.
    scratch.varint((2 << 3) | 2);
    scratch.varint(<u64>w.len);
    scratch.raw(w.view());
    scratch.string(3, password);
    return <Status>host.authenticate(this.id, scratch.buf.dataStart, <u32>scratch.len);
  }

  /**
   * Starts, or restarts, the ExProto keepalive: when no bytes arrive for
   * 1.5 x intervalSeconds, onTimerTimeout runs and the host closes the
   * connection.
   */
  startTimer(type: i32, intervalSeconds: u32): Status {
    return <Status>host.start_timer(this.id, type, intervalSeconds);
  }

  /** Publishes payload on topic as the connection's client. */
  publish(topic: string, qos: u8, payload: Uint8Array): Status {
    return this.publishBytes(utf8(topic), qos, payload);
  }

  /** publish with the topic's bytes as they are. */
  publishBytes(topic: Uint8Array, qos: u8, payload: Uint8Array): Status {
    return <Status>host.publish(this.id, topic.dataStart, <u32>topic.length, <u32>qos, payload.dataStart, <u32>payload.length);
  }

  /** Subscribes to an MQTT topic filter; deliveries arrive as onReceivedMessages. */
  subscribe(filter: string, qos: u8): Status {
    return this.subscribeBytes(utf8(filter), qos);
  }

  subscribeBytes(filter: Uint8Array, qos: u8): Status {
    return <Status>host.subscribe(this.id, filter.dataStart, <u32>filter.length, <u32>qos);
  }

  /** Removes a subscription; removing one that does not exist succeeds. */
  unsubscribe(filter: string): Status {
    return this.unsubscribeBytes(utf8(filter));
  }

  unsubscribeBytes(filter: Uint8Array): Status {
    return <Status>host.unsubscribe(this.id, filter.dataStart, <u32>filter.length);
  }

  /**
   * Arms a one-shot timer of delayMs milliseconds (1 to 24 hours): when it
   * fires, the handler's onTimer gets the returned id. Returns the timer id
   * (> 0) or, on a failure, minus the Status (< 0).
   */
  setTimer(delayMs: u32): i64 {
    if (delayMs == 0) delayMs = 1;
    const id = host.set_timer(this.id, delayMs);
    if (id == 0 || id < -(<i64>1 << 31)) return -(<i64>Status.Unknown);
    return id;
  }

  /** Disarms a timer; succeeds for one that already fired. */
  cancelTimer(timer: i64): Status {
    return <Status>host.cancel_timer(this.id, timer);
  }

  /** The handle as the gRPC adapter spells it: 16 lowercase hex digits. */
  hex(): string {
    return hex16(this.id);
  }
}

/** 16 lowercase hex digits of v. */
export function hex16(v: u64): string {
  let s = "";
  for (let i = 15; i >= 0; i--) {
    const d = <i32>((v >> (<u64>(i * 4))) & 0xf);
    s += String.fromCharCode(d < 10 ? 48 + d : 87 + d);
  }
  return s;
}

/**
 * Publishes payload on topic as is (no client, no mountpoint). Call it only
 * from a callback.
 */
export function rawPublish(topic: string, qos: u8, payload: Uint8Array): Status {
  const t = utf8(topic);
  return <Status>host.raw_publish(t.dataStart, <u32>t.length, <u32>qos, payload.dataStart, <u32>payload.length);
}

/** Writes msg to the gateway's log, attributed to this module (at most 4096 bytes kept). */
export function log(level: Level, msg: string): void {
  const b = utf8(msg);
  host.log(<i32>level, b.dataStart, <u32>b.length);
}

export function logDebug(msg: string): void { log(Level.Debug, msg); }
export function logInfo(msg: string): void { log(Level.Info, msg); }
export function logWarn(msg: string): void { log(Level.Warn, msg); }
export function logError(msg: string): void { log(Level.Error, msg); }

const errBuf = new Uint8Array(256);

/**
 * The host's message for the last failed call of this instance, as the
 * bytes the host gave (empty if none). The view is valid until the next
 * call of lastErrorBytes or lastError.
 */
export function lastErrorBytes(): Uint8Array {
  let n = host.last_error(errBuf.dataStart, <u32>errBuf.length);
  if (n <= <u32>errBuf.length) return errBuf.subarray(0, <i32>n);
  const big = new Uint8Array(<i32>n);
  n = min(host.last_error(big.dataStart, <u32>big.length), <u32>big.length);
  return big.subarray(0, <i32>n);
}

/** The host's message for the last failed call of this instance ("" if it gave none). */
export function lastError(): string {
  const b = lastErrorBytes();
  return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
}

/**
 * The handler: extend it and override the callbacks you need (the others
 * succeed doing nothing), then register an instance from the module's top
 * level. An instance of the module runs one callback at a time; callbacks of
 * one connection come in order, onSocketCreated first, onSocketClosed last.
 */
export class Handler {
  /** Runs once per instance, before any connection; a failure refuses the instance. */
  init(): Status { return Status.Success; }
  onSocketCreated(conn: Conn, info: ConnInfo): Status { return Status.Success; }
  /** data is a view of the inbox, valid only during the call. */
  onReceivedBytes(conn: Conn, data: Uint8Array): Status { return Status.Success; }
  onTimerTimeout(conn: Conn, type: i32): Status { return Status.Success; }
  /** msgs and their byte views are reused after the call: copy what you keep. */
  onReceivedMessages(conn: Conn, msgs: Message[]): Status { return Status.Success; }
  onSocketClosed(conn: Conn, reason: string): Status { return Status.Success; }
  /** A timer armed with conn.setTimer fired. */
  onTimer(conn: Conn, timer: i64): Status { return Status.Success; }
}

let registered: Handler | null = null;

/** Makes h the module's handler. Call it once, from the top level. */
export function register(h: Handler): void {
  registered = h;
}

/** The registered handler, or null. */
export function handler(): Handler | null {
  return registered;
}
