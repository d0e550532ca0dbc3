// The host imports of protogate ABI v1, module "protogate" (see package abi
// of the Go module: its doc comments are the specification). A pointer and a
// length name bytes in linear memory; the host copies them before it
// returns.

@external("protogate", "send")
export declare function send(conn: u64, ptr: usize, len: u32): i32;

@external("protogate", "close")
export declare function close(conn: u64): i32;

@external("protogate", "authenticate")
export declare function authenticate(conn: u64, ptr: usize, len: u32): i32;

@external("protogate", "start_timer")
export declare function start_timer(conn: u64, type: i32, interval: u32): i32;

@external("protogate", "publish")
export declare function publish(conn: u64, topicPtr: usize, topicLen: u32, qos: u32, ptr: usize, len: u32): i32;

@external("protogate", "raw_publish")
export declare function raw_publish(topicPtr: usize, topicLen: u32, qos: u32, ptr: usize, len: u32): i32;

@external("protogate", "subscribe")
export declare function subscribe(conn: u64, topicPtr: usize, topicLen: u32, qos: u32): i32;

@external("protogate", "unsubscribe")
export declare function unsubscribe(conn: u64, topicPtr: usize, topicLen: u32): i32;

@external("protogate", "set_timer")
export declare function set_timer(conn: u64, delayMs: u32): i64;

@external("protogate", "cancel_timer")
export declare function cancel_timer(conn: u64, timer: i64): i32;

@external("protogate", "log")
export declare function log(level: i32, ptr: usize, len: u32): void;

@external("protogate", "last_error")
export declare function last_error(ptr: usize, cap: u32): u32;
