package framing

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// fuzzConfig turns fuzzer-chosen numbers into a valid Config with a small
// MaxFrame, so that short inputs reach the size limits.
func fuzzConfig(kind uint8, wide, bigEndian bool, maxFrame uint8) Config {
	c := Config{Kind: Kind(kind % 3), LengthBytes: 2, BigEndian: bigEndian, MaxFrame: int(maxFrame % 64)}
	if wide {
		c.LengthBytes = 4
	}
	if c.Kind != None {
		c.MaxFrame++
	}
	return c
}

// chunk splits b into pieces whose sizes the bytes of sizes choose; with no
// sizes, b is one piece.
func chunk(b, sizes []byte) [][]byte {
	if len(sizes) == 0 {
		return [][]byte{b}
	}
	var out [][]byte
	for i := 0; len(b) > 0; i++ {
		n := int(sizes[i%len(sizes)] % 17)
		if n == 0 {
			out = append(out, nil) // an empty Feed
			n = 1
		}
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// toFrames splits payload at 0xff bytes into frames that Line framing can
// carry: no '\n', no trailing '\r'.
func toFrames(c Config, payload []byte) [][]byte {
	frames := bytes.Split(payload, []byte{0xff})
	if c.Kind != Line {
		return frames
	}
	for i, f := range frames {
		f = bytes.ReplaceAll(f, []byte{'\n'}, []byte{'N'})
		if len(f) > 0 && f[len(f)-1] == '\r' {
			f[len(f)-1] = 'R'
		}
		frames[i] = f
	}
	return frames
}

func FuzzDecoder(f *testing.F) {
	f.Add(uint8(1), false, false, uint8(8), []byte("hello\xffworld\xff\xff"), []byte{1, 2, 3})
	f.Add(uint8(2), true, false, uint8(8), []byte("abc\xff\xff123456789"), []byte{0, 5})
	f.Add(uint8(2), false, true, uint8(3), []byte("\x00\x02ab\x00\x04"), []byte{1})
	f.Add(uint8(1), false, false, uint8(3), []byte("abc\r\nabcd\r\n"), []byte{})
	f.Add(uint8(0), false, false, uint8(4), []byte("raw bytes\n"), []byte{7})
	f.Fuzz(func(t *testing.T, kind uint8, wide, bigEndian bool, maxFrame uint8, payload, sizes []byte) {
		c := fuzzConfig(kind, wide, bigEndian, maxFrame)

		// Frames encoded with Append come back the same however the
		// stream is split, up to the first one that is too large.
		frames := toFrames(c, bytes.Clone(payload))
		var wire []byte
		var want []string
		tooLarge := false
		for _, fr := range frames {
			wire = Append(wire, c, fr)
			if c.MaxFrame > 0 && len(fr) > c.MaxFrame {
				tooLarge = true
			}
			if !tooLarge {
				want = append(want, string(fr))
			}
		}
		got, err := decodeChunks(t, c, chunk(wire, sizes))
		if c.Kind == None {
			// Chunks depend on the split; only the bytes must match.
			if err != nil || !bytes.Equal([]byte(joined(got)), wire) {
				t.Fatalf("none: got %q, %v; want %q", got, err, wire)
			}
		} else {
			if tooLarge != errors.Is(err, ErrFrameTooLarge) || !tooLarge && err != nil {
				t.Fatalf("%+v: error %v, want too large %v", c, err, tooLarge)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%+v: frames %q, want %q", c, got, want)
			}
		}

		// Any stream at all decodes the same split or whole.
		whole, werr := decodeChunks(t, c, [][]byte{payload})
		split, serr := decodeChunks(t, c, chunk(payload, sizes))
		if (werr == nil) != (serr == nil) {
			t.Fatalf("%+v: error whole %v, split %v", c, werr, serr)
		}
		if c.Kind == None {
			whole, split = []string{joined(whole)}, []string{joined(split)}
		}
		if !slices.Equal(whole, split) {
			t.Fatalf("%+v: frames whole %q, split %q", c, whole, split)
		}
	})
}

func joined(frames []string) string {
	var b bytes.Buffer
	for _, f := range frames {
		b.WriteString(f)
	}
	return b.String()
}
