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
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/protogate/protogate/gateway/remote"
)

// Parse turns an adapter URL into a gRPC target and the transport
// credentials its scheme asks for. The URL is read by remote.ParseAddress,
// as protogate reads a handler address: the scheme is required, and a
// missing port is 80 for http and 443 for https.
func Parse(rawURL, caFile string) (string, credentials.TransportCredentials, error) {
	a, err := remote.ParseAddress(rawURL)
	if err != nil {
		var ae *remote.AddressError
		if errors.As(err, &ae) {
			return "", nil, fmt.Errorf("-adapter: %s", ae.Msg)
		}
		return "", nil, fmt.Errorf("-adapter: %w", err)
	}
	if !a.TLS {
		if caFile != "" {
			return "", nil, errors.New("-adapter-ca needs an https:// adapter URL")
		}
		return a.HostPort(), insecure.NewCredentials(), nil
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
	return a.HostPort(), credentials.NewTLS(cfg), nil
}
