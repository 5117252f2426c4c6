package router

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"paas/router/contract"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// testCA issues certificates for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a PEM certificate and key for names.
func (ca *testCA) issue(t testing.TB, notAfter time.Time, names ...string) contract.CertPEM {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	return contract.CertPEM{
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Key:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})),
	}
}

// edgeOf compiles an contract.AppConfig as the ConfigSource does.
func edgeOf(t testing.TB, id string, c contract.AppConfig) *Edge {
	t.Helper()
	data, _ := json.Marshal(c)
	p := parseConfig(id, contract.RoleAppConfig, data, nil)
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.edge
}

func TestHostLookup(t *testing.T) {
	tbl := Table{Routes: []Route{
		{App: "web", Hosts: []string{"web.example.test", "app.example.com", "exact.preview.example.com"}, Backends: backends("10.0.0.1:5000"), Edge: &Edge{Key: "1", Wildcards: []string{"*.docs.example.com"}}},
		{App: "docs", Hosts: []string{"docs.example.test"}, Backends: backends("10.0.0.2:5000"), Edge: &Edge{Key: "2", Wildcards: []string{"*.preview.example.com", "*.docs.example.com"}}},
	}}
	r := newTestRouter(&fakeSource{table: tbl}, Options{Log: discardLog()})
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	rt := r.table.Load()
	for _, tc := range []struct{ host, app string }{
		{"web.example.test", "web"},
		{"app.example.com", "web"},
		{"pr-1.preview.example.com", "docs"}, // wildcard
		{"exact.preview.example.com", "web"}, // an exact name beats a wildcard
		{"a.b.preview.example.com", ""},      // one label only
		{"preview.example.com", ""},          // the wildcard's parent is not covered
		{"x.docs.example.com", "docs"},       // claimed by both: the first app by name keeps it
		{"docs.example.test", "docs"},        // default name
		{"unknown.example.test", ""},         // 404
		{"", ""},
	} {
		got := ""
		if r := rt.lookup(tc.host); r != nil {
			got = r.App
		}
		if got != tc.app {
			t.Errorf("lookup(%q) = %q, want %q", tc.host, got, tc.app)
		}
	}
}

// tlsRouter serves src on HTTP and HTTPS listeners and returns their URLs.
func tlsRouter(t *testing.T, src Source) (r *Router, httpURL, httpsAddr string) {
	t.Helper()
	return tlsRouterWith(t, src, Options{})
}

