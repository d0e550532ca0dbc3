// linepubsub in AssemblyScript: the line protocol of guests/linepubsub (the
// Go guest), byte for byte. Each connection is authenticated as it opens,
// with client id "line-" followed by the 16 hex digits of its handle, and
// then accepts one command per line:
//
//	SUB <filter>             subscribe to an MQTT topic filter (QoS 0)
//	UNSUB <filter>           unsubscribe
//	PUB <topic> <payload...> publish the rest of the line (QoS 0)
//	PING                     answered with PONG
//
// Every command is answered with OK, ERR <message> (the gateway's message
// when a call fails) or, for PING, PONG. Messages of the connection's
// subscriptions are written as MSG <topic> <payload>. Lines end with "\n";
// a "\r" before it is ignored, command names are not case-sensitive, and
// empty lines are ignored. A line longer than 64 KiB is answered with
// ERR line too long, and the connection is closed.
//
// Build (from the repository root): make sdk-guests-as, or
//
//	sdk/assemblyscript/build.sh guests/assemblyscript/linepubsub.ts .bin/guests/linepubsub-as.wasm
import {
  ClientInfo, Conn, ConnInfo, Handler, Message, Status, hex16, lastErrorBytes, register, statusName,
} from "../../sdk/assemblyscript/assembly";
export * from "../../sdk/assemblyscript/assembly/exports";

/** The longest line accepted, in bytes before its "\n" (a "\r" counts). */
const MAX_LINE: i32 = 64 << 10;

const NL: u8 = 0x0a;
const CR: u8 = 0x0d;
const SP: u8 = 0x20;

/** Bytes is a growable byte buffer. */
class Bytes {
  buf: Uint8Array = new Uint8Array(0);
  len: i32 = 0;

  reset(): void {
    this.len = 0;
  }

  append(b: Uint8Array): void {
    const need = this.len + b.length;
    if (need > this.buf.length) {
      let n = max(this.buf.length * 2, 64);
      while (n < need) n *= 2;
      const nb = new Uint8Array(n);
      nb.set(this.buf.subarray(0, this.len));
      this.buf = nb;
    }
    this.buf.set(b, this.len);
    this.len = need;
  }

  appendString(s: string): void {
    // The replies are ASCII.
    for (let i = 0; i < s.length; i++) this.appendByte(<u8>s.charCodeAt(i));
  }

  appendByte(c: u8): void {
    if (this.len == this.buf.length) {
      const nb = new Uint8Array(max(this.buf.length * 2, 64));
      nb.set(this.buf.subarray(0, this.len));
      this.buf = nb;
    }
    this.buf[this.len++] = c;
  }

