package main

// Single sign-on into the real dashboard (dashboard-sso.txtar): a real
// OpenID Connect provider (internal/oidctest: zitadel/oidc's op, its login
// page binding to the scenario's slapd) on 127.0.0.1, paasd started with
// --oidc-issuer and the client secret in a file, and Debian's chromium in
// a network namespace whose 127.0.0.1 reaches both the router's HTTPS port
// and the provider's port.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/directory/slapdtest"
	"paas/internal/oidctest"
)

func init() {
	scriptCmds["oidc-provider"] = cmdOIDCProvider
	scriptCmds["dashboard-sso"] = cmdDashboardSSO
}

var providers sync.Map // $WORK -> *oidctest.Provider

func providerOf(ts *testscript.TestScript) *oidctest.Provider {
	p, ok := providers.Load(ts.Getenv("WORK"))
	if !ok {
		ts.Fatalf("no OpenID provider: run oidc-provider first")
	}
	return p.(*oidctest.Provider)
}

// oidc-provider: start an OpenID provider for the scenario's directory
// (slapd-start first), with paas registered as client "paas" redirecting
// to https://paas.paas.test:$HTTPS_PORT/auth/callback. Sets $OIDC_ISSUER
// and writes the client secret to $WORK/.oidc-secret.
func cmdOIDCProvider(ts *testscript.TestScript, neg bool, args []string) {
	d := directoryOf(ts)
	secret := "paas-client-" + ts.Getenv("PAAS_NAME")
	p, err := oidctest.Start(oidctest.Options{
		ClientID: "paas", ClientSecret: secret,
		RedirectURIs: []string{"https://paas.paas.test:" + ts.Getenv("HTTPS_PORT") + "/auth/callback"},
		LDAPURL:      d.URL, PeopleDN: slapdtest.PeopleDN, GroupsDN: slapdtest.GroupsDN,
	})
	ts.Check(err)
	work := ts.Getenv("WORK")
	providers.Store(work, p)
	ts.Defer(func() {
		p.Close()
		providers.Delete(work)
	})
	ts.Check(os.WriteFile(filepath.Join(work, ".oidc-secret"), []byte(secret+"\n"), 0o600))
	ts.Setenv("OIDC_ISSUER", p.Issuer)
}

