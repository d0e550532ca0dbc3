/*
 * sdk_test.c: native tests of the C SDK (protogate.c) against the fake host:
 * decoding of every callback's payload, the inbox, statuses and last_error,
 * timers, authenticate's encoding, and the bounds on what the host passes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakehost.h"
#include "protogate.h"
#include "protogate_abi.h"

/* What the test handler saw. */
static struct {
	int inits;
	pg_status init_status;
	pg_conn_info info;
	char peer[64], local[64], cn[64], dn[64];
	uint8_t *bytes;
	size_t nbytes;
	size_t calls, msgs;
	size_t batches[8];
	char topics[200][32];
	pg_message first;
	char first_payload[64], first_from[64], first_node[64], first_id[64];
	char reason[64];
	pg_timer fired;
	int32_t timeout_type;
	pg_status bytes_status; /* what on_received_bytes returns */
} seen;

static void copy(char *dst, size_t cap, pg_str s) { snprintf(dst, cap, "%.*s", (int)s.len, s.ptr); }

/* While lo is set, every view a callback gets must lie in [lo, hi) or be a
 * constant empty string: test_random_inputs sets it to the payload. */
static const char *lo, *hi;
static int out_of_bounds;

static void within(const void *p, size_t n) {
	const char *c = p;
	if (lo && n > 0 && (c < lo || c > hi || n > (size_t)(hi - c)))
		out_of_bounds++;
}

static pg_status t_init(void) {
	seen.inits++;
	return seen.init_status;
}

static pg_status t_created(pg_conn c, const pg_conn_info *info) {
	(void)c;
	within(info->peer.host.ptr, info->peer.host.len);
	within(info->local.host.ptr, info->local.host.len);
	within(info->cert_cn.ptr, info->cert_cn.len);
	within(info->cert_dn.ptr, info->cert_dn.len);
	seen.info = *info;
	copy(seen.peer, sizeof seen.peer, info->peer.host);
	copy(seen.local, sizeof seen.local, info->local.host);
	copy(seen.cn, sizeof seen.cn, info->cert_cn);
	copy(seen.dn, sizeof seen.dn, info->cert_dn);
	return PG_SUCCESS;
}

static pg_status t_bytes(pg_conn c, const uint8_t *b, size_t n) {
	(void)c;
	free(seen.bytes);
	seen.bytes = malloc(n ? n : 1);
	memcpy(seen.bytes, b, n);
	seen.nbytes = n;
	return seen.bytes_status;
}

static pg_status t_msgs(pg_conn c, const pg_message *m, size_t n) {
	(void)c;
	if (seen.calls < 8)
		seen.batches[seen.calls] = n;
	seen.calls++;
	for (size_t i = 0; i < n; i++) {
		within(m[i].node.ptr, m[i].node.len);
		within(m[i].id.ptr, m[i].id.len);
		within(m[i].from.ptr, m[i].from.len);
		within(m[i].topic.ptr, m[i].topic.len);
		within(m[i].payload, m[i].payload_len);
	}
	for (size_t i = 0; i < n; i++, seen.msgs++) {
		if (seen.msgs < 200)
			copy(seen.topics[seen.msgs], sizeof seen.topics[0], m[i].topic);
		if (seen.msgs == 0) {
			seen.first = m[i];
			snprintf(seen.first_payload, sizeof seen.first_payload, "%.*s", (int)m[i].payload_len,
			         (const char *)m[i].payload);
			copy(seen.first_from, sizeof seen.first_from, m[i].from);
			copy(seen.first_node, sizeof seen.first_node, m[i].node);
			copy(seen.first_id, sizeof seen.first_id, m[i].id);
		}
	}
	return PG_SUCCESS;
}

static pg_status t_closed(pg_conn c, pg_str reason) {
	(void)c;
	within(reason.ptr, reason.len);
	copy(seen.reason, sizeof seen.reason, reason);
	return PG_SUCCESS;
}

static pg_status t_timer(pg_conn c, pg_timer t) {
	(void)c;
	seen.fired = t;
	return PG_SUCCESS;
}

