package listener

import "net/netip"

func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