// tlsRouterWith is tlsRouter with opts (its listeners and timeouts are
// tlsRouter's).
func tlsRouterWith(t *testing.T, src Source, opts Options) (r *Router, httpURL, httpsAddr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := tlsLn.Addr().(*net.TCPAddr).Port
	opts.Log, opts.HTTPSAddr, opts.HTTPSPort = discardLog(), tlsLn.Addr().String(), port
	opts.PollInterval, opts.ShutdownTimeout = 50*time.Millisecond, 5*time.Second
	r = newTestRouter(src, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ServeTLS(ctx, ln, tlsLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	return r, "http://" + ln.Addr().String(), tlsLn.Addr().String()
}

// httpsClient dials addr whatever the URL's host, trusting pool.
func httpsClient(pool *x509.CertPool, addr string, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
		ForceAttemptHTTP2: h2,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestHTTPS(t *testing.T) {
	ca := newTestCA(t)
	var mu sync.Mutex
	var seen []string
	backend := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
		}
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Forwarded-Proto"))
		mu.Unlock()
		fmt.Fprintf(w, "%s %s %s read=%d", r.Host, r.Header.Get("X-Forwarded-Proto"), r.Proto, n)
	}))
	edge := edgeOf(t, "cfg1", contract.AppConfig{App: "web", Domains: []string{"app.example.com", "*.preview.example.com"},
		Certs:        []contract.CertPEM{ca.issue(t, time.Now().Add(time.Hour), "app.example.com", "*.preview.example.com")},
		MaxBodyBytes: 10, ReadTimeoutMS: 200})
	src := &fakeSource{table: Table{
		Routes: []Route{{App: "web", Hosts: []string{"web.example.test", "app.example.com"}, Backends: backends(backend), Edge: edge}},
		Global: &Global{Key: "g1", Challenges: map[string]string{"tok123": "tok123.thumb"}},
	}}
	r, httpURL, httpsAddr := tlsRouter(t, src)
	port := strings.TrimPrefix(httpsAddr, "127.0.0.1:")
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	t.Run("SNI picks the app's certificate, HTTP/2 and HTTP/1.1", func(t *testing.T) {
		for _, h2 := range []bool{true, false} {
			c := httpsClient(ca.pool, httpsAddr, h2)
			for _, host := range []string{"app.example.com", "pr-7.preview.example.com"} {
				got := do(t, c, newRequest(t, "GET", "https://"+host+"/", host, nil))
				want := host + " https HTTP/1.1" // HTTP/1.1 to the app whatever the client speaks
				if got.status != 200 || !strings.HasPrefix(got.body, want) {
					t.Errorf("h2=%v GET https://%s: %d %q, want %q", h2, host, got.status, got.body, want)
				}
			}
		}
		resp, err := httpsClient(ca.pool, httpsAddr, true).Get("https://app.example.com/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("client protocol %s, want HTTP/2", resp.Proto)
		}
	})

	t.Run("no certificate, no handshake", func(t *testing.T) {
		for _, host := range []string{"web.example.test", "unknown.example.org", "a.b.preview.example.com"} {
			_, err := httpsClient(ca.pool, httpsAddr, false).Get("https://" + host + "/")
			if err == nil {
				t.Errorf("GET https://%s succeeded, want a failed handshake", host)
			}
		}
	})

	t.Run("HTTP redirects to HTTPS where a certificate covers the name", func(t *testing.T) {
		got := do(t, plain, newRequest(t, "GET", httpURL+"/a/b?c=d", "app.example.com", nil))
		if want := "https://app.example.com:" + port + "/a/b?c=d"; got.status != http.StatusPermanentRedirect || got.header.Get("Location") != want {
			t.Errorf("got %d Location %q, want 308 %q", got.status, got.header.Get("Location"), want)
		}
		got = do(t, plain, newRequest(t, "GET", httpURL+"/", "web.example.test", nil))
		if got.status != 200 || !strings.Contains(got.body, " http ") {
			t.Errorf("default name over HTTP: %d %q, want it proxied", got.status, got.body)
		}
	})

	t.Run("ACME challenge answered on HTTP for any host", func(t *testing.T) {
		for _, host := range []string{"app.example.com", "not-routed.example.org"} {
			got := do(t, plain, newRequest(t, "GET", httpURL+contract.ACMEChallengePath+"tok123", host, nil))
			if got.status != 200 || got.body != "tok123.thumb" {
				t.Errorf("challenge on %s: %d %q", host, got.status, got.body)
			}
		}
		got := do(t, plain, newRequest(t, "GET", httpURL+contract.ACMEChallengePath+"other", "not-routed.example.org", nil))
		if got.status != 404 {
			t.Errorf("unknown token: %d %q, want 404", got.status, got.body)
		}
	})

	t.Run("body limit and read timeout", func(t *testing.T) {
		c := httpsClient(ca.pool, httpsAddr, false)
		got := do(t, c, newRequest(t, "POST", "https://app.example.com/", "app.example.com", strings.NewReader("0123456789abc")))
		if got.status != http.StatusRequestEntityTooLarge {
			t.Errorf("13-byte body: %d %q, want 413", got.status, got.body)
		}
		// (A request with a body is handed to net/http, which must still
		// know the connection is HTTPS.)
		got = do(t, c, newRequest(t, "POST", "https://app.example.com/", "app.example.com", strings.NewReader("0123456789")))
		if got.status != 200 || got.body != "app.example.com https HTTP/1.1 read=10" {
			t.Errorf("10-byte body: %d %q", got.status, got.body)
		}
		// A chunked body (no Content-Length) is cut at the limit.
		got = do(t, c, newRequest(t, "POST", "https://app.example.com/", "app.example.com", io.MultiReader(strings.NewReader("0123456789"), strings.NewReader("abcdef"))))
		if got.status == 200 && strings.HasSuffix(got.body, "read=16") {
			t.Errorf("chunked 16-byte body went through: %d %q", got.status, got.body)
		}
		got = do(t, c, newRequest(t, "GET", "https://app.example.com/slow", "app.example.com", nil))
		if got.status != http.StatusGatewayTimeout {
			t.Errorf("slow app: %d %q, want 504", got.status, got.body)
		}
	})

	t.Run("a new certificate applies to the next handshake, open connections stay", func(t *testing.T) {
		c := httpsClient(ca.pool, httpsAddr, false)
		var reused []bool
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
		get := func(host string) response {
			req := newRequest(t, "GET", "https://"+host+"/", host, nil)
			return do(t, c, req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		}
		if got := get("app.example.com"); got.status != 200 {
			t.Fatalf("before: %d", got.status)
		}
		ca2 := newTestCA(t)
		edge2 := edgeOf(t, "cfg2", contract.AppConfig{App: "web", Domains: []string{"app.example.com", "new.example.com"}, Certs: []contract.CertPEM{ca2.issue(t, time.Now().Add(time.Hour), "app.example.com", "new.example.com")}})
		src.set(Table{Routes: []Route{{App: "web", Hosts: []string{"web.example.test", "app.example.com", "new.example.com"}, Backends: backends(backend), Edge: edge2}}}, nil)
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := get("app.example.com"); got.status != 200 {
			t.Fatalf("after, on the kept connection: %d", got.status)
		}
		if len(reused) != 2 || !reused[1] {
			t.Errorf("reused = %v, want the open connection kept across the swap", reused)
		}
		// A new connection gets the new certificate (signed by ca2).
		if _, err := httpsClient(ca.pool, httpsAddr, false).Get("https://app.example.com/"); err == nil {
			t.Error("new handshake still trusted the old CA's certificate")
		}
		if resp, err := httpsClient(ca2.pool, httpsAddr, false).Get("https://new.example.com/"); err != nil {
			t.Errorf("new certificate: %v", err)
		} else {
			resp.Body.Close()
		}
	})

	t.Run("an expired certificate is not served and does not redirect", func(t *testing.T) {
		edge3 := edgeOf(t, "cfg3", contract.AppConfig{App: "web", Domains: []string{"app.example.com"}, Certs: []contract.CertPEM{ca.issue(t, time.Now().Add(-time.Minute), "app.example.com")}})
		src.set(Table{Routes: []Route{{App: "web", Hosts: []string{"app.example.com"}, Backends: backends(backend), Edge: edge3}}}, nil)
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := do(t, plain, newRequest(t, "GET", httpURL+"/", "app.example.com", nil)); got.status != 200 {
			t.Errorf("HTTP with an expired certificate: %d, want 200 (no redirect)", got.status)
		}
	})
}

