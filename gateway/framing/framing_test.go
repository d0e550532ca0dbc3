package framing

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

var (
	line8  = Config{Kind: Line, MaxFrame: 8}
	be2    = Config{Kind: Length, LengthBytes: 2, BigEndian: true, MaxFrame: 8}
	le2    = Config{Kind: Length, LengthBytes: 2, MaxFrame: 8}
	be4    = Config{Kind: Length, LengthBytes: 4, BigEndian: true, MaxFrame: 8}
	le4    = Config{Kind: Length, LengthBytes: 4, MaxFrame: 8}
	none0  = Config{Kind: None}
	none3  = Config{Kind: None, MaxFrame: 3}
	line3  = Config{Kind: Line, MaxFrame: 3}
	le4big = Config{Kind: Length, LengthBytes: 4, MaxFrame: 1 << 20}
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		err  string // substring; "" for valid
	}{
		{"zero value", Config{}, ""},
		{"none with cap", none3, ""},
		{"none negative", Config{Kind: None, MaxFrame: -1}, "max frame is -1"},
		{"line", line8, ""},
		{"line ignores length fields", Config{Kind: Line, LengthBytes: 3, BigEndian: true, MaxFrame: 1}, ""},
		{"line without max", Config{Kind: Line}, "line framing needs a max frame size > 0, have 0"},
		{"length 2", be2, ""},
		{"length 4", le4, ""},
		{"length 3", Config{Kind: Length, LengthBytes: 3, MaxFrame: 8}, "length prefix of 3 bytes, want 2 or 4"},
		{"length 0", Config{Kind: Length, MaxFrame: 8}, "length prefix of 0 bytes"},
		{"length without max", Config{Kind: Length, LengthBytes: 2, MaxFrame: -5}, "length framing needs a max frame size > 0, have -5"},
		{"unknown kind", Config{Kind: 7, MaxFrame: 8}, "unknown kind 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			_, nerr := NewDecoder(tt.c)
			if tt.err == "" {
				if err != nil || nerr != nil {
					t.Fatalf("Validate() = %v, NewDecoder error %v; want nil", err, nerr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "framing: ") {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.err)
			}
			if nerr == nil || nerr.Error() != err.Error() {
				t.Fatalf("NewDecoder error %v, want %v", nerr, err)
			}
		})
	}
}

