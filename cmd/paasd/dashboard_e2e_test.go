package main

// The dashboard end to end (dashboard.txtar): Debian's chromium, driven
// headless through chromedp, signs in with the link of `ssh paas login`
// and uses the pages of the real paasd through the router as a person
// would: the app list, an app's page, its live logs while a `git push`
// runs, the Roll back button, a config value hidden then revealed, sign
// out; and is refused a POST without the CSRF token and another user's app.
//
// Chromium runs in a network namespace of its own (internal/browsertest),
// where the installation's HTTPS port of 127.0.0.1 reaches the router on
// the host's.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/browsertest"
)

func init() {
	scriptCmds["dashboard-browser"] = cmdDashboardBrowser
}

// browserInNetns starts a headless chromium in a network namespace of its
// own whose 127.0.0.1:PORT reaches the host's 127.0.0.1:PORT for each of
// ports (internal/browsertest), and returns a tab's context.
func browserInNetns(ts *testscript.TestScript, ports ...string) context.Context {
	ctx, stop, err := browsertest.Start(ports, chromedp.WindowSize(1280, 900))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(stop)
	return ctx
}

// browse runs steps in the tab with a deadline; a page load that fails with
// ERR_NETWORK_CHANGED is tried once more.
func browse(ts *testscript.TestScript, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	get(ts, ctx, what, chromedp.Steps(steps...))
}

// get runs a that returns a value, as browse runs steps.
func get[T any](ts *testscript.TestScript, ctx context.Context, what string, a chromedp.Action[T]) T {
	for attempt := 0; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		v, err := chromedp.Run(tctx, a)
		cancel()
		if err == nil {
			return v
		}
		if attempt == 0 && strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
			ts.Logf("%s: %v; once more", what, err)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		loc, _ := chromedp.Run(lctx, chromedp.Location())
		html, _ := chromedp.Run(lctx, chromedp.OuterHTML(chromedp.CSS("html")))
		cancel()
		ts.Fatalf("%s: %v (at %s)\n%s", what, err, loc, html)
	}
}

// text is the rendered text of the first element sel matches, once there
// is one. It is read in one evaluation: the live parts of a page replace
// their elements as they redraw, so a node found in one DevTools call may
// be gone in the next ("No node with given id").
func text(ts *testscript.TestScript, ctx context.Context, sel string) string {
	q := `document.querySelector(` + strconv.Quote(sel) + `)`
	poll(ts, ctx, "find "+sel, q+` !== null`, 90*time.Second)
	return strings.TrimSpace(get(ts, ctx, "read "+sel, chromedp.Evaluate[string](`(`+q+` || {innerText: ""}).innerText`)))
}

// poll waits until the JavaScript expression is true in the page. It asks
// again and again, so that a page navigating away meanwhile (a form's
// answer arriving) is no error.
func poll(ts *testscript.TestScript, ctx context.Context, what, expr string, timeout time.Duration) {
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
	}
	get(ts, ctx, what, chromedp.Func(func(context.Context, *chromedp.Target) error {
		return fmt.Errorf("not true after %s: %s (last error: %v)", timeout, expr, last)
	}))
}

// flashIs is a JavaScript test that the page (a new one, loaded) says msg.
func flashIs(msg string) string {
	return `document.readyState == "complete" && document.getElementById("flash")?.textContent == "` + msg + `"`
}

