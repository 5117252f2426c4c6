package signin

import (
	"crypto/hmac"
	"errors"
	"net/http"
	"strings"
)

// CSRF tokens. A state-changing request from a page signed in by cookie
// carries the session's token, in the form field CSRFField or the header
// CSRFHeader; another site can make the browser send the cookie, but
// cannot read the token.
const (
	CSRFField  = "csrf_token"
	CSRFHeader = "X-CSRF-Token"
)

// ErrCSRF is returned by CheckCSRF for a request without the session's token.
var ErrCSRF = errors.New("missing or wrong CSRF token")

// CSRFToken returns the CSRF token of the request's session, for the
// dashboard's forms and scripts; "" without a live session. It is derived
// from the session's ID with the installation's key: it changes with every
// session and is worthless without the session's cookie.
func (s *Service) CSRFToken(r *http.Request) string {
	_, raw, ok := s.session(r)
	if !ok {
		return ""
	}
	return b64(s.mac("csrf", raw))
}

// CheckCSRF reports whether r carries the CSRF token of its session.
func (s *Service) CheckCSRF(r *http.Request) error {
	_, raw, ok := s.session(r)
	if !ok {
		return ErrCSRF
	}
	tok := r.Header.Get(CSRFHeader)
	if tok == "" {
		tok = r.PostFormValue(CSRFField)
	}
	got, err := b64decode(tok)
	if err != nil || len(got) == 0 || !hmac.Equal(got, s.mac("csrf", raw)) {
		return ErrCSRF
	}
	return nil
}

// RequireCSRF refuses (403, logged and recorded) a request that may change
// state (any method but GET, HEAD, OPTIONS, TRACE) and carries the session
// cookie but not its CSRF token. Requests without the cookie pass: those
// signed in otherwise (an API token in a header) cannot be forged by
// another site, and those signed in not at all are the authenticator's.
// The sign-in's own forms under /auth/ pass too: they check tokens of
// their own (a sign-in form has no session yet). So it may wrap the whole
// web server.
func (s *Service) RequireCSRF(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/auth/") {
			next.ServeHTTP(w, r)
			return
		}
		if _, err := r.Cookie(s.cookieName(sessionCookie)); err == nil {
			if err := s.CheckCSRF(r); err != nil {
				s.refuse(r, "", r.Method+" "+truncate(r.URL.Path), err.Error())
				http.Error(w, "Forbidden: "+err.Error(), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func b64decode(s string) ([]byte, error) {
	if len(s) > 200 {
		return nil, errors.New("too long")
	}
	return strictB64.DecodeString(s)
}

// ContentSecurityPolicy is the policy of every page of paas.DOMAIN: only
// this site's scripts, styles, images and connections (no inline script),
// no plugins, no framing, forms posted only here.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// SecureHeaders sets the Content-Security-Policy and the headers that go
// with it on a page's answer. The referrer is never sent: a sign-in link's
// token is in its URL.
func SecureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// WithSecureHeaders sets SecureHeaders on every answer of next.
func WithSecureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SecureHeaders(w.Header())
		next.ServeHTTP(w, r)
	})
}