// decodeChunks feeds chunks one by one, draining Next after each, and
// returns the frames (copied) and the error, if any.
func decodeChunks(t testing.TB, c Config, chunks [][]byte) (frames []string, err error) {
	t.Helper()
	d, err := NewDecoder(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chunks {
		d.Feed(ch)
		for {
			f, ok, err := d.Next()
			if err != nil {
				return frames, err
			}
			if !ok {
				break
			}
			if c.MaxFrame > 0 && len(f) > c.MaxFrame {
				t.Fatalf("frame of %d bytes, max %d", len(f), c.MaxFrame)
			}
			if f == nil {
				t.Fatal("ok frame is nil")
			}
			frames = append(frames, string(f))
		}
	}
	return frames, nil
}

func bytewise(s string) [][]byte {
	var out [][]byte
	for i := range len(s) {
		out = append(out, []byte{s[i]})
	}
	return out
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name     string
		c        Config
		stream   string
		want     []string
		tooLarge bool
		buffered int // after all frames, if no error
	}{
		{"line", line8, "a\nbc\n", []string{"a", "bc"}, false, 0},
		{"line crlf", line8, "a\r\nbc\r\n", []string{"a", "bc"}, false, 0},
		{"line mixed endings", line8, "a\r\nb\nc\r\n", []string{"a", "b", "c"}, false, 0},
		{"empty lines", line8, "\n\r\n\n", []string{"", "", ""}, false, 0},
		{"cr inside a line is kept", line8, "a\rb\n", []string{"a\rb"}, false, 0},
		{"only the last cr is trimmed", line8, "\r\r\n", []string{"\r"}, false, 0},
		{"partial line stays buffered", line8, "a\nbcd", []string{"a"}, false, 3},
		{"max size line", line3, "abc\nabc\r\n", []string{"abc", "abc"}, false, 0},
		{"max size line waits for lf after cr", line3, "abc\r", nil, false, 4},
		{"line too large at newline", line3, "ok\nabcd\n", []string{"ok"}, true, 0},
		{"line too large without newline", line3, "ok\nabcd", []string{"ok"}, true, 0},
		{"line too large, cr not last", line3, "abc\rd", nil, true, 0},
		{"frames after the error are not returned", line3, "abcd\nok\n", nil, true, 0},
		{"length 2 big endian", be2, "\x00\x01a\x00\x02bc", []string{"a", "bc"}, false, 0},
		{"length 2 little endian", le2, "\x01\x00a\x02\x00bc", []string{"a", "bc"}, false, 0},
		{"length 4 big endian", be4, "\x00\x00\x00\x03abc", []string{"abc"}, false, 0},
		{"length 4 little endian", le4, "\x03\x00\x00\x00abc\x01\x00\x00\x00z", []string{"abc", "z"}, false, 0},
		{"length zero frames", le4, "\x00\x00\x00\x00\x00\x00\x00\x00", []string{"", ""}, false, 0},
		{"length content may hold anything", be2, "\x00\x03\n\r\x00", []string{"\n\r\x00"}, false, 0},
		{"length max size", be2, "\x00\x0812345678", []string{"12345678"}, false, 0},
		{"length partial prefix", le4, "\x01\x00\x00\x00a\x00\x00", []string{"a"}, false, 2},
		{"length partial content", be2, "\x00\x03ab", nil, false, 4},
		{"length too large", be2, "\x00\x01a\x00\x09", []string{"a"}, true, 0},
		{"length 4 too large, top byte", le4, "\x00\x00\x00\x80", nil, true, 0},
		{"length 4 max uint32", be4, "\xff\xff\xff\xff", nil, true, 0},
		{"length 4 large limit", le4big, "\x05\x00\x00\x00hello", []string{"hello"}, false, 0},
	}
	for _, tt := range tests {
		modes := map[string][][]byte{
			"one feed":     {[]byte(tt.stream)},
			"byte by byte": bytewise(tt.stream),
			"halves":       {[]byte(tt.stream[:len(tt.stream)/2]), []byte(tt.stream[len(tt.stream)/2:])},
		}
		for mode, chunks := range modes {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				got, err := decodeChunks(t, tt.c, chunks)
				if !slices.Equal(got, tt.want) {
					t.Errorf("frames %q, want %q", got, tt.want)
				}
				if tt.tooLarge != errors.Is(err, ErrFrameTooLarge) || !tt.tooLarge && err != nil {
					t.Fatalf("error %v, want too large %v", err, tt.tooLarge)
				}
				if !tt.tooLarge {
					d, _ := NewDecoder(tt.c)
					d.Feed([]byte(tt.stream))
					for {
						if _, ok, _ := d.Next(); !ok {
							break
						}
					}
					if d.Buffered() != tt.buffered {
						t.Errorf("Buffered() = %d, want %d", d.Buffered(), tt.buffered)
					}
				}
			})
		}
	}
}

func TestNone(t *testing.T) {
	tests := []struct {
		c      Config
		chunks []string
		want   []string
	}{
		{none0, []string{"abc", "", "defgh"}, []string{"abc", "defgh"}},
		{none3, []string{"abcdefg", "h"}, []string{"abc", "def", "g", "h"}},
		{none3, []string{"ab", "c"}, []string{"ab", "c"}},
	}
	for i, tt := range tests {
		var chunks [][]byte
		for _, s := range tt.chunks {
			chunks = append(chunks, []byte(s))
		}
		got, err := decodeChunks(t, tt.c, chunks)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%d: frames %q, %v; want %q", i, got, err, tt.want)
		}
	}
}

// TestSplitAnywhere cuts an encoded stream into three chunks at every pair
// of positions and checks that the frames come out the same.
func TestSplitAnywhere(t *testing.T) {
	frames := []string{"", "a", "hello", "x\ry", "12345678", "", "\x00\xff"}
	for _, c := range []Config{line8, be2, le2, be4, le4} {
		var wire []byte
		for _, f := range frames {
			wire = Append(wire, c, []byte(f))
		}
		for i := 0; i <= len(wire); i++ {
			for j := i; j <= len(wire); j++ {
				got, err := decodeChunks(t, c, [][]byte{wire[:i], wire[i:j], wire[j:]})
				if err != nil || !slices.Equal(got, frames) {
					t.Fatalf("%+v split at %d, %d: frames %q, %v; want %q", c, i, j, got, err, frames)
				}
			}
		}
	}
}

