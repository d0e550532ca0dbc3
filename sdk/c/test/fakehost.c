/*
 * fakehost.c: the fake host of fakehost.h. It is test code: it aborts on
 * allocation failure, and it checks every pointer and length the module
 * passes to an import the way the real host checks them against linear
 * memory (here: not NULL with a nonzero length).
 */
#include "fakehost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protogate_abi.h"

int fh_failures;

static void *xmalloc(size_t n) {
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "fakehost: out of memory\n");
		abort();
	}
	return p;
}

static void *xrealloc(void *p, size_t n) {
	p = realloc(p, n ? n : 1);
	if (!p) {
		fprintf(stderr, "fakehost: out of memory\n");
		abort();
	}
	return p;
}

static char *xstrndup(const void *s, size_t n) {
	char *d = xmalloc(n + 1);
	if (n)
		memcpy(d, s, n);
	d[n] = 0;
	return d;
}

/* buf is a growable byte buffer. */
typedef struct buf {
	uint8_t *p;
	size_t len, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0; /* keep it a C string too */
}

static void put_varint(buf *b, uint64_t v) {
	uint8_t t[10];
	size_t n = 0;
	while (v >= 0x80) {
		t[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[n++] = (uint8_t)v;
	put(b, t, n);
}

static void put_bytes(buf *b, uint32_t num, const void *s, size_t n) {
	if (!n)
		return;
	put_varint(b, num << 3 | 2);
	put_varint(b, n);
	put(b, s, n);
}

static void put_str(buf *b, uint32_t num, const char *s) { put_bytes(b, num, s, s ? strlen(s) : 0); }

static void put_uint(buf *b, uint32_t num, uint64_t v) {
	if (!v)
		return;
	put_varint(b, num << 3);
	put_varint(b, v);
}

/* put_sub appends field num holding the message in sub (even if empty), and
 * empties sub. */
static void put_sub(buf *b, uint32_t num, buf *sub) {
	put_varint(b, num << 3 | 2);
	put_varint(b, sub->len);
	put(b, sub->p, sub->len);
	sub->len = 0;
}

/* ---- connections ---- */

enum { OPEN, CLOSING, DEAD };

typedef struct timer {
	pg_timer id;
	uint32_t delay;
} timer;

typedef struct fconn {
	pg_conn id;
	int state;
	char *reason;
	buf sent;
	int authed;
	char *client_id, *username, *password, *proto;
	char **subs;
	size_t nsubs;
	uint32_t keepalive;
	timer *timers;
	size_t ntimers;
} fconn;

static fconn *conns;
static size_t nconns;
static uint64_t next_conn = 1;
static pg_timer next_timer = 1;

static fconn *find(pg_conn c) {
	for (size_t i = 0; i < nconns; i++)
		if (conns[i].id == c)
			return &conns[i];
	return NULL;
}

/* handle_of returns the handle of the n-th connection: a splitmix64 of a
 * counter, opaque like the gateway's, with high bits set so "%016x" is
 * tested. */
static pg_conn handle_of(uint64_t n) {
	uint64_t z = n * 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return z ? z : 1;
}

/* ---- failures and last_error ---- */

static char *last_err;

static void set_err(const char *msg) {
	free(last_err);
	last_err = xstrndup(msg ? msg : "", msg ? strlen(msg) : 0);
}

typedef struct inject {
	char op[32];
	int32_t status;
	char *msg;
	int armed;
} inject;

static inject injects[8];

void fh_fail_next(const char *op, int32_t status, const char *msg) {
	for (size_t i = 0; i < sizeof injects / sizeof injects[0]; i++) {
		if (!injects[i].armed) {
			snprintf(injects[i].op, sizeof injects[i].op, "%s", op);
			injects[i].status = status;
			injects[i].msg = msg ? xstrndup(msg, strlen(msg)) : NULL;
			injects[i].armed = 1;
			return;
		}
	}
	fprintf(stderr, "fakehost: too many fh_fail_next\n");
	abort();
}

/* injected returns 1 and sets *st if a failure of op was asked for. */
static int injected(const char *op, int32_t *st) {
	for (size_t i = 0; i < sizeof injects / sizeof injects[0]; i++) {
		if (injects[i].armed && strcmp(injects[i].op, op) == 0) {
			injects[i].armed = 0;
			set_err(injects[i].msg);
			free(injects[i].msg);
			*st = injects[i].status;
			return 1;
		}
	}
	return 0;
}

static int32_t failed(int32_t st, const char *msg) {
	set_err(msg);
	return st;
}

/* check runs the checks every call naming a connection gets. */
static int32_t check(const char *op, pg_conn c, fconn **out) {
	int32_t st;
	if (injected(op, &st))
		return st;
	fconn *f = find(c);
	if (!f || f->state == DEAD)
		return failed(PG_NOT_ALIVE, "fakehost: connection is not alive");
	*out = f;
	return PG_SUCCESS;
}

static void check_mem(const char *op, const void *p, uint32_t n) {
	if (n && !p) {
		fprintf(stderr, "fakehost: %s: NULL pointer with length %u: a fault of the instance\n", op, n);
		abort();
	}
}

static int32_t pubsub(fconn *f) {
	if (f->state != OPEN)
		return failed(PG_UNKNOWN, "fakehost: connection is closing");
	if (!f->authed)
		return failed(PG_UNKNOWN, "fakehost: not authenticated: call Authenticate first");
	return PG_SUCCESS;
}

/* valid_filter: MQTT rules ('#' only as the whole last level, '+' only as
 * a whole level); a topic has neither. */
static int valid_filter(const char *s, size_t n, int topic) {
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == 0)
			return 0;
		if (s[i] != '#' && s[i] != '+')
			continue;
		if (topic)
			return 0;
		if ((i > 0 && s[i - 1] != '/') || (i + 1 < n && s[i + 1] != '/'))
			return 0;
		if (s[i] == '#' && i + 1 != n)
			return 0;
	}
	return 1;
}

