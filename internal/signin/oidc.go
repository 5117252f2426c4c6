package signin

import (
	"cmp"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"paas/internal/paas"
)

// Defaults of the OIDC settings.
const (
	DefaultNameClaim   = "preferred_username"
	DefaultGroupsClaim = "groups"
)

// DefaultScopes are asked of the provider unless OIDCConfig.Scopes says otherwise.
var DefaultScopes = []string{oidc.ScopeOpenID, "profile", "email"}

// OIDCConfig is the OpenID Connect client of the installation.
type OIDCConfig struct {
	Issuer       string // the provider's issuer URL, exactly as its tokens say it
	ClientID     string
	ClientSecret string
	// RedirectURL is BASE/auth/callback unless set; it must be registered
	// with the provider.
	RedirectURL string
	// NameClaim gives the user name (DefaultNameClaim), GroupsClaim the
	// groups (DefaultGroupsClaim): a list of names, or one name.
	NameClaim   string
	GroupsClaim string
	// AdminGroup is the group whose members are administrators, as the
	// groups claim names it.
	AdminGroup string
	Scopes     []string
	// HTTPClient reaches the provider (a private CA's); nil: the default.
	HTTPClient *http.Client
}

// oidcFlow is the configured client; the provider's discovery document is
// read once, at the first sign-in that needs it.
type oidcFlow struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider
}

func newOIDCFlow(cfg OIDCConfig, base *url.URL) (*oidcFlow, error) {
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || (iss.Scheme != "https" && iss.Scheme != "http") || iss.Host == "" {
		return nil, fmt.Errorf("signin: OIDC issuer %q: use https://HOST[/PATH]", cfg.Issuer)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("signin: OIDC needs a client ID")
	}
	if cfg.ClientSecret == "" {
		return nil, errors.New("signin: OIDC needs a client secret")
	}
	if cfg.RedirectURL == "" {
		cfg.RedirectURL = base.JoinPath("/auth/callback").String()
	}
	cfg.NameClaim = cmp.Or(cfg.NameClaim, DefaultNameClaim)
	cfg.GroupsClaim = cmp.Or(cfg.GroupsClaim, DefaultGroupsClaim)
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	return &oidcFlow{cfg: cfg}, nil
}

func (o *oidcFlow) context(ctx context.Context) context.Context {
	if o.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, o.cfg.HTTPClient)
	}
	return ctx
}

// config returns the provider and the OAuth2 client, reading the discovery
// document (and checking that it names the configured issuer) the first time.
func (o *oidcFlow) config(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		ctx, cancel := context.WithTimeout(o.context(ctx), 10*time.Second)
		defer cancel()
		p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("reach the OpenID provider: %w", err)
		}
		o.provider = p
	}
	return o.provider, &oauth2.Config{
		ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, RedirectURL: o.cfg.RedirectURL,
		Endpoint: o.provider.Endpoint(), Scopes: o.cfg.Scopes,
	}, nil
}

// flow is one sign-in under way at the provider, by its state.
type flow struct {
	nonce, verifier, returnTo string
	binding                   []byte // of the browser that started it
	expires                   time.Time
}

