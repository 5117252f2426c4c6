package signin

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"paas/internal/browsertest"
	"paas/internal/oidctest"
	"paas/internal/paas"
)

// browser starts a headless chromium of its own in a network namespace of
// its own (internal/browsertest; Docker's interfaces coming and going in
// other tests would otherwise fail its page loads with ERR_NETWORK_CHANGED)
// where the ports of urls reach the host's, and returns a tab's context. It
// fails the test when chromium is missing and CI=true (scripts/install.sh
// installs it), and skips otherwise.
func browser(t *testing.T, urls ...string) context.Context {
	t.Helper()
	if _, err := browsertest.Exe(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	var ports []string
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, u.Port())
	}
	ctx, stop, err := browsertest.Start(ports)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ctx
}

// run runs steps in the tab with a deadline.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v (at %s)\n%s", what, err, value(t, ctx, chromedp.Location()), value(t, ctx, chromedp.OuterHTML(chromedp.CSS("html"))))
	}
}

// value runs one action that returns a string, "" when it fails.
func value(t *testing.T, ctx context.Context, a chromedp.Action[string]) string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return v
}

// cookie returns the browser's cookie name for the test server.
func cookie(t *testing.T, ctx context.Context, e *env, name string) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{e.srv.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// providerLogin fills in the provider's login page, which the tab shows.
func providerLogin(t *testing.T, ctx context.Context, e *env, user, password string) {
	t.Helper()
	run(t, ctx, "provider login page", chromedp.WaitVisible(chromedp.ID("username")))
	loc := value(t, ctx, chromedp.Location())
	if !strings.HasPrefix(loc, e.provider.Issuer+"/login") {
		t.Fatalf("at %s, want the provider's login page", loc)
	}
	run(t, ctx, "sign in at the provider",
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("submit")),
	)
}

// signedInAs waits for the dashboard stand-in and returns the name it
// shows and the URL.
func signedInAs(t *testing.T, ctx context.Context) (name, loc string) {
	t.Helper()
	run(t, ctx, "page of who is signed in", chromedp.WaitVisible(chromedp.ID("name")))
	return value(t, ctx, chromedp.Text(chromedp.ID("name"))), value(t, ctx, chromedp.Location())
}

func heading(t *testing.T, ctx context.Context) string {
	t.Helper()
	run(t, ctx, "heading", chromedp.WaitVisible(chromedp.CSS("main > h1")))
	return value(t, ctx, chromedp.Text(chromedp.CSS("main > h1")))
}

func clearCookies(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
}

// TestBrowser signs in through the provider's login page in a real
// headless chromium, lands where it started, sees who is signed in, signs
// out; and is refused a tampered cookie, an open redirect, ID tokens with
// the wrong issuer, audience or nonce, and a replayed sign-in link.
func TestBrowser(t *testing.T) {
	e := newEnv(t, true)
	ctx := browser(t, e.srv.URL, e.provider.Issuer)

	t.Run("sign in and out", func(t *testing.T) {
		run(t, ctx, "open an app's page", chromedp.Navigate(e.srv.URL+"/apps/myapp?tab=logs"))
		providerLogin(t, ctx, e, "alice", alicePassword)
		name, loc := signedInAs(t, ctx)
		if name != "alice" || loc != e.srv.URL+"/apps/myapp?tab=logs" {
			t.Fatalf("signed in as %q at %s; want alice at /apps/myapp?tab=logs", name, loc)
		}
		session := cookie(t, ctx, e, "__Host-paas_session")
		if session == nil || !session.HTTPOnly || !session.Secure || session.SameSite != network.CookieSameSiteLax || session.Path != "/" {
			t.Fatalf("session cookie %+v", session)
		}
		run(t, ctx, "sign out", chromedp.Click(chromedp.ID("signout")))
		if h := heading(t, ctx); h != "Signed out" {
			t.Fatalf("after sign-out: %q", h)
		}
		run(t, ctx, "open the dashboard", chromedp.Navigate(e.srv.URL+"/"))
		run(t, ctx, "where", chromedp.WaitVisible(chromedp.ID("username")))
		if loc2 := value(t, ctx, chromedp.Location()); !strings.HasPrefix(loc2, e.provider.Issuer) {
			t.Fatalf("after sign-out the dashboard is at %s, want the provider's login", loc2)
		}
	})

	t.Run("tampered cookie", func(t *testing.T) {
		clearCookies(t, ctx)
		run(t, ctx, "open", chromedp.Navigate(e.srv.URL+"/"))
		providerLogin(t, ctx, e, "alice", alicePassword)
		signedInAs(t, ctx)
		c := cookie(t, ctx, e, "__Host-paas_session")
		if c == nil {
			t.Fatal("no session cookie")
		}
		raw, mac, _ := strings.Cut(c.Value, ".")
		yes := true
		if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
			Name: c.Name, Value: raw[:len(raw)-1] + flip(raw[len(raw)-1]) + "." + mac, URL: e.srv.URL + "/", Path: "/",
			HTTPOnly: &yes, Secure: &yes, SameSite: network.CookieSameSiteLax,
		}); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, "open with the tampered cookie", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("username")))
		loc := value(t, ctx, chromedp.Location())
		if !strings.HasPrefix(loc, e.provider.Issuer) || !e.audit.has("session", "error", "tampered") {
			t.Fatalf("tampered cookie: at %s\naudit:\n%s", loc, e.audit)
		}
	})

	t.Run("open redirect", func(t *testing.T) {
		clearCookies(t, ctx)
		run(t, ctx, "open", chromedp.Navigate(e.srv.URL+"/auth/login?return_to="+"https://evil.example/"))
		providerLogin(t, ctx, e, "alice", alicePassword)
		if _, loc := signedInAs(t, ctx); loc != e.srv.URL+"/" {
			t.Fatalf("landed at %s, want %s/", loc, e.srv.URL)
		}
		if !e.audit.has("sign-in", "error", "not a path of this site") {
			t.Fatalf("open redirect not recorded:\n%s", e.audit)
		}
	})

	for _, tt := range misbehaviors {
		t.Run(tt.name, func(t *testing.T) {
			clearCookies(t, ctx)
			e.provider.SetMisbehavior(tt.m)
			defer e.provider.SetMisbehavior(oidctest.Behave)
			run(t, ctx, "open", chromedp.Navigate(e.srv.URL+"/"))
			providerLogin(t, ctx, e, "alice", alicePassword)
			if h := heading(t, ctx); h != "Sign-in refused" {
				t.Fatalf("heading %q, want Sign-in refused", h)
			}
			if !e.audit.has("sign-in", "error", tt.detail) {
				t.Fatalf("not recorded:\n%s", e.audit)
			}
		})
	}

	t.Run("replayed link", func(t *testing.T) {
		clearCookies(t, ctx)
		link, _, err := e.svc.IssueLink(paas.Identity{Name: "bob", Source: "ssh-keys"})
		if err != nil {
			t.Fatal(err)
		}
		run(t, ctx, "open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("signin")), chromedp.Click(chromedp.ID("signin")))
		if name, _ := signedInAs(t, ctx); name != "bob" {
			t.Fatalf("signed in as %q, want bob", name)
		}
		clearCookies(t, ctx)
		run(t, ctx, "open the link again", chromedp.Navigate(link))
		if h := heading(t, ctx); h != "Link expired" || !e.audit.has("sign-in", "error", "replayed") {
			t.Fatalf("replayed link: %q\naudit:\n%s", h, e.audit)
		}
	})
}
