//go:build linux

package router

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// acceptQueue returns how many connections wait in ln's accept queue, or -1
// when that cannot be known (not a TCP socket).
func acceptQueue(ln net.Listener) int {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	q := -1
	_ = rc.Control(func(fd uintptr) {
		// For a listening socket, the kernel reports the length of its
		// accept queue as tcpi_unacked.
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil && info.State == unix.BPF_TCP_LISTEN {
			q = int(info.Unacked)
		}
	})
	return q
}
