package engine

import (
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// maxIdlePerBackend keeps enough warm connections per task for a busy app.
const maxIdlePerBackend = 1024

// Backend is one task address with its own connections, so that the idle
// connections to a task that left the route table can be closed without
// touching the others. The router keeps one per address across table
// swaps.
//
// Why three pools of idle connections and not one: each holds connections
// only its own user can take up, so merging them would move the difference
// into the pool, not remove it.
//   - fast (upstream.go): blocking net.Conn connections, read and written
//     by the goroutine that serves a request: the front without loops, and
//     the router's net/http path for a request without a body.
//   - transport (http.Transport): the net/http path for a request with a
//     body, which it keeps sending while it reads the response (an app may
//     answer 413 early) and for which it handles Expect: 100-continue;
//     upstream does neither, and doing both would make it a second
//     http.Transport, whose two goroutines per connection are what
//     upstream was written to avoid on the common path.
//   - each event loop's pools (loop.go, keyed by this Backend): raw
//     non-blocking descriptors registered with that loop's epoll set and
//     read only when it says so. A goroutine could not wait on one without
//     taking it out of the set and giving it to Go's poller, nor another
//     loop without moving it between sets; and a pool shared by the loops
//     would need a lock they now do not take per request.
//
// What they share is here, once: the address, the dial settings
// (backendDialer, setPeerTimeout), the passive health (passive.go), the
// in-flight count, and CloseIdle, which empties fast and transport at once
// and, through idleCloses, makes each loop close the idle connections it
// finds of an older count.
type Backend struct {
	addr string
	// fast carries requests without a body (most of them); transport the
	// others, because it reads a response while the body is still being
	// sent (a backend may answer 413 early).
	fast      *upstream
	transport *http.Transport
	timeout   time.Duration // the connect timeout
	log       *slog.Logger
	// downUntil is when an ejected backend is probed next (unix
	// nanoseconds); 0 while it is in rotation (passive.go).
	downUntil atomic.Int64
	probing   atomic.Bool
	// inflight counts requests sent to this backend whose response has not
	// been fully passed on yet. A task is stopped only once it left the
	// table and this is zero: that is what draining means.
	inflight atomic.Int64
	// idleCloses counts CloseIdle calls, for the event loops' pools.
	idleCloses atomic.Uint64
}

// NewBackend returns the Backend of a task at addr (host:port). timeout
// bounds a connection attempt, and how long what is sent may stay
// unacknowledged (or a keep-alive probe unanswered) before the connection
// fails and the backend is ejected (passive.go); 0 is DefaultConnectTimeout.
func NewBackend(addr string, timeout time.Duration, log *slog.Logger) *Backend {
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	if log == nil {
		log = slog.Default()
	}
	return &Backend{
		addr:    addr,
		timeout: timeout,
		log:     log,
		fast:    newUpstream(addr, timeout),
		transport: &http.Transport{
			DialContext:           backendDialer(timeout, false).DialContext,
			MaxIdleConnsPerHost:   maxIdlePerBackend,
			IdleConnTimeout:       60 * time.Second,
			ExpectContinueTimeout: time.Second,
			// A proxy passes bodies through as they are.
			DisableCompression: true,
		},
	}
}

// Addr is the task's address.
func (b *Backend) Addr() string { return b.addr }

// CloseIdle closes the backend's idle connections, in every pool; those in
// use are closed when their response is done with.
func (b *Backend) CloseIdle() {
	b.idleCloses.Add(1)
	b.fast.closeIdle()
	b.transport.CloseIdleConnections()
}

// RoundTrip sends req (whose URL names the task) on one of the backend's
// connections: a pooled keep-alive one for a request without a body,
// http.Transport's for one with a body. It does not count the request in
// flight (Begin) nor eject the backend when it fails (Eject): the caller
// decides.
func (b *Backend) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return b.fast.RoundTrip(req)
	}
	return b.transport.RoundTrip(req)
}

// Begin counts a request sent to the backend; End, once its response has
// been passed on (or failed).
func (b *Backend) Begin() { b.inflight.Add(1) }

// End ends a request counted by Begin.
func (b *Backend) End() { b.inflight.Add(-1) }

// InFlight is the number of requests sent to the backend whose response
// has not been fully passed on yet.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }
