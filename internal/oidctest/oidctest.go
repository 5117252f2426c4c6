// Package oidctest runs a real OpenID Connect provider on 127.0.0.1 for the
// sign-in tests: zitadel/oidc's op package (discovery, authorization with
// PKCE, token, keys, userinfo), in the test process, with a login page of
// its own that checks user names and passwords by binding to a directory
// (the tests' slapd) and gives the user's groups in the ID token.
//
// It can be told to misbehave, to test the client's checks with tokens the
// provider signed itself: an ID token naming another issuer, another
// audience, or another nonce.
package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-ldap/ldap/v3"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Misbehavior makes the provider issue a bad ID token.
type Misbehavior int

const (
	Behave        Misbehavior = iota
	WrongIssuer               // the token's iss is another issuer's
	WrongAudience             // the token's aud is another client's
	WrongNonce                // the token's nonce is not the one asked for
)

// Options configure a Provider.
type Options struct {
	ClientID, ClientSecret string
	RedirectURIs           []string
	// LDAPURL is the directory the login page binds to, as
	// uid=NAME,PeopleDN; a user's groups are the cn of the groupOfNames
	// under GroupsDN with the user as member.
	LDAPURL, PeopleDN, GroupsDN string
}

// Provider is one running provider.
type Provider struct {
	Issuer                 string // http://127.0.0.1:PORT
	ClientID, ClientSecret string

	opts     Options
	op       *op.Provider
	srv      *http.Server
	key      *rsa.PrivateKey
	keyID    string
	callback func(ctx context.Context, id string) string

	mu        sync.Mutex
	misbehave Misbehavior
	requests  map[string]*authRequest
	codes     map[string]string // code -> request ID
	tokens    map[string]*accessToken
	users     map[string]*user // by subject
	logins    int
}

type user struct {
	subject, name string
	groups        []string
}

type accessToken struct {
	subject string
	expires time.Time
}