static pg_status t_timeout(pg_conn c, int32_t type) {
	(void)c;
	seen.timeout_type = type;
	return PG_SUCCESS;
}

static const pg_handler full = {
    .init = t_init,
    .on_socket_created = t_created,
    .on_received_bytes = t_bytes,
    .on_timer_timeout = t_timeout,
    .on_received_messages = t_msgs,
    .on_socket_closed = t_closed,
    .on_timer = t_timer,
};
static const pg_handler empty = {0};

static void test_no_handler(void) {
	/* Before registration every callback fails with UNKNOWN and logs. */
	CHECK(protogate_init() == PG_UNKNOWN);
	CHECK(strstr(fh_last_log(NULL), "no handler registered") != NULL);
	CHECK(protogate_on_timer(1, 1) == PG_UNKNOWN);
}

static void test_init(void) {
	pg_register(&full);
	CHECK(fh_init() == PG_SUCCESS && seen.inits == 1);
	seen.init_status = PG_PERMISSION_DENY;
	CHECK(fh_init() == PG_PERMISSION_DENY);
	seen.init_status = 42; /* not a status: becomes UNKNOWN, logged */
	CHECK(fh_init() == PG_UNKNOWN);
	CHECK(strstr(fh_last_log(NULL), "init returned a status ABI v1 does not define") != NULL);
	seen.init_status = PG_SUCCESS;
	pg_register(&empty);
	CHECK(fh_init() == PG_SUCCESS);
}

static void test_conn_info(void) {
	pg_register(&full);
	fh_info info = {.sock_type = PG_DTLS, .peer_host = "2001:db8::1", .peer_port = 65535, .local_host = "::",
	                .local_port = 5684, .cert_cn = "dev-1", .cert_dn = "CN=dev-1,O=x"};
	pg_conn c = fh_connect_info(&info);
	CHECK(fh_status() == PG_SUCCESS);
	CHECK(seen.info.sock_type == PG_DTLS);
	CHECK_STR(seen.peer, "2001:db8::1");
	CHECK(seen.info.peer.port == 65535);
	CHECK_STR(seen.local, "::");
	CHECK(seen.info.local.port == 5684);
	CHECK(seen.info.has_peer_cert);
	CHECK_STR(seen.cn, "dev-1");
	CHECK_STR(seen.dn, "CN=dev-1,O=x");
	fh_disconnect(c, NULL);
	CHECK_STR(seen.reason, FH_REASON_TCP_CLOSED);

	c = fh_connect();
	CHECK(seen.info.sock_type == PG_TCP && !seen.info.has_peer_cert);
	CHECK(seen.info.cert_cn.len == 0 && seen.info.cert_cn.ptr != NULL);
	fh_disconnect(c, "{shutdown,ssl_closed}");
	CHECK_STR(seen.reason, "{shutdown,ssl_closed}");
}

static void test_bytes_and_inbox(void) {
	pg_register(&full);
	pg_conn c = fh_connect();
	CHECK(fh_receive_str(c, "hello") == PG_SUCCESS);
	CHECK(seen.nbytes == 5 && memcmp(seen.bytes, "hello", 5) == 0);
	CHECK(fh_receive(c, "", 0) == PG_SUCCESS && seen.nbytes == 0);
	/* A megabyte grows the inbox once; smaller payloads reuse it. */
	size_t big = 1 << 20;
	uint8_t *b = malloc(big);
	for (size_t i = 0; i < big; i++)
		b[i] = (uint8_t)(i * 7);
	size_t calls = fh_inbox_calls();
	CHECK(fh_receive(c, b, big) == PG_SUCCESS);
	CHECK(seen.nbytes == big && memcmp(seen.bytes, b, big) == 0);
	CHECK(fh_inbox_calls() == calls + 1);
	CHECK(fh_receive(c, b, 1000) == PG_SUCCESS && fh_receive(c, b, big) == PG_SUCCESS);
	CHECK(fh_inbox_calls() == calls + 1);
	free(b);
	/* A host that claims more bytes than it asked room for is refused. */
	void *p = protogate_inbox(16);
	CHECK(p != NULL);
	CHECK(protogate_on_received_bytes(c, (uint32_t)big * 4) == PG_PARAMS_TYPE_ERROR);
	CHECK(protogate_on_received_bytes(c, UINT32_MAX) == PG_PARAMS_TYPE_ERROR);
	CHECK(strstr(fh_last_log(NULL), "larger than the inbox") != NULL);
	/* A failed callback closes the connection, naming the status. */
	seen.bytes_status = PG_PERMISSION_DENY;
	CHECK(fh_receive_str(c, "x") == PG_PERMISSION_DENY);
	CHECK(!fh_alive(c));
	CHECK(strstr(fh_close_reason(c), "PERMISSION_DENY") != NULL);
	/* An undefined status fails only the connection: UNKNOWN. */
	c = fh_connect();
	seen.bytes_status = -1;
	CHECK(fh_receive_str(c, "x") == PG_UNKNOWN);
	CHECK(!fh_alive(c));
	seen.bytes_status = PG_SUCCESS;
}

