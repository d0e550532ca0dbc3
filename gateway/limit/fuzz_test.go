package limit

import (
	"net/netip"
	"strings"
	"testing"
)

// probes are addresses whose verdicts a round trip must keep.
var probes = []netip.Addr{
	{},
	netip.MustParseAddr("0.0.0.0"),
	netip.MustParseAddr("10.0.0.1"),
	netip.MustParseAddr("10.1.2.3"),
	netip.MustParseAddr("192.168.1.7"),
	netip.MustParseAddr("255.255.255.255"),
	netip.MustParseAddr("::"),
	netip.MustParseAddr("::1"),
	netip.MustParseAddr("::ffff:10.1.2.3"),
	netip.MustParseAddr("2001:db8::1"),
	netip.MustParseAddr("fe80::1%eth0"),
}

func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		"allow all", "deny all", "allow 10.0.0.0/8\ndeny all", "deny 10.1.2.3/8", "deny 192.168.1.7",
		"deny ::ffff:10.0.0.0/104", "allow 2001:db8::/32", "deny fe80::1%eth0", "deny 10.0.0.0/33",
		"permit all", "allow", "allow 1.2.3.4 5.6.7.8", "", " \t ", "deny ::ffff:0:0/95",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list := strings.Split(s, "\n")
		r, err := ParseRules(list)
		if err != nil {
			if r != nil || !strings.HasPrefix(err.Error(), "limit: access rule ") {
				t.Fatalf("ParseRules(%q) = %v, %v", list, r, err)
			}
			return
		}
		str := r.String()
		var again []string
		if str != "" {
			again = strings.Split(str, ", ")
		}
		if len(again) != len(list) {
			t.Fatalf("ParseRules(%q).String() = %q: %d rules, want %d", list, str, len(again), len(list))
		}
		r2, err := ParseRules(again)
		if err != nil {
			t.Fatalf("String() of %q = %q, which does not parse: %v", list, str, err)
		}
		if r2.String() != str {
			t.Fatalf("round trip of %q: %q, then %q", list, str, r2.String())
		}
		extra := probes
		for _, ru := range r.rules {
			if ru.all {
				continue
			}
			a := ru.prefix.Addr()
			extra = append(extra, a, a.Prev(), a.Next(), netip.AddrFrom16(a.As16()))
		}
		for _, ip := range extra {
			if r.Allow(ip) != r2.Allow(ip) {
				t.Fatalf("%q and %q disagree on %s", list, str, ip)
			}
		}
	})
}
