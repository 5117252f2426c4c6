package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"paas/internal/connlimit"
)

// The front is the router's own HTTP/1.1 server, for the requests almost all
// traffic is made of: keep-alive HTTP/1.1 requests without a body, for an app
// that has running tasks. It reads the request head itself, sends it to a
// pooled backend connection with the headers the router sets, and passes the
// response on as it arrives. net/http's server costs more than twice that
// per request (a background read per connection, goroutine hand-offs, header
// maps, a response writer, a second copy of the response through
// ReverseProxy), and that cost was most of the router's. The front's
// connections are served by event loops (loop.go), TLS ones after their
// handshake, with the parsing and headers here; where epoll is not
// available, a goroutine serves each connection with the code here.
//
// Everything else goes to net/http (the router's ServeHTTP), with the bytes
// the front already read, for the rest of the connection: HTTP/2, HTTP/1.0,
// a request with a body, an upgrade, and whatever the Host does not give a
// route for (the control endpoint, an ACME challenge, a redirect to HTTPS,
// an unknown host or an app without tasks), and any request head the front
// is not sure how to read. The two paths send the same request to the app
// and the same response to the client (the router's front_test.go checks
// both).

const (
	// frontBufSize is the largest request head the front reads itself;
	// net/http takes bigger ones (up to its 1 MB limit).
	frontBufSize = 8 << 10
	// maxResponseHead is the largest response head the front accepts from a
	// backend (nginx's proxy_buffer_size is 4 or 8 KB); a bigger one is a 502.
	maxResponseHead = 64 << 10
	// flushAt is how much of a response the front collects before it writes
	// it to the client even though the backend has more ready.
	flushAt = 32 << 10
)

// Front serves the listeners' connections and tracks them for a graceful
// shutdown.
type Front struct {
	host     Host
	cfg      Config
	log      *slog.Logger
	h1       *Handoff // takes the HTTP/1 connections the front does not serve
	stopping atomic.Bool
	killing  atomic.Bool // the shutdown's time is up
	loops    []*loop     // HTTP/1 connections (loop.go); set before accepting
	nextLoop atomic.Uint64
	// handedOver counts the connections the front gave to net/http.
	handedOver atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

	// limit bounds the connections of one client address (the listeners'
	// whole life of a connection: served here, by a loop or by net/http).
	limit   *connlimit.Limiter
	refused atomic.Uint64 // connections refused by limit
	// h2conns gives back the limit's slot of a connection served by the
	// HTTP/2 server once it closes it (H2ConnState): net/http must see the
	// *tls.Conn itself there, so it cannot be wrapped.
	h2conns sync.Map // *tls.Conn -> func()
}

// New returns a front that serves for host and gives the HTTP/1
// connections it does not serve itself to h1, whose net/http server is to
// use HandedOffContext. It starts its event loops (Config.Kind) at once.
func New(host Host, cfg Config, h1 *Handoff) *Front {
	cfg = cfg.withDefaults()
	f := &Front{host: host, cfg: cfg, log: cfg.Log, h1: h1, conns: map[net.Conn]struct{}{}, limit: &connlimit.Limiter{Max: cfg.MaxConnsPerAddr}}
	f.startLoops()
	return f
}

// Serve serves ln's connections until ln is closed (nil then) or its Accept
// fails for good. With cfg set, they are TLS: HTTP/2 ones go to h2, the
// others are served by the front.
func (f *Front) Serve(ln net.Listener, cfg *tls.Config, h2 *Handoff) error {
	return f.accept(ln, cfg, f.h1, h2)
}

// Loops is the number of event loops serving (0: a goroutine per
// connection).
func (f *Front) Loops() int {
	n := 0
	for _, l := range f.loops {
		if !l.dead.Load() {
			n++
		}
	}
	return n
}

// HandedOver is the number of connections the front gave to net/http.
func (f *Front) HandedOver() int64 { return f.handedOver.Load() }

// ConnLimit is the limit of connections per client address.
func (f *Front) ConnLimit() *connlimit.Limiter { return f.limit }

// accept serves ln's connections until ln is closed. With cfg set, they are
// TLS: HTTP/2 ones go to h2, the others are served by the front. Requests
// the front leaves to net/http go to h1.
func (f *Front) accept(ln net.Listener, cfg *tls.Config, h1, h2 *Handoff) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		release, ok := f.limit.Acquire(c.RemoteAddr())
		if !ok {
			f.refuse(c, cfg == nil)
			continue
		}
		if cfg == nil { // HTTPS comes to a loop after its handshake (serve)
			if l := f.pickLoop(); l != nil {
				f.toLoop(l, c, release)
				continue
			}
		}
		f.toGoroutine(c, cfg, h1, h2, release)
	}
}

// refuse closes a connection over its address's limit, after a 429 on
// plain HTTP (written without waiting for the request: a client that has
// not sent it yet reads the answer first). It logs the first refusal, then
// one in 1,000.
func (f *Front) refuse(c net.Conn, plain bool) {
	if n := f.refused.Add(1); n%1000 == 1 {
		f.log.Warn("refused a connection: too many from its address", "remote", c.RemoteAddr().String(), "limit", f.limit.Max, "refused", n)
	}
	if plain {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.WriteString(c, tooManyConns)
	}
	_ = c.Close()
}

