package dashboard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"paas/internal/paas"
)

// fakeCommands answers command lines from a table, as the dispatcher's
// --format json would, and records what ran.
type fakeCommands struct {
	out map[string]string // command name -> stdout
	ran [][]string
}

func (f *fakeCommands) RunCommand(_ context.Context, id paas.Identity, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	f.ran = append(f.ran, args)
	// The app "other" is another user's: it reads as missing.
	for _, a := range args {
		if a == "other" {
			fmt.Fprintln(stderr, " !     App other does not exist")
			return exitNotFound
		}
	}
	out, ok := f.out[args[0]]
	if !ok {
		out = "{}"
	}
	io.WriteString(stdout, out)
	return 0
}

type fakeSessions struct{}

func (fakeSessions) Authenticate(r *http.Request) (paas.Identity, bool, error) {
	if c, err := r.Cookie("s"); err == nil && c.Value == "alice" {
		return paas.Identity{Name: "alice"}, true, nil
	}
	return paas.Identity{}, false, nil
}
func (fakeSessions) CSRFToken(*http.Request) string { return "tok" }
func (fakeSessions) CheckCSRF(r *http.Request) error {
	if r.PostFormValue("csrf_token") != "tok" {
		return fmt.Errorf("missing or wrong CSRF token")
	}
	return nil
}

func newTest() (*Handler, *fakeCommands) {
	f := &fakeCommands{out: map[string]string{
		"apps:list":   `[{"name":"<b>evil</b>","state":"running","release":2,"url":"https://x.test","processes":[{"process":"web","running":1,"desired":2}]}]`,
		"apps:report": `{"owner":"alice","release":"2","url":"https://myapp.test"}`,
		"config:show": `{"SECRET":"<script>alert(1)</script>"}`,
		"releases":    `[{"version":2,"current":true},{"version":1}]`,
		"builds:list": `[{"id":7,"status":"succeeded","kind":"push"}]`, "builds:info": `{"id":7,"status":"succeeded","kind":"push","commit":"abcdef1234567"}`,
		"builds:output": "-----> Building <img src=x>\n",
		"tokens:list":   `[{"name":"ci","created_at":"2026-01-01T00:00:00Z","expires_at":null,"last_used_at":null}]`,
		"tokens:create": `{"name":"new","created_at":"2026-01-01T00:00:00Z","expires_at":null,"last_used_at":null,"token":"paas_secret"}`, "events": `[]`, "ps:report": `{"processes":[]}`, "acl:list": `{"owner":"alice","access":[]}`,
	}}
	return New(Options{Commands: f, Sessions: fakeSessions{}}), f
}