/* ---- imports ---- */

int32_t pg_host_send(uint64_t conn, const void *ptr, uint32_t len) {
	fconn *f;
	check_mem("send", ptr, len);
	int32_t st = check("send", conn, &f);
	if (st == PG_SUCCESS && f->state == OPEN)
		put(&f->sent, ptr, len);
	return st;
}

int32_t pg_host_close(uint64_t conn) {
	fconn *f;
	int32_t st = check("close", conn, &f);
	if (st == PG_SUCCESS && f->state == OPEN) {
		f->state = CLOSING;
		f->reason = xstrndup(FH_REASON_NORMAL, strlen(FH_REASON_NORMAL));
	}
	return st;
}

/* rd is a small protobuf reader for authenticate's request. */
typedef struct rd {
	const uint8_t *p, *end;
} rd;

static int rd_varint(rd *r, uint64_t *v) {
	*v = 0;
	for (int i = 0; i < 10 && r->p < r->end; i++) {
		uint8_t c = *r->p++;
		*v |= (uint64_t)(c & 0x7f) << (7 * i);
		if (c < 0x80)
			return 0;
	}
	return -1;
}

/* rd_field reads a varint or bytes field: 1, 0 at the end, -1 if bad. */
static int rd_field(rd *r, uint64_t *num, rd *v) {
	if (r->p == r->end)
		return 0;
	uint64_t tag, n;
	if (rd_varint(r, &tag) != 0)
		return -1;
	*num = tag >> 3;
	if ((tag & 7) == 0)
		return rd_varint(r, &n) == 0 ? (v->p = v->end = NULL, 1) : -1;
	if ((tag & 7) != 2 || rd_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p))
		return -1;
	v->p = r->p;
	v->end = r->p + n;
	r->p += n;
	return 1;
}

int32_t pg_host_authenticate(uint64_t conn, const void *ptr, uint32_t len) {
	fconn *f;
	check_mem("authenticate", ptr, len);
	int32_t st = check("authenticate", conn, &f);
	if (st != PG_SUCCESS)
		return st;
	rd r = {ptr, (const uint8_t *)ptr + len}, v, w;
	uint64_t num, num2;
	int got, has_ci = 0;
	char *ci[5] = {0}, *password = NULL;
	while ((got = rd_field(&r, &num, &v)) > 0) {
		if (num == 2 && v.p) {
			has_ci = 1;
			while ((got = rd_field(&v, &num2, &w)) > 0)
				if (num2 >= 1 && num2 <= 4 && w.p) {
					free(ci[num2]);
					ci[num2] = xstrndup(w.p, (size_t)(w.end - w.p));
				}
			if (got < 0)
				break;
		} else if (num == 3 && v.p) {
			free(password);
			password = xstrndup(v.p, (size_t)(v.end - v.p));
		}
	}
	if (got < 0)
		st = failed(PG_PARAMS_TYPE_ERROR, "fakehost: malformed AuthenticateRequest");
	else if (!has_ci)
		st = failed(PG_REQUIRED_PARAMS_MISSED, "fakehost: clientinfo is missing");
	else if (f->state != OPEN)
		st = failed(PG_PERMISSION_DENY, "fakehost: client socket disconnected");
	else if (f->authed)
		st = failed(PG_PERMISSION_DENY, "fakehost: duplicated authenticate command");
	if (st == PG_SUCCESS) {
		f->authed = 1;
		free(f->client_id);
		free(f->username);
		free(f->password);
		free(f->proto);
		f->client_id = ci[3] ? ci[3] : xstrndup("", 0);
		f->username = ci[4] ? ci[4] : xstrndup("", 0);
		f->password = password ? password : xstrndup("", 0);
		size_t n = (ci[1] ? strlen(ci[1]) : 0) + (ci[2] ? strlen(ci[2]) : 0) + 2;
		f->proto = xmalloc(n);
		snprintf(f->proto, n, "%s/%s", ci[1] ? ci[1] : "", ci[2] ? ci[2] : "");
		ci[3] = ci[4] = NULL;
		password = NULL;
	}
	for (int i = 0; i < 5; i++)
		free(ci[i]);
	free(password);
	return st;
}

int32_t pg_host_start_timer(uint64_t conn, int32_t type, uint32_t interval) {
	fconn *f;
	int32_t st = check("start_timer", conn, &f);
	if (st != PG_SUCCESS)
		return st;
	if (type != PG_KEEPALIVE)
		return failed(PG_PARAMS_TYPE_ERROR, "fakehost: unknown timer type");
	if (interval == 0)
		return failed(PG_PARAMS_TYPE_ERROR, "fakehost: keepalive interval must be > 0");
	f->keepalive = interval;
	return PG_SUCCESS;
}

static fh_publish *pubs;
static size_t npubs;

static int32_t record_publish(pg_conn from, const void *topic, uint32_t topic_len, uint32_t qos, const void *ptr,
                              uint32_t len) {
	if (!topic_len)
		return failed(PG_REQUIRED_PARAMS_MISSED, "fakehost: topic is empty");
	if (qos > 2)
		return failed(PG_PARAMS_TYPE_ERROR, "fakehost: qos is not 0, 1 or 2");
	if (!valid_filter(topic, topic_len, 1) || ((const char *)topic)[0] == '$')
		return failed(PG_PARAMS_TYPE_ERROR, "fakehost: invalid topic");
	pubs = xrealloc(pubs, (npubs + 1) * sizeof *pubs);
	fh_publish *p = &pubs[npubs++];
	p->from = from;
	p->topic = xstrndup(topic, topic_len);
	p->payload = (uint8_t *)xstrndup(ptr, len);
	p->payload_len = len;
	p->qos = (uint8_t)qos;
	return PG_SUCCESS;
}

int32_t pg_host_publish(uint64_t conn, const void *topic, uint32_t topic_len, uint32_t qos, const void *ptr,
                        uint32_t len) {
	fconn *f;
	check_mem("publish", topic, topic_len);
	check_mem("publish", ptr, len);
	int32_t st = check("publish", conn, &f);
	if (st == PG_SUCCESS)
		st = pubsub(f);
	if (st == PG_SUCCESS)
		st = record_publish(conn, topic, topic_len, qos, ptr, len);
	return st;
}

