/*
 * faulty.c: a C guest that misbehaves on request, for the fault tests of
 * C handlers (wasmhost/cguest_test.go). It echoes what it receives, except
 * for these chunks (trailing spaces, "\r" and "\n" ignored, so nc works):
 *
 *     trap   __builtin_trap(): the Wasm unreachable instruction, as a crash
 *            (abort, a failed assert) compiles to
 *     loop   loops forever: only the handler's call_timeout ends it
 *     oom    mallocs 1 MiB blocks, keeping them, until malloc returns NULL
 *            (memory.grow refused at the handler's memory limit), logs how
 *            far it got and aborts: the out-of-memory death of a C handler
 *     grow   asks memory.grow for 4 GiB, which the host refuses; answers
 *            "grow refused" (or "grow granted"): a refused grow is not a
 *            fault, the instance goes on
 *
 * Each fault is the instance's: the host discards it and closes every
 * connection pinned to it, and only those.
 *
 * Build (make sdk-guests-c):
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -I sdk/c \
 *         -o faulty-c.wasm guests/c/faulty.c sdk/c/protogate.c
 */
#include "protogate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* hoard keeps what oom allocates reachable. */
static void **hoard;

static int is(const uint8_t *b, size_t n, const char *cmd) {
	size_t k = strlen(cmd);
	return n == k && memcmp(b, cmd, k) == 0;
}

static pg_status on_received_bytes(pg_conn c, const uint8_t *buf, size_t len) {
	size_t n = len;
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\r' || buf[n - 1] == '\n'))
		n--;
	if (is(buf, n, "trap")) {
		pg_log(PG_LOG_WARN, "faulty-c: trapping", 18);
		__builtin_trap();
	}
	if (is(buf, n, "loop")) {
		pg_log(PG_LOG_WARN, "faulty-c: looping forever", 25);
		for (volatile unsigned long spins = 0;; spins++) {
		}
	}
	if (is(buf, n, "oom")) {
		size_t mib = 0;
		for (;;) {
			void **block = malloc(1 << 20);
			if (!block)
				break;
			memset(block, 1, 1 << 20); /* touch it: no lazy pages in Wasm, but honest */
			block[0] = hoard;
			hoard = block;
			mib++;
		}
		pg_logf(PG_LOG_ERROR, "faulty-c: malloc failed after %zu MiB; aborting", mib);
		abort();
	}
	if (is(buf, n, "grow")) {
		/* 65536 pages of 64 KiB: all of wasm32's address space. */
		const char *r = __builtin_wasm_memory_grow(0, 65536) == (size_t)-1 ? "grow refused\n" : "grow granted\n";
		return pg_send(c, r, strlen(r));
	}
	return pg_send(c, buf, len);
}

static const pg_handler faulty = {.on_received_bytes = on_received_bytes};
PG_REGISTER(faulty);
