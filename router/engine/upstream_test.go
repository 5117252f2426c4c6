package engine

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestUpstreamReuse checks the backend client keeps connections alive, sends
// again on a new connection when the backend closed an idle one, and never
// reuses a connection whose response was not read to its end.
func TestUpstreamReuse(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write([]byte(strings.Repeat("x", 1<<20)))
			return
		}
		io.WriteString(w, "ok "+r.Host)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u := newUpstream(srv.Listener.Addr().String(), DefaultConnectTimeout)
	get := func(path string, readAll bool) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+u.addr+path, nil)
		req.Host = "app.test"
		resp, err := u.RoundTrip(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if !readAll {
			return ""
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for range 5 {
		if got := get("/", true); got != "ok app.test" {
			t.Fatalf("got %q", got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential requests, want 1 kept alive", n)
	}
	// The backend closes its idle connections: the next request is sent
	// again on a new one.
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	if got := get("/", true); got != "ok app.test" {
		t.Fatalf("after the backend closed the idle connection: %q", got)
	}
	// A response closed before its end takes its connection with it.
	before := conns.Load()
	get("/big", false)
	get("/", true)
	if conns.Load() != before+1 {
		t.Fatalf("connections %d -> %d: a half-read connection was reused or none was made", before, conns.Load())
	}
	u.closeIdle()
	if len(u.idle) != 0 {
		t.Fatal("idle connections left after closeIdle")
	}
}

// TestUpstreamCloseIdleInUse: a connection in use while closeIdle runs (a
// response still being passed on when its task left the table) is closed
// when it is done with, not pooled for a task that is gone.
func TestUpstreamCloseIdleInUse(t *testing.T) {
	closed := make(chan struct{}, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u := newUpstream(srv.Listener.Addr().String(), DefaultConnectTimeout)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+u.addr+"/", nil)
	resp, err := u.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	u.closeIdle() // while the response is still open
	if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	resp.Body.Close()
	if len(u.idle) != 0 {
		t.Fatal("a connection in use during closeIdle was pooled afterwards")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection in use during closeIdle is still open")
	}
}
