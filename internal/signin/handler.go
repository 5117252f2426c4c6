package signin

import (
	"crypto/hmac"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"paas/internal/directory"
	"paas/internal/paas"
)

// The paths of the sign-in pages, under /auth/.
const (
	PathLogin    = "/auth/login"
	PathCallback = "/auth/callback"
	PathLink     = "/auth/link"
	PathLogout   = "/auth/logout"
	PathWhoami   = "/auth/"
)

func (s *Service) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathLogin, s.loginPage)
	mux.HandleFunc("POST "+PathLogin, s.passwordLogin)
	mux.HandleFunc("GET "+PathCallback, s.callbackOrUnavailable)
	mux.HandleFunc("GET "+PathLink, s.linkPage)
	mux.HandleFunc("POST "+PathLink, s.linkLogin)
	mux.HandleFunc("POST "+PathLogout, s.logout)
	mux.HandleFunc("GET "+PathWhoami+"{$}", s.whoami)
	s.mux = mux
}

// ServeHTTP serves /auth/: mount it at that prefix (with or without the
// prefix stripped). Every answer carries SecureHeaders and no-store.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/auth/") {
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = "/auth/" + strings.TrimPrefix(u.Path, "/")
		u.RawPath = ""
		r2.URL = &u
		r = r2
	}
	SecureHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	s.mux.ServeHTTP(w, r)
}

// loginPage sends the browser to the OIDC provider, or shows the password
// form, or says how to get a link.
func (s *Service) loginPage(w http.ResponseWriter, r *http.Request) {
	returnTo, ok := SafeReturnTo(r.URL.Query().Get("return_to"))
	if !ok {
		s.refuse(r, "", "sign-in", "return_to "+strconv.Quote(truncate(r.URL.Query().Get("return_to")))+" is not a path of this site")
	}
	if _, _, signedIn := s.session(r); signedIn {
		http.Redirect(w, r, returnTo, http.StatusSeeOther)
		return
	}
	if r.URL.Query().Has("signed_out") {
		s.page(w, r, http.StatusOK, pageData{Title: "Signed out", Message: "You are signed out.", SignIn: true})
		return
	}
	if s.oidc != nil {
		s.startOIDC(w, r, returnTo)
		return
	}
	s.page(w, r, http.StatusOK, s.formPage(w, r, returnTo, ""))
}

// formPage is the sign-in page without OIDC, with the form token.
func (s *Service) formPage(w http.ResponseWriter, r *http.Request, returnTo, msg string) pageData {
	d := pageData{Title: "Sign in to paas", Message: msg, ReturnTo: returnTo, Password: s.cfg.Directory != nil}
	if d.Password {
		d.FormToken = s.formToken(w, r)
	} else {
		d.Message = "Run `ssh paas login` and open the link it prints (valid 60 s, once)."
	}
	return d
}

// formToken returns the form token of the browser's binding cookie: a form
// posted from another site carries the cookie but not the token (no login
// CSRF: no one can sign another's browser in as themselves).
func (s *Service) formToken(w http.ResponseWriter, r *http.Request) string {
	return b64(s.mac("form", s.binding(w, r)))
}

// checkFormToken reports whether the form's token matches the cookie.
func (s *Service) checkFormToken(r *http.Request) bool {
	raw, ok := s.requestBinding(r)
	if !ok {
		return false
	}
	tok, err := b64decode(r.PostFormValue("form_token"))
	return err == nil && hmac.Equal(tok, s.mac("form", raw))
}

// Failed password sign-ins a user name may have in failureWindow.
const (
	maxFailures   = 5
	failureWindow = 5 * time.Minute
)

// passwordLogin signs in with a directory user name and password (an LDAP
// bind as that user; the password is kept nowhere).
func (s *Service) passwordLogin(w http.ResponseWriter, r *http.Request) {
	returnTo, ok := SafeReturnTo(r.PostFormValue("return_to"))
	if !ok {
		s.refuse(r, "", "sign-in", "return_to "+strconv.Quote(truncate(r.PostFormValue("return_to")))+" is not a path of this site")
	}
	if s.cfg.Directory == nil || s.oidc != nil {
		http.Error(w, "password sign-in is off", http.StatusNotFound)
		return
	}
	if !s.checkFormToken(r) {
		s.refuse(r, "", "sign-in", "password form without its token (CSRF)")
		s.page(w, r, http.StatusForbidden, s.formPage(w, r, returnTo, "The form expired. Sign in again."))
		return
	}
	name, password := r.PostFormValue("username"), r.PostFormValue("password")
	if s.tooManyFailures(name) {
		s.refuse(r, name, "sign-in", "too many failed passwords")
		s.page(w, r, http.StatusTooManyRequests, s.formPage(w, r, returnTo, "Too many failed attempts. Wait a few minutes."))
		return
	}
	u, err := s.cfg.Directory.Authenticate(r.Context(), name, password)
	switch {
	case errors.Is(err, directory.ErrBadPassword):
		s.addFailure(name)
		s.refuse(r, truncate(name), "sign-in", "wrong user name or password")
		s.page(w, r, http.StatusUnauthorized, s.formPage(w, r, returnTo, "Wrong user name or password."))
		return
	case err != nil:
		s.log.Error("password sign-in: directory", "err", err)
		s.page(w, r, http.StatusServiceUnavailable, s.formPage(w, r, returnTo, "The directory cannot be reached now. Try again in a minute."))
		return
	}
	s.setCookie(w, bindCookie, "", -1)
	id := paas.Identity{Name: u.Name, Admin: u.Admin, Groups: u.Groups, Source: SourcePassword}
	if err := s.startSession(w, r, id); err != nil {
		s.page(w, r, http.StatusServiceUnavailable, pageData{Title: "Sign-in busy", Message: err.Error()})
		return
	}
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

func (s *Service) tooManyFailures(name string) bool {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	recent := s.failures[name][:0]
	for _, t := range s.failures[name] {
		if now.Sub(t) < failureWindow {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(s.failures, name)
	} else {
		s.failures[name] = recent
	}
	return len(recent) >= maxFailures
}

func (s *Service) addFailure(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) >= maxPending {
		clear(s.failures)
	}
	s.failures[name] = append(s.failures[name], s.cfg.Now())
}

func (s *Service) callbackOrUnavailable(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		http.Error(w, "OpenID Connect sign-in is off", http.StatusNotFound)
		return
	}
	s.callback(w, r)
}