const tooManyConns = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 47\r\nConnection: close\r\n\r\ntoo many connections from your address at once\n"

// H2ConnState is the HTTP/2 server's ConnState: a connection it closed
// gives its slot back.
func (f *Front) H2ConnState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	if release, ok := f.h2conns.LoadAndDelete(c); ok {
		release.(func())()
	}
}

// toLoop gives l a plain connection to serve; release gives back its slot
// of the address limit, once the connection ends.
func (f *Front) toLoop(l *loop, c net.Conn, release func()) bool {
	if !f.trackLoop(l) {
		_ = c.Close()
		release()
		return false
	}
	l.add(c, nil, nil, nil, release)
	return true
}

// toGoroutine serves c from a goroutine of its own (see accept).
func (f *Front) toGoroutine(c net.Conn, cfg *tls.Config, h1, h2 *Handoff, release func()) bool {
	if !f.track(c) {
		_ = c.Close()
		release()
		return false
	}
	go f.serve(c, cfg, h1, h2, release)
	return true
}

// isTemporary reports an accept error worth waiting out (too many open
// files, a connection reset before it was accepted).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (f *Front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping.Load() {
		return false
	}
	f.conns[c] = struct{}{}
	f.wg.Add(1)
	return true
}

// startLoops starts the event loops that serve HTTP/1 (loop.go), one per
// processor Go runs on; with none (Config.Kind, or no epoll), a
// goroutine serves each connection. It is called before the front accepts
// connections.
func (f *Front) startLoops() {
	if f.cfg.Kind != EventLoops || !haveEventLoops {
		return
	}
	for range runtime.GOMAXPROCS(0) {
		l, err := newLoop(f, f.h1)
		if err != nil {
			f.log.Warn("event loop unavailable; serving a goroutine per connection", "err", err)
			return
		}
		f.loops = append(f.loops, l)
		go l.run()
	}
}

// pickLoop returns the loop to serve a new connection, in turn, or nil for
// a goroutine of its own.
func (f *Front) pickLoop() *loop {
	for range f.loops {
		l := f.loops[f.nextLoop.Add(1)%uint64(len(f.loops))]
		if !l.dead.Load() {
			return l
		}
	}
	return nil
}

// moveToLoop gives a loop a connection that was tracked for a goroutine of
// its own, and returns it; nil when there is none or the front is stopping.
func (f *Front) moveToLoop(c net.Conn) *loop {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.pickLoop()
	if l == nil || f.stopping.Load() {
		return nil
	}
	delete(f.conns, c)
	l.live.Add(1)
	return l
}

// trackLoop counts a connection l is to serve.
func (f *Front) trackLoop(l *loop) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping.Load() {
		return false
	}
	f.wg.Add(1)
	l.live.Add(1)
	return true
}

func (f *Front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	f.wg.Done()
}

// Shutdown makes every connection close once its current request has been
// answered (an idle one at once) and waits for them until ctx is done, then
// closes those left.
func (f *Front) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.stopping.Store(true)
	for c := range f.conns {
		// Wakes a connection waiting for its next request; one that is
		// proxying does not read from its client until it is done.
		_ = c.SetReadDeadline(aLongTimeAgo)
	}
	loops := f.loops
	f.mu.Unlock()
	for _, l := range loops {
		l.wake()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	f.killing.Store(true)
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	for _, l := range loops {
		l.wake()
	}
	<-done
	return ctx.Err()
}