func do(h http.Handler, method, path string, form url.Values, signedIn bool) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if signedIn {
		r.AddCookie(&http.Cookie{Name: "s", Value: "alice"})
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPages(t *testing.T) {
	h, f := newTest()
	tests := []struct {
		name, method, path string
		form               url.Values
		signedIn           bool
		status             int
		has, hasNot        []string
	}{
		{name: "not signed in", method: "GET", path: "/apps/myapp", status: http.StatusSeeOther},
		{name: "app list escapes names", method: "GET", path: "/", signedIn: true, status: 200,
			has: []string{"&lt;b&gt;evil&lt;/b&gt;", "web 1/2", "v2", "https://x.test"}, hasNot: []string{"<b>evil</b>"}},
		{name: "config hidden", method: "GET", path: "/apps/myapp", signedIn: true, status: 200,
			has: []string{"SECRET", "••••••", `id="rollback-v1"`, `name="csrf_token" value="tok"`}, hasNot: []string{"alert(1)", `id="rollback-v2"`}},
		{name: "config revealed, escaped", method: "GET", path: "/apps/myapp?reveal=1", signedIn: true, status: 200,
			has: []string{"&lt;script&gt;alert(1)&lt;/script&gt;"}, hasNot: []string{"<script>alert"}},
		{name: "another's app is missing", method: "GET", path: "/apps/other", signedIn: true, status: http.StatusNotFound, has: []string{"App other does not exist"}},
		{name: "post without CSRF token", method: "POST", path: "/apps/myapp/rollback", form: url.Values{"version": {"1"}}, signedIn: true, status: http.StatusForbidden},
		{name: "rollback", method: "POST", path: "/apps/myapp/rollback", form: url.Values{"version": {"1"}, "csrf_token": {"tok"}}, signedIn: true, status: http.StatusSeeOther},
		{name: "bad page number", method: "GET", path: "/?page=x", signedIn: true, status: http.StatusBadRequest},
		{name: "build output, escaped", method: "GET", path: "/apps/myapp/builds/7", signedIn: true, status: 200,
			has: []string{"Building &lt;img src=x&gt;", "abcdef123456"}, hasNot: []string{"<img src=x>"}},
		{name: "tokens", method: "GET", path: "/tokens", signedIn: true, status: 200, has: []string{`data-token="ci"`}, hasNot: []string{"paas_secret"}},
		{name: "token made, shown once", method: "POST", path: "/tokens", form: url.Values{"name": {"new"}, "csrf_token": {"tok"}}, signedIn: true, status: http.StatusCreated,
			has: []string{`<pre id="new-token">paas_secret</pre>`}},
		{name: "nodes are for administrators", method: "GET", path: "/nodes", signedIn: true, status: http.StatusForbidden},
		{name: "script asset", method: "GET", path: "/assets/dashboard.js", status: 200, has: []string{"EventSource"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.ran = nil
			w := do(h, tt.method, tt.path, tt.form, tt.signedIn)
			body := w.Body.String()
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d\n%s", w.Code, tt.status, body)
			}
			for _, s := range tt.has {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q\n%s", s, body)
				}
			}
			for _, s := range tt.hasNot {
				if strings.Contains(body, s) {
					t.Errorf("page has %q", s)
				}
			}
			if tt.method == "POST" && tt.status == http.StatusForbidden && len(f.ran) > 0 {
				t.Errorf("a refused POST ran %v", f.ran)
			}
			if csp := w.Header().Get("Content-Security-Policy"); csp == "" {
				t.Error("no Content-Security-Policy")
			}
		})
	}
	// The buttons' command lines; a value that looks like a flag stays an argument.
	for _, tt := range []struct {
		action string
		form   url.Values
		want   string
	}{
		{"config-set", url.Values{"key": {"K"}, "value": {"a b"}}, "config:set --encoded myapp K=YSBi"},
		{"config-unset", url.Values{"key": {"K"}}, "config:unset myapp K"},
		{"scale", url.Values{"process": {"web"}, "count": {"3"}}, "ps:scale myapp web=3"},
		{"restart", url.Values{}, "ps:restart myapp"},
		{"rebuild", url.Values{}, "ps:rebuild myapp"},
		{"deploy-image", url.Values{"image": {"--help"}}, "git:from-image -- myapp --help"},
		{"rollback", url.Values{"version": {"v2"}}, "rollback myapp v2"},
	} {
		tt.form.Set("csrf_token", "tok")
		w := do(h, "POST", "/apps/myapp/"+tt.action, tt.form, true)
		if got := strings.Join(f.ran[len(f.ran)-1], " "); w.Code != http.StatusSeeOther || got != tt.want {
			t.Errorf("%s: %d %q, want %q", tt.action, w.Code, got, tt.want)
		}
	}
	if w := do(h, "POST", "/apps/myapp/scale", url.Values{"process": {"web=1"}, "count": {"1"}, "csrf_token": {"tok"}}, true); w.Code != http.StatusBadRequest {
		t.Errorf("scale with '=' in the process: %d", w.Code)
	}
	if w := do(h, "POST", "/apps/myapp/rollback", url.Values{"csrf_token": {"tok"}}, false); w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "signout") {
		t.Errorf("a POST not signed in: %d\n%s", w.Code, w.Body)
	}
}

