//go:build !linux

package engine

import (
	"net"
	"syscall"
	"time"
)

// Elsewhere than on Linux, connections to tasks have only their dialer's
// keep-alive probes: TCP_USER_TIMEOUT is Linux's (passive_linux.go).

func userTimeoutControl(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}

func clearUserTimeout(net.Conn) {}
