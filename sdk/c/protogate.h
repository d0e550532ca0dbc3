/*
 * protogate.h: the C SDK for protogate's WebAssembly protocol handlers.
 *
 * It implements ABI v1, whose specification is the documentation of the Go
 * package github.com/protogate/protogate/abi (abi/abi.go): this SDK defines
 * the module's exports (protogate_abi_v1, protogate_inbox, protogate_init and
 * the callbacks), decodes what the host passes in, calls the host's imports
 * (module "protogate") and checks every length on the way. A handler fills a
 * pg_handler with the callbacks it needs and registers it:
 *
 *     #include "protogate.h"
 *
 *     static pg_status on_bytes(pg_conn c, const uint8_t *b, size_t n) {
 *         return pg_send(c, b, n);
 *     }
 *     static const pg_handler echo = {.on_received_bytes = on_bytes};
 *     PG_REGISTER(echo);
 *
 * Build it as a WASI reactor (Debian: apt-get install clang lld wasi-libc
 * libclang-rt-dev-wasm32):
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -I sdk/c \
 *         -o echo.wasm echo.c sdk/c/protogate.c
 *
 * The same sources compile natively with any C11 compiler against the fake
 * host of sdk/c/test (fakehost.h), which is how handlers are tested.
 *
 * The model. The host runs a pool of instances of the module; each
 * connection is pinned to one instance for its whole life, and an instance
 * runs one callback at a time, so a handler needs no locks: keep the state
 * of a connection in a table keyed by pg_conn, made in on_socket_created and
 * freed in on_socket_closed (the last callback of a connection, exactly
 * once). Call the functions below only from a callback or from init.
 *
 * Bytes and strings the host passes in (the buf of on_received_bytes, every
 * pg_str and payload of a callback) point into the module's inbox, which the
 * next callback overwrites: copy what you keep. Strings are pg_str, a pointer
 * and a length, never NUL-terminated; print them with "%.*s", (int)s.len,
 * s.ptr.
 *
 * Statuses. Every call returns a pg_status: PG_SUCCESS, or why it failed;
 * pg_last_error() then gives the host's message. A callback returns
 * PG_SUCCESS or a failure status: the host then closes that connection and
 * names the callback and the status in the close reason. A trap (a crash,
 * __builtin_trap, abort), a callback running past the handler's call_timeout
 * or a broken ABI contract is a fault of the whole instance: the host
 * discards it and closes every connection pinned to it.
 */
#ifndef PROTOGATE_H
#define PROTOGATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PG_ABI_VERSION is the version of the ABI this SDK implements. */
#define PG_ABI_VERSION 1

/*
 * pg_status is the result of a callback or a call. The values are those of
 * emqx.exproto.v1.ResultCode, so a handler sees the codes a gRPC handler
 * sees.
 */
typedef int32_t pg_status;
enum {
	PG_SUCCESS = 0,
	PG_UNKNOWN = 1,
	PG_NOT_ALIVE = 2,              /* the connection is closed, or not this instance's */
	PG_REQUIRED_PARAMS_MISSED = 3,
	PG_PARAMS_TYPE_ERROR = 4,      /* a malformed argument (a bad topic, ...) */
	PG_PERMISSION_DENY = 5,        /* refused: not authenticated, a bound reached, ... */
};

/* pg_status_name returns the ResultCode name of st ("SUCCESS",
 * "CONN_PROCESS_NOT_ALIVE", ...), or "INVALID" for a value ABI v1 does not
 * define. */
const char *pg_status_name(pg_status st);

/* pg_conn is a connection's handle: an opaque 64-bit id, never 0, never
 * reused. */
typedef uint64_t pg_conn;

/* pg_timer is the id of a timer armed with pg_set_timer; always > 0. */
typedef int64_t pg_timer;

/* pg_str is text that is not NUL-terminated. */
typedef struct pg_str {
	const char *ptr;
	size_t len;
} pg_str;