  view(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

/** The state of one connection. */
class LineConn {
  partial: Bytes = new Bytes(); // the start of a line whose "\n" has not arrived
  closed: bool = false; // close was called; ignore the rest
}

/** The client id a connection authenticates with. */
export function clientId(conn: Conn): string {
  return "line-" + hex16(conn.id);
}

function indexByte(b: Uint8Array, c: u8): i32 {
  for (let i = 0; i < b.length; i++) {
    if (unchecked(b[i]) == c) return i;
  }
  return -1;
}

/** Whether cmd is name (upper-case ASCII), ignoring ASCII case. */
function isCmd(cmd: Uint8Array, name: string): bool {
  if (cmd.length != name.length) return false;
  for (let i = 0; i < cmd.length; i++) {
    let c = unchecked(cmd[i]);
    if (c >= 0x61 && c <= 0x7a) c -= 0x20;
    if (<i32>c != name.charCodeAt(i)) return false;
  }
  return true;
}

class LinePubSub extends Handler {
  conns: Map<u64, LineConn> = new Map();
  out: Bytes = new Bytes(); // reused for every reply

  onSocketCreated(conn: Conn, info: ConnInfo): Status {
    const st = new LineConn();
    this.conns.set(conn.id, st);
    const ci = new ClientInfo();
    ci.protoName = "line";
    ci.protoVer = "1";
    ci.clientId = clientId(conn);
    const res = conn.authenticate(ci, "");
    if (res != Status.Success) {
      this.replyErr(conn, "ERR authentication failed: ", res);
      st.closed = true;
      return conn.close();
    }
    return Status.Success;
  }

  onSocketClosed(conn: Conn, reason: string): Status {
    this.conns.delete(conn.id);
    return Status.Success;
  }

  // Runs every complete line of b, keeping an unfinished one for the next
  // call. Lines that arrive whole are run straight from b, without copying.
  onReceivedBytes(conn: Conn, b: Uint8Array): Status {
    if (!this.conns.has(conn.id)) return Status.Success;
    const st = this.conns.get(conn.id);
    if (st.closed) return Status.Success;
    while (b.length > 0) {
      const i = indexByte(b, NL);
      if (i < 0) {
        if (st.partial.len + b.length > MAX_LINE) return this.tooLong(conn, st);
        st.partial.append(b);
        return Status.Success;
      }
      let line = b.subarray(0, i);
      b = b.subarray(i + 1);
      if (st.partial.len + line.length > MAX_LINE) return this.tooLong(conn, st);
      if (st.partial.len > 0) {
        st.partial.append(line);
        line = st.partial.view();
      }
      const res = this.run(conn, line);
      st.partial.reset();
      if (res != Status.Success || st.closed) return res;
    }
    return Status.Success;
  }

  tooLong(conn: Conn, st: LineConn): Status {
    st.closed = true;
    st.partial = new Bytes(); // free the 64 KiB
    this.reply(conn, "ERR line too long");
    return conn.close();
  }

  run(conn: Conn, line: Uint8Array): Status {
    if (line.length > 0 && line[line.length - 1] == CR) line = line.subarray(0, line.length - 1);
    if (line.length == 0) return Status.Success;
    let cmd = line;
    let arg = new Uint8Array(0);
    const sp = indexByte(line, SP);
    if (sp >= 0) {
      cmd = line.subarray(0, sp);
      arg = line.subarray(sp + 1);
    }
    let res: Status;
    if (isCmd(cmd, "PING")) {
      return this.reply(conn, "PONG");
    } else if (isCmd(cmd, "SUB")) {
      res = conn.subscribeBytes(arg, 0);
    } else if (isCmd(cmd, "UNSUB")) {
      res = conn.unsubscribeBytes(arg);
    } else if (isCmd(cmd, "PUB")) {
      let topic = arg;
      let payload = new Uint8Array(0);
      const tsp = indexByte(arg, SP);
      if (tsp >= 0) {
        topic = arg.subarray(0, tsp);
        payload = arg.subarray(tsp + 1);
      }
      res = conn.publishBytes(topic, 0, payload);
    } else {
      return this.reply(conn, "ERR unknown command");
    }
    if (res != Status.Success) return this.replyErr(conn, "ERR ", res);
    return this.reply(conn, "OK");
  }

  reply(conn: Conn, s: string): Status {
    this.out.reset();
    this.out.appendString(s);
    this.out.appendByte(NL);
    return conn.send(this.out.view());
  }

  // replyErr sends prefix and the host's message for the failed call (the
  // status name if it gave none).
  replyErr(conn: Conn, prefix: string, res: Status): Status {
    const msg = lastErrorBytes();
    this.out.reset();
    this.out.appendString(prefix);
    if (msg.length > 0) this.out.append(msg);
    else this.out.appendString(statusName(res));
    this.out.appendByte(NL);
    return conn.send(this.out.view());
  }

  // Writes one MSG line per message, all in one send.
  onReceivedMessages(conn: Conn, msgs: Message[]): Status {
    if (msgs.length == 0) return Status.Success;
    this.out.reset();
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i];
      this.out.appendString("MSG ");
      this.out.append(m.topicBytes);
      this.out.appendByte(SP);
      this.out.append(m.payload);
      this.out.appendByte(NL);
    }
    return conn.send(this.out.view());
  }
}

register(new LinePubSub());
