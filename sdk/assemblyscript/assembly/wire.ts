// The protobuf wire format, as far as ABI v1 needs it: the emqx.exproto.v1
// messages that callbacks carry, decoded, and AuthenticateRequest, encoded.
// Field numbers are those of proto/exproto.proto.

/** Reader walks the fields of one protobuf message in a byte view. */
export class Reader {
  pos: i32;
  end: i32;
  /** Set on the first decoding error; the reader then yields no more fields. */
  err: string | null = null;
  num: i32 = 0;
  typ: i32 = 0;
  /** The value of the current varint field. */
  x: u64 = 0;
  /** The start and length of the current bytes field. */
  vStart: i32 = 0;
  vLen: i32 = 0;

  constructor(public b: Uint8Array, start: i32 = 0, end: i32 = -1) {
    this.pos = start;
    this.end = end < 0 ? b.length : end;
  }

  private fail(msg: string): bool {
    this.err = "malformed protobuf: " + msg;
    this.pos = this.end;
    return false;
  }

  private varint(): bool {
    let v: u64 = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) return this.fail("truncated varint");
      const c = <u64>unchecked(this.b[this.pos++]);
      if (i == 9 && c > 1) return this.fail("varint overflows 64 bits");
      v |= (c & 0x7f) << (<u64>(7 * i));
      if (c < 0x80) {
        this.x = v;
        return true;
      }
    }
    return this.fail("bad varint");
  }

  /** Advances to the next varint or bytes field (others are skipped); false at the end or on an error. */
  next(): bool {
    while (this.pos < this.end) {
      if (!this.varint()) return false;
      const tag = this.x;
      const num = tag >> 3;
      if (num == 0 || num > (1 << 29) - 1) return this.fail("bad field number");
      this.num = <i32>num;
      this.typ = <i32>(tag & 7);
      switch (this.typ) {
        case 0:
          if (!this.varint()) return false;
          return true;
        case 2: {
          if (!this.varint()) return false;
          const l = this.x;
          if (l > <u64>(this.end - this.pos)) return this.fail("field " + this.num.toString() + ": bad length");
          this.vStart = this.pos;
          this.vLen = <i32>l;
          this.pos += <i32>l;
          return true;
        }
        case 1:
          if (this.end - this.pos < 8) return this.fail("truncated");
          this.pos += 8;
          break;
        case 5:
          if (this.end - this.pos < 4) return this.fail("truncated");
          this.pos += 4;
          break;
        default:
          return this.fail("field " + this.num.toString() + ": unsupported wire type " + this.typ.toString());
      }
    }
    return false;
  }

  /** Checks the current field's wire type against the schema's. */
  want(typ: i32): bool {
    if (this.typ != typ) return this.fail("field " + this.num.toString() + " has wire type " + this.typ.toString() + ", want " + typ.toString());
    return true;
  }

  /** The current bytes field as a view (no copy). */
  bytes(): Uint8Array {
    return this.b.subarray(this.vStart, this.vStart + this.vLen);
  }

  /** The current bytes field decoded as UTF-8. */
  str(): string {
    return String.UTF8.decodeUnsafe(this.b.dataStart + <usize>this.vStart, <usize>this.vLen);
  }

  /** A reader of the current bytes field (a sub-message). */
  sub(): Reader {
    return new Reader(this.b, this.vStart, this.vStart + this.vLen);
  }
}

/** Writer appends protobuf fields to a growing buffer. */
export class Writer {
  buf: Uint8Array = new Uint8Array(64);
  len: i32 = 0;

  reset(): void {
    this.len = 0;
  }

  byte(c: u8): void {
    if (this.len == this.buf.length) {
      const nb = new Uint8Array(this.buf.length * 2);
      nb.set(this.buf);
      this.buf = nb;
    }
    unchecked((this.buf[this.len++] = c));
  }

  varint(v: u64): void {
    while (v >= 0x80) {
      this.byte(<u8>(v | 0x80));
      v >>= 7;
    }
    this.byte(<u8>v);
  }

  raw(b: Uint8Array): void {
    for (let i = 0; i < b.length; i++) this.byte(unchecked(b[i]));
  }

  /** Appends field num holding the UTF-8 of s; an empty s is omitted. */
  string(num: i32, s: string): void {
    if (s.length == 0) return;
    this.bytesField(num, Uint8Array.wrap(String.UTF8.encode(s)));
  }

  bytesField(num: i32, v: Uint8Array): void {
    if (v.length == 0) return;
    this.varint((<u64>num << 3) | 2);
    this.varint(<u64>v.length);
    this.raw(v);
  }

  /** The bytes written so far, as a view of the buffer. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}
