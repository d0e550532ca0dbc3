//! protogate is the Rust SDK for protogate's WebAssembly protocol handlers:
//! a guest module, compiled to `wasm32-wasi`, that the gateway runs
//! in-process to speak a device protocol. It implements ABI v1 (the doc
//! comments of the Go package `github.com/protogate/protogate/abi` are the
//! specification), so a guest implements [`Handler`] and calls methods of
//! [`Conn`]. It uses only the standard library.
//!
//! # Writing a guest
//!
//! A guest is a `cdylib` crate that registers its handler with
//! [`register!`], which emits the module's exports:
//!
//! ```no_run
//! use protogate::{Conn, Handler, Result};
//!
//! #[derive(Default)]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_received_bytes(&mut self, conn: Conn, bytes: &[u8]) -> Result<()> {
//!         conn.send(bytes)
//!     }
//! }
//!
//! protogate::register!(Echo);
//! # fn main() {}
//! ```
//!
//! ```text
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//! ```
//!
//! Build it with Debian's toolchain (`rustc` 1.63, `libstd-rust-dev-wasm32`):
//!
//! ```text
//! /usr/bin/cargo build --offline --release --target wasm32-wasi
//! ```
//!
//! # The model
//!
//! The host runs a pool of instances of the module. Each connection is
//! pinned to one instance for its whole life, and one instance serves many
//! connections, so keep per-connection state in a map keyed by [`Conn`],
//! created in `on_socket_created` and removed in `on_socket_closed`. Conn
//! values are never reused. For one connection, `on_socket_created` comes
//! first and `on_socket_closed` last, exactly once.
//!
//! An instance is single-threaded: the host makes one callback at a time,
//! and host calls never call back into the guest (what they cause, a close,
//! a delivery, a timer, arrives as a later callback). The handler therefore
//! gets `&mut self` and needs no locks.
//!
//! The bytes of `on_received_bytes` and the fields of each [`Message`]
//! borrow the module's inbox, which the host overwrites for the next
//! callback: the borrow checker keeps you from holding on to them; copy what
//! you keep.
//!
//! # Failures
//!
//! A callback that returns `Err` fails with the error's [`Status`] (UNKNOWN if
//! it carries SUCCESS or an undefined one) and the host closes that
//! connection, naming the callback and the status in the close reason.
//! A host call that fails returns an [`Error`] carrying the status and the
//! host's message for it (the `last_error` import).
//!
//! A panic is a fault of the instance: wasm32-wasi aborts on panic (the
//! message is logged at error level first), the host discards the instance
//! and closes every connection pinned to it, and starts a replacement. So do
//! an endless loop (the host's `call_timeout`) and running out of memory
//! (an allocation failure aborts). Other instances and their connections are
//! not affected.
//!
//! # Native tests
//!
//! Outside wasm32 the host imports go to the fake host of [`testing`], so
//! guest logic is tested with `cargo test` and no WebAssembly runtime.

use std::fmt;
use std::time::Duration;

mod sys;
mod wire;

#[doc(hidden)]
pub mod rt;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// The result of a callback or a host call. Its values equal
/// `emqx.exproto.v1.ResultCode`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Status(pub i32);

impl Status {
    pub const SUCCESS: Status = Status(0);
    pub const UNKNOWN: Status = Status(1);
    pub const NOT_ALIVE: Status = Status(2);
    pub const REQUIRED_PARAMS_MISSED: Status = Status(3);
    pub const PARAMS_TYPE_ERROR: Status = Status(4);
    pub const PERMISSION_DENY: Status = Status(5);

    /// Reports whether the status is one ABI v1 defines.
    pub fn is_valid(self) -> bool {
        (0..=5).contains(&self.0)
    }

    /// The ResultCode name: "SUCCESS", "CONN_PROCESS_NOT_ALIVE", ...
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "SUCCESS",
            1 => "UNKNOWN",
            2 => "CONN_PROCESS_NOT_ALIVE",
            3 => "REQUIRED_PARAMS_MISSED",
            4 => "PARAMS_TYPE_ERROR",
            5 => "PERMISSION_DENY",
            _ => "",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "" => write!(f, "Status({})", self.0),
            n => f.write_str(n),
        }
    }
}

