package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protogate/protogate/abi"
)

// panicker is a Handler whose victim connection panics in one callback; every
// other connection echoes its bytes.
type panicker struct {
	in      string // the callback that panics, as abi names it
	mu      sync.Mutex
	victim  *Conn
	ready   chan struct{} // the victim's OnSocketCreated is done
	reasons map[*Conn]string
	closed  chan *Conn
}

func (p *panicker) isVictim(c *Conn, callback string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.victim == c && p.in == callback
}

func (p *panicker) OnSocketCreated(_ context.Context, c *Conn, _ *ConnInfo) error {
	p.mu.Lock()
	first := p.victim == nil
	if first {
		p.victim = c
	}
	p.mu.Unlock()
	if !first {
		return nil
	}
	if p.in == abi.CallbackSocketCreated {
		panic("boom in created")
	}
	defer close(p.ready)
	if err := c.Authenticate(context.Background(), &ClientInfo{ClientID: "victim"}, ""); err != nil {
		return err
	}
	if err := c.Subscribe(context.Background(), "victim", 0); err != nil {
		return err
	}
	if p.in == abi.CallbackTimerTimeout {
		return c.StartTimer(KeepAlive, 1)
	}
	return nil
}

func (p *panicker) OnReceivedBytes(_ context.Context, c *Conn, b []byte) error {
	if p.isVictim(c, abi.CallbackReceivedBytes) {
		panic("boom in bytes")
	}
	return c.Send(b)
}

func (p *panicker) OnTimerTimeout(_ context.Context, c *Conn, _ TimerType) error {
	if p.isVictim(c, abi.CallbackTimerTimeout) {
		panic("boom in timeout")
	}
	return nil
}

func (p *panicker) OnReceivedMessages(_ context.Context, c *Conn, _ []*Message) error {
	if p.isVictim(c, abi.CallbackReceivedMessages) {
		panic("boom in messages")
	}
	return nil
}

func (p *panicker) OnSocketClosed(_ context.Context, c *Conn, reason string) error {
	p.mu.Lock()
	p.reasons[c] = reason
	p.mu.Unlock()
	p.closed <- c
	if p.isVictim(c, abi.CallbackSocketClosed) {
		panic("boom in closed")
	}
	return nil
}

// TestHandlerPanicClosesOnlyThatConnection: a back end that panics in any
// callback costs only that connection; the process, and every other
// connection, go on.
func TestHandlerPanicClosesOnlyThatConnection(t *testing.T) {
	for _, callback := range []string{
		abi.CallbackSocketCreated, abi.CallbackReceivedBytes, abi.CallbackTimerTimeout,
		abi.CallbackReceivedMessages, abi.CallbackSocketClosed,
	} {
		t.Run(callback, func(t *testing.T) {
			t.Parallel()
			p := &panicker{in: callback, ready: make(chan struct{}), reasons: make(map[*Conn]string), closed: make(chan *Conn, 4)}
			s := New(Options{Logger: quietLogger(), PubSub: &fakePubSub{}})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go s.Serve(ln, &Listener{Name: "panic", Handler: p})
			defer s.Close()
			addr := ln.Addr().String()

			victim := dial(t, addr)
			// The victim is created (and subscribed) before the
			// bystander dials; one that panics in OnSocketCreated is
			// closed instead.
			if callback == abi.CallbackSocketCreated {
				recv(t, p.closed)
				p.closed <- p.victim
			} else {
				<-p.readyOrTimeout(t)
			}
			deadline := time.Now().Add(wait)
			bystander := dial(t, addr)
			echo(t, bystander, "before\n")

			switch callback {
			case abi.CallbackReceivedBytes:
				victim.Write([]byte("hello"))
			case abi.CallbackReceivedMessages:
				if err := s.RawPublish("victim", 0, []byte("m")); err != nil {
					t.Fatal(err)
				}
			case abi.CallbackSocketClosed:
				victim.Close()
			}
			c := recv(t, p.closed)
			p.mu.Lock()
			reason, isVictim := p.reasons[c], c == p.victim
			p.mu.Unlock()
			if !isVictim {
				t.Fatalf("the bystander closed first, with %q", reason)
			}
			switch callback {
			case abi.CallbackSocketClosed:
				if reason != ReasonTCPClosed {
					t.Errorf("reason %q, want %q", reason, ReasonTCPClosed)
				}
			case abi.CallbackTimerTimeout:
				// The keepalive closes the connection whatever the
				// handler does.
				if reason != ReasonKeepaliveTimeout {
					t.Errorf("reason %q, want %q", reason, ReasonKeepaliveTimeout)
				}
			default:
				want := abi.ErrorReason(callback, "panic: boom in ")
				if !strings.HasPrefix(reason, strings.TrimSuffix(want, "}}}")) {
					t.Errorf("reason %q, want it to start like %q", reason, want)
				}
			}
			if callback != abi.CallbackSocketClosed {
				// The device sees its connection end.
				victim.SetReadDeadline(time.Now().Add(wait))
				if _, err := io.Copy(io.Discard, victim); err != nil {
					t.Errorf("victim read: %v", err)
				}
			}
			// The panic is counted once, and the victim is finished
			// (unregistered, its slot released) even if it panicked in
			// OnSocketClosed.
			for s.Panics() != 1 || s.NumConns() != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("panics %d, connections %d; want 1 and 1", s.Panics(), s.NumConns())
				}
				time.Sleep(time.Millisecond)
			}
			echo(t, bystander, "after\n")
			third := dial(t, addr)
			echo(t, third, "new\n")
		})
	}
}

// readyOrTimeout returns p.ready, failing t if the victim's OnSocketCreated
// does not finish in time.
func (p *panicker) readyOrTimeout(t *testing.T) <-chan struct{} {
	t.Helper()
	select {
	case <-p.ready:
	case <-time.After(wait):
		t.Fatal("the victim's OnSocketCreated did not finish")
	}
	return p.ready
}

func echo(t *testing.T, nc net.Conn, msg string) {
	t.Helper()
	nc.SetDeadline(time.Now().Add(wait))
	if _, err := nc.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || got != msg {
		t.Fatalf("echo %q: got %q, %v", msg, got, err)
	}
}
