package commands

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
)

func (f *fakeRouting) Domains() []string {
	if f.globals != nil {
		if ds := f.globals(); len(ds) > 0 {
			return ds
		}
	}
	return []string{f.Domain()}
}

// fakeRoutingStore keeps routing settings in memory, refusing a domain
// another app has, as the store does.
type fakeRoutingStore struct {
	apps *fakeStore

	mu      sync.Mutex
	routing map[string]*paas.Routing
	globals []string
}

var _ RoutingStore = (*fakeRoutingStore)(nil)

func copyRouting(r *paas.Routing) *paas.Routing {
	c := *r
	c.Domains = slices.Clone(r.Domains)
	c.Ports = slices.Clone(r.Ports)
	return &c
}

func (s *fakeRoutingStore) Routing(app string) (*paas.Routing, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.routing[app]; ok {
		return copyRouting(r), nil
	}
	return &paas.Routing{}, nil
}

func (s *fakeRoutingStore) UpdateRouting(app string, fn func(*paas.Routing) error) (*paas.Routing, error) {
	if _, err := s.apps.App(app); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &paas.Routing{}
	if cur, ok := s.routing[app]; ok {
		r = copyRouting(cur)
	}
	if err := fn(r); err != nil {
		return nil, err
	}
	for other, o := range s.routing {
		for _, d := range r.Domains {
			if other != app && slices.Contains(o.Domains, d) {
				return nil, fmt.Errorf("%w: %s", paas.ErrDomainTaken, d)
			}
		}
	}
	s.routing[app] = r
	return copyRouting(r), nil
}

func (s *fakeRoutingStore) SetGlobalDomain(d string) error { return s.SetGlobalDomains([]string{d}) }

func (s *fakeRoutingStore) SetGlobalDomains(ds []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.globals = slices.Clone(ds)
	return nil
}

func (s *fakeRoutingStore) globalDomains() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.globals)
}

// newRoutingEnv is newEnv with the routing commands: alice's alpha and
// bob's bravo; bravo has the domain bravo.example.com.
func newRoutingEnv(t *testing.T) (*env, *fakeRoutingStore, *fakeRouting) {
	t.Helper()
	e := newEnv(t)
	rs := &fakeRoutingStore{apps: e.store, routing: map[string]*paas.Routing{"bravo": {Domains: []string{"bravo.example.com"}}}}
	rt := &fakeRouting{globals: rs.globalDomains}
	p := &Platform{
		Store: e.store, Pipeline: e.pipeline, Runtime: e.runtime, Repos: e.repos, Images: e.images,
		AppURL:   func(app string) string { return "http://" + app + ".example.test" },
		Releases: e.releases, OneOffs: e.releases, Routing: rt, RoutingStore: rs,
	}
	e.d = NewDispatcher(e.store, "1.2.3", p.Builtins())
	return e, rs, rt
}

