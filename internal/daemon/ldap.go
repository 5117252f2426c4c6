package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"paas/internal/auth"
	"paas/internal/directory"
	"paas/internal/store"
)

// LDAPConfig is the directory part of `paasd serve`; an empty URL turns it off.
type LDAPConfig struct {
	URL              string
	BindDN           string
	BindPasswordFile string // read at start; PAAS_LDAP_BIND_PASSWORD is the alternative
	BindPassword     string // from the environment only, never a flag
	BaseDN           string
	GroupBaseDN      string
	AdminGroup       string
	StartTLS         bool
	CAFile           string
	UserFilter       string
	KeyAttribute     string
	NameAttribute    string
	GroupFilter      string
	CacheTTL         time.Duration
	Timeout          time.Duration
}

// directoryConfig turns the flags into the directory client's settings.
func (c LDAPConfig) directoryConfig() (directory.Config, error) {
	pw := c.BindPassword
	if c.BindPasswordFile != "" {
		data, err := os.ReadFile(c.BindPasswordFile)
		if err != nil {
			return directory.Config{}, fmt.Errorf("read --ldap-bind-password-file: %w", err)
		}
		pw = strings.TrimRight(string(data), "\r\n")
	}
	if c.BindDN != "" && pw == "" {
		return directory.Config{}, errors.New("--ldap-bind-dn needs a password: --ldap-bind-password-file FILE or PAAS_LDAP_BIND_PASSWORD")
	}
	if c.CacheTTL < 0 {
		return directory.Config{}, errors.New("--ldap-cache-ttl must not be negative")
	}
	cfg := directory.Config{
		URL: c.URL, StartTLS: c.StartTLS, CAFile: c.CAFile, BindDN: c.BindDN, BindPassword: pw,
		BaseDN: c.BaseDN, GroupBaseDN: c.GroupBaseDN, UserFilter: c.UserFilter, KeyAttribute: c.KeyAttribute,
		NameAttribute: c.NameAttribute, GroupFilter: c.GroupFilter, AdminGroup: c.AdminGroup, Timeout: c.Timeout,
	}
	return cfg, nil
}

// validate checks the directory settings (and that the password is there)
// without dialling the directory.
func (c LDAPConfig) validate() error {
	if c.URL == "" {
		return nil
	}
	dcfg, err := c.directoryConfig()
	if err != nil {
		return err
	}
	if _, err := directory.New(dcfg); err != nil {
		return fmt.Errorf("ldap: %w", err)
	}
	return nil
}

// authenticator returns who identifies keys: the local lists, and the
// directory after them when one is configured; the users of API tokens; and
// the directory client (nil without LDAP), which also checks web passwords.
func (c LDAPConfig) authenticator(adminKeys string, st *store.Store, log *slog.Logger) (*auth.Keys, *auth.DirectoryKeys, *auth.Users, *directory.Client, func(), error) {
	local := auth.NewKeys(adminKeys, st)
	if c.URL == "" {
		return local, nil, auth.NewUsers(local, nil, 0, 0, log), nil, func() {}, nil
	}
	dcfg, err := c.directoryConfig()
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	client, err := directory.New(dcfg)
	if err != nil {
		return nil, nil, nil, nil, nil, fmt.Errorf("ldap: %w", err)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = directory.DefaultTimeout
	}
	dk := auth.NewDirectoryKeys(local, client, c.CacheTTL, timeout, log.With("component", "ldap"))
	// API tokens' users are checked against the directory with the same TTL.
	users := auth.NewUsers(local, client, c.CacheTTL, timeout, log.With("component", "ldap"))
	return local, dk, users, client, func() { client.Close() }, nil
}
