package gateway

import (
	"math/bits"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
)

// TestIDCipherIsAPermutation checks that ids are unique: decrypt inverts
// encrypt (so encrypt is one-to-one), and the first million counter values
// give a million distinct ids, none of them 0.
func TestIDCipherIsAPermutation(t *testing.T) {
	k := newIDCipher()
	for _, v := range []uint64{0, 1, 2, 1 << 32, 1<<64 - 1, rand.Uint64(), rand.Uint64()} {
		if got := k.decrypt(k.encrypt(v)); got != v {
			t.Errorf("decrypt(encrypt(%#x)) = %#x", v, got)
		}
	}
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = k.encrypt(uint64(i + 1))
	}
	// Consecutive counter values give unrelated ids: on average half of
	// the 64 bits differ (a bound far wider than the statistics need).
	var flipped int
	for i := 1; i < n; i++ {
		flipped += bits.OnesCount64(ids[i] ^ ids[i-1])
	}
	if mean := float64(flipped) / float64(n-1); mean < 31.5 || mean > 32.5 {
		t.Errorf("consecutive ids differ in %.2f bits on average, want about 32", mean)
	}
	slices.Sort(ids)
	for i := 1; i < n; i++ {
		if ids[i] == ids[i-1] {
			t.Fatalf("id %#x given twice in %d", ids[i], n)
		}
	}
	if ids[0] == 0 && ids[1] != 0 {
		t.Logf("counter value %#x maps to id 0, which nextID skips", k.decrypt(0))
	}
}

// TestIDCipherKeys checks that every Server has its own key: two servers
// number their connections differently.
func TestIDCipherKeys(t *testing.T) {
	a, b := New(Options{Logger: quietLogger()}), New(Options{Logger: quietLogger()})
	defer a.Close()
	defer b.Close()
	_, ida := a.nextID()
	_, idb := b.nextID()
	if ida == idb {
		t.Errorf("two servers gave their first connection the same id %#x", ida)
	}
}

// TestHandlesOfConsecutiveConnections connects devices one after another:
// their handles parse back to their ids, are not consecutive or in any
// order, and Conns still lists the connections oldest first.
func TestHandlesOfConsecutiveConnections(t *testing.T) {
	h := newChecker(t)
	s, addr := serve(t, h, Options{}, Listener{})
	const n = 16
	var created []*Conn
	for range n {
		dial(t, addr)
		created = append(created, recv(t, h.created))
	}
	ascending := true
	for i, c := range created {
		id, ok := parseHandle(c.Handle())
		if !ok || id != c.ID() || id == 0 {
			t.Errorf("handle %q of id %#x parses to %#x, %v", c.Handle(), c.ID(), id, ok)
		}
		if got, err := s.Lookup(c.Handle()); got != c || err != nil {
			t.Errorf("Lookup(%q) = %v, %v", c.Handle(), got, err)
		}
		if i == 0 {
			continue
		}
		prev := created[i-1].ID()
		if d := c.ID() - prev; d == 1 || d == 1<<64-1 {
			t.Errorf("consecutive connections have neighbouring ids %#x and %#x", prev, c.ID())
		}
		ascending = ascending && c.ID() > prev
		// The neighbours of a seen handle reach nothing.
		for _, guess := range []uint64{c.ID() - 1, c.ID() + 1, prev + 1} {
			if got, err := s.Lookup(formatHandle(guess)); got != nil && got.ID() != guess || err != nil && CodeOf(err) != CodeNotAlive {
				t.Errorf("Lookup of the guess %#x = %v, %v", guess, got, err)
			}
		}
	}
	if ascending {
		t.Errorf("the ids of %d connections are in creation order; they should show none", n)
	}
	if got := s.Conns(); !slices.Equal(got, created) {
		t.Errorf("Conns is not in creation order")
	}
}

// BenchmarkNextID measures what numbering one connection costs: a counter
// increment and ten AES-128 block encryptions.
func BenchmarkNextID(b *testing.B) {
	s := New(Options{Logger: quietLogger()})
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		s.nextID()
	}
}

// BenchmarkConnLifetime measures a whole connection over net.Pipe, from
// ServeConn to OnSocketClosed, with a handler that does nothing: the
// gateway's own cost per connection, which BenchmarkNextID is part of.
func BenchmarkConnLifetime(b *testing.B) {
	s := New(Options{Logger: quietLogger()})
	defer s.Close()
	l := &Listener{Name: "bench", Type: TCP, Handler: queueEcho{}}
	b.ReportAllocs()
	for b.Loop() {
		client, server := net.Pipe()
		client.Close()
		if err := s.ServeConn(server, l); err != nil {
			b.Fatal(err)
		}
	}
}
