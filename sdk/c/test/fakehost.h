/*
 * fakehost.h: a fake protogate host for native tests of C handlers, as
 * sdk/go/sdktest is for Go ones. Compile the handler, sdk/c/protogate.c and
 * sdk/c/test/fakehost.c with the system C compiler and a test's main; the
 * fake host defines the ABI's imports (protogate_abi.h) and drives the
 * module's exports the way the gateway does, through the inbox:
 *
 *     cc -std=c11 -Isdk/c -Isdk/c/test -o t my.c my_test.c \
 *         sdk/c/protogate.c sdk/c/test/fakehost.c && ./t
 *
 * It answers host calls as the gateway does: a connection closed by the
 * handler, or by a failed callback, gets its on_socket_closed right after the
 * callback; publish, subscribe and unsubscribe need a successful
 * authenticate; calls on a closed connection answer PG_NOT_ALIVE. It has no
 * broker: messages reach a handler only through fh_deliver. After each
 * callback it overwrites the bytes it passed in, so a handler that keeps
 * them past the call fails its tests instead of misbehaving in production.
 *
 * Everything is single-threaded, like an instance.
 */
#ifndef FAKEHOST_H
#define FAKEHOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>  /* for CHECK */
#include <string.h> /* for CHECK_STR */

#include "protogate.h"

/* Close reasons, as the gateway gives them. */
#define FH_REASON_NORMAL "{shutdown,normal}"
#define FH_REASON_TCP_CLOSED "{shutdown,tcp_closed}"
#define FH_REASON_KEEPALIVE "{shutdown,keepalive_timeout}"

/* fh_info describes a connection for fh_connect_info. */
typedef struct fh_info {
	int32_t sock_type;
	const char *peer_host;
	uint16_t peer_port;
	const char *local_host;
	uint16_t local_port;
	const char *cert_cn, *cert_dn; /* no certificate if both are NULL */
} fh_info;

/* fh_msg is a message for fh_deliver. */
typedef struct fh_msg {
	const char *topic;
	const void *payload;
	size_t payload_len;
	uint8_t qos;
	const char *from, *node, *id;
	uint64_t timestamp;
} fh_msg;

/* fh_init runs protogate_init and returns its status. */
int32_t fh_init(void);

/* fh_connect opens a TCP connection from 192.0.2.1 and runs
 * on_socket_created; it returns the handle. fh_status() is the callback's
 * status. */
pg_conn fh_connect(void);
pg_conn fh_connect_info(const fh_info *info);

/* The callbacks; each returns the callback's status. A failure closes the
 * connection, as the gateway does. */
int32_t fh_receive(pg_conn c, const void *buf, size_t len);
int32_t fh_receive_str(pg_conn c, const char *s);
int32_t fh_deliver(pg_conn c, const fh_msg *msgs, size_t n);
int32_t fh_timeout(pg_conn c);
int32_t fh_fire(pg_conn c, pg_timer t);
/* fh_disconnect closes the connection as the device did (reason NULL is
 * FH_REASON_TCP_CLOSED) and runs on_socket_closed. On a connection the
 * handler closed outside a callback, it completes that close. */
int32_t fh_disconnect(pg_conn c, const char *reason);

/* fh_raw runs export name ("on_received_bytes", "on_socket_created",
 * "on_received_messages", "on_socket_closed") with len bytes written into
 * the inbox as they are: for tests of malformed input. */
int32_t fh_raw(const char *name, pg_conn c, const void *buf, size_t len);

/* fh_status is the status of the last callback fh_connect ran. */
int32_t fh_status(void);

/* fh_sent returns what the handler sent on c since the last fh_sent, as a
 * NUL-terminated string (binary-safe: *len, if not NULL, is its length),
 * valid until the next fh_sent. */
const char *fh_sent(pg_conn c, size_t *len);

/* State of a connection. */
int fh_alive(pg_conn c);               /* not closed */
const char *fh_close_reason(pg_conn c); /* NULL while alive */
int fh_authenticated(pg_conn c);
const char *fh_client_id(pg_conn c);    /* "" unless authenticated */
const char *fh_username(pg_conn c);
const char *fh_password(pg_conn c);
const char *fh_proto(pg_conn c);        /* "name/version" */
int fh_subscribed(pg_conn c, const char *filter);
uint32_t fh_keepalive(pg_conn c);       /* start_timer's interval, 0 if none */
int fh_timer_armed(pg_conn c, pg_timer t);
uint32_t fh_timer_delay(pg_conn c, pg_timer t);

/* fh_published is the i-th publish or raw_publish (from is 0 for a raw
 * one), or 0 if there are fewer. */
typedef struct fh_publish {
	pg_conn from;
	char *topic;
	uint8_t *payload;
	size_t payload_len;
	uint8_t qos;
} fh_publish;
const fh_publish *fh_published(size_t i);
size_t fh_publish_count(void);

/* fh_last_log returns the last message logged and its level. */
const char *fh_last_log(int32_t *level);
/* fh_log_count is the number of pg_log calls so far. */
size_t fh_log_count(void);

/* fh_fail_next makes the next call of import op ("send", "subscribe", ...)
 * answer status with last_error msg (NULL: an empty message). */
void fh_fail_next(const char *op, int32_t status, const char *msg);

/* fh_set_timer_answer makes the next set_timer answer id as is. */
void fh_set_timer_answer(int64_t id);

/* fh_inbox_calls is how many times the host asked for a new inbox. */
size_t fh_inbox_calls(void);

/* A tiny test harness: CHECK counts and prints failures; fh_done returns
 * the exit code. */
extern int fh_failures;
#define CHECK(cond)                                                                \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fh_failures++;                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                  \
	} while (0)
#define CHECK_STR(got, want)                                                                         \
	do {                                                                                         \
		const char *g_ = (got), *w_ = (want);                                                \
		if (!g_ || strcmp(g_, w_) != 0) {                                                    \
			fh_failures++;                                                               \
			fprintf(stderr, "%s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got, \
			        g_ ? g_ : "(null)", w_);                                             \
		}                                                                                    \
	} while (0)
int fh_done(const char *name);

#endif /* FAKEHOST_H */
