package adaptertarget

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	badCA := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(badCA, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url, ca    string
		target     string
		secure     bool
		wantErrSub string
	}{
		{url: "http://127.0.0.1:9100", target: "127.0.0.1:9100"},
		{url: "http://localhost", target: "localhost:80"},
		{url: "http://[::1]:9100", target: "[::1]:9100"},
		{url: "https://gw.example:9101", target: "gw.example:9101", secure: true},
		{url: "https://gw.example", target: "gw.example:443", secure: true},
		{url: "HTTP://127.0.0.1:9100", target: "127.0.0.1:9100"},
		{url: "http://localhost:9100/", target: "localhost:9100"},
		{url: "127.0.0.1:9100", wantErrSub: `-adapter: address "127.0.0.1:9100" has no scheme; write "http://127.0.0.1:9100"`},
		{url: "localhost:9100", wantErrSub: "has no scheme"},
		{url: "grpc://127.0.0.1:9100", wantErrSub: `unsupported scheme "grpc"`},
		{url: "http://", wantErrSub: "has no host"},
		{url: "http://127.0.0.1:0", wantErrSub: "invalid port"},
		{url: "http://127.0.0.1:9100/adapter", wantErrSub: "without a path"},
		{url: "http://127.0.0.1:9100", ca: badCA, wantErrSub: "needs an https://"},
		{url: "https://127.0.0.1:9100", ca: badCA, wantErrSub: "no PEM certificates"},
		{url: "https://127.0.0.1:9100", ca: filepath.Join(dir, "missing.pem"), wantErrSub: "-adapter-ca"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			target, creds, err := Parse(tc.url, tc.ca)
			if tc.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
					t.Fatalf("error = %v, want containing %q", err, tc.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if target != tc.target {
				t.Errorf("target = %q, want %q", target, tc.target)
			}
			if got := creds.Info().SecurityProtocol == "tls"; got != tc.secure {
				t.Errorf("TLS = %v, want %v (%q)", got, tc.secure, creds.Info().SecurityProtocol)
			}
		})
	}
}
