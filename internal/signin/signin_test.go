package signin

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"paas/internal/directory/slapdtest"
	"paas/internal/oidctest"
	"paas/internal/paas"
)

func TestSafeReturnTo(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"", "/", true},
		{"/", "/", true},
		{"/apps/myapp?tab=logs#x", "/apps/myapp?tab=logs#x", true},
		{"//evil.example/", "/", false},
		{"///evil.example/", "/", false},
		{"/\\evil.example", "/", false},
		{"\\\\evil.example", "/", false},
		{"https://evil.example/", "/", false},
		{"http:/evil.example", "/", false},
		{"javascript:alert(1)", "/", false},
		{"evil.example", "/", false},
		{"/%2f%2fevil.example", "/", false},
		{"/%5Cevil.example", "/", false},
		{"/\tevil", "/", false},
		{"/a\r\nLocation: https://evil.example", "/", false},
		{"/" + strings.Repeat("a", 3000), "/", false},
	}
	for _, tt := range tests {
		got, ok := SafeReturnTo(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SafeReturnTo(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestOIDC signs in through the real provider with an HTTP client: the
// identity comes from the claims (admin from the groups), the session
// cookie's attributes, the CSRF token, sign-out.
func TestOIDC(t *testing.T) {
	e := newEnv(t, true)
	c := e.client(t)
	code, u, page := e.oidcSignIn(t, c, "/apps/myapp?tab=logs", "alice", alicePassword)
	if code != http.StatusOK || u.Host != strings.TrimPrefix(e.srv.URL, "https://") || u.RequestURI() != "/apps/myapp?tab=logs" {
		t.Fatalf("after sign-in: %d at %s:\n%s", code, u, page)
	}
	if !strings.Contains(page, `<b id="name">alice</b>`) {
		t.Fatalf("landing page does not show alice:\n%s", page)
	}
	srvURL, _ := url.Parse(e.srv.URL)
	var sessionCookie *http.Cookie
	for _, ck := range c.Jar.Cookies(srvURL) {
		if ck.Name == "__Host-paas_session" {
			sessionCookie = ck
		}
	}
	if sessionCookie == nil {
		t.Fatalf("no __Host-paas_session cookie: %v", c.Jar.Cookies(srvURL))
	}
	// Authenticate, as the web server calls it.
	r, _ := http.NewRequest("GET", e.srv.URL+"/", nil)
	r.AddCookie(sessionCookie)
	id, ok, err := e.svc.Authenticate(r)
	if err != nil || !ok || id.Name != "alice" || !id.Admin || id.Source != SourceOIDC || strings.Join(id.Groups, ",") != "admins,team" {
		t.Fatalf("Authenticate = %+v, %v, %v", id, ok, err)
	}
	// A state-changing request needs the session's CSRF token.
	code, _, body := post(t, c, e.srv.URL+"/apps/restart", nil)
	if code != http.StatusForbidden || !e.audit.has("POST /apps/restart", "error", "CSRF") {
		t.Fatalf("POST without CSRF token: %d %s\naudit:\n%s", code, body, e.audit)
	}
	token := formValue(t, page, CSRFField)
	code, _, body = post(t, c, e.srv.URL+"/apps/restart", url.Values{CSRFField: {token}})
	if code != http.StatusOK || !strings.Contains(body, "restarted") {
		t.Fatalf("POST with CSRF token: %d %s", code, body)
	}
	code, _, _ = post(t, c, e.srv.URL+"/apps/restart", url.Values{CSRFField: {token[:len(token)-2] + "AA"}})
	if code != http.StatusForbidden {
		t.Fatalf("POST with a wrong CSRF token: %d, want 403", code)
	}
	// Sign-out without the token is refused; with it, the session ends.
	if code, _, _ := post(t, c, e.srv.URL+PathLogout, nil); code != http.StatusForbidden {
		t.Fatalf("sign-out without CSRF token: %d, want 403", code)
	}
	code, u, page = post(t, c, e.srv.URL+PathLogout, url.Values{CSRFField: {token}})
	if code != http.StatusOK || !strings.Contains(page, "You are signed out") {
		t.Fatalf("sign-out: %d at %s:\n%s", code, u, page)
	}
	if _, ok, _ := e.svc.Authenticate(r); ok {
		t.Fatal("the session's cookie still works after sign-out")
	}
	if !e.audit.has("sign-in", "ok", "") || !e.audit.has("sign-out", "ok", "") {
		t.Fatalf("audit:\n%s", e.audit)
	}
}

// misbehaviors are the provider's bad ID tokens, with what the refusal says.
var misbehaviors = []struct {
	name   string
	m      oidctest.Misbehavior
	detail string
}{
	{"wrong issuer", oidctest.WrongIssuer, "issued by a different provider"},
	{"wrong audience", oidctest.WrongAudience, "audience"},
	{"wrong nonce", oidctest.WrongNonce, "nonce"},
}

// TestOIDCRefused: ID tokens with the wrong issuer, audience or nonce, all
// signed by the provider itself, are refused, recorded, and start no session.
func TestOIDCRefused(t *testing.T) {
	e := newEnv(t, true)
	for _, tt := range misbehaviors {
		t.Run(tt.name, func(t *testing.T) {
			e.provider.SetMisbehavior(tt.m)
			defer e.provider.SetMisbehavior(oidctest.Behave)
			c := e.client(t)
			code, u, page := e.oidcSignIn(t, c, "/", "alice", alicePassword)
			if code != http.StatusBadRequest || !strings.Contains(page, "Sign-in refused") {
				t.Fatalf("%d at %s:\n%s", code, u, page)
			}
			if !e.audit.has("sign-in", "error", tt.detail) {
				t.Fatalf("no refusal about the %s in the audit log:\n%s", tt.detail, e.audit)
			}
			if code, u, _ := get(t, c, e.srv.URL+"/"); !strings.HasPrefix(u.String(), e.provider.Issuer) {
				t.Fatalf("signed in after a refused sign-in: %d at %s", code, u)
			}
		})
	}
	t.Run("state of another browser", func(t *testing.T) {
		c := e.client(t)
		_, u, _ := get(t, c, e.srv.URL+"/")
		other := e.client(t) // has no flow cookie
		code, _, page := post(t, other, e.provider.Issuer+"/login", url.Values{"id": {u.Query().Get("id")}, "username": {"alice"}, "password": {alicePassword}})
		if code != http.StatusBadRequest || !e.audit.has("sign-in", "error", "not this browser's") {
			t.Fatalf("%d:\n%s\naudit:\n%s", code, page, e.audit)
		}
	})
	t.Run("wrong password at the provider", func(t *testing.T) {
		c := e.client(t)
		code, _, _ := e.oidcSignIn(t, c, "/", "alice", "wrong")
		if code != http.StatusUnauthorized {
			t.Fatalf("provider answered %d, want 401", code)
		}
	})
}

// TestPassword signs in with a directory password (no OIDC): the form's
// token, wrong passwords, the limit on failures, an open redirect.
func TestPassword(t *testing.T) {
	e := newEnv(t, false)
	c := e.client(t)
	code, _, page := get(t, c, e.srv.URL+"/auth/login?return_to="+url.QueryEscape("//evil.example/"))
	if code != http.StatusOK || !strings.Contains(page, `id="password"`) {
		t.Fatalf("login page: %d\n%s", code, page)
	}
	if !e.audit.has("sign-in", "error", "not a path of this site") {
		t.Fatalf("open redirect not recorded:\n%s", e.audit)
	}
	form := url.Values{"form_token": {formValue(t, page, "form_token")}, "return_to": {formValue(t, page, "return_to")}, "username": {"alice"}, "password": {"wrong"}}
	if form.Get("return_to") != "/" {
		t.Fatalf("return_to in the form: %q, want /", form.Get("return_to"))
	}
	code, _, page = post(t, c, e.srv.URL+PathLogin, form)
	if code != http.StatusUnauthorized || !strings.Contains(page, "Wrong user name or password") {
		t.Fatalf("wrong password: %d\n%s", code, page)
	}
	// Without the form's token (a form posted from another site): refused.
	noToken := url.Values{"username": {"alice"}, "password": {alicePassword}}
	if code, _, page = post(t, c, e.srv.URL+PathLogin, noToken); code != http.StatusForbidden {
		t.Fatalf("without the form token: %d, want 403", code)
	}
	form.Set("form_token", formValue(t, page, "form_token"))
	form.Set("password", alicePassword)
	code, u, page := post(t, c, e.srv.URL+PathLogin, form)
	if code != http.StatusOK || u.Path != "/" || !strings.Contains(page, `<b id="name">alice</b>`) {
		t.Fatalf("sign-in: %d at %s\n%s", code, u, page)
	}
	if id := e.identity(t, c); !id.Admin || id.Source != SourcePassword || strings.Join(id.Groups, ",") != "admins,team" {
		t.Fatalf("identity %+v", id)
	}
	// Five wrong passwords for bob, then even the right one waits.
	b := e.client(t)
	_, _, page = get(t, b, e.srv.URL+PathLogin)
	for i := 0; i <= maxFailures; i++ {
		pw := "wrong"
		if i == maxFailures {
			pw = bobPassword
		}
		code, _, page = post(t, b, e.srv.URL+PathLogin, url.Values{"form_token": {formValue(t, page, "form_token")}, "username": {"bob"}, "password": {pw}})
	}
	if code != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d, want 429", maxFailures, code)
	}
	e.clock.advance(failureWindow)
	code, _, _ = post(t, b, e.srv.URL+PathLogin, url.Values{"form_token": {formValue(t, page, "form_token")}, "username": {"bob"}, "password": {bobPassword}})
	if code != http.StatusOK {
		t.Fatalf("after the window: %d, want 200", code)
	}
}

// identity is who c's session cookie belongs to.
func (e *env) identity(t *testing.T, c *http.Client) paas.Identity {
	t.Helper()
	r, _ := http.NewRequest("GET", e.srv.URL+"/", nil)
	srvURL, _ := url.Parse(e.srv.URL)
	for _, ck := range c.Jar.Cookies(srvURL) {
		r.AddCookie(ck)
	}
	id, ok, err := e.svc.Authenticate(r)
	if !ok || err != nil {
		t.Fatalf("not signed in: %v", err)
	}
	return id
}

// TestLinkAndSession: a link works once within 60 s; a session ends at its
// TTL; a tampered cookie is refused.
func TestLinkAndSession(t *testing.T) {
	e := newEnv(t, false)
	admin := paas.Identity{Name: "root", Admin: true, Source: "admin-keys"}
	link, expires, err := e.svc.IssueLink(admin)
	if err != nil || time.Until(expires) > LinkTTL+time.Second || !strings.HasPrefix(link, e.srv.URL+PathLink+"?token=") {
		t.Fatalf("IssueLink = %s, %s, %v", link, expires, err)
	}
	c := e.client(t)
	code, _, page := get(t, c, link)
	if code != http.StatusOK || !strings.Contains(page, "Sign in as root") {
		t.Fatalf("link page: %d\n%s", code, page)
	}
	form := url.Values{"form_token": {formValue(t, page, "form_token")}, "token": {formValue(t, page, "token")}}
	if code, _, _ := post(t, c, e.srv.URL+PathLink, url.Values{"token": form["token"]}); code != http.StatusForbidden {
		t.Fatalf("link form without its token: %d, want 403", code)
	}
	code, _, page = post(t, c, e.srv.URL+PathLink, form)
	if code != http.StatusOK || !strings.Contains(page, `<b id="name">root</b>`) {
		t.Fatalf("link sign-in: %d\n%s", code, page)
	}
	if id := e.identity(t, c); !id.Admin || id.Source != SourceLink+"/admin-keys" {
		t.Fatalf("identity %+v", id)
	}
	// Replayed: refused, whether opened or posted.
	other := e.client(t)
	if code, _, _ := get(t, other, link); code != http.StatusGone {
		t.Fatalf("replayed link page: %d, want 410", code)
	}
	if !e.audit.has("sign-in", "error", "replayed") {
		t.Fatalf("replay not recorded:\n%s", e.audit)
	}
	// Expired: refused.
	link2, _, _ := e.svc.IssueLink(admin)
	e.clock.advance(LinkTTL)
	if code, _, _ := get(t, other, link2); code != http.StatusGone || !e.audit.has("sign-in", "error", "expired") {
		t.Fatalf("expired link: %d\n%s", code, e.audit)
	}
	// A tampered cookie: refused and recorded.
	srvURL, _ := url.Parse(e.srv.URL)
	ck := c.Jar.Cookies(srvURL)[0]
	raw, mac, _ := strings.Cut(ck.Value, ".")
	tampered := &http.Cookie{Name: ck.Name, Value: raw[:len(raw)-1] + flip(raw[len(raw)-1]) + "." + mac}
	r, _ := http.NewRequest("GET", e.srv.URL+"/", nil)
	r.AddCookie(tampered)
	if _, ok, _ := e.svc.Authenticate(r); ok || !e.audit.has("session", "error", "tampered") {
		t.Fatalf("tampered cookie accepted (%v) or not recorded:\n%s", ok, e.audit)
	}
	// The same bytes spelled otherwise (the last character's unused low
	// bits set): refused too, not taken for the cookie that was set.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, raw[len(raw)-1])
	for i := last &^ 3; i <= last|3; i++ {
		if i == last {
			continue
		}
		r, _ := http.NewRequest("GET", e.srv.URL+"/", nil)
		r.AddCookie(&http.Cookie{Name: ck.Name, Value: raw[:len(raw)-1] + alphabet[i:i+1] + "." + mac})
		if _, ok, _ := e.svc.Authenticate(r); ok {
			t.Fatalf("cookie with %q for %q as its last character accepted", alphabet[i], raw[len(raw)-1])
		}
	}
	// The session ends at its TTL.
	e.clock.advance(DefaultSessionTTL)
	if code, u, _ := get(t, c, e.srv.URL+"/"); u.Path != PathLogin || !e.audit.has("session", "error", "expired") {
		t.Fatalf("after the TTL: %d at %s\n%s", code, u, e.audit)
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

func TestSecureHeaders(t *testing.T) {
	e := newEnv(t, false)
	resp, err := e.client(t).Get(e.srv.URL + PathLogin)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for h, want := range map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy, "X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-paas_signin" {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
		t.Fatalf("form cookie %+v", session)
	}
}

// FuzzSafeReturnTo: a return_to it accepts, resolved as a browser resolves
// a Location header against the page, stays on the page's host.
func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/", "/apps/x?y=1#z", "//evil", "/\\evil", "https://evil/", "/%2fevil", "/.//evil", "/a/../..//evil", "\t//evil", "/#//evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://paas.example.com/auth/login")
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := SafeReturnTo(v)
		if !ok {
			if got != "/" {
				t.Fatalf("refused %q but returned %q", v, got)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted %q that does not parse: %v", v, err)
		}
		if r := base.ResolveReference(u); r.Host != base.Host || r.Scheme != base.Scheme {
			t.Fatalf("accepted %q, which leads to %s", v, r)
		}
		if strings.ContainsAny(got, "\\\t\r\n") {
			t.Fatalf("accepted %q with a character browsers strip or turn into /", v)
		}
	})
}

// TestRecheck: a password session follows the directory: a user removed
// from the admin group loses it within RecheckEvery, one removed from the
// directory loses the session.
func TestRecheck(t *testing.T) {
	e := newEnv(t, false)
	c := e.client(t)
	_, _, page := get(t, c, e.srv.URL+PathLogin)
	post(t, c, e.srv.URL+PathLogin, url.Values{"form_token": {formValue(t, page, "form_token")}, "username": {"alice"}, "password": {alicePassword}})
	if id := e.identity(t, c); !id.Admin {
		t.Fatalf("alice is not admin: %+v", id)
	}
	if err := e.slapd.Modify("dn: cn=admins," + slapdtest.GroupsDN + "\nchangetype: modify\ndelete: member\nmember: uid=alice," + slapdtest.PeopleDN + "\n-\nadd: member\nmember: uid=bob," + slapdtest.PeopleDN + "\n\n"); err != nil {
		t.Fatal(err)
	}
	if id := e.identity(t, c); !id.Admin {
		t.Fatal("rechecked before RecheckEvery")
	}
	e.clock.advance(DefaultRecheckEvery)
	if id := e.identity(t, c); id.Admin || strings.Join(id.Groups, ",") != "team" {
		t.Fatalf("after leaving admins: %+v", id)
	}
	if err := e.slapd.Modify("dn: uid=alice," + slapdtest.PeopleDN + "\nchangetype: delete\n\n"); err != nil {
		t.Fatal(err)
	}
	e.clock.advance(DefaultRecheckEvery)
	if code, u, _ := get(t, c, e.srv.URL+"/"); u.Path != PathLogin || !e.audit.has("session", "error", "no longer in the directory") {
		t.Fatalf("after leaving the directory: %d at %s\n%s", code, u, e.audit)
	}
}
