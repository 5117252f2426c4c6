// Package dashboard is the web dashboard of paas.DOMAIN: server-rendered
// pages (html/template, embedded) for a signed-in browser, in which every
// button runs a command line through the very dispatcher `ssh paas` runs
// (with --format json where it reads), so the access rules, validation and
// audit log are the commands' own: an app one may not use reads as missing
// (404), and nothing here decides what a user may do.
//
// The pages: / (my apps), /apps/NAME (processes, releases, config, domains,
// certificates, builds, live logs, access list, events, and the buttons),
// /apps/NAME/builds/ID (a build's output), /nodes, /audit and /tokens.
// Every POST carries the session's CSRF token (checked here and by the
// web server's guard); the only script, assets/dashboard.js, streams the
// live logs from the API's server-sent events.
package dashboard

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"paas/internal/paas"
	"paas/internal/signin"
	"paas/internal/web"
)

// PageSize is how many apps the app list shows per page.
const PageSize = 100

// Exit codes of the commands (commands.Exit*), which this layer may not import.
const (
	exitOK       = 0
	exitNotFound = 20
)

// Sessions says who a browser is and gives its CSRF token (signin.Service).
type Sessions interface {
	Authenticate(r *http.Request) (paas.Identity, bool, error)
	CSRFToken(r *http.Request) string
	CheckCSRF(r *http.Request) error
}

var _ Sessions = (*signin.Service)(nil)

// Options configure a Handler.
type Options struct {
	// Commands runs command lines as SSH does (the dispatcher behind the
	// user-auth trigger).
	Commands web.Commands
	Sessions Sessions
	Log      *slog.Logger
}

// Handler serves the dashboard; mount it at "/".
type Handler struct {
	opts Options
	mux  *http.ServeMux
	log  *slog.Logger
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

var pages = map[string]*template.Template{}

func init() {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"short": func(s string, n int) string {
			s = strings.TrimPrefix(s, "sha256:")
			return s[:min(len(s), n)]
		},
		"seconds": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + " s" },
		"add":     func(a, b int) int { return a + b },
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	for _, name := range []string{"apps", "app", "build", "nodes", "audit", "tokens", "error"} {
		t := template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
		pages[name] = t
	}
}

