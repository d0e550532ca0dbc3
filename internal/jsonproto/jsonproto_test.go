package jsonproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var (
	connectFrame = Frame{Type: Connect, ClientInfo: ClientInfo{
		ProtoName: "exproto", ProtoVer: "1.0", ClientID: "c1", Username: "u1", Keepalive: 30,
	}, Password: "pw"}
	publishFrame = Frame{Type: Publish, Topic: "t/up", QoS: 1, Payload: "hello"}
)

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		in   Frame
		want string
	}{
		{"connect", connectFrame,
			`{"type":1,"clientinfo":{"proto_name":"exproto","proto_ver":"1.0","clientid":"c1","username":"u1","keepalive":30},"password":"pw"}`},
		{"connect minimal", Frame{Type: Connect},
			`{"type":1,"clientinfo":{"proto_name":"","proto_ver":"","clientid":""},"password":""}`},
		{"connect mountpoint", Frame{Type: Connect, ClientInfo: ClientInfo{ClientID: "c", Mountpoint: "ct/"}},
			`{"type":1,"clientinfo":{"proto_name":"","proto_ver":"","clientid":"c","mountpoint":"ct/"},"password":""}`},
		{"connack", Frame{Type: Connack, Code: 1}, `{"type":2,"code":1}`},
		{"connack zero", Frame{Type: Connack}, `{"type":2,"code":0}`},
		{"publish", publishFrame, `{"type":3,"topic":"t/up","qos":1,"payload":"hello"}`},
		{"publish zero qos keeps members", Frame{Type: Publish}, `{"type":3,"topic":"","qos":0,"payload":""}`},
		{"puback", Frame{Type: Puback}, `{"type":4,"code":0}`},
		{"subscribe", Frame{Type: Subscribe, Topic: "t/#", QoS: 2}, `{"type":5,"topic":"t/#","qos":2}`},
		{"suback", Frame{Type: Suback, Code: 1}, `{"type":6,"code":1}`},
		{"unsubscribe", Frame{Type: Unsubscribe, Topic: "t/#"}, `{"type":7,"topic":"t/#"}`},
		{"unsuback", Frame{Type: Unsuback}, `{"type":8,"code":0}`},
		{"disconnect", Frame{Type: Disconnect}, `{"type":9}`},
		{"disconnect drops foreign fields", Frame{Type: Disconnect, Topic: "x", Code: 3}, `{"type":9}`},
		{"raw publish", Frame{Type: RawPublish, Topic: "t", Payload: "p"}, `{"type":10,"topic":"t","qos":0,"payload":"p"}`},
		{"unknown type", Frame{Type: 42, Topic: "x", Code: 3}, `{"type":42,"topic":"x","code":3}`},
		{"escapes", Frame{Type: Publish, Topic: "a\"b\\c", Payload: "\n\r\t\x01<>&é\u2028"},
			`{"type":3,"topic":"a\"b\\c","qos":0,"payload":"\n\r\t\u0001<>&é\u2028"}`},
		{"invalid utf8", Frame{Type: Publish, Payload: "a\xffb"}, `{"type":3,"topic":"","qos":0,"payload":"a\ufffdb"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Encode(tc.in)
			if string(got) != tc.want {
				t.Fatalf("Encode() = %s\nwant        %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatalf("Encode() produced invalid JSON: %s", got)
			}
		})
	}
}

func TestAppendLine(t *testing.T) {
	got := AppendLine([]byte("prefix"), Frame{Type: Suback, Code: 1})
	if want := "prefix" + `{"type":6,"code":1}` + "\n"; string(got) != want {
		t.Fatalf("AppendLine() = %q, want %q", got, want)
	}
	line := got[len("prefix"):]
	if !json.Valid(line) {
		t.Fatalf("%q is not a JSON text", line)
	}
	if f, err := Decode(line); err != nil || f != (Frame{Type: Suback, Code: 1}) {
		t.Fatalf("Decode(%q) = %+v, %v", line, f, err)
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	// The hand-written string encoder must agree with encoding/json on what
	// the string decodes to.
	for _, s := range []string{"", "plain", "\x00\x1f\x7f", "ünï☃😀", "a\xc3", "\u2029", `"\`} {
		b := Encode(Frame{Type: Publish, Payload: s})
		var got struct{ Payload string }
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		if err := json.Unmarshal(want, &wantS); err != nil {
			t.Fatal(err)
		}
		if got.Payload != wantS {
			t.Errorf("%q: round trip %q, encoding/json %q", s, got.Payload, wantS)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Frame
		wantErr string // substring; empty means success
	}{
		{"connect", `{"type":1,"clientinfo":{"proto_name":"exproto","proto_ver":"1.0","clientid":"c1","username":"u1","keepalive":30},"password":"pw"}`,
			connectFrame, ""},
		{"connect like the bench client", `{"type":1,"clientinfo":{"clientid":"exproto-x","username":"undefined"},"password":"undefined"}`,
			Frame{Type: Connect, ClientInfo: ClientInfo{ClientID: "exproto-x", Username: "undefined"}, Password: "undefined"}, ""},
		{"connect null optional", `{"type":1,"clientinfo":{"clientid":"c","username":null},"password":""}`,
			Frame{Type: Connect, ClientInfo: ClientInfo{ClientID: "c"}}, ""},
		{"connect key order and extra members", `{"password":"p","extra":[1,{"a":null}],"clientinfo":{"clientid":"c","x":true},"type":1}`,
			Frame{Type: Connect, ClientInfo: ClientInfo{ClientID: "c"}, Password: "p"}, ""},
		{"publish", `{"type":3,"topic":"t/up","payload":"hello","qos":1}`, publishFrame, ""},
		{"publish foreign member ignored", `{"type":3,"topic":"t","qos":0,"payload":"","code":7}`,
			Frame{Type: Publish, Topic: "t"}, ""},
		{"raw publish", `{"type":10,"topic":"t","qos":2,"payload":"p"}`, Frame{Type: RawPublish, Topic: "t", QoS: 2, Payload: "p"}, ""},
		{"subscribe", `{"type":5,"topic":"t/#","qos":1}`, Frame{Type: Subscribe, Topic: "t/#", QoS: 1}, ""},
		{"unsubscribe", `{"type":7,"topic":"t/#"}`, Frame{Type: Unsubscribe, Topic: "t/#"}, ""},
		{"connack", `{"type":2,"code":1}`, Frame{Type: Connack, Code: 1}, ""},
		{"puback", `{"type":4,"code":0}`, Frame{Type: Puback}, ""},
		{"suback", `{"type":6,"code":0}`, Frame{Type: Suback}, ""},
		{"unsuback", `{"type":8,"code":0}`, Frame{Type: Unsuback}, ""},
		{"disconnect", `{"type":9}`, Frame{Type: Disconnect}, ""},
		{"disconnect with code", `{"type":9,"code":1}`, Frame{Type: Disconnect}, ""},
		{"escaped strings", `{"type":7,"topic":"a\u002fb\n\"\ud83d\ude00"}`, Frame{Type: Unsubscribe, Topic: "a/b\n\"😀"}, ""},
		{"surrounding whitespace and delimiter", " \r\n{\"type\":9}##\n", Frame{Type: Disconnect}, ""},

		{"no type", `{"topic":"t"}`, Frame{}, `no "type"`},
		{"null type", `{"type":null}`, Frame{}, `no "type"`},
		{"type is case-sensitive", `{"TYPE":9}`, Frame{}, `no "type"`},
		{"string type", `{"type":"9"}`, Frame{}, `member "type"`},
		{"float type", `{"type":9.5}`, Frame{}, `member "type"`},
		{"unknown type", `{"type":42}`, Frame{}, "unknown frame type 42"},
		{"zero type", `{"type":0}`, Frame{}, "unknown frame type 0"},
		{"connect without clientinfo", `{"type":1,"password":"p"}`, Frame{}, `CONNECT frame has no "clientinfo"`},
		{"connect without password", `{"type":1,"clientinfo":{}}`, Frame{}, `CONNECT frame has no "password"`},
		{"connect clientinfo not object", `{"type":1,"clientinfo":[],"password":""}`, Frame{}, "invalid clientinfo"},
		{"connect negative keepalive", `{"type":1,"clientinfo":{"keepalive":-1},"password":""}`, Frame{}, `member "keepalive"`},
		{"publish without payload", `{"type":3,"topic":"t","qos":0}`, Frame{}, `PUBLISH frame has no "payload"`},
		{"publish null topic", `{"type":3,"topic":null,"qos":0,"payload":""}`, Frame{}, `PUBLISH frame has no "topic"`},
		{"publish binary payload", `{"type":3,"topic":"t","qos":0,"payload":[1,2]}`, Frame{}, `member "payload"`},
		{"publish negative qos", `{"type":3,"topic":"t","qos":-1,"payload":""}`, Frame{}, `member "qos"`},
		{"subscribe without qos", `{"type":5,"topic":"t"}`, Frame{}, `SUBSCRIBE frame has no "qos"`},
		{"unsubscribe without topic", `{"type":7}`, Frame{}, `UNSUBSCRIBE frame has no "topic"`},
		{"connack without code", `{"type":2}`, Frame{}, `CONNACK frame has no "code"`},
		{"invalid json", `{"type":9,}`, Frame{}, "invalid frame"},
		{"array", `[{"type":9}]`, Frame{}, "unexpected byte"},
		{"two frames", `{"type":9}{"type":9}`, Frame{}, "trailing data"},
		{"incomplete", `{"type":9`, Frame{}, "incomplete"},
		{"empty", ``, Frame{}, "incomplete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode() error = %v, want containing %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "jsonproto: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if got != tc.want {
				t.Fatalf("Decode() = %+v\nwant       %+v", got, tc.want)
			}
		})
	}
}

