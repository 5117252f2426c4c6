package router

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"paas/router/contract"
)

// The control plane's names go to its unix socket, over HTTPS with its own
// certificate (plain HTTP redirected), ahead of an app of the same name,
// on both engines' paths; other names route as before.
func TestControlPlaneRoute(t *testing.T) {
	ca := newTestCA(t)
	sock := filepath.Join(t.TempDir(), contract.ControlSocket)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	control := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, "control %s %s %s", r.Host, r.URL.Path, r.Header.Get("X-Forwarded-Proto"))
	})}
	go control.Serve(ln)
	t.Cleanup(func() { control.Close() })
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app") }))

	data, _ := json.Marshal(contract.GlobalConfig{Control: &contract.ControlConfig{Hosts: []string{"paas.example.test"}, Certs: []contract.CertPEM{ca.issue(t, time.Now().Add(time.Hour), "paas.example.test")}}})
	p := parseConfig("g1", contract.RoleGlobalConfig, data, nil)
	if p.err != nil {
		t.Fatal(p.err)
	}
	src := &fakeSource{table: Table{Global: p.global, Routes: []Route{
		{App: "paas", Hosts: []string{"paas.example.test"}, Backends: []Backend{{Addr: app}}}, // an app of the reserved name
		{App: "web", Hosts: []string{"web.example.test"}, Backends: []Backend{{Addr: app}}},
	}}}
	_, httpURL, httpsAddr := tlsRouterWith(t, src, Options{ControlSocket: sock})
	c := httpsClient(ca.pool, httpsAddr, false)
	get := func(client *http.Client, url, host string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, _ := get(c, "https://paas.example.test/api/v1/apps", "paas.example.test"); code != 200 || body != "control paas.example.test /api/v1/apps https" {
		t.Errorf("HTTPS to the control plane: %d %q", code, body)
	}
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if code, _, h := get(plain, httpURL+"/api/v1/apps?x=1", "paas.example.test"); code != http.StatusPermanentRedirect || !strings.HasPrefix(h.Get("Location"), "https://paas.example.test:") || !strings.HasSuffix(h.Get("Location"), "/api/v1/apps?x=1") {
		t.Errorf("plain HTTP: %d %q, want a redirect to HTTPS", code, h.Get("Location"))
	}
	if code, body, _ := get(plain, httpURL+"/", "web.example.test"); code != 200 || body != "app" {
		t.Errorf("an app: %d %q", code, body)
	}
	// Server-sent events come through as they are written.
	req, _ := http.NewRequest("GET", "https://paas.example.test/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("data: one\n"))
	if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "data: one\n" {
		t.Errorf("stream: %q, %v", line, err)
	}
	resp.Body.Close()
	// With the control plane gone, its names answer 502.
	control.Close()
	if code, _, _ := get(c, "https://paas.example.test/", "paas.example.test"); code != http.StatusBadGateway {
		t.Errorf("control plane down: %d, want 502", code)
	}
}

// On a node where paasd does not run (its socket missing, or left behind by
// a paasd that stopped), the control plane's names go through the relay
// socket; with neither answering, they answer 502.
func TestControlPlaneThroughRelay(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	sock, relaySock := filepath.Join(dir, contract.ControlSocket), filepath.Join(dir, contract.ControlRelaySocket)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close() // the file stays, nothing listens: connection refused
	ln, err := net.Listen("unix", relaySock)
	if err != nil {
		t.Fatal(err)
	}
	relayed := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "relayed %s %s", r.URL.Path, r.Header.Get("X-Forwarded-For"))
	})}
	go relayed.Serve(ln)
	data, _ := json.Marshal(contract.GlobalConfig{Control: &contract.ControlConfig{Hosts: []string{"paas.example.test"}, Certs: []contract.CertPEM{ca.issue(t, time.Now().Add(time.Hour), "paas.example.test")}}})
	p := parseConfig("g1", contract.RoleGlobalConfig, data, nil)
	if p.err != nil {
		t.Fatal(p.err)
	}
	_, _, httpsAddr := tlsRouterWith(t, &fakeSource{table: Table{Global: p.global}}, Options{ControlSocket: sock, ControlRelaySocket: relaySock})
	c := httpsClient(ca.pool, httpsAddr, false)
	get := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://paas.example.test/api/v1/whoami", nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.9") // a client's own: dropped
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 || body != "relayed /api/v1/whoami 127.0.0.1" {
		t.Errorf("through the relay: %d %q", code, body)
	}
	relayed.Close()
	c.CloseIdleConnections()
	if code, _ := get(); code != http.StatusBadGateway {
		t.Errorf("neither socket answers: %d, want 502", code)
	}
}
