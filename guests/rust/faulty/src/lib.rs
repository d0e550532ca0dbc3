//! faulty is a Rust guest that echoes what it receives, except for these
//! chunks (trailing spaces, "\r" and "\n" ignored, so nc works), which fault
//! the instance the way Rust code can:
//!
//! ```text
//! panic   panics: wasm32-wasi aborts (a trap); the SDK logs the panic first
//! loop    loops forever: the call runs past the handler's call_timeout
//! bomb    allocates 1 MiB blocks until an allocation fails: Rust aborts (a trap)
//! fail    returns an error: only this connection is closed, the instance lives
//! ```
//!
//! The host must close only the connections of the faulting instance.
//! wasmhost's TestRustFaultsAreContained drives it.

use protogate::{Conn, Error, Handler, Result, Status};

pub struct Faulty;

impl Handler for Faulty {
    fn on_received_bytes(&mut self, conn: Conn, bytes: &[u8]) -> Result<()> {
        let mut cmd = bytes;
        while let Some((last, rest)) = cmd.split_last() {
            if !matches!(last, b' ' | b'\r' | b'\n') {
                break;
            }
            cmd = rest;
        }
        match cmd {
            b"panic" => panic!("faulty: asked to panic"),
            b"loop" => {
                let x = 0u8;
                // A volatile read on every turn: the loop cannot be optimized
                // away.
                loop {
                    unsafe { std::ptr::read_volatile(&x) };
                }
            }
            b"bomb" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Written to, so that every block is really allocated.
                    blocks.push(vec![blocks.len() as u8 | 1; 1 << 20]);
                }
            }
            b"fail" => Err(Error::new(Status::PERMISSION_DENY, "faulty: asked to fail")),
            _ => conn.send(bytes),
        }
    }
}

protogate::register!(Faulty);
