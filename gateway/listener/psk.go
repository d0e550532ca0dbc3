package listener

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// LoadPSKFile reads a table of DTLS pre-shared keys for DTLSConfig.PSK.
// It is safe for concurrent use (it only reads the file).
//
// The file is UTF-8 text, one entry per line:
//
//	# comment
//	identity:hexkey
//
// The identity is everything before the last ':' and the key, in hex (upper
// or lower case, an even number of digits), everything after it; spaces
// around either are ignored, so an identity may contain ':' but not begin
// or end with a space. Blank lines and lines whose first non-blank
// character is '#' are skipped; a '#' elsewhere is part of the line.
// Identities must be unique and neither identities nor keys may be empty.
// Errors name the file and the line number. Keep the file readable by the
// gateway only: it holds secrets.
func LoadPSKFile(path string) (map[string][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("listener: psk file: %w", err)
	}
	return parsePSK(path, data)
}

func parsePSK(name string, data []byte) (map[string][]byte, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	table := make(map[string][]byte)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ':')
		if i < 0 {
			return nil, fmt.Errorf("listener: psk file %s:%d: want identity:hexkey", name, n)
		}
		id, hexKey := strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		if id == "" {
			return nil, fmt.Errorf("listener: psk file %s:%d: empty identity", name, n)
		}
		if hexKey == "" {
			return nil, fmt.Errorf("listener: psk file %s:%d: identity %q has an empty key", name, n, id)
		}
		key, err := hex.DecodeString(hexKey)
		if err != nil {
			return nil, fmt.Errorf("listener: psk file %s:%d: key of identity %q: %w", name, n, id, err)
		}
		if _, dup := table[id]; dup {
			return nil, fmt.Errorf("listener: psk file %s:%d: identity %q appears twice", name, n, id)
		}
		table[id] = key
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("listener: psk file %s:%d: %w", name, n+1, err)
	}
	return table, nil
}
