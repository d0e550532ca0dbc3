// The SDK's test guest: test/sdk.test.mjs runs it in Node with a fake host.
// Each callback reports what the SDK decoded by sending it as text; each
// command (one chunk of received bytes) makes one host call and sends its
// result.
import {
  ClientInfo, Conn, ConnInfo, Handler, Level, Message, Status, TIMER_KEEPALIVE,
  lastError, log, rawPublish, register, statusName,
} from "../assembly";
export * from "../assembly/exports";

function utf8(b: Uint8Array): string {
  return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
}

let initCalls = 0;

class TestHandler extends Handler {
  init(): Status {
    initCalls++;
    log(Level.Info, "init");
    return Status.Success;
  }

  onSocketCreated(conn: Conn, info: ConnInfo): Status {
    let s = "created " + conn.hex() + " " + info.sockType.toString() + " " +
      info.peer.host + ":" + info.peer.port.toString() + " " + info.local.host + ":" + info.local.port.toString();
    const pc = info.peerCert;
    if (pc != null) s += " cert " + pc.cn + "/" + pc.dn;
    return conn.sendString(s);
  }

  onReceivedBytes(conn: Conn, data: Uint8Array): Status {
    const line = utf8(data);
    const sp = line.indexOf(" ");
    const cmd = sp < 0 ? line : line.substring(0, sp);
    const arg = sp < 0 ? "" : line.substring(sp + 1);
    let st: Status;
    if (cmd == "auth") {
      const ci = new ClientInfo();
      ci.protoName = "p";
      ci.protoVer = "v1";
      ci.clientId = arg;
      ci.username = "u";
      st = conn.authenticate(ci, "pw");
    } else if (cmd == "pub") {
      st = conn.publish("t/é", 1, Uint8Array.wrap(String.UTF8.encode(arg)));
    } else if (cmd == "rawpub") {
      st = rawPublish("raw", 2, Uint8Array.wrap(String.UTF8.encode(arg)));
    } else if (cmd == "sub") {
      st = conn.subscribe(arg, 1);
    } else if (cmd == "unsub") {
      st = conn.unsubscribe(arg);
    } else if (cmd == "keepalive") {
      st = conn.startTimer(TIMER_KEEPALIVE, <u32>I32.parseInt(arg));
    } else if (cmd == "timer") {
      const id = conn.setTimer(<u32>I32.parseInt(arg));
      if (id < 0) return conn.sendString("timer error " + statusName(<Status>(<i32>-id)) + " " + lastError());
      return conn.sendString("timer " + id.toString());
    } else if (cmd == "cancel") {
      st = conn.cancelTimer(I64.parseInt(arg));
    } else if (cmd == "close") {
      st = conn.close();
    } else if (cmd == "status") {
      return <Status>I32.parseInt(arg);
    } else if (cmd == "init") {
      return conn.sendString("init " + initCalls.toString());
    } else {
      log(Level.Warn, "unknown " + line);
      return Status.Success;
    }
    if (st != Status.Success) return conn.sendString(cmd + " " + statusName(st) + " " + lastError());
    return conn.sendString(cmd + " ok");
  }

  onReceivedMessages(conn: Conn, msgs: Message[]): Status {
    let s = "msgs " + msgs.length.toString();
    for (let i = 0; i < msgs.length; i++) {
      const m = msgs[i];
      s += " [" + m.node + "|" + m.id + "|" + m.qos.toString() + "|" + m.from + "|" + m.topic + "|" + utf8(m.payload) + "|" + m.timestamp.toString() + "]";
    }
    return conn.sendString(s);
  }

  onTimerTimeout(conn: Conn, type: i32): Status {
    return conn.sendString("timeout " + type.toString());
  }

  onSocketClosed(conn: Conn, reason: string): Status {
    return conn.sendString("closed " + reason);
  }

  onTimer(conn: Conn, timer: i64): Status {
    return conn.sendString("fired " + timer.toString());
  }
}

register(new TestHandler());
