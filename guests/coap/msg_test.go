package main

import (
	"bytes"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// optString formats options as "num:hexvalue".
func optString(opts []Option) string {
	var parts []string
	for _, o := range opts {
		parts = append(parts, strconv.Itoa(int(o.Num))+":"+hex.EncodeToString(o.Val))
	}
	return strings.Join(parts, " ")
}

// The byte-level examples of the reference (captured from coap-client and
// go-coap).
func TestParseCaptured(t *testing.T) {
	tests := []struct {
		name, in    string
		typ, code   uint8
		mid         uint16
		token, opts string
		payload     string
	}{
		{"coap-client GET with query", "41 01 d5 46 01 | b2 70 73 | 01 61 | 01 62 | 4b 63 6c 69 65 6e 74 69 64 3d 63 31",
			CON, CodeGET, 0xd546, "01", "11:7073 11:61 11:62 15:" + hex.EncodeToString([]byte("clientid=c1")), ""},
		{"piggybacked 2.05", "61 45 d5 46 01 c0 ff 68 65 6c 6c 6f",
			ACK, CodeContent, 0xd546, "01", "12:", "hello"},
		{"POST with content-format", "41 02 88 6a 01 b2 70 73 01 74 10 ff 68 69",
			CON, CodePOST, 0x886a, "01", "11:7073 11:74 12:", "hi"},
		{"Uri-Host", "41 01 a2 06 01 39 6c6f63616c686f7374 81 78",
			CON, CodeGET, 0xa206, "01", "3:" + hex.EncodeToString([]byte("localhost")) + " 11:78", ""},
		{"observe registration", "41 01 ea 75 01 60 52 70 73 03 6f 62 73",
			CON, CodeGET, 0xea75, "01", "6: 11:7073 11:6f6273", ""},
		{"empty ACK", "60 00 70 01", ACK, CodeEmpty, 0x7001, "", "", ""},
		{"go-coap 8-byte token", "48 01 34 06 a6 ef 18 9d 67 4e 27 b0 b2 7073 01 61 01 62",
			CON, CodeGET, 0x3406, "a6ef189d674e27b0", "11:7073 11:61 11:62", ""},
		{"libcoap Block1, Size1, Request-Tag", "41 02 76 fa 01 b2 70 73 03 62 69 67 | d1 03 0e | d2 14 07 d0 | d4 db f1 d1 14 2f | ff 61 61",
			CON, CodePOST, 0x76fa, "01", "11:7073 11:626967 27:0e 60:07d0 292:f1d1142f", "aa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.in)
			var m Message
			if err := Parse(in, &m); err != nil {
				t.Fatal(err)
			}
			if m.Type != tt.typ || m.Code != tt.code || m.MID != tt.mid || hex.EncodeToString(m.Token) != tt.token ||
				optString(m.Options) != tt.opts || string(m.Payload) != tt.payload {
				t.Errorf("got type %d code %s mid %04x token %x opts %q payload %q", m.Type, CodeString(m.Code), m.MID, m.Token, optString(m.Options), m.Payload)
			}
			if out := m.Append(nil); !bytes.Equal(out, in) {
				t.Errorf("re-encoded %x, want %x", out, in)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
	}{
		{"short", "41 01 00", errShort},
		{"version 2", "81 01 00 01 01", errVersion},
		{"version 0", "01 01 00 01 01", errVersion},
		{"TKL 9", "49 01 00 01 010203040506070809", errFormat},
		{"token truncated", "44 01 00 01 0102", errFormat},
		{"marker without payload", "40 02 00 01 ff", errFormat},
		{"empty with token", "41 00 00 01 01", errFormat},
		{"empty with bytes", "40 00 00 01 ff 61", errFormat},
		{"delta 15", "40 01 00 01 f1 61", errFormat},
		{"length 15", "40 01 00 01 bf 61", errFormat},
		{"delta 13 truncated", "40 01 00 01 d0", errFormat},
		{"length 14 truncated", "40 01 00 01 be 00", errFormat},
		{"value truncated", "40 01 00 01 b5 61 62", errFormat},
	}
	for _, tt := range tests {
		var m Message
		if err := Parse(unhex(t, tt.in), &m); err != tt.want {
			t.Errorf("%s: Parse = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestExtendedOptions(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	m := Message{Type: NON, Code: CodePOST, MID: 7, Token: []byte{1, 2},
		Options: []Option{{Num: OptURIPath, Val: []byte("ps")}, {Num: OptURIQuery, Val: []byte("clientid=dev-01")},
			{Num: OptSize1, Val: []byte{0x07, 0xd0}}, {Num: OptRequestTag, Val: long}, {Num: 2000, Val: nil}},
		Payload: []byte("p")}
	b := m.Append(nil)
	// Uri-Query of 15 bytes after Uri-Path: 4d 02.
	if i := bytes.Index(b, []byte("clientid")); i < 2 || b[i-2] != 0x4d || b[i-1] != 0x02 {
		t.Errorf("Uri-Query header: %x", b)
	}
	var got Message
	if err := Parse(b, &got); err != nil {
		t.Fatal(err)
	}
	if optString(got.Options) != optString(m.Options) || string(got.Payload) != "p" {
		t.Errorf("round trip: %q", optString(got.Options))
	}
}

func TestUint(t *testing.T) {
	for _, n := range []uint32{0, 1, 255, 256, 65535, 65536, 1<<24 - 1, 1 << 24, 1<<32 - 1} {
		b := AppendUint(nil, n)
		if got, ok := Uint(b); !ok || got != n {
			t.Errorf("%d: encoded %x, decoded %d", n, b, got)
		}
	}
	if v, ok := Uint([]byte{0, 0, 1}); !ok || v != 1 {
		t.Error("leading zeros")
	}
	if _, ok := Uint([]byte{1, 2, 3, 4, 5}); ok {
		t.Error("5 bytes accepted")
	}
	if s := CodeString(CodeTooLarge); s != "4.13" {
		t.Errorf("CodeString = %s", s)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"41 01 d5 46 01 b2 70 73 01 61 01 62 4b 63 6c 69 65 6e 74 69 64 3d 63 31",
		"41 02 76 fa 01 b2 70 73 03 62 69 67 d1 03 0e d2 14 07 d0 d4 db f1 d1 14 2f ff 61 61",
		"60 00 70 01", "40 02 00 01 ff", "49 01 00 01", "40 01 00 01 e0 ff ff",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if Parse(b, &m) != nil {
			return
		}
		out := m.Append(nil)
		var m2 Message
		if err := Parse(out, &m2); err != nil {
			t.Fatalf("re-parse of %x: %v", out, err)
		}
		if m2.Type != m.Type || m2.Code != m.Code || m2.MID != m.MID || !bytes.Equal(m2.Token, m.Token) ||
			!bytes.Equal(m2.Payload, m.Payload) || !slices.EqualFunc(m2.Options, m.Options, func(a, b Option) bool {
			return a.Num == b.Num && bytes.Equal(a.Val, b.Val)
		}) {
			t.Fatalf("round trip of %x differs: %x", b, out)
		}
	})
}