func TestPagination(t *testing.T) {
	h, f := newTest()
	var b strings.Builder
	b.WriteString("[")
	for i := range 101 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"name":"app%03d","state":"running","processes":[]}`, i+200)
	}
	b.WriteString("]")
	f.out["apps:list"] = b.String()
	w := do(h, "GET", "/?page=3", nil, true)
	body := w.Body.String()
	if !strings.Contains(body, "app200") || !strings.Contains(body, "app299") || strings.Contains(body, "app300") ||
		!strings.Contains(body, "Apps 201 to 300 (page 3)") || !strings.Contains(body, `href="/?page=4"`) || !strings.Contains(body, `href="/?page=2"`) {
		t.Fatalf("page 3:\n%s", body)
	}
	if got := strings.Join(f.ran[0], " "); got != "apps:list --format json --detail --offset 200 --limit 101" {
		t.Fatalf("ran %q", got)
	}
}

func TestChanges(t *testing.T) {
	evs := []paas.Event{
		{ID: 1, Action: "push"},
		{ID: 2, Action: "config:set", Args: []string{"K=…"}},
		{ID: 3, Action: "logs", Args: []string{"-t"}},
		{ID: 4, Action: "rollback", Args: []string{"v1"}},
		{ID: 5, Action: "apps:report", Args: []string{"--format", "json"}},
	}
	got := changes(evs, 2)
	if len(got) != 2 || got[0].ID != 4 || got[1].ID != 2 {
		t.Fatalf("changes: %+v", got)
	}
}

// A running build's page follows its output (the API's stream, by the
// build's number, also when the page was asked for the latest); a
// finished one's does not.
func TestBuildPageFollows(t *testing.T) {
	h, f := newTest()
	if body := do(h, "GET", "/apps/myapp/builds/7", nil, true).Body.String(); strings.Contains(body, "data-follow") {
		t.Errorf("a finished build's page follows it:\n%s", body)
	}
	f.out["builds:info"] = `{"id":8,"status":"running","kind":"push"}`
	w := do(h, "GET", "/apps/myapp/builds/latest", nil, true)
	for _, want := range []string{`<span id="build-status">running</span>`, `data-follow="/api/v1/apps/myapp/builds/8/output?follow=1"`, `data-info="/api/v1/apps/myapp/builds/8"`, "Building &lt;img src=x&gt;"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("running build's page lacks %q\n%s", want, w.Body)
		}
	}
}

// The audit page leaves out the reads (page views record theirs), unless
// asked; newest first either way.
func TestAuditPage(t *testing.T) {
	h, f := newTest()
	f.out["events"] = `[{"id":1,"actor":"alice","app":"shop","action":"config:set","args":["A=…"],"result":"ok"},
{"id":2,"actor":"alice","app":"shop","action":"apps:report","args":["--format","json"],"result":"ok"},
{"id":3,"actor":"alice","app":"shop","action":"ps:scale","args":["web=…"],"result":"ok"},
{"id":4,"actor":"alice","app":"shop","action":"logs","result":"ok"},
{"id":5,"actor":"alice","action":"tokens:create","args":["--format","json","ci"],"result":"ok"},
{"id":6,"actor":"alice","app":"shop","action":"ps:scale","args":["--format","json"],"result":"ok"}]`
	body := do(h, "GET", "/audit", nil, true).Body.String()
	if got := f.ran[len(f.ran)-1]; strings.Join(got, " ") != "events --format json -n 5000" {
		t.Fatalf("ran %q", got)
	}
	if !strings.Contains(body, "config:set A=…") || !strings.Contains(body, "ps:scale web=…") || !strings.Contains(body, "tokens:create --format json ci") ||
		strings.Contains(body, "apps:report") || strings.Contains(body, ">logs<") || strings.Contains(body, "ps:scale --format") {
		t.Fatalf("changes only:\n%s", body)
	}
	if strings.Index(body, "ps:scale") > strings.Index(body, "config:set") {
		t.Fatalf("not newest first:\n%s", body)
	}
	body = do(h, "GET", "/audit?reads=1", nil, true).Body.String()
	if got := f.ran[len(f.ran)-1]; strings.Join(got, " ") != "events --format json -n 200" {
		t.Fatalf("ran %q", got)
	}
	if !strings.Contains(body, "apps:report --format json") || !strings.Contains(body, ">logs<") ||
		strings.Index(body, ">logs<") > strings.Index(body, "config:set") {
		t.Fatalf("with the reads, newest first:\n%s", body)
	}
}
