package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzUnits checks the parsers of the configuration's unit types,
// ParseDuration, ParseByteSize and ParseRate, on any string:
//
//   - they never panic, and refuse what they cannot represent (no
//     negative duration or size, a rate's amount and period positive);
//   - their String forms parse back to the same value, as their docs say
//     (so yaml.Marshal of a parsed config reads back, which FuzzParse
//     checks on whole documents);
//   - the YAML scalar of the same text decodes to the same value.
func FuzzUnits(f *testing.F) {
	for _, s := range []string{
		"30s", "1m30s", "500ms", "2h", "30", "-1", "-0", "+5", " 7 ", "9223372036854775807", "9223372036", "1.5h", "0",
		"64MiB", "1KB", "1 kib", "100b", "1.5MB", "8589934591GiB", "8589934592GiB", "KB", "",
		"1000/s", "64KB/s", "100/10s", "1/1.5s", "5/0s", "0/s", "1/-1s", "1/m", "2 / h", "1GiB/1ns", "x/s", "/s", "1/",
		"9223372036854775807/s", "1/s/s", "1/1e3s", "1/.5s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		node := &yaml.Node{Kind: yaml.ScalarNode, Value: s}
		if d, err := ParseDuration(s); err == nil {
			if d < 0 {
				t.Fatalf("ParseDuration(%q) = %v", s, d)
			}
			if back, err := ParseDuration(d.String()); err != nil || back != d {
				t.Fatalf("ParseDuration(%q) = %v, whose String %q parses to %v, %v", s, d, d.String(), back, err)
			}
			var y Duration
			if err := y.UnmarshalYAML(node); err != nil || y != d {
				t.Fatalf("YAML %q: %v, %v", s, y, err)
			}
		}
		if b, err := ParseByteSize(s); err == nil {
			if b < 0 {
				t.Fatalf("ParseByteSize(%q) = %d", s, b)
			}
			if back, err := ParseByteSize(b.String()); err != nil || back != b {
				t.Fatalf("ParseByteSize(%q) = %d, whose String %q parses to %d, %v", s, b, b.String(), back, err)
			}
			var y ByteSize
			if err := y.UnmarshalYAML(node); err != nil || y != b {
				t.Fatalf("YAML %q: %v, %v", s, y, err)
			}
		}
		r, err := ParseRate(s)
		if err != nil {
			if strings.TrimSpace(s) == "" {
				var y Rate
				if err := y.UnmarshalYAML(node); err != nil || !y.IsZero() {
					t.Fatalf("YAML %q: %+v, %v (want unset)", s, y, err)
				}
			}
			return
		}
		if r.Amount <= 0 || r.Period <= 0 || r.PerSecond() <= 0 {
			t.Fatalf("ParseRate(%q) = %+v", s, r)
		}
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %+v, whose String %q parses to %+v, %v", s, r, r.String(), back, err)
		}
		var y Rate
		if err := y.UnmarshalYAML(node); err != nil || y != r {
			t.Fatalf("YAML %q: %+v, %v", s, y, err)
		}
	})
}
