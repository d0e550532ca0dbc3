package echohandler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/proto/exprotov1"
)

const wait = 20 * time.Second

// fakeStream is a client stream of requests fed by the test.
type fakeStream struct {
	grpc.ServerStream // nil: unused methods panic

	ctx    context.Context
	reqs   chan *exprotov1.ReceivedBytesRequest // closed: the client closed its side
	closed chan struct{}                        // closed by SendAndClose
}

func newFakeStream(ctx context.Context) *fakeStream {
	return &fakeStream{ctx: ctx, reqs: make(chan *exprotov1.ReceivedBytesRequest), closed: make(chan struct{})}
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) Recv() (*exprotov1.ReceivedBytesRequest, error) {
	select {
	case r, ok := <-s.reqs:
		if !ok {
			return nil, io.EOF
		}
		return r, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

func (s *fakeStream) SendAndClose(*exprotov1.EmptySuccess) error {
	close(s.closed)
	return nil
}

// blockingAdapter records Sends per connection; Send calls for a
// connection in hold block until the test releases them.
type blockingAdapter struct {
	exprotov1.ConnectionAdapterClient

	mu       sync.Mutex
	sent     map[string][]string
	inFlight int
	maxIn    int
	hold     map[string]chan struct{}
	entered  chan string // receives the conn of every Send, on entry
	fail     map[string]error
}

func newBlockingAdapter() *blockingAdapter {
	return &blockingAdapter{
		sent:    make(map[string][]string),
		hold:    make(map[string]chan struct{}),
		fail:    make(map[string]error),
		entered: make(chan string, 1024),
	}
}

func (a *blockingAdapter) Send(ctx context.Context, req *exprotov1.SendBytesRequest, _ ...grpc.CallOption) (*exprotov1.CodeResponse, error) {
	conn := req.GetConn()
	a.mu.Lock()
	a.inFlight++
	a.maxIn = max(a.maxIn, a.inFlight)
	h := a.hold[conn]
	err := a.fail[conn]
	a.sent[conn] = append(a.sent[conn], string(req.GetBytes()))
	a.mu.Unlock()
	a.entered <- conn
	defer func() {
		a.mu.Lock()
		a.inFlight--
		a.mu.Unlock()
	}()
	if h != nil {
		select {
		case <-h:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return &exprotov1.CodeResponse{}, nil
}

// serve runs the OnReceivedBytes stream of h on s in the background.
func serve(h *Handler, s *fakeStream) <-chan error {
	done := make(chan error, 1)
	go func() { done <- h.Streaming().OnReceivedBytes(s) }()
	return done
}

func feed(t *testing.T, s *fakeStream, conn, b string) {
	t.Helper()
	select {
	case s.reqs <- &exprotov1.ReceivedBytesRequest{Conn: conn, Bytes: []byte(b)}:
	case <-time.After(wait):
		t.Fatalf("stream did not take %s %q", conn, b)
	}
}

func awaitEntered(t *testing.T, a *blockingAdapter, want string) {
	t.Helper()
	select {
	case got := <-a.entered:
		if got != want {
			t.Fatalf("Send for %s, want %s", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("no Send for %s", want)
	}
}

// awaitEnteredAll waits for a Send for each of conns, in any order.
func awaitEnteredAll(t *testing.T, a *blockingAdapter, conns ...string) {
	t.Helper()
	want := make(map[string]bool)
	for _, c := range conns {
		want[c] = true
	}
	for range conns {
		select {
		case got := <-a.entered:
			if !want[got] {
				t.Fatalf("Send for %s, want one of %v", got, conns)
			}
			delete(want, got)
		case <-time.After(wait):
			t.Fatalf("no Send for %v", want)
		}
	}
}

func awaitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		t.Fatal("stream handler did not return")
		return nil
	}
}

// TestStreamConnectionsConcurrentInOrder: a connection whose Send hangs
// does not hold up another connection on the same stream, and its own later
// requests wait behind it.
func TestStreamConnectionsConcurrentInOrder(t *testing.T) {
	a := newBlockingAdapter()
	release := make(chan struct{})
	a.hold["000000000000000a"] = release
	h := New(a, Options{StreamConcurrency: 4})
	s := newFakeStream(context.Background())
	done := serve(h, s)

	feed(t, s, "000000000000000a", "a1")
	awaitEntered(t, a, "000000000000000a")
	feed(t, s, "000000000000000a", "a2") // queued behind a1
	feed(t, s, "000000000000000b", "b1")
	awaitEntered(t, a, "000000000000000b") // b runs although a1 hangs
	a.mu.Lock()
	if got := a.sent["000000000000000a"]; len(got) != 1 {
		t.Errorf("a's Sends while a1 hangs: %q, want only a1", got)
	}
	a.mu.Unlock()
	close(release)
	awaitEntered(t, a, "000000000000000a")
	close(s.reqs)
	if err := awaitDone(t, done); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.closed:
	default:
		t.Error("stream ended without SendAndClose")
	}
	if got := a.sent["000000000000000a"]; fmt.Sprint(got) != "[a1 a2]" {
		t.Errorf("a's Sends %q, want [a1 a2]", got)
	}
}

// TestStreamOrderManyConnections interleaves many connections' requests
// and checks each connection's Sends come in order and none is lost.
func TestStreamOrderManyConnections(t *testing.T) {
	for _, n := range []int{1, 3, 64} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a := newBlockingAdapter()
			a.entered = make(chan string, 100000)
			h := New(a, Options{StreamConcurrency: n})
			s := newFakeStream(context.Background())
			done := serve(h, s)
			const conns, per = 10, 50
			for i := range per {
				for c := range conns {
					feed(t, s, fmt.Sprintf("%016x", c), fmt.Sprint(i))
				}
			}
			close(s.reqs)
			if err := awaitDone(t, done); err != nil {
				t.Fatal(err)
			}
			for c := range conns {
				got := a.sent[fmt.Sprintf("%016x", c)]
				if len(got) != per {
					t.Fatalf("conn %d: %d Sends, want %d", c, len(got), per)
				}
				for i, b := range got {
					if b != fmt.Sprint(i) {
						t.Fatalf("conn %d: Send %d was %q: out of order", c, i, b)
					}
				}
			}
			if a.maxIn > n {
				t.Errorf("%d Sends in flight at once, want at most %d", a.maxIn, n)
			}
		})
	}
}