func (f *Front) serve(orig net.Conn, cfg *tls.Config, h1, h2 *Handoff, release func()) {
	moved := false  // to a loop, which then counts it
	passed := false // the address limit's slot: to a loop or to net/http
	defer func() {
		if !moved {
			f.untrack(orig)
		}
		if !passed {
			release()
		}
	}()
	raw := rawIO(orig)
	c := raw
	var state *tls.ConnectionState
	if cfg != nil {
		tr := newTLSTransport(raw)
		tc := tls.Server(tr, cfg)
		_ = raw.SetDeadline(time.Now().Add(HeaderTimeout))
		if err := tc.Handshake(); err != nil {
			f.log.Warn("tls handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
			_ = raw.Close()
			return
		}
		_ = raw.SetDeadline(time.Time{})
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol == "h2" {
			f.handedOver.Add(1)
			f.h2conns.Store(tc, release)
			passed = true
			h2.give(tc)
			return
		}
		if l := f.moveToLoop(orig); l != nil {
			moved, passed = true, true
			l.add(orig, tc, tr, &cs, release)
			return
		}
		c, state = tc, &cs
	}
	fc := &frontConn{f: f, conn: c, tls: state, br: bufio.NewReaderSize(c, frontBufSize)}
	fc.clientIP, _, _ = net.SplitHostPort(raw.RemoteAddr().String())
	passed = fc.serveAll(h1, release)
}

// serveAll serves the connection's requests until it closes, or hands it
// to net/http with release, which it reports.
func (c *frontConn) serveAll(h1 *Handoff, release func()) (handedOver bool) {
	if c.serve() {
		c.f.handedOver.Add(1)
		h1.give(&handedOff{Conn: c.conn, br: c.br, tls: c.tls, release: release})
		return true
	}
	_ = c.conn.Close()
	return false
}

// frontConn is one client connection served by the front.
type frontConn struct {
	f        *Front
	conn     net.Conn
	tls      *tls.ConnectionState // nil for plain HTTP
	br       *bufio.Reader
	clientIP string
	req      []byte // the request for the backend
	out      []byte // what is to be written to the client
	sent     int64  // response body bytes passed on, for the access log
	ids      *mrand.ChaCha8
	id       [26]byte  // the last generated request id
	head     []byte    // method, target, host and request id of the request (detach)
	deadline time.Time // the client connection's read deadline, as last set here
	// writeDeadline is the client connection's write deadline (write).
	writeDeadline time.Time

	// Watching the client while a response is awaited (watchClient).
	watch     *time.Timer
	watchSt   atomic.Int32 // watchIdle, watchArmed, watchRunning
	headSize  int          // of the request being answered
	watchDone chan struct{}
	upstream  atomic.Pointer[upstreamConn]
	gone      atomic.Bool // the client closed its connection while waiting
}

// serve answers requests until the connection closes or a request needs
// net/http, which it reports. Once the router drains, a request is answered
// with Connection: close.
func (c *frontConn) serve() (handOff bool) {
	var h requestHead
	for {
		if c.f.stopping.Load() && c.br.Buffered() == 0 {
			return false
		}
		c.idleDeadline()
		if c.f.stopping.Load() && c.br.Buffered() == 0 { // see front.shutdown
			return false
		}
		fast, err := c.readHead(&h)
		if err != nil {
			return false
		}
		if !fast {
			return true
		}
		if c.f.stopping.Load() || c.f.host.Draining() {
			h.close = true // the last request on this connection
		}
		keep := c.proxy(&h)
		_, _ = c.br.Discard(h.size)
		if !keep {
			return false
		}
	}
}

// deadlineSlack is how much an idle connection's deadline may lag: it is
// moved only when it would come over deadlineSlack early, which spares a
// timer update per request.
const deadlineSlack = 10 * time.Second

// idleDeadline gives the client IdleTimeout (less up to deadlineSlack) to
// send its next request.
func (c *frontConn) idleDeadline() {
	now := time.Now()
	if c.deadline.Sub(now) < IdleTimeout-deadlineSlack {
		c.setReadDeadline(now.Add(IdleTimeout))
	}
}

func (c *frontConn) setReadDeadline(t time.Time) {
	c.deadline = t
	_ = c.conn.SetReadDeadline(t)
}

// requestHead is what the front needs of a request; its byte slices point
// into the connection's buffer and are valid until the request is done.
type requestHead struct {
	size           int // bytes of the head
	method, target []byte
	host           []byte
	requestID      []byte
	close          bool // the client asked to close the connection
	idempotencyKey bool
	rt             *Route
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
	lfcrlf   = []byte("\n\r\n")
)

// readHead waits for a whole request head and reads it. It reports false
// when the request must go to net/http: one the front does not serve, or a
// head it does not fully understand (which net/http then answers, with a 400
// if need be).
func (c *frontConn) readHead(h *requestHead) (fast bool, err error) {
	timed := false
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		end, refuse := headEnd(buf)
		if end > 0 {
			return c.parseHead(buf[:end], h), nil
		}
		if refuse {
			return false, nil
		}
		if len(buf) > 0 && !timed {
			timed = true
			c.setReadDeadline(time.Now().Add(HeaderTimeout))
			if c.f.stopping.Load() {
				return false, net.ErrClosed
			}
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && !isTimeout(err) && !c.f.stopping.Load() {
				return false, nil // a truncated head: net/http answers it
			}
			return false, err
		}
	}
}

