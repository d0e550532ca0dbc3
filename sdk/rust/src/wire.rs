//! The protobuf wire format, as far as ABI v1 needs it (the messages of
//! emqx.exproto.v1 that cross the ABI), written with the standard library
//! only. Field numbers are those of proto/exproto.proto; the Go package abi
//! is the reference (abi/encoding.go).

use crate::{Address, CertInfo, ClientInfo, ConnInfo, Message, SocketType};

/// A decoding failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed protobuf: {}", self.0)
    }
}

type Res<T> = std::result::Result<T, Malformed>;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const BYTES: u8 = 2;
const FIXED32: u8 = 5;

fn bad(s: String) -> Malformed {
    Malformed(s)
}

pub(crate) fn append_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn consume_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &c) in b.iter().enumerate().take(10) {
        if i == 9 && c > 1 {
            return None;
        }
        v |= u64::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

/// One field: a bytes field's content or a varint's value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Calls f for every varint and bytes field of the message in b; fields of
/// other wire types are skipped, as are unknown fields.
fn fields<'a>(mut b: &'a [u8], mut f: impl FnMut(u32, Value<'a>) -> Res<()>) -> Res<()> {
    while !b.is_empty() {
        let (tag, n) = consume_varint(b).ok_or_else(|| bad("bad tag".into()))?;
        b = &b[n..];
        let (num, typ) = (tag >> 3, (tag & 7) as u8);
        if num == 0 || num > (1 << 29) - 1 {
            return Err(bad(format!("bad field number {}", num)));
        }
        let num = num as u32;
        let value;
        match typ {
            VARINT => {
                let (x, n) = consume_varint(b).ok_or_else(|| bad(format!("field {}: bad varint", num)))?;
                b = &b[n..];
                value = Some(Value::Varint(x));
            }
            BYTES => {
                let (l, m) = consume_varint(b).ok_or_else(|| bad(format!("field {}: bad length", num)))?;
                if l > (b.len() - m) as u64 {
                    return Err(bad(format!("field {}: bad length", num)));
                }
                let l = l as usize;
                value = Some(Value::Bytes(&b[m..m + l]));
                b = &b[m + l..];
            }
            FIXED32 | FIXED64 => {
                let n = if typ == FIXED32 { 4 } else { 8 };
                if n > b.len() {
                    return Err(bad(format!("field {}: truncated", num)));
                }
                b = &b[n..];
                value = None;
            }
            _ => return Err(bad(format!("field {}: unsupported wire type {}", num, typ))),
        }
        if let Some(v) = value {
            f(num, v)?;
        }
    }
    Ok(())
}

fn want_bytes(num: u32, v: Value<'_>) -> Res<&[u8]> {
    match v {
        Value::Bytes(b) => Ok(b),
        Value::Varint(_) => Err(bad(format!("field {} has wire type 0, want 2", num))),
    }
}

fn want_str(num: u32, v: Value<'_>) -> Res<&str> {
    std::str::from_utf8(want_bytes(num, v)?).map_err(|_| bad(format!("field {}: invalid UTF-8", num)))
}

fn want_varint(num: u32, v: Value<'_>) -> Res<u64> {
    match v {
        Value::Varint(x) => Ok(x),
        Value::Bytes(_) => Err(bad(format!("field {} has wire type 2, want 0", num))),
    }
}

fn decode_address(b: &[u8]) -> Res<Address> {
    let mut a = Address::default();
    fields(b, |num, v| {
        match num {
            1 => a.host = want_str(num, v)?.to_string(),
            2 => a.port = want_varint(num, v)? as u16,
            _ => {}
        }
        Ok(())
    })?;
    Ok(a)
}

fn decode_conn_info(b: &[u8]) -> Res<ConnInfo> {
    let mut ci = ConnInfo::default();
    fields(b, |num, v| {
        match num {
            1 => ci.sock_type = SocketType::from_i32(want_varint(num, v)? as i32),
            2 => ci.peer = decode_address(want_bytes(num, v)?)?,
            3 => ci.local = decode_address(want_bytes(num, v)?)?,
            4 => {
                let mut cert = CertInfo::default();
                fields(want_bytes(num, v)?, |num, v| {
                    match num {
                        1 => cert.cn = want_str(num, v)?.to_string(),
                        2 => cert.dn = want_str(num, v)?.to_string(),
                        _ => {}
                    }
                    Ok(())
                })?;
                ci.peer_cert = Some(cert);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(ci)
}

/// Decodes a SocketCreatedRequest's conninfo.
pub(crate) fn decode_socket_created(b: &[u8]) -> Res<ConnInfo> {
    let mut ci = ConnInfo::default();
    fields(b, |num, v| {
        match num {
            1 => {
                want_bytes(num, v)?;
            }
            2 => ci = decode_conn_info(want_bytes(num, v)?)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(ci)
}

fn decode_message(b: &[u8]) -> Res<Message<'_>> {
    let mut m = Message::default();
    fields(b, |num, v| {
        match num {
            1 => m.node = want_str(num, v)?,
            2 => m.id = want_str(num, v)?,
            3 => m.qos = want_varint(num, v)? as u8,
            4 => m.from = want_str(num, v)?,
            5 => m.topic = want_str(num, v)?,
            6 => m.payload = want_bytes(num, v)?,
            7 => m.timestamp = want_varint(num, v)? as i64,
            _ => {}
        }
        Ok(())
    })?;
    Ok(m)
}

/// Decodes a ReceivedMessagesRequest, appending its messages to dst. They
/// borrow b.
pub(crate) fn decode_received_messages<'a>(b: &'a [u8], dst: &mut Vec<Message<'a>>) -> Res<()> {
    fields(b, |num, v| {
        match num {
            1 => {
                want_bytes(num, v)?;
            }
            2 => dst.push(decode_message(want_bytes(num, v)?)?),
            _ => {}
        }
        Ok(())
    })
}

/// Decodes a SocketClosedRequest's reason.
pub(crate) fn decode_socket_closed(b: &[u8]) -> Res<&str> {
    let mut reason = "";
    fields(b, |num, v| {
        match num {
            1 => {
                want_bytes(num, v)?;
            }
            2 => reason = want_str(num, v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(reason)
}

fn append_tag(b: &mut Vec<u8>, num: u32, typ: u8) {
    append_varint(b, u64::from(num) << 3 | u64::from(typ));
}

fn append_bytes(b: &mut Vec<u8>, num: u32, v: &[u8]) {
    if v.is_empty() {
        return;
    }
    append_tag(b, num, BYTES);
    append_varint(b, v.len() as u64);
    b.extend_from_slice(v);
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn append_uint(b: &mut Vec<u8>, num: u32, v: u64) {
    if v == 0 {
        return;
    }
    append_tag(b, num, VARINT);
    append_varint(b, v);
}

/// Appends field num holding the sub-message that enc writes.
fn append_message(b: &mut Vec<u8>, num: u32, enc: impl FnOnce(&mut Vec<u8>)) {
    let mut sub = Vec::new();
    enc(&mut sub);
    append_tag(b, num, BYTES);
    append_varint(b, sub.len() as u64);
    b.extend_from_slice(&sub);
}

/// Appends an AuthenticateRequest{clientinfo, password} (conn is left out:
/// the host uses the call's conn argument).
pub(crate) fn append_authenticate(b: &mut Vec<u8>, ci: &ClientInfo, password: &str) {
    append_message(b, 2, |b| {
        append_bytes(b, 1, ci.proto_name.as_bytes());
        append_bytes(b, 2, ci.proto_ver.as_bytes());
        append_bytes(b, 3, ci.client_id.as_bytes());
        append_bytes(b, 4, ci.username.as_bytes());
    });
    append_bytes(b, 3, password.as_bytes());
}

// The host's side, for the fake host of native tests.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod host {
    use super::*;

    fn append_address(b: &mut Vec<u8>, a: &Address) {
        append_bytes(b, 1, a.host.as_bytes());
        append_uint(b, 2, u64::from(a.port));
    }

    /// Encodes a SocketCreatedRequest{conn, conninfo}.
    pub(crate) fn socket_created(conn: &str, ci: &ConnInfo) -> Vec<u8> {
        let mut b = Vec::new();
        append_bytes(&mut b, 1, conn.as_bytes());
        append_message(&mut b, 2, |b| {
            append_uint(b, 1, ci.sock_type as u64);
            append_message(b, 2, |b| append_address(b, &ci.peer));
            append_message(b, 3, |b| append_address(b, &ci.local));
            if let Some(cert) = &ci.peer_cert {
                append_message(b, 4, |b| {
                    append_bytes(b, 1, cert.cn.as_bytes());
                    append_bytes(b, 2, cert.dn.as_bytes());
                });
            }
        });
        b
    }

    /// Encodes a ReceivedMessagesRequest{conn, messages}.
    pub(crate) fn received_messages(conn: &str, msgs: &[Message<'_>]) -> Vec<u8> {
        let mut b = Vec::new();
        append_bytes(&mut b, 1, conn.as_bytes());
        for m in msgs {
            append_message(&mut b, 2, |b| {
                append_bytes(b, 1, m.node.as_bytes());
                append_bytes(b, 2, m.id.as_bytes());
                append_uint(b, 3, u64::from(m.qos));
                append_bytes(b, 4, m.from.as_bytes());
                append_bytes(b, 5, m.topic.as_bytes());
                append_bytes(b, 6, m.payload);
                append_uint(b, 7, m.timestamp as u64);
            });
        }
        b
    }

    /// Encodes a SocketClosedRequest{conn, reason}.
    pub(crate) fn socket_closed(conn: &str, reason: &str) -> Vec<u8> {
        let mut b = Vec::new();
        append_bytes(&mut b, 1, conn.as_bytes());
        append_bytes(&mut b, 2, reason.as_bytes());
        b
    }

    /// Decodes an AuthenticateRequest: the clientinfo (None if absent) and
    /// the password.
    pub(crate) fn decode_authenticate(b: &[u8]) -> Res<(Option<ClientInfo>, String)> {
        let mut ci = None;
        let mut password = String::new();
        fields(b, |num, v| {
            match num {
                1 => {
                    want_bytes(num, v)?;
                }
                2 => {
                    let mut c = ClientInfo::default();
                    fields(want_bytes(num, v)?, |num, v| {
                        match num {
                            1 => c.proto_name = want_str(num, v)?.to_string(),
                            2 => c.proto_ver = want_str(num, v)?.to_string(),
                            3 => c.client_id = want_str(num, v)?.to_string(),
                            4 => c.username = want_str(num, v)?.to_string(),
                            5 => {
                                want_bytes(num, v)?;
                            }
                            _ => {}
                        }
                        Ok(())
                    })?;
                    ci = Some(c);
                }
                3 => password = want_str(num, v)?.to_string(),
                _ => {}
            }
            Ok(())
        })?;
        Ok((ci, password))
    }
}
