//! linepubsub is the Rust build of the protogate guest of
//! guests/linepubsub: the same line protocol, with the same replies byte for
//! byte. Each connection is authenticated as it opens, with client id
//! "line-" followed by the 16 hex digits of its handle, and then accepts one
//! command per line:
//!
//! ```text
//! SUB <filter>             subscribe to an MQTT topic filter (QoS 0)
//! UNSUB <filter>           unsubscribe
//! PUB <topic> <payload...> publish the rest of the line (QoS 0)
//! PING                     answered with PONG
//! ```
//!
//! Every command is answered with OK, ERR <message> (the gateway's message
//! when a call fails) or, for PING, PONG. Messages of the connection's
//! subscriptions are written as MSG <topic> <payload>. Lines end with "\n";
//! a "\r" before it is ignored, command names are not case-sensitive, and
//! empty lines are ignored. A line longer than 64 KiB is answered with
//! ERR line too long, and the connection is closed.

use std::collections::HashMap;

use protogate::{ClientInfo, Conn, ConnInfo, Error, Handler, Message, Result};

/// The longest line accepted, in bytes before its "\n" (a "\r" counts).
pub const MAX_LINE: usize = 64 << 10;

/// The handler: the per-connection state and one output buffer. An
/// instance runs one callback at a time, so they need no locks.
#[derive(Default)]
pub struct LinePubSub {
    conns: HashMap<Conn, State>,
    out: Vec<u8>, // reused for every reply
}

/// The state of one connection.
#[derive(Default)]
struct State {
    partial: Vec<u8>, // the start of a line whose "\n" has not arrived
    closed: bool,     // close was called; ignore the rest
}

/// The client id a connection authenticates with.
pub fn client_id(c: Conn) -> String {
    format!("line-{:016x}", c.0)
}

/// The text of a failed host call for the device: the host's message, or
/// the status name if it gave none.
fn message(e: &Error) -> String {
    if e.message().is_empty() {
        e.status().to_string()
    } else {
        e.message().to_string()
    }
}

impl LinePubSub {
    /// Sends a + b and a newline.
    fn reply(&mut self, c: Conn, a: &[u8], b: &[u8]) -> Result<()> {
        self.out.clear();
        self.out.extend_from_slice(a);
        self.out.extend_from_slice(b);
        self.out.push(b'\n');
        c.send(&self.out)
    }

    fn too_long(&mut self, c: Conn) -> Result<()> {
        if let Some(st) = self.conns.get_mut(&c) {
            st.closed = true;
            st.partial = Vec::new();
        }
        let _ = self.reply(c, b"ERR line too long", b"");
        c.close()
    }

    /// Runs one command line.
    fn run(&mut self, c: Conn, line: &[u8]) -> Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        let (cmd, arg) = cut(line);
        let r = if cmd.eq_ignore_ascii_case(b"PING") {
            return self.reply(c, b"PONG", b"");
        } else if cmd.eq_ignore_ascii_case(b"SUB") {
            c.subscribe(arg, 0)
        } else if cmd.eq_ignore_ascii_case(b"UNSUB") {
            c.unsubscribe(arg)
        } else if cmd.eq_ignore_ascii_case(b"PUB") {
            let (topic, payload) = cut(arg);
            c.publish(topic, 0, payload)
        } else {
            return self.reply(c, b"ERR unknown command", b"");
        };
        match r {
            Ok(()) => self.reply(c, b"OK", b""),
            Err(e) => self.reply(c, b"ERR ", message(&e).as_bytes()),
        }
    }
}

/// Splits b around its first space; the second part is empty without one.
fn cut(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&x| x == b' ') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

impl Handler for LinePubSub {
    /// Authenticates the connection; if that fails, tells the device why
    /// and closes.
    fn on_socket_created(&mut self, c: Conn, _: ConnInfo) -> Result<()> {
        self.conns.insert(c, State::default());
        let info = ClientInfo { proto_name: "line".into(), proto_ver: "1".into(), client_id: client_id(c), username: String::new() };
        if let Err(e) = c.authenticate(&info, "") {
            let _ = self.reply(c, b"ERR authentication failed: ", message(&e).as_bytes());
            if let Some(st) = self.conns.get_mut(&c) {
                st.closed = true;
            }
            return c.close();
        }
        Ok(())
    }

    /// Forgets the connection.
    fn on_socket_closed(&mut self, c: Conn, _: &str) -> Result<()> {
        self.conns.remove(&c);
        Ok(())
    }

