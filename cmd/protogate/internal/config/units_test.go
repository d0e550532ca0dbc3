package config

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"30s", 30 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"2h", 2 * time.Hour, ""},
		{"1.5s", 1500 * time.Millisecond, ""},
		{"0", 0, ""},
		{"0s", 0, ""},
		{"30", 30 * time.Second, ""},
		{"+30", 30 * time.Second, ""},
		{" 45 ", 45 * time.Second, ""},
		{"9223372036", 9223372036 * time.Second, ""},
		{"9223372037", 0, `duration "9223372037" is out of range`},
		{"99999999999999999999", 0, `duration "99999999999999999999" is out of range`},
		{"-1", 0, `duration "-1" must not be negative`},
		{"-1s", 0, `duration "-1s" must not be negative`},
		{"", 0, `invalid duration ""`},
		{"s", 0, `invalid duration "s"`},
		{"30 s", 0, `invalid duration "30 s"`},
		{"1d", 0, `invalid duration "1d"`},
		{"1.5", 0, `invalid duration "1.5"`},
		{"infinity", 0, `invalid duration "infinity"`},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || time.Duration(got) != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		// String round-trips.
		if back, err := ParseDuration(got.String()); err != nil || back != got {
			t.Errorf("ParseDuration(%q.String() = %q) = %v, %v", tt.in, got.String(), back, err)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		str     string
		wantErr string
	}{
		{"0", 0, "0B", ""},
		{"1", 1, "1B", ""},
		{"1048576", MiB, "1MiB", ""},
		{"100B", 100, "100B", ""},
		{"1b", 1, "1B", ""},
		{"1KB", 1024, "1KiB", ""},
		{"1kb", 1024, "1KiB", ""},
		{"1KiB", 1024, "1KiB", ""},
		{"1kib", 1024, "1KiB", ""},
		{"1536KB", 1536 * 1024, "1536KiB", ""},
		{"1MB", 1 << 20, "1MiB", ""},
		{"64MiB", 64 << 20, "64MiB", ""},
		{"64 MiB", 64 << 20, "64MiB", ""},
		{"2GB", 2 << 30, "2GiB", ""},
		{"2gib", 2 << 30, "2GiB", ""},
		{"1025", 1025, "1025B", ""},
		{"8589934591GiB", 8589934591 << 30, "8589934591GiB", ""},
		{"8589934592GiB", 0, "", `byte size "8589934592GiB" is out of range`},
		{"99999999999999999999", 0, "", `byte size "99999999999999999999" is out of range`},
		{"", 0, "", `invalid byte size ""`},
		{"MB", 0, "", `invalid byte size "MB"`},
		{"-1", 0, "", `invalid byte size "-1"`},
		{"1.5MB", 0, "", `invalid byte size "1.5MB"`},
		{"1TB", 0, "", `invalid byte size "1TB"`},
		{"1M", 0, "", `invalid byte size "1M"`},
		{"1 M B", 0, "", `invalid byte size "1 M B"`},
		{"0x10", 0, "", `invalid byte size "0x10"`},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseByteSize(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want || got.String() != tt.str {
			t.Errorf("ParseByteSize(%q) = %d (%v), %v; want %d (%s)", tt.in, got, got, err, tt.want, tt.str)
			continue
		}
		if back, err := ParseByteSize(got.String()); err != nil || back != got {
			t.Errorf("ParseByteSize(%q) = %v, %v", got.String(), back, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in        string
		want      Rate
		perSecond float64
		str       string
		wantErr   string
	}{
		{"1000/s", Rate{Amount: 1000, Period: time.Second}, 1000, "1000/s", ""},
		{"64KB/s", Rate{Amount: 64 << 10, Bytes: true, Period: time.Second}, 65536, "64KiB/s", ""},
		{"64kib/s", Rate{Amount: 64 << 10, Bytes: true, Period: time.Second}, 65536, "64KiB/s", ""},
		{"1MB/s", Rate{Amount: 1 << 20, Bytes: true, Period: time.Second}, 1 << 20, "1MiB/s", ""},
		{"100B/s", Rate{Amount: 100, Bytes: true, Period: time.Second}, 100, "100B/s", ""},
		{"60/m", Rate{Amount: 60, Period: time.Minute}, 1, "60/m", ""},
		{"3600/h", Rate{Amount: 3600, Period: time.Hour}, 1, "3600/h", ""},
		{"100/10s", Rate{Amount: 100, Period: 10 * time.Second}, 10, "100/10s", ""},
		{"5/500ms", Rate{Amount: 5, Period: 500 * time.Millisecond}, 10, "5/500ms", ""},
		{"100/1m", Rate{Amount: 100, Period: time.Minute}, 100.0 / 60, "100/m", ""},
		{" 10 / s ", Rate{Amount: 10, Period: time.Second}, 10, "10/s", ""},
		{"1000", Rate{}, 0, "", `invalid rate "1000"`},
		{"/s", Rate{}, 0, "", `invalid rate "/s"`},
		{"10/", Rate{}, 0, "", `invalid rate "10/"`},
		{"10/d", Rate{}, 0, "", `invalid rate "10/d"`},
		{"10/sec", Rate{}, 0, "", `invalid rate "10/sec"`},
		{"10/-1s", Rate{}, 0, "", `invalid rate "10/-1s"`},
		{"10/0s", Rate{}, 0, "", `rate "10/0s": period must be positive`},
		{"0/s", Rate{}, 0, "", `rate "0/s": amount must be positive`},
		{"0KB/s", Rate{}, 0, "", `rate "0KB/s": amount must be positive`},
		{"-5/s", Rate{}, 0, "", `rate "-5/s": amount must be positive`},
		{"1.5/s", Rate{}, 0, "", `invalid rate "1.5/s"`},
		{"1XB/s", Rate{}, 0, "", `invalid rate "1XB/s"`},
		{"99999999999999999999/s", Rate{}, 0, "", `rate "99999999999999999999/s": amount is out of range`},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRate(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want || got.PerSecond() != tt.perSecond || got.String() != tt.str {
			t.Errorf("ParseRate(%q) = %+v (%v, %v/s), %v; want %+v (%s, %v/s)", tt.in, got, got, got.PerSecond(), err, tt.want, tt.str, tt.perSecond)
			continue
		}
		if back, err := ParseRate(got.String()); err != nil || back != got {
			t.Errorf("ParseRate(%q) = %v, %v", got.String(), back, err)
		}
	}
	var zero Rate
	if !zero.IsZero() || zero.PerSecond() != 0 {
		t.Errorf("zero Rate: IsZero %v, PerSecond %v", zero.IsZero(), zero.PerSecond())
	}
}

// TestUnitsYAML decodes the value types with yaml.v3 directly: errors carry
// the line, and Marshal writes the text forms.
func TestUnitsYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
		B ByteSize `yaml:"b"`
		R Rate     `yaml:"r"`
	}
	if err := yaml.Unmarshal([]byte("d: 90\nb: 2KB\nr: 64KB/s\n"), &v); err != nil {
		t.Fatal(err)
	}
	if time.Duration(v.D) != 90*time.Second || v.B != 2048 || v.R != (Rate{Amount: 65536, Bytes: true, Period: time.Second}) {
		t.Errorf("decoded %+v", v)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "d: 1m30s\nb: 2KiB\nr: 64KiB/s\n"; got != want {
		t.Errorf("Marshal = %q, want %q", got, want)
	}
	// An empty rate is unset, and an unset rate marshals as null.
	v.R = Rate{Amount: 1, Period: time.Second}
	if err := yaml.Unmarshal([]byte("r: ''\n"), &v); err != nil || !v.R.IsZero() {
		t.Errorf("empty rate: %+v, %v", v.R, err)
	}
	if out, err := yaml.Marshal(v); err != nil || !strings.Contains(string(out), "r: null\n") {
		t.Errorf("Marshal(zero rate) = %q, %v", out, err)
	}
	for _, tt := range []struct{ in, want string }{
		{"\n\nd: xs\n", "config: line 3: invalid duration \"xs\""},
		{"b: [1]\n", "config: line 1: want a byte size such as 1MiB, got a list"},
		{"\nr: {a: 1}\n", "config: line 2: want a rate such as 1000/s or 64KB/s, got a mapping"},
		{"d: {}\n", "config: line 1: want a duration such as 30s, got a mapping"},
		{"r: 1000\n", "config: line 1: invalid rate \"1000\""},
	} {
		err := yaml.Unmarshal([]byte(tt.in), &v)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Unmarshal(%q) = %v, want prefix %q", tt.in, err, tt.want)
		}
	}
}
