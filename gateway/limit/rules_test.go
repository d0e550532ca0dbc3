package limit

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseRules(t *testing.T) {
	tests := []struct {
		name  string
		rules []string
		want  string // String() of the result, or the error's prefix
		err   bool
	}{
		{"nil", nil, "", false},
		{"allow all", []string{"allow all"}, "allow all", false},
		{"ipv4", []string{"deny 192.168.1.7"}, "deny 192.168.1.7", false},
		{"ipv4 /32 is an address", []string{"deny 192.168.1.7/32"}, "deny 192.168.1.7", false},
		{"cidr", []string{"allow 10.0.0.0/8", "deny all"}, "allow 10.0.0.0/8, deny all", false},
		{"host bits are masked", []string{"allow 10.1.2.3/8"}, "allow 10.0.0.0/8", false},
		{"ipv6", []string{"deny 2001:db8::1", "allow 2001:DB8:0:0::/32"}, "deny 2001:db8::1, allow 2001:db8::/32", false},
		{"ipv4-mapped address", []string{"deny ::ffff:10.0.0.1"}, "deny 10.0.0.1", false},
		{"ipv4-mapped prefix", []string{"deny ::ffff:10.0.0.0/104"}, "deny 10.0.0.0/8", false},
		{"extra white space", []string{"  allow \t 10.0.0.0/8  "}, "allow 10.0.0.0/8", false},
		{"zero prefixes", []string{"deny 0.0.0.0/0", "deny ::/0"}, "deny 0.0.0.0/0, deny ::/0", false},

		{"bad cidr", []string{"allow all", "deny 10.0.0.0/33"}, `limit: access rule 2 "deny 10.0.0.0/33": bad CIDR: `, true},
		{"bad cidr address", []string{"deny 10.0.0/8"}, `limit: access rule 1 "deny 10.0.0/8": bad CIDR: `, true},
		{"bad ipv6 cidr", []string{"deny 2001:db8::/129"}, `limit: access rule 1 "deny 2001:db8::/129": bad CIDR: `, true},
		{"bad address", []string{"deny 10.0.0.256"}, `limit: access rule 1 "deny 10.0.0.256": bad IP address: `, true},
		{"host name", []string{"deny example.com"}, `limit: access rule 1 "deny example.com": bad IP address: `, true},
		{"zone", []string{"deny fe80::1%eth0"}, `limit: access rule 1 "deny fe80::1%eth0": bad IP address: zone "eth0" not allowed`, true},
		{"zone in cidr", []string{"deny fe80::%eth0/10"}, `limit: access rule 1 "deny fe80::%eth0/10": bad CIDR: `, true},
		{"bad verb", []string{"permit all"}, `limit: access rule 1 "permit all": bad verb "permit", want allow or deny`, true},
		{"verbs are lowercase", []string{"Allow all"}, `limit: access rule 1 "Allow all": bad verb "Allow"`, true},
		{"all is lowercase", []string{"allow ALL"}, `limit: access rule 1 "allow ALL": bad IP address`, true},
		{"missing target", []string{"allow 1.2.3.4", "deny"}, `limit: access rule 2 "deny": missing target`, true},
		{"extra fields", []string{"deny 1.2.3.4 5.6.7.8 x"}, `limit: access rule 1 "deny 1.2.3.4 5.6.7.8 x": extra fields after the target: "5.6.7.8 x"`, true},
		{"empty rule", []string{""}, `limit: access rule 1 "": empty rule`, true},
		{"blank rule", []string{" \t"}, `limit: access rule 1 " \t": empty rule`, true},
		{"comma separated", []string{"allow 1.2.3.4,5.6.7.8"}, `limit: access rule 1 "allow 1.2.3.4,5.6.7.8": bad IP address`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRules(tt.rules)
			if tt.err {
				if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
					t.Fatalf("ParseRules(%q) = %v, %v; want error %q...", tt.rules, r, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRules(%q): %v", tt.rules, err)
			}
			if got := r.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAllow(t *testing.T) {
	tests := []struct {
		rules []string
		ip    string // "" for the zero Addr
		want  bool
	}{
		{nil, "10.0.0.1", true}, // no rules: allow
		{[]string{"deny 10.0.0.1"}, "10.0.0.1", false},
		{[]string{"deny 10.0.0.1"}, "10.0.0.2", true}, // no match: allow
		{[]string{"deny 10.0.0.0/8"}, "10.255.0.1", false},
		{[]string{"deny 10.0.0.0/8"}, "11.0.0.1", true},
		{[]string{"allow 10.0.0.0/8", "deny all"}, "10.1.1.1", true},
		{[]string{"allow 10.0.0.0/8", "deny all"}, "192.168.0.1", false},
		{[]string{"allow 10.0.0.0/8", "deny all"}, "2001:db8::1", false},
		// First match wins.
		{[]string{"deny 10.1.0.0/16", "allow 10.0.0.0/8"}, "10.1.2.3", false},
		{[]string{"allow 10.0.0.0/8", "deny 10.1.0.0/16"}, "10.1.2.3", true},
		{[]string{"allow all", "deny 10.0.0.1"}, "10.0.0.1", true},
		// IPv4-mapped peers match IPv4 rules, and mapped rules too.
		{[]string{"deny 10.0.0.0/8"}, "::ffff:10.9.9.9", false},
		{[]string{"deny ::ffff:10.0.0.0/104"}, "10.9.9.9", false},
		{[]string{"deny ::ffff:10.0.0.0/104"}, "::ffff:10.9.9.9", false},
		// IPv6.
		{[]string{"deny 2001:db8::/32"}, "2001:db8:1::1", false},
		{[]string{"deny 2001:db8::/32"}, "2001:db9::1", true},
		{[]string{"deny 2001:db8::1"}, "2001:db8::1", false},
		{[]string{"deny fe80::/10"}, "fe80::1%eth0", false},
		{[]string{"deny ::/0"}, "10.0.0.1", true}, // IPv6 rules do not match IPv4 peers
		{[]string{"deny 0.0.0.0/0"}, "2001:db8::1", true},
		// The zero address matches only "all".
		{[]string{"deny 0.0.0.0/0", "deny ::/0"}, "", true},
		{[]string{"deny all"}, "", false},
	}
	for _, tt := range tests {
		r, err := ParseRules(tt.rules)
		if err != nil {
			t.Fatal(err)
		}
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := r.Allow(ip); got != tt.want {
			t.Errorf("rules %q: Allow(%s) = %v, want %v", tt.rules, tt.ip, got, tt.want)
		}
	}
	var nilRules *Rules
	if !nilRules.Allow(netip.MustParseAddr("10.0.0.1")) || nilRules.String() != "" {
		t.Error("nil *Rules must allow all")
	}
}