// New returns the dashboard's handler.
func New(opts Options) *Handler {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	h := &Handler{opts: opts, mux: http.NewServeMux(), log: opts.Log.With("component", "dashboard")}
	m := h.mux
	m.Handle("GET /assets/", http.FileServerFS(assetFS))
	m.HandleFunc("GET /{$}", h.signedIn(h.appsPage))
	m.HandleFunc("GET /apps/{app}", h.signedIn(h.appPage))
	m.HandleFunc("GET /apps/{app}/builds/{id}", h.signedIn(h.buildPage))
	m.HandleFunc("POST /apps/{app}/{action}", h.signedIn(h.appAction))
	m.HandleFunc("GET /nodes", h.signedIn(h.nodesPage))
	m.HandleFunc("GET /audit", h.signedIn(h.auditPage))
	m.HandleFunc("GET /tokens", h.signedIn(h.tokensPage))
	m.HandleFunc("POST /tokens", h.signedIn(h.tokensCreate))
	m.HandleFunc("POST /tokens/revoke", h.signedIn(h.tokensRevoke))
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	signin.SecureHeaders(w.Header())
	if strings.HasPrefix(r.URL.Path, "/assets/") {
		w.Header().Set("Cache-Control", "public, max-age=300")
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

// request is one signed-in request.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	id   paas.Identity
	csrf string
}

// signedIn runs fn for a browser with a live session; another is sent to
// sign in (and back here after). A POST must carry the session's CSRF token.
func (h *Handler) signedIn(fn func(q *request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok, err := h.opts.Sessions.Authenticate(r)
		if err != nil || !ok {
			if r.Method != http.MethodGet {
				h.errorPage(&request{w: w, r: r}, http.StatusUnauthorized, "Sign in first.")
				return
			}
			http.Redirect(w, r, signin.PathLogin+"?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := h.opts.Sessions.CheckCSRF(r); err != nil {
				h.errorPage(&request{w: w, r: r, id: id}, http.StatusForbidden, "This request did not come from a paas page ("+err.Error()+"): nothing was changed.")
				return
			}
		}
		fn(&request{w: w, r: r, id: id, csrf: h.opts.Sessions.CSRFToken(r)})
	}
}

// commandError is a command that failed: its exit code and message.
type commandError struct {
	code int
	msg  string
}

func (e *commandError) Error() string { return e.msg }

// status is the HTTP status a failed command answers with, as the API's.
func (e *commandError) status() int {
	switch {
	case e.code == exitNotFound:
		return http.StatusNotFound
	case strings.Contains(e.msg, "for administrators only") || strings.HasPrefix(e.msg, "permission denied"):
		return http.StatusForbidden
	}
	return http.StatusUnprocessableEntity
}

// run runs a command line as the request's user and returns its output.
func (h *Handler) run(q *request, stdin io.Reader, args ...string) ([]byte, error) {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code := h.opts.Commands.RunCommand(q.r.Context(), q.id, web.PlainArgs(args), stdin, &out, &errb)
	if code != exitOK {
		msg := strings.TrimSpace(strings.ReplaceAll(errb.String(), " !     ", ""))
		return out.Bytes(), &commandError{code: code, msg: cmp.Or(msg, "the command failed")}
	}
	return out.Bytes(), nil
}

// runJSON runs a command with --format json and decodes its output into v.
// The arguments that come from the user follow a "--" in args.
func (h *Handler) runJSON(q *request, v any, cmd string, args ...string) error {
	out, err := h.run(q, nil, append([]string{cmd, "--format", "json"}, args...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("read the output of %s: %w", cmd, err)
	}
	return nil
}

// page is what every page shows around its own content.
type page struct {
	Title string
	User  paas.Identity
	CSRF  string
	Nav   string
	Flash string
	Error string
	Data  any
}

func (h *Handler) render(q *request, status int, name string, p page) {
	p.User, p.CSRF = q.id, q.csrf
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		h.log.Error("render page", "page", name, "err", err)
		http.Error(q.w, "the page could not be made", http.StatusInternalServerError)
		return
	}
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	q.w.WriteHeader(status)
	q.w.Write(buf.Bytes())
}

func (h *Handler) errorPage(q *request, status int, msg string) {
	h.render(q, status, "error", page{Title: http.StatusText(status), Error: msg})
}

// fail shows err: a command's with the status the API would answer.
func (h *Handler) fail(q *request, err error) {
	var ce *commandError
	if errors.As(err, &ce) {
		h.errorPage(q, ce.status(), ce.msg)
		return
	}
	h.log.Error("dashboard", "path", q.r.URL.Path, "err", err)
	h.errorPage(q, http.StatusInternalServerError, "Something went wrong: "+err.Error())
}

// AppSummary is one app of `apps:list --detail --format json`.
type AppSummary struct {
	Name       string         `json:"name"`
	State      string         `json:"state"`
	Release    int            `json:"release"`
	DeployedAt time.Time      `json:"deployed_at"`
	URL        string         `json:"url"`
	Processes  []ProcessCount `json:"processes"`
}

// ProcessCount is one process type's tasks running and desired.
type ProcessCount struct {
	Process string `json:"process"`
	Running int    `json:"running"`
	Desired int    `json:"desired"`
}

type appsData struct {
	Apps        []AppSummary
	Page        int
	First, Last int // the numbers of the page's first and last apps
	Prev, Next  int // pages; 0: none
}

// appsPage lists a page of the apps: the command makes the details of
// that page only (and one more app, which tells whether a next page exists).
func (h *Handler) appsPage(q *request) {
	pageNo := 1
	if v := q.r.URL.Query().Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10_000_000 {
			h.errorPage(q, http.StatusBadRequest, "page: want a number from 1")
			return
		}
		pageNo = n
	}
	var apps []AppSummary
	offset := (pageNo - 1) * PageSize
	if err := h.runJSON(q, &apps, "apps:list", "--detail", "--offset", strconv.Itoa(offset), "--limit", strconv.Itoa(PageSize+1)); err != nil {
		h.fail(q, err)
		return
	}
	d := appsData{Page: pageNo, First: offset + 1}
	if len(apps) > PageSize {
		apps, d.Next = apps[:PageSize], pageNo+1
	}
	d.Apps, d.Last = apps, offset+len(apps)
	if pageNo > 1 {
		d.Prev = pageNo - 1
	}
	h.render(q, http.StatusOK, "apps", page{Title: "My apps", Nav: "apps", Data: d})
}

