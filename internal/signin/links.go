package signin

import (
	"cmp"
	"errors"
	"net/http"
	"time"

	"paas/internal/paas"
)

// ErrBusy is returned by IssueLink when too many links are open.
var ErrBusy = errors.New("too many sign-in links are open: try again in a minute")

// IssueLink returns a link that signs id in once, within LinkTTL (what
// `ssh paas login` prints). Only a hash of its token is kept.
func (s *Service) IssueLink(id paas.Identity) (string, time.Time, error) {
	raw := randomBytes(32)
	now := s.cfg.Now()
	expires := now.Add(LinkTTL)
	id.Source = SourceLink + "/" + cmp.Or(id.Source, "unknown")
	s.mu.Lock()
	s.pruneLocked(now)
	if len(s.links) >= maxPending {
		s.mu.Unlock()
		return "", time.Time{}, ErrBusy
	}
	s.links[hashKey(raw)] = &link{id: id, expires: expires}
	s.mu.Unlock()
	u := s.base.JoinPath(PathLink)
	u.RawQuery = "token=" + b64(raw)
	return u.String(), expires, nil
}

// openLink returns the identity of an open link; use closes the link.
func (s *Service) openLink(r *http.Request, token string, use bool) (paas.Identity, bool) {
	raw, err := b64decode(token)
	if err != nil || len(raw) != 32 {
		s.refuse(r, "", "sign-in", "malformed sign-in link")
		return paas.Identity{}, false
	}
	key := hashKey(raw)
	now := s.cfg.Now()
	s.mu.Lock()
	l, ok := s.links[key]
	_, used := s.used[key]
	if ok && use {
		delete(s.links, key)
		s.used[key] = l.expires
	}
	s.mu.Unlock()
	switch {
	case used:
		s.refuse(r, "", "sign-in", "sign-in link used already (replayed)")
		return paas.Identity{}, false
	case !ok:
		s.refuse(r, "", "sign-in", "unknown or expired sign-in link")
		return paas.Identity{}, false
	case !now.Before(l.expires):
		s.refuse(r, l.id.Name, "sign-in", "sign-in link expired")
		return paas.Identity{}, false
	}
	return l.id, true
}

// linkPage asks before using the link: opening it (a mail scanner or a
// chat preview fetching it) does not spend it.
func (s *Service) linkPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	id, ok := s.openLink(r, token, false)
	if !ok {
		s.page(w, r, http.StatusGone, pageData{Title: "Link expired", Message: "This sign-in link expired or was used already. Run `ssh paas login` for a new one.", Retry: true})
		return
	}
	s.page(w, r, http.StatusOK, pageData{Title: "Sign in to paas", Link: token, LinkUser: id.Name, FormToken: s.formToken(w, r)})
}

// linkLogin uses the link and starts a session.
func (s *Service) linkLogin(w http.ResponseWriter, r *http.Request) {
	if !s.checkFormToken(r) {
		s.refuse(r, "", "sign-in", "sign-in link form without its token (CSRF)")
		s.page(w, r, http.StatusForbidden, pageData{Title: "Refused", Message: "Open the sign-in link again.", Retry: true})
		return
	}
	id, ok := s.openLink(r, r.PostFormValue("token"), true)
	if !ok {
		s.page(w, r, http.StatusGone, pageData{Title: "Link expired", Message: "This sign-in link expired or was used already. Run `ssh paas login` for a new one.", Retry: true})
		return
	}
	s.setCookie(w, bindCookie, "", -1)
	if err := s.startSession(w, r, id); err != nil {
		s.page(w, r, http.StatusServiceUnavailable, pageData{Title: "Sign-in busy", Message: err.Error()})
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
