package router

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"paas/router/contract"
)

// TestConnsPerAddr: a client address holds at most MaxConnsPerAddr
// connections, whichever path serves them (the front or a loop, net/http
// after a hand-over or an upgrade, HTTP/2); one more is refused (429 on
// plain HTTP) while other addresses are served, and every connection that
// ends gives its slot back (the count returns to zero).
func TestConnsPerAddr(t *testing.T) {
	const max = 3
	ca := newTestCA(t)
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app ok") }))
	ws := upgradeBackend(t, func(*http.Request) bool { return true })
	edge := edgeOf(t, "lim", contract.AppConfig{App: "lim", Domains: []string{"lim.example.com"}, Certs: []contract.CertPEM{ca.issue(t, time.Now().Add(time.Hour), "lim.example.com")}})
	src := &fakeSource{table: Table{Routes: []Route{
		{App: "lim", Hosts: []string{"lim.example.test", "lim.example.com"}, Backends: backends(app), Edge: edge},
		{App: "ws", Hosts: []string{"ws.example.test"}, Backends: backends(ws)},
	}}}
	r, httpURL, httpsAddr := tlsRouterWith(t, src, Options{MaxConnsPerAddr: max})
	addr := strings.TrimPrefix(httpURL, "http://")
	deadline := time.Now().Add(5 * time.Second)
	for r.serving.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := r.serving.Load()
	if st == nil {
		t.Fatal("the router did not start serving")
	}
	limit := st.f.ConnLimit()
	me := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	other := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

	// Each way of holding a connection, from 127.0.0.1.
	idle := dialFrom(t, me, addr)
	upgraded := dialFrom(t, me, addr) // net/http hijacks it for the upgrade
	fmt.Fprint(upgraded, "GET /socket HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(upgraded), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	h2 := httpsClient(ca.pool, httpsAddr, true)
	if got := do(t, h2, newRequest(t, "GET", "https://lim.example.com/", "lim.example.com", nil)); got.status != 200 {
		t.Fatalf("HTTP/2 request: %d %q", got.status, got.body)
	}
	waitOpen(t, limit, me, max)

	// One more from the same address is refused, on both ports.
	extra := dialFrom(t, me, addr)
	status, _ := bufio.NewReader(extra).ReadString('\n')
	extra.Close()
	if !strings.HasPrefix(status, "HTTP/1.1 429 ") {
		t.Errorf("connection %d on HTTP: %q, want a 429", max+1, status)
	}
	if c, err := tls.DialWithDialer(&net.Dialer{LocalAddr: me, Timeout: 5 * time.Second}, "tcp", httpsAddr, &tls.Config{RootCAs: ca.pool, ServerName: "lim.example.com"}); err == nil {
		c.Close()
		t.Errorf("connection %d on HTTPS completed its handshake", max+1)
	}
	// Another address is served meanwhile.
	if out := rawGet(t, other, addr, "lim.example.test"); !strings.Contains(out, "app ok") {
		t.Errorf("a request from %s: %q", other.IP, out)
	}

	// Ending each connection gives its slot back.
	idle.Close()
	upgraded.Close()
	h2.CloseIdleConnections()
	waitOpen(t, limit, me, 0)
	for i := range max + 1 { // slots freed are slots again; requests end theirs
		if out := rawGet(t, me, addr, "lim.example.test"); !strings.Contains(out, "app ok") {
			t.Fatalf("request %d after the connections closed: %q", i+1, out)
		}
	}
	waitOpen(t, limit, me, 0)
	waitOpen(t, limit, other, 0)
}

func dialFrom(t *testing.T, from *net.TCPAddr, addr string) net.Conn {
	t.Helper()
	c, err := (&net.Dialer{LocalAddr: from, Timeout: 5 * time.Second}).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from.IP, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// rawGet sends one GET with Connection: close from the address from and
// returns the answer.
func rawGet(t *testing.T, from *net.TCPAddr, addr, host string) string {
	t.Helper()
	c := dialFrom(t, from, addr)
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// waitOpen waits until the limiter counts want connections of from's
// address (a loop sees a client's close on its next event).
func waitOpen(t *testing.T, l interface{ Open(net.Addr) int }, from *net.TCPAddr, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := l.Open(from)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d connections by the router's count, want %d", from.IP, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