// The JSON documents of the commands the app page shows.
type (
	psReport struct {
		Processes []struct {
			Process string `json:"process"`
			Release int    `json:"release"`
			Desired int    `json:"desired"`
			Running int    `json:"running"`
			Tasks   []struct {
				ID    string `json:"id"`
				Slot  int    `json:"slot"`
				State string `json:"state"`
				Error string `json:"error"`
				Node  string `json:"node"`
			} `json:"tasks"`
		} `json:"processes"`
	}
	release struct {
		Version     int       `json:"version"`
		Current     bool      `json:"current"`
		Image       string    `json:"image"`
		Commit      string    `json:"commit"`
		Author      string    `json:"author"`
		Description string    `json:"description"`
		CreatedAt   time.Time `json:"created_at"`
	}
	build struct {
		ID        int       `json:"id"`
		Status    string    `json:"status"`
		Kind      string    `json:"kind"`
		Builder   string    `json:"builder"`
		Commit    string    `json:"commit"`
		Author    string    `json:"author"`
		Release   int       `json:"release"`
		Error     string    `json:"error"`
		StartedAt time.Time `json:"started_at"`
		Duration  float64   `json:"duration_seconds"`
	}
	accessList struct {
		Owner  string   `json:"owner"`
		Access []string `json:"access"`
	}
)

// configVar is one config variable; Value is "" unless revealed.
type configVar struct {
	Key, Value string
}

// section is what a part of the app page shows, or why it cannot.
type appData struct {
	Name       string
	Report     map[string]string
	PS         psReport
	PSError    string
	Releases   []release
	Config     []configVar
	Revealed   bool
	ConfigErr  string
	Domains    map[string]string
	DomainsErr string
	Certs      map[string]any
	CertsErr   string
	Builds     []build
	Access     *accessList
	AccessErr  string
	Events     []paas.Event
	Deployed   bool
	LogsURL    string
	PSURL      string // the tasks' state as it changes (server-sent events)
	BuildsURL  string // the builds as they start and end (server-sent events)
}

// flashes are the messages a redirect after an action may ask for.
var flashes = map[string]string{
	"rollback": "Rolled back.", "restart": "Restarted.", "scale": "Scaled.", "rebuild": "Rebuilt and deployed.",
	"deploy-image": "Image deployed.", "config-set": "Config set.", "config-unset": "Config unset.",
}

func (h *Handler) appPage(q *request) {
	name := q.r.PathValue("app")
	d := appData{Name: name, Revealed: q.r.URL.Query().Get("reveal") == "1"}
	// apps:report first: an app one may not use stops here as missing.
	if err := h.runJSON(q, &d.Report, "apps:report", "--", name); err != nil {
		h.fail(q, err)
		return
	}
	d.Deployed = d.Report["release"] != "" && d.Report["release"] != "0"
	if err := h.runJSON(q, &d.PS, "ps:report", "--", name); err != nil {
		d.PSError = err.Error()
	}
	if err := h.runJSON(q, &d.Releases, "releases", "--", name); err != nil {
		h.fail(q, err)
		return
	}
	var cfg map[string]string
	if err := h.runJSON(q, &cfg, "config:show", "--", name); err != nil {
		d.ConfigErr = err.Error()
	}
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		v := configVar{Key: k}
		if d.Revealed {
			v.Value = cfg[k]
		}
		d.Config = append(d.Config, v)
	}
	if err := h.runJSON(q, &d.Domains, "domains:report", "--", name); err != nil {
		d.DomainsErr = err.Error()
	}
	if err := h.runJSON(q, &d.Certs, "certs:report", "--", name); err != nil {
		d.CertsErr = err.Error()
	}
	if err := h.runJSON(q, &d.Builds, "builds:list", "--", name); err != nil {
		h.fail(q, err)
		return
	}
	var acl accessList
	if err := h.runJSON(q, &acl, "acl:list", "--", name); err != nil {
		d.AccessErr = err.Error()
	} else {
		d.Access = &acl
	}
	var evs []paas.Event
	if err := h.runJSON(q, &evs, "events", "-n", "300", "--", name); err != nil {
		h.fail(q, err)
		return
	}
	d.Events = changes(evs, 30)
	d.LogsURL = web.APIPrefix + "/apps/" + url.PathEscape(name) + "/logs?follow=1&lines=50"
	d.PSURL = web.APIPrefix + "/apps/" + url.PathEscape(name) + "/ps?follow=1"
	d.BuildsURL = web.APIPrefix + "/apps/" + url.PathEscape(name) + "/builds?follow=1"
	h.render(q, http.StatusOK, "app", page{Title: name, Nav: "apps", Flash: flashes[q.r.URL.Query().Get("done")], Data: d})
}

