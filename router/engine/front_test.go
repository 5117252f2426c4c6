package engine

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// These cover the engine on its own, with a Host of the tests' (fakeHost);
// the router's tests (router/front_test.go, loop_test.go and the rest) run
// it behind the router, and check that the front and net/http's path answer
// alike.

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fakeHost routes exact host names and one-label wildcards (by parent
// domain), lower case and without port, as the router does.
type fakeHost struct {
	routes, wild map[string]*Route
	draining     bool
}

func (h *fakeHost) Route(host, target []byte, tls bool) *Route {
	name := strings.ToLower(string(host))
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.HasSuffix(name, "]") {
		name = name[:i]
	}
	if rt := h.routes[name]; rt != nil {
		return rt
	}
	if _, parent, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, ".") {
		return h.wild[parent]
	}
	return nil
}

func (h *fakeHost) Draining() bool                         { return h.draining }
func (h *fakeHost) LogRequest(context.Context, RequestLog) {}

// forEachKind runs test with the event loops (where the system has them)
// and with a goroutine per connection.
func forEachKind(t *testing.T, test func(*testing.T, Kind)) {
	t.Run("event loops", func(t *testing.T) { test(t, EventLoops) })
	t.Run("goroutines", func(t *testing.T) { test(t, Goroutines) })
}

// startFront serves plain HTTP on 127.0.0.1 with a front for host, and
// returns its address; what the front hands over gets net/http's 404.
func startFront(t *testing.T, host Host, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log == nil {
		cfg.Log = discardLog()
	}
	h1 := NewHandoff(ln.Addr())
	f := New(host, cfg, h1)
	fb := &http.Server{Handler: http.NotFoundHandler(), ConnContext: HandedOffContext}
	served := make(chan error, 2)
	go func() { served <- f.Serve(ln, nil, nil) }()
	go func() { served <- fb.Serve(h1) }()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("shut the front down: %v", err)
		}
		fb.Close()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		<-served
	})
	return ln.Addr().String()
}

// An app's request is proxied by the front itself, and a request for a
// host the Host does not route goes to net/http, with either kind.
func TestFrontServesAndHandsOver(t *testing.T) { forEachKind(t, testFrontServesAndHandsOver) }

func testFrontServesAndHandsOver(t *testing.T, kind Kind) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host+" for "+r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(srv.Close)
	host := &fakeHost{routes: map[string]*Route{"alpha.example.test": {App: "alpha", Backends: []*Backend{NewBackend(srv.Listener.Addr().String(), 0, discardLog())}}}}
	addr := startFront(t, host, Config{Kind: kind})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		host, want string
		status     int
	}{
		{"alpha.example.test", "hello from alpha.example.test for 127.0.0.1", 200},
		{"Alpha.Example.Test:80", "hello from Alpha.Example.Test:80 for 127.0.0.1", 200},
		{"nope.example.test", "404 page not found\n", 404}, // net/http's, after which it keeps the connection
	} {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || string(body) != tc.want {
			t.Errorf("%s: %d %q, want %d %q", tc.host, resp.StatusCode, body, tc.status, tc.want)
		}
		if tc.status == 200 && resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id from the front", tc.host)
		}
	}
}

func TestHeaderKey(t *testing.T) {
	for name, want := range map[string]string{"Host": "host", "X-REQUEST-ID": "x-request-id", strings.Repeat("a", 33): ""} {
		if got := headerKey([]byte(name)); got != want {
			t.Errorf("headerKey(%q) = %q, want %q", name, got, want)
		}
	}
	for name := range requestHeaders {
		if name != strings.ToLower(name) {
			t.Errorf("requestHeaders key %q is not lower case", name)
		}
	}
}

// pipeConn is a net.Conn that reads from a byte slice, for parsing tests.
type pipeConn struct {
	net.Conn // nil: only Read and SetReadDeadline are used
	r        *strings.Reader
}

func (p *pipeConn) Read(b []byte) (int, error)      { return p.r.Read(b) }
func (p *pipeConn) SetReadDeadline(time.Time) error { return nil }

