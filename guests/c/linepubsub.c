/*
 * linepubsub.c: the C build of guests/linepubsub, the same line protocol
 * with the same replies, byte for byte. Each connection is authenticated as
 * it opens, with client id "line-" and the 16 hex digits of its handle, and
 * then accepts one command per line:
 *
 *     SUB <filter>             subscribe to an MQTT topic filter (QoS 0)
 *     UNSUB <filter>           unsubscribe
 *     PUB <topic> <payload...> publish the rest of the line (QoS 0)
 *     PING                     answered with PONG
 *
 * Every command is answered with OK, ERR <message> (the gateway's message
 * when a call fails) or, for PING, PONG. Messages of the connection's
 * subscriptions are written as MSG <topic> <payload>. Lines end with "\n";
 * a "\r" before it is ignored, command names are not case-sensitive, and
 * empty lines are ignored. A line longer than 64 KiB is answered with
 * ERR line too long, and the connection is closed.
 *
 * Build (make sdk-guests-c):
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -I sdk/c \
 *         -o linepubsub-c.wasm guests/c/linepubsub.c sdk/c/protogate.c
 */
#include "protogate.h"

#include <stdlib.h>
#include <string.h>

/* MAX_LINE is the longest line accepted, in bytes before its "\n" (a "\r"
 * counts). */
#define MAX_LINE (64 << 10)

/* conn is the state of one connection. partial holds the start of a line
 * whose "\n" has not arrived: at most MAX_LINE bytes. */
typedef struct conn {
	pg_conn id; /* 0: a free slot */
	uint8_t *partial;
	size_t len, cap;
	int closed; /* pg_close was called: ignore the rest */
} conn;

/*
 * The connections: an open-addressing table with linear probing, keyed by
 * handle (never 0, so 0 marks a free slot). Its size is a power of two, at
 * most half full. Handles are a keyed permutation, so their bits are
 * already spread; the multiply only mixes them into the low bits.
 */
static conn *table;
static size_t table_size; /* 0 or a power of two */
static size_t table_used;

static size_t slot_of(pg_conn id) { return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (table_size - 1); }

static conn *lookup(pg_conn id) {
	if (!table_size)
		return NULL;
	for (size_t i = slot_of(id);; i = (i + 1) & (table_size - 1)) {
		if (table[i].id == id)
			return &table[i];
		if (table[i].id == 0)
			return NULL;
	}
}

/* insert adds a connection, growing the table; NULL if memory ran out. */
static conn *insert(pg_conn id) {
	if ((table_used + 1) * 2 > table_size) {
		size_t n = table_size ? table_size * 2 : 16;
		if (n > SIZE_MAX / 2 / sizeof(conn))
			return NULL;
		conn *t = calloc(n, sizeof(conn));
		if (!t)
			return NULL;
		conn *old = table;
		size_t old_size = table_size;
		table = t;
		table_size = n;
		for (size_t i = 0; i < old_size; i++) {
			if (old[i].id) {
				size_t j = slot_of(old[i].id);
				while (table[j].id)
					j = (j + 1) & (n - 1);
				table[j] = old[i];
			}
		}
		free(old);
	}
	size_t i = slot_of(id);
	while (table[i].id)
		i = (i + 1) & (table_size - 1);
	memset(&table[i], 0, sizeof table[i]);
	table[i].id = id;
	table_used++;
	return &table[i];
}

/* forget frees a connection and closes the gap it leaves (backward-shift
 * deletion), so lookups need no tombstones. */
static void forget(conn *st) {
	free(st->partial);
	size_t i = (size_t)(st - table);
	table[i].id = 0;
	table_used--;
	for (size_t j = (i + 1) & (table_size - 1); table[j].id; j = (j + 1) & (table_size - 1)) {
		size_t home = slot_of(table[j].id);
		/* Move j into the hole at i unless its home lies in (i, j]. */
		if (((j - home) & (table_size - 1)) >= ((j - i) & (table_size - 1))) {
			table[i] = table[j];
			table[j].id = 0;
			i = j;
		}
	}
}

/* out is the reply buffer, reused for every reply. */
static uint8_t *out;
static size_t out_cap;