// fakeConfigs is a ConfigAPI over a list of configs.
type fakeConfigs struct {
	mu    sync.Mutex
	cfgs  []swarm.Config
	calls int
}

func (f *fakeConfigs) ConfigList(context.Context, swarm.ConfigListOptions) ([]swarm.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return append([]swarm.Config(nil), f.cfgs...), nil
}

func config(id string, index uint64, installation, role, app string, v any) swarm.Config {
	data, _ := json.Marshal(v)
	c := swarm.Config{ID: id, Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: contract.ConfigName(installation, role, app, data), Labels: contract.ConfigLabels(installation, role, app)}, Data: data}}
	c.Version.Index = index
	return c
}

func TestConfigSource(t *testing.T) {
	ca := newTestCA(t)
	inner := &fakeSource{table: Table{Routes: []Route{
		{App: "web", Hosts: []string{"web.example.test"}, Backends: backends("10.0.0.1:5000", "10.0.0.2:5000")},
		{App: "api", Hosts: []string{"api.example.test"}, Backends: backends("10.0.0.3:5000")},
	}}}
	api := &fakeConfigs{cfgs: []swarm.Config{
		config("old", 1, "inst", contract.RoleAppConfig, "web", contract.AppConfig{App: "web", Domains: []string{"old.example.com"}}),
		config("new", 2, "inst", contract.RoleAppConfig, "web", contract.AppConfig{App: "web", Domains: []string{"app.example.com", "*.preview.example.com"}, Port: 6000,
			Certs: []contract.CertPEM{ca.issue(t, time.Now().Add(time.Hour), "app.example.com")}}),
		config("bad", 3, "inst", contract.RoleAppConfig, "api", "not an object"),
		config("spoof", 4, "inst", contract.RoleAppConfig, "api", contract.AppConfig{App: "web", Domains: []string{"stolen.example.com"}}),
		config("other-inst", 5, "other", contract.RoleAppConfig, "api", contract.AppConfig{App: "api", Domains: []string{"x.example.com"}}),
		config("g", 6, "inst", contract.RoleGlobalConfig, "", contract.GlobalConfig{Domain: "Apps.Example.org", Challenges: map[string]string{"t": "t.k"}}),
	}}
	src := NewConfigSource(inner, api, Options{Installation: "inst", Domain: "example.test", Log: discardLog()})
	got, err := src.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got = got.normalize()
	if len(got.Routes) != 2 {
		t.Fatalf("routes %+v", got.Routes)
	}
	api0, web := got.Routes[0], got.Routes[1]
	if want := []string{"api.apps.example.org"}; strings.Join(api0.Hosts, " ") != strings.Join(want, " ") || api0.Edge != nil {
		t.Errorf("api: hosts %v edge %v, want %v and no edge (bad and spoofed configs ignored)", api0.Hosts, api0.Edge, want)
	}
	if want := "app.example.com web.apps.example.org"; strings.Join(web.Hosts, " ") != want {
		t.Errorf("web hosts %v, want %s (the newest config; the global domain)", web.Hosts, want)
	}
	if want := "10.0.0.1:6000 10.0.0.2:6000"; fmt.Sprint(web.Backends[0].Addr, " ", web.Backends[1].Addr) != want {
		t.Errorf("web backends %v, want port 6000", web.Backends)
	}
	if web.Edge == nil || len(web.Edge.Certs) != 1 || strings.Join(web.Edge.Wildcards, " ") != "*.preview.example.com" {
		t.Errorf("web edge %+v", web.Edge)
	}
	if got.Global == nil || got.Global.Domain != "apps.example.org" || got.Global.Challenges["t"] != "t.k" {
		t.Errorf("global %+v", got.Global)
	}

	// More global domains, and an app whose names are disabled.
	api.mu.Lock()
	api.cfgs = append(api.cfgs,
		config("g2", 7, "inst", contract.RoleGlobalConfig, "", contract.GlobalConfig{Domain: "apps.example.org", MoreDomains: []string{"Other.Example.net", ""}}),
		config("api-off", 8, "inst", contract.RoleAppConfig, "api", contract.AppConfig{App: "api", NoVhost: true, Domains: []string{"api.example.com", "*.api.example.com"}}))
	api.mu.Unlock()
	more, err := src.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	more = more.normalize()
	if api1, web1 := more.Routes[0], more.Routes[1]; len(api1.Hosts) != 0 || len(api1.Edge.Wildcards) != 0 || len(api1.Backends) != 1 ||
		strings.Join(web1.Hosts, " ") != "app.example.com web.apps.example.org web.other.example.net" {
		t.Errorf("api hosts %v wildcards %v backends %v (want none, none, its task); web hosts %v", api1.Hosts, api1.Edge.Wildcards, api1.Backends, web1.Hosts)
	}
	api.mu.Lock()
	api.cfgs = api.cfgs[:len(api.cfgs)-2]
	api.mu.Unlock()

	// The same configs give the same compiled edges: no table swap.
	again, err := src.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(got) {
		t.Error("a second read of unchanged configs is not Equal")
	}
	// A removed config is forgotten.
	api.mu.Lock()
	api.cfgs = api.cfgs[:1]
	api.mu.Unlock()
	third, _ := src.Routes(t.Context())
	if third.Equal(got) {
		t.Error("removing configs changed nothing")
	}
	if len(src.parsed) != 1 {
		t.Errorf("parsed cache holds %d configs, want 1", len(src.parsed))
	}
}