// FuzzFrontHead: whatever head the front serves itself, net/http reads the
// same way (method, target, Host, no body), and the request the front sends
// the app is one net/http reads with the same headers less the hop-by-hop
// and forwarding ones. A head the front and net/http would read differently
// is how requests are smuggled.
func FuzzFrontHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n",
		"GET /a?b=c HTTP/1.1\r\nhost: Alpha.Example.Test:80\r\nX-Request-Id: x\r\nConnection: close\r\n\r\n",
		"HEAD /x HTTP/1.1\r\nHost: alpha.example.test\r\nContent-Length: 0\r\nKeep-Alive: 1\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: alpha.example.test\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: alpha.example.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: alpha.example.test\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: alpha.example.test\r\nHost: beta\r\n\r\n",
		"GET http://alpha.example.test/ HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : alpha.example.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: alpha.example.test\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x{.preview.example.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: pr-1.preview.example.test\r\n\r\n",
	} {
		f.Add(s)
	}
	alpha := &Route{App: "alpha", Backends: []*Backend{NewBackend("127.0.0.1:9", 0, discardLog())}}
	host := &fakeHost{routes: map[string]*Route{"alpha.example.test": alpha}, wild: map[string]*Route{"preview.example.test": alpha}}
	front := New(host, Config{Kind: Goroutines, Log: discardLog()}, nil)
	f.Fuzz(func(t *testing.T, in string) {
		c := &frontConn{f: front, conn: &pipeConn{r: strings.NewReader(in)}, clientIP: "192.0.2.1"}
		c.br = bufio.NewReaderSize(c.conn, frontBufSize)
		var h requestHead
		fast, err := c.readHead(&h)
		if err != nil || !fast {
			return // net/http decides
		}
		head := in[:h.size]
		want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if err != nil {
			t.Fatalf("the front serves %q, net/http refuses it: %v", head, err)
		}
		// What net/http's server checks beyond ReadRequest.
		if !httpguts.ValidHostHeader(want.Host) {
			t.Fatalf("the front serves %q, net/http's server refuses its Host header", head)
		}
		for name, vals := range want.Header {
			for _, v := range vals {
				if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("the front serves %q, net/http's server refuses its header %q: %q", head, name, v)
				}
			}
		}
		if want.Method != string(h.method) || want.RequestURI != string(h.target) || want.Host != string(h.host) {
			t.Fatalf("%q: front read %s %s host %q, net/http %s %s host %q", head, h.method, h.target, h.host, want.Method, want.RequestURI, want.Host)
		}
		if want.ContentLength != 0 || len(want.TransferEncoding) != 0 {
			t.Fatalf("%q: the front serves it as bodiless, net/http reads a body (length %d, %v)", head, want.ContentLength, want.TransferEncoding)
		}
		c.proxyHead(&h)
		sent, err := http.ReadRequest(bufio.NewReader(strings.NewReader(string(c.req))))
		if err != nil {
			t.Fatalf("%q: the request for the app does not parse: %v\n%s", head, err, c.req)
		}
		if sent.Method != want.Method || sent.RequestURI != want.RequestURI || sent.Host != want.Host {
			t.Fatalf("%q: the app would get %s %s host %q", head, sent.Method, sent.RequestURI, sent.Host)
		}
		for name, vals := range want.Header {
			switch name {
			case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Trailer",
				"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id":
				continue
			}
			if got := sent.Header[name]; !slices.Equal(got, vals) {
				t.Fatalf("%q: header %s = %q for the app, net/http read %q", head, name, got, vals)
			}
		}
		if got := sent.Header.Get("X-Forwarded-For"); got != "192.0.2.1" {
			t.Fatalf("%q: X-Forwarded-For %q", head, got)
		}
	})
}

// A client that stops reading a response is dropped after SendTimeout, and
// the task's connection and in-flight count are released.
func TestFrontDropsClientThatStopsReading(t *testing.T) {
	forEachKind(t, testFrontDropsClientThatStopsReading)
}

func testFrontDropsClientThatStopsReading(t *testing.T, kind Kind) {
	big := strings.Repeat("x", 64<<20) // more than the socket buffers hold
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, big)
	}))
	t.Cleanup(srv.Close)
	be := NewBackend(srv.Listener.Addr().String(), 0, discardLog())
	host := &fakeHost{routes: map[string]*Route{"alpha.example.test": {App: "alpha", Backends: []*Backend{be}}}}
	addr := startFront(t, host, Config{Kind: kind, SendTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n") // and never read
	inflight := be.InFlight
	start := time.Now()
	for inflight() == 0 { // the response started
		if time.Since(start) > 5*time.Second {
			t.Fatal("the request never got to the app")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for inflight() != 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the request is still in flight 10s after its client stopped reading: %d", inflight())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The client's connection was closed.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("reading what was sent: %v, want EOF", err)
	}
}

// peerLost tells the errors of a task that stopped answering from those of
// one that closed a connection (which a new connection may not meet) and
// from the router's own deadlines.
func TestPeerLost(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}, true},
		{os.NewSyscallError("read", syscall.EHOSTUNREACH), true},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, false},
		{os.NewSyscallError("read", syscall.ECONNRESET), false},
		{io.ErrUnexpectedEOF, false},
		{errors.New("other"), false},
	} {
		if got := peerLost(tc.err); got != tc.want {
			t.Errorf("peerLost(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