static void test_messages(void) {
	pg_register(&full);
	pg_conn c = fh_connect();
	fh_msg m = {.topic = "t/1", .payload = "hi\0there", .payload_len = 8, .qos = 2, .from = "dev-9",
	            .node = "n@h", .id = "abc", .timestamp = 1700000000123ull};
	memset(seen.batches, 0, sizeof seen.batches);
	seen.calls = seen.msgs = 0;
	CHECK(fh_deliver(c, &m, 1) == PG_SUCCESS);
	CHECK(seen.calls == 1 && seen.msgs == 1);
	CHECK_STR(seen.topics[0], "t/1");
	CHECK(seen.first.qos == 2 && seen.first.timestamp == 1700000000123ll && seen.first.payload_len == 8);
	CHECK_STR(seen.first_from, "dev-9");
	CHECK_STR(seen.first_node, "n@h");
	CHECK_STR(seen.first_id, "abc");
	CHECK_STR(seen.first_payload, "hi");

	/* 150 messages: batches of PG_MAX_BATCH, in order. */
	fh_msg many[150];
	char names[150][16];
	for (int i = 0; i < 150; i++) {
		snprintf(names[i], sizeof names[i], "t/%d", i);
		many[i] = (fh_msg){.topic = names[i], .payload = "p", .payload_len = 1};
	}
	seen.calls = seen.msgs = 0;
	CHECK(fh_deliver(c, many, 150) == PG_SUCCESS);
	CHECK(seen.calls == 3 && seen.batches[0] == 64 && seen.batches[1] == 64 && seen.batches[2] == 22);
	CHECK(seen.msgs == 150);
	int ordered = 1;
	for (int i = 0; i < 150; i++)
		ordered &= strcmp(seen.topics[i], names[i]) == 0;
	CHECK(ordered);

	/* Malformed: nothing is delivered, the callback fails. */
	static const uint8_t bad[][8] = {
	    {0x12, 0x05, 0x2a, 0x01, 'x'},   /* message field 5 truncated */
	    {0x12, 0x02, 0x18, 0x80},        /* qos varint never ends */
	    {0x12, 0x02, 0x1a, 0x00},        /* qos (3) as bytes */
	    {0x12, 0x02, 0x2b, 0x00},        /* wire type 3 */
	    {0x00, 0x00},                    /* field number 0 */
	    {0x15, 0x01, 0x02},              /* fixed32 truncated */
	};
	static const size_t bad_len[] = {5, 4, 4, 4, 2, 3};
	for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
		seen.calls = 0;
		CHECK(fh_raw("on_received_messages", c, bad[i], bad_len[i]) == PG_PARAMS_TYPE_ERROR);
		CHECK(seen.calls == 0);
	}
	/* A valid message then a malformed one: nothing is delivered. */
	static const uint8_t half[] = {0x12, 0x03, 0x2a, 0x01, 'a', 0x12, 0x09, 0x2a};
	seen.calls = 0;
	CHECK(fh_raw("on_received_messages", c, half, sizeof half) == PG_PARAMS_TYPE_ERROR && seen.calls == 0);
	/* Unknown fields and fixed fields are skipped. */
	static const uint8_t extra[] = {0x12, 0x14, 0x2a, 0x01, 'z', 0x45, 1, 2, 3, 4, 0xf8, 0x01, 0x07,
	                                0x09, 1,    2,    3,    4,   5,    6, 7, 8};
	seen.calls = seen.msgs = 0;
	CHECK(fh_raw("on_received_messages", c, extra, sizeof extra) == PG_SUCCESS);
	CHECK(seen.msgs == 1);
	CHECK_STR(seen.topics[0], "z");
	/* Malformed socket_created and socket_closed. */
	static const uint8_t badci[] = {0x12, 0x03, 0x08, 0x01, 0x12};
	CHECK(fh_raw("on_socket_created", c, badci, sizeof badci) == PG_PARAMS_TYPE_ERROR);
	static const uint8_t badport[] = {0x12, 0x04, 0x12, 0x02, 0x12, 0x00};
	CHECK(fh_raw("on_socket_created", c, badport, sizeof badport) == PG_PARAMS_TYPE_ERROR);
	static const uint8_t badreason[] = {0x10, 0x01};
	CHECK(fh_raw("on_socket_closed", c, badreason, sizeof badreason) == PG_PARAMS_TYPE_ERROR);
	/* A handler without on_received_messages accepts them. */
	pg_register(&empty);
	CHECK(fh_deliver(c, &m, 1) == PG_SUCCESS);
	pg_register(&full);
	fh_disconnect(c, NULL);
}

