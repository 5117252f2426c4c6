package engine

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Passive health: the router learns that a task is unreachable from the
// requests it sends it, without waiting for Swarm (which marks a lost node
// down after about 15 s). A backend whose connection cannot be made within
// its connect timeout (NewBackend), or whose connection fails before a
// response came (reset, closed, or what the router sent left unacknowledged
// for the connect timeout: the node is gone), is ejected: it gets requests
// only when every other backend of the route failed them. Once ejectFor has
// passed, the next request that would have used it starts a probe (a TCP
// connect); the backend takes requests again when a probe connects, and
// stays ejected for another ejectFor when it does not. A request that failed
// moves on as the router's balancer.RoundTrip says: always when nothing was
// sent, once more for an idempotent one.

const (
	// DefaultConnectTimeout is NewBackend's (and the router's) default: a
	// task on the overlay network answers a connection within
	// milliseconds, and a node that is gone never does.
	DefaultConnectTimeout = time.Second
	// ejectFor is how long an ejected backend waits before it is probed,
	// and between probes that fail.
	ejectFor = 2 * time.Second
)

// backendDialer returns the dialer of connections to tasks: with
// unacknowledged set, for requests without a body, as setPeerTimeout
// sets them up; without, only with its keep-alive probes (see
// setPeerTimeout for why).
func backendDialer(timeout time.Duration, unacknowledged bool) *net.Dialer {
	idle := keepAliveIdle(timeout)
	d := &net.Dialer{
		Timeout:         timeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: idle, Interval: idle, Count: 2},
	}
	if unacknowledged {
		d.Control = userTimeoutControl(timeout)
	}
	return d
}

// keepAliveIdle is how long a connection to a task may be silent before a
// keep-alive probe checks the task is still there: timeout in whole seconds
// (the kernel's unit), at least one.
func keepAliveIdle(timeout time.Duration) time.Duration {
	return max(time.Second, timeout.Round(time.Second))
}

// peerLost reports an error of a connection whose peer stopped answering
// (setPeerTimeout) or cannot be routed to. Sending the request again on a
// new connection to the same task is pointless then.
func peerLost(err error) bool {
	return errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}

// usable reports whether b takes requests at now (unix nanoseconds). An
// ejected backend whose time is up is probed, one probe at a time, and
// stays out until a probe connects.
func (b *Backend) usable(now int64) bool {
	until := b.downUntil.Load()
	if until == 0 {
		return true
	}
	if until <= now && b.probing.CompareAndSwap(false, true) {
		go b.probe(until)
	}
	return false
}

// DownUntil is when an ejected backend is probed next, in unix
// nanoseconds, pushed back by every failure while it is out; 0 while it is
// in rotation.
func (b *Backend) DownUntil() int64 { return b.downUntil.Load() }

// Ejected reports whether b is out of the rotation.
func (b *Backend) Ejected() bool { return b.downUntil.Load() != 0 }

// eject takes b out of the rotation after a request failed on it with err;
// a failure while it is out pushes its next probe back.
func (b *Backend) Eject(now time.Time, err error) {
	was := b.downUntil.Swap(now.Add(ejectFor).UnixNano())
	if was != 0 {
		return
	}
	b.log.Warn("backend failed; ejected until it accepts a connection again", "backend", b.addr, "err", err)
	// Its other idle connections are likely as dead as the one that failed
	// (a lost node); new ones are made once a probe connects.
	b.CloseIdle()
}

// probe connects to b once; b takes requests again when that works, unless
// a request failed on it meanwhile (downUntil moved from until).
func (b *Backend) probe(until int64) {
	defer b.probing.Store(false)
	c, err := (&net.Dialer{Timeout: b.timeout}).Dial("tcp", b.addr)
	if err != nil {
		b.downUntil.CompareAndSwap(until, time.Now().Add(ejectFor).UnixNano())
		return
	}
	_ = c.Close()
	if b.downUntil.CompareAndSwap(until, 0) {
		b.log.Info("backend accepts connections again; back in rotation", "backend", b.addr)
	}
}