/// The error of a failed host call: the status the host returned and its
/// message for it. Returned from a callback, it fails the callback with its
/// status.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// An error with a status and a message, to fail a callback with.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    /// An error with status UNKNOWN.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::new(Status::UNKNOWN, message)
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message: for a failed host call, the host's explanation (may be
    /// empty).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The host's status and message for a failed host call.
    fn from_host(status: Status) -> Error {
        let mut small = [0u8; 256];
        let n = sys::last_error(&mut small);
        let message = if n <= small.len() {
            String::from_utf8_lossy(&small[..n]).into_owned()
        } else {
            let mut big = vec![0u8; n];
            let m = sys::last_error(&mut big).min(n);
            String::from_utf8_lossy(&big[..m]).into_owned()
        };
        Error { status, message }
    }
}

impl fmt::Display for Error {
    /// "protogate: STATUS: message", or "protogate: STATUS" without one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "protogate: {}", self.status)
        } else {
            write!(f, "protogate: {}: {}", self.status, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// The result type of callbacks and host calls.
pub type Result<T> = std::result::Result<T, Error>;

fn result(status: i32) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error::from_host(Status(status)))
    }
}

/// An ExProto timer type; ExProto v1 has only [`TimerType::KEEPALIVE`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TimerType(pub i32);

impl TimerType {
    /// The ExProto keepalive.
    pub const KEEPALIVE: TimerType = TimerType(0);
}

/// The id of a timer armed with [`Conn::set_timer`]; ids are positive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Default)]
pub struct Timer(pub i64);

/// The transport of a connection (`emqx.exproto.v1.SocketType`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SocketType {
    Tcp = 0,
    Ssl = 1,
    Udp = 2,
    Dtls = 3,
}

impl Default for SocketType {
    fn default() -> Self {
        SocketType::Tcp
    }
}

impl SocketType {
    pub(crate) fn from_i32(v: i32) -> SocketType {
        match v {
            1 => SocketType::Ssl,
            2 => SocketType::Udp,
            3 => SocketType::Dtls,
            _ => SocketType::Tcp,
        }
    }
}

/// A host (an IP address in text form) and a port.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

/// The subject of a certificate.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CertInfo {
    /// Common name.
    pub cn: String,
    /// Distinguished name.
    pub dn: String,
}

/// Describes a new connection; `on_socket_created` receives it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ConnInfo {
    pub sock_type: SocketType,
    /// The device's address.
    pub peer: Address,
    /// The listener's address.
    pub local: Address,
    /// The subject of the device's certificate, if it presented one.
    pub peer_cert: Option<CertInfo>,
}

/// What [`Conn::authenticate`] registers for a connection.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ClientInfo {
    pub proto_name: String,
    pub proto_ver: String,
    pub client_id: String,
    pub username: String,
}

/// One delivery of a subscription. It borrows the inbox: valid only during
/// the callback.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Message<'a> {
    /// The node that delivered it.
    pub node: &'a str,
    /// Unique message id.
    pub id: &'a str,
    pub qos: u8,
    /// The publisher's client id.
    pub from: &'a str,
    /// The topic, without the connection's mountpoint.
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// The severity of a log message, with the values of Go's log/slog.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Level {
    Debug = -4,
    Info = 0,
    Warn = 4,
    Error = 8,
}

/// The longest log message the host keeps; longer ones are cut.
pub const MAX_LOG_LINE: usize = 4096;

