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
type streams struct {
	client  pb.ConnectionHandlerClient
	timeout time.Duration
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	workers []*worker
}

type worker struct {
	mu     [numKinds]sync.Mutex
	cs     [numKinds]grpc.ClientStream
	cancel [numKinds]context.CancelFunc
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

// send writes req on the stream of kind k of the worker that owns connection
// id. It returns once gRPC has taken the message: the streaming service has no
// per-message acknowledgement. Opening the stream or a send that blocks longer
// than the timeout (flow control against a stuck handler) fails, and the
// stream is dropped; the next send opens a new one.
func (st *streams) send(id uint64, k kind, req any) error {
	w := st.workers[id%uint64(len(st.workers))]
	w.mu[k].Lock()
	defer w.mu[k].Unlock()

	cs, cancel := w.cs[k], w.cancel[k]
	fresh := cs == nil
	var ctx context.Context
	if fresh {
		ctx, cancel = context.WithCancel(st.ctx)
		w.cancel[k] = cancel
	}
	var timedOut atomic.Bool
	watchdog := time.AfterFunc(st.timeout, func() {
		timedOut.Store(true)
		cancel()
	})
	var err error
	if fresh {
		cs, err = st.open(ctx, k)
		if err == nil {
			w.cs[k] = cs
		}
	}
	if err == nil {
		err = cs.SendMsg(req)
		if errors.Is(err, io.EOF) {
			// The real reason comes with the stream's final status.
			if rerr := cs.RecvMsg(new(pb.EmptySuccess)); rerr != nil {
				err = rerr
			}
		}
	}
	watchdog.Stop()
	if err == nil && timedOut.Load() {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		w.cs[k], w.cancel[k] = nil, nil
		if timedOut.Load() {
			err = fmt.Errorf("blocked for %v: %w", st.timeout, err)
		}
		return fmt.Errorf("remote: %s stream: %w", kindNames[k], err)
	}
	return nil
}

// close ends every stream: half-close, then wait briefly for the handler's
// EmptySuccess.
func (st *streams) close() {
	var wg sync.WaitGroup
	for _, w := range st.workers {
		for k := range numKinds {
			w.mu[k].Lock()
			cs, cancel := w.cs[k], w.cancel[k]
			w.cs[k], w.cancel[k] = nil, nil
			w.mu[k].Unlock()
			if cs == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.AfterFunc(2*time.Second, cancel)
				defer t.Stop()
				if cs.CloseSend() == nil {
					cs.RecvMsg(new(pb.EmptySuccess))
				}
				cancel()
			}()
		}
	}
	wg.Wait()
	st.cancel()
}