// headEnd returns the size of the request head at the start of buf, or 0
// when it has not fully arrived; refuse reports a head the front leaves to
// net/http: one too large for its buffer, or with bare line feeds.
func headEnd(buf []byte) (end int, refuse bool) {
	if i := bytes.Index(buf, crlfcrlf); i >= 0 {
		return i + 4, false
	}
	return 0, len(buf) == frontBufSize || bytes.Contains(buf, lflf) || bytes.Contains(buf, lfcrlf)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseHead parses a complete head and builds the request to send to the
// backend in c.req. It reports whether the front serves it.
func (c *frontConn) parseHead(head []byte, h *requestHead) bool {
	*h = requestHead{size: len(head)}
	line, rest, ok := cutLine(head)
	if !ok {
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return false
	}
	h.method, line = line[:sp], line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return false
	}
	h.target, line = line[:sp], line[sp+1:]
	if string(line) != "HTTP/1.1" || !isToken(h.method) || string(h.method) == "CONNECT" ||
		h.target[0] != '/' || !visibleASCII(h.target) || !validEscapes(h.target) {
		return false
	}
	c.req = append(c.req[:0], head[:len(h.method)+1+len(h.target)]...)
	c.req = append(c.req, " HTTP/1.1\r\n"...)
	hosts := 0
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return false // includes obsolete line folding
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		if !validFieldValue(value) {
			return false
		}
		switch action := requestHeaders[headerKey(name)]; action {
		case pass:
			c.req = append(c.req, line...)
			c.req = append(c.req, "\r\n"...)
		case drop:
		case leave:
			return false
		case hostHeader:
			hosts++
			h.host = value
			c.req = append(c.req, line...)
			c.req = append(c.req, "\r\n"...)
		case contentLength:
			if string(value) != "0" {
				return false
			}
			c.req = append(c.req, line...)
			c.req = append(c.req, "\r\n"...)
		case connection:
			for _, tok := range bytes.Split(value, []byte(",")) {
				switch tok = bytes.Trim(tok, " \t"); {
				case bytes.EqualFold(tok, []byte("close")):
					h.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")), len(tok) == 0:
				default:
					return false // a hop-by-hop header the front would have to drop too
				}
			}
		case requestID:
			if h.requestID == nil {
				h.requestID = value
			}
		case idempotencyKey:
			h.idempotencyKey = true
			c.req = append(c.req, line...)
			c.req = append(c.req, "\r\n"...)
		}
	}
	if hosts != 1 || !plainHost(h.host) {
		return false
	}
	rt := c.f.host.Route(h.host, h.target, c.tls != nil)
	if rt == nil || len(rt.Backends) == 0 {
		return false // net/http answers it
	}
	h.rt = rt
	return true
}

// cutLine splits off the first CRLF-terminated line of b.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

// What the front does with a request header.
type headerAction uint8

const (
	pass           headerAction = iota // send it on as it is
	drop                               // hop-by-hop, or set by the router
	leave                              // the request goes to net/http
	hostHeader                         // Host
	contentLength                      // only "0" is served here
	connection                         // close and keep-alive are understood
	requestID                          // X-Request-Id: kept if valid, else replaced
	idempotencyKey                     // passed, and makes a request retriable
)

// requestHeaders are the headers the front does not simply pass on, by
// lower-case name. Dropped: the hop-by-hop headers ReverseProxy drops, and
// the forwarding headers the router sets itself (a client's are not
// trusted).
var requestHeaders = map[string]headerAction{
	"host":                hostHeader,
	"content-length":      contentLength,
	"connection":          connection,
	"x-request-id":        requestID,
	"idempotency-key":     idempotencyKey,
	"x-idempotency-key":   idempotencyKey,
	"transfer-encoding":   leave,
	"upgrade":             leave,
	"expect":              leave,
	"te":                  leave,
	"keep-alive":          drop,
	"proxy-connection":    drop,
	"proxy-authenticate":  drop,
	"proxy-authorization": drop,
	"trailer":             drop,
	"forwarded":           drop,
	"x-forwarded-for":     drop,
	"x-forwarded-host":    drop,
	"x-forwarded-proto":   drop,
}

// headerKey returns name in lower case for a lookup in requestHeaders,
// without allocating for names up to 32 bytes (longer ones are never in
// the table).
func headerKey(name []byte) string {
	if len(name) > 32 {
		return ""
	}
	var b [32]byte
	for i, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b[i] = ch
	}
	return string(b[:len(name)]) // map index with a converted string does not allocate
}

// isToken reports whether b is an RFC 9110 token (method, header name).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, ch := range b {
		if !tokenChar[ch] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for ch := '0'; ch <= '9'; ch++ {
		t[ch] = true
	}
	for ch := 'a'; ch <= 'z'; ch++ {
		t[ch], t[ch-'a'+'A'] = true, true
	}
	for _, ch := range "!#$%&'*+-.^_`|~" {
		t[ch] = true
	}
	return t
}()

func visibleASCII(b []byte) bool {
	for _, ch := range b {
		if ch <= ' ' || ch >= 0x7f {
			return false
		}
	}
	return true
}