int32_t pg_host_raw_publish(const void *topic, uint32_t topic_len, uint32_t qos, const void *ptr, uint32_t len) {
	int32_t st;
	check_mem("raw_publish", topic, topic_len);
	check_mem("raw_publish", ptr, len);
	if (injected("raw_publish", &st))
		return st;
	return record_publish(0, topic, topic_len, qos, ptr, len);
}

int32_t pg_host_subscribe(uint64_t conn, const void *topic, uint32_t topic_len, uint32_t qos) {
	fconn *f;
	check_mem("subscribe", topic, topic_len);
	int32_t st = check("subscribe", conn, &f);
	if (st == PG_SUCCESS)
		st = pubsub(f);
	if (st != PG_SUCCESS)
		return st;
	if (!topic_len)
		return failed(PG_REQUIRED_PARAMS_MISSED, "fakehost: topic is empty");
	if (qos > 2)
		return failed(PG_PARAMS_TYPE_ERROR, "fakehost: qos is not 0, 1 or 2");
	if (!valid_filter(topic, topic_len, 0))
		return failed(PG_PARAMS_TYPE_ERROR, "fakehost: invalid topic filter");
	char *s = xstrndup(topic, topic_len);
	if (fh_subscribed(conn, s)) {
		free(s); /* a QoS update */
		return PG_SUCCESS;
	}
	f->subs = xrealloc(f->subs, (f->nsubs + 1) * sizeof *f->subs);
	f->subs[f->nsubs++] = s;
	return PG_SUCCESS;
}

int32_t pg_host_unsubscribe(uint64_t conn, const void *topic, uint32_t topic_len) {
	fconn *f;
	check_mem("unsubscribe", topic, topic_len);
	int32_t st = check("unsubscribe", conn, &f);
	if (st == PG_SUCCESS)
		st = pubsub(f);
	if (st != PG_SUCCESS)
		return st;
	if (!topic_len)
		return failed(PG_REQUIRED_PARAMS_MISSED, "fakehost: topic is empty");
	if (!valid_filter(topic, topic_len, 0))
		return failed(PG_PARAMS_TYPE_ERROR, "fakehost: invalid topic filter");
	for (size_t i = 0; i < f->nsubs; i++) {
		if (strlen(f->subs[i]) == topic_len && memcmp(f->subs[i], topic, topic_len) == 0) {
			free(f->subs[i]);
			f->subs[i] = f->subs[--f->nsubs];
			break;
		}
	}
	return PG_SUCCESS;
}

static int64_t timer_answer;
static int timer_answer_set;

void fh_set_timer_answer(int64_t id) {
	timer_answer = id;
	timer_answer_set = 1;
}

int64_t pg_host_set_timer(uint64_t conn, uint32_t delay_ms) {
	fconn *f;
	if (timer_answer_set) {
		timer_answer_set = 0;
		return timer_answer;
	}
	int32_t st = check("set_timer", conn, &f);
	if (st != PG_SUCCESS)
		return -(int64_t)st;
	if (delay_ms < 1 || delay_ms > 24u * 60 * 60 * 1000)
		return -(int64_t)failed(PG_PARAMS_TYPE_ERROR, "fakehost: timer delay out of range");
	f->timers = xrealloc(f->timers, (f->ntimers + 1) * sizeof *f->timers);
	f->timers[f->ntimers].id = next_timer++;
	f->timers[f->ntimers].delay = delay_ms;
	return f->timers[f->ntimers++].id;
}

int32_t pg_host_cancel_timer(uint64_t conn, int64_t t) {
	fconn *f;
	int32_t st = check("cancel_timer", conn, &f);
	if (st != PG_SUCCESS)
		return st;
	for (size_t i = 0; i < f->ntimers; i++)
		if (f->timers[i].id == t)
			f->timers[i] = f->timers[--f->ntimers];
	return PG_SUCCESS;
}

static buf last_log;
static int32_t last_log_level;
static size_t nlogs;

