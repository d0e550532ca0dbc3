//! The guest side of ABI v1: what the exports that [`crate::register!`]
//! emits call. Not part of the API; the fake host of [`crate::testing`]
//! drives the same functions.

use std::cell::RefCell;

use crate::{log, wire, Conn, Handler, Level, Status, Timer, TimerType};

/// The smallest inbox; most payloads fit without growing it.
const MIN_INBOX: usize = 4096;

#[derive(Default)]
struct State {
    handler: Option<Box<dyn Handler>>,
    /// The buffer the host writes payloads into; it only grows, and only
    /// in inbox().
    inbox: Vec<u8>,
    /// Installed on the first init.
    hooked: bool,
}

thread_local! {
    // One instance is one thread; natively, each test thread is its own
    // instance.
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// protogate_inbox: a pointer to at least size writable bytes, valid until
/// the next call.
pub fn inbox(size: u32) -> *mut u8 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let size = size as usize;
        if s.inbox.is_empty() || size > s.inbox.len() {
            let mut n = MIN_INBOX;
            while n < size {
                n *= 2;
            }
            s.inbox = vec![0; n];
        }
        s.inbox.as_mut_ptr()
    })
}

/// Installs h as the instance's handler, replacing any (native tests).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn install(h: Option<Box<dyn Handler>>) {
    STATE.with(|s| s.borrow_mut().handler = h);
}

/// protogate_init: makes the handler and runs its init.
pub fn init(make: impl FnOnce() -> Box<dyn Handler>) -> i32 {
    let hook = STATE.with(|s| !std::mem::replace(&mut s.borrow_mut().hooked, true));
    if hook && cfg!(target_arch = "wasm32") {
        // A panic aborts the instance (a trap); say why first: in the
        // gateway's log, and on stderr, which the host adds to the fault it
        // reports (and to the close reasons of the instance's connections).
        std::panic::set_hook(Box::new(|info| {
            let msg = format!("protogate: {}", info);
            log(Level::Error, &msg);
            eprintln!("{}", msg);
        }));
    }
    let h = make();
    STATE.with(|s| s.borrow_mut().handler = Some(h));
    run_init()
}

/// Runs the installed handler's init.
pub(crate) fn run_init() -> i32 {
    with_handler("init", 0, |h, _| failed("init", h.init()))
}

/// Runs f with the handler and the first n bytes of the inbox, taken out of
/// the state so that nothing is borrowed while the handler runs.
fn with_handler(callback: &str, n: u32, f: impl FnOnce(&mut dyn Handler, &[u8]) -> i32) -> i32 {
    let (h, inbox) = STATE.with(|s| {
        let mut s = s.borrow_mut();
        (s.handler.take(), std::mem::take(&mut s.inbox))
    });
    let restore = |h: Option<Box<dyn Handler>>, inbox: Vec<u8>| {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if s.handler.is_none() {
                s.handler = h;
            }
            s.inbox = inbox;
        })
    };
    let mut h = match h {
        Some(h) => h,
        None => {
            restore(None, inbox);
            log(Level::Error, &format!("protogate: {}: no handler registered (protogate::register!)", callback));
            return Status::UNKNOWN.0;
        }
    };
    let n = n as usize;
    if n > inbox.len() {
        log(
            Level::Error,
            &format!("protogate: {}: payload of {} bytes is larger than the inbox ({} bytes)", callback, n, inbox.len()),
        );
        restore(Some(h), inbox);
        return Status::PARAMS_TYPE_ERROR.0;
    }
    let st = f(&mut *h, &inbox[..n]);
    restore(Some(h), inbox);
    st
}

/// The status of a handler method's result, logging a failure.
fn failed(method: &str, r: crate::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            let st = if e.status() != Status::SUCCESS && e.status().is_valid() { e.status() } else { Status::UNKNOWN };
            log(Level::Warn, &format!("protogate: {} failed ({}): {}", method, st, e));
            st.0
        }
    }
}

fn malformed(callback: &str, e: wire::Malformed) -> i32 {
    log(Level::Error, &format!("protogate: {}: {}", callback, e));
    Status::PARAMS_TYPE_ERROR.0
}

pub fn on_socket_created(conn: u64, n: u32) -> i32 {
    with_handler("on_socket_created", n, |h, b| match wire::decode_socket_created(b) {
        Ok(info) => failed("on_socket_created", h.on_socket_created(Conn(conn), info)),
        Err(e) => malformed("on_socket_created", e),
    })
}

pub fn on_received_bytes(conn: u64, n: u32) -> i32 {
    with_handler("on_received_bytes", n, |h, b| failed("on_received_bytes", h.on_received_bytes(Conn(conn), b)))
}

pub fn on_timer_timeout(conn: u64, typ: i32) -> i32 {
    with_handler("on_timer_timeout", 0, |h, _| failed("on_timer_timeout", h.on_timer_timeout(Conn(conn), TimerType(typ))))
}

pub fn on_received_messages(conn: u64, n: u32) -> i32 {
    with_handler("on_received_messages", n, |h, b| {
        let mut msgs = Vec::new();
        match wire::decode_received_messages(b, &mut msgs) {
            Ok(()) => failed("on_received_messages", h.on_received_messages(Conn(conn), &msgs)),
            Err(e) => malformed("on_received_messages", e),
        }
    })
}

pub fn on_socket_closed(conn: u64, n: u32) -> i32 {
    with_handler("on_socket_closed", n, |h, b| match wire::decode_socket_closed(b) {
        Ok(reason) => failed("on_socket_closed", h.on_socket_closed(Conn(conn), reason)),
        Err(e) => malformed("on_socket_closed", e),
    })
}

pub fn on_timer(conn: u64, timer: i64) -> i32 {
    with_handler("on_timer", 0, |h, _| failed("on_timer", h.on_timer(Conn(conn), Timer(timer))))
}
