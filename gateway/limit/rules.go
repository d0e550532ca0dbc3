// Package limit holds the connection management primitives of a listener:
// an access list that admits or refuses peers by IP address, and a token
// bucket that bounds message or byte rates.
package limit

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Rules is an access list in the format of EMQX's listener access_rules:
// each rule is "allow <target>" or "deny <target>", where the target is an
// IP address, a CIDR prefix, or "all". The first rule whose target matches a
// peer decides; a peer that no rule matches is allowed, so an empty list
// allows everyone (as EMQX's default, ["allow all"], does). To admit only
// some networks, end the list with "deny all".
//
// IPv4 targets match IPv4 peers, including peers that an IPv6 socket reports
// as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d); IPv6 targets match IPv6
// peers. A Rules is immutable and safe for concurrent use.
type Rules struct {
	rules []rule
}

type rule struct {
	allow  bool
	all    bool
	prefix netip.Prefix // canonical: masked, IPv4-mapped prefixes unmapped
}

// ParseRules parses an access list. Fields are separated by white space.
// Verbs and "all" are lowercase. A target with host bits set, such as
// "10.1.2.3/8", means its network, "10.0.0.0/8". IPv6 zones are refused.
//
// An error names the first bad rule by its position in rules, counting from
// 1, and its text.
func ParseRules(rules []string) (*Rules, error) {
	r := &Rules{rules: make([]rule, 0, len(rules))}
	for i, s := range rules {
		ru, err := parseRule(s)
		if err != nil {
			return nil, fmt.Errorf("limit: access rule %d %q: %w", i+1, s, err)
		}
		r.rules = append(r.rules, ru)
	}
	return r, nil
}

func parseRule(s string) (rule, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return rule{}, errors.New("empty rule")
	}
	var ru rule
	switch f[0] {
	case "allow":
		ru.allow = true
	case "deny":
	default:
		return rule{}, fmt.Errorf("bad verb %q, want allow or deny", f[0])
	}
	if len(f) == 1 {
		return rule{}, errors.New("missing target: want an IP address, a CIDR or all")
	}
	if len(f) > 2 {
		return rule{}, fmt.Errorf("extra fields after the target: %q", strings.Join(f[2:], " "))
	}
	target := f[1]
	if target == "all" {
		ru.all = true
		return ru, nil
	}
	if strings.Contains(target, "/") {
		p, err := netip.ParsePrefix(target)
		if err != nil {
			return rule{}, fmt.Errorf("bad CIDR: %w", err)
		}
		ru.prefix = canonical(p)
		return ru, nil
	}
	a, err := netip.ParseAddr(target)
	if err != nil {
		return rule{}, fmt.Errorf("bad IP address: %w", err)
	}
	if a.Zone() != "" {
		return rule{}, fmt.Errorf("bad IP address: zone %q not allowed", a.Zone())
	}
	ru.prefix = canonical(netip.PrefixFrom(a, a.BitLen()))
	return ru, nil
}

// canonical masks p and turns an IPv4-mapped IPv6 prefix covering no more
// than the mapped range into the IPv4 prefix it stands for, since Allow
// unmaps the addresses it checks.
func canonical(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// Allow reports whether the rules admit a peer at ip. A nil *Rules admits
// everyone. An invalid (zero) ip is matched only by "all" rules.
func (r *Rules) Allow(ip netip.Addr) bool {
	if r == nil {
		return true
	}
	ip = ip.Unmap().WithZone("")
	for _, ru := range r.rules {
		if ru.all || ip.IsValid() && ru.prefix.Contains(ip) {
			return ru.allow
		}
	}
	return true
}

// String returns the rules in canonical form, separated by ", ", for
// example "allow 10.0.0.0/8, allow 192.168.1.7, deny all". Each rule
// parses back to itself, and a single address is written without a prefix
// length.
func (r *Rules) String() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	for i, ru := range r.rules {
		if i > 0 {
			b.WriteString(", ")
		}
		if ru.allow {
			b.WriteString("allow ")
		} else {
			b.WriteString("deny ")
		}
		switch {
		case ru.all:
			b.WriteString("all")
		case ru.prefix.IsSingleIP():
			b.WriteString(ru.prefix.Addr().String())
		default:
			b.WriteString(ru.prefix.String())
		}
	}
	return b.String()
}