// appAction runs the command of a button of the app page, then goes back
// to the page (or shows why the command failed).
func (h *Handler) appAction(q *request) {
	name, action := q.r.PathValue("app"), q.r.PathValue("action")
	form := func(k string) string { return strings.TrimSpace(q.r.PostFormValue(k)) }
	var args []string
	switch action {
	case "rollback":
		args = []string{"rollback", "--", name}
		if v := form("version"); v != "" {
			args = append(args, "v"+strings.TrimPrefix(v, "v"))
		}
	case "restart":
		args = []string{"ps:restart", "--", name}
		if p := form("process"); p != "" {
			args = append(args, p)
		}
	case "scale":
		p, n := form("process"), form("count")
		if p == "" || n == "" || strings.Contains(p, "=") {
			h.errorPage(q, http.StatusBadRequest, "scale: give a process type and a number of tasks")
			return
		}
		args = []string{"ps:scale", "--", name, p + "=" + n}
	case "rebuild":
		args = []string{"ps:rebuild", "--", name}
	case "deploy-image":
		img := form("image")
		if img == "" {
			h.errorPage(q, http.StatusBadRequest, "deploy an image: give the image")
			return
		}
		args = []string{"git:from-image", "--", name, img}
	case "config-set":
		k := form("key")
		if k == "" || strings.Contains(k, "=") {
			h.errorPage(q, http.StatusBadRequest, "config: give a KEY without '='")
			return
		}
		// The value travels base64-encoded: any byte of it stays as typed.
		args = []string{"config:set", "--encoded", "--", name, k + "=" + base64.StdEncoding.EncodeToString([]byte(q.r.PostFormValue("value")))}
	case "config-unset":
		args = []string{"config:unset", "--", name, form("key")}
	default:
		h.errorPage(q, http.StatusNotFound, "no such action")
		return
	}
	if _, err := h.run(q, nil, args...); err != nil {
		h.fail(q, err)
		return
	}
	http.Redirect(q.w, q.r, "/apps/"+url.PathEscape(name)+"?done="+action, http.StatusSeeOther)
}

type buildData struct {
	App    string
	Build  build
	Output string
	// while the build runs: its output as it is written (server-sent
	// events, builds:output --follow) and where to read its end
	FollowURL, InfoURL string
}

func (h *Handler) buildPage(q *request) {
	name, id := q.r.PathValue("app"), q.r.PathValue("id")
	d := buildData{App: name}
	if err := h.runJSON(q, &d.Build, "builds:info", "--", name, id); err != nil {
		h.fail(q, err)
		return
	}
	out, err := h.run(q, nil, "builds:output", "--", name, id)
	if err != nil {
		h.fail(q, err)
		return
	}
	d.Output = string(out)
	if d.Build.Status == paas.DeployRunning {
		build := web.APIPrefix + "/apps/" + url.PathEscape(name) + "/builds/" + strconv.Itoa(d.Build.ID)
		d.FollowURL, d.InfoURL = build+"/output?follow=1", build
	}
	h.render(q, http.StatusOK, "build", page{Title: fmt.Sprintf("%s build %d", name, d.Build.ID), Nav: "apps", Data: d})
}

type node struct {
	Name         string         `json:"name"`
	Role         string         `json:"role"`
	Leader       bool           `json:"leader"`
	State        string         `json:"state"`
	Availability string         `json:"availability"`
	Addr         string         `json:"address"`
	Tasks        map[string]int `json:"tasks"`
	NanoCPUs     int64          `json:"nano_cpus"`
	MemoryBytes  int64          `json:"memory_bytes"`
}

func (h *Handler) nodesPage(q *request) {
	if !q.id.Admin {
		h.errorPage(q, http.StatusForbidden, "The nodes are for administrators only.")
		return
	}
	var nodes []node
	if err := h.runJSON(q, &nodes, "nodes:list"); err != nil {
		h.fail(q, err)
		return
	}
	h.render(q, http.StatusOK, "nodes", page{Title: "Nodes", Nav: "nodes", Data: nodes})
}

