// Package engine is the router's HTTP/1.1 engine: the front that accepts
// the router's connections and serves the requests almost all traffic is
// made of itself (front.go), from epoll event loops on Linux (loop.go,
// looptls.go) or a goroutine per connection elsewhere, with raw socket
// calls (sock.go); the connections to the tasks (backend.go, upstream.go)
// and their passive health (passive.go).
//
// It knows nothing of route tables, certificates or configuration: it asks
// its Host (the router) where a request goes, and hands every connection it
// does not serve itself to net/http through a Handoff.
package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"time"
)

// Host is what the engine asks of the router.
type Host interface {
	// Route returns the route a request the front has read is proxied
	// on, or nil when net/http is to serve it (an unknown host, an app
	// without tasks, a redirect, anything the router answers itself).
	// host is the Host header as the client sent it (the characters of
	// host names, IPv6 literals and ports only), target the request
	// target (it starts with '/'), tls whether the connection is HTTPS.
	// It must not keep host or target.
	Route(host, target []byte, tls bool) *Route
	// Draining reports that every answer is to close its connection:
	// another router is taking the listeners over.
	Draining() bool
	// LogRequest writes the access log line of a request the front
	// answered (when Config.AccessLog is set). It must not keep l's
	// byte slices.
	LogRequest(ctx context.Context, l RequestLog)
}

// Kind chooses how the front serves plain HTTP/1.1 connections. Either way
// it parses and proxies the same; what it does not serve itself goes to
// net/http.
type Kind uint8

const (
	// EventLoops serves connections from epoll event loops, one per
	// processor (loop.go), where the system has epoll (Linux); elsewhere
	// it is Goroutines.
	EventLoops Kind = iota
	// Goroutines serves each connection from a goroutine of its own.
	Goroutines
)

// HaveEventLoops tells whether this system has the event loops.
const HaveEventLoops = haveEventLoops

// Config is the engine's knobs.
type Config struct {
	Kind Kind
	// AccessLog makes the front call Host.LogRequest for every request it
	// answers.
	AccessLog bool
	// MaxConnsPerAddr bounds the connections one client address holds
	// open at once, for as long as each lives (served here, by a loop or
	// by net/http); one more is answered 429 (plain HTTP) and closed.
	// 0: no limit.
	MaxConnsPerAddr int
	// SendTimeout is how long a write to a client may make no progress
	// before its connection is closed (nginx's send_timeout); default 60s.
	SendTimeout time.Duration
	Log         *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.SendTimeout <= 0 {
		c.SendTimeout = 60 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Timeouts of the client connections, which the net/http server that takes
// the front's hand-offs is to use too.
const (
	// HeaderTimeout bounds how long a request head may take to arrive once
	// it started, and a TLS handshake.
	HeaderTimeout = 10 * time.Second
	// IdleTimeout closes a keep-alive connection that sent no new request.
	IdleTimeout = 120 * time.Second
)

// RequestLog is one access log line.
type RequestLog struct {
	Method         string
	Host, Path, ID []byte // as bytes: the front has them so, and logs without allocating
	Status         int
	Start          time.Time
	Bytes          int64
	App, Backend   string // empty when none
}

// Route is where the requests for some host names go: one app's tasks,
// round-robin.
type Route struct {
	App string
	// ReadTimeout bounds the wait for a response head; 0: none (a 504
	// when it passes).
	ReadTimeout time.Duration
	Backends    []*Backend
	next        atomic.Uint64 // round-robin position
}

// Order returns the route's backends starting at the next round-robin
// position, the ejected ones last (passive.go), appended to dst.
func (rt *Route) Order(dst []*Backend, now int64) []*Backend {
	n := uint64(len(rt.Backends))
	start := rt.next.Add(1) - 1
	k := len(dst)
	for i := range n {
		if b := rt.Backends[(start+i)%n]; b.usable(now) {
			dst = append(dst, b)
		}
	}
	if usable := len(dst) - k; uint64(usable) < n {
		for i := range n {
			if b := rt.Backends[(start+i)%n]; !slices.Contains(dst[k:k+usable], b) {
				dst = append(dst, b)
			}
		}
	}
	return dst
}

// The router's own error pages, on both paths (net/http's and the front).
const (
	BadGatewayPage     = "502 Bad Gateway\n\nThe app did not answer.\n"
	GatewayTimeoutPage = "504 Gateway Timeout\n\nThe app did not answer in time.\n"
)

// ErrReadTimeout is a request whose app did not send its response head
// within the route's ReadTimeout.
var ErrReadTimeout = errors.New("the app did not answer within its read timeout")

// ValidRequestID accepts an incoming request id if it is short, visible
// ASCII; anything else is replaced so that it is safe to log and forward.
func ValidRequestID[S string | []byte](id S) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// IdempotentMethod reports a method whose request may be sent again to
// another task after a failure.
func IdempotentMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// IsDialError reports an error of a connection to a task that could not
// be made: nothing was sent.
func IsDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
