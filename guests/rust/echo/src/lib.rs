//! echo is the smallest protogate guest in Rust: it sends every chunk of
//! bytes it receives back to the connection it came from. The chunk borrows
//! the module's inbox and send hands its pointer to the host, which copies
//! it: nothing is allocated per message.

use protogate::{Conn, Handler, Result};

/// The handler; it has no state.
pub struct Echo;

impl Handler for Echo {
    fn on_received_bytes(&mut self, conn: Conn, bytes: &[u8]) -> Result<()> {
        conn.send(bytes)
    }
}

protogate::register!(Echo);

#[cfg(test)]
mod tests {
    use super::Echo;
    use protogate::{testing::Host, ConnInfo};

    #[test]
    fn echoes() {
        let host = Host::new(Echo);
        let a = host.connect(ConnInfo::default());
        let b = host.connect(ConnInfo::default());
        host.receive(a, b"hello").unwrap();
        host.receive(b, b"other").unwrap();
        assert_eq!(host.sent(a), b"hello");
        assert_eq!(host.sent(b), b"other");
    }
}
