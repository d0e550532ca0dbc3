package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startServeEchoCert runs serveEcho with a self-signed certificate (TLS,
// or DTLS with udp) until the test ends and returns its address.
func startServeEchoCert(t *testing.T, udp bool) string {
	t.Helper()
	cert := selfSigned(t)
	kder, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveEcho(ctx, ServeEchoConfig{Listen: "127.0.0.1:0", UDP: udp, CertFile: cf, KeyFile: kf}, func(a net.Addr) { addrc <- a })
	}()
	select {
	case a := <-addrc:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serveEcho: %v", err)
			}
		})
		return a.String()
	case err := <-done:
		cancel()
		t.Fatalf("serveEcho: %v", err)
	}
	return ""
}

func TestServeEchoTLS(t *testing.T) {
	addr := startServeEchoCert(t, false)
	r, _, err := runEcho(context.Background(), EchoConfig{Addr: addr, Conns: 3, Size: 64, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, TLS: tlsConfig(addr, true)})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Msgs == 0 {
		t.Fatalf("%+v", r)
	}
	h, _, err := runHold(context.Background(), HoldConfig{Addr: addr, Conns: 10, Sample: 5, TLS: tlsConfig(addr, true)})
	if err != nil {
		t.Fatal(err)
	}
	if h.Held != 10 || h.SampleOK != 5 || h.Errors != 0 || h.Mismatch != 0 {
		t.Fatalf("%+v", h)
	}
}

func TestDTLSEcho(t *testing.T) {
	addr := startServeEchoCert(t, true)
	cfg, err := dtlsClientConfig(dtlsSuite)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := runUDP(context.Background(), UDPConfig{Addr: addr, Conns: 3, Size: 64, Messages: 100, Duration: time.Minute, Timeout: 10 * time.Second, DTLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	clean(t, r)
	if r.Scenario != "dtls" || r.Msgs != 100 || r.Lost != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestDTLSHandshakes(t *testing.T) {
	addr := startServeEchoCert(t, true)
	cfg, err := dtlsClientConfig(dtlsSuite)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := runDTLSHandshakes(context.Background(), HandshakeConfig{Addr: addr, Conns: 4, Duration: time.Second, DTLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if r.Scenario != "dtls-handshake" || r.Msgs == 0 || r.MsgsPerS <= 0 || r.Errors != 0 {
		t.Fatalf("%+v", r)
	}
	if _, err := dtlsClientConfig("TLS_NO_SUCH_SUITE"); err == nil {
		t.Fatal("an unknown suite was accepted")
	}
}
