//! A fake protogate host for native tests of guests (`cargo test`, no
//! WebAssembly runtime). It delivers callbacks through the same code as the
//! module's exports, the inbox and the protobuf payloads included, and
//! answers host calls the way the gateway does: a connection closed by the
//! guest, by a failed callback or by a keepalive timeout gets its
//! `on_socket_closed` right after the callback; publish, subscribe and
//! unsubscribe need a successful authenticate; calls on a closed connection
//! fail with NOT_ALIVE; bytes sent while a connection is closing are
//! dropped. It has no broker: messages reach a guest only through
//! [`Host::deliver`].
//!
//! ```
//! use protogate::{testing::Host, Conn, ConnInfo, Handler, Result};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_received_bytes(&mut self, c: Conn, b: &[u8]) -> Result<()> {
//!         c.send(b)
//!     }
//! }
//!
//! let host = Host::new(Echo);
//! let c = host.connect(ConnInfo::default());
//! host.receive(c, b"hi").unwrap();
//! assert_eq!(host.sent(c), b"hi");
//! ```
//!
//! The guest's state is per thread, like an instance's: a Host installs its
//! handler and itself for the current thread (cargo runs each test in its
//! own thread) until it is dropped.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use crate::sys::{HostCalls, HOST};
use crate::{rt, wire, ClientInfo, Conn, ConnInfo, Error, Handler, Level, Message, Result, Status, Timer, TimerType};

/// The close reason when the guest calls close.
pub const REASON_NORMAL: &str = "{shutdown,normal}";
/// The default close reason of [`Host::disconnect`].
pub const REASON_TCP_CLOSED: &str = "{shutdown,tcp_closed}";
/// The close reason after [`Host::timeout`].
pub const REASON_KEEPALIVE_TIMEOUT: &str = "{shutdown,keepalive_timeout}";

/// One host call the guest made.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Call {
    /// The import's name: "send", "publish", ...
    pub op: &'static str,
    /// Conn(0) for raw_publish and log.
    pub conn: Conn,
    /// What the host answered.
    pub status: Status,
    /// send: the bytes; publish, raw_publish: the payload.
    pub bytes: Vec<u8>,
    /// publish, raw_publish: the topic; subscribe, unsubscribe: the filter
    /// (invalid UTF-8 replaced).
    pub topic: String,
    pub qos: u8,
    /// authenticate.
    pub client_info: Option<ClientInfo>,
    pub password: String,
    /// start_timer.
    pub timer_type: TimerType,
    pub interval: u32,
    /// set_timer: the delay; the timer armed (Timer(0) if it failed).
    pub delay: Duration,
    pub timer: Timer,
    /// log.
    pub level: Option<Level>,
    pub msg: String,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Life {
    Open,
    Closing,
    Dead,
}

struct ConnState {
    life: Life,
    reason: String,
    authed: bool,
    sent: Vec<u8>,
    timers: BTreeMap<Timer, Duration>,
}

#[derive(Default)]
struct State {
    conns: HashMap<Conn, ConnState>,
    calls: Vec<Call>,
    fails: HashMap<&'static str, (Status, String)>,
    last_error: String,
    timer_id: i64,
    next_conn: u64,
    asked: Option<u32>,
    inbox: usize,
}

/// A fake protogate host; see the module documentation.
pub struct Host {
    state: Rc<RefCell<State>>,
}

/// The ops that [`Host::fail`] accepts.
const FAILABLE: &[&str] = &[
    "send",
    "close",
    "authenticate",
    "start_timer",
    "publish",
    "raw_publish",
    "subscribe",
    "unsubscribe",
    "set_timer",
    "cancel_timer",
];

fn handle(c: Conn) -> String {
    format!("{:016x}", c.0)
}

impl Host {
    /// Installs `handler` and a fake host for the current thread. It does
    /// not call the handler's init: see [`Host::init`].
    pub fn new(handler: impl Handler + 'static) -> Host {
        let state = Rc::new(RefCell::new(State { next_conn: 0x1000_0000_0000_0000, ..State::default() }));
        let calls: Rc<RefCell<dyn HostCalls>> = Rc::new(RefCell::new(Calls(state.clone())));
        HOST.with(|h| *h.borrow_mut() = Some(calls));
        rt::install(Some(Box::new(handler)));
        Host { state }
    }

