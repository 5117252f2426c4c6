package connlimit

import (
	"net"
	"net/netip"
	"testing"
)

func tcp(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

func TestLimiter(t *testing.T) {
	l := &Limiter{Max: 2}
	r1, ok1 := l.Acquire(tcp("10.0.0.1:1000"))
	_, ok2 := l.Acquire(tcp("10.0.0.1:1001"))
	_, ok3 := l.Acquire(tcp("10.0.0.1:1002"))
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("acquire: got %v %v %v, want true true false", ok1, ok2, ok3)
	}
	if _, ok := l.Acquire(tcp("10.0.0.2:1000")); !ok {
		t.Fatal("another address was refused")
	}
	if _, ok := l.Acquire(tcp("[::ffff:10.0.0.1]:1003")); ok {
		t.Fatal("an IPv4-mapped address escaped its IPv4 address's count")
	}
	r1()
	r1() // a second release gives nothing back
	if got := l.Open(tcp("10.0.0.1:1")); got != 1 {
		t.Fatalf("open after one release: %d, want 1", got)
	}
	if _, ok := l.Acquire(tcp("10.0.0.1:1004")); !ok {
		t.Fatal("a released slot was not reusable")
	}
	if _, ok := l.Acquire(tcp("10.0.0.1:1005")); ok {
		t.Fatal("a double release gave two slots back")
	}
}

func TestUnlimited(t *testing.T) {
	var l Limiter
	for i := 0; i < 100; i++ {
		if _, ok := l.Acquire(tcp("10.0.0.1:1")); !ok {
			t.Fatal("the zero Limiter refused a connection")
		}
	}
	if got := l.Open(tcp("10.0.0.1:2")); got != 100 {
		t.Fatalf("open: %d, want 100", got)
	}
}

func TestConnCloseReleases(t *testing.T) {
	l := &Limiter{Max: 1}
	a, b := net.Pipe()
	defer b.Close()
	release, ok := l.Acquire(tcp("10.0.0.1:1"))
	if !ok {
		t.Fatal("refused")
	}
	c := &Conn{Conn: a, Release: release}
	c.Close()
	c.Close()
	if got := l.Open(tcp("10.0.0.1:1")); got != 0 {
		t.Fatalf("open after close: %d, want 0", got)
	}
}
