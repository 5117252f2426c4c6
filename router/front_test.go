package router

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// echoBackend answers with what it received (method, URI, Host and headers)
// and a response shaped by the path.
func echoBackend(t *testing.T) string {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MB
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Del("X-Request-Id") // generated: differs by design
		seen, _ := json.Marshal(map[string]any{"method": r.Method, "uri": r.RequestURI, "host": r.Host, "proto": r.Proto, "header": h})
		w.Header().Set("X-Seen", string(seen))
		w.Header().Set("X-Request-Id", "from-the-backend") // replaced by the router's
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		case "/chunked":
			for i := range 5 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
			}
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.WriteHeader(http.StatusNotModified)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "closing")
		case "/cookies":
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.Header().Set("Keep-Alive", "timeout=5") // hop-by-hop: dropped
			io.WriteString(w, "two cookies")
		default:
			io.WriteString(w, "hello")
		}
	}))
}

type exchange struct {
	Status int
	Seen   map[string]any
	Header http.Header
	Body   string
}

func doExchange(t *testing.T, c *http.Client, url, method, path string, header map[string]string) exchange {
	t.Helper()
	req := newRequest(t, method, url+path, "alpha.example.test", nil)
	req.Header.Set("X-Request-Id", "fixed-id")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	var seen map[string]any
	_ = json.Unmarshal([]byte(resp.Header.Get("X-Seen")), &seen)
	h := resp.Header.Clone()
	h.Del("X-Seen")
	h.Del("Date")
	return exchange{Status: resp.StatusCode, Seen: seen, Header: h, Body: string(body)}
}

// The front and net/http's ReverseProxy (through ServeHTTP) send the app the
// same request and the client the same response.
func TestFrontMatchesNetHTTP(t *testing.T) {
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(echoBackend(t))}}}}
	r, front := startRouter(t, src, Options{AccessLog: true})
	viaNetHTTP := httptest.NewServer(r) // ServeHTTP only
	t.Cleanup(viaNetHTTP.Close)

	tests := []struct {
		name, method, path string
		header             map[string]string
	}{
		{"small", "GET", "/", nil},
		{"query and escaped path", "GET", "/a%20b/c?x=1&y=%2F", nil},
		{"1 MB", "GET", "/big", nil},
		{"chunked stream", "GET", "/chunked", nil},
		{"HEAD", "HEAD", "/big", nil},
		{"204", "GET", "/nocontent", nil},
		{"304", "GET", "/notmodified", nil},
		{"backend closes", "GET", "/close", nil},
		{"repeated and hop-by-hop response headers", "GET", "/cookies", nil},
		{"DELETE without a body", "DELETE", "/", nil},
		{"hop-by-hop and forwarding request headers", "GET", "/", map[string]string{
			"Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic eDp5", "Forwarded": "for=203.0.113.9",
			"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https",
			"X-Custom": "kept", "Idempotency-Key": "k1",
		}},
		{"client closes", "GET", "/", map[string]string{"Connection": "close"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := handedOver(t, r)
			got := doExchange(t, front.Client(), front.URL, tc.method, tc.path, tc.header)
			if n := handedOver(t, r) - before; n != 0 {
				t.Errorf("the front handed %d connections to net/http, want it to serve the request itself", n)
			}
			want := doExchange(t, viaNetHTTP.Client(), viaNetHTTP.URL, tc.method, tc.path, tc.header)
			gotJSON, _ := json.MarshalIndent(got, "", " ")
			wantJSON, _ := json.MarshalIndent(want, "", " ")
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("front:\n%s\nnet/http:\n%s", trimBig(gotJSON), trimBig(wantJSON))
			}
			if got.Header.Get("X-Request-Id") != "fixed-id" {
				t.Errorf("X-Request-Id = %q, want the client's", got.Header.Get("X-Request-Id"))
			}
		})
	}
}

func trimBig(b []byte) string {
	if len(b) > 4000 {
		return string(b[:2000]) + "..." + string(b[len(b)-2000:])
	}
	return string(b)
}

// rawRouter serves one app whose backend echoes the request path, for tests
// that write requests by hand.
func rawRouter(t *testing.T, opts Options) (*Router, string) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(be)}}}}
	r, s := startRouter(t, src, opts)
	return r, s.Listener.Addr().String()
}

// roundTripRaw writes req on a new connection and returns everything the
// router sent back until it closed the connection or went quiet.
func roundTripRaw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return string(out)
		}
	}
}