// startOIDC sends the browser to the provider: state (also in a cookie, so
// the answer must come back to this browser), nonce, and PKCE's S256 challenge.
func (s *Service) startOIDC(w http.ResponseWriter, r *http.Request, returnTo string) {
	_, oc, err := s.oidc.config(r.Context())
	if err != nil {
		s.log.Error("OIDC sign-in unavailable", "err", err)
		s.page(w, r, http.StatusServiceUnavailable, pageData{Title: "Sign-in unavailable", Message: "The company's sign-in cannot be reached now. Try again in a minute, or use `ssh paas login`."})
		return
	}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	binding := s.binding(w, r)
	now := s.cfg.Now()
	s.mu.Lock()
	s.pruneLocked(now)
	if len(s.flows) >= maxPending {
		s.mu.Unlock()
		s.page(w, r, http.StatusServiceUnavailable, pageData{Title: "Sign-in busy", Message: "Too many sign-ins are under way. Try again in a minute."})
		return
	}
	s.flows[state] = &flow{nonce: nonce, verifier: verifier, returnTo: returnTo, binding: binding, expires: now.Add(flowTTL)}
	s.mu.Unlock()
	http.Redirect(w, r, oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// callback ends a sign-in: the state must be this browser's and under way
// (once), the code is exchanged with the PKCE verifier, and the ID token is
// verified by go-oidc (signature by the provider's keys, issuer, audience,
// expiry) and its nonce compared with the one this sign-in sent.
func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	binding, _ := s.requestBinding(r)
	s.mu.Lock()
	f, found := s.flows[state]
	// Only this browser's answer ends its sign-in: another's leaves it be.
	bound := found && hmac.Equal(f.binding, binding)
	if bound {
		delete(s.flows, state)
	}
	s.mu.Unlock()
	fail := func(reason string) {
		s.refuse(r, "", "sign-in", "oidc: "+reason)
		s.page(w, r, http.StatusBadRequest, pageData{Title: "Sign-in refused", Message: "This sign-in could not be completed. Start again.", Retry: true})
	}
	switch {
	case !found:
		fail("unknown, used or expired state")
		return
	case !bound:
		fail("the state is not this browser's")
		return
	case !s.cfg.Now().Before(f.expires):
		fail("expired state")
		return
	case q.Get("error") != "":
		fail("the provider answered " + sanitize(q.Get("error")) + ": " + sanitize(q.Get("error_description")))
		return
	}
	provider, oc, err := s.oidc.config(r.Context())
	if err != nil {
		fail(err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(s.oidc.context(r.Context()), 15*time.Second)
	defer cancel()
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		fail("exchange the code: " + err.Error())
		return
	}
	rawID, ok := tok.Extra("id_token").(string)
	if !ok {
		fail("no id_token in the token response")
		return
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: s.oidc.cfg.ClientID, Now: s.cfg.Now}).Verify(ctx, rawID)
	if err != nil {
		fail("id token: " + err.Error())
		return
	}
	if idt.Nonce != f.nonce {
		fail("id token: the nonce is not this sign-in's")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		fail("id token claims: " + err.Error())
		return
	}
	id, err := s.oidc.identity(claims)
	if err != nil {
		fail(err.Error())
		return
	}
	s.setCookie(w, bindCookie, "", -1)
	if err := s.startSession(w, r, id); err != nil {
		s.page(w, r, http.StatusServiceUnavailable, pageData{Title: "Sign-in busy", Message: err.Error()})
		return
	}
	http.Redirect(w, r, f.returnTo, http.StatusSeeOther)
}

// identity maps the ID token's claims to a paas identity: the name claim,
// the groups claim, and admin when the groups hold AdminGroup.
func (o *oidcFlow) identity(claims map[string]any) (paas.Identity, error) {
	name, _ := claims[o.cfg.NameClaim].(string)
	if name == "" {
		return paas.Identity{}, fmt.Errorf("the id token has no %q claim (--oidc-name-claim)", o.cfg.NameClaim)
	}
	if err := validName(name); err != nil {
		return paas.Identity{}, fmt.Errorf("claim %q: %w", o.cfg.NameClaim, err)
	}
	var groups []string
	switch g := claims[o.cfg.GroupsClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok && validName(s) == nil {
				groups = append(groups, s)
			}
		}
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	admin := o.cfg.AdminGroup != "" && slices.Contains(groups, o.cfg.AdminGroup)
	return paas.Identity{Name: name, Groups: groups, Admin: admin, Source: SourceOIDC}, nil
}

// validName refuses a user or group name that could not be shown or put on
// an access list as it is.
func validName(n string) error {
	switch {
	case n == "" || len(n) > 256:
		return errors.New("a name must have 1 to 256 characters")
	case strings.HasPrefix(n, "@"):
		return errors.New("a name must not start with @")
	}
	return paas.ValidateArg(n)
}
