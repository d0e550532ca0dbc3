package listener_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/listener"
)

// TestUDPGatewayAdmitsEarlyPeers starts a gateway as cmd/protogate does
// (ListenUDP, then Serve in its own goroutine) with two devices that send
// before Serve: max_connections must hold for them, and the active count
// must come back to zero, not below, once their connections end.
func TestUDPGatewayAdmitsEarlyPeers(t *testing.T) {
	const name = "udp-early"
	ul, err := listener.ListenUDP("127.0.0.1:0", listener.UDPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	addr := ul.Addr().(*net.UDPAddr)
	var peers []*net.UDPConn
	for i := range 2 {
		pc, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if _, err := pc.Write(fmt.Appendf(nil, "early-%d", i)); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, pc)
	}
	// Until Serve sets the admission check, the datagrams wait.
	tick, end := time.NewTicker(time.Millisecond), time.NewTimer(100*time.Millisecond)
	defer tick.Stop()
	defer end.Stop()
	for waiting := true; waiting; {
		if st := ul.Stats(); st.Peers != 0 {
			t.Fatalf("pseudo-connections created before Serve: %+v", st)
		}
		select {
		case <-tick.C:
		case <-end.C:
			waiting = false
		}
	}

	rec := newRecorder()
	srv := gateway.New(gateway.Options{Logger: testLogger(t, slog.LevelError), WriteTimeout: iwait})
	l := &gateway.Listener{Name: name, Type: gateway.UDP, Handler: echoHandler{rec}, MaxConnections: 1}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ul, l) }()

	// The first device (first in the socket's queue) is admitted and
	// served; the second is refused: max_connections is 1.
	c := rec.nextCreated(t)
	if got, want := c.info.Peer.String(), peers[0].LocalAddr().String(); got != want {
		t.Fatalf("the handler saw %s, want %s", got, want)
	}
	peers[0].SetReadDeadline(time.Now().Add(iwait))
	buf := make([]byte, 64)
	if n, err := peers[0].Read(buf); err != nil || string(buf[:n]) != "early-0" {
		t.Fatalf("echo %q, %v; want early-0", buf[:n], err)
	}
	waitFor(t, "the refusal", func() error {
		st, us := srv.ListenerStats(name), ul.Stats()
		if st.Active != 1 || st.Refused[gateway.CauseMaxConnections] != 1 || us.Refused != 1 || us.Accepted != 1 {
			return fmt.Errorf("listener stats %+v, udp stats %+v", st, us)
		}
		return nil
	})
	select {
	case extra := <-rec.created:
		t.Fatalf("the handler saw a second connection %+v", extra.info)
	default:
	}

	ctx, cancel := context.WithTimeout(context.Background(), iwait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, gateway.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	if st := srv.ListenerStats(name); st.Active != 0 {
		t.Fatalf("active connections after shutdown: %d, want 0", st.Active)
	}
}