func TestFrontRequestHeads(t *testing.T) {
	r, addr := rawRouter(t, Options{})
	const host = "Host: alpha.example.test\r\n"
	tests := []struct {
		name      string
		req       string
		handOver  bool
		wantParts []string // in this order
	}{
		{"two pipelined requests", "GET /one HTTP/1.1\r\n" + host + "\r\nGET /two HTTP/1.1\r\n" + host + "\r\n", false,
			[]string{"HTTP/1.1 200 OK", "GET /one", "HTTP/1.1 200 OK", "GET /two"}},
		{"lower-case header names", "GET /lc HTTP/1.1\r\nhost: alpha.example.test\r\nx-request-id: lc-1\r\n\r\n", false,
			[]string{"HTTP/1.1 200 OK", "X-Request-Id: lc-1", "GET /lc"}},
		{"a body goes to net/http", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 4\r\n\r\nbody", true,
			[]string{"HTTP/1.1 200 OK", "POST /p body"}},
		{"a chunked body goes to net/http", "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", true,
			[]string{"HTTP/1.1 200 OK", "POST /c abc"}},
		{"HTTP/1.0 goes to net/http", "GET /old HTTP/1.0\r\n" + host + "\r\n", true,
			[]string{"HTTP/1.0 200 OK", "GET /old"}},
		{"bare line feeds go to net/http", "GET /lf HTTP/1.1\n" + "Host: alpha.example.test\n\n", true,
			[]string{"HTTP/1.1 200 OK", "GET /lf"}},
		{"a head over 8 KB goes to net/http", "GET /big HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("b", 5<<10) + "\r\nX-Big2: " + strings.Repeat("b", 5<<10) + "\r\n\r\n", true,
			[]string{"HTTP/1.1 200 OK", "GET /big"}},
		{"obsolete line folding goes to net/http", "GET /fold HTTP/1.1\r\n" + host + "X-Folded: a\r\n b\r\n\r\n", true,
			[]string{"HTTP/1.1 200 OK", "GET /fold"}},
		{"no Host is refused by net/http", "GET /nohost HTTP/1.1\r\n\r\n", true,
			[]string{"HTTP/1.1 400 Bad Request"}},
		{"two Hosts are refused by net/http", "GET /twohosts HTTP/1.1\r\n" + host + host + "\r\n", true,
			[]string{"HTTP/1.1 400 Bad Request"}},
		{"a control character in a value is refused by net/http", "GET /ctl HTTP/1.1\r\n" + host + "X-Bad: a\x01b\r\n\r\n", true,
			[]string{"HTTP/1.1 400 Bad Request"}},
		{"an unknown host gets net/http's 404", "GET / HTTP/1.1\r\nHost: nope.example.test\r\n\r\n", true,
			[]string{"HTTP/1.1 404 Not Found", "No app is served at this address."}},
		{"fast, then handed over on the same connection", "GET /first HTTP/1.1\r\n" + host + "\r\nPOST /second HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi", true,
			[]string{"GET /first", "POST /second hi"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := handedOver(t, r)
			out := roundTripRaw(t, addr, tc.req)
			rest := out
			for _, part := range tc.wantParts {
				i := strings.Index(rest, part)
				if i < 0 {
					t.Fatalf("response has no %q after the previous part:\n%s", part, out)
				}
				rest = rest[i+len(part):]
			}
			if handed := handedOver(t, r) > before; handed != tc.handOver {
				t.Errorf("handed over to net/http: %v, want %v", handed, tc.handOver)
			}
		})
	}
}

// fakeBackend answers every request with resp, then closes the connection.
func fakeBackend(t *testing.T, resp string) string {
	return tcpBackend(t, func(c net.Conn) { io.WriteString(c, resp) })
}

func TestFrontBackendResponses(t *testing.T) {
	tests := []struct {
		name       string
		resp       string
		wantStatus int
		wantBody   string
		wantErr    bool // the client sees the connection fail
	}{
		{"HTTP/1.0 until close", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold server", 200, "old server", false},
		{"no length, until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close", 200, "until close", false},
		{"chunked with trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n", 200, "hello world", false},
		{"100 Continue first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false},
		{"garbage", "SSH-2.0-OpenSSH\r\n\r\n", 502, "502 Bad Gateway\n\nThe app did not answer.\n", false},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", 502, "502 Bad Gateway\n\nThe app did not answer.\n", false},
		{"closed before answering", "", 502, "502 Bad Gateway\n\nThe app did not answer.\n", false},
		{"body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", 0, "", true},
		{"a bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(fakeBackend(t, tc.resp))}}}}
			r, s := startRouter(t, src, Options{})
			resp, err := s.Client().Do(newRequest(t, "GET", s.URL, "alpha.example.test", nil))
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %d %q, want a failed response", resp.StatusCode, body)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || string(body) != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if tc.name == "chunked with trailers" && resp.Trailer.Get("X-Sum") != "42" {
				t.Errorf("trailer X-Sum = %q, want 42", resp.Trailer.Get("X-Sum"))
			}
			if handedOver(t, r) != 0 {
				t.Errorf("handed over %d connections, want the front to answer", handedOver(t, r))
			}
		})
	}
}

