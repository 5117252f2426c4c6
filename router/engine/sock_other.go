//go:build !linux

package engine

import "net"

// rawIO returns c: the raw system calls of sock.go are Linux only, and
// elsewhere the router reads and writes through net.Conn.
func rawIO(c net.Conn) net.Conn { return c }
