/*
 * linepubsub_test.c: native tests of linepubsub.c against the fake host,
 * the cases of guests/linepubsub/main_test.go. It includes linepubsub.c to
 * see its connection table.
 *
 *     cc -std=c11 -Isdk/c -Isdk/c/test -o t guests/c/linepubsub_test.c \
 *         sdk/c/protogate.c sdk/c/test/fakehost.c && ./t
 */
#include "linepubsub.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakehost.h"

static char *repeat(char ch, size_t n, const char *tail) {
	size_t t = strlen(tail);
	char *s = malloc(n + t + 1);
	memset(s, ch, n);
	memcpy(s + n, tail, t + 1);
	return s;
}

static void test_authenticates_on_connect(void) {
	pg_conn c = fh_connect();
	CHECK(fh_status() == PG_SUCCESS);
	char want[32];
	snprintf(want, sizeof want, "line-%016llx", (unsigned long long)c);
	CHECK_STR(fh_client_id(c), want);
	CHECK_STR(fh_proto(c), "line/1");
	CHECK_STR(fh_password(c), "");
	CHECK_STR(fh_sent(c, NULL), "");
	fh_disconnect(c, NULL);
}

static void test_authentication_refused(void) {
	size_t before = table_used;
	fh_fail_next("authenticate", PG_PERMISSION_DENY, "not_authorized");
	pg_conn c = fh_connect();
	CHECK_STR(fh_sent(c, NULL), "ERR authentication failed: not_authorized\n");
	CHECK_STR(fh_close_reason(c), FH_REASON_NORMAL);
	CHECK(table_used == before);
}

static void test_commands(void) {
	pg_conn c = fh_connect();
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"PING\n", "PONG\n"},
	    {"ping\r\n", "PONG\n"},
	    {"\n\r\n", ""},
	    {"SUB sensors/+/temp\n", "OK\n"},
	    {"PUB sensors/d1/temp 21.5 degrees C\n", "OK\n"},
	    {"PUB t\n", "OK\n"},
	    {"PUB a/+ x\n", "ERR fakehost: invalid topic\n"},
	    {"SUB\n", "ERR fakehost: topic is empty\n"},
	    {"SUB a/#/b\n", "ERR fakehost: invalid topic filter\n"},
	    {"UNSUB sensors/+/temp\n", "OK\n"},
	    {"HELLO there\n", "ERR unknown command\n"},
	    {"SUBX a\n", "ERR unknown command\n"},
	    {"PING\nSUB a\nPUB a b\n", "PONG\nOK\nOK\n"},
	    {"PI", ""},
	    {"NG\nSUB", "PONG\n"},
	    {" b\r", ""},
	    {"\n", "OK\n"},
	    {"pInG extra words\n", "PONG\n"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK(fh_receive_str(c, cases[i].in) == PG_SUCCESS);
		const char *got = fh_sent(c, NULL);
		if (strcmp(got, cases[i].out) != 0) {
			fh_failures++;
			fprintf(stderr, "\"%s\": sent \"%s\", want \"%s\"\n", cases[i].in, got, cases[i].out);
		}
	}
	CHECK(fh_subscribed(c, "a") && fh_subscribed(c, "b") && !fh_subscribed(c, "sensors/+/temp"));
	/* The publishes, payloads with their spaces. */
	size_t n = fh_publish_count();
	CHECK(n >= 3);
	const fh_publish *p = fh_published(n - 3);
	CHECK(p && strcmp(p->topic, "sensors/d1/temp") == 0 && p->payload_len == 14 &&
	      memcmp(p->payload, "21.5 degrees C", 14) == 0 && p->from == c && p->qos == 0);
	p = fh_published(n - 2);
	CHECK(p && strcmp(p->topic, "t") == 0 && p->payload_len == 0);
	p = fh_published(n - 1);
	CHECK(p && strcmp(p->topic, "a") == 0 && p->payload_len == 1);
	fh_disconnect(c, NULL);
}

static void test_host_error_message(void) {
	pg_conn c = fh_connect();
	fh_fail_next("publish", PG_UNKNOWN, "broker down");
	fh_receive_str(c, "PUB t x\n");
	CHECK_STR(fh_sent(c, NULL), "ERR broker down\n");
	fh_fail_next("subscribe", PG_PERMISSION_DENY, "");
	fh_receive_str(c, "SUB t\n");
	CHECK_STR(fh_sent(c, NULL), "ERR PERMISSION_DENY\n");
	/* A failed reply fails the callback with the send's status. */
	fh_fail_next("send", PG_NOT_ALIVE, "gone");
	CHECK(fh_receive_str(c, "PING\n") == PG_NOT_ALIVE);
	CHECK(!fh_alive(c));
}

