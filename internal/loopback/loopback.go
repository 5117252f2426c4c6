// Package loopback has what tests and benchmarks share to run servers on
// 127.0.0.1.
package loopback

import "net"

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment
// ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
