package gateway

// This file makes connection ids and handles: unique, never reused within
// a run, and unguessable. See RATIONALE.md, "Why are handles unguessable?".

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"strconv"
)

// idRounds is the number of Feistel rounds of idCipher: as many as FF1
// (NIST SP 800-38G), the standard format-preserving cipher built the same
// way.
const idRounds = 10

// idCipher is a keyed permutation of the 64-bit values: a balanced Feistel
// network over two 32-bit halves whose round function is AES-128 under a
// random key. Applied to a counter it yields ids that are distinct (a
// permutation maps distinct inputs to distinct outputs) but that tell
// nothing of each other to whoever lacks the key. It is safe for concurrent
// use.
type idCipher struct {
	b cipher.Block
}

// newIDCipher returns an idCipher with a fresh key from crypto/rand.
func newIDCipher() *idCipher {
	var key [16]byte
	rand.Read(key[:]) // never fails: crypto/rand crashes the program instead
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic("gateway: aes: " + err.Error()) // impossible with a 16-byte key
	}
	return &idCipher{b: b}
}

// round returns the round function of round i applied to x.
func (k *idCipher) round(buf *[aes.BlockSize]byte, i int, x uint32) uint32 {
	*buf = [aes.BlockSize]byte{0: byte(i)}
	binary.BigEndian.PutUint32(buf[1:], x)
	k.b.Encrypt(buf[:], buf[:])
	return binary.BigEndian.Uint32(buf[:])
}

// encrypt returns the image of v under the permutation.
func (k *idCipher) encrypt(v uint64) uint64 {
	var buf [aes.BlockSize]byte
	l, r := uint32(v>>32), uint32(v)
	for i := range idRounds {
		l, r = r, l^k.round(&buf, i, r)
	}
	return uint64(l)<<32 | uint64(r)
}

// decrypt inverts encrypt. Only tests use it, to show that encrypt is a
// permutation.
func (k *idCipher) decrypt(v uint64) uint64 {
	var buf [aes.BlockSize]byte
	l, r := uint32(v>>32), uint32(v)
	for i := idRounds - 1; i >= 0; i-- {
		l, r = r^k.round(&buf, i, l), l
	}
	return uint64(l)<<32 | uint64(r)
}

// nextID numbers a new connection: seq is its place in creation order
// (1, 2, 3, ...), id the unguessable id it is known by. Id 0 is never
// given, so that it can mean "no connection".
func (s *Server) nextID() (seq, id uint64) {
	for {
		seq = s.seq.Add(1)
		if id = s.ids.encrypt(seq); id != 0 {
			return seq, id
		}
	}
}

// formatHandle and parseHandle convert between a connection id and the
// opaque conn string handlers see: 16 lowercase hex digits.
func formatHandle(id uint64) string {
	var b [16]byte
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = digits[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

func parseHandle(h string) (uint64, bool) {
	if len(h) != 16 {
		return 0, false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return 0, false
		}
	}
	id, err := strconv.ParseUint(h, 16, 64)
	return id, err == nil
}