// dashboard-sso USER PASSWORD ADMIN ADMINPASSWORD APP OTHER IMAGE: in a real
// chromium, USER opens APP's page, is sent to the provider's login page,
// signs in there and lands on APP's page; sees the app list (APP, not
// OTHER); is refused IMAGE (a registry of this machine); scales web to 2,
// restarts and rebuilds with the buttons; gets 404 for OTHER and 403 for
// the nodes; signs out. Then the bad inputs through the provider: a
// return_to to another site, a tampered session cookie, ID tokens with the
// wrong issuer, audience and nonce. Last, ADMIN signs in, sees the nodes
// and deploys IMAGE to APP. Prints what it saw, one line each.
func cmdDashboardSSO(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 8 {
		ts.Fatalf("usage: dashboard-sso USER PASSWORD ADMIN ADMINPASSWORD APP OTHER IMAGE PUSHDIR")
	}
	user, password, admin, adminPassword, app, other, image := args[0], args[1], args[2], args[3], args[4], args[5], args[6]
	pushDir := ts.MkAbs(args[7])
	p := providerOf(ts)
	issuer, err := url.Parse(p.Issuer)
	ts.Check(err)
	port := ts.Getenv("HTTPS_PORT")
	base := "https://paas.paas.test:" + port
	ctx := browserInNetns(ts, port, issuer.Port())
	say := func(format string, a ...any) { fmt.Fprintf(ts.Stdout(), format+"\n", a...) }
	location := func() string { return get(ts, ctx, "where", chromedp.Location()) }
	// signIn fills in the provider's login page, which the tab is on its
	// way to.
	signIn := func(user, password string) {
		browse(ts, ctx, "the provider's login page", chromedp.WaitVisible(chromedp.ID("username")))
		if loc := location(); !strings.HasPrefix(loc, p.Issuer+"/login?") {
			ts.Fatalf("at %s, want the provider's login page", loc)
		}
		browse(ts, ctx, "sign in at the provider",
			chromedp.SendKeys(chromedp.ID("username"), user), chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("submit")))
	}
	clearCookies := func() {
		_, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{})
		ts.Check(err)
	}
	cookies := func() []*network.Cookie {
		r, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		ts.Check(err)
		return r.Cookies
	}
	appPage := base + "/apps/" + app

	browse(ts, ctx, "open the app's page", chromedp.Navigate(appPage))
	signIn(user, password)
	browse(ts, ctx, "back on the dashboard", chromedp.WaitVisible(chromedp.ID("user")))
	say("signed in through the provider as %s, back at %s", text(ts, ctx, "#user"), strings.TrimPrefix(location(), base))
	for _, c := range cookies() {
		if c.Name == "__Host-paas_session" {
			say("session cookie: HttpOnly %v, Secure %v, SameSite %s", c.HTTPOnly, c.Secure, c.SameSite)
		}
	}

	browse(ts, ctx, "the app list", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("apps")))
	rows := get(ts, ctx, "the list's apps", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("tr[data-app]"), r => r.dataset.app)`))
	say("app list: %s", strings.Join(rows, " "))

	browse(ts, ctx, "open the app", chromedp.Click(chromedp.CSS(`tr[data-app="`+app+`"] a`)), chromedp.WaitVisible(chromedp.ID("deploy-image")))
	say("app page: serving %s", text(ts, ctx, "#current"))
	// An image of a registry on this machine is for administrators.
	browse(ts, ctx, "deploy an image", chromedp.SendKeys(chromedp.CSS(`input[name="image"]`), image), chromedp.Click(chromedp.ID("deploy-image")),
		chromedp.WaitVisible(chromedp.ID("error")))
	say("deploy image: %s / %s", text(ts, ctx, "main > h1"), text(ts, ctx, "#error"))

	browse(ts, ctx, "the app's page", chromedp.Navigate(appPage), chromedp.WaitVisible(chromedp.ID("scale")))
	browse(ts, ctx, "scale web to 2", chromedp.SendKeys(chromedp.CSS(`input[name="count"]`), "2"), chromedp.Click(chromedp.ID("scale")))
	poll(ts, ctx, "scaled", flashIs("Scaled."), 120*time.Second)
	poll(ts, ctx, "two tasks running, without a reload", `(function () { var h = document.querySelectorAll("#proclist h3"); return h.length == 1 && h[0].textContent.includes("2/2 running"); })()`, 90*time.Second)
	// read in one evaluation: the list is redrawn as the tasks change
	procs := get(ts, ctx, "the processes", chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#proclist h3"), h => h.textContent).join(" ")`))
	say("%s processes: %s", text(ts, ctx, "#flash"), strings.Join(strings.Fields(procs), " "))

	browse(ts, ctx, "restart", chromedp.Click(chromedp.ID("restart")))
	poll(ts, ctx, "restarted", flashIs("Restarted."), 120*time.Second)
	say("%s", text(ts, ctx, "#flash"))

	browse(ts, ctx, "rebuild", chromedp.Click(chromedp.ID("rebuild")))
	poll(ts, ctx, "rebuilt", flashIs("Rebuilt and deployed."), 300*time.Second)
	say("%s serving %s", text(ts, ctx, "#flash"), text(ts, ctx, "#current"))

	// Live logs while a push deploys the next commit, its build in the
	// list, both without a reload; then the Roll back button and a config
	// value.
	pushFollowed(ts, ctx, pushDir, "api 1.1 on", say, nil)
	say("builds without a reload: %s", buildsDrawn(ts, ctx, 3))
	// v2 served when the page was drawn: its Roll back button comes
	// without a reload
	say("releases without a reload: %s", releasesDrawn(ts, ctx, "v3", "v2"))
	rollBack(ts, ctx, "v2", say)
	setConfig(ts, ctx, "NOTE", "n0te", say)

	// An API token made on the tokens page works with curl's kind of
	// client, and the Revoke button ends it.
	browse(ts, ctx, "the tokens page", chromedp.Navigate(base+"/tokens"), chromedp.WaitVisible(chromedp.ID("token-create")))
	browse(ts, ctx, "create a token", chromedp.SendKeys(chromedp.CSS(`#token-create input[name="name"]`), "laptop"),
		chromedp.SendKeys(chromedp.CSS(`#token-create input[name="expires"]`), "30d"), chromedp.Click(chromedp.CSS(`#token-create button`)),
		chromedp.WaitVisible(chromedp.ID("new-token")))
	token := text(ts, ctx, "#new-token")
	say("token page: laptop expires %v; whoami with it: %s", text(ts, ctx, `tr[data-token="laptop"] td:nth-child(3)`) != "never", whoami(ts, token))
	browse(ts, ctx, "revoke it", chromedp.Click(chromedp.CSS(`tr[data-token="laptop"] button`)))
	poll(ts, ctx, "revoked", flashIs("Token revoked."), 30*time.Second)
	say("%s whoami with it: %s", text(ts, ctx, "#flash"), whoami(ts, token))

	browse(ts, ctx, "another user's app", chromedp.Navigate(base+"/apps/"+other), chromedp.WaitVisible(chromedp.ID("error")))
	say("%s: %s / %s", other, text(ts, ctx, "main > h1"), text(ts, ctx, "#error"))
	browse(ts, ctx, "the nodes", chromedp.Navigate(base+"/nodes"), chromedp.WaitVisible(chromedp.ID("error")))
	say("nodes: %s / %s", text(ts, ctx, "main > h1"), text(ts, ctx, "#error"))

	browse(ts, ctx, "sign out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("signout")), chromedp.Click(chromedp.ID("signout")))
	poll(ts, ctx, "signed out", `location.search.includes("signed_out") && document.readyState == "complete"`, 30*time.Second)
	say("after sign-out: %s", text(ts, ctx, "main > h1"))
	browse(ts, ctx, "the dashboard again", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("username")))
	say("the dashboard then goes to the provider: %v", strings.HasPrefix(location(), p.Issuer+"/login?"))

	// A return_to of another site: signed in, but kept on this one.
	clearCookies()
	browse(ts, ctx, "sign in with a return_to elsewhere", chromedp.Navigate(base+"/auth/login?return_to="+url.QueryEscape("https://evil.example/")))
	signIn(user, password)
	browse(ts, ctx, "back on the dashboard", chromedp.WaitVisible(chromedp.ID("user")))
	say("return_to https://evil.example/: landed at %s", strings.TrimPrefix(location(), base))

	// A session cookie changed by one byte is no session.
	for _, c := range cookies() {
		if c.Name != "__Host-paas_session" {
			continue
		}
		raw, mac, _ := strings.Cut(c.Value, ".")
		last := raw[len(raw)-1]
		flipped := byte('A')
		if last == 'A' {
			flipped = 'B'
		}
		yes := true
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
			Name: c.Name, Value: raw[:len(raw)-1] + string(flipped) + "." + mac, URL: base + "/", Path: "/",
			HTTPOnly: &yes, Secure: &yes, SameSite: network.CookieSameSiteLax,
		})
		ts.Check(err)
	}
	browse(ts, ctx, "the dashboard with the tampered cookie", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("username")))
	say("tampered cookie: sent to the provider: %v", strings.HasPrefix(location(), p.Issuer+"/login?"))

	for _, m := range []struct {
		name string
		m    oidctest.Misbehavior
	}{{"wrong issuer", oidctest.WrongIssuer}, {"wrong audience", oidctest.WrongAudience}, {"wrong nonce", oidctest.WrongNonce}} {
		clearCookies()
		p.SetMisbehavior(m.m)
		browse(ts, ctx, "open the dashboard", chromedp.Navigate(base+"/"))
		signIn(user, password)
		browse(ts, ctx, "the answer", chromedp.WaitVisible(chromedp.CSS("main > h1")))
		p.SetMisbehavior(oidctest.Behave)
		say("%s: %s", m.name, text(ts, ctx, "main > h1"))
		browse(ts, ctx, "the app list", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("username")))
	}

	// An administrator by the groups claim sees the nodes, and may deploy
	// the image.
	clearCookies()
	browse(ts, ctx, "the nodes", chromedp.Navigate(base+"/nodes"))
	signIn(admin, adminPassword)
	browse(ts, ctx, "the nodes page", chromedp.WaitVisible(chromedp.ID("nodes")))
	n := get(ts, ctx, "nodes", chromedp.Evaluate[int](`document.querySelectorAll("#nodes tbody tr").length`))
	say("%s: %s, %d node(s)", text(ts, ctx, "#user"), text(ts, ctx, "main > h1"), n)
	browse(ts, ctx, "the app's page", chromedp.Navigate(appPage), chromedp.WaitVisible(chromedp.ID("deploy-image")))
	browse(ts, ctx, "deploy an image", chromedp.SendKeys(chromedp.CSS(`input[name="image"]`), image), chromedp.Click(chromedp.ID("deploy-image")))
	poll(ts, ctx, "image deployed", flashIs("Image deployed."), 180*time.Second)
	say("%s serving %s", text(ts, ctx, "#flash"), text(ts, ctx, "#current"))

	// The audit page: what was done, without the reads of page views.
	count := func(what string) int {
		return get(ts, ctx, "count "+what, chromedp.Evaluate[int](`Array.from(document.querySelectorAll("table.events tbody tr")).filter(r => r.textContent.includes(`+strconv.Quote(what)+`)).length`))
	}
	browse(ts, ctx, "the audit log", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(chromedp.ID("with-reads")))
	say("audit log: ps:scale %d, ps:rebuild %d, git:from-image %d, apps:report %d", count("ps:scale"), count("ps:rebuild"), count("git:from-image"), count("apps:report"))
	browse(ts, ctx, "the audit log with the reads", chromedp.Click(chromedp.ID("with-reads")), chromedp.WaitVisible(chromedp.ID("changes-only")))
	say("with the reads: apps:report %v", count("apps:report") > 0)
}

// whoami is the status and user name of GET /api/v1/whoami with token.
func whoami(ts *testscript.TestScript, token string) string {
	req, err := http.NewRequest("GET", "https://paas.paas.test:"+ts.Getenv("HTTPS_PORT")+"/api/v1/whoami", nil)
	ts.Check(err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := apiClient(ts).Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	var who struct{ Name string }
	json.NewDecoder(resp.Body).Decode(&who)
	return strings.TrimSpace(resp.Status + " " + who.Name)
}
