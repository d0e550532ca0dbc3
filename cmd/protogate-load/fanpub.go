package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// fanPublisher is the publisher of fanout: a NATS client or a linepubsub
// device.
type fanPublisher interface {
	// publish sends one payload on the run's topic.
	publish(payload []byte) error
	// answered is true once every publish has been answered (a device's
	// OK or ERR), or when there is nothing to wait for.
	answered() bool
	// close ends the publisher (once; later calls return the same) and
	// returns a note for the summary, or "".
	close() string
}

// natsPub publishes as a NATS client.
type natsPub struct {
	nc      *nats.Conn
	subject string
}

func natsPublisher(url, subject string, timeout time.Duration) (fanPublisher, error) {
	nc, err := nats.Connect(url, nats.Name("protogate-load publisher"), nats.Timeout(timeout))
	if err != nil {
		return nil, err
	}
	return &natsPub{nc: nc, subject: subject}, nil
}

func (p *natsPub) publish(b []byte) error { return p.nc.Publish(p.subject, b) }
func (p *natsPub) answered() bool         { return true }
func (p *natsPub) close() string          { p.nc.Close(); return "" }

// devicePub publishes as a device of a linepubsub listener: one
// "PUB <topic> <payload>" line per message, each answered OK (or ERR).
type devicePub struct {
	r    *fanRun
	nc   net.Conn
	line []byte // "PUB <topic> ", then the payload and "\n" of the message
	head int    // len("PUB <topic> ")

	sent, ok, failed atomic.Uint64
	closing          atomic.Bool
	done             chan struct{} // closed when the reader has returned

	once sync.Once
	note string
}

// dialPublisher connects the publisher to -pubgateway and checks that the
// listener runs linepubsub (PING, PONG).
func (r *fanRun) dialPublisher(ctx context.Context) (fanPublisher, error) {
	d := dialer{addr: r.cfg.PubGateway, timeout: r.cfg.Timeout}
	nc, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(r.cfg.Timeout))
	if _, err := nc.Write([]byte("PING\n")); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	l, err := br.ReadSlice('\n')
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("PING: no answer from %s: %w", r.cfg.PubGateway, err)
	}
	if l = bytes.TrimRight(l, "\r\n"); string(l) != "PONG" {
		nc.Close()
		return nil, fmt.Errorf("PING: %s answered %q, not PONG (is it running builtin:linepubsub?)", r.cfg.PubGateway, l)
	}
	nc.SetDeadline(time.Time{})
	head := "PUB " + r.cfg.Topic + " "
	p := &devicePub{r: r, nc: nc, head: len(head), done: make(chan struct{})}
	p.line = append(make([]byte, 0, len(head)+r.cfg.Size+1), head...)
	go p.read(br)
	return p, nil
}

func (p *devicePub) publish(b []byte) error {
	p.line = append(append(p.line[:p.head], b...), '\n')
	p.sent.Add(1)
	// A gateway that stops reading must not hang the run.
	p.nc.SetWriteDeadline(time.Now().Add(p.r.cfg.Timeout))
	_, err := p.nc.Write(p.line)
	return err
}

// read counts the answers to the PUB lines.
func (p *devicePub) read(br *bufio.Reader) {
	defer close(p.done)
	for {
		l, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			p.r.errs.add(fmt.Errorf("publisher: a line of more than %d bytes from the gateway", br.Size()))
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			if !p.closing.Load() {
				p.r.errs.add(fmt.Errorf("publisher: %w", err))
			}
			return
		}
		l = bytes.TrimRight(l, "\r\n")
		switch {
		case string(l) == "OK":
			p.ok.Add(1)
		case bytes.HasPrefix(l, []byte("ERR")):
			p.failed.Add(1)
			p.r.errs.add(fmt.Errorf("publisher: the gateway says %q", l))
		case len(l) == 0:
		default:
			p.r.errs.add(fmt.Errorf("publisher: unexpected line %q", l))
		}
	}
}

func (p *devicePub) answered() bool {
	select {
	case <-p.done:
		return true // nothing more will come
	default:
	}
	return p.ok.Load()+p.failed.Load() >= p.sent.Load()
}

func (p *devicePub) close() string {
	p.once.Do(func() {
		p.closing.Store(true)
		p.nc.Close()
		<-p.done
		sent, ok, failed := p.sent.Load(), p.ok.Load(), p.failed.Load()
		p.note = fmt.Sprintf("  publisher device %s: %d PUB lines, %d answered OK, %d ERR", p.r.cfg.PubGateway, sent, ok, failed)
		if missing := int64(sent) - int64(ok) - int64(failed); missing > 0 {
			p.r.errs.add(fmt.Errorf("publisher: %d PUB lines unanswered", missing))
			p.r.errs.n.Add(uint64(missing) - 1)
		}
	})
	return p.note
}
