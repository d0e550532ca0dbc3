package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	pb "github.com/protogate/protogate/proto/exprotov1"
)

// kind is one of the five callbacks; each has its own stream.
type kind int

const (
	kindCreated kind = iota
	kindBytes
	kindTimeout
	kindMessages
	kindClosed
	numKinds
)

var kindNames = [numKinds]string{"OnSocketCreated", "OnReceivedBytes", "OnTimerTimeout", "OnReceivedMessages", "OnSocketClosed"}

// streams drives the legacy client-streaming ConnectionHandler service. Like
// EMQX 4.x it keeps a small pool of workers, each with one long-lived stream
// per callback; a connection always uses the same worker, so its callbacks of
// one kind stay in order. Callbacks of different kinds travel on different
// streams, and the handler may see them out of order: that is the flaw of the
// streaming service that ConnectionUnaryHandler fixed.
//
// Some handlers end a stream after reading one message (EMQX's own early Go
// example does). A watcher per stream notices when the handler ends it, and
// the next callback opens a fresh stream, as EMQX reopened streams that were
// gone.
type streams struct {
	client  pb.ConnectionHandlerClient
	timeout time.Duration
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	workers []*worker
	wg      sync.WaitGroup // watchers
}

type worker struct {
	mu [numKinds]sync.Mutex
	s  [numKinds]*stream
}

// stream is one open client stream.
type stream struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc
	ended  atomic.Bool // the handler has ended the stream
}

func newStreams(client pb.ConnectionHandlerClient, timeout time.Duration, log *slog.Logger) *streams {
	st := &streams{client: client, timeout: timeout, log: log}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.workers = make([]*worker, 2*runtime.GOMAXPROCS(0))
	for i := range st.workers {
		st.workers[i] = new(worker)
	}
	return st
}

func (st *streams) open(ctx context.Context, k kind) (grpc.ClientStream, error) {
	switch k {
	case kindCreated:
		return st.client.OnSocketCreated(ctx)
	case kindBytes:
		return st.client.OnReceivedBytes(ctx)
	case kindTimeout:
		return st.client.OnTimerTimeout(ctx)
	case kindMessages:
		return st.client.OnReceivedMessages(ctx)
	case kindClosed:
		return st.client.OnSocketClosed(ctx)
	}
	return nil, fmt.Errorf("remote: unknown callback kind %d", k)
}

// watch waits for the handler to end s (its EmptySuccess or an error).
func (st *streams) watch(s *stream) {
	defer st.wg.Done()
	s.cs.RecvMsg(new(pb.EmptySuccess))
	s.ended.Store(true)
}

// send writes req on the stream of kind k of the worker that owns connection
// id. It returns once gRPC has taken the message: the streaming service has no
// per-message acknowledgement. Opening the stream, or a send that blocks
// longer than the timeout (flow control against a stuck handler), fails the
// callback and drops the stream; a stream the handler has ended is replaced
// and the message sent again, once.
func (st *streams) send(id uint64, k kind, req any) error {
	w := st.workers[id%uint64(len(st.workers))]
	w.mu[k].Lock()
	defer w.mu[k].Unlock()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		s := w.s[k]
		if s != nil && s.ended.Load() {
			s.cancel()
			s, w.s[k] = nil, nil
		}
		if s == nil {
			if s, err = st.openBounded(k); err != nil {
				return fmt.Errorf("remote: %s stream: %w", kindNames[k], err)
			}
			w.s[k] = s
		}
		watchdog := time.AfterFunc(st.timeout, s.cancel)
		err = s.cs.SendMsg(req)
		stopped := watchdog.Stop()
		if err == nil {
			return nil
		}
		s.cancel()
		w.s[k] = nil
		if !stopped {
			return fmt.Errorf("remote: %s stream: blocked for %v: %w", kindNames[k], st.timeout, err)
		}
		if !errors.Is(err, io.EOF) {
			break
		}
		// io.EOF: the handler ended the stream before this message went out;
		// open a new one and try again.
	}
	return fmt.Errorf("remote: %s stream: %w", kindNames[k], err)
}

// openBounded opens a stream of kind k, giving up after the timeout, and
// starts its watcher.
func (st *streams) openBounded(k kind) (*stream, error) {
	ctx, cancel := context.WithCancel(st.ctx)
	watchdog := time.AfterFunc(st.timeout, cancel)
	cs, err := st.open(ctx, k)
	if !watchdog.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, err
	}
	s := &stream{cs: cs, cancel: cancel}
	st.wg.Add(1)
	go st.watch(s)
	return s, nil
}

// close ends every stream: half-close, wait briefly for the handler's
// EmptySuccess, then cancel, and waits for the watchers.
func (st *streams) close() {
	var open []*stream
	for _, w := range st.workers {
		for k := range numKinds {
			w.mu[k].Lock()
			if s := w.s[k]; s != nil {
				open = append(open, s)
				s.cs.CloseSend()
				w.s[k] = nil
			}
			w.mu[k].Unlock()
		}
	}
	done := make(chan struct{})
	go func() {
		st.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		st.cancel()
		<-done
	}
	st.cancel()
	for _, s := range open {
		s.cancel()
	}
}