// BenchmarkLookup measures the route lookup with 10, 1,000 and 10,000 apps.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var tbl Table
			hosts := make([]string, 0, 2*n)
			for i := range n {
				app := fmt.Sprintf("app-%d", i)
				tbl.Routes = append(tbl.Routes, Route{App: app, Hosts: []string{app + ".example.test"}, Backends: backends(fmt.Sprintf("10.0.%d.%d:5000", i/250, i%250+1)),
					Edge: &Edge{Key: app, Wildcards: []string{"*." + app + ".example.com"}}})
				hosts = append(hosts, app+".example.test", "pr."+app+".example.com")
			}
			r := newTestRouter(&fakeSource{table: tbl}, Options{Log: discardLog()})
			if err := r.Refresh(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				if _, ok := r.AppFor(hosts[i%len(hosts)]); !ok {
					b.Fatal("not found")
				}
			}
		})
	}
}

// TestUpgradeOverTLS: a protocol upgrade (as WebSocket's) through HTTPS.
func TestUpgradeOverTLS(t *testing.T) {
	ca := newTestCA(t)
	echo := upgradeBackend(t, func(r *http.Request) bool { return r.Header.Get("X-Forwarded-Proto") == "https" })
	edge := edgeOf(t, "ws", contract.AppConfig{App: "ws", Domains: []string{"ws.example.com"}, Certs: []contract.CertPEM{ca.issue(t, time.Now().Add(time.Hour), "ws.example.com")}})
	_, _, httpsAddr := tlsRouter(t, &fakeSource{table: Table{Routes: []Route{{App: "ws", Hosts: []string{"ws.example.com"}, Backends: backends(echo), Edge: edge}}}})
	conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{RootCAs: ca.pool, ServerName: "ws.example.com", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /socket HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("response %d, want 101", resp.StatusCode)
	}
	fmt.Fprint(conn, "hello\n")
	if l, err := br.ReadString('\n'); err != nil || l != "HELLO\n" {
		t.Fatalf("echo = %q, %v", l, err)
	}
}
