// Package loopback has what tests and benchmarks share to run servers on
// 127.0.0.1.
package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
)

// given is every port FreePort returned in this process: it never returns
// one twice, so that the servers of one test (each port chosen before any
// binds) cannot be handed the same port.
var (
	givenMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a TCP port that nothing listened on a moment ago, on
// any address. It is taken below the kernel's range of ephemeral ports, so
// that no outgoing connection takes it meanwhile: a test that opens
// thousands of connections (as the router's tests do) would otherwise hold
// the very port another test's server is about to bind. It never returns
// the same port twice in one process.
func FreePort() (int, error) {
	givenMu.Lock()
	defer givenMu.Unlock()
	low := ephemeralLow()
	const first = 10000
	for range 100 {
		var port int
		if low <= first+1000 {
			p, err := anyPort()
			if err != nil {
				return 0, err
			}
			port = p
		} else {
			port = first + rand.IntN(low-first)
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				continue
			}
			l.Close()
		}
		if !given[port] {
			given[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no free port in 100 tries")
}

// anyPort is a port the kernel picks (from the ephemeral range).
func anyPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	low, high := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &low, &high)
	}
	return low
}
