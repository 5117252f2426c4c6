// Package loopback has what tests and benchmarks share to run servers on
// 127.0.0.1.
package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// FreePort returns a TCP port that nothing listened on a moment ago, on
// any address. It is taken below the kernel's range of ephemeral ports, so
// that no outgoing connection takes it meanwhile: a test that opens
// thousands of connections (as the router's tests do) would otherwise hold
// the very port another test's server is about to bind.
func FreePort() (int, error) {
	low := ephemeralLow()
	const first = 10000
	if low <= first+1000 {
		return anyPort()
	}
	for range 100 {
		port := first + rand.IntN(low-first)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port below the ephemeral range in 100 tries")
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
