/*
 * protogate.c: ABI v1 for C handlers (see protogate.h, and abi/abi.go for
 * the specification). It has no state but the registered handler, the
 * inbox, two scratch buffers and the last error; it allocates only to grow
 * the inbox and for requests or messages too large for its static buffers.
 *
 * Every length the host passes in is checked against what it is supposed to
 * describe (the inbox, the rest of a protobuf message) before it is used, and
 * every length passed to the host is checked to fit its i32.
 */
#include "protogate.h"
#include "protogate_abi.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- handler and statuses ---- */

static const pg_handler *handler;

void pg_register(const pg_handler *h) { handler = h; }

const char *pg_status_name(pg_status st) {
	switch (st) {
	case PG_SUCCESS:
		return "SUCCESS";
	case PG_UNKNOWN:
		return "UNKNOWN";
	case PG_NOT_ALIVE:
		return "CONN_PROCESS_NOT_ALIVE";
	case PG_REQUIRED_PARAMS_MISSED:
		return "REQUIRED_PARAMS_MISSED";
	case PG_PARAMS_TYPE_ERROR:
		return "PARAMS_TYPE_ERROR";
	case PG_PERMISSION_DENY:
		return "PERMISSION_DENY";
	}
	return "INVALID";
}

pg_str pg_cstr(const char *s) {
	pg_str r = {s ? s : "", s ? strlen(s) : 0};
	return r;
}

/* ---- logging ---- */

static uint32_t clamp32(size_t n) { return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n; }

void pg_log(int32_t level, const char *msg, size_t len) {
	if (len > PG_MAX_LOG_LINE)
		len = PG_MAX_LOG_LINE; /* the host cuts it there anyway */
	pg_host_log(level, msg, (uint32_t)len);
}

