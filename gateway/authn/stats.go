package authn

import (
	"sync"
	"sync/atomic"
)

// Stats counts authenticators' results by source name and result
// (allow, deny, ignore, error). The zero value is ready; it is safe for
// concurrent use, and a nil *Stats counts nothing.
type Stats struct {
	m sync.Map // "source/result" -> *atomic.Uint64
}

func (s *Stats) count(source, result string) {
	if s == nil {
		return
	}
	k := source + "/" + result
	v, ok := s.m.Load(k)
	if !ok {
		v, _ = s.m.LoadOrStore(k, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// Snapshot returns the counts, keyed by source and then result.
func (s *Stats) Snapshot() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	if s == nil {
		return out
	}
	s.m.Range(func(k, v any) bool {
		key := k.(string)
		for i := len(key) - 1; i >= 0; i-- {
			if key[i] == '/' {
				src, res := key[:i], key[i+1:]
				if out[src] == nil {
					out[src] = map[string]uint64{}
				}
				out[src][res] = v.(*atomic.Uint64).Load()
				break
			}
		}
		return true
	})
	return out
}