void pg_host_log(int32_t level, const void *ptr, uint32_t len) {
	check_mem("log", ptr, len);
	if (len > PG_MAX_LOG_LINE)
		len = PG_MAX_LOG_LINE;
	last_log.len = 0;
	put(&last_log, ptr, len);
	last_log_level = level;
	nlogs++;
	if (getenv("FAKEHOST_LOG"))
		fprintf(stderr, "log %d: %.*s\n", level, (int)len, (const char *)ptr);
}

uint32_t pg_host_last_error(void *ptr, uint32_t cap) {
	check_mem("last_error", ptr, cap);
	size_t n = last_err ? strlen(last_err) : 0;
	memcpy(ptr, last_err ? last_err : "", n < cap ? n : cap);
	return (uint32_t)n;
}

/* ---- driving the exports ---- */

static uint8_t *inbox;
static uint32_t inbox_cap;
static size_t inbox_calls;
static int32_t last_status;

size_t fh_inbox_calls(void) { return inbox_calls; }
int32_t fh_status(void) { return last_status; }

static void fill_inbox(const void *b, size_t n) {
	if (n > UINT32_MAX) {
		fprintf(stderr, "fakehost: payload too large\n");
		abort();
	}
	if (!inbox || n > inbox_cap) {
		inbox_calls++;
		inbox = protogate_inbox((uint32_t)n);
		if (!inbox) {
			fprintf(stderr, "fakehost: protogate_inbox(%zu) returned NULL: a fault of the instance\n", n);
			abort();
		}
		inbox_cap = (uint32_t)n;
	}
	if (n)
		memcpy(inbox, b, n);
}

/* poison overwrites what the last callback got, so a handler that keeps it
 * sees garbage. */
static void poison(size_t n) {
	if (inbox)
		memset(inbox, 0xA5, n);
}

static void hex16(char out[17], pg_conn c) {
	snprintf(out, 17, "%016llx", (unsigned long long)c);
}

static int32_t closed_callback(fconn *f);

/* after handles a callback's status: a failure closes the connection, as
 * does a pg_close during the callback; on_socket_closed follows. */
static int32_t after(fconn *f, const char *callback, int32_t st) {
	if (st < PG_SUCCESS || st > PG_PERMISSION_DENY) {
		fprintf(stderr, "fakehost: %s returned status %d, which ABI v1 does not define: a fault of the instance\n",
		        callback, st);
		fh_failures++;
	}
	if (f && f->state == OPEN && st != PG_SUCCESS) {
		char r[128];
		snprintf(r, sizeof r, "{shutdown,{callback_failed,%s,%s}}", callback, pg_status_name(st));
		f->state = CLOSING;
		f->reason = xstrndup(r, strlen(r));
	}
	if (f && f->state == CLOSING)
		closed_callback(f);
	return st;
}

static int32_t closed_callback(fconn *f) {
	char h[17];
	buf b = {0};
	f->state = DEAD;
	f->ntimers = 0;
	hex16(h, f->id);
	put_str(&b, 1, h);
	put_str(&b, 2, f->reason);
	fill_inbox(b.p, b.len);
	int32_t st = protogate_on_socket_closed(f->id, (uint32_t)b.len);
	poison(b.len);
	free(b.p);
	if (st < PG_SUCCESS || st > PG_PERMISSION_DENY) {
		fprintf(stderr, "fakehost: on_socket_closed returned status %d: a fault of the instance\n", st);
		fh_failures++;
	}
	return st;
}

int32_t fh_init(void) { return protogate_init(); }

pg_conn fh_connect(void) {
	fh_info info = {.sock_type = PG_TCP, .peer_host = "192.0.2.1", .peer_port = 40000, .local_host = "127.0.0.1",
	                .local_port = 7993};
	return fh_connect_info(&info);
}

