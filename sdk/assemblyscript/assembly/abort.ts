// The abort function of protogate guests. It is in its own file, which no
// guest re-exports, so that it is not an export of the module.

import * as host from "./imports";

/**
 * The abort function of protogate guests (build.sh passes
 * --use abort=...): AssemblyScript calls it for a failed assertion, an
 * out-of-bounds access, running out of memory or a `throw`. It logs the
 * message and where, then traps: a fault of the instance, which the host
 * discards, closing only its connections.
 */
@global
export function protogateAbort(message: string | null = null, fileName: string | null = null, line: u32 = 0, column: u32 = 0): void {
  // Nothing here may allocate: the abort may be for running out of memory.
  logRaw("abort: ");
  if (message != null) logRaw(message);
  if (fileName != null) {
    logRaw(" at ");
    logRaw(fileName);
    logRaw(":");
    logNum(line);
    logRaw(":");
    logNum(column);
  }
  flushAbort();
  unreachable();
}

// The abort message is assembled in static memory, as UTF-8 (ASCII and
// Latin-1 only; others become '?'), without allocating.
const ABORT_CAP: usize = 512;
const abortBuf = memory.data(<i32>ABORT_CAP);
let abortLen: usize = 0;

function logRaw(s: string): void {
  const p = changetype<usize>(s);
  const n = <usize>s.length;
  for (let i: usize = 0; i < n && abortLen < ABORT_CAP; i++) {
    const c = load<u16>(p + (i << 1));
    store<u8>(abortBuf + abortLen++, c < 0x80 ? <u8>c : 0x3f);
  }
}

function logNum(v: u32): void {
  let div: u32 = 1;
  while (v / div >= 10) div *= 10;
  for (; div > 0 && abortLen < ABORT_CAP; div /= 10) {
    store<u8>(abortBuf + abortLen++, <u8>(0x30 + (v / div) % 10));
  }
}

function flushAbort(): void {
  host.log(8, abortBuf, <u32>abortLen);
  abortLen = 0;
}