/// The longest set_timer delay: 24 hours.
pub const MAX_TIMER_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The handle of a connection: its 64-bit id, opaque (unguessable, not in
/// creation order) and never reused; `Conn(0)` (the default) names no
/// connection. Call its methods only from a callback.
///
/// Topics and filters are `impl AsRef<[u8]>`: a `&str` or `String`, or raw
/// bytes from the wire, which the gateway checks (an MQTT topic must be
/// UTF-8) rather than the SDK converting them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Default)]
pub struct Conn(pub u64);

impl Conn {
    /// Writes bytes to the connection; the host copies them before it
    /// returns. Like ExProto, it succeeds on a connection that is closing
    /// (the bytes are dropped) and fails with NOT_ALIVE once it is closed.
    pub fn send(self, bytes: &[u8]) -> Result<()> {
        result(sys::send(self.0, bytes))
    }

    /// Closes the connection; `on_socket_closed` follows as a later
    /// callback with reason "{shutdown,normal}".
    pub fn close(self) -> Result<()> {
        result(sys::close(self.0))
    }

    /// Registers `info` for the connection once the gateway's
    /// authenticator, if any, accepts it and `password`. Publish, subscribe
    /// and unsubscribe need it. Another connection with the same client id
    /// is closed; a second successful authenticate is refused with
    /// PERMISSION_DENY.
    pub fn authenticate(self, info: &ClientInfo, password: &str) -> Result<()> {
        let mut req = Vec::with_capacity(64);
        wire::append_authenticate(&mut req, info, password);
        result(sys::authenticate(self.0, &req))
    }

    /// Starts, or restarts with a new interval, the ExProto keepalive: when
    /// no bytes arrive for 1.5 × `interval_secs`, the handler gets
    /// `on_timer_timeout` and the host closes the connection.
    pub fn start_timer(self, typ: TimerType, interval_secs: u32) -> Result<()> {
        result(sys::start_timer(self.0, typ.0, interval_secs))
    }

    /// Publishes `payload` on `topic` as the connection's client (its
    /// mountpoint applied). Needs [`Conn::authenticate`] first.
    pub fn publish(self, topic: impl AsRef<[u8]>, qos: u8, payload: &[u8]) -> Result<()> {
        result(sys::publish(self.0, topic.as_ref(), u32::from(qos), payload))
    }

    /// Subscribes the connection to an MQTT topic filter; deliveries arrive
    /// as `on_received_messages`. Subscribing again updates the QoS. Needs
    /// [`Conn::authenticate`] first.
    pub fn subscribe(self, filter: impl AsRef<[u8]>, qos: u8) -> Result<()> {
        result(sys::subscribe(self.0, filter.as_ref(), u32::from(qos)))
    }

    /// Removes a subscription; removing one that does not exist succeeds.
    pub fn unsubscribe(self, filter: impl AsRef<[u8]>) -> Result<()> {
        result(sys::unsubscribe(self.0, filter.as_ref()))
    }

    /// Arms a one-shot timer that fires after `delay`, rounded up to a whole
    /// millisecond (at least 1 ms, at most [`MAX_TIMER_DELAY`]); the handler
    /// then gets `on_timer` with the returned [`Timer`]. Timers end with
    /// their connection.
    pub fn set_timer(self, delay: Duration) -> Result<Timer> {
        if delay > MAX_TIMER_DELAY {
            return Err(Error::new(
                Status::PARAMS_TYPE_ERROR,
                format!("set_timer: delay {:?} is longer than 24h", delay),
            ));
        }
        let ms = ((delay.as_nanos() + 999_999) / 1_000_000).max(1) as u32;
        let id = sys::set_timer(self.0, ms);
        if id > 0 {
            return Ok(Timer(id));
        }
        let status = if id == 0 || id < -i64::from(i32::MAX) { Status::UNKNOWN } else { Status(-id as i32) };
        Err(Error::from_host(status))
    }

    /// Disarms a timer; it succeeds for a timer that already fired.
    pub fn cancel_timer(self, timer: Timer) -> Result<()> {
        result(sys::cancel_timer(self.0, timer.0))
    }
}

impl fmt::LowerHex for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Publishes `payload` on `topic` as is: no mountpoint, no client (the
/// message's from is "exproto"). Call it only from a callback.
pub fn raw_publish(topic: impl AsRef<[u8]>, qos: u8, payload: &[u8]) -> Result<()> {
    result(sys::raw_publish(topic.as_ref(), u32::from(qos), payload))
}

/// Writes `msg` to the gateway's log at `level`, attributed to this module.
/// The host keeps at most [`MAX_LOG_LINE`] bytes of it.
pub fn log(level: Level, msg: &str) {
    sys::log(level as i32, msg)
}

/// A protocol handler: the five callbacks of an ExProto handler, plus
/// `init` and `on_timer`. Every method has a default that does nothing and
/// succeeds. A callback that returns `Err` fails and the host closes the
/// connection.
pub trait Handler {
    /// Runs once when the host creates an instance, before any other
    /// callback. An error refuses the instance.
    fn init(&mut self) -> Result<()> {
        Ok(())
    }

    /// The first callback of a connection.
    fn on_socket_created(&mut self, conn: Conn, info: ConnInfo) -> Result<()> {
        let _ = (conn, info);
        Ok(())
    }

    /// Bytes read from the connection (or one datagram).
    fn on_received_bytes(&mut self, conn: Conn, bytes: &[u8]) -> Result<()> {
        let _ = (conn, bytes);
        Ok(())
    }

    /// The keepalive started with [`Conn::start_timer`] expired; the host
    /// closes the connection after this callback.
    fn on_timer_timeout(&mut self, conn: Conn, typ: TimerType) -> Result<()> {
        let _ = (conn, typ);
        Ok(())
    }

    /// Messages of the connection's subscriptions, in order.
    fn on_received_messages(&mut self, conn: Conn, msgs: &[Message<'_>]) -> Result<()> {
        let _ = (conn, msgs);
        Ok(())
    }

    /// The last callback of a connection; `reason` says why it closed, in
    /// EMQX's words ("{shutdown,tcp_closed}", ...). Host calls on `conn`
    /// now fail with NOT_ALIVE.
    fn on_socket_closed(&mut self, conn: Conn, reason: &str) -> Result<()> {
        let _ = (conn, reason);
        Ok(())
    }

    /// Timer `timer` of `conn`, armed with [`Conn::set_timer`], fired.
    fn on_timer(&mut self, conn: Conn, timer: Timer) -> Result<()> {
        let _ = (conn, timer);
        log(Level::Warn, "protogate: a timer fired but the handler does not implement on_timer");
        Ok(())
    }
}

/// Registers the handler of this module and emits the module's exports
/// (`protogate_abi_v1`, `protogate_inbox`, `protogate_init` and the
/// callbacks). The expression is evaluated once per instance, in
/// `protogate_init`, and must give a value of a type implementing
/// [`Handler`] + `'static`. Use it once, at the top level of a `cdylib`.
#[macro_export]
macro_rules! register {
    ($handler:expr) => {
        // Natively (cargo test) nothing is exported, but the expression is
        // still type-checked.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> ::std::boxed::Box<dyn $crate::Handler> = || ::std::boxed::Box::new($handler);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[no_mangle]
            pub extern "C" fn protogate_abi_v1() {}
            #[no_mangle]
            pub extern "C" fn protogate_inbox(size: u32) -> *mut u8 {
                $crate::rt::inbox(size)
            }
            #[no_mangle]
            pub extern "C" fn protogate_init() -> i32 {
                $crate::rt::init(|| ::std::boxed::Box::new($handler))
            }
            #[no_mangle]
            pub extern "C" fn protogate_on_socket_created(conn: u64, len: u32) -> i32 {
                $crate::rt::on_socket_created(conn, len)
            }
            #[no_mangle]
            pub extern "C" fn protogate_on_received_bytes(conn: u64, len: u32) -> i32 {
                $crate::rt::on_received_bytes(conn, len)
            }
            #[no_mangle]
            pub extern "C" fn protogate_on_timer_timeout(conn: u64, typ: i32) -> i32 {
                $crate::rt::on_timer_timeout(conn, typ)
            }
            #[no_mangle]
            pub extern "C" fn protogate_on_received_messages(conn: u64, len: u32) -> i32 {
                $crate::rt::on_received_messages(conn, len)
            }
            #[no_mangle]
            pub extern "C" fn protogate_on_socket_closed(conn: u64, len: u32) -> i32 {
                $crate::rt::on_socket_closed(conn, len)
            }
            #[no_mangle]
            pub extern "C" fn protogate_on_timer(conn: u64, timer: i64) -> i32 {
                $crate::rt::on_timer(conn, timer)
            }
        };
    };
}