pg_conn fh_connect_info(const fh_info *info) {
	conns = xrealloc(conns, (nconns + 1) * sizeof *conns);
	fconn *f = &conns[nconns++];
	memset(f, 0, sizeof *f);
	f->id = handle_of(next_conn++);
	f->state = OPEN;
	f->client_id = xstrndup("", 0);
	char h[17];
	hex16(h, f->id);
	buf b = {0}, ci = {0}, sub = {0};
	put_str(&b, 1, h);
	put_uint(&ci, 1, (uint32_t)info->sock_type);
	put_str(&sub, 1, info->peer_host);
	put_uint(&sub, 2, info->peer_port);
	put_sub(&ci, 2, &sub);
	put_str(&sub, 1, info->local_host);
	put_uint(&sub, 2, info->local_port);
	put_sub(&ci, 3, &sub);
	if (info->cert_cn || info->cert_dn) {
		put_str(&sub, 1, info->cert_cn);
		put_str(&sub, 2, info->cert_dn);
		put_sub(&ci, 4, &sub);
	}
	put_sub(&b, 2, &ci);
	fill_inbox(b.p, b.len);
	pg_conn id = f->id;
	int32_t st = protogate_on_socket_created(id, (uint32_t)b.len);
	poison(b.len);
	free(b.p);
	free(ci.p);
	free(sub.p);
	last_status = after(find(id), "on_socket_created", st);
	return id;
}

/* alive returns the connection for a callback, or NULL (and complains) if
 * the gateway would not make one. */
static fconn *alive(pg_conn c, const char *what) {
	fconn *f = find(c);
	if (!f || f->state != OPEN) {
		fprintf(stderr, "fakehost: %s on a connection that is not open\n", what);
		fh_failures++;
		return NULL;
	}
	return f;
}

int32_t fh_receive(pg_conn c, const void *b, size_t n) {
	if (!alive(c, "fh_receive"))
		return PG_NOT_ALIVE;
	fill_inbox(b, n);
	int32_t st = protogate_on_received_bytes(c, (uint32_t)n);
	poison(n);
	return after(find(c), "on_received_bytes", st);
}

int32_t fh_receive_str(pg_conn c, const char *s) { return fh_receive(c, s, strlen(s)); }

int32_t fh_deliver(pg_conn c, const fh_msg *msgs, size_t n) {
	if (!alive(c, "fh_deliver"))
		return PG_NOT_ALIVE;
	char h[17];
	hex16(h, c);
	buf b = {0}, m = {0};
	put_str(&b, 1, h);
	for (size_t i = 0; i < n; i++) {
		put_str(&m, 1, msgs[i].node ? msgs[i].node : "fakehost@127.0.0.1");
		put_str(&m, 2, msgs[i].id ? msgs[i].id : "0001");
		put_uint(&m, 3, msgs[i].qos);
		put_str(&m, 4, msgs[i].from);
		put_str(&m, 5, msgs[i].topic);
		put_bytes(&m, 6, msgs[i].payload, msgs[i].payload_len);
		put_uint(&m, 7, msgs[i].timestamp);
		put_sub(&b, 2, &m);
	}
	fill_inbox(b.p, b.len);
	int32_t st = protogate_on_received_messages(c, (uint32_t)b.len);
	poison(b.len);
	free(b.p);
	free(m.p);
	return after(find(c), "on_received_messages", st);
}

int32_t fh_timeout(pg_conn c) {
	fconn *f = alive(c, "fh_timeout");
	if (!f)
		return PG_NOT_ALIVE;
	int32_t st = protogate_on_timer_timeout(c, PG_KEEPALIVE);
	f = find(c);
	if (f->state == OPEN) {
		f->state = CLOSING;
		f->reason = xstrndup(FH_REASON_KEEPALIVE, strlen(FH_REASON_KEEPALIVE));
	}
	return after(f, "on_timer_timeout", st);
}

int32_t fh_fire(pg_conn c, pg_timer t) {
	fconn *f = alive(c, "fh_fire");
	if (!f)
		return PG_NOT_ALIVE;
	for (size_t i = 0; i < f->ntimers; i++)
		if (f->timers[i].id == t)
			f->timers[i] = f->timers[--f->ntimers];
	int32_t st = protogate_on_timer(c, t);
	return after(find(c), "on_timer", st);
}

