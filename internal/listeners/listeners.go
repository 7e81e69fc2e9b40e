// Package listeners owns a registry of functions that come and go: the
// listeners of what a server tells, each kept until the stop its
// registration returned is called.
package listeners

import "sync"

// Set is the functions registered, of type F. Its zero value is empty
// and ready; it is safe for concurrent use.
type Set[F any] struct {
	mu   sync.Mutex
	next int
	fs   map[int]F
}

// Add registers f until stop is called.
func (s *Set[F]) Add(f F) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fs == nil {
		s.fs = map[int]F{}
	}
	id := s.next
	s.next++
	s.fs[id] = f
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.fs, id)
	}
}

// All returns the functions registered now, for the caller to call
// without holding the Set (a function may register or stop others).
func (s *Set[F]) All() []F {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := make([]F, 0, len(s.fs))
	for _, f := range s.fs {
		fs = append(fs, f)
	}
	return fs
}
