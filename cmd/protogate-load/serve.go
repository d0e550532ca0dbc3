package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

const serveEchoDoc = `
Runs a plain Go echo server until SIGINT or SIGTERM: the floor every ratio is
measured against. Over TCP it is the idiomatic server, one goroutine per
connection copying what it reads back with a 4 KiB buffer; with -udp, one
goroutine answers every datagram with the same bytes.

With -cert and -key it is the same server behind a plain crypto/tls
listener (TLS 1.3), the floor of the gateway's ssl listeners; with -udp as
well, a plain pion/dtls/v2 server (DTLS 1.2, the certificate's ECDHE suites,
cookies on) that runs each peer's handshake in its own goroutine and echoes
each record's payload, the floor of the gateway's dtls listeners.

The first line on stdout is "listening <host:port>", so a parent process can
learn the port when -listen asks for port 0.
`

// ServeEchoConfig configures serveEcho.
type ServeEchoConfig struct {
	Listen string // host:port; port 0 picks one
	UDP    bool   // a UDP datagram echo server instead of TCP
	// CertFile and KeyFile, when set, make it a TLS (or, with UDP, DTLS)
	// echo server with this certificate.
	CertFile, KeyFile string
}

func cmdServeEcho(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg ServeEchoConfig
	fs := newFlags("serve-echo", "[-listen host:port] [-udp]", serveEchoDoc, stderr)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "`address` to listen on (port 0 picks a free port)")
	fs.BoolVar(&cfg.UDP, "udp", false, "echo UDP datagrams instead of a TCP stream")
	fs.StringVar(&cfg.CertFile, "cert", "", "PEM certificate `file`: serve TLS 1.3 (with -udp, DTLS 1.2)")
	fs.StringVar(&cfg.KeyFile, "key", "", "PEM private key `file` of -cert")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return usagef("serve-echo: -cert and -key go together")
	}
	return serveEcho(ctx, cfg, func(addr net.Addr) {
		fmt.Fprintf(stdout, "listening %s\n", addr)
	})
}

// serveEcho listens, calls ready with the address, and echoes until ctx is
// done; then it closes every connection and returns once its goroutines
// have.
func serveEcho(ctx context.Context, cfg ServeEchoConfig, ready func(net.Addr)) error {
	var tc *tls.Config
	if cfg.CertFile != "" {
		var err error
		if tc, err = serverTLS(cfg.CertFile, cfg.KeyFile); err != nil {
			return err
		}
	}
	if cfg.UDP {
		if tc != nil {
			return serveEchoDTLS(ctx, cfg.Listen, tc, ready)
		}
		return serveEchoUDP(ctx, cfg.Listen, ready)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("protogate-load: serve-echo: %w", err)
	}
	ready(ln.Addr())
	if tc != nil {
		// The handshake runs in each connection's goroutine, at its
		// first Read.
		ln = tls.NewListener(ln, tc)
	}
	return serveListener(ctx, ln)
}

// serveListener echoes on every connection ln accepts until ctx is done or
// ln fails, then closes them all and returns once their goroutines have.
func serveListener(ctx context.Context, ln net.Listener) error {
	var (
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
		done  bool
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				// Out of file descriptors and the like: back off a
				// little, as net/http does.
				if isTemporary(err) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				acceptErr = fmt.Errorf("protogate-load: serve-echo: %w", err)
			}
			break
		}
		mu.Lock()
		if done {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoBack(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
	ln.Close()
	mu.Lock()
	done = true
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	return acceptErr
}

// isTemporary reports an accept error worth retrying (EMFILE, ENFILE,
// ECONNABORTED).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// echoBack writes back what it reads until the connection fails or ends.
func echoBack(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// serveEchoUDP answers every datagram with itself.
func serveEchoUDP(ctx context.Context, listen string, ready func(net.Addr)) error {
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return fmt.Errorf("protogate-load: serve-echo: %w", err)
	}
	uc := pc.(*net.UDPConn)
	ready(uc.LocalAddr())
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := uc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				continue
			}
			uc.Close()
			return fmt.Errorf("protogate-load: serve-echo: %w", err)
		}
		// A failed send (a peer gone, a full buffer) loses one datagram,
		// as UDP may.
		uc.WriteToUDPAddrPort(buf[:n], from)
	}
}