// plainHost reports whether a Host header is made only of what host names,
// IPv6 literals and ports use; net/http judges the others (and refuses
// many).
func plainHost(host []byte) bool {
	if len(host) == 0 {
		return false
	}
	for _, c := range host {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// validEscapes reports whether every % in the path part of target starts an
// escape of two hex digits, as net/http requires (it answers 400 otherwise).
func validEscapes(target []byte) bool {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	for i := 0; i < len(target); i++ {
		if target[i] != '%' {
			continue
		}
		if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// validFieldValue rejects control characters other than tab (bytes of 0x80
// and above, obs-text, are allowed, as net/http does).
func validFieldValue(b []byte) bool {
	for _, ch := range b {
		if ch < ' ' && ch != '\t' || ch == 0x7f {
			return false
		}
	}
	return true
}

// proxy sends the request to one of the route's backends and passes the
// response on. It reports whether the connection may serve another request.
func (c *frontConn) proxy(h *requestHead) (keep bool) {
	start := time.Now()
	id := c.proxyHead(h)
	c.sent = 0
	status, b, keep := c.exchange(h, id)
	c.logProxied(h, start, status, b, id)
	return keep && !h.close
}

// logProxied writes the access log line of a request the front answered.
func (c *frontConn) logProxied(h *requestHead, start time.Time, status int, b *Backend, id []byte) {
	if !c.f.cfg.AccessLog {
		return
	}
	var backend string
	if b != nil {
		backend = b.addr
	}
	path := h.target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	c.f.host.LogRequest(context.Background(), RequestLog{
		Method: method(h.method), Host: h.host, Path: unescapePath(path), Status: status,
		Start: start, Bytes: c.sent, ID: id, App: h.rt.App, Backend: backend,
	})
}

// proxyHead detaches h from the client's buffer and completes the request
// for the app in c.req with the headers the router sets. It returns the
// request id.
func (c *frontConn) proxyHead(h *requestHead) []byte {
	c.detach(h)
	id := h.requestID
	if !ValidRequestID(id) {
		id = c.newRequestID()
	}
	c.req = append(c.req, "X-Forwarded-For: "...)
	c.req = append(c.req, c.clientIP...)
	c.req = append(c.req, "\r\nX-Forwarded-Host: "...)
	c.req = append(c.req, h.host...)
	if c.tls != nil {
		c.req = append(c.req, "\r\nX-Forwarded-Proto: https"...)
	} else {
		c.req = append(c.req, "\r\nX-Forwarded-Proto: http"...)
	}
	c.req = append(c.req, "\r\nX-Request-Id: "...)
	c.req = append(c.req, id...)
	c.req = append(c.req, "\r\n\r\n"...)
	return id
}

// detach copies what the front uses of the request head out of the client's
// buffer, which the client watch may move (watchClient).
func (c *frontConn) detach(h *requestHead) {
	c.head = append(c.head[:0], h.method...)
	c.head = append(c.head, h.target...)
	c.head = append(c.head, h.host...)
	c.head = append(c.head, h.requestID...)
	next := func(n int) []byte {
		b := c.head[:n:n]
		c.head = c.head[n:]
		return b
	}
	all := c.head
	h.method, h.target, h.host, h.requestID = next(len(h.method)), next(len(h.target)), next(len(h.host)), next(len(h.requestID))
	c.head = all
}

// newRequestID returns a random id like crypto/rand.Text's (26 base32
// characters, 130 bits), from a ChaCha8 generator of the connection's seeded
// from crypto/rand: the same strength without a system call per request. It
// is valid until the next call.
func (c *frontConn) newRequestID() []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	if c.ids == nil {
		var seed [32]byte
		_, _ = rand.Read(seed[:]) // never fails (crypto/rand panics instead)
		c.ids = mrand.NewChaCha8(seed)
	}
	var v uint64
	for i := range c.id {
		if i%12 == 0 {
			v = c.ids.Uint64()
		}
		c.id[i] = alphabet[v&31]
		v >>= 5
	}
	return c.id[:]
}

// method returns the method as a string, without allocating for the
// common ones.
func method(b []byte) string {
	for _, m := range [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"} {
		if string(b) == m {
			return m
		}
	}
	return string(b)
}

// errBadResponse is a backend response the front cannot pass on (a 502).
var errBadResponse = errors.New("malformed response")

// exchange sends c.req to the route's backends in round-robin order, as
// the router's balancer.RoundTrip does, and passes the first response on. It returns the
// status the client got, the backend that served it, and whether the client
// connection may be reused.
func (c *frontConn) exchange(h *requestHead, id []byte) (int, *Backend, bool) {
	var buf [16]*Backend
	order := h.rt.Order(buf[:0], time.Now().UnixNano())
	retriable := h.idempotencyKey || IdempotentMethod(string(h.method))
	var last *Backend
	var lastErr error
	failedSends := 0
	for _, b := range order {
		last = b
		b.inflight.Add(1)
		status, keep, sent, err := c.roundTrip(b, h, id)
		if sent {
			b.inflight.Add(-1)
			return status, b, keep
		}
		b.inflight.Add(-1)
		lastErr = err
		if c.gone.Load() {
			return 499, b, false // nobody to answer, as the router's ServeHTTP logs it
		}
		if errors.Is(err, ErrReadTimeout) {
			c.f.log.Warn("proxy error", "app", h.rt.App, "backend", b.addr, "request_id", string(id), "err", err)
			return c.writeError(http.StatusGatewayTimeout, id, GatewayTimeoutPage), b, !h.close
		}
		b.Eject(time.Now(), err)
		if !IsDialError(err) {
			failedSends++
		}
		if !IsDialError(err) && !retriable || failedSends > 1 {
			break
		}
	}
	c.f.log.Warn("proxy error", "app", h.rt.App, "backend", last.addr, "request_id", string(id), "err", lastErr)
	return c.writeError(http.StatusBadGateway, id, BadGatewayPage), last, !h.close
}

// roundTrip sends the request in c.req to b and passes the response on. sent
// reports that the client got a response (or part of one): the request is
// over, whatever err says. A request that fails on a reused connection
// before any response came (the backend closed it while idle) is sent again
// once on a new connection, unless the task did not answer at all.
func (c *frontConn) roundTrip(b *Backend, h *requestHead, id []byte) (status int, keep, sent bool, err error) {
	for attempt := 0; ; attempt++ {
		uc, reused, err := b.fast.get(context.Background())
		if err != nil {
			return 0, false, false, err
		}
		status, keep, sent, reusable, err := c.relay(uc, h, id)
		if reusable {
			b.fast.put(uc)
		} else {
			_ = uc.conn.Close()
		}
		if sent || err == nil {
			return status, keep, true, err
		}
		if !reused || attempt > 0 || errors.Is(err, ErrReadTimeout) || peerLost(err) {
			return 0, false, false, err
		}
	}
}

// relay writes the request to the backend connection and the response to
// the client. reusable reports that the backend connection is ready for
// another request.
func (c *frontConn) relay(uc *upstreamConn, h *requestHead, id []byte) (status int, keep, sent, reusable bool, err error) {
	if _, err := uc.conn.Write(c.req); err != nil {
		return 0, false, false, false, err
	}
	timeout := readTimeout(h.rt)
	if timeout > 0 {
		_ = uc.conn.SetReadDeadline(time.Now().Add(timeout))
	}
	src := uc.br
	watching := c.startWatch(uc, h.size)
	resp, err := readResponseHead(src, c.out[:0])
	if watching {
		c.stopWatch()
	}
	if err != nil {
		if timeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			err = ErrReadTimeout // not a lost task's ETIMEDOUT (setPeerTimeout)
		}
		return 0, false, false, false, err
	}
	if timeout > 0 {
		_ = uc.conn.SetReadDeadline(time.Time{})
	}
	noBody, delimited := c.clientHead(resp, h, id)
	keep = delimited && !h.close
	switch {
	case noBody:
		err = c.flush()
	case resp.chunked:
		err = c.passChunked(src)
	case resp.length >= 0:
		err = c.pass(src, resp.length)
	default:
		err = c.pass(src, -1)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		keep = false
	}
	if err == nil {
		err = c.flush()
	}
	if err != nil {
		keep = false
	}
	reusable = err == nil && delimited && !resp.close && src.Buffered() == 0
	return resp.status, keep, true, reusable, err
}

// clientHead puts the response head for the client in c.out: resp's, with
// the request id and, when the connection is to close after it, a
// Connection: close. It reports whether the response has no body and
// whether its end can be told without the backend closing its connection.
func (c *frontConn) clientHead(resp responseHead, h *requestHead, id []byte) (noBody, delimited bool) {
	c.out = resp.head
	noBody = string(h.method) == "HEAD" || resp.status == 204 || resp.status == 304
	delimited = noBody || resp.chunked || resp.length >= 0
	c.out = append(c.out, "X-Request-Id: "...)
	c.out = append(c.out, id...)
	if !delimited || h.close {
		c.out = append(c.out, "\r\nConnection: close"...)
	}
	c.out = append(c.out, "\r\n\r\n"...)
	return noBody, delimited
}

// clientWatchAfter is how long the front waits for a response head before it
// watches the client's connection, so that a request whose client went away
// is abandoned (as net/http's request context does) without a read of the
// client's connection for every request.
const clientWatchAfter = 500 * time.Millisecond

const (
	watchIdle int32 = iota
	watchArmed
	watchRunning
)

// startWatch arms the watch of the client for a request sent on uc, whose
// head of headSize bytes is still in the client's buffer.
func (c *frontConn) startWatch(uc *upstreamConn, headSize int) bool {
	if headSize >= c.br.Size() {
		return false // no room to read beyond it
	}
	c.headSize = headSize
	c.upstream.Store(uc)
	c.gone.Store(false)
	c.watchSt.Store(watchArmed)
	if c.watch == nil {
		c.watchDone = make(chan struct{}, 1)
		c.watch = time.AfterFunc(clientWatchAfter, c.watchClient)
		return true
	}
	c.watch.Reset(clientWatchAfter)
	return true
}

// watchClient runs once a response took clientWatchAfter: it waits for the
// client to send something or to close; when it closed, the backend
// connection is aborted, which ends the exchange.
func (c *frontConn) watchClient() {
	if !c.watchSt.CompareAndSwap(watchArmed, watchRunning) {
		return // stopped meanwhile
	}
	_, err := c.br.Peek(c.headSize + 1) // more data (a pipelined request) is kept for later
	if err != nil && !isTimeout(err) {
		c.gone.Store(true)
		_ = c.upstream.Load().conn.SetDeadline(aLongTimeAgo)
	}
	c.watchDone <- struct{}{}
}

// stopWatch ends the watch; the client's connection is the caller's again
// when it returns.
func (c *frontConn) stopWatch() {
	if c.watch.Stop() || c.watchSt.CompareAndSwap(watchArmed, watchIdle) {
		c.watchSt.Store(watchIdle)
		return
	}
	c.setReadDeadline(aLongTimeAgo) // ends the watcher's read
	<-c.watchDone
	c.watchSt.Store(watchIdle)
	c.idleDeadline()
}

func readTimeout(rt *Route) time.Duration { return rt.ReadTimeout }

// responseHead is a backend's response head, rewritten for the client.
type responseHead struct {
	head    []byte // status line and headers, without the final CRLF
	status  int
	length  int64 // -1 when unknown
	chunked bool
	close   bool // the backend closes the connection after this response
}

// readResponseHead reads a response head from src, skipping informational
// responses, and appends it to dst as the client is to get it: HTTP/1.1,
// hop-by-hop headers and the backend's X-Request-Id dropped.
func readResponseHead(src *bufio.Reader, dst []byte) (responseHead, error) {
	for {
		resp := responseHead{head: dst, length: -1}
		line, err := readLine(src)
		if err != nil {
			return resp, err
		}
		// "HTTP/1.x NNN reason"
		if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] != '0' && line[7] != '1' ||
			line[8] != ' ' || len(line) > 12 && line[12] != ' ' {
			return resp, errBadResponse
		}
		resp.status, err = strconv.Atoi(string(line[9:12]))
		if err != nil || resp.status < 100 {
			return resp, errBadResponse
		}
		resp.close = line[7] == '0' // HTTP/1.0: closes unless it says keep-alive
		resp.head = append(resp.head, "HTTP/1.1"...)
		resp.head = append(resp.head, line[8:]...)
		resp.head = append(resp.head, "\r\n"...)
		size := len(line)
		for {
			line, err = readLine(src)
			if err != nil {
				return resp, err
			}
			if size += len(line) + 2; size > maxResponseHead {
				return resp, errBadResponse
			}
			if len(line) == 0 {
				break
			}
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !isToken(line[:colon]) {
				return resp, errBadResponse
			}
			name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
			switch headerKey(name) {
			case "content-length":
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || n < 0 || resp.length >= 0 && n != resp.length {
					return resp, errBadResponse
				}
				resp.length = n
			case "transfer-encoding":
				if !bytes.EqualFold(value, []byte("chunked")) || resp.chunked {
					return resp, errBadResponse
				}
				resp.chunked = true
			case "connection":
				for _, tok := range bytes.Split(value, []byte(",")) {
					switch tok = bytes.Trim(tok, " \t"); {
					case bytes.EqualFold(tok, []byte("close")):
						resp.close = true
					case bytes.EqualFold(tok, []byte("keep-alive")):
						resp.close = false
					}
				}
				continue
			case "keep-alive", "proxy-connection", "upgrade", "x-request-id":
				continue
			}
			resp.head = append(resp.head, line...)
			resp.head = append(resp.head, "\r\n"...)
		}
		if resp.chunked {
			resp.length = -1 // RFC 9112: chunked wins over Content-Length
		}
		switch {
		case resp.status == 101:
			return resp, errBadResponse // the front never asks for an upgrade
		case resp.status < 200:
			continue // 100 Continue, 103 Early Hints: not passed on
		}
		return resp, nil
	}
}

// readLine returns the next line of src without its line ending; it is
// valid until the next read.
func readLine(src *bufio.Reader) ([]byte, error) {
	line, err := src.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errBadResponse
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil, io.ErrUnexpectedEOF // the backend closed the connection
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// sendTimeout is how long a write to a client may make no progress before
// the connection is closed (nginx's send_timeout): a client that stops
// reading does not hold a task's connection for ever.
var sendTimeout = 60 * time.Second

// write writes p to the client within sendTimeout. The deadline is moved
// only once it is a sixth spent, which spares a timer update per write.
func (c *frontConn) write(p []byte) (int, error) {
	now := time.Now()
	if c.writeDeadline.Sub(now) < c.f.cfg.SendTimeout*5/6 {
		c.writeDeadline = now.Add(c.f.cfg.SendTimeout)
		_ = c.conn.SetWriteDeadline(c.writeDeadline)
	}
	return c.conn.Write(p)
}

// flush writes c.out to the client.
func (c *frontConn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.write(c.out)
	c.out = c.out[:0]
	return err
}

// pass passes n bytes of src on to the client (until EOF when n is -1).
// What the backend has sent is written as soon as the backend has nothing
// more ready, so that streamed responses are not held back.
func (c *frontConn) pass(src *bufio.Reader, n int64) error {
	for n != 0 {
		if k := src.Buffered(); k > 0 {
			if n > 0 {
				k = int(min(int64(k), n))
			}
			p, _ := src.Peek(k)
			c.out = append(c.out, p...)
			_, _ = src.Discard(k)
			c.sent += int64(k)
			if n > 0 {
				n -= int64(k)
			}
			if len(c.out) >= flushAt {
				if err := c.flush(); err != nil {
					return err
				}
			}
			continue
		}
		// About to wait for the backend: send what we have first.
		if err := c.flush(); err != nil {
			return err
		}
		if n < 0 || n >= int64(src.Size()) {
			// Large reads go straight from the backend's socket to the
			// client's, through a pooled buffer.
			buf := CopyBuffers.Get()
			want := len(buf)
			if n > 0 && n < int64(want) {
				want = int(n)
			}
			k, err := src.Read(buf[:want])
			if k > 0 {
				c.sent += int64(k)
				if n > 0 {
					n -= int64(k)
				}
				if _, werr := c.write(buf[:k]); werr != nil {
					CopyBuffers.Put(buf)
					return werr
				}
			}
			CopyBuffers.Put(buf)
			if err != nil {
				if errors.Is(err, io.EOF) && n > 0 {
					return io.ErrUnexpectedEOF
				}
				return err
			}
			continue
		}
		if _, err := src.Peek(1); err != nil {
			if errors.Is(err, io.EOF) && n > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// passChunked passes a chunked body on as it is, chunk by chunk, with its
// trailers.
func (c *frontConn) passChunked(src *bufio.Reader) error {
	for {
		if bytes.IndexByte(peekBuffered(src), '\n') < 0 {
			if err := c.flush(); err != nil { // a server-sent event goes out now
				return err
			}
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		size, ok := chunkSize(line)
		if !ok {
			return errBadResponse
		}
		c.out = append(c.out, line...)
		if size == 0 {
			return c.passTrailers(src)
		}
		if err := c.pass(src, size); err != nil {
			return err
		}
		crlf, err := readLine(src)
		if err != nil || len(crlf) != 0 {
			return errBadResponse
		}
		c.out = append(c.out, "\r\n"...)
	}
}

func (c *frontConn) passTrailers(src *bufio.Reader) error {
	for size := 0; ; {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return errBadResponse
		}
		if size += len(line); size > maxResponseHead {
			return errBadResponse
		}
		c.out = append(c.out, line...)
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

func peekBuffered(src *bufio.Reader) []byte {
	b, _ := src.Peek(src.Buffered())
	return b
}

// chunkSize parses a chunk-size line ("1a;ext=x\r\n").
func chunkSize(line []byte) (int64, bool) {
	line = bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line), 16, 64)
	return n, err == nil && n >= 0
}

// writeError answers the request with one of the router's own error pages,
// as writeError does for net/http, and returns the status.
func (c *frontConn) writeError(code int, id []byte, body string) int {
	c.errorPage(code, id, body)
	_ = c.flush()
	return code
}

// errorPage puts one of the router's error pages in c.out.
func (c *frontConn) errorPage(code int, id []byte, body string) {
	c.out = c.out[:0]
	c.out = append(c.out, "HTTP/1.1 "...)
	c.out = strconv.AppendInt(c.out, int64(code), 10)
	c.out = append(c.out, ' ')
	c.out = append(c.out, http.StatusText(code)...)
	c.out = append(c.out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nX-Request-Id: "...)
	c.out = append(c.out, id...)
	c.out = append(c.out, "\r\nContent-Length: "...)
	c.out = strconv.AppendInt(c.out, int64(len(body)), 10)
	c.out = append(c.out, "\r\n\r\n"...)
	c.out = append(c.out, body...)
	c.sent = int64(len(body))
}

// Handoff is the listener of a net/http server that serves the connections
// the front gives it.
type Handoff struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *Handoff) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *Handoff) Addr() net.Addr { return l.addr }

// give passes c to the server, or closes it when the server has stopped.
func (l *Handoff) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// handedOff is a connection the front gives net/http with the bytes it read
// but did not use. A TLS connection keeps its state, which net/http only
// knows of a *tls.Conn it handshakes itself (see handedOffContext).
type handedOff struct {
	net.Conn
	br  *bufio.Reader
	tls *tls.ConnectionState
	// release gives back the connection's slot of its address's limit.
	release func()
}

func (c *handedOff) Read(p []byte) (int, error) { return c.br.Read(p) }

// Close closes the connection (net/http does, or the proxy that hijacked
// it for an upgrade) and gives its slot back.
func (c *handedOff) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.release()
	}
	return err
}

type tlsStateKey struct{}

// HandedOffContext is the ConnContext of the net/http server that takes
// the front's hand-offs: it remembers the TLS state of a handed-off
// connection, which TLSState reads.
func HandedOffContext(ctx context.Context, c net.Conn) context.Context {
	if h, ok := c.(*handedOff); ok && h.tls != nil {
		return context.WithValue(ctx, tlsStateKey{}, h.tls)
	}
	return ctx
}

// TLSState returns the TLS state of a request's connection that the front
// handed to net/http after its handshake (HandedOffContext), or nil.
func TLSState(ctx context.Context) *tls.ConnectionState {
	cs, _ := ctx.Value(tlsStateKey{}).(*tls.ConnectionState)
	return cs
}

// unescapePath returns a request target's path as net/http's URL.Path has
// it, percent-decoded.
func unescapePath(p []byte) []byte {
	if bytes.IndexByte(p, '%') < 0 {
		return p
	}
	if u, err := url.PathUnescape(string(p)); err == nil {
		return []byte(u)
	}
	return p
}
