//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The front serves plain HTTP connections from event loops, one per
// processor, as nginx's workers do: each loop has an epoll instance of its
// own, with its client and backend sockets registered edge-triggered and
// with EPOLLRDHUP, and handles every ready socket at each wake-up. The
// loop's goroutine waits for that epoll instance through Go's poller (an
// epoll instance is itself pollable), so between wake-ups it is an ordinary
// parked goroutine and the rest of the router runs as before.
//
// With a goroutine per connection, each ready socket is a goroutine to wake,
// often on another thread, and each wait starts with a read that finds the
// socket empty: Go's poller does not tell whether the peer closed, so a
// short read does not prove the socket drained. Here the event tells, so a
// socket is read only when it has something, and a burst of ready sockets
// costs one wake-up. (On the router benchmark's small plain-HTTP requests
// this took the router from 0.98x-0.99x of nginx's throughput to 1.06x-1.08x.)
//
// A loop serves what the goroutine front serves (front.go), with its
// parsing: a request head it does not serve goes to net/http for the rest
// of the connection. A TLS connection comes to a loop after its handshake
// (looptls.go).

// haveEventLoops tells whether this system has the event loops.
const haveEventLoops = true

const (
	epollET    = 1 << 31 // syscall.EPOLLET, as the uint32 of an event mask
	loopEvents = 128
	// loopTick is how often a loop checks its connections' timeouts.
	loopTick = 100 * time.Millisecond
)

// loop is one event loop of the front.
type loop struct {
	f  *Front
	h1 *Handoff

	epfd    int
	file    *os.File // epfd, for waiting through Go's poller
	rc      syscall.RawConn
	pollFn  func(uintptr) bool
	pollErr error

	// live counts the loop's clients, including those being added; the
	// loop ends when the front stops and none is left.
	live     atomic.Int64
	dead     atomic.Bool // the loop failed and takes no more connections
	mu       sync.Mutex
	added    []*lconn // accepted, not yet seen by the loop
	hasAdded atomic.Bool

	conns   []*lconn // by descriptor: clients and backends
	clients map[*lconn]struct{}
	pools   map[*Backend][]*lconn // idle backend connections, most recent last
	addrs   map[string]syscall.Sockaddr
	queue   []*lconn // clients ready to serve their next request
	events  [loopEvents]syscall.EpollEvent
	now     time.Time

	// For parsing response heads from a backend connection's buffer.
	rsrc bytes.Reader
	rbuf *bufio.Reader
}

// Client states.
const (
	stIdle     uint8 = iota // waiting for a request head
	stExchange              // a backend is being connected to or sent the request
	stAwait                 // waiting for the response head
	stBody                  // passing the response body on
	stFlush                 // writing the rest of the response
)

// lconn is a client or backend connection of a loop.
type lconn struct {
	fd                 int
	readable, writable bool // as the last event and the calls since told
	rdhup              bool // the peer closed or reset: read until EOF
	eof                bool // a read returned 0

	// Client.
	fc        *frontConn
	release   func()    // gives back the client's slot of its address's limit
	tc        *tls.Conn // over tr, for HTTPS
	tr        *tlsTransport
	in        []byte // read buffer: the request head(s), in[:n]
	n         int
	state     uint8
	since     time.Time // idle since, or the request head's start
	wrote     int       // of fc.out
	progress  time.Time // of the last write that moved, while one is pending
	h         requestHead
	id        []byte
	start     time.Time
	order     []*Backend
	orderBuf  [16]*Backend
	next      int // in order
	be        *Backend
	b         *lconn // the backend connection in use
	attempt   int
	reused    bool
	failed    int // requests that failed after they were sent
	lastErr   error
	retriable bool
	keep      bool
	resp      responseHead
	remaining int64     // of the body, or of the chunk; -1 until the backend closes
	body      uint8     // how the body ends
	chunk     uint8     // where a chunked body is
	trailers  int       // bytes of trailers so far
	deadline  time.Time // of the response head, when the route has a read timeout

	// Backend.
	owner      *lconn // the client whose request it carries, nil when idle
	pool       *Backend
	gen        uint64 // of pool's idle closes when it was put back
	connecting bool
	dialed     time.Time
	sent       int // bytes of the request written
	off        int // in[off:n] is not passed on yet
	idleSince  time.Time
}

