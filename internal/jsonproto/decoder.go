package jsonproto

import (
	"errors"
	"fmt"
)

// DefaultMaxSize is the default limit, in bytes, on one frame and on the bytes
// a [Decoder] buffers while waiting for the end of a frame.
const DefaultMaxSize = 64 << 10

// Decoder reassembles frames from a byte stream that arrives in arbitrary
// chunks: one object per chunk, several objects in one chunk, or one object
// split over many chunks. Objects may be separated by whitespace and by the
// "##" delimiter; neither is required.
//
// Use it as
//
//	d.Feed(chunk)
//	for {
//		f, ok, err := d.Next()
//		if err != nil { /* close the connection */ }
//		if !ok { break } // wait for the next chunk
//		handle(f)
//	}
//
// Errors are sticky: after Next returns an error, it returns the same error
// forever. Garbage is detected as early as possible (a byte that cannot appear
// in JSON outside a string is an error at once), but an object that starts
// well and never ends is only reported once it exceeds the maximum size.
//
// The zero Decoder is ready to use with [DefaultMaxSize]. A Decoder is not safe
// for concurrent use.
type Decoder struct {
	max int    // maximum frame size; 0 means DefaultMaxSize
	buf []byte // buf[off:] holds the unconsumed bytes
	off int
	err error

	// Scanner state for the object at buf[off:], kept between calls to Next
	// so that a frame fed byte by byte is scanned in linear time.
	scan     int    // bytes of buf[off:] already scanned; 0 means not started
	open     []byte // stack of the '{' and '[' not closed yet
	inString bool
	escape   bool
}

// NewDecoder returns a Decoder that rejects frames larger than maxSize bytes.
// maxSize <= 0 selects [DefaultMaxSize].
func NewDecoder(maxSize int) *Decoder {
	return &Decoder{max: maxSize}
}

// Feed appends b to the decoder's buffer. The decoder copies b, so the caller
// may reuse it. Callers should drain [Decoder.Next] after every Feed; the size
// limit is enforced by Next, not by Feed.
func (d *Decoder) Feed(b []byte) {
	if d.err != nil || len(b) == 0 {
		return
	}
	if d.off > 0 && d.off == len(d.buf) {
		d.buf, d.off = d.buf[:0], 0
	} else if d.off > 0 && len(d.buf)+len(b) > cap(d.buf) {
		// Compact before growing.
		n := copy(d.buf, d.buf[d.off:])
		d.buf, d.off = d.buf[:n], 0
	}
	d.buf = append(d.buf, b...)
}

// Buffered returns the number of bytes fed but not yet consumed.
func (d *Decoder) Buffered() int { return len(d.buf) - d.off }

// Reset discards buffered bytes and any error, keeping the size limit.
func (d *Decoder) Reset() {
	*d = Decoder{max: d.max, buf: d.buf[:0], open: d.open[:0]}
}

func (d *Decoder) maxSize() int {
	if d.max <= 0 {
		return DefaultMaxSize
	}
	return d.max
}

// Next returns the next complete frame. ok is false, with a nil error, when
// more bytes are needed. A non-nil error means the stream is not valid JSON
// test protocol (garbage, an unknown frame type, a missing member, or a frame
// larger than the limit, reported as [ErrFrameTooLarge]); the caller should
// close the connection.
func (d *Decoder) Next() (f Frame, ok bool, err error) {
	if d.err != nil {
		return Frame{}, false, d.err
	}
	if d.scan == 0 {
		if !d.skipSeparators() {
			return Frame{}, false, d.err
		}
		if d.off == len(d.buf) || (d.off+1 == len(d.buf) && d.buf[d.off] == '#') {
			return Frame{}, false, nil
		}
		if c := d.buf[d.off]; c != '{' {
			return Frame{}, false, d.fail(fmt.Errorf("jsonproto: unexpected byte %q before frame", c))
		}
	}
	end, err := d.scanObject()
	if err != nil {
		return Frame{}, false, d.fail(err)
	}
	if end < 0 {
		return Frame{}, false, nil
	}
	obj := d.buf[d.off : d.off+end]
	d.off += end
	d.scan, d.open, d.inString, d.escape = 0, d.open[:0], false, false
	f, err = decodeObject(obj)
	if err != nil {
		return Frame{}, false, d.fail(err)
	}
	return f, true, nil
}

func (d *Decoder) fail(err error) error {
	d.err = err
	return err
}

// skipSeparators consumes whitespace and "##" delimiters before a frame. It
// returns false (with d.err set) on a lone '#' followed by something else; a
// lone '#' at the end of the buffer is left for the next Feed.
func (d *Decoder) skipSeparators() bool {
	for d.off < len(d.buf) {
		switch d.buf[d.off] {
		case ' ', '\t', '\r', '\n':
			d.off++
		case '#':
			if d.off+1 == len(d.buf) {
				return true // wait for the second '#'
			}
			if d.buf[d.off+1] != '#' {
				d.err = errors.New(`jsonproto: malformed "##" delimiter`)
				return false
			}
			d.off += 2
		default:
			return true
		}
	}
	return true
}

// scanObject continues scanning the object that starts at buf[off]. It
// returns the object's length once its closing brace is seen, or -1 if more
// bytes are needed.
func (d *Decoder) scanObject() (int, error) {
	limit := d.maxSize()
	data := d.buf[d.off:]
	// The initial '{' has been checked by Next.
	for i := d.scan; i < len(data); i++ {
		if i >= limit {
			return -1, fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, limit)
		}
		c := data[i]
		if d.inString {
			switch {
			case d.escape:
				d.escape = false
			case c == '\\':
				d.escape = true
			case c == '"':
				d.inString = false
			case c < 0x20:
				return -1, fmt.Errorf("jsonproto: control character %#x in string", c)
			}
			continue
		}
		switch c {
		case '"':
			d.inString = true
		case '{', '[':
			d.open = append(d.open, c)
		case '}', ']':
			want := byte('{')
			if c == ']' {
				want = '['
			}
			if len(d.open) == 0 || d.open[len(d.open)-1] != want {
				return -1, fmt.Errorf("jsonproto: mismatched %q in frame", c)
			}
			d.open = d.open[:len(d.open)-1]
			if len(d.open) == 0 {
				d.scan = i + 1
				return i + 1, nil
			}
		case ' ', '\t', '\r', '\n', ':', ',', '-', '+', '.',
			'0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
			// Letters of true, false, null and exponents.
			'a', 'e', 'E', 'f', 'l', 'n', 'r', 's', 't', 'u':
		default:
			return -1, fmt.Errorf("jsonproto: unexpected byte %q in frame", c)
		}
	}
	d.scan = len(data)
	return -1, nil
}
