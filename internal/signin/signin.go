// Package signin signs people in to paas.DOMAIN in a browser: with the
// company's OpenID Connect provider (authorization code flow with PKCE,
// state and nonce, through go-oidc and x/oauth2), with their directory user
// name and password when there is no provider, and, on every installation,
// with a one-time link that `ssh paas login` prints.
//
// A sign-in starts a session: a random ID, kept here with the identity, in
// an HttpOnly, Secure, SameSite=Lax cookie under the __Host- prefix, signed
// so that a forged or edited cookie is told apart from one that expired.
// The Service is the http.Handler of /auth/ and the Authenticator of the
// web server (Authenticate), and gives the pages their CSRF token
// (CSRFToken, RequireCSRF) and headers (SecureHeaders).
package signin

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"paas/internal/directory"
	"paas/internal/paas"
)

// Defaults.
const (
	DefaultSessionTTL = 12 * time.Hour
	// LinkTTL is how long a link of `ssh paas login` may be used (once).
	LinkTTL = 60 * time.Second
	// flowTTL is how long a sign-in may take at the provider.
	flowTTL = 10 * time.Minute
	// maxPending bounds the sessions, links and flows kept, so that no
	// one can fill the memory by starting sign-ins.
	maxPending = 100_000
)

// Sources of the identities of web sessions (paas.Identity.Source). A
// link's is SourceLink, "/" and the source of the key it was issued to
// ("web-link/ldap", "web-link/admin-keys").
const (
	SourceOIDC     = paas.SourceWebOIDC
	SourcePassword = paas.SourceWebPassword
	SourceLink     = paas.SourceWebLink
)

// Directory checks a user's password, and finds a user again by name
// (directory.Client).
type Directory interface {
	Authenticate(ctx context.Context, name, password string) (*directory.User, error)
	LookupUser(ctx context.Context, name string) (*directory.User, error)
}

var _ Directory = (*directory.Client)(nil)

// Audit records sign-ins and what was refused (the daemon's audit log).
type Audit interface {
	Record(e *paas.Event)
}

// Config says how people sign in.
type Config struct {
	// BaseURL is where paas.DOMAIN is reached (https://paas.example.com);
	// the links and the OIDC redirect URL are made from it.
	BaseURL string
	// Key signs cookies and CSRF tokens: at least 32 random bytes, kept
	// in the data dir so that sessions survive nothing but their TTL.
	Key []byte
	// SessionTTL is how long a session lasts (DefaultSessionTTL).
	SessionTTL time.Duration
	// PlainHTTP drops the Secure flag and the __Host- prefix of the
	// cookies, for an installation served over plain HTTP only.
	PlainHTTP bool
	// OIDC turns on sign-in with an OpenID Connect provider.
	OIDC *OIDCConfig
	// Directory turns on sign-in with a directory password (not offered
	// when OIDC is on), and is Recheck's default.
	Directory Directory
	Audit     Audit
	Log       *slog.Logger
	// Recheck, when set, is asked again who a session's user is when the
	// session was last confirmed RecheckEvery ago or more (the directory's
	// cache TTL): the answer replaces the identity (groups, admin); ErrGone
	// ends the session; another error refuses the request, and the next
	// one asks again. So a user who left the directory, or a group, loses
	// that access within RecheckEvery, as over SSH.
	Recheck      func(ctx context.Context, id paas.Identity) (paas.Identity, error)
	RecheckEvery time.Duration
	// Now is the clock (time.Now); tests move it.
	Now func() time.Time
}

// RecheckDirectory is a Config.Recheck that asks dir again about the users
// it vouched for: those signed in with a password, and with a link issued
// to a directory user's key. Other identities are kept as they are (local
// keys; OIDC users, whom the session TTL bounds).
func RecheckDirectory(dir Directory) func(ctx context.Context, id paas.Identity) (paas.Identity, error) {
	return func(ctx context.Context, id paas.Identity) (paas.Identity, error) {
		if id.Source != SourcePassword && id.Source != SourceLink+"/ldap" {
			return id, nil
		}
		u, err := dir.LookupUser(ctx, id.Name)
		if errors.Is(err, directory.ErrNotFound) {
			return id, ErrGone
		}
		if err != nil {
			return id, err
		}
		id.Groups, id.Admin = u.Groups, u.Admin
		return id, nil
	}
}

