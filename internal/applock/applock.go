// Package applock serializes work per app: one holder of an app's lock at a
// time, apps side by side. The locks live in memory only, so a restart never
// leaves one behind.
package applock

import (
	"context"
	"sync"
)

// Set holds one lock per app; its zero value is ready to use.
type Set struct {
	mu    sync.Mutex
	locks map[string]chan struct{}
}

// Lock takes app's lock, calling waiting first when another holder has it,
// and returns the function that frees it. It gives up when ctx ends.
func (s *Set) Lock(ctx context.Context, app string, waiting func()) (unlock func(), err error) {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]chan struct{}{}
	}
	l, ok := s.locks[app]
	if !ok {
		l = make(chan struct{}, 1)
		s.locks[app] = l
	}
	s.mu.Unlock()
	free := func() { <-l }
	select {
	case l <- struct{}{}:
		return free, nil
	default:
	}
	if waiting != nil {
		waiting()
	}
	select {
	case l <- struct{}{}:
		return free, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
