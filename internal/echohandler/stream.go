package echohandler

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/proto/exprotov1"
)

// streamingHandler implements the legacy client-streaming ConnectionHandler
// service on top of the Handler's unary methods.
type streamingHandler struct {
	exprotov1.UnimplementedConnectionHandlerServer
	h *Handler
}

var _ exprotov1.ConnectionHandlerServer = streamingHandler{}

func (s streamingHandler) OnSocketCreated(stream grpc.ClientStreamingServer[exprotov1.SocketCreatedRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.streamN, s.h.OnSocketCreated)
}

func (s streamingHandler) OnSocketClosed(stream grpc.ClientStreamingServer[exprotov1.SocketClosedRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.streamN, s.h.OnSocketClosed)
}

func (s streamingHandler) OnReceivedBytes(stream grpc.ClientStreamingServer[exprotov1.ReceivedBytesRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.streamN, s.h.OnReceivedBytes)
}

func (s streamingHandler) OnTimerTimeout(stream grpc.ClientStreamingServer[exprotov1.TimerTimeoutRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.streamN, s.h.OnTimerTimeout)
}

func (s streamingHandler) OnReceivedMessages(stream grpc.ClientStreamingServer[exprotov1.ReceivedMessagesRequest, exprotov1.EmptySuccess]) error {
	return serveStream(stream, s.h.streamN, s.h.OnReceivedMessages)
}

// request is what every callback request has: the connection it is for.
type request[Req any] interface {
	*Req
	GetConn() string
}

// serveStream receives requests until the client closes its side, handles
// each with fn, then answers EmptySuccess. With max 1 it handles each
// request before receiving the next. Otherwise a connection's requests are
// handled in order by one goroutine that lives while it has requests
// queued, and at most max connections are handled at once; receiving waits
// for a free slot, so a slow adapter pushes back on the gateway through
// HTTP/2 flow control.
func serveStream[Req any, P request[Req]](stream grpc.ClientStreamingServer[Req, exprotov1.EmptySuccess], max int, fn func(context.Context, P) (*exprotov1.EmptySuccess, error)) error {
	if max <= 1 {
		ctx := stream.Context()
		for {
			req, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(empty)
			}
			if err != nil {
				return err
			}
			if _, err := fn(ctx, req); err != nil {
				return err
			}
		}
	}

	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	d := &dispatcher[Req, P]{
		ctx:    ctx,
		cancel: cancel,
		fn:     fn,
		slots:  make(chan struct{}, max),
		queues: make(map[string]*[]P),
	}
	defer d.wg.Wait()
	for {
		req, err := stream.Recv()
		if failed := context.Cause(ctx); failed != nil {
			return failed // a request failed: end the stream with its error
		}
		if errors.Is(err, io.EOF) {
			d.wg.Wait()
			if failed := context.Cause(ctx); failed != nil {
				return failed
			}
			return stream.SendAndClose(empty)
		}
		if err != nil {
			cancel(err)
			return err
		}
		d.dispatch(req)
	}
}

// dispatcher runs the requests of one stream, one goroutine per connection
// that has requests queued. queues and the slices it points to are guarded
// by mu; a connection has an entry exactly while its goroutine runs.
type dispatcher[Req any, P request[Req]] struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	fn     func(context.Context, P) (*exprotov1.EmptySuccess, error)
	slots  chan struct{} // one token per running goroutine
	wg     sync.WaitGroup

	mu     sync.Mutex
	queues map[string]*[]P // requests waiting behind the running one
}

// dispatch queues req behind its connection's running request, or starts a
// goroutine for it once a slot is free.
func (d *dispatcher[Req, P]) dispatch(req P) {
	conn := req.GetConn()
	d.mu.Lock()
	if q := d.queues[conn]; q != nil {
		*q = append(*q, req)
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	// Only this goroutine adds entries, so conn stays absent meanwhile.
	d.slots <- struct{}{}
	d.mu.Lock()
	d.queues[conn] = new([]P)
	d.mu.Unlock()
	d.wg.Add(1)
	go d.run(conn, req)
}

// run handles req and then the connection's queued requests, in order,
// until none are left or a request has failed.
func (d *dispatcher[Req, P]) run(conn string, req P) {
	defer d.wg.Done()
	defer func() { <-d.slots }()
	for {
		if _, err := d.fn(d.ctx, req); err != nil {
			d.cancel(err)
		}
		d.mu.Lock()
		q := d.queues[conn]
		if len(*q) == 0 || d.ctx.Err() != nil {
			delete(d.queues, conn)
			d.mu.Unlock()
			return
		}
		req = (*q)[0]
		(*q)[0] = nil
		*q = (*q)[1:]
		d.mu.Unlock()
	}
}
