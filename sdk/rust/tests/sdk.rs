//! The SDK against its fake host: every callback and host call of ABI v1,
//! through the same code as the Wasm exports.

use std::time::Duration;

use protogate::testing::{Host, REASON_KEEPALIVE_TIMEOUT, REASON_NORMAL, REASON_TCP_CLOSED};
use protogate::{
    raw_publish, Address, CertInfo, ClientInfo, Conn, ConnInfo, Error, Handler, Level, Message, Result, SocketType, Status,
    Timer, TimerType,
};

/// Records every callback, as text, and does what a test asks.
#[derive(Default)]
struct Recorder {
    info: Option<ConnInfo>,
    fail_with: Option<Error>,
    init_fails: bool,
}

impl Recorder {
    fn result(&mut self) -> Result<()> {
        match self.fail_with.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

thread_local! {
    static EVENTS: std::cell::RefCell<Vec<String>> = std::cell::RefCell::new(Vec::new());
}

fn event(s: String) {
    EVENTS.with(|e| e.borrow_mut().push(s));
}

fn events() -> Vec<String> {
    EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

impl Handler for Recorder {
    fn init(&mut self) -> Result<()> {
        event("init".into());
        if self.init_fails {
            return Err(Error::new(Status::PERMISSION_DENY, "no"));
        }
        Ok(())
    }
    fn on_socket_created(&mut self, _: Conn, info: ConnInfo) -> Result<()> {
        event(format!("created {}:{} {:?}", info.peer.host, info.peer.port, info.sock_type));
        self.info = Some(info);
        self.result()
    }
    fn on_received_bytes(&mut self, c: Conn, b: &[u8]) -> Result<()> {
        event(format!("bytes {}", String::from_utf8_lossy(b)));
        match b {
            b"close" => c.close(),
            b"auth" => c.authenticate(&ClientInfo { client_id: "id1".into(), ..ClientInfo::default() }, "pw"),
            b"sub" => c.subscribe("a/+", 1),
            b"pub" => c.publish("a/b", 2, b"payload"),
            b"unsub" => c.unsubscribe("a/+"),
            b"keepalive" => c.start_timer(TimerType::KEEPALIVE, 30),
            b"raw" => raw_publish("r/t", 0, b"raw"),
            b"timer" => c.set_timer(Duration::from_micros(1500)).map(|t| event(format!("armed {}", t.0))),
            b"log" => {
                protogate::log(Level::Info, "hello log");
                Ok(())
            }
            _ => self.result(),
        }
    }
    fn on_timer_timeout(&mut self, c: Conn, t: TimerType) -> Result<()> {
        event(format!("timeout {}", t.0));
        c.send(b"dropped")
    }
    fn on_received_messages(&mut self, _: Conn, msgs: &[Message<'_>]) -> Result<()> {
        for m in msgs {
            event(format!("msg {} {} {} {} {} {:?} {}", m.node, m.id, m.qos, m.from, m.topic, m.payload, m.timestamp));
        }
        self.result()
    }
    fn on_socket_closed(&mut self, _: Conn, reason: &str) -> Result<()> {
        event(format!("closed {}", reason));
        Ok(())
    }
    fn on_timer(&mut self, _: Conn, t: Timer) -> Result<()> {
        event(format!("timer {}", t.0));
        Ok(())
    }
}

#[test]
fn conn_info_and_lifecycle() {
    let host = Host::new(Recorder::default());
    host.init().unwrap();
    let info = ConnInfo {
        sock_type: SocketType::Dtls,
        peer: Address { host: "192.0.2.1".into(), port: 5684 },
        local: Address { host: "0.0.0.0".into(), port: 443 },
        peer_cert: Some(CertInfo { cn: "dev".into(), dn: "CN=dev,O=x".into() }),
    };
    let c = host.connect(info);
    host.receive(c, b"hi").unwrap();
    host.disconnect(c, "").unwrap();
    assert_eq!(events(), ["init", "created 192.0.2.1:5684 Dtls", "bytes hi", &format!("closed {}", REASON_TCP_CLOSED)]);
    assert_eq!(host.closed(c).as_deref(), Some(REASON_TCP_CLOSED));
}

#[test]
fn init_failure() {
    let host = Host::new(Recorder { init_fails: true, ..Recorder::default() });
    let e = host.init().unwrap_err();
    assert_eq!(e.status(), Status::PERMISSION_DENY);
}

#[test]
fn host_calls() {
    let host = Host::new(Recorder::default());
    let c = host.connect(ConnInfo::default());
    // Pub/sub before authenticate fails with the host's message.
    let err = host.receive(c, b"pub");
    assert!(err.is_err());
    assert!(host.closed(c).unwrap().contains("on_received_bytes,UNKNOWN"), "{:?}", host.closed(c));
    let c = host.connect(ConnInfo::default());
    host.calls();
    for cmd in ["auth", "sub", "pub", "unsub", "keepalive", "raw", "log"] {
        host.receive(c, cmd.as_bytes()).unwrap();
    }
    let calls = host.calls();
    let ops: Vec<_> = calls.iter().filter(|x| x.op != "log" || x.msg == "hello log").map(|x| x.op).collect();
    assert_eq!(ops, ["authenticate", "subscribe", "publish", "unsubscribe", "start_timer", "raw_publish", "log"]);
    assert!(calls.iter().all(|x| x.status == Status::SUCCESS));
    let auth = &calls[0];
    assert_eq!(auth.conn, c);
    assert_eq!(auth.client_info.as_ref().unwrap().client_id, "id1");
    assert_eq!(auth.password, "pw");
    assert_eq!((calls[1].topic.as_str(), calls[1].qos), ("a/+", 1));
    assert_eq!((calls[2].topic.as_str(), calls[2].qos, calls[2].bytes.as_slice()), ("a/b", 2, &b"payload"[..]));
    assert_eq!((calls[4].timer_type, calls[4].interval), (TimerType::KEEPALIVE, 30));
    assert_eq!((calls[5].topic.as_str(), calls[5].conn), ("r/t", Conn(0)));
    assert_eq!((calls[6].level, calls[6].msg.as_str()), (Some(Level::Info), "hello log"));
    // A second authenticate is refused.
    assert!(host.receive(c, b"auth").is_err());
}

#[test]
fn errors_carry_status_and_message() {
    let host = Host::new(Recorder::default());
    let c = host.connect(ConnInfo::default());
    // A message longer than last_error's first buffer.
    let long = "x".repeat(1000);
    host.fail("send", Status::PERMISSION_DENY, &long);
    let err = c.send(b"a").unwrap_err();
    assert_eq!(err.status(), Status::PERMISSION_DENY);
    assert_eq!(err.message(), long);
    assert_eq!(err.to_string(), format!("protogate: PERMISSION_DENY: {}", long));
    host.fail("send", Status::SUCCESS, "");
    c.send(b"a").unwrap();
    host.disconnect(c, "").unwrap();
    let err = c.send(b"a").unwrap_err();
    assert_eq!(err.status(), Status::NOT_ALIVE);
    assert!(!err.message().is_empty());
}

#[test]
fn failing_callbacks_close() {
    struct Fails(Status);
    impl Handler for Fails {
        fn on_received_bytes(&mut self, _: Conn, _: &[u8]) -> Result<()> {
            Err(Error::new(self.0, "failed on purpose"))
        }
    }
    for (st, want) in [
        (Status::PERMISSION_DENY, Status::PERMISSION_DENY),
        (Status::NOT_ALIVE, Status::NOT_ALIVE),
        (Status::SUCCESS, Status::UNKNOWN),
        (Status(42), Status::UNKNOWN),
        (Status(-1), Status::UNKNOWN),
    ] {
        let host = Host::new(Fails(st));
        let c = host.connect(ConnInfo::default());
        let err = host.receive(c, b"x").unwrap_err();
        assert_eq!(err.status(), want);
        assert_eq!(host.closed(c).unwrap(), format!("{{shutdown,{{error,{{on_received_bytes,{}}}}}}}", want));
        let warn = host.calls().into_iter().find(|x| x.op == "log").unwrap();
        assert!(warn.msg.contains("failed on purpose"), "{}", warn.msg);
    }
}

#[test]
fn close_and_keepalive_timeout() {
    let host = Host::new(Recorder::default());
    let c = host.connect(ConnInfo::default());
    host.receive(c, b"close").unwrap();
    assert_eq!(host.closed(c).as_deref(), Some(REASON_NORMAL));
    let d = host.connect(ConnInfo::default());
    events();
    host.timeout(d).unwrap();
    assert_eq!(events(), ["timeout 0".to_string(), format!("closed {}", REASON_KEEPALIVE_TIMEOUT)]);
    assert_eq!(host.sent(d), b"", "bytes sent while closing are dropped");
}

#[test]
fn timers() {
    let host = Host::new(Recorder::default());
    let c = host.connect(ConnInfo::default());
    events();
    host.receive(c, b"timer").unwrap();
    let timers = host.timers(c);
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].1, Duration::from_millis(2), "1.5ms rounds up");
    let t = timers[0].0;
    assert_eq!(events(), ["bytes timer".to_string(), format!("armed {}", t.0)]);
    host.fire(c, t).unwrap();
    assert_eq!(events(), [format!("timer {}", t.0)]);
    // Bounds, and failures from the host.
    assert_eq!(c.set_timer(Duration::from_secs(86_401)).unwrap_err().status(), Status::PARAMS_TYPE_ERROR);
    assert_eq!(c.set_timer(Duration::ZERO).unwrap(), Timer(t.0 + 1));
    assert_eq!(host.timers(c)[0].1, Duration::from_millis(1));
    c.cancel_timer(Timer(t.0 + 1)).unwrap();
    assert!(host.timers(c).is_empty());
    host.fail("set_timer", Status::PERMISSION_DENY, "too many timers");
    let e = c.set_timer(Duration::from_secs(1)).unwrap_err();
    assert_eq!((e.status(), e.message()), (Status::PERMISSION_DENY, "too many timers"));
}

#[test]
fn messages() {
    let host = Host::new(Recorder::default());
    let c = host.connect(ConnInfo::default());
    events();
    let big = vec![7u8; 100_000]; // grows the inbox
    host.deliver(
        c,
        &[
            Message { node: "n", id: "i", qos: 1, from: "f", topic: "t/1", payload: b"p", timestamp: 1_700_000_000_000 },
            Message { topic: "t/2", payload: &big[..3], ..Message::default() },
        ],
    )
    .unwrap();
    assert_eq!(events(), ["msg n i 1 f t/1 [112] 1700000000000", "msg   0  t/2 [7, 7, 7] 0"]);
    host.deliver(c, &[Message { topic: "big", payload: &big, ..Message::default() }]).unwrap();
    assert_eq!(events().len(), 1);
}

#[test]
fn malformed_payloads() {
    let host = Host::new(Recorder::default());
    let c = host.connect(ConnInfo::default());
    // A ReceivedMessagesRequest whose message field claims more bytes than
    // there are.
    let p = protogate::rt::inbox(4);
    unsafe { std::ptr::copy_nonoverlapping([0x12u8, 0x7f, 0x00].as_ptr(), p, 3) };
    assert_eq!(protogate::rt::on_received_messages(c.0, 3), Status::PARAMS_TYPE_ERROR.0);
    // A length beyond the inbox.
    assert_eq!(protogate::rt::on_received_bytes(c.0, 1 << 30), Status::PARAMS_TYPE_ERROR.0);
}

#[test]
fn no_handler_and_no_host() {
    // No Host installed in this thread: callbacks fail, host calls fail
    // with UNKNOWN and a message that says why.
    assert_eq!(protogate::rt::on_timer(1, 1), Status::UNKNOWN.0);
    let e = Conn(1).send(b"x").unwrap_err();
    assert_eq!(e.status(), Status::UNKNOWN);
    assert!(e.message().contains("no host"), "{}", e.message());
}

#[test]
fn status_names() {
    assert_eq!(Status::NOT_ALIVE.to_string(), "CONN_PROCESS_NOT_ALIVE");
    assert_eq!(Status(9).to_string(), "Status(9)");
    assert!(!Status(9).is_valid() && Status::PERMISSION_DENY.is_valid());
    assert_eq!(Error::new(Status::UNKNOWN, "").to_string(), "protogate: UNKNOWN");
}