// newLoop starts a loop, or returns an error when the system refuses an
// epoll instance (the front then serves with a goroutine per connection).
func newLoop(f *Front, h1 *Handoff) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	file := os.NewFile(uintptr(epfd), "epoll")
	rc, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	l := &loop{
		f: f, h1: h1, epfd: epfd, file: file, rc: rc,
		clients: map[*lconn]struct{}{}, pools: map[*Backend][]*lconn{}, addrs: map[string]syscall.Sockaddr{},
		rbuf: bufio.NewReaderSize(nil, maxResponseHead),
	}
	l.pollFn = l.poll
	return l, nil
}

// add gives the loop a client connection that the front tracks (wg) and
// counted in l.live. The net.Conn is closed: the loop has its own
// descriptor of the socket. For HTTPS, tc is the connection after its
// handshake, over tr, with state.
func (l *loop) add(c net.Conn, tc *tls.Conn, tr *tlsTransport, state *tls.ConnectionState, release func()) {
	fd, err := dupSocket(c)
	ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	_ = c.Close()
	if err != nil {
		l.f.log.Warn("serving a connection failed", "err", err)
		l.live.Add(-1)
		l.f.wg.Done()
		release()
		return
	}
	lc := &lconn{fd: fd, readable: true, writable: true, fc: &frontConn{f: l.f, clientIP: ip, tls: state}, in: make([]byte, frontBufSize), since: time.Now(), release: release}
	if tc != nil {
		lc.tc, lc.tr = tc, tr
		tr.nc, tr.c = nil, lc
	}
	l.mu.Lock()
	l.added = append(l.added, lc)
	l.hasAdded.Store(true)
	l.mu.Unlock()
	// The socket is writable: adding it makes an event, which wakes the loop.
	if err := l.register(fd); err != nil {
		l.f.log.Warn("serving a connection failed", "err", err)
		l.mu.Lock()
		for i, a := range l.added {
			if a == lc {
				l.added = append(l.added[:i], l.added[i+1:]...)
				break
			}
		}
		l.mu.Unlock()
		_ = syscall.Close(fd)
		l.live.Add(-1)
		l.f.wg.Done()
		release()
	}
}

// dupSocket returns a descriptor of c's socket of the caller's own.
func dupSocket(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = os.NewSyscallError("fcntl", e)
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, err
	}
	return fd, derr
}

func (l *loop) register(fd int) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// run serves until the front has stopped and the loop has no client left.
func (l *loop) run() {
	defer l.file.Close()
	for {
		_ = l.file.SetReadDeadline(time.Now().Add(loopTick))
		err := l.rc.Read(l.pollFn)
		l.now = time.Now()
		if err == nil {
			err = l.pollErr
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.f.log.Error("event loop failed; its connections are closed, new ones get a goroutine each", "err", err)
			l.dead.Store(true)
			l.closeAll()
			return
		}
		l.tick()
		if l.f.stopping.Load() && l.live.Load() == 0 {
			l.closeAll()
			return
		}
	}
}

// wake makes the loop check its connections now.
func (l *loop) wake() { _ = l.file.SetReadDeadline(aLongTimeAgo) }

// poll handles the ready sockets until there are none; false makes Go's
// poller wait for the next one.
func (l *loop) poll(uintptr) bool {
	for {
		r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])), loopEvents, 0, 0, 0)
		n := int(r)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			l.pollErr = os.NewSyscallError("epoll_wait", errno)
			return true
		case n <= 0:
			return false
		}
		if l.hasAdded.Load() {
			l.takeAdded()
		}
		l.now = time.Now()
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd >= len(l.conns) || l.conns[fd] == nil {
				continue // closed since
			}
			c := l.conns[fd]
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				c.readable = true
			}
			if ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				c.rdhup = true
			}
			if ev.Events&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				c.writable = true
			}
			if c.fc != nil {
				l.clientEvent(c)
			} else {
				l.backendEvent(c)
			}
		}
		l.runQueue()
		if n < loopEvents {
			return false
		}
	}
}

