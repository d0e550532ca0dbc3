//! The host imports of ABI v1 (module "protogate"), as safe functions over
//! slices and strings. In wasm32 they are the real imports; natively they
//! go to the host installed by [`crate::testing`], or fail with UNKNOWN when
//! none is.

#[cfg(target_arch = "wasm32")]
mod imp {
    #[link(wasm_import_module = "protogate")]
    extern "C" {
        // Rust names differ from the import names so that they cannot clash
        // with wasi-libc's symbols (close, send).
        #[link_name = "send"]
        fn pg_send(conn: u64, ptr: *const u8, len: u32) -> i32;
        #[link_name = "close"]
        fn pg_close(conn: u64) -> i32;
        #[link_name = "authenticate"]
        fn pg_authenticate(conn: u64, ptr: *const u8, len: u32) -> i32;
        #[link_name = "start_timer"]
        fn pg_start_timer(conn: u64, typ: i32, interval: u32) -> i32;
        #[link_name = "publish"]
        fn pg_publish(conn: u64, tptr: *const u8, tlen: u32, qos: u32, ptr: *const u8, len: u32) -> i32;
        #[link_name = "raw_publish"]
        fn pg_raw_publish(tptr: *const u8, tlen: u32, qos: u32, ptr: *const u8, len: u32) -> i32;
        #[link_name = "subscribe"]
        fn pg_subscribe(conn: u64, tptr: *const u8, tlen: u32, qos: u32) -> i32;
        #[link_name = "unsubscribe"]
        fn pg_unsubscribe(conn: u64, tptr: *const u8, tlen: u32) -> i32;
        #[link_name = "set_timer"]
        fn pg_set_timer(conn: u64, delay_ms: u32) -> i64;
        #[link_name = "cancel_timer"]
        fn pg_cancel_timer(conn: u64, timer: i64) -> i32;
        #[link_name = "log"]
        fn pg_log(level: i32, ptr: *const u8, len: u32);
        #[link_name = "last_error"]
        fn pg_last_error(ptr: *mut u8, cap: u32) -> u32;
    }