// logout ends the session (a POST with the session's CSRF token).
func (s *Service) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.CheckCSRF(r); err != nil {
		s.refuse(r, "", "sign-out", err.Error())
		s.page(w, r, http.StatusForbidden, pageData{Title: "Refused", Message: "This request did not come from a paas page."})
		return
	}
	id, found := s.endSession(w, r)
	if found {
		s.log.Info("signed out", "user", id.Name, "remote", r.RemoteAddr)
		s.record(&paas.Event{Actor: id.Name, Source: id.Source, Action: "sign-out", Result: "ok"})
	}
	http.Redirect(w, r, PathLogin+"?signed_out=1", http.StatusSeeOther)
}

// whoami shows who is signed in, with a sign-out button.
func (s *Service) whoami(w http.ResponseWriter, r *http.Request) {
	id, raw, ok := s.session(r)
	if !ok {
		http.Redirect(w, r, PathLogin+"?return_to="+url.QueryEscape(PathWhoami), http.StatusSeeOther)
		return
	}
	s.page(w, r, http.StatusOK, pageData{Title: "Signed in", User: &id, CSRF: b64(s.mac("csrf", raw))})
}

// pageData is what the sign-in pages show; html/template escapes each value.
type pageData struct {
	Title, Message string
	ReturnTo       string
	Password       bool   // show the password form
	FormToken      string // of the password or link form
	Link           string // the link's token, on its confirmation page
	LinkUser       string
	User           *paas.Identity // who is signed in
	CSRF           string
	Retry, SignIn  bool
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}}</title></head>
<body><main>
<h1>{{.Title}}</h1>
{{with .Message}}<p id="message">{{.}}</p>{{end}}
{{if .Password}}<form method="post" action="/auth/login">
<input type="hidden" name="form_token" value="{{.FormToken}}"><input type="hidden" name="return_to" value="{{.ReturnTo}}">
<p><label>User name <input id="username" name="username" autocomplete="username" required></label></p>
<p><label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label></p>
<p><button id="signin" type="submit">Sign in</button></p>
</form>{{end}}
{{with .Link}}<form method="post" action="/auth/link">
<input type="hidden" name="form_token" value="{{$.FormToken}}"><input type="hidden" name="token" value="{{.}}">
<p><button id="signin" type="submit">Sign in as {{$.LinkUser}}</button></p>
</form>{{end}}
{{with .User}}<p id="user">Signed in as <b id="name">{{.Name}}</b>{{if .Admin}} (administrator){{end}}{{with .Groups}}, groups: <span id="groups">{{range $i, $g := .}}{{if $i}}, {{end}}{{$g}}{{end}}</span>{{end}}</p>
<form method="post" action="/auth/logout"><input type="hidden" name="csrf_token" value="{{$.CSRF}}"><button id="signout" type="submit">Sign out</button></form>{{end}}
{{if or .Retry .SignIn}}<p><a id="again" href="/auth/login">Sign in</a></p>{{end}}
</main></body></html>
`))

func (s *Service) page(w http.ResponseWriter, r *http.Request, code int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := pageTmpl.Execute(w, d); err != nil {
		s.log.Debug("write sign-in page", "err", err, "path", r.URL.Path)
	}
}

// SafeReturnTo returns v when it is a path of this site to go back to after
// signing in, and "/" with ok false otherwise: no scheme, no host, no
// "//" or backslash (which browsers read as another host), no control
// characters, at most 2 KB.
func SafeReturnTo(v string) (string, bool) {
	if v == "" {
		return "/", true
	}
	if len(v) > 2048 || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") ||
		strings.ContainsAny(v, "\\") || paas.ValidateArg(v) != nil {
		return "/", false
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/", false
	}
	// A path that starts with an encoded slash or backslash reads as a
	// host once decoded by some redirectors.
	if lower := strings.ToLower(v); strings.HasPrefix(lower, "/%2f") || strings.HasPrefix(lower, "/%5c") {
		return "/", false
	}
	return v, true
}

func truncate(s string) string {
	if len(s) > 80 {
		return strings.ToValidUTF8(s[:80], "") + "…"
	}
	return s
}

// sanitize makes a provider's error text safe for a log line.
func sanitize(s string) string {
	s = truncate(s)
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