/* PG_STR makes a pg_str of a string literal (a compound literal: C, not
 * C++). */
#define PG_STR(lit) ((pg_str){(lit), sizeof(lit) - 1})

/* pg_cstr makes a pg_str of a NUL-terminated string (NULL is empty). */
pg_str pg_cstr(const char *s);

/* Socket types (emqx.exproto.v1.SocketType). */
enum { PG_TCP = 0, PG_SSL = 1, PG_UDP = 2, PG_DTLS = 3 };

/* PG_KEEPALIVE is the only ExProto timer type. */
#define PG_KEEPALIVE 0

/* pg_addr is a host (an IP address in text form) and a port. */
typedef struct pg_addr {
	pg_str host;
	uint16_t port;
} pg_addr;

/* pg_conn_info describes a new connection. */
typedef struct pg_conn_info {
	int32_t sock_type; /* PG_TCP, PG_SSL, PG_UDP or PG_DTLS */
	pg_addr peer;      /* the device */
	pg_addr local;     /* the listener */
	int has_peer_cert; /* nonzero if the device presented a certificate */
	pg_str cert_cn, cert_dn;
} pg_conn_info;

/* pg_message is one delivery of a subscription. */
typedef struct pg_message {
	pg_str node;  /* the node that delivered it */
	pg_str id;    /* unique message id */
	uint8_t qos;
	pg_str from;  /* the publisher's client id */
	pg_str topic; /* without the connection's mountpoint */
	const uint8_t *payload;
	size_t payload_len;
	int64_t timestamp; /* milliseconds since the Unix epoch */
} pg_message;

/* PG_MAX_BATCH is the most messages one on_received_messages call gets. */
#define PG_MAX_BATCH 64

/*
 * pg_handler holds the callbacks of a handler. Every one is optional: a NULL
 * callback succeeds without doing anything.
 */
typedef struct pg_handler {
	/* init runs once per instance, before any connection; a failure
	 * refuses the instance. Connections do not exist yet: pg_log works,
	 * calls naming a connection answer PG_NOT_ALIVE. */
	pg_status (*init)(void);
	/* on_socket_created is the first callback of a connection. */
	pg_status (*on_socket_created)(pg_conn c, const pg_conn_info *info);
	/* on_received_bytes delivers bytes read from the connection (or one
	 * datagram). */
	pg_status (*on_received_bytes)(pg_conn c, const uint8_t *buf, size_t len);
	/* on_timer_timeout reports that the keepalive of pg_start_timer
	 * expired; the host closes the connection after it. */
	pg_status (*on_timer_timeout)(pg_conn c, int32_t type);
	/* on_received_messages delivers messages of the connection's
	 * subscriptions, in order, at most PG_MAX_BATCH per call: a larger
	 * delivery arrives as several calls, and a failed call drops the rest.
	 */
	pg_status (*on_received_messages)(pg_conn c, const pg_message *msgs, size_t n);
	/* on_socket_closed is the last callback of a connection; reason says
	 * why, in EMQX's words ("{shutdown,tcp_closed}", ...). Calls on c now
	 * answer PG_NOT_ALIVE. */
	pg_status (*on_socket_closed)(pg_conn c, pg_str reason);
	/* on_timer reports that timer t of pg_set_timer fired. */
	pg_status (*on_timer)(pg_conn c, pg_timer t);
} pg_handler;

/*
 * pg_register makes h the handler of this module; h must stay valid. Call it
 * before the host's first callback: PG_REGISTER does, from a constructor,
 * which the reactor's _initialize runs.
 */
void pg_register(const pg_handler *h);

/* PG_REGISTER(h); registers the pg_handler variable h when the module
 * starts. Use it once, at file scope, with a semicolon (the extern
 * declaration is there to take it). */
