package daemon

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"paas/internal/directory"
	"paas/internal/signin"
)

// SigninConfig is the browser sign-in of paas.DOMAIN: OpenID Connect when
// an issuer is given, else the directory's passwords when LDAP is on, and
// one-time links from `ssh paas login` always.
type SigninConfig struct {
	OIDCIssuer           string
	OIDCClientID         string
	OIDCClientSecretFile string // read at start; PAAS_OIDC_CLIENT_SECRET is the alternative
	OIDCClientSecret     string // from the environment only, never a flag
	OIDCRedirectURL      string
	OIDCNameClaim        string
	OIDCGroupsClaim      string
	// OIDCAdminGroup is the group (as the groups claim names it) whose
	// members are administrators; by default the name of --ldap-admin-group.
	OIDCAdminGroup string
	OIDCScopes     string // space-separated
	OIDCCAFile     string
	SessionTTL     time.Duration
}

// oidcConfig turns the flags into the sign-in's OIDC client; nil without an issuer.
func (c SigninConfig) oidcConfig(ldapAdminGroup string) (*signin.OIDCConfig, error) {
	if c.OIDCIssuer == "" {
		if c.OIDCClientID != "" || c.OIDCClientSecretFile != "" {
			return nil, errors.New("--oidc-client-id and --oidc-client-secret-file need --oidc-issuer")
		}
		return nil, nil
	}
	secret := c.OIDCClientSecret
	if c.OIDCClientSecretFile != "" {
		data, err := os.ReadFile(c.OIDCClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read --oidc-client-secret-file: %w", err)
		}
		secret = strings.TrimRight(string(data), "\r\n")
	}
	if c.OIDCClientID == "" || secret == "" {
		return nil, errors.New("--oidc-issuer needs --oidc-client-id and a secret: --oidc-client-secret-file FILE or PAAS_OIDC_CLIENT_SECRET")
	}
	o := &signin.OIDCConfig{
		Issuer: c.OIDCIssuer, ClientID: c.OIDCClientID, ClientSecret: secret, RedirectURL: c.OIDCRedirectURL,
		NameClaim: c.OIDCNameClaim, GroupsClaim: c.OIDCGroupsClaim,
		AdminGroup: cmp.Or(c.OIDCAdminGroup, directory.GroupName(ldapAdminGroup)),
		Scopes:     strings.Fields(strings.ReplaceAll(c.OIDCScopes, ",", " ")),
	}
	if c.OIDCCAFile != "" {
		pemData, err := os.ReadFile(c.OIDCCAFile)
		if err != nil {
			return nil, fmt.Errorf("read --oidc-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("--oidc-ca-file %s holds no PEM certificate", c.OIDCCAFile)
		}
		o.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	return o, nil
}

// dashboardURL is where paas.DOMAIN is reached through the router: HTTPS
// on --https-port, or plain HTTP on --http-port when HTTPS is off.
func (c *Config) dashboardURL() (url string, plain bool) {
	host := "paas." + c.Domain
	switch {
	case c.HTTPSPort == 0 && c.HTTPPort == 80:
		return "http://" + host, true
	case c.HTTPSPort == 0:
		return "http://" + host + ":" + strconv.Itoa(c.HTTPPort), true
	case c.HTTPSPort == 443:
		return "https://" + host, false
	}
	return "https://" + host + ":" + strconv.Itoa(c.HTTPSPort), false
}

// newSignin builds the sign-in of paas.DOMAIN: the handler to mount at
// /auth/, the Authenticator of browser sessions, and the links of `ssh paas
// login`. dir (nil without LDAP) checks passwords when OIDC is off. The key
// that signs its cookies is kept in DATA_DIR/signin_key.
func newSignin(cfg Config, dataDir string, dir *directory.Client, audit signin.Audit, log *slog.Logger) (*signin.Service, error) {
	oc, err := cfg.Signin.oidcConfig(cfg.LDAP.AdminGroup)
	if err != nil {
		return nil, err
	}
	key, err := secretFile(filepath.Join(dataDir, "signin_key"))
	if err != nil {
		return nil, err
	}
	base, plain := cfg.dashboardURL()
	sc := signin.Config{
		BaseURL: base, PlainHTTP: plain, Key: []byte(key), SessionTTL: cfg.Signin.SessionTTL, OIDC: oc, Audit: audit, Log: log,
		RecheckEvery: cfg.LDAP.CacheTTL, // a directory user's session follows the directory as their key does
	}
	if dir != nil {
		sc.Directory = dir
	}
	return signin.New(sc)
}

// validate checks the sign-in flags without reaching the provider.
func (c SigninConfig) validate(ldapAdminGroup string) error {
	if c.SessionTTL != 0 && c.SessionTTL < time.Minute {
		return fmt.Errorf("--session-ttl %s: at least 1m", c.SessionTTL)
	}
	_, err := c.oidcConfig(ldapAdminGroup)
	return err
}
