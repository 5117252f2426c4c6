//go:build !linux

package router

import "net"

// acceptQueue returns -1: the length of a listener's accept queue is read
// from Linux's TCP_INFO only.
func acceptQueue(net.Listener) int { return -1 }

// probeConns returns the two ends of an in-memory connection, for a probe
// of the front; without event loops a goroutine serves it.
func probeConns() (mine, theirs net.Conn, err error) {
	mine, theirs = net.Pipe()
	return mine, theirs, nil
}