func TestTooLargeDetectedEarly(t *testing.T) {
	t.Run("line", func(t *testing.T) {
		d, _ := NewDecoder(line8)
		d.Feed([]byte("12345678"))
		if _, ok, err := d.Next(); ok || err != nil {
			t.Fatalf("8 bytes: ok %v, err %v; want waiting", ok, err)
		}
		d.Feed([]byte("9"))
		_, ok, err := d.Next()
		if ok || !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("9 bytes: ok %v, err %v; want too large", ok, err)
		}
		want := "framing: frame too large: line of 9 bytes and no newline yet, limit 8"
		if err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		// Sticky, and further input is dropped.
		d.Feed([]byte("\n"))
		if _, _, err2 := d.Next(); err2 != err {
			t.Errorf("second Next error %v, want %v", err2, err)
		}
		if d.Buffered() != 9 {
			t.Errorf("Buffered() = %d after the error, want 9", d.Buffered())
		}
	})
	t.Run("line cr may precede lf", func(t *testing.T) {
		d, _ := NewDecoder(line8)
		d.Feed([]byte("12345678\r"))
		if _, ok, err := d.Next(); ok || err != nil {
			t.Fatalf("8 bytes and cr: ok %v, err %v; want waiting", ok, err)
		}
		d.Feed([]byte("\n"))
		if f, ok, err := d.Next(); !ok || err != nil || string(f) != "12345678" {
			t.Fatalf("Next() = %q, %v, %v", f, ok, err)
		}
	})
	t.Run("length", func(t *testing.T) {
		d, _ := NewDecoder(le4)
		d.Feed([]byte{9, 0, 0, 0})
		_, ok, err := d.Next()
		if ok || !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("ok %v, err %v; want too large before the content", ok, err)
		}
		want := "framing: frame too large: length prefix declares 9 bytes, limit 8"
		if err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	})
}

func TestFeedCopies(t *testing.T) {
	d, _ := NewDecoder(line8)
	b := []byte("abc")
	d.Feed(b)
	copy(b, "xyz\n")
	d.Feed([]byte("\n"))
	if f, ok, err := d.Next(); !ok || err != nil || string(f) != "abc" {
		t.Fatalf("Next() = %q, %v, %v; want abc", f, ok, err)
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	for _, c := range []Config{line8, be2, le4, none3} {
		var wire []byte
		for _, f := range []string{"abc", "", "12345678", "z"} {
			wire = Append(wire, c, []byte(f))
		}
		// Feed in uneven pieces so that partial frames stay buffered
		// across calls.
		cut1, cut2 := len(wire)/3, len(wire)*2/3+1
		d, _ := NewDecoder(c)
		n := 0
		run := func() {
			for _, piece := range [][]byte{wire[:cut1], wire[cut1:cut2], wire[cut2:]} {
				d.Feed(piece)
				for {
					f, ok, err := d.Next()
					if err != nil {
						t.Fatal(err)
					}
					if !ok {
						break
					}
					n += len(f) + 1
				}
			}
		}
		run() // let the buffer grow
		if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", c.Kind, allocs)
		}
		if d.Buffered() != 0 {
			t.Errorf("%s: %d bytes left", c.Kind, d.Buffered())
		}
	}
}

func TestAppend(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, 0x10000)
	tests := []struct {
		c     Config
		frame []byte
		want  string
	}{
		{none0, []byte("ab"), "pre:ab"},
		{line8, []byte("ab"), "pre:ab\n"},
		{line8, nil, "pre:\n"},
		{be2, []byte("ab"), "pre:\x00\x02ab"},
		{le2, []byte("ab"), "pre:\x02\x00ab"},
		{be4, []byte("ab"), "pre:\x00\x00\x00\x02ab"},
		{le4, []byte("ab"), "pre:\x02\x00\x00\x00ab"},
		{le4, nil, "pre:\x00\x00\x00\x00"},
		{be2, big, "pre:"}, // does not fit in 2 bytes
		{Config{Kind: Length, LengthBytes: 3}, []byte("ab"), "pre:"},
		{Config{Kind: 9}, []byte("ab"), "pre:"},
	}
	for i, tt := range tests {
		if got := Append([]byte("pre:"), tt.c, tt.frame); string(got) != tt.want {
			t.Errorf("%d: Append(%+v, %.10q) = %.20q, want %q", i, tt.c, tt.frame, got, tt.want)
		}
	}
	got := Append(nil, le4big, big)
	if len(got) != 4+len(big) || !bytes.Equal(got[:4], []byte{0, 0, 1, 0}) {
		t.Errorf("Append of 64 KiB with 4-byte prefix: %x...", got[:4])
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{None: "none", Line: "line", Length: "length", 5: "Kind(5)"} {
		if got := fmt.Sprint(k); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