    /// Runs the handler's init, as protogate_init does once per instance.
    pub fn init(&self) -> Result<()> {
        match Status(rt::run_init()) {
            Status::SUCCESS => Ok(()),
            st => Err(Error::new(st, "protogate_init failed")),
        }
    }

    /// Opens a connection and delivers on_socket_created with `info`. If the
    /// callback fails, the connection is closed, as by the gateway.
    pub fn connect(&self, info: ConnInfo) -> Conn {
        let c = {
            let mut s = self.state.borrow_mut();
            s.next_conn += 0x9e37_79b9; // not in creation order would be nicer; unique is enough
            let c = Conn(s.next_conn);
            s.conns.insert(
                c,
                ConnState { life: Life::Open, reason: String::new(), authed: false, sent: Vec::new(), timers: BTreeMap::new() },
            );
            c
        };
        let req = wire::host::socket_created(&handle(c), &info);
        let _ = self.callback(c, "on_socket_created", &req, rt::on_socket_created);
        c
    }

    /// Delivers on_received_bytes and returns the callback's result.
    pub fn receive(&self, c: Conn, bytes: &[u8]) -> Result<()> {
        self.callback(c, "on_received_bytes", bytes, rt::on_received_bytes)
    }

    /// Delivers on_received_messages and returns the callback's result.
    pub fn deliver(&self, c: Conn, msgs: &[Message<'_>]) -> Result<()> {
        let req = wire::host::received_messages(&handle(c), msgs);
        self.callback(c, "on_received_messages", &req, rt::on_received_messages)
    }

    /// Delivers on_timer_timeout(KEEPALIVE), as when the keepalive
    /// expires; the connection is closing during the callback and closed
    /// with [`REASON_KEEPALIVE_TIMEOUT`] after it.
    pub fn timeout(&self, c: Conn) -> Result<()> {
        if let Some(st) = self.state.borrow_mut().conns.get_mut(&c) {
            if st.life == Life::Open {
                st.life = Life::Closing;
                st.reason = REASON_KEEPALIVE_TIMEOUT.into();
            }
        }
        self.callback(c, "on_timer_timeout", &[], |conn, _| rt::on_timer_timeout(conn, TimerType::KEEPALIVE.0))
    }

    /// Fires an armed timer of `c`, delivering on_timer. Panics if it is not
    /// armed.
    pub fn fire(&self, c: Conn, t: Timer) -> Result<()> {
        let armed = self.state.borrow_mut().conns.get_mut(&c).and_then(|st| st.timers.remove(&t)).is_some();
        assert!(armed, "protogate::testing: fire: timer {:?} of {:?} is not armed", t, c);
        self.callback(c, "on_timer", &[], |conn, _| rt::on_timer(conn, t.0))
    }

    /// The armed timers of `c` and their delays, in id order.
    pub fn timers(&self, c: Conn) -> Vec<(Timer, Duration)> {
        self.state.borrow().conns.get(&c).map(|st| st.timers.iter().map(|(t, d)| (*t, *d)).collect()).unwrap_or_default()
    }

    /// Closes `c` from the device's side: delivers on_socket_closed with
    /// `reason` ([`REASON_TCP_CLOSED`] if empty). Panics if c is not open.
    pub fn disconnect(&self, c: Conn, reason: &str) -> Result<()> {
        {
            let mut s = self.state.borrow_mut();
            let st = s.conns.get_mut(&c).filter(|st| st.life == Life::Open);
            let st = st.unwrap_or_else(|| panic!("protogate::testing: disconnect: {:?} is not open", c));
            st.life = Life::Closing;
            st.reason = if reason.is_empty() { REASON_TCP_CLOSED.into() } else { reason.into() };
        }
        self.closed_callback(c)
    }

    /// The close reason of `c` once it got its on_socket_closed.
    pub fn closed(&self, c: Conn) -> Option<String> {
        self.state.borrow().conns.get(&c).filter(|st| st.life == Life::Dead).map(|st| st.reason.clone())
    }

    /// Whether `c` is authenticated.
    pub fn authenticated(&self, c: Conn) -> bool {
        self.state.borrow().conns.get(&c).map_or(false, |st| st.authed)
    }

    /// The bytes the guest sent on `c` since the last call (bytes sent while
    /// closing are dropped, as the gateway does), and forgets them.
    pub fn sent(&self, c: Conn) -> Vec<u8> {
        self.state.borrow_mut().conns.get_mut(&c).map(|st| std::mem::take(&mut st.sent)).unwrap_or_default()
    }

    /// The host calls the guest made since the last call, in order, and
    /// forgets them.
    pub fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.borrow_mut().calls)
    }

    /// Makes every later host call named `op` fail with `status` and
    /// `message`, before any other check; `Status::SUCCESS` undoes it.
    /// Panics for an op that cannot fail (log, last_error) or is unknown.
    pub fn fail(&self, op: &str, status: Status, message: &str) {
        let op = *FAILABLE.iter().find(|o| **o == op).unwrap_or_else(|| panic!("protogate::testing: fail: {:?} is not a host call that can fail", op));
        let mut s = self.state.borrow_mut();
        if status == Status::SUCCESS {
            s.fails.remove(op);
        } else {
            s.fails.insert(op, (status, message.into()));
        }
    }

    /// Writes the payload into the guest's inbox, asking for room as the
    /// real host does: only when it needs more than it last asked for.
    fn fill(&self, payload: &[u8]) -> u32 {
        let n = payload.len() as u32;
        let asked = self.state.borrow().asked;
        if asked.map_or(true, |a| n > a) {
            rt::inbox(n);
            self.state.borrow_mut().asked = Some(n);
        }
        let p = rt::inbox(n);
        // The inbox holds at least n bytes: inbox() guarantees it.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), p, payload.len()) };
        self.state.borrow_mut().inbox = payload.len();
        n
    }

    /// Overwrites what the last fill wrote: a guest that keeps inbox bytes
    /// past a callback sees garbage in its tests, not in production.
    fn scrub(&self) {
        let n = std::mem::take(&mut self.state.borrow_mut().inbox);
        let p = rt::inbox(0);
        unsafe { std::ptr::write_bytes(p, 0xDB, n) };
    }

    fn callback(&self, c: Conn, name: &str, payload: &[u8], f: impl FnOnce(u64, u32) -> i32) -> Result<()> {
        let open = self.state.borrow().conns.get(&c).map_or(false, |st| st.life != Life::Dead);
        assert!(open, "protogate::testing: {}: {:?} is not open", name, c);
        let n = self.fill(payload);
        let status = Status(f(c.0, n));
        self.scrub();
        assert!(status.is_valid(), "protogate::testing: {} returned {}, not an ABI v1 status", name, status);
        let closing = {
            let mut s = self.state.borrow_mut();
            let st = s.conns.get_mut(&c).expect("connection state");
            if status != Status::SUCCESS && st.life == Life::Open {
                st.life = Life::Closing;
                st.reason = format!("{{shutdown,{{error,{{{},{}}}}}}}", name, status);
            }
            st.life == Life::Closing
        };
        if closing {
            let _ = self.closed_callback(c);
        }
        if status == Status::SUCCESS {
            Ok(())
        } else {
            Err(Error::new(status, format!("{} failed", name)))
        }
    }

    fn closed_callback(&self, c: Conn) -> Result<()> {
        let reason = self.state.borrow().conns[&c].reason.clone();
        let n = self.fill(&wire::host::socket_closed(&handle(c), &reason));
        let status = Status(rt::on_socket_closed(c.0, n));
        self.scrub();
        {
            let mut s = self.state.borrow_mut();
            let st = s.conns.get_mut(&c).expect("connection state");
            st.life = Life::Dead;
            st.timers.clear();
        }
        assert!(status.is_valid(), "protogate::testing: on_socket_closed returned {}, not an ABI v1 status", status);
        if status == Status::SUCCESS {
            Ok(())
        } else {
            Err(Error::new(status, "on_socket_closed failed"))
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        HOST.with(|h| *h.borrow_mut() = None);
        rt::install(None);
    }
}

