package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"paas/router/engine"
)

// The router's health (Healthy) has two parts. Its listeners are accepted
// on: a listener whose accept queue has held connections for stallAfter
// while this router accepted none is not being served (the queue is shared
// with every other process holding the socket, so connections another router
// takes count as served). And it answers: a request sent to each event loop
// (or to a goroutine of its own without them) over a socket pair gets the
// router's 404 for an unknown host, through the same code as a client's.
var (
	stallAfter  = 5 * time.Second
	sampleEvery = time.Second
)

// serving is what Healthy looks at while ServeTLS runs.
type serving struct {
	f         *engine.Front
	listeners []*watchedListener
}

// watchedListener counts the connections accepted on a listener and
// follows its accept queue.
type watchedListener struct {
	net.Listener
	accepted atomic.Uint64

	mu           sync.Mutex
	lastAccepted uint64
	waiting      int       // connections in the accept queue at the last sample; -1 unknown
	stalledSince time.Time // since when the queue has held connections none of which this router took
}

func watchListener(ln net.Listener) *watchedListener {
	return &watchedListener{Listener: ln, waiting: -1}
}

func (w *watchedListener) Accept() (net.Conn, error) {
	c, err := w.Listener.Accept()
	if err == nil {
		w.accepted.Add(1)
	}
	return c, err
}

// sample records the accept queue at now.
func (w *watchedListener) sample(now time.Time) {
	q := acceptQueue(w.Listener)
	n := w.accepted.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiting = q
	switch {
	case q <= 0 || n != w.lastAccepted:
		w.stalledSince = time.Time{}
	case w.stalledSince.IsZero():
		w.stalledSince = now
	}
	w.lastAccepted = n
}

func (w *watchedListener) stalled(now time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stalledSince.IsZero() && now.Sub(w.stalledSince) >= stallAfter {
		return fmt.Errorf("not accepting on %s: %d connections waiting for %s", w.Addr(), w.waiting, now.Sub(w.stalledSince).Round(time.Second))
	}
	return nil
}

// watchAccepts samples the listeners until ctx is done.
func watchAccepts(ctx context.Context, ls []*watchedListener) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, w := range ls {
				w.sample(now)
			}
		}
	}
}

// Healthy reports why the router does not serve, or nil when it does: it
// runs ServeTLS, accepts on its listeners and answers a request on every
// event loop.
func (r *Router) Healthy(ctx context.Context) error {
	st := r.serving.Load()
	if st == nil {
		return errors.New("not serving")
	}
	now := time.Now()
	for _, w := range st.listeners {
		if err := w.stalled(now); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond) // within the health check's timeout
	defer cancel()
	return st.f.Probe(ctx)
}