static void test_calls_and_errors(void) {
	pg_register(&full);
	pg_conn c = fh_connect();
	/* Not authenticated: the host's message comes back. */
	CHECK(pg_subscribe(c, PG_STR("a/#"), 0) == PG_UNKNOWN);
	char small[8];
	size_t n = pg_last_error(small, sizeof small);
	CHECK(n == strlen("fakehost: not authenticated: call Authenticate first"));
	CHECK_STR(small, "fakehos");
	CHECK(pg_last_error(NULL, 0) == n);
	size_t m;
	CHECK_STR(pg_error_message(&m), "fakehost: not authenticated: call Authenticate first");
	CHECK(m == n);

	pg_client_info ci = {.proto_name = PG_STR("p"), .proto_ver = PG_STR("2"), .client_id = PG_STR("dev-1"),
	                     .username = pg_cstr("u")};
	CHECK(pg_authenticate(c, &ci, PG_STR("secret")) == PG_SUCCESS);
	CHECK(fh_authenticated(c));
	CHECK_STR(fh_client_id(c), "dev-1");
	CHECK_STR(fh_username(c), "u");
	CHECK_STR(fh_password(c), "secret");
	CHECK_STR(fh_proto(c), "p/2");
	CHECK(pg_authenticate(c, &ci, PG_STR("")) == PG_PERMISSION_DENY);

	/* A long client id takes the heap path of the encoder. */
	pg_conn d = fh_connect();
	char *longid = malloc(3000);
	memset(longid, 'k', 2999);
	longid[2999] = 0;
	pg_client_info lci = {.client_id = pg_cstr(longid)};
	CHECK(pg_authenticate(d, &lci, pg_cstr(NULL)) == PG_SUCCESS);
	CHECK_STR(fh_client_id(d), longid);
	free(longid);

	CHECK(pg_subscribe(c, PG_STR("a/+/b"), 1) == PG_SUCCESS && fh_subscribed(c, "a/+/b"));
	CHECK(pg_subscribe(c, PG_STR("a/#/b"), 0) == PG_PARAMS_TYPE_ERROR);
	CHECK_STR(pg_error_message(NULL), "fakehost: invalid topic filter");
	CHECK(pg_unsubscribe(c, PG_STR("a/+/b")) == PG_SUCCESS && !fh_subscribed(c, "a/+/b"));
	CHECK(pg_publish(c, PG_STR("t/x"), 1, "pay\0load", 8) == PG_SUCCESS);
	const fh_publish *p = fh_published(fh_publish_count() - 1);
	CHECK(p && p->from == c && strcmp(p->topic, "t/x") == 0 && p->payload_len == 8 && p->qos == 1 &&
	      memcmp(p->payload, "pay\0load", 8) == 0);
	CHECK(pg_raw_publish(PG_STR("raw/t"), 0, "r", 1) == PG_SUCCESS);
	p = fh_published(fh_publish_count() - 1);
	CHECK(p && p->from == 0 && strcmp(p->topic, "raw/t") == 0);
	CHECK(pg_publish(c, PG_STR(""), 0, NULL, 0) == PG_REQUIRED_PARAMS_MISSED);

	/* Send, close and then NOT_ALIVE. */
	CHECK(pg_send(c, "abc", 3) == PG_SUCCESS);
	CHECK_STR(fh_sent(c, NULL), "abc");
	CHECK(pg_start_timer(c, PG_KEEPALIVE, 30) == PG_SUCCESS && fh_keepalive(c) == 30);
	CHECK(pg_start_timer(c, 7, 30) == PG_PARAMS_TYPE_ERROR);

	/* An injected failure with a message longer than the small buffer. */
	char longmsg[1000];
	memset(longmsg, 'e', sizeof longmsg - 1);
	longmsg[sizeof longmsg - 1] = 0;
	fh_fail_next("send", PG_PERMISSION_DENY, longmsg);
	CHECK(pg_send(c, "x", 1) == PG_PERMISSION_DENY);
	CHECK_STR(pg_error_message(&m), longmsg);
	CHECK(m == sizeof longmsg - 1);
	/* An empty message. */
	fh_fail_next("close", PG_UNKNOWN, NULL);
	CHECK(pg_close(c) == PG_UNKNOWN);
	CHECK_STR(pg_error_message(&m), "");
	CHECK(m == 0);
	/* A success leaves the last error alone. */
	CHECK(pg_send(c, "y", 1) == PG_SUCCESS);
	CHECK(pg_error_message(&m) && m == 0);

	CHECK(pg_close(c) == PG_SUCCESS);
	/* Outside a callback, the close completes with fh_disconnect. */
	CHECK(!fh_alive(c));
	fh_disconnect(c, NULL);
	CHECK_STR(seen.reason, FH_REASON_NORMAL);
	CHECK(pg_send(c, "z", 1) == PG_NOT_ALIVE);
	CHECK_STR(pg_error_message(NULL), "fakehost: connection is not alive");
	CHECK(pg_subscribe(c, PG_STR("x"), 0) == PG_NOT_ALIVE);
	fh_disconnect(d, NULL);

	CHECK(strcmp(pg_status_name(PG_NOT_ALIVE), "CONN_PROCESS_NOT_ALIVE") == 0);
	CHECK(strcmp(pg_status_name(9), "INVALID") == 0);
}