// ErrGone is returned by Config.Recheck for a user who is no longer there.
var ErrGone = errors.New("the user is gone")

// DefaultRecheckEvery is Config.RecheckEvery's default, the directory's cache TTL.
const DefaultRecheckEvery = 60 * time.Second

// Service is the sign-in of one installation. It is safe for concurrent use.
type Service struct {
	cfg  Config
	base *url.URL
	log  *slog.Logger
	oidc *oidcFlow // nil without OIDC
	mux  *http.ServeMux

	mu       sync.Mutex
	sessions map[string]*session  // by hash of the session ID
	links    map[string]*link     // by hash of the link's token
	used     map[string]time.Time // hashes of links used, until they would have expired
	flows    map[string]*flow     // OIDC sign-ins under way, by state
	failures map[string][]time.Time
	refusals refusalBudget
}

type session struct {
	id      paas.Identity
	expires time.Time
	checked time.Time // when the identity was last confirmed
}

type link struct {
	id      paas.Identity
	expires time.Time
}

// New checks cfg and returns the Service. It does not reach the OIDC
// provider: its discovery document is read at the first sign-in (and
// again after a failure), so paasd starts while the provider is down.
func New(cfg Config) (*Service, error) {
	if len(cfg.Key) < 32 {
		return nil, errors.New("signin: the key must have at least 32 bytes")
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("signin: base URL %q: use https://HOST[:PORT]", cfg.BaseURL)
	}
	if base.Scheme == "http" && !cfg.PlainHTTP {
		return nil, fmt.Errorf("signin: base URL %q is plain HTTP: Secure cookies need HTTPS", cfg.BaseURL)
	}
	cfg.SessionTTL = cmp.Or(cfg.SessionTTL, DefaultSessionTTL)
	cfg.RecheckEvery = cmp.Or(cfg.RecheckEvery, DefaultRecheckEvery)
	if cfg.Recheck == nil && cfg.Directory != nil {
		cfg.Recheck = RecheckDirectory(cfg.Directory)
	}
	if cfg.SessionTTL < time.Minute {
		return nil, fmt.Errorf("signin: session TTL %s: at least 1m", cfg.SessionTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg: cfg, base: base, log: cfg.Log.With("component", "signin"),
		sessions: map[string]*session{}, links: map[string]*link{}, used: map[string]time.Time{},
		flows: map[string]*flow{}, failures: map[string][]time.Time{},
	}
	if cfg.OIDC != nil {
		if s.oidc, err = newOIDCFlow(*cfg.OIDC, base); err != nil {
			return nil, err
		}
	}
	s.routes()
	return s, nil
}

// Methods reports how people may sign in, for the README and the pages.
func (s *Service) Methods() []string {
	m := []string{"link"}
	if s.oidc != nil {
		return append([]string{"oidc"}, m...)
	}
	if s.cfg.Directory != nil {
		return append([]string{"password"}, m...)
	}
	return m
}

// Authenticate returns the identity of the request's session. ok is false
// without a session cookie, and for one that is forged, edited, expired or
// signed out (each logged and recorded, none an error).
// The identity's Via is "web": the audit log marks what a browser did.
func (s *Service) Authenticate(r *http.Request) (paas.Identity, bool, error) {
	id, _, ok := s.session(r)
	if ok {
		id.Via = "web"
	}
	return id, ok, nil
}

// session returns the identity of the request's live session and the
// session's raw ID.
func (s *Service) session(r *http.Request) (paas.Identity, []byte, bool) {
	var none paas.Identity
	c, err := r.Cookie(s.cookieName(sessionCookie))
	if err != nil || c.Value == "" {
		return none, nil, false
	}
	raw, ok := s.openSigned("session", c.Value)
	if !ok {
		s.refuse(r, "", "session", "tampered or forged session cookie")
		return none, nil, false
	}
	key := hashKey(raw)
	now := s.cfg.Now()
	s.mu.Lock()
	var id paas.Identity
	var expired, stale bool
	sess, found := s.sessions[key]
	if found {
		id, expired = sess.id, !now.Before(sess.expires)
		stale = s.cfg.Recheck != nil && now.Sub(sess.checked) >= s.cfg.RecheckEvery
		if expired {
			delete(s.sessions, key)
		}
	}
	s.mu.Unlock()
	switch {
	case !found:
		// Signed by this installation's key, but signed out (or kept by
		// a paasd that restarted since).
		s.refuse(r, "", "session", "session signed out or unknown")
		return none, nil, false
	case expired:
		s.refuse(r, id.Name, "session", "session expired")
		return none, nil, false
	case !stale:
		return id, raw, true
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	fresh, err := s.cfg.Recheck(ctx, id)
	switch {
	case errors.Is(err, ErrGone):
		s.mu.Lock()
		delete(s.sessions, key)
		s.mu.Unlock()
		s.refuse(r, id.Name, "session", "the user is no longer in the directory: session ended")
		return none, nil, false
	case err != nil:
		s.log.Warn("cannot confirm a session's user; request refused", "user", id.Name, "err", err)
		return none, nil, false
	}
	s.mu.Lock()
	sess.id, sess.checked = fresh, now
	s.mu.Unlock()
	return fresh, raw, true
}

// startSession records a new session for id and sets its cookie; the
// browser's session before it, if any, ends.
func (s *Service) startSession(w http.ResponseWriter, r *http.Request, id paas.Identity) error {
	raw := randomBytes(32)
	now := s.cfg.Now()
	var previous []byte
	if c, err := r.Cookie(s.cookieName(sessionCookie)); err == nil {
		previous, _ = s.openSigned("session", c.Value)
	}
	s.mu.Lock()
	if previous != nil {
		delete(s.sessions, hashKey(previous))
	}
	s.pruneLocked(now)
	if len(s.sessions) >= maxPending {
		s.mu.Unlock()
		return errors.New("too many sessions: try again later")
	}
	s.sessions[hashKey(raw)] = &session{id: id, expires: now.Add(s.cfg.SessionTTL), checked: now}
	s.mu.Unlock()
	s.setCookie(w, sessionCookie, s.seal("session", raw), s.cfg.SessionTTL)
	s.log.Info("signed in", "user", id.Name, "source", id.Source, "remote", r.RemoteAddr)
	s.record(&paas.Event{Actor: id.Name, Source: id.Source, Action: "sign-in", Result: "ok", Detail: "from " + r.RemoteAddr})
	return nil
}

// endSession forgets the request's session and clears its cookie.
func (s *Service) endSession(w http.ResponseWriter, r *http.Request) (paas.Identity, bool) {
	var id paas.Identity
	found := false
	if c, err := r.Cookie(s.cookieName(sessionCookie)); err == nil {
		if raw, ok := s.openSigned("session", c.Value); ok {
			s.mu.Lock()
			if sess, ok := s.sessions[hashKey(raw)]; ok {
				id, found = sess.id, true
				delete(s.sessions, hashKey(raw))
			}
			s.mu.Unlock()
		}
	}
	s.setCookie(w, sessionCookie, "", -1)
	return id, found
}

// pruneLocked drops expired sessions, links and flows.
func (s *Service) pruneLocked(now time.Time) {
	if len(s.sessions)+len(s.links)+len(s.flows)+len(s.used) < 1024 {
		return
	}
	for k, v := range s.sessions {
		if !now.Before(v.expires) {
			delete(s.sessions, k)
		}
	}
	for k, v := range s.links {
		if !now.Before(v.expires) {
			delete(s.links, k)
		}
	}
	for k, at := range s.used {
		if !now.Before(at) {
			delete(s.used, k)
		}
	}
	for k, v := range s.flows {
		if !now.Before(v.expires) {
			delete(s.flows, k)
		}
	}
}

// The cookies.
const (
	sessionCookie = "paas_session"
	// bindCookie binds the sign-in forms and the OIDC sign-ins under way
	// to the browser that started them. It is one random value per
	// browser, kept while it signs in, so that sign-ins in two tabs (or a
	// page's favicon sent to the sign-in) do not undo each other.
	bindCookie = "paas_signin"
)

// binding returns the browser's binding value, setting a new one when it
// has none.
func (s *Service) binding(w http.ResponseWriter, r *http.Request) []byte {
	if raw, ok := s.requestBinding(r); ok {
		return raw
	}
	raw := randomBytes(32)
	s.setCookie(w, bindCookie, b64(raw), flowTTL)
	return raw
}

// requestBinding returns the binding value the request carries.
func (s *Service) requestBinding(r *http.Request) ([]byte, bool) {
	c, err := r.Cookie(s.cookieName(bindCookie))
	if err != nil {
		return nil, false
	}
	raw, err := b64decode(c.Value)
	return raw, err == nil && len(raw) == 32
}

// cookieName puts the __Host- prefix before name: a browser then takes the
// cookie only from this very host, over HTTPS, for the path /, so an app on
// a sibling host (APP.DOMAIN) cannot plant one (session fixation).
func (s *Service) cookieName(name string) string {
	if s.cfg.PlainHTTP {
		return name
	}
	return "__Host-" + name
}

func (s *Service) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: s.cookieName(name), Value: value, Path: "/",
		HttpOnly: true, Secure: !s.cfg.PlainHTTP, SameSite: http.SameSiteLaxMode,
	}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
		c.Expires = s.cfg.Now().Add(maxAge)
	}
	http.SetCookie(w, c)
}

