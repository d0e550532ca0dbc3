/*
 * echo_test.c: native tests of echo.c against the fake host.
 *
 *     cc -std=c11 -Isdk/c -Isdk/c/test -o t guests/c/echo.c \
 *         guests/c/echo_test.c sdk/c/protogate.c sdk/c/test/fakehost.c && ./t
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakehost.h"

int main(void) {
	CHECK(fh_init() == PG_SUCCESS);
	pg_conn a = fh_connect(), b = fh_connect();
	CHECK(fh_receive_str(a, "hello\n") == PG_SUCCESS);
	CHECK_STR(fh_sent(a, NULL), "hello\n");
	CHECK_STR(fh_sent(b, NULL), "");
	uint8_t bin[256];
	for (int i = 0; i < 256; i++)
		bin[i] = (uint8_t)i;
	CHECK(fh_receive(b, bin, sizeof bin) == PG_SUCCESS);
	size_t n;
	const char *got = fh_sent(b, &n);
	CHECK(n == sizeof bin && memcmp(got, bin, n) == 0);
	/* A failed send fails the callback, and so closes the connection. */
	fh_fail_next("send", PG_PERMISSION_DENY, "queue full");
	CHECK(fh_receive_str(a, "x") == PG_PERMISSION_DENY);
	CHECK(!fh_alive(a));
	fh_disconnect(b, NULL);
	return fh_done("echo_test");
}