func (l *loop) takeAdded() {
	l.mu.Lock()
	added := l.added
	l.added = nil
	l.hasAdded.Store(false)
	l.mu.Unlock()
	for _, c := range added {
		l.track(c)
		l.clients[c] = struct{}{}
		l.serveNext(c)
	}
}

func (l *loop) track(c *lconn) {
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*lconn, len(l.conns)+64)...)
	}
	l.conns[c.fd] = c
}

// serveNext queues a client for its next request.
func (l *loop) serveNext(c *lconn) { l.queue = append(l.queue, c) }

func (l *loop) runQueue() {
	for len(l.queue) > 0 {
		c := l.queue[0]
		l.queue = l.queue[1:]
		if l.conns[c.fd] == c && c.state == stIdle {
			l.serve(c)
		}
	}
	l.queue = l.queue[:0]
}

func (l *loop) clientEvent(c *lconn) {
	switch c.state {
	case stIdle:
		l.serve(c)
	case stBody:
		if c.pending() && c.writable && l.flush(c) {
			l.readResponse(c) // the client took what was pending: pass more
		}
	case stFlush:
		if c.writable && l.flush(c) {
			l.finish(c)
		}
	}
	// While a request is on its way, c.rdhup records a client that left;
	// tick abandons its request after clientWatchAfter, as the watch of
	// the goroutine front does.
}

// serve reads and answers the client's next request head. Once the front
// is stopping, a request that has arrived is still answered, with
// Connection: close, and a connection with none is closed.
func (l *loop) serve(c *lconn) {
	stopping := l.f.stopping.Load()
	if stopping && c.tc == nil {
		// A request may have arrived since the last event: look once more.
		c.readable = true
	}
	for {
		end, refuse := headEnd(c.in[:c.n])
		if end > 0 {
			if !c.fc.parseHead(c.in[:end], &c.h) {
				l.handOff(c)
				return
			}
			if stopping || l.f.host.Draining() {
				c.h.close = true // the last request on this connection
			}
			l.begin(c)
			return
		}
		if refuse {
			l.handOff(c)
			return
		}
		if c.eof {
			if c.n > 0 {
				l.handOff(c) // a truncated head: net/http answers it
			} else {
				l.closeClient(c)
			}
			return
		}
		was := c.n
		if c.tc != nil {
			// TLS may hold records it read already: ask it even when
			// the socket is drained (it then answers errWouldBlock).
			k, err := c.tc.Read(c.in[c.n:])
			c.n += k
			switch {
			case err == errWouldBlock:
				if stopping {
					if end, _ := headEnd(c.in[:c.n]); end == 0 {
						l.closeClient(c)
						return
					}
					continue
				}
				return
			case errors.Is(err, io.EOF):
				c.eof = true
			case err != nil:
				l.closeClient(c)
				return
			}
		} else {
			if !c.readable {
				if stopping {
					l.closeClient(c)
				}
				return
			}
			if errno := c.fill(); errno != 0 {
				l.closeClient(c)
				return
			}
		}
		if was == 0 && c.n > 0 {
			c.since = l.now // the head's time starts
		}
	}
}

// fill reads once into c.in[c.n:], and records the end of the stream.
func (c *lconn) fill() syscall.Errno {
	k, errno := c.read(c.in[c.n:])
	switch {
	case errno == syscall.EAGAIN:
	case errno != 0:
		return errno
	case k == 0:
		c.eof = true
	default:
		c.n += k
	}
	return 0
}

// read reads the socket once into p (k 0 and no error at the end of the
// stream), and records a drained socket, whose next data makes an event:
// EAGAIN, or a short read when the peer has not closed.
func (c *lconn) read(p []byte) (int, syscall.Errno) {
	for {
		k, errno := sysRead(c.fd, p)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			c.readable = false
			return 0, errno
		case errno != 0:
			return 0, errno
		}
		if k > 0 && k < len(p) && !c.rdhup {
			c.readable = false
		}
		return k, 0
	}
}

// begin sends the request whose head c.h was parsed.
func (l *loop) begin(c *lconn) {
	c.start = l.now
	c.id = c.fc.proxyHead(&c.h)
	c.fc.sent = 0
	c.order = c.h.rt.Order(c.orderBuf[:0], c.start.UnixNano())
	c.be, c.next, c.failed, c.lastErr = nil, 0, 0, nil
	c.retriable = c.h.idempotencyKey || IdempotentMethod(string(c.h.method))
	c.state = stExchange
	l.nextBackend(c)
}

