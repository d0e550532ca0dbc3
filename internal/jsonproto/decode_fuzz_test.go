package jsonproto

import (
	"testing"
)

// FuzzDecode checks Decode, which reads one frame from one datagram:
//
//   - it never panics;
//   - it accepts exactly the inputs a Decoder reads as one frame and
//     nothing more (no error, nothing left over), and returns that frame;
//   - what it accepts survives Encode and Decode unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":9}`, ` {"type":9} `, `##{"type":9}##`, `{"type":9}{"type":9}`, `{"type":9}#`, `{"type":9`,
		`{"type":1,"clientinfo":{"proto_name":"p","proto_ver":"1","clientid":"c","username":"u","mountpoint":"m/","keepalive":5},"password":"p"}`,
		`{"type":3,"topic":"t/a","qos":1,"payload":"hi \"there\" \u00e9 \ud83d\ude00 \u2028"}`,
		`{"type":3,"topic":"t","qos":3,"payload":""}`, `{"type":42}`, `{"type":"9"}`, `{"TYPE":9}`, `[]`, ``, "\x00",
		`{"type":8,"code":0,"extra":[1,2,{"a":null}]}`, `{"type":3,"topic":"\udc00","qos":0,"payload":"\xff"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data)

		d := NewDecoder(len(data) + 1)
		frames, derr := drain(d, data)
		one := derr == nil && len(frames) == 1 && d.Buffered() == 0
		if (err == nil) != one {
			t.Fatalf("Decode(%q) = %+v, %v; a Decoder reads %d frames, %v, %d bytes left", data, got, err, len(frames), derr, d.Buffered())
		}
		if err != nil {
			return
		}
		if got != frames[0] {
			t.Fatalf("Decode(%q) = %+v, a Decoder reads %+v", data, got, frames[0])
		}
		enc := Encode(got)
		if again, err := Decode(enc); err != nil || again != got {
			t.Fatalf("Decode(Encode(%+v)) = %+v, %v via %s", got, again, err, enc)
		}
	})
}
