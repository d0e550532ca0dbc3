package remote

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseAddress checks ParseAddress, which reads handler addresses
// for the gateway's dialer, the configuration validator and the example
// handlers, on any string:
//
//   - it never panics; every error is an *AddressError saying "remote: ";
//   - an accepted address has a host and a port of 1 or more, TLS exactly
//     for https;
//   - String gives an address that parses back to the same, and HostPort
//     one that net.SplitHostPort splits back into the host and port.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:9001", "https://127.0.0.1:9001", "HTTP://Handler.Example:9001", "http://localhost:9001/",
		"http://[::1]:9001", "http://handler.local", "https://handler.local", "http://my_handler:9001",
		"", "127.0.0.1:9001", "grpc://127.0.0.1:9001", "http://", "http://:9001", "http://a:0", "http://a:65536",
		"http://a:x", "http://a:1/exproto", "http://a:1?x=1", "http://a:1#f", "http://u:p@a:1", "http://a b:1",
		"http://-a:1", "http://a..b:1", "http://[::ffff:1.2.3.4]:1", "http://%41:1",
		"http://a:01", "http://a:+1", "http://1.2.3.4.5:1", "http:///a", "http:a:1", "https://a.:443",
		"http://[fe80::1%25eth0]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			var ae *AddressError
			if !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "remote: ") || a != (Address{}) {
				t.Fatalf("ParseAddress(%q) = %+v, %v", s, a, err)
			}
			return
		}
		scheme, _, _ := strings.Cut(s, "://")
		if a.Host == "" || a.Port == 0 || a.TLS != strings.EqualFold(scheme, "https") {
			t.Fatalf("ParseAddress(%q) = %+v", s, a)
		}
		if again, err := ParseAddress(a.String()); err != nil || again != a {
			t.Fatalf("ParseAddress(%q) = %+v, whose String %q parses to %+v, %v", s, a, a.String(), again, err)
		}
		host, port, err := net.SplitHostPort(a.HostPort())
		if err != nil || host != a.Host || port != strconv.Itoa(int(a.Port)) {
			t.Fatalf("%+v: HostPort %q splits into %q %q, %v", a, a.HostPort(), host, port, err)
		}
	})
}
