package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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

const (
	probeHost     = "_probe.router.paas" // not a DNS name: no app has it
	probeRequest  = "GET / HTTP/1.1\r\nHost: " + probeHost + "\r\nConnection: close\r\n\r\n"
	probeResponse = "HTTP/1.1 404 "
)

// serving is what Healthy looks at while ServeTLS runs.
type serving struct {
	f         *front
	h1        *handoff
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
	probed := false
	for i, l := range st.f.loops {
		if l.dead.Load() {
			continue
		}
		probed = true
		if err := r.probe(ctx, st, l); err != nil {
			return fmt.Errorf("event loop %d: %w", i, err)
		}
	}
	if !probed {
		return r.probe(ctx, st, nil)
	}
	return nil
}

// probe sends a request for probeHost to loop l (nil: to a goroutine) as a
// client connection and checks the answer.
func (r *Router) probe(ctx context.Context, st *serving, l *loop) error {
	mine, theirs, err := probeConns()
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer mine.Close()
	var taken bool
	if l != nil {
		taken = st.f.toLoop(l, theirs, func() {})
	} else {
		taken = st.f.toGoroutine(theirs, nil, st.h1, nil, func() {})
	}
	if !taken {
		return errors.New("stopping")
	}
	if d, ok := ctx.Deadline(); ok {
		_ = mine.SetDeadline(d)
	}
	if _, err := mine.Write([]byte(probeRequest)); err != nil {
		return fmt.Errorf("probe: send: %w", err)
	}
	line, err := bufio.NewReaderSize(mine, 256).ReadString('\n')
	if err != nil {
		return fmt.Errorf("probe: no answer: %w", err)
	}
	if !strings.HasPrefix(line, probeResponse) {
		return fmt.Errorf("probe: answered %q", strings.TrimSpace(line))
	}
	return nil
}