void pg_logf(int32_t level, const char *fmt, ...) {
	char buf[PG_MAX_LOG_LINE + 1];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	pg_log(level, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* logs logs the concatenation of up to three strings without printf, so that
 * a handler that never calls pg_logf does not link it. */
static void logs(int32_t level, const char *a, const char *b, const char *c) {
	char buf[512];
	size_t n = 0;
	const char *parts[3] = {a, b, c};
	for (int i = 0; i < 3; i++) {
		for (const char *p = parts[i]; p && *p && n < sizeof buf; p++)
			buf[n++] = *p;
	}
	pg_log(level, buf, n);
}

/* ---- the last error ---- */

/* sdk_err is the message of the last failure the SDK decided itself,
 * without asking the host, or NULL when the last failure was the host's. */
static const char *sdk_err;

static pg_status fail(pg_status st, const char *msg) {
	sdk_err = msg;
	return st;
}

/* host_result records that a failed status came from the host. */
static pg_status host_result(int32_t st) {
	if (st != PG_SUCCESS)
		sdk_err = NULL;
	return st;
}

size_t pg_last_error(char *buf, size_t cap) {
	size_t n;
	if (sdk_err) {
		n = strlen(sdk_err);
		if (cap > 0) {
			size_t k = n < cap - 1 ? n : cap - 1;
			memcpy(buf, sdk_err, k);
			buf[k] = 0;
		}
		return n;
	}
	if (cap == 0) {
		char none;
		return pg_host_last_error(&none, 0);
	}
	uint32_t room = clamp32(cap - 1);
	n = pg_host_last_error(buf, room);
	buf[n < room ? n : room] = 0;
	return n;
}

const char *pg_error_message(size_t *len) {
	static char small[256];
	static char *big;
	static size_t big_cap;
	size_t n = pg_last_error(small, sizeof small);
	const char *msg = small;
	if (n >= sizeof small && n < SIZE_MAX) {
		if (big_cap < n + 1) {
			char *b = malloc(n + 1);
			if (b) {
				free(big);
				big = b;
				big_cap = n + 1;
			}
		}
		if (big_cap >= n + 1) {
			size_t m = pg_last_error(big, big_cap);
			if (m < big_cap) {
				msg = big;
				n = m;
			}
		}
	}
	if (msg == small && n >= sizeof small)
		n = sizeof small - 1;
	if (len)
		*len = n;
	return msg;
}

/* ---- host calls ---- */

/* fits reports whether every length fits the i32 of the ABI (always true on
 * wasm32, where size_t is 32 bits; not natively). */
static int fits(size_t a, size_t b) { return a <= UINT32_MAX && b <= UINT32_MAX; }

static const char too_long[] = "protogate: a length does not fit in 32 bits";

pg_status pg_send(pg_conn c, const void *buf, size_t len) {
	if (!fits(len, 0))
		return fail(PG_PARAMS_TYPE_ERROR, too_long);
	return host_result(pg_host_send(c, buf, (uint32_t)len));
}

pg_status pg_close(pg_conn c) { return host_result(pg_host_close(c)); }

pg_status pg_start_timer(pg_conn c, int32_t type, uint32_t interval_s) {
	return host_result(pg_host_start_timer(c, type, interval_s));
}

pg_status pg_publish(pg_conn c, pg_str topic, uint8_t qos, const void *payload, size_t len) {
	if (!fits(topic.len, len))
		return fail(PG_PARAMS_TYPE_ERROR, too_long);
	return host_result(pg_host_publish(c, topic.ptr, (uint32_t)topic.len, qos, payload, (uint32_t)len));
}

pg_status pg_raw_publish(pg_str topic, uint8_t qos, const void *payload, size_t len) {
	if (!fits(topic.len, len))
		return fail(PG_PARAMS_TYPE_ERROR, too_long);
	return host_result(pg_host_raw_publish(topic.ptr, (uint32_t)topic.len, qos, payload, (uint32_t)len));
}

pg_status pg_subscribe(pg_conn c, pg_str filter, uint8_t qos) {
	if (!fits(filter.len, 0))
		return fail(PG_PARAMS_TYPE_ERROR, too_long);
	return host_result(pg_host_subscribe(c, filter.ptr, (uint32_t)filter.len, qos));
}

pg_status pg_unsubscribe(pg_conn c, pg_str filter) {
	if (!fits(filter.len, 0))
		return fail(PG_PARAMS_TYPE_ERROR, too_long);
	return host_result(pg_host_unsubscribe(c, filter.ptr, (uint32_t)filter.len));
}

pg_status pg_set_timer(pg_conn c, uint32_t delay_ms, pg_timer *t) {
	if (t)
		*t = 0;
	if (!handler || !handler->on_timer)
		return fail(PG_UNKNOWN, "protogate: pg_set_timer: the registered handler has no on_timer");
	if (delay_ms == 0)
		delay_ms = 1;
	int64_t id = pg_host_set_timer(c, delay_ms);
	if (id > 0) {
		if (t)
			*t = id;
		return PG_SUCCESS;
	}
	/* A negative status; 0 and anything beyond an i32 break the contract. */
	if (id == 0 || id < -(int64_t)INT32_MAX)
		return fail(PG_UNKNOWN, "protogate: set_timer answered an invalid timer id");
	return host_result((int32_t)-id);
}

pg_status pg_cancel_timer(pg_conn c, pg_timer t) { return host_result(pg_host_cancel_timer(c, t)); }

/* ---- protobuf ---- */

/* The protobuf wire format, as far as ABI v1 needs it (abi/wire.go does the
 * same in Go). A reader never reads past end. */
typedef struct pb {
	const uint8_t *p, *end;
} pb;

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_BYTES = 2, PB_FIXED32 = 5 };

/* pb_varint decodes a varint; 0 on success. */
static int pb_varint(pb *r, uint64_t *v) {
	uint64_t x = 0;
	for (int i = 0; i < 10 && r->p < r->end; i++) {
		uint8_t c = *r->p++;
		if (i == 9 && c > 1)
			return -1; /* overflows 64 bits */
		x |= (uint64_t)(c & 0x7f) << (7 * i);
		if (c < 0x80) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* pb_field is one field: v for a bytes field, x for a varint. */
typedef struct pb_field {
	uint32_t num;
	int type;
	pg_str v;
	uint64_t x;
} pb_field;

/* pb_next reads the next varint or bytes field, skipping fixed ones: 1 with
 * a field, 0 at the end, -1 if malformed. */
static int pb_next(pb *r, pb_field *f) {
	while (r->p < r->end) {
		uint64_t tag, n;
		if (pb_varint(r, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > (1u << 29) - 1)
			return -1;
		f->num = (uint32_t)(tag >> 3);
		f->type = (int)(tag & 7);
		f->v.ptr = "";
		f->v.len = 0;
		f->x = 0;
		switch (f->type) {
		case PB_VARINT:
			if (pb_varint(r, &f->x) != 0)
				return -1;
			return 1;
		case PB_BYTES:
			if (pb_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p))
				return -1;
			f->v.ptr = (const char *)r->p;
			f->v.len = (size_t)n;
			r->p += n;
			return 1;
		case PB_FIXED32:
		case PB_FIXED64:
			n = f->type == PB_FIXED32 ? 4 : 8;
			if (n > (uint64_t)(r->end - r->p))
				return -1;
			r->p += n;
			continue;
		default:
			return -1;
		}
	}
	return 0;
}

static pb pb_of(pg_str s) {
	pb r = {(const uint8_t *)s.ptr, (const uint8_t *)s.ptr + s.len};
	return r;
}

/* The decoders return 0, or -1 if b is malformed, or a known field has the
 * wrong wire type. */

static int decode_addr(pg_str b, pg_addr *a) {
	pb r = pb_of(b);
	pb_field f;
	int more;
	while ((more = pb_next(&r, &f)) > 0) {
		if (f.num == 1) {
			if (f.type != PB_BYTES)
				return -1;
			a->host = f.v;
		} else if (f.num == 2) {
			if (f.type != PB_VARINT)
				return -1;
			a->port = (uint16_t)f.x;
		}
	}
	return more;
}

static int decode_conn_info(pg_str b, pg_conn_info *ci) {
	pb r = pb_of(b);
	pb_field f;
	int more;
	while ((more = pb_next(&r, &f)) > 0) {
		if (f.num == 1) {
			if (f.type != PB_VARINT)
				return -1;
			ci->sock_type = (int32_t)f.x;
			continue;
		}
		if (f.num > 4)
			continue;
		if (f.type != PB_BYTES)
			return -1;
		if (f.num == 2 && decode_addr(f.v, &ci->peer) != 0)
			return -1;
		if (f.num == 3 && decode_addr(f.v, &ci->local) != 0)
			return -1;
		if (f.num == 4) {
			pb c = pb_of(f.v);
			pb_field g;
			int m;
			ci->has_peer_cert = 1;
			while ((m = pb_next(&c, &g)) > 0) {
				if (g.num != 1 && g.num != 2)
					continue;
				if (g.type != PB_BYTES)
					return -1;
				if (g.num == 1)
					ci->cert_cn = g.v;
				else
					ci->cert_dn = g.v;
			}
			if (m < 0)
				return -1;
		}
	}
	return more;
}

static int decode_message(pg_str b, pg_message *m) {
	static const pg_message zero;
	pb r = pb_of(b);
	pb_field f;
	int more;
	*m = zero;
	m->node = m->id = m->from = m->topic = PG_STR("");
	m->payload = (const uint8_t *)"";
	while ((more = pb_next(&r, &f)) > 0) {
		if (f.num < 1 || f.num > 7)
			continue;
		if ((f.num == 3 || f.num == 7) != (f.type == PB_VARINT) || (f.type != PB_VARINT && f.type != PB_BYTES))
			return -1;
		switch (f.num) {
		case 1: m->node = f.v; break;
		case 2: m->id = f.v; break;
		case 3: m->qos = (uint8_t)f.x; break;
		case 4: m->from = f.v; break;
		case 5: m->topic = f.v; break;
		case 6:
			m->payload = (const uint8_t *)f.v.ptr;
			m->payload_len = f.v.len;
			break;
		case 7: m->timestamp = (int64_t)f.x; break;
		}
	}
	return more;
}

/* decode_closed decodes a SocketClosedRequest{conn = 1, reason = 2}. */
static int decode_closed(pg_str b, pg_str *reason) {
	pb r = pb_of(b);
	pb_field f;
	int more;
	while ((more = pb_next(&r, &f)) > 0) {
		if (f.num != 1 && f.num != 2)
			continue;
		if (f.type != PB_BYTES)
			return -1;
		if (f.num == 2)
			*reason = f.v;
	}
	return more;
}

/* Encoding: the size of a bytes field with a one-byte tag (fields 1-15), and
 * the writers. Empty strings are left out, as protobuf does. */
static size_t varint_size(uint64_t v) {
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static size_t str_size(size_t len) { return len ? 1 + varint_size(len) + len : 0; }

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static uint8_t *put_str(uint8_t *p, uint32_t num, pg_str s) {
	if (!s.len)
		return p;
	*p++ = (uint8_t)(num << 3 | PB_BYTES);
	p = put_varint(p, s.len);
	memcpy(p, s.ptr, s.len);
	return p + s.len;
}

/* ---- authenticate ---- */

pg_status pg_authenticate(pg_conn c, const pg_client_info *ci, pg_str password) {
	static const pg_client_info none;
	static uint8_t small[512];
	if (!ci)
		ci = &none;
	/* Every part is bounded by 2^32 before sizes are added, so the sums
	 * cannot wrap even with a 32-bit size_t: 6 terms of < 2^32 + 11. */
	const pg_str parts[4] = {ci->proto_name, ci->proto_ver, ci->client_id, ci->username};
	uint64_t inner = 0;
	for (int i = 0; i < 4; i++) {
		if (parts[i].len > UINT32_MAX)
			return fail(PG_PARAMS_TYPE_ERROR, too_long);
		inner += str_size(parts[i].len);
	}
	if (password.len > UINT32_MAX)
		return fail(PG_PARAMS_TYPE_ERROR, too_long);
	uint64_t total = 1 + varint_size(inner) + inner + str_size(password.len);
	if (total > UINT32_MAX || total > SIZE_MAX)
		return fail(PG_PARAMS_TYPE_ERROR, too_long);
	uint8_t *buf = small;
	if (total > sizeof small && !(buf = malloc((size_t)total)))
		return fail(PG_UNKNOWN, "protogate: pg_authenticate: out of memory");
	/* AuthenticateRequest{clientinfo = 2, password = 3}; conn (1) is the
	 * call's argument. */
	uint8_t *p = buf;
	*p++ = 2 << 3 | PB_BYTES;
	p = put_varint(p, inner);
	for (int i = 0; i < 4; i++)
		p = put_str(p, (uint32_t)i + 1, parts[i]);
	p = put_str(p, 3, password);
	pg_status st = host_result(pg_host_authenticate(c, buf, (uint32_t)(p - buf)));
	if (buf != small)
		free(buf);
	return st;
}

/* ---- exports ---- */

/* The inbox: the host writes a callback's bytes here. It only grows. */
static uint8_t *inbox;
static uint32_t inbox_cap;

/* MIN_INBOX is the smallest inbox; most payloads fit without growing it. */
#define MIN_INBOX 4096

PG_EXPORT(protogate_abi_v1) void protogate_abi_v1(void) {}

/* protogate_inbox returns room for size bytes, or NULL if memory ran out,
 * which the host treats as a fault of the instance. */
PG_EXPORT(protogate_inbox) void *protogate_inbox(uint32_t size) {
	if (inbox && size <= inbox_cap)
		return inbox;
	uint64_t n = MIN_INBOX;
	while (n < size)
		n *= 2;
	if (n > UINT32_MAX || n > SIZE_MAX)
		n = size;
	free(inbox); /* the contents need not survive: no realloc copy */
	inbox = malloc((size_t)n);
	inbox_cap = inbox ? (uint32_t)n : 0;
	return inbox;
}

/* begin returns the callback's n bytes of payload in *b, or the status that
 * fails the callback. */
static pg_status begin(const char *callback, uint32_t n, pg_str *b) {
	if (!handler) {
		logs(PG_LOG_ERROR, "protogate: ", callback, ": no handler registered: use PG_REGISTER");
		return PG_UNKNOWN;
	}
	if (n > inbox_cap) {
		logs(PG_LOG_ERROR, "protogate: ", callback, ": the payload is larger than the inbox");
		return PG_PARAMS_TYPE_ERROR;
	}
	b->ptr = n ? (const char *)inbox : "";
	b->len = n;
	return PG_SUCCESS;
}

/* checked returns st, a handler's result, if ABI v1 defines it, and
 * PG_UNKNOWN otherwise: a stray value (-1, say) then fails one connection
 * instead of faulting the instance and all its connections. */
static int32_t checked(const char *callback, pg_status st) {
	if (st >= PG_SUCCESS && st <= PG_PERMISSION_DENY)
		return st;
	logs(PG_LOG_ERROR, "protogate: ", callback, " returned a status ABI v1 does not define; failing with UNKNOWN");
	return PG_UNKNOWN;
}

static int32_t malformed(const char *callback) {
	logs(PG_LOG_ERROR, "protogate: ", callback, ": malformed protobuf");
	return PG_PARAMS_TYPE_ERROR;
}

PG_EXPORT(protogate_init) int32_t protogate_init(void) {
	if (!handler) {
		logs(PG_LOG_ERROR, "protogate: no handler registered: use PG_REGISTER", NULL, NULL);
		return PG_UNKNOWN;
	}
	return handler->init ? checked("init", handler->init()) : PG_SUCCESS;
}

PG_EXPORT(protogate_on_socket_created) int32_t protogate_on_socket_created(uint64_t conn, uint32_t n) {
	static const char cb[] = "on_socket_created";
	pg_str b;
	pg_status st = begin(cb, n, &b);
	if (st != PG_SUCCESS)
		return st;
	pg_conn_info ci;
	memset(&ci, 0, sizeof ci);
	ci.peer.host = ci.local.host = ci.cert_cn = ci.cert_dn = PG_STR("");
	pb r = pb_of(b);
	pb_field f;
	int more;
	while ((more = pb_next(&r, &f)) > 0) {
		if (f.num != 1 && f.num != 2)
			continue;
		if (f.type != PB_BYTES || (f.num == 2 && decode_conn_info(f.v, &ci) != 0))
			return malformed(cb);
	}
	if (more < 0)
		return malformed(cb);
	return handler->on_socket_created ? checked(cb, handler->on_socket_created(conn, &ci)) : PG_SUCCESS;
}

PG_EXPORT(protogate_on_received_bytes) int32_t protogate_on_received_bytes(uint64_t conn, uint32_t n) {
	static const char cb[] = "on_received_bytes";
	pg_str b;
	pg_status st = begin(cb, n, &b);
	if (st != PG_SUCCESS)
		return st;
	if (!handler->on_received_bytes)
		return PG_SUCCESS;
	return checked(cb, handler->on_received_bytes(conn, (const uint8_t *)b.ptr, b.len));
}

PG_EXPORT(protogate_on_timer_timeout) int32_t protogate_on_timer_timeout(uint64_t conn, int32_t type) {
	static const char cb[] = "on_timer_timeout";
	pg_str b;
	pg_status st = begin(cb, 0, &b);
	if (st != PG_SUCCESS)
		return st;
	return handler->on_timer_timeout ? checked(cb, handler->on_timer_timeout(conn, type)) : PG_SUCCESS;
}

/* each_message decodes the messages of a ReceivedMessagesRequest in b and,
 * if deliver, hands them to the handler PG_MAX_BATCH at a time. It runs
 * twice: once to check the whole request, so that a malformed one delivers
 * nothing, then to deliver. */
static int32_t each_message(const char *cb, pg_conn conn, pg_str b, int deliver) {
	static pg_message batch[PG_MAX_BATCH];
	size_t k = 0;
	pb r = pb_of(b);
	pb_field f;
	int more;
	while ((more = pb_next(&r, &f)) > 0) {
		if (f.num != 1 && f.num != 2)
			continue;
		if (f.type != PB_BYTES)
			return malformed(cb);
		if (f.num == 1)
			continue;
		if (decode_message(f.v, &batch[k]) != 0)
			return malformed(cb);
		if (deliver && ++k == PG_MAX_BATCH) {
			int32_t st = checked(cb, handler->on_received_messages(conn, batch, k));
			k = 0;
			if (st != PG_SUCCESS)
				return st;
		}
	}
	if (more < 0)
		return malformed(cb);
	if (deliver && k > 0)
		return checked(cb, handler->on_received_messages(conn, batch, k));
	return PG_SUCCESS;
}

PG_EXPORT(protogate_on_received_messages) int32_t protogate_on_received_messages(uint64_t conn, uint32_t n) {
	static const char cb[] = "on_received_messages";
	pg_str b;
	pg_status st = begin(cb, n, &b);
	if (st != PG_SUCCESS)
		return st;
	if ((st = each_message(cb, conn, b, 0)) != PG_SUCCESS || !handler->on_received_messages)
		return st;
	return each_message(cb, conn, b, 1);
}

PG_EXPORT(protogate_on_socket_closed) int32_t protogate_on_socket_closed(uint64_t conn, uint32_t n) {
	static const char cb[] = "on_socket_closed";
	pg_str b;
	pg_status st = begin(cb, n, &b);
	if (st != PG_SUCCESS)
		return st;
	pg_str reason = PG_STR("");
	if (decode_closed(b, &reason) != 0)
		return malformed(cb);
	return handler->on_socket_closed ? checked(cb, handler->on_socket_closed(conn, reason)) : PG_SUCCESS;
}

PG_EXPORT(protogate_on_timer) int32_t protogate_on_timer(uint64_t conn, int64_t timer) {
	static const char cb[] = "on_timer";
	pg_str b;
	pg_status st = begin(cb, 0, &b);
	if (st != PG_SUCCESS)
		return st;
	if (!handler->on_timer) {
		logs(PG_LOG_WARN, "protogate: a timer fired but the handler has no on_timer", NULL, NULL);
		return PG_SUCCESS;
	}
	return checked(cb, handler->on_timer(conn, timer));
}
