package router

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSource is a Source whose table and error a test sets.
type fakeSource struct {
	mu    sync.Mutex
	table Table
	err   error
	calls int
}

func (f *fakeSource) Routes(context.Context) (Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.table, f.err
}

func (f *fakeSource) set(t Table, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.table, f.err = t, err
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func discardLog() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startBackend starts a real HTTP server and returns its address.
func startBackend(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// namedBackend answers every request with its name.
func namedBackend(t *testing.T, name string) string {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, name)
	}))
}

// deadAddr is the address of a listener that has been closed: connecting to
// it is refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func backends(addrs ...string) []Backend {
	out := make([]Backend, len(addrs))
	for i, a := range addrs {
		out[i] = Backend{Addr: a}
	}
	return out
}

// startRouter builds a Router over src, loads its routes and serves it with
// Serve on a real listener, so that requests go through the front and, for
// what the front hands over, net/http.
func startRouter(t *testing.T, src Source, opts Options) (*Router, *testServer) {
	t.Helper()
	if opts.Log == nil {
		opts.Log = discardLog()
	}
	if opts.Domain == "" {
		opts.Domain = "example.test"
	}
	r := newTestRouter(src, opts)
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	s := &testServer{URL: "http://" + ln.Addr().String(), Listener: ln, client: &http.Client{Transport: &http.Transport{}}}
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return r, s
}

// testServer is a router served on a loopback port.
type testServer struct {
	URL      string
	Listener net.Listener
	client   *http.Client
}

// Client returns a client for the server whose idle connections are
// closed at the end of the test.
func (s *testServer) Client() *http.Client { return s.client }

type response struct {
	status int
	body   string
	header http.Header
}

func do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", req.Method, req.URL, req.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func newRequest(t *testing.T, method, url, host string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	return req
}

func TestRouting(t *testing.T) {
	alpha := namedBackend(t, "alpha-backend")
	beta := namedBackend(t, "beta-backend")
	src := &fakeSource{table: Table{Routes: []Route{
		{App: "alpha", Hosts: []string{"alpha.example.test", "WWW.Alpha.Test"}, Backends: backends(alpha)},
		{App: "beta", Hosts: []string{"beta.example.test"}, Backends: backends(beta)},
		{App: "idle", Hosts: []string{"idle.example.test"}},
	}}}
	_, srv := startRouter(t, src, Options{AccessLog: true})

	tests := []struct {
		name   string
		host   string
		status int
		body   string // expected body; for errors, a part of it
	}{
		{"app host", "alpha.example.test", 200, "alpha-backend"},
		{"extra host", "www.alpha.test", 200, "alpha-backend"},
		{"other app", "beta.example.test", 200, "beta-backend"},
		{"port is ignored", "beta.example.test:8080", 200, "beta-backend"},
		{"case-insensitive", "ALPHA.Example.TEST", 200, "alpha-backend"},
		{"trailing dot", "alpha.example.test.", 200, "alpha-backend"},
		{"unknown host", "gamma.example.test", 404, "No app is served"},
		{"no wildcard subdomains", "x.alpha.example.test", 404, "No app is served"},
		{"bare domain", "example.test", 404, "No app is served"},
		{"ip address", "127.0.0.1", 404, "No app is served"},
		{"app without backends", "idle.example.test", 503, "no running instance"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := do(t, srv.Client(), newRequest(t, "GET", srv.URL+"/some/path?q=1", tc.host, nil))
			if got.status != tc.status {
				t.Fatalf("status = %d, want %d (body %q)", got.status, tc.status, got.body)
			}
			if tc.status == 200 {
				if got.body != tc.body {
					t.Errorf("body = %q, want %q", got.body, tc.body)
				}
				return
			}
			if !strings.Contains(got.body, tc.body) {
				t.Errorf("body = %q, want it to contain %q", got.body, tc.body)
			}
			for _, app := range []string{"alpha", "beta", "idle", "gamma"} {
				if strings.Contains(strings.ToLower(got.body), app) {
					t.Errorf("error page names %q: %q", app, got.body)
				}
			}
			if got.header.Get("X-Request-Id") == "" {
				t.Error("error response has no X-Request-Id")
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	a := namedBackend(t, "a")
	b := namedBackend(t, "b")
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(a, b)}}}}
	_, srv := startRouter(t, src, Options{})

	counts := map[string]int{}
	last := ""
	for range 10 {
		got := do(t, srv.Client(), newRequest(t, "GET", srv.URL, "alpha.example.test", nil))
		if got.status != 200 {
			t.Fatalf("status = %d", got.status)
		}
		if got.body == last {
			t.Errorf("backend %s answered twice in a row", got.body)
		}
		last = got.body
		counts[got.body]++
	}
	if counts["a"] != 5 || counts["b"] != 5 {
		t.Errorf("requests per backend = %v, want 5 each", counts)
	}
}

