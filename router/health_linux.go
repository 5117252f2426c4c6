//go:build linux

package router

import (
	"net"
	"os"
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

// probeConns returns the two ends of a connected socket pair, for a probe
// of the front: the event loops serve only sockets.
func probeConns() (mine, theirs net.Conn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	mine, err = fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	theirs, err = fileConn(fds[1])
	if err != nil {
		mine.Close()
		return nil, nil, err
	}
	return mine, theirs, nil
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "probe")
	defer f.Close()
	return net.FileConn(f)
}
