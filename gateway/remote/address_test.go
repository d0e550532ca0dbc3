package remote

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Address
		err  string // substring of the error; "" for success
	}{
		{in: "http://127.0.0.1:9001", want: Address{Host: "127.0.0.1", Port: 9001}},
		{in: "https://127.0.0.1:9001", want: Address{Host: "127.0.0.1", Port: 9001, TLS: true}},
		{in: "HTTP://Handler.Example:9001", want: Address{Host: "Handler.Example", Port: 9001}},
		{in: "http://localhost:9001/", want: Address{Host: "localhost", Port: 9001}},
		{in: "http://[::1]:9001", want: Address{Host: "::1", Port: 9001}},
		{in: "http://handler.local", want: Address{Host: "handler.local", Port: 80}},
		{in: "https://handler.local", want: Address{Host: "handler.local", Port: 443, TLS: true}},
		{in: "http://my_handler:9001", want: Address{Host: "my_handler", Port: 9001}},
		{in: "", err: "missing address"},
		{in: "127.0.0.1:9001", err: `has no scheme; write "http://127.0.0.1:9001"`},
		{in: "localhost:9001", err: `has no scheme; write "http://localhost:9001"`},
		{in: "grpc://127.0.0.1:9001", err: `unsupported scheme "grpc"`},
		{in: "http://", err: "has no host"},
		{in: "http://:9001", err: "has no host"},
		{in: "http://a:0", err: `invalid port "0"`},
		{in: "http://a:65536", err: `invalid port "65536"`},
		{in: "http://a:x", err: "invalid address"},
		{in: "http://a:1/exproto", err: "without a path or query"},
		{in: "http://a:1?x=1", err: "without a path or query"},
		{in: "http://a:1#f", err: "without a path or query"},
		{in: "http://u:p@a:1", err: "user information"},
		{in: "http://a b:1", err: "invalid address"},
		{in: "http://-a:1", err: `invalid host "-a"`},
		{in: "http://a..b:1", err: `invalid host "a..b"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAddress(tc.in)
			if tc.err != "" {
				var ae *AddressError
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "remote: ") {
					t.Fatalf("ParseAddress = %+v, %v; want an *AddressError containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseAddress = %+v, %v; want %+v", got, err, tc.want)
			}
			// String gives an address that parses back to the same.
			again, err := ParseAddress(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseAddress(%q) = %+v, %v", got.String(), again, err)
			}
		})
	}
}

// TestDialTargetUsesParseAddress checks that New refuses what ParseAddress
// refuses and dials what it accepts.
func TestDialTargetUsesParseAddress(t *testing.T) {
	for _, in := range []string{"127.0.0.1:9001", "grpc://a:1", "http://a:1/x", "http://a:0"} {
		if h, err := New(Config{Address: in}); err == nil {
			h.Close()
			t.Errorf("New(%q) succeeded", in)
		}
	}
	for in, want := range map[string]string{
		"http://127.0.0.1:9001": "dns:///127.0.0.1:9001",
		"https://handler.local": "dns:///handler.local:443",
		"http://[::1]:9001":     "dns:///[::1]:9001",
	} {
		target, creds, err := dialTarget(in, nil)
		if err != nil || target != want {
			t.Errorf("dialTarget(%q) = %q, %v; want %q", in, target, err, want)
			continue
		}
		if tls := creds.Info().SecurityProtocol == "tls"; tls != strings.HasPrefix(in, "https") {
			t.Errorf("dialTarget(%q): security %q", in, creds.Info().SecurityProtocol)
		}
	}
}
