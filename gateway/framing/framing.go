// Package framing splits the byte stream of a TCP or TLS connection into
// frames, for protocols whose messages are newline-terminated lines or carry
// a length prefix. It is optional: with Kind None the stream is passed on as
// it arrives.
//
// A Decoder is fed the bytes each socket read returns and hands back whole
// frames, however the stream was split into reads. It bounds every frame by
// Config.MaxFrame and detects an oversized frame as early as the stream
// allows, so a peer cannot make it buffer more than about one frame.
package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind selects how a stream is split into frames.
type Kind int

const (
	// None passes the stream on unframed: Next returns whatever has been
	// fed, in chunks of at most MaxFrame bytes if MaxFrame is set.
	None Kind = iota
	// Line ends each frame with '\n'. A '\r' just before the '\n' is
	// trimmed too, so both "\n" and "\r\n" line endings work. An empty line
	// is an empty frame.
	Line
	// Length starts each frame with an unsigned length prefix of
	// Config.LengthBytes bytes that counts the content bytes only, not
	// itself.
	Length
)

// String returns the name of the kind as it is written in configuration:
// "none", "line" or "length".
func (k Kind) String() string {
	switch k {
	case None:
		return "none"
	case Line:
		return "line"
	case Length:
		return "length"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ErrFrameTooLarge reports a frame whose content is longer than
// Config.MaxFrame. Decoder.Next returns it wrapped, with the size and the
// limit.
var ErrFrameTooLarge = errors.New("framing: frame too large")

// Config describes the framing of one listener's connections. Its zero value
// is valid: no framing.
type Config struct {
	// Kind selects the framing.
	Kind Kind
	// LengthBytes is the size of the length prefix of Length framing, 2 or
	// 4. Other kinds ignore it.
	LengthBytes int
	// BigEndian selects a big-endian (network order) length prefix for
	// Length framing; false means little-endian. Other kinds ignore it.
	BigEndian bool
	// MaxFrame is the largest frame content, in bytes, that a Decoder
	// accepts: the line without its line ending, or what follows the length
	// prefix. It is required (> 0) for Line and Length. For None it is
	// optional and caps the chunks Next returns; 0 means no cap.
	MaxFrame int
}

// Validate reports whether c can be used, and if not, what is wrong.
func (c Config) Validate() error {
	switch c.Kind {
	case None:
		if c.MaxFrame < 0 {
			return fmt.Errorf("framing: max frame is %d, want 0 (no cap) or more", c.MaxFrame)
		}
		return nil
	case Line:
	case Length:
		if c.LengthBytes != 2 && c.LengthBytes != 4 {
			return fmt.Errorf("framing: length prefix of %d bytes, want 2 or 4", c.LengthBytes)
		}
	default:
		return fmt.Errorf("framing: unknown kind %d", int(c.Kind))
	}
	if c.MaxFrame <= 0 {
		return fmt.Errorf("framing: %s framing needs a max frame size > 0, have %d", c.Kind, c.MaxFrame)
	}
	return nil
}

// Decoder splits a stream into frames as Config describes. Create it with
// NewDecoder. A Decoder is not safe for concurrent use: one goroutine, the
// connection's reader, feeds it and takes frames out.
//
// The Decoder keeps one buffer that it reuses, so feeding it and taking
// frames out allocates nothing once the buffer has grown to the largest
// amount of data held at once. That amount is bounded by MaxFrame plus the
// size of one Feed only if the caller drains Next after every Feed.
type Decoder struct {
	c       Config
	buf     []byte
	r       int // buf[r:] has not been returned by Next yet
	scanned int // Line: buf[r:r+scanned] holds no '\n'
	err     error
}

// NewDecoder returns a Decoder for c, or the error of c.Validate.
func NewDecoder(c Config) (*Decoder, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &Decoder{c: c}, nil
}

// Feed appends b, bytes received from the stream, to what the decoder holds.
// It copies b, so the caller may reuse b once Feed returns. Feed invalidates
// the frame Next returned last. After Next has failed, Feed discards b.
func (d *Decoder) Feed(b []byte) {
	if d.err != nil || len(b) == 0 {
		return
	}
	switch {
	case d.r == len(d.buf):
		d.buf, d.r = d.buf[:0], 0
	case d.r > 0 && len(d.buf)+len(b) > cap(d.buf):
		// Move what is left to the front rather than growing the buffer:
		// the space frames already returned occupied is free again.
		n := copy(d.buf, d.buf[d.r:])
		d.buf, d.r = d.buf[:n], 0
	}
	d.buf = append(d.buf, b...)
}

// Next returns the content of the next whole frame: for Line without its
// line ending, for Length without its prefix. ok is false when the decoder
// needs more bytes first. A zero-length frame (an empty line, or a length
// prefix of 0) is returned as an empty, non-nil slice with ok true.
//
// The frame aliases the decoder's buffer: it is valid until the next call
// of Feed or Next, and the caller must copy what it keeps longer.
//
// Next fails with an error wrapping ErrFrameTooLarge as soon as the stream
// shows that a frame exceeds MaxFrame: for Length when the prefix declares
// too large a length, before the content arrives; for Line when more than
// MaxFrame content bytes have arrived with no '\n' (MaxFrame+1 bytes if the
// last one is a '\r' that a '\n' may still follow). The error is sticky: the
// stream cannot be resynchronized, and every later call returns it again.
func (d *Decoder) Next() (frame []byte, ok bool, err error) {
	if d.err != nil {
		return nil, false, d.err
	}
	switch d.c.Kind {
	case Line:
		return d.nextLine()
	case Length:
		return d.nextLength()
	}
	return d.nextChunk()
}

// Buffered returns the number of bytes fed but not yet returned by Next.
func (d *Decoder) Buffered() int { return len(d.buf) - d.r }

func (d *Decoder) nextLine() ([]byte, bool, error) {
	pending := d.buf[d.r:]
	i := bytes.IndexByte(pending[d.scanned:], '\n')
	if i < 0 {
		d.scanned = len(pending)
		limit := d.c.MaxFrame
		// The content is at least len(pending) bytes long, one less if
		// the last byte is a '\r' that turns out to precede the '\n'.
		if n := len(pending); n > limit+1 || n == limit+1 && pending[n-1] != '\r' {
			d.err = fmt.Errorf("%w: line of %d bytes and no newline yet, limit %d", ErrFrameTooLarge, n, limit)
			return nil, false, d.err
		}
		return nil, false, nil
	}
	end := d.scanned + i
	line := pending[:end]
	if end > 0 && line[end-1] == '\r' {
		line = line[:end-1]
	}
	if len(line) > d.c.MaxFrame {
		d.err = fmt.Errorf("%w: line of %d bytes, limit %d", ErrFrameTooLarge, len(line), d.c.MaxFrame)
		return nil, false, d.err
	}
	d.r += end + 1
	d.scanned = 0
	return line, true, nil
}

func (d *Decoder) nextLength() ([]byte, bool, error) {
	pending := d.buf[d.r:]
	nb := d.c.LengthBytes
	if len(pending) < nb {
		return nil, false, nil
	}
	var n uint64
	switch {
	case nb == 2 && d.c.BigEndian:
		n = uint64(binary.BigEndian.Uint16(pending))
	case nb == 2:
		n = uint64(binary.LittleEndian.Uint16(pending))
	case d.c.BigEndian:
		n = uint64(binary.BigEndian.Uint32(pending))
	default:
		n = uint64(binary.LittleEndian.Uint32(pending))
	}
	if n > uint64(d.c.MaxFrame) {
		d.err = fmt.Errorf("%w: length prefix declares %d bytes, limit %d", ErrFrameTooLarge, n, d.c.MaxFrame)
		return nil, false, d.err
	}
	end := nb + int(n)
	if len(pending) < end {
		return nil, false, nil
	}
	d.r += end
	return pending[nb:end], true, nil
}

func (d *Decoder) nextChunk() ([]byte, bool, error) {
	pending := d.buf[d.r:]
	if len(pending) == 0 {
		return nil, false, nil
	}
	if d.c.MaxFrame > 0 && len(pending) > d.c.MaxFrame {
		pending = pending[:d.c.MaxFrame]
	}
	d.r += len(pending)
	return pending, true, nil
}

// Append appends frame, encoded as c describes, to dst and returns the
// extended slice: for Line, frame and '\n'; for Length, the length prefix and
// frame; for None, frame as is.
//
// Append trusts its caller to pass a valid c and a frame that the framing
// can carry: for Line, one that contains no '\n' and does not end in '\r'
// (either would decode differently); for Length, one whose length fits in
// LengthBytes. It returns dst unchanged for a frame longer than the prefix
// can express, or for an invalid Kind or LengthBytes, rather than write a
// stream that would not decode. It does not check MaxFrame, so tests can
// encode frames that a Decoder refuses.
func Append(dst []byte, c Config, frame []byte) []byte {
	switch c.Kind {
	case None:
		return append(dst, frame...)
	case Line:
		dst = append(dst, frame...)
		return append(dst, '\n')
	case Length:
		n := uint64(len(frame))
		switch {
		case c.LengthBytes == 2 && n <= 0xffff && c.BigEndian:
			dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		case c.LengthBytes == 2 && n <= 0xffff:
			dst = binary.LittleEndian.AppendUint16(dst, uint16(n))
		case c.LengthBytes == 4 && n <= 0xffffffff && c.BigEndian:
			dst = binary.BigEndian.AppendUint32(dst, uint32(n))
		case c.LengthBytes == 4 && n <= 0xffffffff:
			dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
		default:
			return dst
		}
		return append(dst, frame...)
	}
	return dst
}