int32_t fh_disconnect(pg_conn c, const char *reason) {
	fconn *f = find(c);
	if (!f || f->state == DEAD) {
		fprintf(stderr, "fakehost: fh_disconnect on a closed connection\n");
		fh_failures++;
		return PG_NOT_ALIVE;
	}
	if (f->state == OPEN) { /* else the reason of the pg_close stands */
		if (!reason)
			reason = FH_REASON_TCP_CLOSED;
		f->reason = xstrndup(reason, strlen(reason));
	}
	return closed_callback(f);
}

int32_t fh_raw(const char *name, pg_conn c, const void *b, size_t n) {
	fill_inbox(b, n);
	int32_t st;
	if (strcmp(name, "on_received_bytes") == 0)
		st = protogate_on_received_bytes(c, (uint32_t)n);
	else if (strcmp(name, "on_socket_created") == 0)
		st = protogate_on_socket_created(c, (uint32_t)n);
	else if (strcmp(name, "on_received_messages") == 0)
		st = protogate_on_received_messages(c, (uint32_t)n);
	else if (strcmp(name, "on_socket_closed") == 0)
		st = protogate_on_socket_closed(c, (uint32_t)n);
	else {
		fprintf(stderr, "fakehost: fh_raw: unknown export %s\n", name);
		abort();
	}
	poison(n);
	return st;
}

/* ---- observing ---- */

const char *fh_sent(pg_conn c, size_t *len) {
	static buf taken;
	fconn *f = find(c);
	taken.len = 0;
	put(&taken, "", 0);
	if (f) {
		put(&taken, f->sent.p, f->sent.len);
		f->sent.len = 0;
	}
	if (len)
		*len = taken.len;
	return (const char *)taken.p;
}

int fh_alive(pg_conn c) {
	fconn *f = find(c);
	return f && f->state == OPEN;
}

const char *fh_close_reason(pg_conn c) {
	fconn *f = find(c);
	return f && f->state != OPEN ? f->reason : NULL;
}

int fh_authenticated(pg_conn c) {
	fconn *f = find(c);
	return f && f->authed;
}

const char *fh_client_id(pg_conn c) {
	fconn *f = find(c);
	return f && f->authed ? f->client_id : "";
}

const char *fh_username(pg_conn c) {
	fconn *f = find(c);
	return f && f->authed ? f->username : "";
}

const char *fh_password(pg_conn c) {
	fconn *f = find(c);
	return f && f->authed ? f->password : "";
}

const char *fh_proto(pg_conn c) {
	fconn *f = find(c);
	return f && f->authed ? f->proto : "";
}

int fh_subscribed(pg_conn c, const char *filter) {
	fconn *f = find(c);
	for (size_t i = 0; f && i < f->nsubs; i++)
		if (strcmp(f->subs[i], filter) == 0)
			return 1;
	return 0;
}

uint32_t fh_keepalive(pg_conn c) {
	fconn *f = find(c);
	return f ? f->keepalive : 0;
}

int fh_timer_armed(pg_conn c, pg_timer t) {
	fconn *f = find(c);
	for (size_t i = 0; f && i < f->ntimers; i++)
		if (f->timers[i].id == t)
			return 1;
	return 0;
}

uint32_t fh_timer_delay(pg_conn c, pg_timer t) {
	fconn *f = find(c);
	for (size_t i = 0; f && i < f->ntimers; i++)
		if (f->timers[i].id == t)
			return f->timers[i].delay;
	return 0;
}

const fh_publish *fh_published(size_t i) { return i < npubs ? &pubs[i] : NULL; }
size_t fh_publish_count(void) { return npubs; }

const char *fh_last_log(int32_t *level) {
	if (level)
		*level = last_log_level;
	return last_log.p ? (const char *)last_log.p : "";
}

size_t fh_log_count(void) { return nlogs; }

int fh_done(const char *name) {
	if (fh_failures) {
		fprintf(stderr, "FAIL %s: %d check(s) failed\n", name, fh_failures);
		return 1;
	}
	printf("ok %s\n", name);
	return 0;
}