// nextBackend tries the next backend in the request's order.
func (l *loop) nextBackend(c *lconn) {
	if c.next == len(c.order) {
		l.badGateway(c)
		return
	}
	c.be = c.order[c.next]
	c.next++
	c.be.inflight.Add(1)
	c.attempt = 0
	l.send(c)
}

// send sends the request on a pooled connection to c.be or a new one.
func (l *loop) send(c *lconn) {
	c.state = stExchange
	b, reused, err := l.backendConn(c.be)
	if err != nil {
		l.sendFailed(c, err, true)
		return
	}
	b.owner, b.sent, b.off, b.n = c, 0, 0, 0
	c.b, c.reused = b, reused
	if !b.connecting {
		l.writeRequest(c)
	}
}

// backendConn returns an idle connection to be, or starts a new one.
func (l *loop) backendConn(be *Backend) (b *lconn, reused bool, err error) {
	idle := l.pools[be]
	for len(idle) > 0 {
		b = idle[len(idle)-1]
		idle = idle[:len(idle)-1]
		l.pools[be] = idle
		if l.now.Sub(b.idleSince) < maxIdleAge && b.gen == be.idleCloses.Load() {
			return b, true, nil
		}
		l.closeBackend(b)
	}
	sa, err := l.sockaddr(be.addr)
	if err != nil {
		return nil, false, err
	}
	family := syscall.AF_INET
	if _, ok := sa.(*syscall.SockaddrInet6); ok {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, false, dialError(be.addr, os.NewSyscallError("socket", err))
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	setPeerTimeout(fd, be.timeout)
	b = &lconn{fd: fd, pool: be, in: make([]byte, upstreamBufSz), connecting: true, dialed: l.now}
	switch err := syscall.Connect(fd, sa); err {
	case nil:
		b.connecting = false
	case syscall.EINPROGRESS, syscall.EINTR:
	default:
		_ = syscall.Close(fd)
		return nil, false, dialError(be.addr, os.NewSyscallError("connect", err))
	}
	if err := l.register(fd); err != nil {
		_ = syscall.Close(fd)
		return nil, false, dialError(be.addr, err)
	}
	b.writable = !b.connecting
	l.track(b)
	return b, false, nil
}

func dialError(addr string, err error) error {
	a, _ := net.ResolveTCPAddr("tcp", addr)
	return &net.OpError{Op: "dial", Net: "tcp", Addr: a, Err: err}
}

// sockaddr returns addr's socket address; a task's address is an IP
// address, a name is looked up once.
func (l *loop) sockaddr(addr string) (syscall.Sockaddr, error) {
	if sa, ok := l.addrs[addr]; ok {
		return sa, nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ta, rerr := net.ResolveTCPAddr("tcp", addr)
		if rerr != nil {
			return nil, dialError(addr, rerr)
		}
		ap = ta.AddrPort()
	}
	var sa syscall.Sockaddr
	if ip := ap.Addr().Unmap(); ip.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}
	} else {
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}
	}
	l.addrs[addr] = sa
	return sa, nil
}