/* reserve makes room for n bytes in out; 0 on success. */
static int reserve(size_t n) {
	if (n <= out_cap)
		return 0;
	size_t c = out_cap ? out_cap : 256;
	while (c < n) {
		if (c > SIZE_MAX / 2)
			return -1;
		c *= 2;
	}
	uint8_t *b = realloc(out, c);
	if (!b)
		return -1;
	out = b;
	out_cap = c;
	return 0;
}

static const char oom[] = "linepubsub: out of memory";

/* reply sends a, b and a newline. */
static pg_status reply(pg_conn c, pg_str a, pg_str b) {
	if (a.len > SIZE_MAX - 1 - b.len || reserve(a.len + b.len + 1) != 0) {
		pg_log(PG_LOG_ERROR, oom, sizeof oom - 1);
		return PG_UNKNOWN;
	}
	memcpy(out, a.ptr, a.len);
	memcpy(out + a.len, b.ptr, b.len);
	out[a.len + b.len] = '\n';
	return pg_send(c, out, a.len + b.len + 1);
}

/* message is the text of the failed call for the device: the host's
 * message, or the status name if it gave none. */
static pg_str message(pg_status st) {
	size_t n;
	const char *m = pg_error_message(&n);
	if (n == 0)
		return pg_cstr(pg_status_name(st));
	pg_str s = {m, n};
	return s;
}

/* on_socket_created authenticates the connection; if that fails, it tells
 * the device why and closes. */
static pg_status on_socket_created(pg_conn c, const pg_conn_info *info) {
	(void)info;
	conn *st = insert(c);
	if (!st) {
		pg_log(PG_LOG_ERROR, oom, sizeof oom - 1);
		return PG_UNKNOWN;
	}
	/* "line-" and 16 lowercase hex digits, as Go's %016x. */
	char id[5 + 16];
	memcpy(id, "line-", 5);
	for (int i = 0; i < 16; i++)
		id[5 + i] = "0123456789abcdef"[(c >> (60 - 4 * i)) & 0xf];
	pg_client_info ci = {.proto_name = PG_STR("line"), .proto_ver = PG_STR("1"), .client_id = {id, sizeof id}};
	pg_status err = pg_authenticate(c, &ci, PG_STR(""));
	if (err != PG_SUCCESS) {
		reply(c, PG_STR("ERR authentication failed: "), message(err));
		st->closed = 1;
		return pg_close(c);
	}
	return PG_SUCCESS;
}

/* on_socket_closed forgets the connection. */
static pg_status on_socket_closed(pg_conn c, pg_str reason) {
	(void)reason;
	conn *st = lookup(c);
	if (st)
		forget(st);
	return PG_SUCCESS;
}

static pg_status too_long(pg_conn c, conn *st) {
	st->closed = 1;
	free(st->partial);
	st->partial = NULL;
	st->len = st->cap = 0;
	reply(c, PG_STR("ERR line too long"), PG_STR(""));
	return pg_close(c);
}

/* is_cmd reports whether cmd is name, ignoring ASCII case. */
static int is_cmd(pg_str cmd, const char *name) {
	size_t n = strlen(name);
	if (cmd.len != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char a = cmd.ptr[i];
		if (a >= 'a' && a <= 'z')
			a = (char)(a - 'a' + 'A');
		if (a != name[i])
			return 0;
	}
	return 1;
}

/* cut splits s at the first space: before it in *head, after it in *tail
 * (empty if there is none). */
static void cut(pg_str s, pg_str *head, pg_str *tail) {
	const char *sp = s.len ? memchr(s.ptr, ' ', s.len) : NULL;
	if (!sp) {
		*head = s;
		tail->ptr = s.ptr + s.len;
		tail->len = 0;
		return;
	}
	head->ptr = s.ptr;
	head->len = (size_t)(sp - s.ptr);
	tail->ptr = sp + 1;
	tail->len = s.len - head->len - 1;
}

