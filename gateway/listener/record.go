package listener

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// recordHeaderLen is the size of a DTLS 1.0 or 1.2 record header (RFC 6347
// 4.1): content type (1), version (2), epoch (2), sequence number (6),
// length (2).
const recordHeaderLen = 13

// recordHeader is the header of one DTLS record.
type recordHeader struct {
	contentType uint8
	version     uint16 // 0xfeff is DTLS 1.0, 0xfefd DTLS 1.2
	epoch       uint16
	seq         uint64 // 48 bits
	length      int    // of the fragment that follows the header
}

// errRecordTruncated is wrapped by the error of parseRecordHeader on a
// buffer shorter than a header or than the record its header announces.
var errRecordTruncated = errors.New("listener: dtls record truncated")

// parseRecordHeader decodes the record header at the start of b and checks
// that the whole record (header and fragment) is in b. It does not check
// the content type or the version: the DTLS stack does.
func parseRecordHeader(b []byte) (recordHeader, error) {
	if len(b) < recordHeaderLen {
		return recordHeader{}, fmt.Errorf("%w: %d bytes, shorter than a header", errRecordTruncated, len(b))
	}
	h := recordHeader{
		contentType: b[0],
		version:     binary.BigEndian.Uint16(b[1:3]),
		epoch:       binary.BigEndian.Uint16(b[3:5]),
		seq:         uint64(binary.BigEndian.Uint16(b[5:7]))<<32 | uint64(binary.BigEndian.Uint32(b[7:11])),
		length:      int(binary.BigEndian.Uint16(b[11:13])),
	}
	if rest := len(b) - recordHeaderLen; h.length > rest {
		return recordHeader{}, fmt.Errorf("%w: %d bytes announced, %d present", errRecordTruncated, h.length, rest)
	}
	return h, nil
}

// dropEpoch0 removes the epoch-0 records of datagram b, in place, and
// returns the length of what is left: the other records, whole and in
// their order. A datagram that is not a sequence of whole records is
// dropped entirely (0), as the DTLS stack would discard it (RFC 6347
// 4.1.2.7).
func dropEpoch0(b []byte) int {
	n := 0
	for off := 0; off < len(b); {
		h, err := parseRecordHeader(b[off:])
		if err != nil {
			return 0
		}
		end := off + recordHeaderLen + h.length
		if h.epoch != 0 {
			n += copy(b[n:], b[off:end])
		}
		off = end
	}
	return n
}
