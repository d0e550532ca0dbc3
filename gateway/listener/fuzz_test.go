package listener

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// FuzzDemux drives the UDP listener's demultiplexer (deliver, the read
// loop's work without the socket) with a sequence of operations from fuzz
// input, and checks it against a model after every step:
//
//   - datagrams of one peer arrive on that peer's pseudo-connection, in
//     order, and never on another peer's;
//   - a closed pseudo-connection never receives again;
//   - the next datagram of a peer whose pseudo-connection was closed
//     creates a new one (when the accept queue has room and admission
//     allows);
//   - every datagram is delivered, queued, or counted in exactly one of
//     QueueDrops, AcceptDrops, Refused (or discarded with its closed
//     connection), and health-check probes create nothing.
//
// Input: byte 0 sets QueueLen (1..4), byte 1 AcceptQueue (1..3); then one
// byte per operation: the low two bits pick a peer, the rest the operation.
func FuzzDemux(f *testing.F) {
	f.Add([]byte{0, 0, 0x00, 0x04, 0x10, 0x0c, 0x08, 0x00, 0x0c})
	f.Add([]byte{3, 2, 0x00, 0x01, 0x02, 0x03, 0x10, 0x10, 0x00, 0x01, 0x0c, 0x0d, 0x08, 0x00, 0x10, 0x0c})
	f.Add([]byte{1, 0, 0x14, 0x00, 0x00, 0x00, 0x14, 0x10, 0x00, 0x18, 0x00, 0x10, 0x0c, 0x08, 0x04, 0x10, 0x0c})
	f.Add(bytes.Repeat([]byte{0x00, 0x05, 0x0a, 0x0f, 0x10, 0x11, 0x0c, 0x0d, 0x08, 0x09}, 8))
	f.Fuzz(fuzzDemux)
}

func fuzzDemux(t *testing.T, in []byte) {
	if len(in) < 2 {
		return
	}
	if len(in) > 2+400 {
		in = in[:2+400]
	}
	queueLen, acceptQueue := 1+int(in[0]%4), 1+int(in[1]%3)
	m := newDemuxModel(t, queueLen, acceptQueue)
	defer m.l.Close()
	for _, op := range in[2:] {
		p := m.peers[op&3]
		switch (op >> 2) % 7 {
		case 0, 1:
			m.send(p)
		case 2:
			m.close(p)
		case 3:
			m.readAll(p)
		case 4:
			m.accept()
		case 5:
			m.probe(p)
		case 6:
			p.refused = !p.refused
		}
		m.check()
	}
	// Drain what is left, then close everything.
	for len(m.pending) > 0 {
		m.accept()
	}
	for _, p := range m.peers {
		m.readAll(p)
	}
	m.check()
	m.l.Close()
	for _, c := range m.closed {
		assertClosed(t, c)
	}
	for _, p := range m.peers {
		if p.conn != nil {
			assertClosed(t, p.conn)
		}
	}
}

type modelPeer struct {
	i       byte
	ap      netip.AddrPort
	refused bool

	live    bool     // has a pseudo-connection, accepted or pending
	conn    net.Conn // once accepted
	queued  []uint16 // sequence numbers queued for conn, in order
	created uint16   // the datagram that created the current conn
}

type demuxModel struct {
	t                    *testing.T
	l                    *UDPListener
	queueLen, acceptQLen int
	peers                [4]*modelPeer
	pending              []*modelPeer // created, not yet accepted, in order
	closed               []net.Conn
	seq                  uint16
	want                 UDPStats
}

func newDemuxModel(t *testing.T, queueLen, acceptQueue int) *demuxModel {
	m := &demuxModel{t: t, queueLen: queueLen, acceptQLen: acceptQueue}
	m.l = newUDPListener(nil, UDPConfig{Logger: slog.New(slog.DiscardHandler), QueueLen: queueLen, AcceptQueue: acceptQueue, HealthCheck: &HealthCheck{Request: []byte("HC?"), Reply: []byte("HC!")}})
	for i := range m.peers {
		m.peers[i] = &modelPeer{i: byte(i), ap: netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("127.0.0.%d", 1+i)), uint16(1000+i))}
	}
	m.l.SetAdmit(func(remote net.Addr) error {
		for _, p := range m.peers {
			if remote.String() == p.ap.String() && p.refused {
				return errors.New("refused")
			}
		}
		return nil
	})
	return m
}

