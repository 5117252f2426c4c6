// Package connlimit bounds how many connections one client address holds
// open at once, for the servers that face the network (the SSH server and
// the router), so one client cannot take every file descriptor.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Limiter counts open connections per client address. The zero value, or
// Max <= 0, admits every connection (and still counts them).
type Limiter struct {
	Max int

	mu   sync.Mutex
	open map[netip.Addr]int
}

// Acquire takes a slot for a connection from addr. It returns false when
// addr already holds Max; otherwise release gives the slot back, once,
// however many times it is called.
func (l *Limiter) Acquire(addr net.Addr) (release func(), ok bool) {
	a := Host(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.open[a] >= l.Max {
		return nil, false
	}
	if l.open == nil {
		l.open = map[netip.Addr]int{}
	}
	l.open[a]++
	var once sync.Once
	return func() { once.Do(func() { l.release(a) }) }, true
}

func (l *Limiter) release(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[a]--; l.open[a] <= 0 {
		delete(l.open, a)
	}
}

// Open returns how many connections addr holds.
func (l *Limiter) Open(addr net.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[Host(addr)]
}

// Host is the client address of addr, without its port; an IPv4 address
// mapped into IPv6 counts as the IPv4 one. An address that is not IP (a
// unix socket's) is the zero Addr: all such clients share one count.
func Host(addr net.Addr) netip.Addr {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if addr == nil {
			return netip.Addr{}
		}
		p, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return netip.Addr{}
		}
		ap = p
	}
	return ap.Addr().Unmap()
}

// Conn is a connection holding a slot, given back when it is closed.
type Conn struct {
	net.Conn
	Release func()
}

// Close closes the connection and gives its slot back.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.Release()
	return err
}