    // The host copies what it needs before returning, and a wasm32 slice
    // is always inside linear memory: these calls are safe.
    pub fn send(conn: u64, b: &[u8]) -> i32 {
        unsafe { pg_send(conn, b.as_ptr(), b.len() as u32) }
    }
    pub fn close(conn: u64) -> i32 {
        unsafe { pg_close(conn) }
    }
    pub fn authenticate(conn: u64, req: &[u8]) -> i32 {
        unsafe { pg_authenticate(conn, req.as_ptr(), req.len() as u32) }
    }
    pub fn start_timer(conn: u64, typ: i32, interval: u32) -> i32 {
        unsafe { pg_start_timer(conn, typ, interval) }
    }
    pub fn publish(conn: u64, topic: &[u8], qos: u32, payload: &[u8]) -> i32 {
        unsafe { pg_publish(conn, topic.as_ptr(), topic.len() as u32, qos, payload.as_ptr(), payload.len() as u32) }
    }
    pub fn raw_publish(topic: &[u8], qos: u32, payload: &[u8]) -> i32 {
        unsafe { pg_raw_publish(topic.as_ptr(), topic.len() as u32, qos, payload.as_ptr(), payload.len() as u32) }
    }
    pub fn subscribe(conn: u64, filter: &[u8], qos: u32) -> i32 {
        unsafe { pg_subscribe(conn, filter.as_ptr(), filter.len() as u32, qos) }
    }
    pub fn unsubscribe(conn: u64, filter: &[u8]) -> i32 {
        unsafe { pg_unsubscribe(conn, filter.as_ptr(), filter.len() as u32) }
    }
    pub fn set_timer(conn: u64, delay_ms: u32) -> i64 {
        unsafe { pg_set_timer(conn, delay_ms) }
    }
    pub fn cancel_timer(conn: u64, timer: i64) -> i32 {
        unsafe { pg_cancel_timer(conn, timer) }
    }
    pub fn log(level: i32, msg: &str) {
        unsafe { pg_log(level, msg.as_ptr(), msg.len() as u32) }
    }
    pub fn last_error(buf: &mut [u8]) -> usize {
        unsafe { pg_last_error(buf.as_mut_ptr(), buf.len() as u32) as usize }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::cell::RefCell;
    use std::rc::Rc;

    /// The host imports, implemented by the fake host of native tests.
    pub(crate) trait HostCalls {
        fn send(&mut self, conn: u64, b: &[u8]) -> i32;
        fn close(&mut self, conn: u64) -> i32;
        fn authenticate(&mut self, conn: u64, req: &[u8]) -> i32;
        fn start_timer(&mut self, conn: u64, typ: i32, interval: u32) -> i32;
        fn publish(&mut self, conn: u64, topic: &[u8], qos: u32, payload: &[u8]) -> i32;
        fn raw_publish(&mut self, topic: &[u8], qos: u32, payload: &[u8]) -> i32;
        fn subscribe(&mut self, conn: u64, filter: &[u8], qos: u32) -> i32;
        fn unsubscribe(&mut self, conn: u64, filter: &[u8]) -> i32;
        fn set_timer(&mut self, conn: u64, delay_ms: u32) -> i64;
        fn cancel_timer(&mut self, conn: u64, timer: i64) -> i32;
        fn log(&mut self, level: i32, msg: &str);
        fn last_error(&mut self, buf: &mut [u8]) -> usize;
    }

    thread_local! {
        // The installed host: one per thread, like the guest's state, so
        // that tests running in parallel threads do not share it.
        pub(crate) static HOST: RefCell<Option<Rc<RefCell<dyn HostCalls>>>> = RefCell::new(None);
    }

    const NO_HOST: &str = "protogate: no host: not running in protogate (native tests install one with protogate::testing::Host::new)";
    const UNKNOWN: i32 = 1;

    fn with<R>(f: impl FnOnce(&mut dyn HostCalls) -> R, none: R) -> R {
        let h = HOST.with(|h| h.borrow().clone());
        match h {
            Some(h) => f(&mut *h.borrow_mut()),
            None => none,
        }
    }

    pub fn send(conn: u64, b: &[u8]) -> i32 {
        with(|h| h.send(conn, b), UNKNOWN)
    }
    pub fn close(conn: u64) -> i32 {
        with(|h| h.close(conn), UNKNOWN)
    }
    pub fn authenticate(conn: u64, req: &[u8]) -> i32 {
        with(|h| h.authenticate(conn, req), UNKNOWN)
    }
    pub fn start_timer(conn: u64, typ: i32, interval: u32) -> i32 {
        with(|h| h.start_timer(conn, typ, interval), UNKNOWN)
    }
    pub fn publish(conn: u64, topic: &[u8], qos: u32, payload: &[u8]) -> i32 {
        with(|h| h.publish(conn, topic, qos, payload), UNKNOWN)
    }
    pub fn raw_publish(topic: &[u8], qos: u32, payload: &[u8]) -> i32 {
        with(|h| h.raw_publish(topic, qos, payload), UNKNOWN)
    }
    pub fn subscribe(conn: u64, filter: &[u8], qos: u32) -> i32 {
        with(|h| h.subscribe(conn, filter, qos), UNKNOWN)
    }
    pub fn unsubscribe(conn: u64, filter: &[u8]) -> i32 {
        with(|h| h.unsubscribe(conn, filter), UNKNOWN)
    }
    pub fn set_timer(conn: u64, delay_ms: u32) -> i64 {
        with(|h| h.set_timer(conn, delay_ms), -(UNKNOWN as i64))
    }
    pub fn cancel_timer(conn: u64, timer: i64) -> i32 {
        with(|h| h.cancel_timer(conn, timer), UNKNOWN)
    }
    pub fn log(level: i32, msg: &str) {
        with(|h| h.log(level, msg), ())
    }
    pub fn last_error(buf: &mut [u8]) -> usize {
        let h = HOST.with(|h| h.borrow().clone());
        match h {
            Some(h) => h.borrow_mut().last_error(buf),
            None => {
                let n = NO_HOST.len().min(buf.len());
                buf[..n].copy_from_slice(&NO_HOST.as_bytes()[..n]);
                NO_HOST.len()
            }
        }
    }
}

pub(crate) use imp::*;