// testCert returns a PEM certificate for names, signed by its own key, and
// the key.
func testCert(t *testing.T, names ...string) (string, string) {
	t.Helper()
	c, err := selfSigned(names[0], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c.CertPEM, c.KeyPEM
}

func tarOf(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		h := &tar.Header{Name: files[i], Mode: 0o600, Size: int64(len(files[i+1])), Typeflag: tar.TypeReg}
		if strings.HasPrefix(files[i+1], "->") {
			h = &tar.Header{Name: files[i], Typeflag: tar.TypeSymlink, Linkname: files[i+1][2:]}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(files[i+1]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestRoutingCommands(t *testing.T) {
	crt, key := testCert(t, "app.example.com")
	_, otherKey := testCert(t, "app.example.com")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, "server.crt", crt, "server.key", key))
	zw.Close()
	tests := []struct {
		name     string
		id       paas.Identity
		stdin    string
		args     []string
		wantCode int
		wantOut  []string // regular expressions
		wantErr  string
		check    func(t *testing.T, rs *fakeRoutingStore)
	}{
		// ports
		{name: "ports:add https", id: alice, args: []string{"ports:add", "alpha", "https:443:5000"}, wantOut: []string{`Adding port mappings to alpha: https:443:5000`},
			check: func(t *testing.T, rs *fakeRoutingStore) {
				wantPorts(t, rs, "alpha", "http:8080:5000 https:8443:5000 https:443:5000")
			}},
		{name: "ports:add an existing mapping", id: alice, args: []string{"ports:add", "alpha", "http:8080:5000"}, wantOut: []string{`Skipping http:8080:5000: already mapped`},
			check: func(t *testing.T, rs *fakeRoutingStore) { wantPorts(t, rs, "alpha", "") }},
		{name: "ports:add another host port", id: alice, args: []string{"ports:add", "alpha", "http:8081:5000"}, wantCode: ExitError,
			wantErr: `the router listens for http on port 8080 (which http:80 also names), and apps are served on the router's ports only`},
		{name: "ports:add another container port", id: alice, args: []string{"ports:add", "alpha", "http:80:6000"}, wantCode: ExitError, wantErr: "same container port"},
		{name: "ports:add twice in one", id: alice, args: []string{"ports:add", "alpha", "http:80:5000", "http:80:5000"}, wantCode: ExitError, wantErr: "http:80 is mapped twice"},
		{name: "ports:add bad", id: alice, args: []string{"ports:add", "alpha", "tcp:80:5000"}, wantCode: ExitError, wantErr: "the scheme is http or https"},
		{name: "ports:add without a mapping", id: alice, args: []string{"ports:add", "alpha"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "ports:remove with none set", id: alice, args: []string{"ports:remove", "alpha", "80"}, wantCode: ExitError, wantErr: "alpha has no port mappings set: its requests go to http:8080:5000 https:8443:5000"},
		{name: "ports:list", id: alice, args: []string{"ports:list", "alpha"}, wantOut: []string{`-----> Port mappings for alpha\n`, `\nhttp +8080 +5000\n`, `\nhttps +8443 +5000\n`}},
		{name: "ports:report json flag", id: alice, args: []string{"ports:report", "alpha", "--ports-map-detected-json"}, wantOut: []string{`^\[\{"scheme":"http","host_port":8080,"container_port":5000\},\{"scheme":"https","host_port":8443,"container_port":5000\}\]\n$`}},
		{name: "ports:report json flag, none set", id: alice, args: []string{"ports:report", "alpha", "--ports-map-json"}, wantOut: []string{`^\[\]\n$`}},
		{name: "ports:report single value", id: alice, args: []string{"ports:report", "alpha", "--ports-map-detected"}, wantOut: []string{`^http:8080:5000 https:8443:5000\n$`}},

		// certs
		{name: "certs:add tar", id: alice, stdin: string(tarOf(t, "x/server.crt", crt, "x/server.key", key)), args: []string{"certs:add", "alpha"}, wantOut: []string{`Added certificate for app.example.com to alpha`, `Not covered by this certificate \(served over HTTP only\): alpha.paas.test`},
			check: func(t *testing.T, rs *fakeRoutingStore) { wantCert(t, rs, "alpha", "app.example.com") }},
		{name: "certs:add tar with odd names, a folder and a link", id: alice, stdin: string(tarOf(t, "key.pem", key, "README", "hello", "link", "->/etc/passwd", "mycert", crt)), args: []string{"certs:add", "alpha"},
			check: func(t *testing.T, rs *fakeRoutingStore) { wantCert(t, rs, "alpha", "app.example.com") }},
		{name: "certs:add gzipped tar", id: alice, stdin: gz.String(), args: []string{"certs:add", "alpha"},
			check: func(t *testing.T, rs *fakeRoutingStore) { wantCert(t, rs, "alpha", "app.example.com") }},
		{name: "certs:add PEM", id: alice, stdin: crt + key, args: []string{"certs:add", "alpha"},
			check: func(t *testing.T, rs *fakeRoutingStore) { wantCert(t, rs, "alpha", "app.example.com") }},
		{name: "certs:add tar of a mismatched key", id: alice, stdin: string(tarOf(t, "server.crt", crt, "server.key", otherKey)), args: []string{"certs:add", "alpha"}, wantCode: ExitError,
			wantErr: "the certificate does not match the private key; nothing changed", check: func(t *testing.T, rs *fakeRoutingStore) { wantCert(t, rs, "alpha", "") }},
		{name: "certs:add tar without PEM", id: alice, stdin: string(tarOf(t, "server.crt", "nope")), args: []string{"certs:add", "alpha"}, wantCode: ExitError, wantErr: "holds no PEM certificate or key"},
		{name: "certs:add tar without key", id: alice, stdin: string(tarOf(t, "server.crt", crt)), args: []string{"certs:add", "alpha"}, wantCode: ExitError, wantErr: "no PRIVATE KEY block found"},
		{name: "certs:add CRT KEY files", id: alice, args: []string{"certs:add", "alpha", "server.crt", "server.key"}, wantCode: ExitError, wantErr: "server.crt server.key are files on your machine, which paas cannot open"},
		{name: "certs:add nothing", id: alice, args: []string{"certs:add", "alpha"}, wantCode: ExitError, wantErr: "no certificate on stdin"},
		{name: "certs:add too much", id: alice, stdin: strings.Repeat("x", maxCertInput+1), args: []string{"certs:add", "alpha"}, wantCode: ExitError, wantErr: "more than 256 KB on stdin"},
		{name: "certs:generate", id: alice, args: []string{"certs:generate", "alpha", "Alpha.Example.org"}, wantOut: []string{`Generated a self-signed certificate for alpha.example.org`, `Not covered by this certificate \(served over HTTP only\): alpha.paas.test\n`},
			check: func(t *testing.T, rs *fakeRoutingStore) {
				wantCert(t, rs, "alpha", "alpha.example.org")
				wantDomains(t, rs, "alpha", "alpha.example.org")
			}},
		{name: "certs:generate for the default name", id: alice, args: []string{"certs:generate", "alpha", "alpha.paas.test"},
			check: func(t *testing.T, rs *fakeRoutingStore) {
				wantCert(t, rs, "alpha", "alpha.paas.test")
				wantDomains(t, rs, "alpha", "")
			}},
		{name: "certs:generate for another app's domain", id: alice, args: []string{"certs:generate", "alpha", "bravo.example.com"}, wantCode: ExitError, wantErr: "domain already used by another app: bravo.example.com; nothing changed",
			check: func(t *testing.T, rs *fakeRoutingStore) { wantCert(t, rs, "alpha", "") }},
		{name: "certs:generate bad domain", id: alice, args: []string{"certs:generate", "alpha", "not_a_domain"}, wantCode: ExitError, wantErr: "invalid domain"},
		{name: "certs:generate two domains", id: alice, args: []string{"certs:generate", "alpha", "a.example.org", "b.example.org"}, wantCode: ExitError, wantErr: "one domain"},
		{name: "certs:show without certificate", id: alice, args: []string{"certs:show", "alpha"}, wantCode: ExitError, wantErr: "alpha has no certificate"},
		{name: "certs:show key", id: alice, args: []string{"certs:show", "alpha", "key"}, wantCode: ExitError, wantErr: "the private key is never shown"},
		{name: "certs:show bad part", id: alice, args: []string{"certs:show", "alpha", "csr"}, wantCode: ExitError, wantErr: `unknown part "csr"`},

		// domains
		{name: "domains:add skips what the app has", id: bob, args: []string{"domains:add", "bravo", "bravo.example.com", "new.example.com", "bravo.paas.test"},
			wantOut: []string{`Skipping: bravo.example.com already added to bravo\n`, `Added new.example.com to bravo\n`, `Skipping: bravo.paas.test already added to bravo\n`},
			check: func(t *testing.T, rs *fakeRoutingStore) {
				wantDomains(t, rs, "bravo", "bravo.example.com new.example.com")
			}},
		{name: "domains:add nothing new", id: bob, args: []string{"domains:add", "bravo", "BRAVO.example.com."}, wantOut: []string{`^-----> Skipping: bravo.example.com already added to bravo\n$`}},
		{name: "domains:add another app's", id: alice, args: []string{"domains:add", "alpha", "bravo.example.com"}, wantCode: ExitError, wantErr: "domain already used by another app"},
		{name: "domains:disable", id: bob, args: []string{"domains:disable", "bravo"}, wantOut: []string{`Domains of bravo disabled`},
			check: func(t *testing.T, rs *fakeRoutingStore) {
				if r, _ := rs.Routing("bravo"); !r.DomainsDisabled || len(r.Domains) != 1 {
					t.Errorf("routing %+v, want disabled with its domain kept", r)
				}
			}},
		{name: "domains:enable when enabled", id: bob, args: []string{"domains:enable", "bravo"}, wantOut: []string{`Domains of bravo are already enabled`}},
		{name: "domains:report --global", id: alice, args: []string{"domains:report", "--global"}, wantOut: []string{`=====> global domains information\n`, `Domains global vhosts: +paas.test\n`}},
		{name: "domains:report --global single value", id: alice, args: []string{"domains:report", "--global", "--domains-global-vhosts"}, wantOut: []string{`^paas.test\n$`}},
		{name: "domains:report app flag", id: bob, args: []string{"domains:report", "bravo", "--domains-app-vhosts"}, wantOut: []string{`^bravo.paas.test bravo.example.com\n$`}},
		{name: "domains:report json", id: bob, args: []string{"domains:report", "bravo", "--format", "json"}, wantOut: []string{`"domains-app-enabled":"true"`}},
		{name: "domains:report of another user's app", id: alice, args: []string{"domains:report", "bravo"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
		{name: "domains:report without app", id: alice, args: []string{"domains:report"}, wantCode: ExitError, wantErr: "please specify an app name, or --global"},
		{name: "domains:report app and --global", id: alice, args: []string{"domains:report", "alpha", "--global"}, wantCode: ExitError, wantErr: "not both"},
		{name: "domains:add-global", id: root, args: []string{"domains:add-global", "Apps.Example.org", "paas.test"}, wantOut: []string{`Skipping paas.test: already added\n`, `Added apps.example.org\n`},
			check: func(t *testing.T, rs *fakeRoutingStore) { wantGlobals(t, rs, "paas.test apps.example.org") }},
		{name: "domains:add-global by a user", id: alice, args: []string{"domains:add-global", "apps.example.org"}, wantCode: ExitError, wantErr: "administrators only"},
		{name: "domains:add-global wildcard", id: root, args: []string{"domains:add-global", "*.example.org"}, wantCode: ExitError, wantErr: "cannot be a wildcard"},
		{name: "domains:set-global several", id: root, args: []string{"domains:set-global", "a.example.org", "b.example.org"}, wantOut: []string{`Set global domains to a.example.org b.example.org`},
			check: func(t *testing.T, rs *fakeRoutingStore) { wantGlobals(t, rs, "a.example.org b.example.org") }},
		{name: "domains:remove-global the last one", id: root, args: []string{"domains:remove-global", "paas.test"}, wantCode: ExitError, wantErr: "no global domain"},
		{name: "domains:remove-global unknown", id: root, args: []string{"domains:remove-global", "x.example.org"}, wantCode: ExitError, wantErr: "x.example.org is not a global domain (they are paas.test); nothing changed"},
		{name: "domains:clear-global", id: root, args: []string{"domains:clear-global"}, wantOut: []string{`Cleared the global domains: apps are served at APP.paas.test`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, rs, _ := newRoutingEnv(t)
			code, out, errOut := e.run(t, tc.id, tc.stdin, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("stdout does not match %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errOut)
			}
			if strings.Contains(out, "PRIVATE KEY") {
				t.Errorf("a private key printed:\n%s", out)
			}
			if tc.check != nil {
				tc.check(t, rs)
			}
		})
	}
}

func wantPorts(t *testing.T, rs *fakeRoutingStore, app, want string) {
	t.Helper()
	r, _ := rs.Routing(app)
	if got := portList(r.Ports); got != want {
		t.Errorf("%s ports %q, want %q", app, got, want)
	}
}

func wantCert(t *testing.T, rs *fakeRoutingStore, app, name string) {
	t.Helper()
	r, _ := rs.Routing(app)
	switch {
	case name == "" && r.Cert != nil:
		t.Errorf("%s has a certificate for %v", app, r.Cert.Names)
	case name != "" && (r.Cert == nil || !slices.Equal(r.Cert.Names, []string{name})):
		t.Errorf("%s certificate %+v, want one for %s", app, r.Cert, name)
	}
}

func wantDomains(t *testing.T, rs *fakeRoutingStore, app, want string) {
	t.Helper()
	if r, _ := rs.Routing(app); strings.Join(r.Domains, " ") != want {
		t.Errorf("%s domains %q, want %q", app, r.Domains, want)
	}
}

func wantGlobals(t *testing.T, rs *fakeRoutingStore, want string) {
	t.Helper()
	if got := strings.Join(rs.globalDomains(), " "); got != want {
		t.Errorf("global domains %q, want %q", got, want)
	}
}

// A sequence: ports set, added, removed by host port and exactly; domains
// disabled then re-enabled by domains:add; certs:show prints the chain.
func TestRoutingSequences(t *testing.T) {
	e, rs, rt := newRoutingEnv(t)
	e.runIn(t, alice, "", ExitOK, "ports:set", "alpha", "http:80:5000")
	e.runIn(t, alice, "", ExitOK, "ports:add", "alpha", "https:443:5000")
	wantPorts(t, rs, "alpha", "http:80:5000 https:443:5000")
	e.runIn(t, alice, "", ExitError, "ports:remove", "alpha", "http:81")
	e.runIn(t, alice, "", ExitError, "ports:remove", "alpha", "443", "80:5000")
	wantPorts(t, rs, "alpha", "http:80:5000 https:443:5000")
	out, _ := e.runIn(t, alice, "", ExitOK, "ports:remove", "alpha", "443")
	if !strings.Contains(out, "Removing port mappings from alpha: https:443:5000") {
		t.Errorf("ports:remove said %q", out)
	}
	e.runIn(t, alice, "", ExitOK, "ports:remove", "alpha", "http:80:5000")
	wantPorts(t, rs, "alpha", "")
	if n := len(rt.published); n != 4 {
		t.Errorf("published %d times, want 4 (once per change)", n)
	}

	e.runIn(t, bob, "", ExitOK, "domains:disable", "bravo")
	out, _ = e.runIn(t, bob, "", ExitOK, "domains:report", "bravo")
	if !regexp.MustCompile(`Domains app enabled: +false\n +Domains app vhosts: *\n`).MatchString(out) {
		t.Errorf("report of a disabled app:\n%s", out)
	}
	out, _ = e.runIn(t, bob, "", ExitOK, "domains:add", "bravo", "bravo.example.com")
	if !strings.Contains(out, "Domains of bravo enabled again") {
		t.Errorf("domains:add of a disabled app said %q", out)
	}
	if r, _ := rs.Routing("bravo"); r.DomainsDisabled {
		t.Error("domains:add left the domains disabled")
	}

	// Global domains: a name under any of them is another app's default.
	e.runIn(t, root, "", ExitOK, "domains:add-global", "apps.example.org")
	_, errOut := e.runIn(t, alice, "", ExitError, "domains:add", "alpha", "bravo.apps.example.org")
	if !strings.Contains(errOut, "NAME.apps.example.org are the apps' default names") {
		t.Errorf("stderr %q", errOut)
	}
	out, _ = e.runIn(t, bob, "", ExitOK, "domains:report", "bravo", "--domains-app-vhosts")
	if out != "bravo.paas.test bravo.apps.example.org bravo.example.com\n" {
		t.Errorf("vhosts %q", out)
	}
	e.runIn(t, root, "", ExitOK, "domains:remove-global", "paas.test")
	wantGlobals(t, rs, "apps.example.org")

	e.runIn(t, alice, "", ExitOK, "certs:generate", "alpha", "alpha.example.org")
	out, _ = e.runIn(t, alice, "", ExitOK, "certs:show", "alpha")
	block, rest := pem.Decode([]byte(out))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("certs:show printed %q", out)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !slices.Equal(c.DNSNames, []string{"alpha.example.org"}) || c.NotAfter.Before(time.Now().Add(300*24*time.Hour)) {
		t.Errorf("certificate %v %v, err %v", c.DNSNames, c.NotAfter, err)
	}
	r, _ := rs.Routing("alpha")
	if _, err := tls.X509KeyPair([]byte(r.Cert.CertPEM), []byte(r.Cert.KeyPEM)); err != nil {
		t.Errorf("the stored pair does not load: %v", err)
	}
	out, _ = e.runIn(t, alice, "", ExitOK, "certs:report", "alpha", "--format", "json")
	var rep map[string]string
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep["ssl-hostnames"] != "alpha.example.org" || rep["ssl-verified"] != "self signed" {
		t.Errorf("certs:report %v (%v)", rep, err)
	}
	if out, _ := e.runIn(t, alice, "", ExitOK, "certs:report", "alpha", "--ssl-enabled"); out != "true\n" {
		t.Errorf("--ssl-enabled %q", out)
	}
}
