package signin

import (
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"paas/internal/directory"
	"paas/internal/directory/slapdtest"
	"paas/internal/oidctest"
	"paas/internal/paas"
)

// Authenticator is the web server's interface (internal/web); the Service
// must satisfy it.
type Authenticator interface {
	Authenticate(r *http.Request) (id paas.Identity, ok bool, err error)
}

var _ Authenticator = (*Service)(nil)

// The users of the test directory.
const (
	alicePassword = "alice-secret"
	bobPassword   = "bob-secret"
)

// audit keeps the events the Service records.
type audit struct {
	mu     sync.Mutex
	events []paas.Event
}

func (a *audit) Record(e *paas.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, *e)
}

// has reports whether an event of action with result holds detail.
func (a *audit) has(action, result, detail string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.events {
		if e.Action == action && e.Result == result && strings.Contains(e.Detail, detail) {
			return true
		}
	}
	return false
}

func (a *audit) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b strings.Builder
	for _, e := range a.events {
		fmt.Fprintf(&b, "%s %s %s %s: %s\n", e.Actor, e.Source, e.Action, e.Result, e.Detail)
	}
	return b.String()
}

// clock is a test clock that starts now and moves only when told.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// env is a test installation: slapd with alice (groups team and admins)
// and bob, the OpenID provider checking them against it, and a TLS server
// with the sign-in at /auth/ and, at /, a page showing who is signed in
// (what the dashboard does with Authenticate and CSRFToken).
type env struct {
	slapd    *slapdtest.Server
	provider *oidctest.Provider
	srv      *httptest.Server
	svc      *Service
	audit    *audit
	clock    *clock
}

// newEnv starts everything; withOIDC false signs in with directory passwords.
func newEnv(t *testing.T, withOIDC bool) *env {
	t.Helper()
	slapdtest.Require(t)
	e := &env{audit: &audit{}, clock: &clock{}}
	var err error
	e.slapd, err = slapdtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.slapd.Stop)
	if err := e.slapd.Modify(slapdtest.UserLDIF("alice") + slapdtest.UserLDIF("bob") +
		slapdtest.GroupLDIF("team", "alice") + slapdtest.GroupLDIF("admins", "alice") +
		slapdtest.PasswordLDIF("alice", alicePassword) + slapdtest.PasswordLDIF("bob", bobPassword)); err != nil {
		t.Fatal(err)
	}
	var handler atomic.Value
	e.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	cfg := Config{
		BaseURL: e.srv.URL, Key: []byte(strings.Repeat("k", 32)), Audit: e.audit, Now: e.clock.now,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	if withOIDC {
		e.provider, err = oidctest.Start(oidctest.Options{
			ClientID: "paas", ClientSecret: "paas-client-secret", RedirectURIs: []string{e.srv.URL + "/auth/callback"},
			LDAPURL: e.slapd.URL, PeopleDN: slapdtest.PeopleDN, GroupsDN: slapdtest.GroupsDN,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.provider.Close() })
		cfg.OIDC = &OIDCConfig{Issuer: e.provider.Issuer, ClientID: "paas", ClientSecret: "paas-client-secret", AdminGroup: "admins"}
	} else {
		dir, err := directory.New(directory.Config{
			URL: e.slapd.URL, BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword,
			BaseDN: slapdtest.Suffix, UserFilter: "(objectClass=inetOrgPerson)", AdminGroup: "cn=admins," + slapdtest.GroupsDN,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dir.Close() })
		cfg.Directory = dir
	}
	e.svc, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/auth/", e.svc)
	mux.HandleFunc("POST /apps/restart", func(w http.ResponseWriter, r *http.Request) {
		if _, ok, _ := e.svc.Authenticate(r); !ok {
			http.Error(w, "sign in", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "restarted")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		id, ok, err := e.svc.Authenticate(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !ok {
			http.Redirect(w, r, PathLogin+"?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		SecureHeaders(w.Header())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>paas</title><p>Dashboard of <b id="name">%s</b> at <span id="path">%s</span></p>
<form method="post" action="/auth/logout"><input type="hidden" name="csrf_token" value="%s"><button id="signout">Sign out</button></form>`,
			html.EscapeString(id.Name), html.EscapeString(r.URL.RequestURI()), html.EscapeString(e.svc.CSRFToken(r)))
	})
	// As the web server will: every state-changing request checked.
	handler.Store(e.svc.RequireCSRF(mux))
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is an HTTP client of the test server and the provider, with its
// own cookies.
func (e *env) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := e.srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, Timeout: 20 * time.Second}
}

// get fetches u and returns the status, the final URL and the body.
func get(t *testing.T, c *http.Client, u string) (int, *url.URL, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return readResp(t, resp)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, *url.URL, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return readResp(t, resp)
}

func readResp(t *testing.T, resp *http.Response) (int, *url.URL, string) {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Request.URL, b.String()
}

// formValue returns the value of the hidden input name in page.
func formValue(t *testing.T, page, name string) string {
	t.Helper()
	marker := `name="` + name + `" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("no %s in the page:\n%s", name, page)
	}
	rest := page[i+len(marker):]
	return html.UnescapeString(rest[:strings.IndexByte(rest, '"')])
}

// oidcSignIn signs c in as user through the provider's login page, starting
// at path of the test server, and returns the last answer.
func (e *env) oidcSignIn(t *testing.T, c *http.Client, path, user, password string) (int, *url.URL, string) {
	t.Helper()
	code, u, page := get(t, c, e.srv.URL+path)
	if code != http.StatusOK || !strings.HasPrefix(u.String(), e.provider.Issuer+"/login") {
		t.Fatalf("GET %s: %d at %s, want the provider's login page:\n%s", path, code, u, page)
	}
	return post(t, c, e.provider.Issuer+"/login", url.Values{"id": {u.Query().Get("id")}, "username": {user}, "password": {password}})
}
