package engine

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// upstream is the HTTP/1.1 client of one backend: a pool of idle keep-alive
// connections and a plain request/response exchange on one of them. It does
// what the proxy needs and nothing more, without http.Transport's two
// goroutines and channel hand-offs per connection, which were most of the
// router's own cost per request.
type upstream struct {
	addr   string
	dialer *net.Dialer

	mu   sync.Mutex
	idle []*upstreamConn // most recently used last
	// closes counts closeIdle calls: a connection taken out before the
	// last one is closed when it is put back, not pooled.
	closes uint64
}

type upstreamConn struct {
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	lastUsed time.Time
	closes   uint64 // upstream.closes when it was taken out
}

// Tuning of the backend connections.
const (
	maxIdleAge    = 50 * time.Second // app servers commonly close idle connections after 60 s or more
	upstreamBufSz = 16 << 10
)

// aLongTimeAgo is a deadline in the past: setting it makes blocked I/O on a
// connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

func newUpstream(addr string, timeout time.Duration) *upstream {
	return &upstream{addr: addr, dialer: backendDialer(timeout, true)}
}

// get returns an idle connection (reused true) or a new one.
func (u *upstream) get(ctx context.Context) (*upstreamConn, bool, error) {
	now := time.Now()
	u.mu.Lock()
	for len(u.idle) > 0 {
		c := u.idle[len(u.idle)-1]
		u.idle = u.idle[:len(u.idle)-1]
		if now.Sub(c.lastUsed) < maxIdleAge {
			c.closes = u.closes
			u.mu.Unlock()
			return c, true, nil
		}
		_ = c.conn.Close()
	}
	closes := u.closes
	u.mu.Unlock()
	conn, err := u.dialer.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, false, err
	}
	conn = rawIO(conn)
	return &upstreamConn{conn: conn, br: bufio.NewReaderSize(conn, upstreamBufSz), bw: bufio.NewWriterSize(conn, upstreamBufSz), closes: closes}, false, nil
}

// put returns a connection whose last response was read in full.
func (u *upstream) put(c *upstreamConn) {
	c.lastUsed = time.Now()
	u.mu.Lock()
	if c.closes == u.closes && len(u.idle) < maxIdlePerBackend {
		u.idle = append(u.idle, c)
		c = nil
	}
	u.mu.Unlock()
	if c != nil {
		_ = c.conn.Close()
	}
}

// closeIdle closes the idle connections; those in use are closed when their
// response is done with.
func (u *upstream) closeIdle() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.closes++
	u.mu.Unlock()
	for _, c := range idle {
		_ = c.conn.Close()
	}
}

// RoundTrip sends req on a pooled connection and returns the response, whose
// body gives the connection back once read to its end and closed. A request
// without a body that fails on a reused connection (the backend closed it
// while idle) is sent again once on a new connection, unless the task did
// not answer at all (peerLost). Cancelling req's context aborts the
// exchange.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	noBody := req.Body == nil || req.Body == http.NoBody
	for attempt := 0; ; attempt++ {
		c, reused, err := u.get(req.Context())
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(req.Context(), func() { _ = c.conn.SetDeadline(aLongTimeAgo) })
		resp, err := c.exchange(req)
		if err != nil {
			stop()
			_ = c.conn.Close()
			if reused && attempt == 0 && noBody && req.Context().Err() == nil && !peerLost(err) {
				continue
			}
			if ctxErr := req.Context().Err(); ctxErr != nil {
				return nil, ctxErr
			}
			return nil, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// The connection now belongs to the upgraded protocol.
			clearUserTimeout(c.conn)
			resp.Body = &upgradedConn{Reader: c.br, conn: c.conn, stop: stop}
			return resp, nil
		}
		resp.Body = &pooledBody{rc: resp.Body, c: c, u: u, stop: stop, reuse: !resp.Close && !req.Close}
		return resp, nil
	}
}

// exchange writes req and reads the response headers, skipping informational
// responses (100 Continue and the like).
func (c *upstreamConn) exchange(req *http.Request) (*http.Response, error) {
	if err := req.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// pooledBody is a response body that returns its connection to the pool when
// it was read to the end, and closes it otherwise.
type pooledBody struct {
	rc    io.ReadCloser
	c     *upstreamConn
	u     *upstream
	stop  func() bool
	reuse bool

	once sync.Once
	eof  bool
}

func (b *pooledBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *pooledBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		// stop reports false when the context already fired and poisoned
		// the connection's deadline: it cannot be reused then.
		if b.stop() && b.eof && b.reuse && b.c.br.Buffered() == 0 {
			_ = b.c.conn.SetDeadline(time.Time{})
			b.u.put(b.c)
			return
		}
		_ = b.c.conn.Close()
	})
	return err
}

// upgradedConn is the backend side of an upgraded connection (WebSocket):
// ReverseProxy needs an io.ReadWriteCloser to copy both ways.
type upgradedConn struct {
	io.Reader // the buffered reader, which may already hold the first frames
	conn      net.Conn
	stop      func() bool
}

func (c *upgradedConn) Write(p []byte) (int, error) { return c.conn.Write(p) }

func (c *upgradedConn) Close() error {
	c.stop()
	return c.conn.Close()
}
