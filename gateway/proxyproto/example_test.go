package proxyproto_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/protogate/protogate/gateway/proxyproto"
)

func Example() {
	lb, nc := net.Pipe() // the load balancer's side and the accepted connection
	defer nc.Close()
	go func() {
		h := proxyproto.Header{
			Command:     proxyproto.Proxy,
			Source:      netip.MustParseAddrPort("203.0.113.9:51000"),
			Destination: netip.MustParseAddrPort("192.0.2.1:7993"),
		}
		lb.Write(proxyproto.AppendV2(nil, h))
		lb.Write([]byte("HELO device-42\n"))
		lb.Close()
	}()

	// The listener bounds the wait for the header.
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	h, err := proxyproto.Read(br)
	if err != nil {
		fmt.Println(err)
		return
	}
	nc.SetReadDeadline(time.Time{})
	conn := proxyproto.NewConn(nc, br, h)
	fmt.Println(h.Version, conn.RemoteAddr(), conn.LocalAddr())
	data, _ := io.ReadAll(conn)
	fmt.Printf("%q\n", data)

	// Version 1, and a client that bypassed the load balancer.
	h, err = proxyproto.Read(bufio.NewReader(strings.NewReader("PROXY TCP4 198.51.100.22 192.0.2.1 35646 7993\r\n")))
	fmt.Println(h.Version, h.Source, h.Destination, err)
	_, err = proxyproto.Read(bufio.NewReader(strings.NewReader("HELO device-42\n")))
	fmt.Println(errors.Is(err, proxyproto.ErrNoHeader), err)
	// Output:
	// 2 203.0.113.9:51000 192.0.2.1:7993
	// "HELO device-42\n"
	// 1 198.51.100.22:35646 192.0.2.1:7993 <nil>
	// true proxyproto: no PROXY protocol header: stream starts with 'H'
}
