//go:build !linux

package router

import "net"

// acceptQueue returns -1: the length of a listener's accept queue is read
// from Linux's TCP_INFO only.
func acceptQueue(net.Listener) int { return -1 }