    /// Runs every complete line of bytes, keeping an unfinished one for the
    /// next call. Lines that arrive whole are run straight from the inbox.
    fn on_received_bytes(&mut self, c: Conn, mut b: &[u8]) -> Result<()> {
        match self.conns.get(&c) {
            Some(st) if !st.closed => {}
            _ => return Ok(()),
        }
        while !b.is_empty() {
            let partial = self.conns[&c].partial.len();
            let i = match b.iter().position(|&x| x == b'\n') {
                Some(i) => i,
                None => {
                    if partial + b.len() > MAX_LINE {
                        return self.too_long(c);
                    }
                    self.conns.get_mut(&c).expect("state").partial.extend_from_slice(b);
                    return Ok(());
                }
            };
            let line = &b[..i];
            b = &b[i + 1..];
            if partial + line.len() > MAX_LINE {
                return self.too_long(c);
            }
            let r = if partial > 0 {
                let mut whole = std::mem::take(&mut self.conns.get_mut(&c).expect("state").partial);
                whole.extend_from_slice(line);
                let r = self.run(c, &whole);
                whole.clear();
                if let Some(st) = self.conns.get_mut(&c) {
                    st.partial = whole; // keep the buffer
                }
                r
            } else {
                self.run(c, line)
            };
            r?;
            if self.conns.get(&c).map_or(true, |st| st.closed) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Writes one MSG line per message, all in one send.
    fn on_received_messages(&mut self, c: Conn, msgs: &[Message<'_>]) -> Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.out.clear();
        for m in msgs {
            self.out.extend_from_slice(b"MSG ");
            self.out.extend_from_slice(m.topic.as_bytes());
            self.out.push(b' ');
            self.out.extend_from_slice(m.payload);
            self.out.push(b'\n');
        }
        c.send(&self.out)
    }
}

protogate::register!(LinePubSub::default());

#[cfg(test)]
mod tests {
    use super::*;
    use protogate::testing::{Host, REASON_NORMAL};
    use protogate::Status;

    fn cmd(host: &Host, c: Conn, line: &str) -> String {
        host.receive(c, line.as_bytes()).unwrap();
        String::from_utf8(host.sent(c)).unwrap()
    }

    #[test]
    fn protocol() {
        let host = Host::new(LinePubSub::default());
        let c = host.connect(ConnInfo::default());
        assert!(host.authenticated(c));
        let auth = host.calls().into_iter().find(|x| x.op == "authenticate").unwrap();
        let ci = auth.client_info.unwrap();
        assert_eq!(ci.client_id, client_id(c));
        assert_eq!(ci.client_id.len(), "line-".len() + 16);
        assert_eq!((ci.proto_name.as_str(), ci.proto_ver.as_str()), ("line", "1"));
        assert_eq!(cmd(&host, c, "PING\n"), "PONG\n");
        assert_eq!(cmd(&host, c, "pInG\r\n"), "PONG\n");
        assert_eq!(cmd(&host, c, "\n\r\n"), "");
        assert_eq!(cmd(&host, c, "NOPE x\n"), "ERR unknown command\n");
        assert_eq!(cmd(&host, c, "SUB t/+/x\nUNSUB t/+/x\n"), "OK\nOK\n");
        assert_eq!(cmd(&host, c, "SUB\n"), "ERR testing: topic is empty\n");
        // Topics go to the host as they are, invalid UTF-8 included.
        host.receive(c, b"PUB t/\xff x\n").unwrap();
        assert_eq!(host.sent(c), b"ERR testing: topic is not valid UTF-8\n");
        assert_eq!(cmd(&host, c, "PUB t/1 hello  world \n"), "OK\n");
        let pubs: Vec<_> = host.calls().into_iter().filter(|x| x.op == "publish" && x.status == Status::SUCCESS).collect();
        assert_eq!(pubs.len(), 1);
        assert_eq!((pubs[0].topic.as_str(), pubs[0].bytes.as_slice()), ("t/1", &b"hello  world "[..]));
        // A failure without a message reads as the status name.
        host.fail("subscribe", Status::PERMISSION_DENY, "");
        assert_eq!(cmd(&host, c, "SUB a\n"), "ERR PERMISSION_DENY\n");
        host.fail("subscribe", Status::PERMISSION_DENY, "no way");
        assert_eq!(cmd(&host, c, "SUB a\n"), "ERR no way\n");
        // Split lines, then two in one chunk.
        assert_eq!(cmd(&host, c, "PI"), "");
        assert_eq!(cmd(&host, c, "NG\nPING\n"), "PONG\nPONG\n");
    }

    #[test]
    fn deliveries() {
        let host = Host::new(LinePubSub::default());
        let c = host.connect(ConnInfo::default());
        let m = |topic, payload| Message { topic, payload, ..Message::default() };
        host.deliver(c, &[m("a/b", &b"one"[..]), m("c", &b"two words"[..])]).unwrap();
        assert_eq!(host.sent(c), b"MSG a/b one\nMSG c two words\n");
    }

    #[test]
    fn long_line() {
        let host = Host::new(LinePubSub::default());
        let c = host.connect(ConnInfo::default());
        let exact = vec![b'x'; MAX_LINE];
        host.receive(c, &exact).unwrap();
        host.receive(c, b"\n").unwrap();
        assert_eq!(host.sent(c), b"ERR unknown command\n");
        host.receive(c, &exact).unwrap();
        host.receive(c, b"y").unwrap();
        assert_eq!(host.sent(c), b"ERR line too long\n");
        assert_eq!(host.closed(c).as_deref(), Some(REASON_NORMAL));
        let d = host.connect(ConnInfo::default());
        let mut long = vec![b'x'; MAX_LINE + 1];
        long.push(b'\n');
        host.receive(d, &long).unwrap();
        assert_eq!(host.sent(d), b"ERR line too long\n");
        assert!(host.closed(d).is_some());
    }

    #[test]
    fn authentication_refused() {
        let host = Host::new(LinePubSub::default());
        host.fail("authenticate", Status::PERMISSION_DENY, "bad password");
        let c = host.connect(ConnInfo::default());
        assert_eq!(host.closed(c).as_deref(), Some(REASON_NORMAL));
        let sent = host.calls().into_iter().find(|x| x.op == "send").unwrap();
        assert_eq!(sent.bytes, b"ERR authentication failed: bad password\n");
    }
}