// tcpBackend accepts connections on loopback and, for each, reads a
// request head and calls answer, then closes the connection.
func tcpBackend(t *testing.T, answer func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil || l == "\r\n" {
						break
					}
				}
				answer(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dropBackend reads a request head and closes the connection without
// answering, as a task being stopped does. It counts the connections.
func dropBackend(t *testing.T, accepted *atomic.Int64) string {
	return tcpBackend(t, func(net.Conn) { accepted.Add(1) })
}

func TestRetry(t *testing.T) {
	echo := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}))
	tests := []struct {
		name          string
		refuse, drop  int  // backends that refuse connections, that drop them
		live          bool // and one that answers
		method, body  string
		status        int
		dropsPerReq   int // connections the dropping backends see per request; 0: not checked
		idempotentKey bool
	}{
		{name: "GET, a backend refuses", refuse: 1, live: true, method: "GET", status: 200},
		{name: "POST with a body, a backend refuses", refuse: 1, live: true, method: "POST", body: "payload", status: 200},
		{name: "PUT, two backends refuse", refuse: 2, live: true, method: "PUT", body: "x=1", status: 200},
		{name: "POST, every backend refuses", refuse: 2, method: "POST", body: "payload", status: 502},
		{name: "GET, a backend drops the connection", drop: 1, live: true, method: "GET", status: 200},
		{name: "DELETE, a backend drops the connection", drop: 1, live: true, method: "DELETE", status: 200},
		{name: "POST sent to a backend that drops it is not retried", drop: 2, method: "POST", body: "payload", status: 502, dropsPerReq: 1},
		{name: "POST without a body but with an idempotency key is retried", drop: 2, method: "POST", status: 502, dropsPerReq: 2, idempotentKey: true},
		{name: "GET is tried once on each backend", drop: 2, method: "GET", status: 502, dropsPerReq: 2},
		{name: "GET is sent twice at most", drop: 3, method: "GET", status: 502, dropsPerReq: 2},
		{name: "refusals do not count as sends", refuse: 2, drop: 2, method: "GET", status: 502, dropsPerReq: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var addrs []string
			var drops atomic.Int64
			for range tc.refuse {
				addrs = append(addrs, deadAddr(t))
			}
			for range tc.drop {
				addrs = append(addrs, dropBackend(t, &drops))
			}
			if tc.live {
				addrs = append(addrs, echo)
			}
			src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(addrs...)}}}}
			_, srv := startRouter(t, src, Options{AccessLog: true})
			// Enough requests for the round-robin to start at every backend.
			n := 2 * len(addrs)
			for i := range n {
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				req := newRequest(t, tc.method, srv.URL, "alpha.example.test", body)
				if tc.idempotentKey {
					req.Header.Set("Idempotency-Key", fmt.Sprint(i))
				}
				got := do(t, srv.Client(), req)
				if got.status != tc.status {
					t.Fatalf("request %d: status = %d, want %d (body %q)", i, got.status, tc.status, got.body)
				}
				if want := tc.method + " " + tc.body; tc.status == 200 && got.body != want {
					t.Fatalf("request %d: body = %q, want %q", i, got.body, want)
				}
			}
			if tc.dropsPerReq != 0 && drops.Load() != int64(tc.dropsPerReq*n) {
				t.Errorf("dropping backends saw %d connections for %d requests, want %d", drops.Load(), n, tc.dropsPerReq*n)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	seen := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"host":   r.Host,
			"xff":    strings.Join(r.Header.Values("X-Forwarded-For"), "|"),
			"proto":  r.Header.Get("X-Forwarded-Proto"),
			"fwhost": r.Header.Get("X-Forwarded-Host"),
			"id":     strings.Join(r.Header.Values("X-Request-Id"), "|"),
		})
	}))
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(seen)}}}}
	_, srv := startRouter(t, src, Options{})

	tests := []struct {
		name   string
		header map[string]string
		wantID string // "" means a generated one
	}{
		{"no request id", nil, ""},
		{"request id kept", map[string]string{"X-Request-Id": "abc-123"}, "abc-123"},
		{"unsafe request id replaced", map[string]string{"X-Request-Id": "has spaces\tand tabs"}, ""},
		{"client's forwarded headers not trusted", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, "GET", srv.URL, "alpha.example.test", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			got := do(t, srv.Client(), req)
			var h map[string]string
			if err := json.Unmarshal([]byte(got.body), &h); err != nil {
				t.Fatalf("status %d, body %q: %v", got.status, got.body, err)
			}
			want := map[string]string{"host": "alpha.example.test", "xff": "127.0.0.1", "proto": "http", "fwhost": "alpha.example.test"}
			for k, v := range want {
				if h[k] != v {
					t.Errorf("backend saw %s = %q, want %q", k, h[k], v)
				}
			}
			if tc.wantID != "" && h["id"] != tc.wantID {
				t.Errorf("backend saw request id %q, want %q", h["id"], tc.wantID)
			}
			if h["id"] == "" || strings.ContainsAny(h["id"], " \t|") {
				t.Errorf("backend saw request id %q, want one valid id", h["id"])
			}
			if rid := got.header.Values("X-Request-Id"); len(rid) != 1 || rid[0] != h["id"] {
				t.Errorf("response X-Request-Id = %q, want [%q]", rid, h["id"])
			}
		})
	}
}

