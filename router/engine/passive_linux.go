//go:build linux

package engine

import (
	"net"
	"os"
	"syscall"
	"time"
)

// setPeerTimeout makes a connection to a task fail with ETIMEDOUT when its
// peer stops answering, as a node that lost its network does (its packets
// are dropped, nothing resets the connection): when what was sent stays
// unacknowledged for timeout (TCP_USER_TIMEOUT), and, while a response is
// awaited or the connection is idle, when a keep-alive probe sent after
// keepAliveIdle of silence is not answered within timeout. A live task's
// kernel acknowledges both at once, however slow the app.
//
// TCP_USER_TIMEOUT also ends a connection whose peer's receive window
// stays closed for timeout, although the peer answers: an app that stops
// reading a large upload for a second. So it is set only on connections
// that send request heads and nothing more (requests with a body use
// connections with keep-alive probes only: 3 unanswered seconds, once the
// body has been sent), and cleared when a connection is upgraded
// (clearUserTimeout).
func setPeerTimeout(fd int, timeout time.Duration) {
	secs := int(keepAliveIdle(timeout) / time.Second)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, secs)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, secs)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 2)
	_ = setUserTimeout(fd, timeout)
}

// userTimeoutControl is a net.Dialer's Control that sets TCP_USER_TIMEOUT
// (the keep-alive probes are the dialer's KeepAliveConfig).
func userTimeoutControl(timeout time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setUserTimeout(int(fd), timeout) }); err != nil {
			return err
		}
		return serr
	}
}

// clearUserTimeout turns TCP_USER_TIMEOUT off on c, a connection to a task
// that now carries an upgraded protocol both ways.
func clearUserTimeout(c net.Conn) {
	var rc syscall.RawConn
	switch s := c.(type) {
	case *sockConn:
		rc = s.rc
	case syscall.Conn:
		rc, _ = s.SyscallConn()
	}
	if rc != nil {
		_ = rc.Control(func(fd uintptr) { _ = setUserTimeout(int(fd), 0) })
	}
}

// tcpUserTimeout is TCP_USER_TIMEOUT (linux/tcp.h), which package syscall
// does not name.
const tcpUserTimeout = 0x12

func setUserTimeout(fd int, timeout time.Duration) error {
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout, int(timeout/time.Millisecond)); err != nil {
		return os.NewSyscallError("setsockopt TCP_USER_TIMEOUT", err)
	}
	return nil
}