// drain feeds each chunk and collects every frame Next yields, stopping at
// the first error.
func drain(d *Decoder, chunks ...[]byte) ([]Frame, error) {
	var frames []Frame
	for _, c := range chunks {
		d.Feed(c)
		for {
			f, ok, err := d.Next()
			if err != nil {
				return frames, err
			}
			if !ok {
				break
			}
			frames = append(frames, f)
		}
	}
	return frames, nil
}

func bytewise(s string) [][]byte {
	out := make([][]byte, len(s))
	for i := range len(s) {
		out[i] = []byte{s[i]}
	}
	return out
}

func chunks(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestDecoderStreaming(t *testing.T) {
	conn := string(Encode(connectFrame))
	pub := string(Encode(publishFrame))
	disc := string(Encode(Frame{Type: Disconnect}))
	sub := `{"type":5,"topic":"a}{\"##","qos":0}` // braces, quotes and ## inside a string

	tests := []struct {
		name    string
		chunks  [][]byte
		want    []Frame
		wantErr string
		left    int // bytes still buffered when no error
	}{
		{"one object per chunk", chunks(conn, pub, disc),
			[]Frame{connectFrame, publishFrame, {Type: Disconnect}}, "", 0},
		{"coalesced in one chunk", chunks(conn + pub + disc),
			[]Frame{connectFrame, publishFrame, {Type: Disconnect}}, "", 0},
		{"split byte by byte", bytewise(conn + pub),
			[]Frame{connectFrame, publishFrame}, "", 0},
		{"split mid-string and mid-escape", chunks(`{"type":3,"topic":"a\`, `"b","qos":1,"pay`, `load":"x"}`),
			[]Frame{{Type: Publish, Topic: `a"b`, QoS: 1, Payload: "x"}}, "", 0},
		{"structural bytes inside strings", chunks(sub + sub),
			[]Frame{{Type: Subscribe, Topic: `a}{"##`}, {Type: Subscribe, Topic: `a}{"##`}}, "", 0},
		{"## delimiter", chunks(conn + "##" + pub + "##"),
			[]Frame{connectFrame, publishFrame}, "", 0},
		{"## delimiter split", chunks(conn+"#", "#"+pub+"#", "#"),
			[]Frame{connectFrame, publishFrame}, "", 0},
		{"## delimiter byte by byte", bytewise(disc + "##" + disc + "##"),
			[]Frame{{Type: Disconnect}, {Type: Disconnect}}, "", 0},
		{"leading and repeated delimiters", chunks("####" + disc + "######" + disc),
			[]Frame{{Type: Disconnect}, {Type: Disconnect}}, "", 0},
		{"whitespace between objects", chunks(" \n"+disc+"\r\n\t "+disc+" ", "\n"),
			[]Frame{{Type: Disconnect}, {Type: Disconnect}}, "", 0},
		{"whitespace inside object", chunks("{ \"type\" :\n 9 }"),
			[]Frame{{Type: Disconnect}}, "", 0},
		{"incomplete tail stays buffered", chunks(disc + `{"type":`),
			[]Frame{{Type: Disconnect}}, "", len(`{"type":`)},
		{"lone # stays buffered", chunks(disc + "#"),
			[]Frame{{Type: Disconnect}}, "", 1},
		{"empty chunks", chunks("", disc, ""),
			[]Frame{{Type: Disconnect}}, "", 0},

		{"garbage", chunks("hello"), nil, "unexpected byte 'h' before frame", 0},
		{"garbage after frame", chunks(disc + "x"), []Frame{{Type: Disconnect}}, "unexpected byte 'x'", 0},
		{"garbage inside object", chunks(`{"type":9,hello`), nil, "unexpected byte 'h' in frame", 0},
		{"garbage byte by byte", bytewise(`{"type":9,@`), nil, "unexpected byte '@' in frame", 0},
		{"single # delimiter", chunks(disc + "#" + disc), []Frame{{Type: Disconnect}}, `malformed "##"`, 0},
		{"mismatched close", chunks(`{"a":[}`), nil, "mismatched '}'", 0},
		{"mismatched close in nested object", chunks(`{"a":{]`), nil, "mismatched ']'", 0},
		{"control character in string", chunks("{\"topic\":\"a\nb\"}"), nil, "control character", 0},
		{"invalid json in balanced object", chunks(`{"type":9,,}`), nil, "invalid frame", 0},
		{"array frame", chunks(`[1]`), nil, "unexpected byte '['", 0},
		{"unknown type", chunks(`{"type":11}`), nil, "unknown frame type 11", 0},
		{"binary", chunks("\x00\x01\x02"), nil, "unexpected byte", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(0)
			got, err := drain(d, tc.chunks...)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error = %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want containing %q", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d frames %+v, want %d %+v", len(got), got, len(tc.want), tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("frame %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if err == nil && d.Buffered() != tc.left {
				t.Errorf("Buffered() = %d, want %d", d.Buffered(), tc.left)
			}
		})
	}
}

func TestDecoderErrorIsSticky(t *testing.T) {
	var d Decoder // the zero Decoder is usable
	d.Feed([]byte("nope"))
	_, _, err1 := d.Next()
	if err1 == nil {
		t.Fatal("no error for garbage")
	}
	d.Feed(Encode(Frame{Type: Disconnect}))
	_, ok, err2 := d.Next()
	if ok || err2 != err1 {
		t.Fatalf("after error: ok=%v err=%v, want the first error %v", ok, err2, err1)
	}
	d.Reset()
	d.Feed(Encode(Frame{Type: Disconnect}))
	if f, ok, err := d.Next(); err != nil || !ok || f.Type != Disconnect {
		t.Fatalf("after Reset: %+v %v %v", f, ok, err)
	}
}

func TestDecoderMaxSize(t *testing.T) {
	t.Run("default limit", func(t *testing.T) {
		big := Encode(Frame{Type: Publish, Payload: strings.Repeat("x", DefaultMaxSize)})
		_, err := drain(NewDecoder(0), big)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("error = %v, want ErrFrameTooLarge", err)
		}
	})
	t.Run("just under the default limit", func(t *testing.T) {
		f := Frame{Type: Publish}
		f.Payload = strings.Repeat("x", DefaultMaxSize-len(Encode(f)))
		b := Encode(f)
		if len(b) != DefaultMaxSize {
			t.Fatalf("test frame is %d bytes", len(b))
		}
		got, err := drain(NewDecoder(0), b)
		if err != nil || len(got) != 1 || got[0] != f {
			t.Fatalf("got %d frames, err %v", len(got), err)
		}
	})
	t.Run("incomplete frame over the limit fed in pieces", func(t *testing.T) {
		d := NewDecoder(100)
		_, err := drain(d, []byte(`{"type":3,"p":"`))
		for i := 0; i < 20 && err == nil; i++ {
			_, err = drain(d, []byte(strings.Repeat("y", 10)))
		}
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("error = %v, want ErrFrameTooLarge", err)
		}
		if !strings.HasPrefix(err.Error(), "jsonproto: frame too large") {
			t.Errorf("error text %q", err)
		}
	})
	t.Run("many small frames exceed the limit together", func(t *testing.T) {
		disc := Encode(Frame{Type: Disconnect})
		got, err := drain(NewDecoder(len(disc)), bytes.Repeat(disc, 100))
		if err != nil || len(got) != 100 {
			t.Fatalf("got %d frames, err %v", len(got), err)
		}
	})
	t.Run("delimiters do not count", func(t *testing.T) {
		disc := Encode(Frame{Type: Disconnect})
		in := append(bytes.Repeat([]byte("## \n"), 1000), disc...)
		got, err := drain(NewDecoder(len(disc)), in)
		if err != nil || len(got) != 1 {
			t.Fatalf("got %d frames, err %v", len(got), err)
		}
	})
}