func (l *loop) backendEvent(b *lconn) {
	c := b.owner
	switch {
	case c == nil:
		if b.readable { // idle: the backend closed it, or sent what nobody asked for
			l.unpool(b)
			l.closeBackend(b)
		}
	case b.connecting:
		if !b.writable {
			return
		}
		if e, err := syscall.GetsockoptInt(b.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || e != 0 {
			if err == nil {
				err = syscall.Errno(e)
			}
			l.sendFailed(c, dialError(c.be.addr, os.NewSyscallError("connect", err)), true)
			return
		}
		b.connecting = false
		l.writeRequest(c)
	case c.state == stExchange:
		if b.writable {
			l.writeRequest(c)
		}
	case c.state == stAwait || c.state == stBody:
		if b.readable {
			l.readResponse(c)
		}
	}
}

// writeRequest writes the request to the backend connection.
func (l *loop) writeRequest(c *lconn) {
	b, req := c.b, c.fc.req
	for b.sent < len(req) {
		k, errno := sysWrite(b.fd, req[b.sent:])
		switch errno {
		case 0:
			b.sent += k
		case syscall.EAGAIN:
			b.writable = false
			return
		case syscall.EINTR:
		default:
			l.sendFailed(c, os.NewSyscallError("write", errno), false)
			return
		}
	}
	c.state = stAwait
	c.deadline = time.Time{}
	if t := readTimeout(c.h.rt); t > 0 {
		c.deadline = l.now.Add(t)
	}
	if b.readable {
		l.readResponse(c)
	}
}

// errIncomplete is a response head that has not fully arrived yet.
var errIncomplete = errors.New("incomplete response head")

// readResponse reads the response and passes it on.
func (l *loop) readResponse(c *lconn) {
	b := c.b
	for {
		switch c.state {
		case stAwait:
			if b.n > 0 {
				resp, used, err := l.parseResponse(c, b.in[:b.n])
				if err == nil {
					b.off = used
					l.startBody(c, resp)
					continue
				}
				if err != errIncomplete {
					l.sendFailed(c, err, false)
					return
				}
				if b.n == len(b.in) {
					if len(b.in) > maxResponseHead {
						l.sendFailed(c, errBadResponse, false)
						return
					}
					b.in = append(b.in, make([]byte, len(b.in))...)
				}
			}
		case stBody:
			done, err := c.passBody()
			if err != nil {
				l.abort(c, c.resp.status) // a malformed body: the client's connection closes
				return
			}
			if done {
				l.endResponse(c)
				return
			}
			if !b.makeRoom() {
				l.abort(c, c.resp.status) // a chunk-size or trailer line longer than the buffer
				return
			}
			if len(c.fc.out) >= flushAt || !b.readable {
				// About to wait for the backend, or enough to send: send it.
				if !l.flush(c) {
					return // the client's socket is full, or it failed
				}
			}
		default:
			return
		}
		if !b.readable {
			return
		}
		if errno := b.fill(); errno != 0 || b.eof {
			if errno == 0 && c.state == stBody && c.body == bodyUntilClose {
				if done, _ := c.passBody(); done {
					l.endResponse(c)
					return
				}
			}
			var err error = io.ErrUnexpectedEOF
			if errno != 0 {
				err = os.NewSyscallError("read", errno)
			}
			if c.state == stAwait {
				l.sendFailed(c, err, false)
			} else {
				l.abort(c, c.resp.status) // a cut body: the client's connection closes
			}
			return
		}
	}
}

// parseResponse parses the response head at the start of buf into c.fc.out;
// used is its size.
func (l *loop) parseResponse(c *lconn, buf []byte) (resp responseHead, used int, err error) {
	l.rsrc.Reset(buf)
	l.rbuf.Reset(&l.rsrc)
	resp, err = readResponseHead(l.rbuf, c.fc.out[:0])
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return resp, 0, errIncomplete
		}
		return resp, 0, err
	}
	return resp, len(buf) - l.rsrc.Len() - l.rbuf.Buffered(), nil
}

// startBody sets up the passing on of the response's body.
func (l *loop) startBody(c *lconn, resp responseHead) {
	c.resp = resp
	c.deadline = time.Time{}
	noBody, delimited := c.fc.clientHead(resp, &c.h, c.id)
	c.keep = delimited && !c.h.close
	c.state = stBody
	switch {
	case noBody:
		c.body, c.remaining = bodyLength, 0
	case resp.chunked:
		c.body, c.chunk, c.trailers = bodyChunked, chunkSizeLine, 0
	case resp.length >= 0:
		c.body, c.remaining = bodyLength, resp.length
	default:
		c.body, c.remaining = bodyUntilClose, -1
	}
}

// makeRoom drops what was passed on from a backend connection's buffer;
// false means a line fills it.
func (b *lconn) makeRoom() bool {
	switch {
	case b.off == b.n:
		b.off, b.n = 0, 0
	case b.n == len(b.in) && b.off > 0: // room for the rest of a line
		b.n = copy(b.in, b.in[b.off:b.n])
		b.off = 0
	case b.n == len(b.in):
		return false
	}
	return true
}