// Start serves a provider on a free port of 127.0.0.1.
func Start(opts Options) (*Provider, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		ln.Close()
		return nil, err
	}
	p := &Provider{
		Issuer: "http://" + ln.Addr().String(), ClientID: opts.ClientID, ClientSecret: opts.ClientSecret,
		opts: opts, key: key, keyID: randomID(),
		requests: map[string]*authRequest{}, codes: map[string]string{}, tokens: map[string]*accessToken{}, users: map[string]*user{},
	}
	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	issuer := func(bool) (op.IssuerFromRequest, error) {
		return func(r *http.Request) string {
			if r.URL.Path == "/oauth/token" && p.Misbehavior() == WrongIssuer {
				return p.Issuer + "/another"
			}
			return p.Issuer
		}, nil
	}
	p.op, err = op.NewProvider(&op.Config{CryptoKey: cryptoKey, CodeMethodS256: true}, &storage{p}, issuer, op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	p.callback = op.AuthCallbackURL(p.op)
	mux := http.NewServeMux()
	mux.HandleFunc("/login", p.login)
	mux.Handle("/oauth/token", p.tokenEndpoint(p.op))
	mux.Handle("/", p.op)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// Close stops the provider.
func (p *Provider) Close() error { return p.srv.Close() }

// SetMisbehavior makes the ID tokens issued from now on bad in way m.
func (p *Provider) SetMisbehavior(m Misbehavior) {
	p.mu.Lock()
	p.misbehave = m
	p.mu.Unlock()
}

// Misbehavior is what SetMisbehavior set.
func (p *Provider) Misbehavior() Misbehavior {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.misbehave
}

// Logins counts the users who signed in on the login page.
func (p *Provider) Logins() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logins
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Test provider: sign in</title></head><body>
<h1>Test provider</h1>{{with .Error}}<p id="error">{{.}}</p>{{end}}
<form method="post" action="/login"><input type="hidden" name="id" value="{{.ID}}">
<p><label>User <input id="username" name="username"></label></p>
<p><label>Password <input id="password" name="password" type="password"></label></p>
<p><button id="submit" type="submit">Sign in</button></p></form></body></html>
`))

// login is the provider's login page: a user name and password, checked by
// a bind to the directory.
func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	id := r.FormValue("id")
	p.mu.Lock()
	req, ok := p.requests[id]
	p.mu.Unlock()
	if !ok {
		http.Error(w, "unknown authorization request", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method != http.MethodPost {
		loginTmpl.Execute(w, map[string]string{"ID": id})
		return
	}
	u, err := p.checkUser(r.PostFormValue("username"), r.PostFormValue("password"))
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		loginTmpl.Execute(w, map[string]string{"ID": id, "Error": err.Error()})
		return
	}
	p.mu.Lock()
	p.users[u.subject] = u
	req.subject, req.done, req.authTime = u.subject, true, time.Now()
	p.logins++
	p.mu.Unlock()
	http.Redirect(w, r, p.callback(op.ContextWithIssuer(r.Context(), p.Issuer), id), http.StatusFound)
}

// checkUser binds as the user and reads their groups.
func (p *Provider) checkUser(name, password string) (*user, error) {
	if name == "" || password == "" {
		return nil, errors.New("user name and password, please")
	}
	conn, err := ldap.DialURL(p.opts.LDAPURL, ldap.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	defer conn.Close()
	conn.SetTimeout(3 * time.Second)
	dn := "uid=" + ldap.EscapeDN(name) + "," + p.opts.PeopleDN
	if err := conn.Bind(dn, password); err != nil {
		return nil, errors.New("wrong user name or password")
	}
	res, err := conn.Search(ldap.NewSearchRequest(p.opts.GroupsDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 3, false,
		"(&(objectClass=groupOfNames)(member="+ldap.EscapeFilter(dn)+"))", []string{"cn"}, nil))
	if err != nil {
		return nil, fmt.Errorf("directory: groups: %w", err)
	}
	u := &user{subject: dn, name: name}
	for _, e := range res.Entries {
		u.groups = append(u.groups, e.GetAttributeValue("cn"))
	}
	slices.Sort(u.groups)
	return u, nil
}

// tokenEndpoint is the op's token endpoint; with WrongAudience, the ID
// token it answers is signed again by the provider's key with another
// client's audience (the op always adds the requesting client to aud).
func (p *Provider) tokenEndpoint(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Misbehavior() != WrongAudience {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
			copyResponse(w, rec)
			return
		}
		if raw, ok := body["id_token"].(string); ok {
			resigned, err := p.resign(raw, func(c map[string]any) {
				c["aud"] = []string{"another-client"}
				c["azp"] = "another-client"
			})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			body["id_token"] = resigned
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(body)
	})
}

// resign checks a token the provider signed, edits its claims, and signs
// it again with the provider's key.
func (p *Provider) resign(raw string, edit func(map[string]any)) (string, error) {
	sig, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return "", err
	}
	payload, err := sig.Verify(&p.key.PublicKey)
	if err != nil {
		return "", err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	edit(claims)
	payload, err = json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.key, KeyID: p.keyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authRequest is one authorization request (op.AuthRequest).
type authRequest struct {
	p                                *Provider
	id, clientID, redirectURI, state string
	nonce                            string
	scopes                           []string
	responseType                     oidc.ResponseType
	responseMode                     oidc.ResponseMode
	challenge                        *oidc.CodeChallenge
	subject                          string
	done                             bool
	authTime                         time.Time
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }
func (a *authRequest) GetNonce() string {
	if a.p.Misbehavior() == WrongNonce {
		return "another-nonce"
	}
	return a.nonce
}

// client is the one registered client (op.Client).
type client struct{ p *Provider }

func (c *client) GetID() string                       { return c.p.ClientID }
func (c *client) RedirectURIs() []string              { return c.p.opts.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType         { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c *client) LoginURL(id string) string            { return c.p.Issuer + "/login?id=" + id }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return 5 * time.Minute }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// signingKey is the provider's RSA key (op.SigningKey and op.Key).
type signingKey struct {
	id  string
	key any
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }
func (k *signingKey) Use() string                                 { return "sig" }

// storage is the provider's state, in memory (op.Storage).
type storage struct{ p *Provider }

var errNotFound = errors.New("not found")

func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	a := &authRequest{
		p: s.p, id: randomID(), clientID: r.ClientID, redirectURI: r.RedirectURI, state: r.State, nonce: r.Nonce,
		scopes: r.Scopes, responseType: r.ResponseType, responseMode: r.ResponseMode,
	}
	if r.CodeChallenge != "" {
		a.challenge = &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
	}
	s.p.mu.Lock()
	s.p.requests[a.id] = a
	s.p.mu.Unlock()
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if a, ok := s.p.requests[id]; ok {
		return a, nil
	}
	return nil, errNotFound
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.p.mu.Lock()
	id, ok := s.p.codes[code]
	s.p.mu.Unlock()
	if !ok {
		return nil, errNotFound
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.codes[code] = id
	return nil
}

// DeleteAuthRequest forgets the request and its code: a code works once.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	delete(s.p.requests, id)
	for code, rid := range s.p.codes {
		if rid == id {
			delete(s.p.codes, code)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	id, exp := randomID(), time.Now().Add(5*time.Minute)
	s.p.mu.Lock()
	s.p.tokens[id] = &accessToken{subject: r.GetSubject(), expires: exp}
	s.p.mu.Unlock()
	return id, exp, nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("no refresh tokens")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errors.New("no refresh tokens")
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(_ context.Context, token, _, _ string) *oidc.Error {
	s.p.mu.Lock()
	delete(s.p.tokens, token)
	s.p.mu.Unlock()
	return nil
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return &signingKey{id: s.p.keyID, key: s.p.key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{&signingKey{id: s.p.keyID, key: &s.p.key.PublicKey}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.p.ClientID {
		return nil, errNotFound
	}
	return &client{s.p}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.p.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.p.ClientSecret)) != 1 {
		return errors.New("wrong client credentials")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest puts the user's name and groups in the ID token.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, _ []string) error {
	return s.setUserinfo(info, r.GetSubject())
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.p.mu.Lock()
	t, ok := s.p.tokens[tokenID]
	s.p.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return errors.New("token expired")
	}
	return s.setUserinfo(info, t.subject)
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string) error {
	s.p.mu.Lock()
	u, ok := s.p.users[subject]
	s.p.mu.Unlock()
	if !ok {
		return errNotFound
	}
	info.Subject = u.subject
	info.PreferredUsername = u.name
	info.AppendClaims("groups", u.groups)
	return nil
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("no introspection")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotFound
}

func (s *storage) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s *storage) Health(context.Context) error { return nil }
