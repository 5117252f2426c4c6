//go:build !linux

package engine

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
)

// Without epoll (loop.go is Linux only) there are no event loops: the front
// serves every connection from a goroutine of its own, with the same
// parsing and proxying (front.go). This loop is never made; it only gives
// the front's calls a type.
type loop struct {
	live atomic.Int64
	dead atomic.Bool
}

// haveEventLoops tells whether this system has the event loops.
const haveEventLoops = false

func newLoop(*Front, *Handoff) (*loop, error) {
	return nil, errors.New("event loops need epoll (Linux)")
}

func (l *loop) run()  {}
func (l *loop) wake() {}

func (l *loop) add(net.Conn, *tls.Conn, *tlsTransport, *tls.ConnectionState, func()) {}

// tlsTransport is the socket a TLS connection runs over; with no loop to
// take the connection (looptls.go) it is the socket itself.
type tlsTransport struct{ net.Conn }

func newTLSTransport(nc net.Conn) *tlsTransport { return &tlsTransport{nc} }