static void test_timers(void) {
	pg_register(&full);
	pg_conn c = fh_connect();
	pg_timer t = -1;
	CHECK(pg_set_timer(c, 250, &t) == PG_SUCCESS && t > 0);
	CHECK(fh_timer_armed(c, t) && fh_timer_delay(c, t) == 250);
	pg_timer z;
	CHECK(pg_set_timer(c, 0, &z) == PG_SUCCESS && fh_timer_delay(c, z) == 1); /* 0 is 1 */
	CHECK(pg_cancel_timer(c, z) == PG_SUCCESS && !fh_timer_armed(c, z));
	CHECK(fh_fire(c, t) == PG_SUCCESS && seen.fired == t);
	CHECK(pg_set_timer(c, 86400001, &t) == PG_PARAMS_TYPE_ERROR && t == 0);
	CHECK_STR(pg_error_message(NULL), "fakehost: timer delay out of range");
	/* A host answer of 0, or beyond an i32 status, is UNKNOWN. */
	fh_set_timer_answer(0);
	CHECK(pg_set_timer(c, 5, &t) == PG_UNKNOWN && t == 0);
	CHECK(strstr(pg_error_message(NULL), "invalid timer id") != NULL);
	fh_set_timer_answer(-((int64_t)1 << 40));
	CHECK(pg_set_timer(c, 5, NULL) == PG_UNKNOWN);
	fh_set_timer_answer(-5);
	CHECK(pg_set_timer(c, 5, NULL) == PG_PERMISSION_DENY);
	/* Without on_timer, pg_set_timer refuses, and a fired timer is
	 * logged. */
	pg_register(&empty);
	CHECK(pg_set_timer(c, 5, &t) == PG_UNKNOWN);
	CHECK(strstr(pg_error_message(NULL), "no on_timer") != NULL);
	CHECK(protogate_on_timer(c, 99) == PG_SUCCESS);
	CHECK(strstr(fh_last_log(NULL), "no on_timer") != NULL);
	pg_register(&full);
	/* Keepalive: on_timer_timeout, then the host closes. */
	CHECK(fh_timeout(c) == PG_SUCCESS && seen.timeout_type == PG_KEEPALIVE);
	CHECK_STR(fh_close_reason(c), FH_REASON_KEEPALIVE);
	CHECK_STR(seen.reason, FH_REASON_KEEPALIVE);
}