/// The host imports, answering for a Host's state.
struct Calls(Rc<RefCell<State>>);

type Check = Result<()>;

fn deny(status: Status, msg: &str) -> Check {
    Err(Error::new(status, msg))
}

fn check_topic(topic: &[u8], qos: u32, publish: bool) -> Check {
    let topic = match std::str::from_utf8(topic) {
        Ok(t) => t,
        Err(_) => return deny(Status::PARAMS_TYPE_ERROR, "testing: topic is not valid UTF-8"),
    };
    if topic.is_empty() {
        deny(Status::REQUIRED_PARAMS_MISSED, "testing: topic is empty")
    } else if qos > 2 {
        deny(Status::PARAMS_TYPE_ERROR, &format!("testing: qos {} is not 0, 1 or 2", qos))
    } else if publish && (topic.contains('+') || topic.contains('#')) {
        deny(Status::PARAMS_TYPE_ERROR, "testing: invalid topic")
    } else {
        Ok(())
    }
}

fn pubsub(st: &ConnState) -> Check {
    if st.life != Life::Open {
        deny(Status::UNKNOWN, "testing: connection is closing")
    } else if !st.authed {
        deny(Status::UNKNOWN, "testing: not authenticated: call authenticate first")
    } else {
        Ok(())
    }
}