// How a response body ends (lconn.body), and where a chunked one is.
const (
	bodyLength     uint8 = iota // after Content-Length bytes (or none)
	bodyChunked                 // at the last chunk and its trailers
	bodyUntilClose              // when the backend closes the connection

	chunkSizeLine uint8 = iota
	chunkData
	chunkEnd // the CRLF after a chunk's data
	chunkTrailers
)

// passBody moves what the backend connection's buffer holds of the body
// to c.fc.out, as it is (a chunked body keeps its framing, which is
// checked as frontConn.passChunked does). done reports the body's end; at
// EOF of a body that lasts until close, the caller calls it once more.
func (c *lconn) passBody() (done bool, err error) {
	b := c.b
	for {
		avail := b.in[b.off:b.n]
		if c.body != bodyChunked || c.chunk == chunkData {
			if c.remaining == 0 {
				if c.body != bodyChunked {
					return true, nil
				}
				c.chunk = chunkEnd
				continue
			}
			k := int64(len(avail))
			if k == 0 {
				return c.body == bodyUntilClose && b.eof, nil
			}
			if c.remaining > 0 {
				k = min(k, c.remaining)
				c.remaining -= k
			}
			c.fc.out = append(c.fc.out, avail[:k]...)
			c.fc.sent += k
			b.off += int(k)
			continue
		}
		i := bytes.IndexByte(avail, '\n')
		if i < 0 {
			return false, nil // the rest of the line is still to come
		}
		line := avail[:i+1]
		b.off += i + 1
		switch c.chunk {
		case chunkSizeLine:
			size, ok := chunkSize(line)
			if !ok {
				return false, errBadResponse
			}
			c.fc.out = append(c.fc.out, line...)
			c.remaining, c.chunk = size, chunkData
			if size == 0 {
				c.chunk = chunkTrailers
			}
		case chunkEnd:
			if len(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))) != 0 {
				return false, errBadResponse
			}
			c.fc.out = append(c.fc.out, "\r\n"...)
			c.chunk = chunkSizeLine
		case chunkTrailers:
			if c.trailers += len(line); c.trailers > maxResponseHead {
				return false, errBadResponse
			}
			c.fc.out = append(c.fc.out, line...)
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				return true, nil
			}
		}
	}
}

// endResponse returns the backend connection and writes the rest of the
// response.
func (l *loop) endResponse(c *lconn) {
	b := c.b
	c.b, b.owner = nil, nil
	if !c.resp.close && b.off == b.n && !b.rdhup {
		l.pool(b)
	} else {
		l.closeBackend(b)
	}
	c.be.inflight.Add(-1)
	c.fc.logProxied(&c.h, c.start, c.resp.status, c.be, c.id)
	c.state = stFlush
	if l.flush(c) {
		l.finish(c)
	}
}

// finish ends a request whose response was written in full.
func (l *loop) finish(c *lconn) {
	if !c.keep {
		l.closeClient(c)
		return
	}
	c.n = copy(c.in, c.in[c.h.size:c.n])
	c.state, c.since = stIdle, l.now
	l.serveNext(c)
}

// flush writes c.fc.out to the client, and reports whether it was written
// in full. A client whose socket stays full for sendTimeout is dropped
// (tick).
func (l *loop) flush(c *lconn) bool {
	out := c.fc.out
	if c.tc != nil {
		if len(out) > 0 {
			if _, err := c.tc.Write(out); err != nil { // into c.tr.out
				l.abort(c, c.resp.status)
				return false
			}
			c.fc.out = out[:0]
		}
		out = c.tr.out
	}
	for c.wrote < len(out) {
		if !c.writable {
			return false
		}
		k, errno := sysWrite(c.fd, out[c.wrote:])
		switch errno {
		case 0:
			c.wrote += k
			c.progress = l.now
		case syscall.EAGAIN:
			c.writable = false
			if c.progress.IsZero() {
				c.progress = l.now
			}
			return false
		case syscall.EINTR:
		default:
			l.abort(c, c.resp.status)
			return false
		}
	}
	if c.tc != nil {
		c.tr.out = out[:0]
	} else {
		c.fc.out = out[:0]
	}
	c.wrote, c.progress = 0, time.Time{}
	return true
}

// pending reports a response that is not fully written to the client's
// socket yet.
func (c *lconn) pending() bool { return len(c.fc.out) > 0 || c.tr != nil && len(c.tr.out) > 0 }

