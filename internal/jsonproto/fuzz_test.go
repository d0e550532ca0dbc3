package jsonproto

import (
	"testing"
)

// FuzzDecoder checks that the Decoder never panics, that how the input is
// chunked does not change what it decodes, and that every decoded frame
// survives Encode and Decode unchanged.
func FuzzDecoder(f *testing.F) {
	seeds := []string{
		``,
		`{"type":9}`,
		`{"type":9}##{"type":9}##`,
		" \n{\"type\":2,\"code\":0}\r\n",
		`{"type":1,"clientinfo":{"proto_name":"exproto","proto_ver":"1.0","clientid":"c","username":"u","mountpoint":"m/","keepalive":5},"password":"p"}`,
		`{"type":3,"topic":"t/a","qos":1,"payload":"hi \"there\" \u00e9 \ud83d\ude00"}`,
		`{"type":10,"topic":"t","qos":0,"payload":"##}{"}`,
		`{"type":5,"topic":"t/#","qos":2}{"type":7,"topic":"t/#"}`,
		`{"type":4,"code":1}#{"type":6,"code":0}`,
		`{"type":8,"code":0,"extra":[1,2,{"a":null}]}`,
		`{"type":42}`,
		`{"type":3}`,
		`{{{{{{{{`,
		`{"type":3,"topic":"t","qos":1,"payload":"`,
		"\x00\xff##",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		const limit = 1 << 12

		whole, wholeErr := drain(NewDecoder(limit), data)

		n := int(step)%16 + 1
		var pieces [][]byte
		for i := 0; i < len(data); i += n {
			pieces = append(pieces, data[i:min(i+n, len(data))])
		}
		split, splitErr := drain(NewDecoder(limit), pieces...)

		if (wholeErr == nil) != (splitErr == nil) || len(whole) != len(split) {
			t.Fatalf("chunking changed the result: whole %d frames err %v; split(%d) %d frames err %v",
				len(whole), wholeErr, n, len(split), splitErr)
		}
		for i := range whole {
			if whole[i] != split[i] {
				t.Fatalf("frame %d differs: whole %+v split %+v", i, whole[i], split[i])
			}
			enc := Encode(whole[i])
			got, err := Decode(enc)
			if err != nil {
				t.Fatalf("Decode(Encode(%+v)) error %v; encoding %s", whole[i], err, enc)
			}
			if got != whole[i] {
				t.Fatalf("round trip changed the frame:\n got  %+v\n want %+v\n via  %s", got, whole[i], enc)
			}
		}
	})
}