func TestStreaming(t *testing.T) {
	const first, second = "data: first\n", "data: second\n"
	tests := []struct {
		name          string
		contentType   string
		contentLength bool // announce the length instead of chunking
		accessLog     bool
	}{
		{"server-sent events", "text/event-stream", false, false},
		{"server-sent events, access log", "text/event-stream", false, true},
		{"known length", "text/plain", true, false},
		{"known length, access log", "text/plain", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			releaseOnce := func() { once.Do(func() { close(release) }) }
			t.Cleanup(releaseOnce)
			stream := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				if tc.contentLength {
					w.Header().Set("Content-Length", fmt.Sprint(len(first+second)))
				}
				fmt.Fprint(w, first)
				_ = http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
				fmt.Fprint(w, second)
			}))
			src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(stream)}}}}
			_, srv := startRouter(t, src, Options{AccessLog: tc.accessLog})

			// Headers, too, must arrive before the second line is written,
			// so the request is made where the timeout below covers it.
			req := newRequest(t, "GET", srv.URL, "alpha.example.test", nil)
			lines := make(chan string)
			go func() {
				defer close(lines)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					lines <- l
				}
			}()
			if l := receive(t, lines, 5*time.Second, "the first line did not arrive before the second was written: the response is buffered"); l != first {
				t.Fatalf("first line = %q", l)
			}
			releaseOnce()
			if l := receive(t, lines, 5*time.Second, "the second line did not arrive"); l != second {
				t.Fatalf("second line = %q", l)
			}
		})
	}
}

// upgradeBackend switches to a line-echo protocol after a 101, the way a
// WebSocket server does, for requests asking to upgrade to "echo" that
// accept also approves of.
func upgradeBackend(t *testing.T, accept func(*http.Request) bool) string {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" || !accept(r) {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		for {
			l, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString(strings.ToUpper(l))
			brw.Flush()
		}
	}))
}

// receive returns the next value from ch, and fails the test with msg when
// none comes within d.
func receive[T any](t *testing.T, ch <-chan T, d time.Duration, msg string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatal(msg)
	}
	var zero T
	return zero
}

func TestUpgrade(t *testing.T) {
	echo := upgradeBackend(t, func(r *http.Request) bool { return strings.EqualFold(r.Header.Get("Connection"), "upgrade") })
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(echo)}}}}
	for _, accessLog := range []bool{false, true} {
		t.Run(fmt.Sprintf("access log %v", accessLog), func(t *testing.T) {
			_, srv := startRouter(t, src, Options{AccessLog: accessLog})
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprint(conn, "GET /socket HTTP/1.1\r\nHost: alpha.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" {
				t.Fatalf("response = %d, Upgrade %q; want 101 echo", resp.StatusCode, resp.Header.Get("Upgrade"))
			}
			for _, msg := range []string{"hello\n", "again\n"} {
				fmt.Fprint(conn, msg)
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if l != strings.ToUpper(msg) {
					t.Fatalf("echo = %q, want %q", l, strings.ToUpper(msg))
				}
			}
		})
	}
}