func TestDecoderReusesBuffer(t *testing.T) {
	d := NewDecoder(0)
	disc := Encode(Frame{Type: Disconnect})
	half := len(disc) / 2
	for i := range 1000 {
		got, err := drain(d, disc[:half], disc[half:])
		if err != nil || len(got) != 1 {
			t.Fatalf("round %d: %d frames, err %v", i, len(got), err)
		}
	}
	if cap(d.buf) > 4*len(disc) {
		t.Fatalf("buffer grew to %d bytes", cap(d.buf))
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{
		Connect: "CONNECT", Connack: "CONNACK", Publish: "PUBLISH", Puback: "PUBACK",
		Subscribe: "SUBSCRIBE", Suback: "SUBACK", Unsubscribe: "UNSUBSCRIBE", Unsuback: "UNSUBACK",
		Disconnect: "DISCONNECT", RawPublish: "RAW_PUBLISH", 0: "Type(0)", 11: "Type(11)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", int(typ), got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	frames := []Frame{
		connectFrame,
		{Type: Connect, ClientInfo: ClientInfo{Mountpoint: "m/", Keepalive: 1}},
		{Type: Connack, Code: -5},
		publishFrame,
		{Type: Puback, Code: 1},
		{Type: Subscribe, Topic: "$share/g/t", QoS: 2},
		{Type: Suback},
		{Type: Unsubscribe, Topic: "t"},
		{Type: Unsuback, Code: 1},
		{Type: Disconnect},
		{Type: RawPublish, Topic: "x", QoS: 4294967295, Payload: "{\"nested\":\"json\"}##"},
	}
	var stream, lines []byte
	for _, f := range frames {
		got, err := Decode(Encode(f))
		if err != nil || got != f {
			t.Fatalf("Decode(Encode(%+v)) = %+v, %v", f, got, err)
		}
		stream = AppendEncode(stream, f)
		lines = AppendLine(lines, f)
	}
	for name, s := range map[string][]byte{"bare": stream, "lines": lines} {
		got, err := drain(NewDecoder(0), bytewise(string(s))...)
		if err != nil || len(got) != len(frames) {
			t.Fatalf("%s stream: %d frames, err %v", name, len(got), err)
		}
	}
}