// screenshot saves the page as NAME.png in $PAAS_SCREENSHOTS, when set.
func screenshot(ts *testscript.TestScript, ctx context.Context, name string) {
	dir := os.Getenv("PAAS_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := get(ts, ctx, "screenshot", chromedp.FullScreenshot(100))
	ts.Check(os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// watchBuild opens the page at url (an app's latest build) in a tab of
// its own as soon as it shows a running build, and waits, without
// reloading it, for its output to grow while the build runs and for its
// final status.
func watchBuild(ts *testscript.TestScript, ctx context.Context, url string, say func(string, ...any)) {
	tab, closeTab := chromedp.NewContext(ctx)
	defer closeTab()
	// the tab lives as long as the context of the first run: this one, not
	// a step's with a deadline
	_, err := chromedp.Run(tab, chromedp.Steps())
	ts.Check(err)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		browse(ts, tab, "the latest build's page", chromedp.Navigate(url), chromedp.WaitReady(chromedp.ID("build-status")))
		if text(ts, tab, "#build-status") == "running" {
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("no running build at %s", url)
		}
	}
	// what the page was drawn with, and a watch for lines added while the
	// status still reads running; a reload would lose window.loaded
	atLoad := get(ts, tab, "watch the output", chromedp.Evaluate[string](`(function () {
		var pre = document.getElementById("build-output"), status = document.getElementById("build-status");
		window.loaded = pre.textContent;
		window.grewWhileRunning = false;
		new MutationObserver(function () {
			if (status.textContent == "running" && pre.textContent.length > window.loaded.length) window.grewWhileRunning = true;
		}).observe(pre, { childList: true });
		return window.loaded;
	})()`))
	poll(ts, tab, "the build's status, without a reload", `window.loaded !== undefined && document.getElementById("build-status").textContent != "running"`, 120*time.Second)
	final := get(ts, tab, "the build's output", chromedp.Evaluate[string](`document.getElementById("build-output").textContent`))
	grew := get(ts, tab, "did it grow", chromedp.Evaluate[bool](`window.grewWhileRunning`))
	const last = "receives traffic"
	say("build page: drawn running, %d lines then; grew while running: %v; %d lines and %q (%v at load) when it reads %s, not reloaded",
		strings.Count(atLoad, "\n"), grew, strings.Count(final, "\n"), last, strings.Contains(atLoad, last), text(ts, tab, "#build-status"))
	if !strings.Contains(final, last) {
		ts.Fatalf("the build's page lacks %q:\n%s", last, final)
	}
	screenshot(ts, tab, "dashboard-build")
}

// pushFollowed runs `git push paas main` in pushDir while the app's page
// in ctx follows its logs, and during (when set) while the push runs; then
// waits for a log line with want, which the new release prints, without a
// reload.
func pushFollowed(ts *testscript.TestScript, ctx context.Context, pushDir, want string, say func(string, ...any), during func()) {
	poll(ts, ctx, "logs follow", `document.querySelector(".logstate").textContent == "following"`, 30*time.Second)
	push := exec.Command("git", "-C", pushDir, "push", "paas", "main")
	push.Env = append(os.Environ(), "HOME="+ts.Getenv("HOME"), "GIT_SSH_COMMAND="+ts.Getenv("GIT_SSH_COMMAND"))
	var pushOut bytes.Buffer
	push.Stdout, push.Stderr = &pushOut, &pushOut
	ts.Check(push.Start())
	if during != nil {
		during()
	}
	if err := push.Wait(); err != nil {
		ts.Fatalf("git push: %v\n%s", err, pushOut.Bytes())
	}
	poll(ts, ctx, "the new release's output in the live logs", `document.getElementById("loglines").textContent.includes(`+strconv.Quote(want)+`)`, 90*time.Second)
	say("live logs: %s", want)
}

// buildsDrawn waits until the app page's list of builds has n rows, the
// newest succeeded, and returns them: id, status, kind and release each.
func buildsDrawn(ts *testscript.TestScript, ctx context.Context, n int) string {
	poll(ts, ctx, "the push's build, without a reload", fmt.Sprintf(`(function () { var r = document.querySelectorAll("#buildlist tbody tr"); return r.length == %d && r[0].cells[1].textContent == "succeeded"; })()`, n), 60*time.Second)
	// read in one evaluation: the list is redrawn as builds start and end
	return get(ts, ctx, "the builds", chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#buildlist tbody tr"), r => Array.from(r.cells, c => c.textContent).slice(0, 3).join(" ") + " " + r.cells[6].textContent).join(", ")`))
}

// releasesDrawn waits until the app page says it serves current and
// offers to roll back to earlier, without a reload (the page was drawn
// with another release serving), and says so.
func releasesDrawn(ts *testscript.TestScript, ctx context.Context, current, earlier string) string {
	poll(ts, ctx, "the releases, without a reload", `document.getElementById("current").textContent == `+strconv.Quote(current)+
		` && document.getElementById("release-`+current+`").classList.contains("current") && document.getElementById("rollback-`+earlier+`") !== null`, 60*time.Second)
	return fmt.Sprintf("serving %s, Roll back to %s offered", text(ts, ctx, "#current"), earlier)
}

// rollBack clicks the app page's Roll back button of release version.
func rollBack(ts *testscript.TestScript, ctx context.Context, version string, say func(string, ...any)) {
	browse(ts, ctx, "roll back to "+version, chromedp.Click(chromedp.ID("rollback-"+version)))
	poll(ts, ctx, "rolled back", flashIs("Rolled back."), 90*time.Second)
	say("%s serving %s", text(ts, ctx, "#flash"), text(ts, ctx, "#current"))
}

// setConfig sets key to secret in bold markup (<b>secret</b>, which every
// page must escape) with the app page's config form, and says what the
// page then shows of it (hidden) and whether it holds the secret.
func setConfig(ts *testscript.TestScript, ctx context.Context, key, secret string, say func(string, ...any)) {
	browse(ts, ctx, "set a config value",
		chromedp.SendKeys(chromedp.ID("config-key"), key), chromedp.SendKeys(chromedp.ID("config-value"), "<b>"+secret+"</b>"),
		chromedp.Click(chromedp.ID("config-submit")))
	poll(ts, ctx, "config set", flashIs("Config set."), 90*time.Second)
	html := get(ts, ctx, "page", chromedp.OuterHTML(chromedp.CSS("html")))
	say("%s %s shows %q; the page holds the value: %v", text(ts, ctx, "#flash"), key, text(ts, ctx, `tr[data-key=`+strconv.Quote(key)+`] .value`), strings.Contains(html, secret))
}

// dashboard-browser LINKFILE APP OTHER PUSHDIR: signs in with the link in
// LINKFILE, then on the dashboard: the app list's row of APP, APP's page,
// its live logs while `git push paas main` runs in PUSHDIR (the output must
// show "starting v2"), the Roll back button to v1, GREETING set and shown
// hidden then revealed, a POST without the CSRF token, the page of OTHER
// (another user's app), sign-out. Prints what it saw, one line each.
func cmdDashboardBrowser(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 4 {
		ts.Fatalf("usage: dashboard-browser LINKFILE APP OTHER PUSHDIR")
	}
	link, app, other, pushDir := lastLine(ts, args[0]), args[1], args[2], ts.MkAbs(args[3])
	port := ts.Getenv("HTTPS_PORT")
	base := "https://paas.paas.test:" + port
	ctx := browserInNetns(ts, port)
	say := func(format string, a ...any) { fmt.Fprintf(ts.Stdout(), format+"\n", a...) }

	browse(ts, ctx, "sign in with the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("signin")), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("apps")))
	if loc := get(ts, ctx, "where", chromedp.Location()); loc != base+"/" {
		ts.Fatalf("signed in at %s, want the app list", loc)
	}
	say("signed in as %s", text(ts, ctx, "#user"))
	say("app list: %s", strings.Join(strings.Fields(text(ts, ctx, `tr[data-app="`+app+`"]`)), " "))
	screenshot(ts, ctx, "dashboard-apps")

	browse(ts, ctx, "open the app", chromedp.Click(chromedp.CSS(`tr[data-app="`+app+`"] a`)), chromedp.WaitVisible(chromedp.ID("current")))
	say("app page: serving %s", text(ts, ctx, "#current"))
	say("task: %s", strings.Join(strings.Fields(text(ts, ctx, "#processes tbody tr")), " "))

	// Live logs while a push deploys v2, and the build's page in a second
	// tab while it runs.
	pushFollowed(ts, ctx, pushDir, "starting v2", say, func() { watchBuild(ts, ctx, base+"/apps/"+app+"/builds/latest", say) })
	// the tasks' state follows without a reload: the page was drawn with v1
	poll(ts, ctx, "the new release's tasks, without a reload", `(function () { var h = document.querySelectorAll("#proclist h3"); return h.length == 1 && h[0].textContent.includes("1/1 running, release v2"); })()`, 60*time.Second)
	procs := get(ts, ctx, "the processes", chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#proclist h3"), h => h.textContent).join(" ")`))
	say("processes without a reload: %s", strings.Join(strings.Fields(procs), " "))
	// the builds too: the page was drawn with build 1 only
	say("builds without a reload: %s", buildsDrawn(ts, ctx, 2))
	say("releases without a reload: %s", releasesDrawn(ts, ctx, "v2", "v1"))

	browse(ts, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("current")))
	say("after push: serving %s", text(ts, ctx, "#current"))
	rollBack(ts, ctx, "v1", say)
	setConfig(ts, ctx, "GREETING", "s3cr3t", say)
	if os.Getenv("PAAS_SCREENSHOTS") != "" {
		// the live logs of the new release, for the picture
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		chromedp.Run(tctx, chromedp.Poll[bool](`document.getElementById("loglines").textContent.includes("starting v1")`))
		cancel()
		screenshot(ts, ctx, "dashboard-app")
	}
	browse(ts, ctx, "reveal", chromedp.Click(chromedp.ID("reveal")), chromedp.WaitVisible(chromedp.ID("hide")))
	say("revealed GREETING: %s", text(ts, ctx, `tr[data-key="GREETING"] .value`))

	// A POST from the signed-in browser without the CSRF token.
	status := get(ts, ctx, "post without the CSRF token",
		chromedp.Evaluate[int](`fetch("/apps/`+app+`/rollback", {method: "POST", body: new URLSearchParams({version: "2"})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	say("post without csrf token: %d", status)

	browse(ts, ctx, "another user's app", chromedp.Navigate(base+"/apps/"+other), chromedp.WaitVisible(chromedp.CSS("main > h1")))
	say("%s: %s / %s", other, text(ts, ctx, "main > h1"), text(ts, ctx, "#error"))

	browse(ts, ctx, "sign out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("signout")), chromedp.Click(chromedp.ID("signout")))
	poll(ts, ctx, "signed out", `location.search.includes("signed_out") && document.readyState == "complete"`, 30*time.Second)
	say("after sign-out: %s", text(ts, ctx, "main > h1"))
	browse(ts, ctx, "the app list again", chromedp.Navigate(base+"/"), chromedp.WaitReady(chromedp.CSS("body")))
	loc := get(ts, ctx, "where", chromedp.Location())
	say("the app list then goes to %s", strings.TrimPrefix(loc, base))
}
