package listener

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadPSKFile(t *testing.T) {
	table, err := LoadPSKFile(filepath.Join("testdata", "psk.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"sensor-7":            {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
		"urn:dev:ops:32473-1": {0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11},
	}
	if len(table) != len(want) {
		t.Fatalf("got %d entries: %v", len(table), table)
	}
	for id, key := range want {
		if !bytes.Equal(table[id], key) {
			t.Errorf("%q: got %x, want %x", id, table[id], key)
		}
	}
	// The table works as DTLSConfig.PSK.
	if _, err := NewDTLS(DTLSConfig{PSK: table}); err != nil {
		t.Fatal(err)
	}

	if _, err := LoadPSKFile(filepath.Join("testdata", "missing.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParsePSKErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"a:00\nno separator\n", "x:2: want identity:hexkey"},
		{"# c\n\n:0011\n", "x:3: empty identity"},
		{"a:\n", `x:1: identity "a" has an empty key`},
		{"a:0g\n", `x:1: key of identity "a"`},
		{"a:001\n", `x:1: key of identity "a"`},
		{"a:00\r\nb:01\r\na:02\r\n", `x:3: identity "a" appears twice`},
	} {
		_, err := parsePSK("x", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "listener: psk file ") {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
	table, err := parsePSK("x", []byte("\uFEFFa#b:00\r\n"))
	if err != nil || len(table) != 1 || table["a#b"] == nil {
		t.Fatalf("BOM, CRLF and '#' inside an identity: %v, %v", table, err)
	}
}
