//go:build linux

package engine

import (
	"net"
	"os"
	"syscall"
)

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
