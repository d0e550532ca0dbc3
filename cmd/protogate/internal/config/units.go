package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a non-negative time span. In YAML it is written as a Go
// duration string ("30s", "1m30s", "500ms", "2h") or as a bare integer
// meaning seconds (30 is the same as "30s"). Negative values are refused.
// Convert with time.Duration(d).
type Duration time.Duration

// ParseDuration parses the YAML text form of a [Duration].
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if isInteger(t) {
		secs, err := strconv.ParseInt(t, 10, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("duration %q is out of range", s)
		}
		if secs < 0 {
			return 0, fmt.Errorf("duration %q must not be negative", s)
		}
		return Duration(time.Duration(secs) * time.Second), nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || t == "" {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 30s, 1m30s, 500ms, or an integer number of seconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	return Duration(d), nil
}

// String formats d like time.Duration does ("30s", "1m30s"); the result
// parses back with [ParseDuration].
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler. Errors carry the node's line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errorf(n.Line, "", "want a duration such as 30s, got %s", describe(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return errorf(n.Line, "", "%s", err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler, writing the String form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a non-negative number of bytes. In YAML it is written as an
// integer number of bytes or as an integer with one of the units B, KB, KiB,
// MB, MiB, GB, GiB (case-insensitive, optional space before the unit).
//
// All units are binary, following the EMQX convention: KB and KiB both mean
// 1024 bytes, MB and MiB 1024*1024, GB and GiB 1024*1024*1024. Fractions
// ("1.5MB") are refused.
type ByteSize int64

// Byte size units. KB and KiB are the same (EMQX convention).
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// ParseByteSize parses the YAML text form of a [ByteSize].
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	var mult ByteSize
	switch strings.ToLower(strings.TrimSpace(t[i:])) {
	case "", "b":
		mult = 1
	case "kb", "kib":
		mult = KiB
	case "mb", "mib":
		mult = MiB
	case "gb", "gib":
		mult = GiB
	}
	if i == 0 || mult == 0 {
		return 0, fmt.Errorf("invalid byte size %q (want an integer with an optional unit B, KB, KiB, MB, MiB, GB or GiB; KB = KiB = 1024 bytes)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || ByteSize(n) > math.MaxInt64/mult {
		return 0, fmt.Errorf("byte size %q is out of range", s)
	}
	return ByteSize(n) * mult, nil
}

// String formats b with the largest binary unit that divides it exactly
// ("64MiB", "1536KiB", "100B"); the result parses back with [ParseByteSize].
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%GiB == 0:
		return strconv.FormatInt(int64(b/GiB), 10) + "GiB"
	case b != 0 && b%MiB == 0:
		return strconv.FormatInt(int64(b/MiB), 10) + "MiB"
	case b != 0 && b%KiB == 0:
		return strconv.FormatInt(int64(b/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML implements yaml.Unmarshaler. Errors carry the node's line.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errorf(n.Line, "", "want a byte size such as 1MiB, got %s", describe(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return errorf(n.Line, "", "%s", err)
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler, writing the String form.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// Rate is an amount per time period. In YAML it is written as
// "<amount>/<period>":
//
//   - the amount is either a plain positive integer, a count of events
//     ("1000/s": 1000 messages per second), or a [ByteSize] with a unit
//     ("64KB/s": 65536 bytes per second; KB = 1024 as everywhere);
//   - the period is "s", "m" or "h", or a positive Go duration such as
//     "10s" ("100/10s" is 10 per second).
//
// An empty string, like an absent key or null, leaves the Rate unset (the
// zero Rate, which a setting documents the meaning of, usually "no limit").
// Use PerSecond to obtain a token-bucket rate.
type Rate struct {
	// Amount is the number of events, or of bytes when Bytes is true, allowed
	// per Period. Always > 0 in a parsed Rate. Default: 0 (unset).
	Amount int64
	// Bytes is true when the amount was written with a size unit (B, KB,
	// MiB, ...) and so counts bytes rather than events. Default: false.
	Bytes bool
	// Period is the time window of Amount. Always > 0 in a parsed Rate.
	// Default: 0 (unset).
	Period time.Duration
}

// ParseRate parses the YAML text form of a [Rate].
func ParseRate(s string) (Rate, error) {
	bad := func() (Rate, error) {
		return Rate{}, fmt.Errorf("invalid rate %q (want <amount>/<period> such as 1000/s, 64KB/s or 100/10s)", s)
	}
	amount, period, ok := strings.Cut(s, "/")
	if !ok {
		return bad()
	}
	amount, period = strings.TrimSpace(amount), strings.TrimSpace(period)
	var r Rate
	switch period {
	case "s":
		r.Period = time.Second
	case "m":
		r.Period = time.Minute
	case "h":
		r.Period = time.Hour
	default:
		d, err := time.ParseDuration(period)
		if err != nil || period == "" || period[0] < '0' || period[0] > '9' {
			return bad()
		}
		r.Period = d
	}
	if r.Period <= 0 {
		return Rate{}, fmt.Errorf("rate %q: period must be positive", s)
	}
	if isInteger(amount) {
		n, err := strconv.ParseInt(amount, 10, 64)
		if err != nil {
			return Rate{}, fmt.Errorf("rate %q: amount is out of range", s)
		}
		r.Amount = n
	} else {
		b, err := ParseByteSize(amount)
		if err != nil {
			return bad()
		}
		r.Amount, r.Bytes = int64(b), true
	}
	if r.Amount <= 0 {
		return Rate{}, fmt.Errorf("rate %q: amount must be positive", s)
	}
	return r, nil
}

// PerSecond returns the rate in events (or bytes) per second, or 0 for an
// unset Rate.
func (r Rate) PerSecond() float64 {
	if r.Period <= 0 {
		return 0
	}
	return float64(r.Amount) / r.Period.Seconds()
}

// IsZero reports whether r is unset.
func (r Rate) IsZero() bool { return r == Rate{} }

// String formats r as "1000/s", "64KiB/s" or "100/10s"; the result of a
// parsed Rate parses back with [ParseRate] to the same value.
func (r Rate) String() string {
	amount := strconv.FormatInt(r.Amount, 10)
	if r.Bytes {
		amount = ByteSize(r.Amount).String()
	}
	var period string
	switch r.Period {
	case time.Second:
		period = "s"
	case time.Minute:
		period = "m"
	case time.Hour:
		period = "h"
	default:
		period = r.Period.String()
	}
	return amount + "/" + period
}

// UnmarshalYAML implements yaml.Unmarshaler. An empty string sets the zero
// (unset) Rate. Errors carry the node's line.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errorf(n.Line, "", "want a rate such as 1000/s or 64KB/s, got %s", describe(n))
	}
	if strings.TrimSpace(n.Value) == "" {
		*r = Rate{}
		return nil
	}
	v, err := ParseRate(n.Value)
	if err != nil {
		return errorf(n.Line, "", "%s", err)
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler, writing the String form, or null
// for the zero Rate.
func (r Rate) MarshalYAML() (any, error) {
	if r.IsZero() {
		return nil, nil
	}
	return r.String(), nil
}

// isInteger reports whether s is an optionally signed run of ASCII digits.
func isInteger(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