func (m *demuxModel) send(p *modelPeer) {
	m.seq++
	s := m.seq
	if reply := m.l.deliver(p.ap, []byte{p.i, byte(s >> 8), byte(s), 0xee}); reply != nil {
		m.t.Fatalf("datagram %d answered as a probe", s)
	}
	switch {
	case p.live && len(p.queued) < m.queueLen:
		p.queued = append(p.queued, s)
	case p.live:
		m.want.QueueDrops++
	case len(m.pending) == m.acceptQLen:
		m.want.AcceptDrops++
	case p.refused:
		m.want.Refused++
	default:
		p.live, p.conn, p.queued, p.created = true, nil, []uint16{s}, s
		m.pending = append(m.pending, p)
	}
}

func (m *demuxModel) probe(p *modelPeer) {
	reply := m.l.deliver(p.ap, []byte("HC?"))
	if string(reply) != "HC!" {
		m.t.Fatalf("probe answered with %q", reply)
	}
	m.want.HealthChecks++
}

func (m *demuxModel) accept() {
	if len(m.pending) == 0 {
		return // Accept would wait
	}
	p := m.pending[0]
	m.pending = m.pending[1:]
	c, err := m.l.Accept()
	if err != nil {
		m.t.Fatal(err)
	}
	if c.RemoteAddr().String() != p.ap.String() {
		m.t.Fatalf("accepted %v, want %v", c.RemoteAddr(), p.ap)
	}
	for _, old := range m.closed {
		if c == old {
			m.t.Fatal("a closed pseudo-connection was handed out again")
		}
	}
	p.conn = c
	m.want.Accepted++
}

func (m *demuxModel) close(p *modelPeer) {
	if p.conn == nil {
		return // pending or none: nobody holds it to close
	}
	if err := p.conn.Close(); err != nil {
		m.t.Fatal(err)
	}
	m.closed = append(m.closed, p.conn)
	p.live, p.conn, p.queued = false, nil, nil
}

func (m *demuxModel) readAll(p *modelPeer) {
	if p.conn == nil {
		return
	}
	buf := make([]byte, 16)
	for k, s := range p.queued {
		p.conn.SetReadDeadline(time.Now().Add(time.Minute))
		n, err := p.conn.Read(buf)
		if err != nil {
			m.t.Fatalf("peer %d: read %d of %d: %v", p.i, k, len(p.queued), err)
		}
		if n != 4 || buf[0] != p.i {
			m.t.Fatalf("peer %d got datagram % x of another peer", p.i, buf[:n])
		}
		got := uint16(buf[1])<<8 | uint16(buf[2])
		if got != s {
			m.t.Fatalf("peer %d: got datagram %d, want %d (queued %v)", p.i, got, s, p.queued)
		}
		if k == 0 && got < p.created {
			m.t.Fatalf("peer %d: datagram %d predates its connection (created by %d)", p.i, got, p.created)
		}
	}
	p.queued = nil
	// Nothing more is queued: a Read with an expired deadline times out.
	p.conn.SetReadDeadline(time.Unix(0, 1))
	if n, err := p.conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		m.t.Fatalf("peer %d: extra datagram % x (err %v)", p.i, buf[:n], err)
	}
	p.conn.SetReadDeadline(time.Time{})
}

func (m *demuxModel) check() {
	want := m.want
	for _, p := range m.peers {
		if p.live {
			want.Peers++
		}
	}
	if got := m.l.Stats(); got != want {
		m.t.Fatalf("stats %+v, want %+v", got, want)
	}
	for _, c := range m.closed {
		assertClosed(m.t, c)
	}
}

func assertClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Read(make([]byte, 16)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closed connection read: %v", err)
	}
}