/* run runs one command line. */
static pg_status run(pg_conn c, pg_str line) {
	if (line.len && line.ptr[line.len - 1] == '\r')
		line.len--;
	if (!line.len)
		return PG_SUCCESS;
	pg_str cmd, arg, topic, payload;
	pg_status err;
	cut(line, &cmd, &arg);
	if (is_cmd(cmd, "PING"))
		return reply(c, PG_STR("PONG"), PG_STR(""));
	else if (is_cmd(cmd, "SUB"))
		err = pg_subscribe(c, arg, 0);
	else if (is_cmd(cmd, "UNSUB"))
		err = pg_unsubscribe(c, arg);
	else if (is_cmd(cmd, "PUB")) {
		cut(arg, &topic, &payload);
		err = pg_publish(c, topic, 0, payload.ptr, payload.len);
	} else
		return reply(c, PG_STR("ERR unknown command"), PG_STR(""));
	if (err != PG_SUCCESS)
		return reply(c, PG_STR("ERR "), message(err));
	return reply(c, PG_STR("OK"), PG_STR(""));
}

/* append adds n bytes to the partial line; the callers keep st->len + n
 * within MAX_LINE. */
static int append(conn *st, const uint8_t *b, size_t n) {
	if (st->len + n > st->cap) {
		size_t c = st->cap ? st->cap : 256;
		while (c < st->len + n)
			c *= 2;
		uint8_t *p = realloc(st->partial, c);
		if (!p)
			return -1;
		st->partial = p;
		st->cap = c;
	}
	memcpy(st->partial + st->len, b, n);
	st->len += n;
	return 0;
}

/* on_received_bytes runs every complete line of buf, keeping an unfinished
 * one for the next call. Lines that arrive whole run straight from the
 * inbox, without copying. */
static pg_status on_received_bytes(pg_conn c, const uint8_t *buf, size_t len) {
	conn *st = lookup(c);
	if (!st || st->closed)
		return PG_SUCCESS;
	while (len > 0) {
		const uint8_t *nl = memchr(buf, '\n', len);
		if (!nl) {
			if (len > MAX_LINE - st->len)
				return too_long(c, st);
			if (append(st, buf, len) != 0) {
				pg_log(PG_LOG_ERROR, oom, sizeof oom - 1);
				return PG_UNKNOWN;
			}
			return PG_SUCCESS;
		}
		pg_str line = {(const char *)buf, (size_t)(nl - buf)};
		len -= line.len + 1;
		buf = nl + 1;
		if (line.len > MAX_LINE - st->len)
			return too_long(c, st);
		if (st->len > 0) {
			if (append(st, (const uint8_t *)line.ptr, line.len) != 0) {
				pg_log(PG_LOG_ERROR, oom, sizeof oom - 1);
				return PG_UNKNOWN;
			}
			line.ptr = (const char *)st->partial;
			line.len = st->len;
		}
		pg_status err = run(c, line);
		st->len = 0;
		if (err != PG_SUCCESS || st->closed)
			return err;
	}
	return PG_SUCCESS;
}

/* on_received_messages writes one MSG line per message, all in one send. */
static pg_status on_received_messages(pg_conn c, const pg_message *msgs, size_t n) {
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		size_t m = msgs[i].topic.len + msgs[i].payload_len; /* both in the inbox: no wrap */
		if (m > SIZE_MAX - 6 - total) {
			pg_log(PG_LOG_ERROR, oom, sizeof oom - 1);
			return PG_UNKNOWN;
		}
		total += m + 6; /* "MSG ", " ", "\n" */
	}
	if (total == 0)
		return PG_SUCCESS;
	if (reserve(total) != 0) {
		pg_log(PG_LOG_ERROR, oom, sizeof oom - 1);
		return PG_UNKNOWN;
	}
	uint8_t *p = out;
	for (size_t i = 0; i < n; i++) {
		memcpy(p, "MSG ", 4);
		p += 4;
		memcpy(p, msgs[i].topic.ptr, msgs[i].topic.len);
		p += msgs[i].topic.len;
		*p++ = ' ';
		memcpy(p, msgs[i].payload, msgs[i].payload_len);
		p += msgs[i].payload_len;
		*p++ = '\n';
	}
	return pg_send(c, out, total);
}

static const pg_handler linepubsub = {
    .on_socket_created = on_socket_created,
    .on_received_bytes = on_received_bytes,
    .on_received_messages = on_received_messages,
    .on_socket_closed = on_socket_closed,
};
PG_REGISTER(linepubsub);
