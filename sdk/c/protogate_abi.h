/*
 * protogate_abi.h: the raw imports and exports of ABI v1 (abi/abi.go), with
 * the exact Wasm types: i64 is uint64_t or int64_t, i32 is int32_t,
 * uint32_t or a pointer (wasm32). protogate.c uses them; handlers use
 * protogate.h instead. The fake host of sdk/c/test defines the imports
 * natively and calls the exports.
 *
 * Under Wasm the imports come from module "protogate"; their C names carry
 * a pg_host_ prefix so that "send" and "close" do not clash with libc's.
 */
#ifndef PROTOGATE_ABI_H
#define PROTOGATE_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __wasm__
#define PG_IMPORT(name) __attribute__((import_module("protogate"), import_name(#name)))
#define PG_EXPORT(name) __attribute__((export_name(#name)))
#else
#define PG_IMPORT(name)
#define PG_EXPORT(name)
#endif

/* Host imports. */
PG_IMPORT(send) int32_t pg_host_send(uint64_t conn, const void *ptr, uint32_t len);
PG_IMPORT(close) int32_t pg_host_close(uint64_t conn);
PG_IMPORT(authenticate) int32_t pg_host_authenticate(uint64_t conn, const void *ptr, uint32_t len);
PG_IMPORT(start_timer) int32_t pg_host_start_timer(uint64_t conn, int32_t type, uint32_t interval);
PG_IMPORT(publish)
int32_t pg_host_publish(uint64_t conn, const void *topic, uint32_t topic_len, uint32_t qos, const void *ptr,
                        uint32_t len);
PG_IMPORT(raw_publish)
int32_t pg_host_raw_publish(const void *topic, uint32_t topic_len, uint32_t qos, const void *ptr, uint32_t len);
PG_IMPORT(subscribe) int32_t pg_host_subscribe(uint64_t conn, const void *topic, uint32_t topic_len, uint32_t qos);
PG_IMPORT(unsubscribe) int32_t pg_host_unsubscribe(uint64_t conn, const void *topic, uint32_t topic_len);
PG_IMPORT(set_timer) int64_t pg_host_set_timer(uint64_t conn, uint32_t delay_ms);
PG_IMPORT(cancel_timer) int32_t pg_host_cancel_timer(uint64_t conn, int64_t timer);
PG_IMPORT(log) void pg_host_log(int32_t level, const void *ptr, uint32_t len);
PG_IMPORT(last_error) uint32_t pg_host_last_error(void *ptr, uint32_t cap);

/* Guest exports, defined by protogate.c. */
void protogate_abi_v1(void);
void *protogate_inbox(uint32_t size);
int32_t protogate_init(void);
int32_t protogate_on_socket_created(uint64_t conn, uint32_t len);
int32_t protogate_on_received_bytes(uint64_t conn, uint32_t len);
int32_t protogate_on_timer_timeout(uint64_t conn, int32_t type);
int32_t protogate_on_received_messages(uint64_t conn, uint32_t len);
int32_t protogate_on_socket_closed(uint64_t conn, uint32_t len);
int32_t protogate_on_timer(uint64_t conn, int64_t timer);

#ifdef __cplusplus
}
#endif

#endif /* PROTOGATE_ABI_H */