static void test_log(void) {
	int32_t level;
	pg_log(PG_LOG_WARN, "warned", 6);
	CHECK_STR(fh_last_log(&level), "warned");
	CHECK(level == PG_LOG_WARN);
	pg_logf(PG_LOG_DEBUG, "n=%d s=%s", 42, "x");
	CHECK_STR(fh_last_log(&level), "n=42 s=x");
	CHECK(level == PG_LOG_DEBUG);
	/* A long line is cut at PG_MAX_LOG_LINE. */
	char *big = malloc(10000);
	memset(big, 'l', 9999);
	big[9999] = 0;
	pg_log(PG_LOG_INFO, big, 9999);
	CHECK(strlen(fh_last_log(NULL)) == PG_MAX_LOG_LINE);
	pg_logf(PG_LOG_INFO, "%s", big);
	CHECK(strlen(fh_last_log(NULL)) == PG_MAX_LOG_LINE);
	free(big);
}

/* test_random_inputs feeds the decoders random bytes (under the sanitizers
 * in go test): they must answer SUCCESS or PARAMS_TYPE_ERROR and never read
 * outside what they were given. The bytes are mostly small values and
 * protobuf tags, to reach past the first field. */
static void test_random_inputs(void) {
	static const char *exports[] = {"on_socket_created", "on_received_messages", "on_socket_closed"};
	static const uint8_t common[] = {0x08, 0x0a, 0x10, 0x12, 0x1a, 0x18, 0x2a, 0x32, 0x38, 0x80, 0xff, 0x01, 0x00};
	uint64_t x = 0x243F6A8885A308D3ull;
	uint8_t b[64];
	int bad = 0;
	pg_register(&full);
	seen.calls = 0;
	pg_conn c = fh_connect();
	for (int i = 0; i < 30000; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		size_t n = (size_t)(x >> 58); /* 0..63 */
		for (size_t j = 0; j < n; j++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			uint8_t r = (uint8_t)(x >> 56);
			b[j] = r < 160 ? common[r % sizeof common] : r < 220 ? (uint8_t)(r % 8) : r;
		}
		/* fh_raw copies the n bytes to the start of the inbox, which
		 * protogate_inbox(0) returns: every view must lie in them. */
		lo = protogate_inbox(0);
		hi = lo + n;
		int32_t st = fh_raw(exports[i % 3], c, b, n);
		lo = hi = NULL;
		if (st != PG_SUCCESS && st != PG_PARAMS_TYPE_ERROR)
			bad++;
	}
	CHECK(bad == 0);
	CHECK(out_of_bounds == 0);
	CHECK(seen.calls > 0); /* some inputs were valid deliveries */
	fh_disconnect(c, NULL);
}

int main(void) {
	test_no_handler();
	test_init();
	test_conn_info();
	test_bytes_and_inbox();
	test_messages();
	test_calls_and_errors();
	test_timers();
	test_log();
	test_random_inputs();
	return fh_done("sdk_test");
}
