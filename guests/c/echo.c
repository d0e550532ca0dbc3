/*
 * echo.c: the C build of guests/echo. It sends every chunk of bytes it
 * receives back to the connection it came from, straight from the inbox:
 * nothing is allocated per message.
 *
 * Build (make sdk-guests-c):
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -I sdk/c \
 *         -o echo-c.wasm guests/c/echo.c sdk/c/protogate.c
 */
#include "protogate.h"

static pg_status on_received_bytes(pg_conn c, const uint8_t *buf, size_t len) { return pg_send(c, buf, len); }

static const pg_handler echo = {.on_received_bytes = on_received_bytes};
PG_REGISTER(echo);
