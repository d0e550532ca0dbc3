package limit_test

import (
	"fmt"
	"net/netip"

	"github.com/protogate/protogate/gateway/limit"
)

func Example() {
	rules, err := limit.ParseRules([]string{"deny 10.1.0.0/16", "allow 10.0.0.0/8", "allow 2001:db8::/32", "deny all"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rules)
	for _, peer := range []string{"10.2.3.4", "10.1.2.3", "::ffff:10.2.3.4", "2001:db8::7", "192.0.2.1"} {
		fmt.Println(peer, rules.Allow(netip.MustParseAddr(peer)))
	}

	_, err = limit.ParseRules([]string{"allow all", "deny 10.0.0.0/33"})
	fmt.Println(err)

	// 100 messages a second with bursts of 10: the eleventh message of a
	// burst is refused.
	msgs := limit.NewBucket(100, 10)
	n := 0
	for range 11 {
		if msgs.Allow(1) {
			n++
		}
	}
	fmt.Println(n, "of 11 allowed")

	// 1 MiB/s of reads with a 64 KiB burst: a 1 MiB read right away must
	// then wait about 960ms.
	bytes := limit.NewBucket(1<<20, 64<<10)
	wait := bytes.Reserve(1 << 20)
	fmt.Println(wait > 900e6 && wait <= 960e6)
	// Output:
	// deny 10.1.0.0/16, allow 10.0.0.0/8, allow 2001:db8::/32, deny all
	// 10.2.3.4 true
	// 10.1.2.3 false
	// ::ffff:10.2.3.4 true
	// 2001:db8::7 true
	// 192.0.2.1 false
	// limit: access rule 2 "deny 10.0.0.0/33": bad CIDR: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range
	// 10 of 11 allowed
	// true
}
