// Command dashboard is the dashboard benchmark of issue 19: with 500 apps
// in the store, the app list page (GET / of paas.DOMAIN, a browser session
// signed in with a link of `ssh paas login`, its first page of 100 apps)
// and GET /api/v1/apps (an API token), both HTTPS through the router,
// against the same listings over SSH in the same run (`apps:list --format
// json`, and `apps:list --detail --format json`, the command the page
// runs, for the same page of apps), interleaved: p50 and p99 of N
// requests each, the ratios against SSH, the size of the first page, and
// the machine's load average before and after.
//
//	go run ./scripts/bench/dashboard [-n 1000] [-apps 500] [-timeout 10m]
//
// It starts a real paasd (scripts/bench/benchpaasd) and needs Go, OpenSSH's
// ssh-keygen and Docker in swarm mode (scripts/install.sh --deps).
package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"time"

	"paas/scripts/bench/benchpaasd"
)

func main() { benchpaasd.Main(run) }

// Targets of issue 19.
const (
	maxP99       = 50 * time.Millisecond
	maxFirstPage = 300 << 10
)

func run(ctx context.Context, n, apps int) error {
	in, err := benchpaasd.Start(ctx, "d", apps)
	if err != nil {
		return err
	}
	defer in.Close()
	browser, err := signIn(ctx, in)
	if err != nil {
		return err
	}
	// The first page, as a browser gets it: its size and its rows.
	resp, err := browser.Get("https://paas." + benchpaasd.Domain + "/")
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("GET /: %d %v", resp.StatusCode, err)
	}
	var head strings.Builder
	resp.Header.Write(&head)
	rows := strings.Count(string(body), "<tr data-app=")
	if want := min(apps, 100); rows != want {
		return fmt.Errorf("the first page lists %d apps, want %d", rows, want)
	}
	firstPage := len(body) + head.Len()

	page := &benchpaasd.Side{Name: "page", Call: func() ([]byte, error) { return in.Get(ctx, browser, "/", "") }}
	api := &benchpaasd.Side{Name: "api", Call: func() ([]byte, error) { return in.Get(ctx, in.Client, "/api/v1/apps", in.Token) }}
	ssh := &benchpaasd.Side{Name: "ssh", Call: func() ([]byte, error) {
		out, err := in.Run("apps:list --format json")
		return []byte(out), err
	}}
	// What the page's handler runs for its first page (100 apps and one
	// more, which tells whether a next page exists).
	sshDetail := &benchpaasd.Side{Name: "ssh --detail", Call: func() ([]byte, error) {
		out, err := in.Run("apps:list --detail --offset 0 --limit 101 --format json")
		return []byte(out), err
	}}
	sides := []*benchpaasd.Side{page, api, ssh, sshDetail}
	loadBefore := benchpaasd.LoadAverage()
	if err := benchpaasd.Interleave(ctx, n, sides); err != nil {
		return err
	}
	loadAfter := benchpaasd.LoadAverage()
	pct, ms, ratio := benchpaasd.Pct, benchpaasd.Ms, benchpaasd.Ratio
	fmt.Printf("\n| %d apps, N=%d | p50 | p99 | p50/ssh | p99/ssh |\n|---|---|---|---|---|\n", apps, n)
	for _, sd := range []struct {
		label string
		side  *benchpaasd.Side
	}{
		{"GET / (app list page, 100 apps, session cookie)", page},
		{"GET /api/v1/apps (token)", api},
		{"ssh apps:list --format json", ssh},
		{"ssh apps:list --detail --offset 0 --limit 101 --format json", sshDetail},
	} {
		t := sd.side.Times
		fmt.Printf("| %s | %s | %s | %.2fx | %.2fx |\n", sd.label, ms(pct(t, 50)), ms(pct(t, 99)),
			ratio(pct(t, 50), pct(ssh.Times, 50)), ratio(pct(t, 99), pct(ssh.Times, 99)))
	}
	fmt.Printf("page/ssh --detail (the same command, the HTML door around it): p50 %.2fx, p99 %.2fx\n",
		ratio(pct(page.Times, 50), pct(sshDetail.Times, 50)), ratio(pct(page.Times, 99), pct(sshDetail.Times, 99)))
	fmt.Printf("load average (1, 5, 15 min) before: %s; after: %s (%d cores)\n", loadBefore, loadAfter, runtime.NumCPU())
	fmt.Printf("first page: %d bytes (%d of HTML, %d of headers), %d apps listed of %d\n", firstPage, len(body), head.Len(), rows, apps)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Printf("target GET / p99 < 50 ms: %s\n", verdict(pct(page.Times, 99) < maxP99))
	fmt.Printf("target GET /api/v1/apps p99 < 50 ms: %s\n", verdict(pct(api.Times, 99) < maxP99))
	fmt.Printf("target first page < 300 KB: %s\n", verdict(firstPage < maxFirstPage))
	return nil
}

var hidden = regexp.MustCompile(`name="(form_token|token)" value="([^"]*)"`)

// signIn follows a link of `ssh paas login` as a browser does (the link's
// page, then its button) and returns a client with the session's cookie.
func signIn(ctx context.Context, in *benchpaasd.Installation) (*http.Client, error) {
	out, err := in.Run("login")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	link := lines[len(lines)-1]
	c, err := in.NewClient()
	if err != nil {
		return nil, err
	}
	c.Jar, _ = cookiejar.New(nil)
	page, err := in.Get(ctx, c, strings.TrimPrefix(link, "https://paas."+benchpaasd.Domain), "")
	if err != nil {
		return nil, fmt.Errorf("the link's page: %w", err)
	}
	form := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	resp, err := c.PostForm("https://paas."+benchpaasd.Domain+"/auth/link", form)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" {
		return nil, fmt.Errorf("sign-in with the link: %s at %s", resp.Status, resp.Request.URL)
	}
	return c, nil
}
