//go:build linux

package engine

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// tlsTransport is what a TLS connection of the front runs over. While a
// loop serves the connection it reads the loop's socket without waiting
// (errWouldBlock, which crypto/tls treats as temporary, when there is
// nothing) and collects what is written for the loop to send; otherwise
// (the handshake, and once the loop gave the connection up) it is the
// socket through Go's poller.
type tlsTransport struct {
	nc            net.Conn // when no loop has the connection
	c             *lconn   // the loop's connection, while it has it
	out           []byte   // written, for the loop to send
	local, remote net.Addr
}

func newTLSTransport(nc net.Conn) *tlsTransport {
	return &tlsTransport{nc: nc, local: nc.LocalAddr(), remote: nc.RemoteAddr()}
}

// wouldBlock is a read of a socket that has nothing yet.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "no data yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

func (t *tlsTransport) Read(p []byte) (int, error) {
	if t.c == nil {
		return t.nc.Read(p)
	}
	c := t.c
	if !c.readable || len(p) == 0 {
		return 0, errWouldBlock
	}
	k, errno := c.read(p)
	switch {
	case errno == syscall.EAGAIN:
		return 0, errWouldBlock
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: t.local, Addr: t.remote, Err: os.NewSyscallError("read", errno)}
	case k == 0:
		return 0, io.EOF
	}
	return k, nil
}

func (t *tlsTransport) Write(p []byte) (int, error) {
	if t.c != nil {
		t.out = append(t.out, p...)
		return len(p), nil
	}
	if len(t.out) > 0 { // what the loop had not sent yet goes first
		if _, err := t.nc.Write(t.out); err != nil {
			return 0, err
		}
		t.out = nil
	}
	return t.nc.Write(p)
}

func (t *tlsTransport) Close() error {
	if t.nc != nil {
		return t.nc.Close()
	}
	return nil
}

func (t *tlsTransport) LocalAddr() net.Addr  { return t.local }
func (t *tlsTransport) RemoteAddr() net.Addr { return t.remote }

func (t *tlsTransport) SetDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetDeadline(d)
	}
	return nil
}

func (t *tlsTransport) SetReadDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetReadDeadline(d)
	}
	return nil
}

func (t *tlsTransport) SetWriteDeadline(d time.Time) error {
	if t.nc != nil {
		return t.nc.SetWriteDeadline(d)
	}
	return nil
}
