package abi

import "errors"

// The protobuf wire format, as far as ABI v1 needs it. It is written here,
// with the standard library only, because google.golang.org/protobuf's
// protowire brings fmt and os into every Go guest: about 750 KB of a 2.7 MB
// module, compiled and instantiated for every instance.

// wireType is a protobuf wire type.
type wireType int8

const (
	wireVarint  wireType = 0
	wireFixed64 wireType = 1
	wireBytes   wireType = 2
	wireFixed32 wireType = 5
)

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func sizeVarint(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendTag(b []byte, num int, typ wireType) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(typ))
}

// consumeVarint decodes a varint; n < 0 on error.
func consumeVarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1 // overflows 64 bits
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

// malformed is the error of every decoding failure; errors.Is(err,
// ErrMalformed) holds for it.
type malformed string

func (m malformed) Error() string        { return "abi: malformed protobuf: " + string(m) }
func (m malformed) Is(target error) bool { return target == ErrMalformed }

// ErrMalformed is matched (errors.Is) by every decoding error.
var ErrMalformed = errors.New("abi: malformed protobuf")

// fields calls fn for every field of the message in b: v is the content of
// a bytes field, x the value of a varint field. Fields of other wire types
// are skipped, as are unknown fields, as protobuf requires.
func fields(b []byte, fn func(num int, typ wireType, v []byte, x uint64) error) error {
	for len(b) > 0 {
		tag, n := consumeVarint(b)
		if n < 0 {
			return malformed("bad tag")
		}
		b = b[n:]
		num, typ := int(tag>>3), wireType(tag&7)
		if num <= 0 || tag>>3 > 1<<29-1 {
			return malformed("bad field number " + itoa(int64(tag>>3)))
		}
		var v []byte
		var x uint64
		switch typ {
		case wireVarint:
			if x, n = consumeVarint(b); n < 0 {
				return malformed("field " + itoa(int64(num)) + ": bad varint")
			}
		case wireBytes:
			l, m := consumeVarint(b)
			if m < 0 || l > uint64(len(b)-m) {
				return malformed("field " + itoa(int64(num)) + ": bad length")
			}
			v, n = b[m:m+int(l)], m+int(l)
		case wireFixed32:
			n = 4
		case wireFixed64:
			n = 8
		default:
			return malformed("field " + itoa(int64(num)) + ": unsupported wire type " + itoa(int64(typ)))
		}
		if n > len(b) {
			return malformed("field " + itoa(int64(num)) + ": truncated")
		}
		b = b[n:]
		if typ != wireVarint && typ != wireBytes {
			continue
		}
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// want checks that field num has the wire type the schema gives it.
func want(num int, got, exp wireType) error {
	if got != exp {
		return malformed("field " + itoa(int64(num)) + " has wire type " + itoa(int64(got)) + ", want " + itoa(int64(exp)))
	}
	return nil
}
