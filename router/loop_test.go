//go:build linux

package router

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"paas/router/contract"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These cover what the event loops (loop.go) do on their own; the rest of
// the router's tests go through them too for plain HTTP.

func alphaRoute(addr string) *fakeSource {
	return &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(addr)}}}}
}

// dialRouter connects to the router, for at most 20 s.
func dialRouter(t *testing.T, s *testServer) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// A client that sends its request and closes its side at once still gets
// the response, and the router then closes the connection.
func TestLoopClientHalfCloses(t *testing.T) {
	_, s := startRouter(t, alphaRoute(namedBackend(t, "one")), Options{})
	c := dialRouter(t, s)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read until the router closes: %v (got %q)", err, all)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		t.Fatalf("response: %v in %q", err, all)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "one" {
		t.Fatalf("got %d %q, want 200 one", resp.StatusCode, body)
	}
}

// A large response to a client that does not read for a while is held back
// (the backend is read only as fast as the client takes it) and arrives
// whole; the connection serves on.
func TestLoopLargeResponseToSlowClient(t *testing.T) {
	const size = 16 << 20
	var served atomic.Int64
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		n := 0
		for n < size {
			k, err := w.Write(chunk)
			n += k
			if err != nil {
				return
			}
			served.Store(int64(n))
		}
	}))
	_, s := startRouter(t, alphaRoute(be), Options{})
	c := dialRouter(t, s)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n")
	time.Sleep(500 * time.Millisecond)
	// Socket buffers hold a few MB at most: the backend must be waiting.
	if n := served.Load(); n >= size {
		t.Errorf("the backend wrote all %d bytes to a client that read none", n)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("body: %d bytes, %v; want %d", n, err, size)
	}
	io.WriteString(c, "GET /again HTTP/1.1\r\nHost: alpha.example.test\r\nContent-Length: 0\r\n\r\n")
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second request on the connection: %v", err)
	}
}

// After a chunked response the connection serves a plain request, then one
// with a body (net/http's).
func TestLoopChunkedThenMore(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
			}
			return
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	r, s := startRouter(t, alphaRoute(be), Options{})
	c := dialRouter(t, s)
	br := bufio.NewReader(c)
	for _, tc := range []struct{ req, want string }{
		{"GET /chunked HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n", "part 0\npart 1\npart 2\n"},
		{"GET /plain HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n", "GET /plain "},
		{"POST /body HTTP/1.1\r\nHost: alpha.example.test\r\nContent-Length: 5\r\n\r\nhello", "POST /body hello"},
		{"GET /after HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n", "GET /after "},
	} {
		io.WriteString(c, tc.req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != tc.want {
			t.Fatalf("%q: %q %v, want %q", tc.req, body, err, tc.want)
		}
	}
	if handedOver(t, r) != 1 {
		t.Errorf("handed over %d connections to net/http, want 1 (for the body)", handedOver(t, r))
	}
}

// The idle connections a loop keeps to a task that left the table are
// closed.
func TestLoopClosesIdleConnectionsOfRemovedTask(t *testing.T) {
	closed := make(chan struct{}, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "one") }))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	src := alphaRoute(srv.Listener.Addr().String())
	r, s := startRouter(t, src, Options{})
	if got := do(t, s.Client(), newRequest(t, "GET", s.URL, "alpha.example.test", nil)); got.body != "one" {
		t.Fatalf("got %q, want one", got.body)
	}
	src.set(Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(namedBackend(t, "two"))}}}, nil)
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	receive(t, closed, 2*time.Second, "the idle connection to the removed task is still open after 2s")
}

// A request to a task that does not answer in the route's read timeout gets
// the 504 page, and one that refuses connections the 502 page, and the
// connection serves on.
func TestLoopErrorPages(t *testing.T) {
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	src := &fakeSource{table: Table{Routes: []Route{
		{App: "slow", Hosts: []string{"slow.example.test"}, Backends: backends(slow), Edge: &Edge{Key: "slow", ReadTimeout: 300 * time.Millisecond}},
		{App: "dead", Hosts: []string{"dead.example.test"}, Backends: backends(deadAddr(t))},
	}}}
	_, s := startRouter(t, src, Options{})
	c := dialRouter(t, s)
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		host string
		want int
	}{{"slow.example.test", 504}, {"dead.example.test", 502}, {"slow.example.test", 504}} {
		start := time.Now()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.want || !strings.Contains(string(body), http.StatusText(tc.want)) && len(body) == 0 {
			t.Fatalf("%s: %d %q, want %d", tc.host, resp.StatusCode, body, tc.want)
		}
		if tc.want == 504 {
			if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
				t.Errorf("504 after %s, want after the 300ms read timeout", d)
			}
		}
	}
}

// Over TLS, after the handshake, the loops serve the connection: requests
// pipelined in one write (TLS reads them in one go and holds the rest), a
// large response to a client that waits before reading, a chunked one, then
// one with a body (net/http's, which still sees HTTPS).
func TestLoopOverTLS(t *testing.T) {
	const size = 4 << 20
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
			}
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			w.Write(bytes.Repeat([]byte("x"), size))
		default:
			fmt.Fprintf(w, "%s %s %s %s", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-Proto"), b)
		}
	}))
	ca := newTestCA(t)
	edge := edgeOf(t, "cfg", contract.AppConfig{App: "web", Domains: []string{"app.example.com"}, Certs: []contract.CertPEM{ca.issue(t, time.Now().Add(time.Hour), "app.example.com")}})
	r, _, httpsAddr := tlsRouter(t, &fakeSource{table: Table{Routes: []Route{{App: "web", Hosts: []string{"app.example.com"}, Backends: backends(be), Edge: edge}}}})
	c, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: ca.pool, ServerName: "app.example.com", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: app.example.com\r\n\r\n" }
	read := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("want %q: %v", want, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != want {
			t.Fatalf("got %q %v, want %q", body, err, want)
		}
	}
	io.WriteString(c, get("/one")+get("/two")+get("/three"))
	read("GET /one https ")
	read("GET /two https ")
	read("GET /three https ")
	io.WriteString(c, get("/big"))
	time.Sleep(300 * time.Millisecond)
	read(strings.Repeat("x", size))
	io.WriteString(c, get("/chunked"))
	read("part 0\npart 1\npart 2\n")
	io.WriteString(c, get("/after-chunked"))
	read("GET /after-chunked https ")
	io.WriteString(c, "POST /body HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n\r\nhello")
	read("POST /body https hello")
	if handedOver(t, r) != 1 {
		t.Errorf("handed over %d connections to net/http, want 1 (for the body)", handedOver(t, r))
	}
}
