// Package adaptertarget turns the -adapter URL of the example ExProto
// handlers (http://host:port or https://host:port, as EMQX writes a handler
// address) into a gRPC target and transport credentials. It is shared by
// cmd/exproto-json-handler and cmd/exproto-echo-handler.
package adaptertarget

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Parse turns an adapter URL into a gRPC target and the transport
// credentials its scheme asks for. A missing port defaults to 80 or 443.
func Parse(rawURL, caFile string) (string, credentials.TransportCredentials, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", nil, fmt.Errorf("-adapter %q: want a URL such as http://127.0.0.1:9100: %w", rawURL, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", nil, fmt.Errorf("-adapter %q: want a URL such as http://127.0.0.1:9100", rawURL)
	}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if caFile != "" {
			return "", nil, errors.New("-adapter-ca needs an https:// adapter URL")
		}
		if port == "" {
			port = "80"
		}
		return net.JoinHostPort(u.Hostname(), port), insecure.NewCredentials(), nil
	case "https":
		if port == "" {
			port = "443"
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return "", nil, fmt.Errorf("-adapter-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return "", nil, fmt.Errorf("-adapter-ca %s: no PEM certificates found", caFile)
			}
			cfg.RootCAs = pool
		}
		return net.JoinHostPort(u.Hostname(), port), credentials.NewTLS(cfg), nil
	default:
		return "", nil, fmt.Errorf("-adapter %q: scheme must be http or https", rawURL)
	}
}