// sendFailed handles a request that got no response from c.be, as
// roundTrip and exchange do for the goroutine front.
func (l *loop) sendFailed(c *lconn, err error, dial bool) {
	if c.b != nil {
		l.closeBackend(c.b)
		c.b = nil
	}
	if !dial && c.reused && c.attempt == 0 && !peerLost(err) {
		c.attempt++ // the backend closed the idle connection: once more
		l.send(c)
		return
	}
	c.be.inflight.Add(-1)
	c.lastErr = err
	c.be.Eject(l.now, err)
	if !dial {
		c.failed++
	}
	if !dial && !c.retriable || c.failed > 1 {
		l.badGateway(c)
		return
	}
	l.nextBackend(c) // or the 502 page when it was the last one
}

func (l *loop) badGateway(c *lconn) {
	l.errorPage(c, http.StatusBadGateway, BadGatewayPage, c.lastErr)
}

// errorPage answers the request with one of the router's error pages; the
// backend's in-flight count is already given back.
func (l *loop) errorPage(c *lconn, code int, page string, err error) {
	var addr string
	if c.be != nil {
		addr = c.be.addr
	}
	l.f.log.Warn("proxy error", "app", c.h.rt.App, "backend", addr, "request_id", string(c.id), "err", err)
	c.fc.errorPage(code, c.id, page)
	c.fc.logProxied(&c.h, c.start, code, c.be, c.id)
	c.keep = !c.h.close
	c.state = stFlush
	if l.flush(c) {
		l.finish(c)
	}
}

// abort ends a request whose client cannot be answered (it left, or its
// connection failed or stalled), and closes the connection.
func (l *loop) abort(c *lconn, status int) {
	if c.b != nil {
		l.closeBackend(c.b)
		c.b = nil
	}
	if c.state != stIdle && c.state != stFlush {
		c.be.inflight.Add(-1)
		c.fc.logProxied(&c.h, c.start, status, c.be, c.id)
	}
	l.closeClient(c)
}

// tick enforces the timeouts and the front's shutdown.
func (l *loop) tick() {
	now := l.now
	stopping, killing := l.f.stopping.Load(), l.f.killing.Load()
	for c := range l.clients {
		switch {
		case killing:
			l.abort(c, 499)
		case c.pending() && !c.progress.IsZero() && now.Sub(c.progress) > l.f.cfg.SendTimeout:
			l.abort(c, c.resp.status) // the client stopped reading
		case c.state == stIdle && stopping:
			l.serve(c) // the request that has arrived, if any, then closed
		case c.state == stIdle && (c.n == 0 && now.Sub(c.since) > IdleTimeout || c.n > 0 && now.Sub(c.since) > HeaderTimeout):
			l.closeClient(c)
		case c.state == stAwait && c.rdhup && now.Sub(c.start) >= clientWatchAfter:
			l.abort(c, 499) // nobody to answer, as the router's ServeHTTP logs it
		case c.state == stAwait && !c.deadline.IsZero() && now.After(c.deadline):
			l.closeBackend(c.b)
			c.b = nil
			c.be.inflight.Add(-1)
			l.errorPage(c, http.StatusGatewayTimeout, GatewayTimeoutPage, ErrReadTimeout)
		case c.state == stExchange && c.b != nil && c.b.connecting && now.Sub(c.b.dialed) > c.be.timeout:
			l.sendFailed(c, dialError(c.be.addr, os.ErrDeadlineExceeded), true)
		case c.state == stIdle && now.Sub(c.since) > keepBuffersFor:
			c.dropBuffers()
		}
	}
	l.runQueue()
	l.sweepPools(stopping)
}

// sweepPools closes the idle backend connections that are too old, whose
// backend's idle connections were closed since they were pooled, or all of
// them once the front is stopping.
func (l *loop) sweepPools(stopping bool) {
	for be, idle := range l.pools {
		keep := idle[:0]
		for _, b := range idle {
			if l.now.Sub(b.idleSince) >= maxIdleAge || b.gen != be.idleCloses.Load() || stopping {
				l.closeBackend(b)
			} else {
				keep = append(keep, b)
			}
		}
		clear(idle[len(keep):])
		if len(keep) == 0 {
			delete(l.pools, be)
		} else {
			l.pools[be] = keep
		}
	}
}

