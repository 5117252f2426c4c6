//go:build linux

package engine

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// sockConn is a TCP connection whose reads and writes are made as raw
// system calls, waiting for the socket through the runtime's poller as
// net.Conn does. A plain read or write first tells the scheduler it enters
// a system call, and that wakes the runtime's monitor thread whenever it
// was asleep because the process had been idle; the monitor then polls
// every 20 µs for a millisecond before it sleeps again. For a proxy that
// idles between requests for a few microseconds at a time, that was a
// third of its context switches. The calls here never block (the socket
// is non-blocking) and take a few microseconds, so the scheduler need not
// know about them.
type sockConn struct {
	net.Conn
	rc syscall.RawConn

	// The buffer and outcome of the read or write in progress, for the
	// callbacks made once per connection (a closure per call would be an
	// allocation per call).
	rbuf, wbuf []byte
	rn, wn     int
	rerr, werr error
	readFn     func(fd uintptr) bool
	writeFn    func(fd uintptr) bool
	// reading and writing guard those fields: a second read (or write)
	// while one is in progress, which no user of the router's connections
	// makes, would go through the embedded connection.
	reading, writing atomic.Bool
}

// rawIO returns c with raw reads and writes when it is a socket, and c
// itself otherwise.
func rawIO(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sockConn{Conn: c, rc: rc}
	s.readFn, s.writeFn = s.read, s.write
	return s
}

func (s *sockConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !s.reading.CompareAndSwap(false, true) {
		return s.Conn.Read(p)
	}
	defer s.reading.Store(false)
	s.rbuf, s.rn, s.rerr = p, 0, nil
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	if err != nil {
		return 0, err // closed, or the read deadline passed
	}
	return s.rn, s.rerr
}

// read is called with the socket's descriptor until it reports true; false
// waits until the socket is readable.
func (s *sockConn) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.rbuf))), uintptr(len(s.rbuf)))
		switch errno {
		case 0:
			s.rn = int(n)
			if n == 0 {
				s.rerr = io.EOF
			}
			return true
		case syscall.EAGAIN:
			return false
		case syscall.EINTR:
			continue
		default:
			s.rerr = &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
			return true
		}
	}
}

func (s *sockConn) Write(p []byte) (int, error) {
	if !s.writing.CompareAndSwap(false, true) {
		return s.Conn.Write(p)
	}
	defer s.writing.Store(false)
	s.wbuf, s.wn, s.werr = p, 0, nil
	err := s.rc.Write(s.writeFn)
	n := s.wn
	s.wbuf = nil
	if err != nil {
		return n, err // closed, or the write deadline passed
	}
	return n, s.werr
}

// write writes all of s.wbuf, waiting for room in the socket's buffer
// (false) when it is full.
func (s *sockConn) write(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		rest := s.wbuf[s.wn:]
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)))
		switch errno {
		case 0:
			s.wn += int(n)
		case syscall.EAGAIN:
			return false
		case syscall.EINTR:
		default:
			s.werr = &net.OpError{Op: "write", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
			return true
		}
	}
	return true
}