type auditData struct {
	Events []paas.Event
	Reads  bool // the reads shown too
}

// auditPage shows the newest 200 changes one may see, or with ?reads=1 the
// newest 200 events of any kind: every page view records its reads, which
// would otherwise push what was done off the page within minutes.
func (h *Handler) auditPage(q *request) {
	d := auditData{Reads: q.r.URL.Query().Get("reads") == "1"}
	n := auditScan
	if d.Reads {
		n = auditShown
	}
	var evs []paas.Event
	if err := h.runJSON(q, &evs, "events", "-n", strconv.Itoa(n)); err != nil {
		h.fail(q, err)
		return
	}
	if d.Reads {
		d.Events = slices.Clone(evs)
		slices.Reverse(d.Events) // newest first, as without the reads
	} else {
		d.Events = changes(evs, auditShown)
	}
	h.render(q, http.StatusOK, "audit", page{Title: "Audit log", Nav: "audit", Data: d})
}

// The audit page shows auditShown events; without the reads, it looks for
// them among the newest auditScan.
const (
	auditShown = 200
	auditScan  = 5000
)

type token struct {
	Name       string  `json:"name"`
	CreatedAt  string  `json:"created_at"`
	ExpiresAt  *string `json:"expires_at"`
	LastUsedAt *string `json:"last_used_at"`
	Token      string  `json:"token"`
}

type tokensData struct {
	Tokens []token
	New    *token // the token just made, shown this once
}

func (h *Handler) tokens(q *request, status int, d tokensData, flash string) {
	if err := h.runJSON(q, &d.Tokens, "tokens:list"); err != nil {
		h.fail(q, err)
		return
	}
	h.render(q, status, "tokens", page{Title: "My API tokens", Nav: "tokens", Flash: flash, Data: d})
}

func (h *Handler) tokensPage(q *request) {
	flash := ""
	if q.r.URL.Query().Get("done") == "revoke" {
		flash = "Token revoked."
	}
	h.tokens(q, http.StatusOK, tokensData{}, flash)
}

func (h *Handler) tokensCreate(q *request) {
	name := strings.TrimSpace(q.r.PostFormValue("name"))
	args := []string{"tokens:create", "--format", "json"}
	if e := strings.TrimSpace(q.r.PostFormValue("expires")); e != "" {
		args = append(args, "--expires", e)
	}
	out, err := h.run(q, nil, append(args, "--", name)...)
	if err != nil {
		h.fail(q, err)
		return
	}
	var t token
	if err := json.Unmarshal(out, &t); err != nil {
		h.fail(q, fmt.Errorf("read the new token: %w", err))
		return
	}
	h.tokens(q, http.StatusCreated, tokensData{New: &t}, "")
}

func (h *Handler) tokensRevoke(q *request) {
	if _, err := h.run(q, nil, "tokens:revoke", "--", q.r.PostFormValue("name")); err != nil {
		h.fail(q, err)
		return
	}
	http.Redirect(q.w, q.r, "/tokens?done=revoke", http.StatusSeeOther)
}

// changes are the newest (at most n, newest first) of evs (oldest first,
// as `events` lists them) that are not reads: the audit log records every
// command, the reads of these very pages too, and an app's page shows what
// was done to it.
func changes(evs []paas.Event, n int) []paas.Event {
	out := make([]paas.Event, 0, n)
	for _, e := range slices.Backward(evs) {
		if len(out) == n {
			break
		}
		if isRead(e) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// isRead reports whether e is a command that changes nothing, by its name:
// a report, list, show... and ps:scale without a KEY=N (the formation).
func isRead(e paas.Event) bool {
	switch e.Action {
	case "logs", "events", "releases", "whoami", "help", "version", "url", "urls", "login", "apps:locked", "nodes:join-command":
		return true
	case "ps:scale":
		return !slices.ContainsFunc(e.Args, func(a string) bool { return strings.Contains(a, "=") })
	}
	_, verb, _ := strings.Cut(e.Action, ":")
	switch verb {
	case "report", "list", "show", "info", "get", "keys", "export", "output", "inspect", "exists", "logs", "failed":
		return true
	}
	return false
}