// keepBuffersFor is how long a client's connection keeps the buffers a
// large response grew once it is idle: a busy one does not allocate them
// again for every response, and thousands of idle ones do not hold them.
const keepBuffersFor = time.Second

// dropBuffers lets an idle client's large response buffers go.
func (c *lconn) dropBuffers() {
	const small = 4 << 10
	if cap(c.fc.out) > small {
		c.fc.out = nil
	}
	if c.tr != nil && cap(c.tr.out) > small {
		c.tr.out = nil
	}
}

func (l *loop) pool(b *lconn) {
	be := b.pool
	if len(l.pools[be]) >= maxIdlePerBackend {
		l.closeBackend(b)
		return
	}
	b.idleSince, b.gen = l.now, be.idleCloses.Load()
	l.pools[be] = append(l.pools[be], b)
}

func (l *loop) unpool(b *lconn) {
	idle := l.pools[b.pool]
	for i, x := range idle {
		if x == b {
			l.pools[b.pool] = append(idle[:i], idle[i+1:]...)
			break
		}
	}
	if len(l.pools[b.pool]) == 0 {
		delete(l.pools, b.pool)
	}
}

// closeBackend closes b once: its descriptor's number may belong to another
// socket as soon as it is closed, so a second close would close that one.
func (l *loop) closeBackend(b *lconn) {
	if b.fd < 0 {
		return
	}
	if l.conns[b.fd] == b {
		l.conns[b.fd] = nil
	}
	_ = syscall.Close(b.fd)
	b.fd, b.owner = -1, nil
}

func (l *loop) closeClient(c *lconn) {
	if c.b != nil {
		l.closeBackend(c.b)
		c.b = nil
	}
	l.forget(c)
	if c.tc != nil && c.tc.CloseWrite() == nil { // close_notify, as tls.Conn.Close sends
		_, _ = sysWrite(c.fd, c.tr.out[c.wrote:])
	}
	_ = syscall.Close(c.fd)
	l.f.wg.Done()
	c.release()
}

// forget removes a client from the loop, which then no longer counts it.
func (l *loop) forget(c *lconn) {
	if l.conns[c.fd] == c {
		l.conns[c.fd] = nil
	}
	delete(l.clients, c)
	l.live.Add(-1)
}

func (l *loop) closeAll() {
	l.takeAdded()
	for c := range l.clients {
		l.abort(c, 499)
	}
	for be, idle := range l.pools {
		for _, b := range idle {
			l.closeBackend(b)
		}
		delete(l.pools, be)
	}
}

// release takes a connection out of the loop as a net.Conn of Go's poller.
func (l *loop) release(c *lconn) (net.Conn, error) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	if l.conns[c.fd] == c {
		l.conns[c.fd] = nil
	}
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f)
	_ = f.Close()
	return nc, err
}

// releaseClient takes a client out of the loop as a net.Conn (for HTTPS,
// its TLS connection), whose reads start with the bytes the loop read but
// did not use.
func (l *loop) releaseClient(c *lconn, unread []byte) (net.Conn, *bufio.Reader, error) {
	l.forget(c)
	nc, err := l.release(c)
	if err != nil {
		l.f.wg.Done()
		c.release()
		return nil, nil, err
	}
	nc = rawIO(nc)
	if c.tc != nil {
		c.tr.nc, c.tr.c = nc, nil
		nc = c.tc
	}
	var r io.Reader = nc
	if len(unread) > 0 {
		r = io.MultiReader(bytes.NewReader(bytes.Clone(unread)), nc)
	}
	return nc, bufio.NewReaderSize(r, frontBufSize), nil
}

// handOff gives the client to net/http, which reads the bytes the loop read
// first.
func (l *loop) handOff(c *lconn) {
	nc, br, err := l.releaseClient(c, c.in[:c.n])
	if err != nil {
		return
	}
	l.f.handedOver.Add(1)
	go func() {
		defer l.f.wg.Done()
		l.h1.give(&handedOff{Conn: nc, br: br, tls: c.fc.tls, release: c.release})
	}()
}

func sysRead(fd int, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}

func sysWrite(fd int, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(n), errno
}