#define PG_REGISTER(h)                                                                  \
	__attribute__((constructor)) static void pg_register_##h(void) { pg_register(&(h)); } \
	extern int pg_registered_##h

/* pg_send writes len bytes to the connection; the host copies them before
 * it returns. It succeeds on a connection that is closing (the bytes are
 * dropped). */
pg_status pg_send(pg_conn c, const void *buf, size_t len);

/* pg_close closes the connection; on_socket_closed follows as a later
 * callback, with reason "{shutdown,normal}". */
pg_status pg_close(pg_conn c);

/* pg_client_info is what pg_authenticate registers for a connection. */
typedef struct pg_client_info {
	pg_str proto_name, proto_ver, client_id, username;
} pg_client_info;

/* pg_authenticate registers ci for the connection, if the gateway's
 * authenticator accepts it and password. pg_publish, pg_subscribe and
 * pg_unsubscribe need it. Another connection with the same client id is
 * closed; a second successful one answers PG_PERMISSION_DENY. */
pg_status pg_authenticate(pg_conn c, const pg_client_info *ci, pg_str password);

/* pg_start_timer starts (or restarts) the ExProto keepalive: when no bytes
 * arrive for 1.5 x interval_s seconds, on_timer_timeout runs and the
 * connection closes. type is PG_KEEPALIVE. */
pg_status pg_start_timer(pg_conn c, int32_t type, uint32_t interval_s);

/* pg_publish publishes len bytes on topic as the connection's client. */
pg_status pg_publish(pg_conn c, pg_str topic, uint8_t qos, const void *payload, size_t len);

/* pg_raw_publish publishes as is: no mountpoint, no client (the message's
 * from is "exproto"). Call it only from a callback. */
pg_status pg_raw_publish(pg_str topic, uint8_t qos, const void *payload, size_t len);

/* pg_subscribe subscribes the connection to an MQTT topic filter;
 * subscribing again updates the QoS. Deliveries arrive as
 * on_received_messages. */
pg_status pg_subscribe(pg_conn c, pg_str filter, uint8_t qos);

/* pg_unsubscribe removes a subscription; an unknown filter succeeds. */
pg_status pg_unsubscribe(pg_conn c, pg_str filter);

/* pg_set_timer arms a one-shot timer of delay_ms milliseconds (0 is 1, at
 * most 24 hours) and stores its id in *t (if t is not NULL); on_timer gets
 * it when it fires. Timers end with their connection. It needs a handler
 * with on_timer. */
pg_status pg_set_timer(pg_conn c, uint32_t delay_ms, pg_timer *t);

/* pg_cancel_timer disarms a timer; one that fired or never existed
 * succeeds. */
pg_status pg_cancel_timer(pg_conn c, pg_timer t);

/* Log levels, those of Go's log/slog. */
enum { PG_LOG_DEBUG = -4, PG_LOG_INFO = 0, PG_LOG_WARN = 4, PG_LOG_ERROR = 8 };

/* PG_MAX_LOG_LINE is the longest log message the host keeps. */
#define PG_MAX_LOG_LINE 4096

/* pg_log writes len bytes of msg to the gateway's log at level. */
void pg_log(int32_t level, const char *msg, size_t len);

/* pg_logf formats with vsnprintf (which links printf into the module) and
 * logs at most PG_MAX_LOG_LINE bytes of it. */
void pg_logf(int32_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * pg_last_error copies the message of the last failed call of this instance
 * into buf, NUL-terminated and cut to cap - 1 bytes, and returns its full
 * length, like snprintf: retry with a bigger buffer if it is >= cap.
 */
size_t pg_last_error(char *buf, size_t cap);

/*
 * pg_error_message returns the whole message of the last failed call,
 * NUL-terminated, in a buffer of the SDK valid until the next call, and
 * stores its length in *len (if len is not NULL). If memory runs out, the
 * message is cut to 255 bytes.
 */
const char *pg_error_message(size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* PROTOGATE_H */