// TestFrontBackendClosesKeptConnection checks that a backend connection
// closed right after a response that promised to keep it (the close arrives
// while the connection waits in the pool) costs no request: the request
// sent on it is sent again on a new connection, at once, whether the
// backend closed its socket or only its sending side for a while.
func TestFrontBackendClosesKeptConnection(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	for _, tc := range []struct {
		name   string
		answer func(c net.Conn)
	}{
		{"closed", func(c net.Conn) { io.WriteString(c, ok) }},
		{"half-closed, reading for 300ms", func(c net.Conn) {
			io.WriteString(c, ok)
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			io.Copy(io.Discard, c)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(tcpBackend(t, tc.answer))}}}}
			r, s := startRouter(t, src, Options{})
			client := s.Client()
			client.Timeout = 5 * time.Second
			for i := range 30 {
				resp, err := client.Do(newRequest(t, "GET", s.URL, "alpha.example.test", nil))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != "ok" {
					t.Fatalf("request %d: %d %q %v, want 200 \"ok\"", i, resp.StatusCode, body, err)
				}
			}
			if handedOver(t, r) != 0 {
				t.Errorf("handed over %d connections, want the front to answer", handedOver(t, r))
			}
		})
	}
}

// An idle keep-alive connection does not hold up a shutdown, and is closed
// by it.
func TestFrontShutdownClosesIdleConnections(t *testing.T) {
	be := namedBackend(t, "one")
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(be)}}}}
	r := newTestRouter(src, Options{Log: discardLog(), ShutdownTimeout: 10 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	cancel()
	if err := receive(t, served, 5*time.Second, "Serve did not return within 5s with an idle connection open"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("shutdown took %s with only an idle connection", d)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after shutdown: read %v, want EOF", err)
	}
}

// A request whose client goes away while the app is still working on it is
// abandoned: the app's request context is cancelled, as it is through
// net/http, and the access log says 499.
func TestFrontAbandonsRequestOfClientThatLeft(t *testing.T) {
	cancelled := make(chan time.Duration, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-r.Context().Done():
			cancelled <- time.Since(start)
		case <-time.After(10 * time.Second):
			cancelled <- -1
		}
	}))
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(be)}}}}
	logs := &syncBuffer{}
	_, s := startRouter(t, src, Options{AccessLog: true, Log: slog.New(slog.NewJSONHandler(logs, nil))})
	c, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: alpha.example.test\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if d := <-cancelled; d < 0 || d > 3*time.Second {
		t.Fatalf("the app's request was not cancelled within 3s of the client leaving (%s)", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), `"status":499`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line with status 499:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A slow response to a client that stays, alone or with a pipelined request
// behind it, is passed on, and the connection serves on.
func TestFrontSlowResponseToClientThatStays(t *testing.T) {
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(800 * time.Millisecond)
		}
		fmt.Fprint(w, r.URL.Path)
	}))
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(be)}}}}
	r, s := startRouter(t, src, Options{})
	get := func(path string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: alpha.example.test\r\nX-Request-Id: id" + strings.ReplaceAll(path, "/", "-") + "\r\n\r\n"
	}
	for _, tc := range []struct {
		name  string
		paths []string // sent in one write
		late  string   // sent while the slow one is awaited
	}{
		{"alone", []string{"/slow"}, ""},
		{"pipelined", []string{"/slow", "/next"}, ""},
		// The slow one's head is not at the start of the buffer, which
		// the client watch's read moves, and the late request's bytes
		// land where it was.
		{"behind a pipelined request", []string{"/first", "/slow"}, "/late-request-that-overwrites"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", s.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			var got, want []string
			send := func(late string, paths ...string) {
				var req string
				for _, p := range paths {
					req += get(p)
					want = append(want, p+" id"+strings.ReplaceAll(p, "/", "-"))
				}
				io.WriteString(c, req)
				if late != "" {
					time.Sleep(600 * time.Millisecond)
					io.WriteString(c, get(late))
					want = append(want, late+" id"+strings.ReplaceAll(late, "/", "-"))
					paths = append(paths, late)
				}
				for range paths {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					got = append(got, string(b)+" "+resp.Header.Get("X-Request-Id"))
				}
			}
			send(tc.late, tc.paths...)
			send("", "/again") // same connection
			if !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
	if handedOver(t, r) != 0 {
		t.Errorf("handed over %d connections", handedOver(t, r))
	}
}

// handedOver is the number of connections r's front gave to net/http; r
// must be serving (or about to: it waits up to 10 s).
func handedOver(t *testing.T, r *Router) int64 {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st := r.serving.Load(); st != nil {
			return st.f.HandedOver()
		}
		if time.Now().After(deadline) {
			t.Fatal("the router is not serving")
		}
	}
}