func TestTableSwap(t *testing.T) {
	one := namedBackend(t, "one")
	two := namedBackend(t, "two")
	tableWith := func(addr string) Table {
		return Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(addr)}}}
	}
	src := &fakeSource{table: tableWith(one)}
	r, srv := startRouter(t, src, Options{})
	client := srv.Client()

	t.Run("keep-alive connection survives a swap", func(t *testing.T) {
		var reused []bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
		get := func() string {
			req := newRequest(t, "GET", srv.URL, "alpha.example.test", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			return do(t, client, req).body
		}
		if got := get(); got != "one" {
			t.Fatalf("before the swap: %q, want one", got)
		}
		src.set(tableWith(two), nil)
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := get(); got != "two" {
			t.Fatalf("after the swap: %q, want two", got)
		}
		if len(reused) != 2 || !reused[1] {
			t.Errorf("connection reused = %v, want the second request on the first one's connection", reused)
		}
	})

	t.Run("unchanged table is not swapped", func(t *testing.T) {
		before := r.table.Load()
		// The same routes, spelled differently.
		src.set(Table{Routes: []Route{{App: "alpha", Hosts: []string{"Alpha.Example.Test", "alpha.example.test"}, Backends: backends(two, two)}}}, nil)
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if r.table.Load() != before {
			t.Error("the table was replaced although nothing changed")
		}
	})

	t.Run("failed read keeps the last table", func(t *testing.T) {
		src.set(Table{}, errors.New("docker is down"))
		if err := r.Refresh(t.Context()); err == nil {
			t.Fatal("Refresh returned no error")
		}
		if got := do(t, client, newRequest(t, "GET", srv.URL, "alpha.example.test", nil)); got.status != 200 || got.body != "two" {
			t.Fatalf("after a failed read: %d %q, want 200 two", got.status, got.body)
		}
	})

	t.Run("no request fails during swaps", func(t *testing.T) {
		var wg sync.WaitGroup
		var stop atomic.Bool
		var failures atomic.Int64
		var count atomic.Int64
		for range 8 {
			wg.Go(func() {
				for !stop.Load() {
					req, _ := http.NewRequest("GET", srv.URL, nil)
					req.Host = "alpha.example.test"
					resp, err := client.Do(req)
					if err != nil {
						failures.Add(1)
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || (string(b) != "one" && string(b) != "two") {
						failures.Add(1)
					}
					count.Add(1)
				}
			})
		}
		for i := range 200 {
			addr := one
			if i%2 == 0 {
				addr = two
			}
			src.set(tableWith(addr), nil)
			if err := r.Refresh(t.Context()); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
		stop.Store(true)
		wg.Wait()
		if failures.Load() != 0 {
			t.Errorf("%d of %d requests failed during table swaps", failures.Load(), count.Load())
		}
		if count.Load() < 100 {
			t.Errorf("only %d requests ran during the swaps", count.Load())
		}
	})
}

func TestServePollsAndShutsDownGracefully(t *testing.T) {
	one := namedBackend(t, "one")
	two := namedBackend(t, "two")
	slowStarted := make(chan struct{})
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(slowStarted)
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "slow")
	}))
	tableWith := func(addr string) Table {
		return Table{Routes: []Route{
			{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(addr)},
			{App: "slow", Hosts: []string{"slow.example.test"}, Backends: backends(slow)},
		}}
	}
	src := &fakeSource{table: tableWith(one)}
	logs := &syncBuffer{}
	r := newTestRouter(src, Options{Domain: "example.test", PollInterval: 10 * time.Millisecond, Log: slog.New(slog.NewJSONHandler(logs, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()

	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(host string) response {
		return do(t, client, newRequest(t, "GET", url, host, nil))
	}
	// Routes are loaded before the first request is accepted.
	if got := get("alpha.example.test"); got.body != "one" {
		t.Fatalf("first request: %d %q, want one", got.status, got.body)
	}

	// The source fails for a while: the router keeps serving, and says so once.
	src.set(Table{}, errors.New("docker is down"))
	time.Sleep(150 * time.Millisecond)
	if got := get("alpha.example.test"); got.body != "one" {
		t.Fatalf("while the source fails: %d %q, want one", got.status, got.body)
	}
	src.set(tableWith(two), nil)
	deadline := time.Now().Add(5 * time.Second)
	for get("alpha.example.test").body != "two" {
		if time.Now().After(deadline) {
			t.Fatal("the route change was not applied within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "cannot read routes"); n != 1 {
		t.Errorf("source failure logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "reading routes again"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, out)
	}

	// A request in flight when the context ends still gets its answer.
	slowDone := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = "slow.example.test"
		resp, err := client.Do(req)
		if err != nil {
			slowDone <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slowDone <- response{status: resp.StatusCode, body: string(b)}
	}()
	<-slowStarted
	cancel()
	if err := receive(t, served, 5*time.Second, "Serve did not return after its context ended"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got := <-slowDone; got.status != 200 || got.body != "slow" {
		t.Errorf("request in flight during shutdown: %d %q, want 200 slow", got.status, got.body)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections after Serve returned")
	}
}

func TestAccessLog(t *testing.T) {
	alpha := namedBackend(t, "alpha")
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(alpha)}}}}
	tests := []struct {
		name      string
		accessLog bool
		host      string
		want      map[string]any // nil: no line
	}{
		{"proxied", true, "alpha.example.test", map[string]any{
			"msg": "request", "method": "GET", "host": "alpha.example.test", "path": "/a/b", "status": 200.0,
			"app": "alpha", "backend": alpha, "request_id": "req-1", "bytes": 5.0, "component": "router",
		}},
		{"unknown host", true, "nope.example.test", map[string]any{"msg": "request", "status": 404.0, "request_id": "req-1", "app": nil, "backend": nil}},
		{"off", false, "alpha.example.test", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			_, srv := startRouter(t, src, Options{AccessLog: tc.accessLog, Log: slog.New(slog.NewJSONHandler(logs, nil))})
			before := strings.Count(logs.String(), "\n")
			req := newRequest(t, "GET", srv.URL+"/a/b", tc.host, nil)
			req.Header.Set("X-Request-Id", "req-1")
			do(t, srv.Client(), req)
			// The line is written when the handler returns, which may be
			// just after the client has read the whole response.
			wait := 2 * time.Second
			if tc.want == nil {
				wait = 100 * time.Millisecond
			}
			var lines []string
			for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
				lines = strings.SplitAfter(logs.String(), "\n")
				lines = slices.DeleteFunc(lines[before:], func(l string) bool { return !strings.Contains(l, `"msg":"request"`) })
				if len(lines) > 0 || time.Now().After(deadline) {
					break
				}
			}
			if tc.want == nil {
				if len(lines) != 0 {
					t.Fatalf("logged %q with the access log off", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("got %d log lines, want 1: %q", len(lines), lines)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, lines[0])
				}
			}
			if _, ok := got["duration_ms"].(float64); !ok {
				t.Errorf("no duration_ms in %s", lines[0])
			}
		})
	}
}

func TestTableEqual(t *testing.T) {
	base := Table{Routes: []Route{
		{App: "a", Hosts: []string{"a.example.test", "www.a.test"}, Backends: backends("10.0.0.1:5000", "10.0.0.2:5000")},
		{App: "b", Hosts: []string{"b.example.test"}},
	}}
	tests := []struct {
		name  string
		other Table
		equal bool
	}{
		{"identical", base, true},
		{"reordered and other case", Table{Routes: []Route{
			{App: "b", Hosts: []string{"B.example.test"}},
			{App: "a", Hosts: []string{"www.a.test", "A.example.test:80"}, Backends: backends("10.0.0.2:5000", "10.0.0.1:5000", "10.0.0.1:5000")},
		}}, true},
		{"a backend less", Table{Routes: []Route{
			{App: "a", Hosts: []string{"a.example.test", "www.a.test"}, Backends: backends("10.0.0.1:5000")},
			{App: "b", Hosts: []string{"b.example.test"}},
		}}, false},
		{"a host more", Table{Routes: []Route{
			{App: "a", Hosts: []string{"a.example.test", "www.a.test", "x.test"}, Backends: backends("10.0.0.1:5000", "10.0.0.2:5000")},
			{App: "b", Hosts: []string{"b.example.test"}},
		}}, false},
		{"an app less", Table{Routes: base.Routes[:1]}, false},
		{"empty", Table{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := base.Equal(tc.other); got != tc.equal {
				t.Errorf("Equal = %v, want %v", got, tc.equal)
			}
		})
	}
}

func TestRun(t *testing.T) {
	t.Run("bad address", func(t *testing.T) {
		r := newTestRouter(&fakeSource{}, Options{HTTPAddr: "127.0.0.1:not-a-port", Log: discardLog()})
		if err := r.Run(t.Context()); err == nil {
			t.Fatal("Run returned no error for a bad listen address")
		}
	})
	t.Run("stops with its context", func(t *testing.T) {
		r := newTestRouter(&fakeSource{}, Options{HTTPAddr: "127.0.0.1:0", Log: discardLog()})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := r.Run(ctx); err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer backend.Close()
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(backend.Listener.Addr().String())}}}}
	for _, accessLog := range []bool{false, true} {
		b.Run(fmt.Sprintf("access log %v", accessLog), func(b *testing.B) {
			r := newTestRouter(src, Options{AccessLog: accessLog, Log: discardLog()})
			if err := r.Refresh(b.Context()); err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(r)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", srv.URL, nil)
					req.Host = "alpha.example.test"
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