// TestStreamConcurrencyBound: with every Send hanging, no more than
// StreamConcurrency connections are handled at once.
func TestStreamConcurrencyBound(t *testing.T) {
	a := newBlockingAdapter()
	release := make(chan struct{})
	for c := range 5 {
		a.hold[fmt.Sprintf("%016x", c)] = release
	}
	h := New(a, Options{StreamConcurrency: 2})
	s := newFakeStream(context.Background())
	done := serve(h, s)
	feed(t, s, fmt.Sprintf("%016x", 0), "x")
	feed(t, s, fmt.Sprintf("%016x", 1), "x")
	awaitEnteredAll(t, a, fmt.Sprintf("%016x", 0), fmt.Sprintf("%016x", 1))
	// The third connection is received but must wait for a slot, and the
	// stream takes no fourth request meanwhile.
	feed(t, s, fmt.Sprintf("%016x", 2), "x")
	select {
	case s.reqs <- &exprotov1.ReceivedBytesRequest{Conn: fmt.Sprintf("%016x", 3), Bytes: []byte("x")}:
		t.Fatal("stream received past its concurrency bound")
	case c := <-a.entered:
		t.Fatalf("Send for %s past the concurrency bound", c)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	awaitEntered(t, a, fmt.Sprintf("%016x", 2))
	close(s.reqs)
	if err := awaitDone(t, done); err != nil {
		t.Fatal(err)
	}
}

// TestStreamErrorEndsStream: a transport error from the adapter ends the
// stream with that error.
func TestStreamErrorEndsStream(t *testing.T) {
	for _, n := range []int{1, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			boom := errors.New("boom")
			a := newBlockingAdapter()
			a.fail["0000000000000001"] = boom
			h := New(a, Options{StreamConcurrency: n})
			s := newFakeStream(context.Background())
			done := serve(h, s)
			feed(t, s, "0000000000000001", "x")
			awaitEntered(t, a, "0000000000000001")
			if n > 1 {
				// Concurrent handling notices on the next request or
				// the end of the stream.
				close(s.reqs)
			}
			if err := awaitDone(t, done); !errors.Is(err, boom) {
				t.Fatalf("stream ended with %v, want %v", err, boom)
			}
			select {
			case <-s.closed:
				t.Error("failed stream answered EmptySuccess")
			default:
			}
		})
	}
}

// TestStreamCanceled: a stream whose context ends stops, and its goroutines
// with it.
func TestStreamCanceled(t *testing.T) {
	a := newBlockingAdapter()
	a.hold["0000000000000001"] = make(chan struct{}) // never released
	h := New(a, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s := newFakeStream(ctx)
	done := serve(h, s)
	feed(t, s, "0000000000000001", "x")
	awaitEntered(t, a, "0000000000000001")
	cancel()
	if err := awaitDone(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("stream ended with %v, want context.Canceled", err)
	}
}
