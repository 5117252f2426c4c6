package main

// Browser sign-in end to end (signin.txtar): the link of `ssh paas login`
// followed with the real HTTP client and a cookie jar, through the router
// to paasd's /auth/, and the session then used on the HTTP API.

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	scriptCmds["signin-password"] = cmdSigninPassword
	scriptCmds["signin-link"] = cmdSigninLink
}

// signin-link FILE: opens the link the file's last line holds, presses its
// button, and prints what a browser then sees: the page of /auth/ (who is
// signed in), GET /api/v1/whoami with the session cookie, and the status of
// a POST to the API without the session's CSRF token. With "replay", it
// opens the link a second time as another browser and prints that status.
func cmdSigninLink(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: signin-link FILE")
	}
	link := lastLine(ts, args[0])
	jar, _ := cookiejar.New(nil)
	c := apiClient(ts)
	c.Jar = jar
	get := func(u string) (int, string) {
		resp, err := c.Get(u)
		ts.Check(err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, page := get(link)
	ts.Logf("link page: %d", code)
	if code != http.StatusOK {
		ts.Fatalf("link page: %d\n%s", code, page)
	}
	u, err := url.Parse(link)
	ts.Check(err)
	form := url.Values{"form_token": {hiddenValue(ts, page, "form_token")}, "token": {hiddenValue(ts, page, "token")}}
	resp, err := c.PostForm(u.Scheme+"://"+u.Host+"/auth/link", form)
	ts.Check(err)
	resp.Body.Close()
	base := u.Scheme + "://" + u.Host
	code, page = get(base + "/auth/")
	ts.Stdout().Write([]byte(page))
	code, body := get(base + "/api/v1/whoami")
	ts.Stdout().Write([]byte("whoami " + http.StatusText(code) + " " + body + "\n"))
	req, _ := http.NewRequest("POST", base+"/api/v1/apps", strings.NewReader(`{"name":"csrf1"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err = c.Do(req)
	ts.Check(err)
	resp.Body.Close()
	ts.Stdout().Write([]byte("post without csrf token: " + resp.Status + "\n"))
	other := apiClient(ts)
	resp, err = other.Get(link)
	ts.Check(err)
	resp.Body.Close()
	ts.Stdout().Write([]byte("link again: " + resp.Status + "\n"))
}

// signin-password USER PASSWORD: sign in through the router with the
// directory's password form (paasd without OIDC, with --ldap-url), with Go's
// HTTP client and a cookie jar as a browser would; prints the form's answer
// status and, signed in, the API's whoami.
func cmdSigninPassword(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: signin-password USER PASSWORD")
	}
	base := "https://paas.paas.test:" + ts.Getenv("HTTPS_PORT")
	jar, _ := cookiejar.New(nil)
	c := apiClient(ts)
	c.Jar = jar
	resp, err := c.Get(base + "/auth/login")
	ts.Check(err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ts.Fatalf("sign-in page: %s\n%s", resp.Status, page)
	}
	resp, err = c.PostForm(base+"/auth/login", url.Values{
		"form_token": {hiddenValue(ts, string(page), "form_token")}, "return_to": {"/"},
		"username": {args[0]}, "password": {args[1]},
	})
	ts.Check(err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Fprintf(ts.Stdout(), "sign-in: %s\n", resp.Status)
	resp, err = c.Get(base + "/api/v1/whoami")
	ts.Check(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Fprintf(ts.Stdout(), "whoami: %s %s\n", resp.Status, strings.TrimSpace(string(body)))
	if (resp.StatusCode != http.StatusOK) != neg {
		ts.Fatalf("whoami: %s", resp.Status)
	}
}

func hiddenValue(ts *testscript.TestScript, page, name string) string {
	marker := `name="` + name + `" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		ts.Fatalf("no %s in the page:\n%s", name, page)
	}
	rest := page[i+len(marker):]
	return html.UnescapeString(rest[:strings.IndexByte(rest, '"')])
}

// lastLine is the last line of the file (the link `ssh paas login` printed).
func lastLine(ts *testscript.TestScript, file string) string {
	data, err := os.ReadFile(ts.MkAbs(file))
	ts.Check(err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return lines[len(lines)-1]
}
