package admin

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
)

// FuzzParseClientFilter checks the query parsing of GET /clients on any
// query string (as r.URL.Query() reads it, ignoring malformed pairs):
//
//   - it never panics; an error names the parameter it is about;
//   - a parsed filter has a page of 1 or more, a limit of 1 to maxLimit,
//     a known connection state, an IP address without an IPv4-in-IPv6
//     form, and is fuzzy exactly when a like_ parameter is set;
//   - the created_at bounds are what parseTime gives, and parseTime reads
//     back its own result, written as epoch milliseconds and as RFC 3339.
func FuzzParseClientFilter(f *testing.F) {
	for _, s := range []string{
		"", "clientid=c1", "like_clientid=dev&like_username=u&page=2&limit=10",
		"ip_address=::ffff:10.1.2.3&conn_state=connected&listener=tcp&handler=h&node=n",
		"gte_created_at=1764000000000&lte_created_at=2025-11-24T16:00:00.123456789Z",
		"gte_created_at=2025-11-24T16:00:00%2B01:00", "lte_created_at=-1",
		"page=0", "limit=10001", "limit=-1", "page=1e3", "conn_state=idle", "ip_address=10.0.0.300",
		"bogus=1", "clientid=a&clientid=b", "%zz=1&page=3", "page=9223372036854775807&limit=10000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		c, err := parseClientFilter(q)
		if err != nil {
			for k := range q {
				if strings.HasPrefix(err.Error(), k+": ") {
					return
				}
			}
			t.Fatalf("%q: error %q names no parameter of the query", raw, err)
		}
		if c.page < 1 || c.limit < 1 || c.limit > maxLimit {
			t.Fatalf("%q: page %d, limit %d", raw, c.page, c.limit)
		}
		switch c.connState {
		case "", gateway.StateConnecting, gateway.StateConnected, gateway.StateDisconnected:
		default:
			t.Fatalf("%q: conn_state %q", raw, c.connState)
		}
		if c.ip.IsValid() && c.ip.Is4In6() || c.ip.IsValid() != (q.Get("ip_address") != "") {
			t.Fatalf("%q: ip %v", raw, c.ip)
		}
		if c.fuzzy != (q.Get("like_clientid") != "" || q.Get("like_username") != "") {
			t.Fatalf("%q: fuzzy %v", raw, c.fuzzy)
		}
		for _, b := range []struct {
			name string
			got  time.Time
		}{{"gte_created_at", c.gteCreated}, {"lte_created_at", c.lteCreated}} {
			if want, err := parseTime(b.name, q.Get(b.name)); err != nil || !want.Equal(b.got) {
				t.Fatalf("%q: %s %v, parseTime gives %v, %v", raw, b.name, b.got, want, err)
			}
			checkTimeRoundTrip(t, b.name, b.got)
		}
	})
}

// FuzzParseTime checks parseTime alone: epoch milliseconds and RFC 3339
// (with fractions and offsets), and that what it reads reads back.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"", "0", "-1", "1764000000000", "+12", "9223372036854775807", "9223372036854775808",
		"2025-11-24T16:00:00Z", "2025-11-24T16:00:00.5+01:00", "2025-11-24t16:00:00z", "2025-11-24 16:00:00Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999-23:59", "1e3", " 1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := parseTime("x", v)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "x: ") {
				t.Fatalf("parseTime(%q): error %q does not name the parameter", v, err)
			}
			return
		}
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && !got.Equal(time.UnixMilli(ms)) {
			t.Fatalf("parseTime(%q) = %v, want %v", v, got, time.UnixMilli(ms))
		}
		checkTimeRoundTrip(t, "x", got)
	})
}

// checkTimeRoundTrip checks that parseTime reads tm back from epoch
// milliseconds (to the millisecond) and from RFC 3339 (exactly), where
// the forms can hold it.
func checkTimeRoundTrip(t *testing.T, name string, tm time.Time) {
	t.Helper()
	if tm.IsZero() {
		return
	}
	ms := tm.UnixMilli()
	if back, err := parseTime(name, strconv.FormatInt(ms, 10)); err != nil || back.UnixMilli() != ms {
		t.Fatalf("%v as %d ms reads back as %v, %v", tm, ms, back, err)
	}
	tm = tm.UTC() // a zone's offset may have seconds, which RFC 3339 cannot write
	if y := tm.Year(); y < 0 || y > 9999 {
		return // beyond what RFC 3339 can write
	}
	s := tm.Format(time.RFC3339Nano)
	if back, err := parseTime(name, s); err != nil || !back.Equal(tm) {
		t.Fatalf("%v as %q reads back as %v, %v", tm, s, back, err)
	}
}