static void test_deliveries(void) {
	pg_conn c = fh_connect();
	fh_msg m[2] = {{.topic = "a/b", .payload = "hello world", .payload_len = 11}, {.topic = "c"}};
	CHECK(fh_deliver(c, m, 2) == PG_SUCCESS);
	CHECK_STR(fh_sent(c, NULL), "MSG a/b hello world\nMSG c \n");
	CHECK(fh_deliver(c, m, 0) == PG_SUCCESS);
	CHECK_STR(fh_sent(c, NULL), "");
	/* More than one batch, and a large payload. */
	static fh_msg many[200];
	char *big = repeat('p', 100000, "");
	for (int i = 0; i < 200; i++)
		many[i] = (fh_msg){.topic = "t", .payload = i == 199 ? big : "x", .payload_len = i == 199 ? 100000 : 1};
	CHECK(fh_deliver(c, many, 200) == PG_SUCCESS);
	size_t len;
	const char *s = fh_sent(c, &len);
	CHECK(len == 199 * 8 + 7 + 100000);
	CHECK(strncmp(s, "MSG t x\nMSG t x\n", 16) == 0);
	CHECK(strncmp(s + 199 * 8, "MSG t ppp", 9) == 0 && s[len - 1] == '\n');
	free(big);
	fh_disconnect(c, NULL);
}

static void test_line_too_long(void) {
	struct {
		const char *name;
		char *chunks[2];
		int ok;
	} cases[] = {
	    {"longest line", {repeat('x', MAX_LINE, "\n"), NULL}, 1},
	    {"longest line in pieces", {repeat('x', MAX_LINE - 1, ""), repeat(0, 0, "x\nPING\n")}, 1},
	    {"too long in one chunk", {repeat('x', MAX_LINE + 1, "\n"), NULL}, 0},
	    {"too long without newline", {repeat('x', MAX_LINE + 1, ""), NULL}, 0},
	    {"too long in pieces", {repeat('x', MAX_LINE, ""), repeat(0, 0, "y")}, 0},
	    {"too long in pieces with newline", {repeat('x', 100, ""), repeat('x', MAX_LINE - 99, "\n")}, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t before = table_used;
		pg_conn c = fh_connect();
		for (int j = 0; j < 2 && cases[i].chunks[j]; j++) {
			if (fh_alive(c))
				CHECK(fh_receive_str(c, cases[i].chunks[j]) == PG_SUCCESS);
			free(cases[i].chunks[j]);
		}
		const char *sent = fh_sent(c, NULL);
		if (cases[i].ok) {
			if (strncmp(sent, "ERR unknown command\n", 20) != 0 || !fh_alive(c)) {
				fh_failures++;
				fprintf(stderr, "%s: sent \"%.40s\", alive %d\n", cases[i].name, sent, fh_alive(c));
			}
			fh_disconnect(c, NULL);
		} else if (strcmp(sent, "ERR line too long\n") != 0 || fh_alive(c)) {
			fh_failures++;
			fprintf(stderr, "%s: sent \"%.40s\", alive %d\n", cases[i].name, sent, fh_alive(c));
		}
		if (table_used != before) {
			fh_failures++;
			fprintf(stderr, "%s: state kept after close\n", cases[i].name);
		}
	}
}

static void test_connections_are_independent(void) {
	pg_conn a = fh_connect(), b = fh_connect();
	fh_receive_str(a, "PI");
	fh_receive_str(b, "PU");
	fh_receive_str(a, "NG\n");
	fh_receive_str(b, "B t x\n");
	CHECK_STR(fh_sent(a, NULL), "PONG\n");
	CHECK_STR(fh_sent(b, NULL), "OK\n");
	fh_disconnect(a, NULL);
	fh_disconnect(b, NULL);
}

/* test_many_connections drives the table through growth and deletions:
 * every live connection keeps its own partial line. */
static void test_many_connections(void) {
	enum { N = 2000 };
	static pg_conn cs[N];
	size_t before = table_used;
	for (int i = 0; i < N; i++) {
		cs[i] = fh_connect();
		fh_receive_str(cs[i], "PI");
	}
	for (int i = 0; i < N; i += 3)
		fh_disconnect(cs[i], NULL);
	CHECK(table_used == before + N - (N + 2) / 3);
	int ok = 1;
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0)
			continue;
		fh_receive_str(cs[i], "NG\n");
		ok &= strcmp(fh_sent(cs[i], NULL), "PONG\n") == 0;
		fh_disconnect(cs[i], NULL);
	}
	CHECK(ok);
	CHECK(table_used == before);
}

int main(void) {
	CHECK(fh_init() == PG_SUCCESS);
	test_authenticates_on_connect();
	test_authentication_refused();
	test_commands();
	test_host_error_message();
	test_deliveries();
	test_line_too_long();
	test_connections_are_independent();
	test_many_connections();
	return fh_done("linepubsub_test");
}