impl Calls {
    /// Runs the checks of a call on `conn` named op (an injected failure,
    /// NOT_ALIVE for a conn that is not open, then more), records it and
    /// returns its status.
    fn call(&mut self, mut call: Call, conn: Option<u64>, more: impl FnOnce(Option<&mut ConnState>) -> Check) -> Status {
        let mut s = self.0.borrow_mut();
        let s = &mut *s;
        let r = if let Some((st, msg)) = s.fails.get(call.op) {
            Err(Error::new(*st, msg.clone()))
        } else {
            match conn {
                None => more(None),
                Some(c) => match s.conns.get_mut(&Conn(c)).filter(|st| st.life != Life::Dead) {
                    None => deny(Status::NOT_ALIVE, "testing: connection is not alive"),
                    Some(st) => more(Some(st)),
                },
            }
        };
        call.status = match r {
            Ok(()) => Status::SUCCESS,
            Err(e) => {
                s.last_error = e.message().to_string();
                e.status()
            }
        };
        if let Some(c) = conn {
            call.conn = Conn(c);
        }
        let st = call.status;
        s.calls.push(call);
        st
    }
}

impl HostCalls for Calls {
    fn send(&mut self, conn: u64, b: &[u8]) -> i32 {
        self.call(Call { op: "send", bytes: b.to_vec(), ..Call::default() }, Some(conn), |st| {
            let st = st.expect("conn");
            if st.life == Life::Open {
                st.sent.extend_from_slice(b);
            }
            Ok(())
        })
        .0
    }

    fn close(&mut self, conn: u64) -> i32 {
        self.call(Call { op: "close", ..Call::default() }, Some(conn), |st| {
            let st = st.expect("conn");
            if st.life == Life::Open {
                st.life = Life::Closing;
                st.reason = REASON_NORMAL.into();
            }
            Ok(())
        })
        .0
    }

    fn authenticate(&mut self, conn: u64, req: &[u8]) -> i32 {
        let decoded = wire::host::decode_authenticate(req);
        let (ci, password) = decoded.clone().unwrap_or_default();
        self.call(Call { op: "authenticate", client_info: ci.clone(), password, ..Call::default() }, Some(conn), |st| {
            let st = st.expect("conn");
            match (&decoded, &ci) {
                (Err(e), _) => deny(Status::PARAMS_TYPE_ERROR, &format!("testing: {}", e)),
                (_, None) => deny(Status::REQUIRED_PARAMS_MISSED, "testing: clientinfo is missing"),
                _ if st.life != Life::Open => deny(Status::PERMISSION_DENY, "testing: client socket disconnected"),
                _ if st.authed => deny(Status::PERMISSION_DENY, "testing: duplicated authenticate command"),
                _ => {
                    st.authed = true;
                    Ok(())
                }
            }
        })
        .0
    }

