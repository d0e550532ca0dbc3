package gateway

import (
	"net"
	"testing"
)

// slowCloser is a connection whose Close blocks until released, as a TLS
// connection's does while close_notify waits for a peer that does not read.
type slowCloser struct {
	net.Conn
	closing chan struct{} // closed when Close is called
	release chan struct{}
}

func (s *slowCloser) Close() error {
	close(s.closing)
	<-s.release
	return s.Conn.Close()
}

// TestCloseDoesNotWaitForTheSocket: closing a connection (here from the
// handler, as a Wasm guest or a gRPC handler does) returns while the socket
// is still closing; the connection finishes once it has closed.
func TestCloseDoesNotWaitForTheSocket(t *testing.T) {
	h := newChecker(t)
	s := New(Options{Logger: quietLogger()})
	defer s.Close()
	a, b := net.Pipe()
	defer b.Close()
	sc := &slowCloser{Conn: a, closing: make(chan struct{}), release: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- s.ServeConn(sc, &Listener{Name: "slow-close", Handler: h}) }()
	c := recv(t, h.created)

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	if err := recv(t, closed); err != nil {
		t.Fatalf("Close: %v", err)
	}
	recv(t, sc.closing) // the socket is being closed, on its own goroutine
	select {
	case err := <-served:
		t.Fatalf("the connection finished (%v) before its socket closed", err)
	default:
	}
	close(sc.release)
	recv(t, h.closed)
	if err := recv(t, served); err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
	if n := s.NumConns(); n != 0 {
		t.Errorf("%d connections registered", n)
	}
}