// seal is raw with its MAC under purpose: "base64(raw).base64(mac)".
func (s *Service) seal(purpose string, raw []byte) string {
	return b64(raw) + "." + b64(s.mac(purpose, raw))
}

// openSigned returns the raw value of a sealed one whose MAC is right.
func (s *Service) openSigned(purpose, v string) ([]byte, bool) {
	r, m, ok := strings.Cut(v, ".")
	if !ok || len(v) > 200 {
		return nil, false
	}
	raw, err1 := strictB64.DecodeString(r)
	mac, err2 := strictB64.DecodeString(m)
	if err1 != nil || err2 != nil || len(raw) == 0 {
		return nil, false
	}
	return raw, hmac.Equal(mac, s.mac(purpose, raw))
}

func (s *Service) mac(purpose string, raw []byte) []byte {
	h := hmac.New(sha256.New, s.cfg.Key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(raw)
	return h.Sum(nil)
}

// record adds e to the audit log, when there is one.
func (s *Service) record(e *paas.Event) {
	if s.cfg.Audit != nil {
		e.Time = s.cfg.Now().UTC()
		s.cfg.Audit.Record(e)
	}
}

// refuse logs a refused request and records it in the audit log (at most
// refusalsPerMinute a minute there, so that a flood of forged cookies does
// not push the real events out; every one is logged).
func (s *Service) refuse(r *http.Request, user, action, reason string) {
	s.log.Warn("sign-in refused", "action", action, "reason", reason, "user", user, "remote", r.RemoteAddr, "path", r.URL.Path)
	s.mu.Lock()
	ok := s.refusals.take(s.cfg.Now())
	s.mu.Unlock()
	if ok {
		actor := cmp.Or(user, "-")
		s.record(&paas.Event{Actor: actor, Source: "web", Action: action, Result: "error", Code: 1, Detail: reason + " (from " + r.RemoteAddr + ")"})
	}
}

const refusalsPerMinute = 60

type refusalBudget struct {
	minute time.Time
	n      int
}

func (b *refusalBudget) take(now time.Time) bool {
	m := now.Truncate(time.Minute)
	if !m.Equal(b.minute) {
		b.minute, b.n = m, 0
	}
	b.n++
	return b.n <= refusalsPerMinute
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}

func randomString() string { return b64(randomBytes(32)) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// strictB64 decodes what b64 encodes and nothing else: the lenient decoder
// ignores the unused low bits of the last character, so four spellings of
// a 32-byte value would open the same session, link or form token, and an
// edited cookie would pass for the one that was set.
var strictB64 = base64.RawURLEncoding.Strict()

// hashKey is how secrets (session IDs, link tokens) are kept in memory: a
// dump of it holds none that works.
func hashKey(raw []byte) string {
	sum := sha256.Sum256(raw)
	return string(sum[:])
}