    fn start_timer(&mut self, conn: u64, typ: i32, interval: u32) -> i32 {
        self.call(Call { op: "start_timer", timer_type: TimerType(typ), interval, ..Call::default() }, Some(conn), |_| {
            if typ != TimerType::KEEPALIVE.0 {
                deny(Status::PARAMS_TYPE_ERROR, &format!("testing: unknown timer type {}", typ))
            } else if interval == 0 {
                deny(Status::PARAMS_TYPE_ERROR, "testing: keepalive interval must be > 0")
            } else {
                Ok(())
            }
        })
        .0
    }

    fn publish(&mut self, conn: u64, topic: &[u8], qos: u32, payload: &[u8]) -> i32 {
        let call = Call { op: "publish", topic: String::from_utf8_lossy(topic).into_owned(), qos: qos as u8, bytes: payload.to_vec(), ..Call::default() };
        self.call(call, Some(conn), |st| {
            check_topic(topic, qos, true)?;
            pubsub(st.expect("conn"))
        })
        .0
    }

    fn raw_publish(&mut self, topic: &[u8], qos: u32, payload: &[u8]) -> i32 {
        let call = Call { op: "raw_publish", topic: String::from_utf8_lossy(topic).into_owned(), qos: qos as u8, bytes: payload.to_vec(), ..Call::default() };
        self.call(call, None, |_| check_topic(topic, qos, true)).0
    }

    fn subscribe(&mut self, conn: u64, filter: &[u8], qos: u32) -> i32 {
        self.call(Call { op: "subscribe", topic: String::from_utf8_lossy(filter).into_owned(), qos: qos as u8, ..Call::default() }, Some(conn), |st| {
            check_topic(filter, qos, false)?;
            pubsub(st.expect("conn"))
        })
        .0
    }

    fn unsubscribe(&mut self, conn: u64, filter: &[u8]) -> i32 {
        self.call(Call { op: "unsubscribe", topic: String::from_utf8_lossy(filter).into_owned(), ..Call::default() }, Some(conn), |st| {
            if filter.is_empty() {
                return deny(Status::REQUIRED_PARAMS_MISSED, "testing: topic is empty");
            }
            pubsub(st.expect("conn"))
        })
        .0
    }

    fn set_timer(&mut self, conn: u64, delay_ms: u32) -> i64 {
        let delay = Duration::from_millis(u64::from(delay_ms));
        let next = self.0.borrow().timer_id + 1;
        let status = self.call(Call { op: "set_timer", delay, timer: Timer(next), ..Call::default() }, Some(conn), |st| {
            if delay_ms < 1 || u64::from(delay_ms) > crate::MAX_TIMER_DELAY.as_millis() as u64 {
                return deny(Status::PARAMS_TYPE_ERROR, &format!("testing: timer delay {}ms out of range", delay_ms));
            }
            st.expect("conn").timers.insert(Timer(next), delay);
            Ok(())
        });
        let mut s = self.0.borrow_mut();
        if status != Status::SUCCESS {
            s.calls.last_mut().expect("recorded").timer = Timer(0);
            return -i64::from(status.0);
        }
        s.timer_id = next;
        next
    }

    fn cancel_timer(&mut self, conn: u64, timer: i64) -> i32 {
        self.call(Call { op: "cancel_timer", timer: Timer(timer), ..Call::default() }, Some(conn), |st| {
            st.expect("conn").timers.remove(&Timer(timer));
            Ok(())
        })
        .0
    }

    fn log(&mut self, level: i32, msg: &str) {
        let mut end = msg.len().min(crate::MAX_LOG_LINE);
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        let level = match level {
            -4 => Level::Debug,
            0 => Level::Info,
            4 => Level::Warn,
            _ => Level::Error,
        };
        eprintln!("guest {:?}: {}", level, &msg[..end]);
        self.0.borrow_mut().calls.push(Call { op: "log", level: Some(level), msg: msg[..end].into(), ..Call::default() });
    }

    fn last_error(&mut self, buf: &mut [u8]) -> usize {
        let s = self.0.borrow();
        let n = s.last_error.len().min(buf.len());
        buf[..n].copy_from_slice(&s.last_error.as_bytes()[..n]);
        s.last_error.len()
    }
}
