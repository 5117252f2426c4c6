package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLDAPConfig(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := LDAPConfig{URL: "ldap://127.0.0.1:1", BindDN: "cn=paas,dc=example,dc=com", BaseDN: "dc=example,dc=com"}
	tests := []struct {
		name    string
		edit    func(*LDAPConfig)
		wantErr string
		wantPW  string
	}{
		{"off", func(c *LDAPConfig) { *c = LDAPConfig{} }, "", ""},
		{"password file, newline dropped", func(c *LDAPConfig) { c.BindPasswordFile = pwFile }, "", "s3cret"},
		{"password from the environment", func(c *LDAPConfig) { c.BindPassword = "env-pw" }, "", "env-pw"},
		{"file wins over environment", func(c *LDAPConfig) { c.BindPassword = "env-pw"; c.BindPasswordFile = pwFile }, "", "s3cret"},
		{"no password", func(c *LDAPConfig) {}, "needs a password", ""},
		{"missing password file", func(c *LDAPConfig) { c.BindPasswordFile = filepath.Join(dir, "nope") }, "read --ldap-bind-password-file", ""},
		{"anonymous bind", func(c *LDAPConfig) { c.BindDN = "" }, "", ""},
		{"bad url", func(c *LDAPConfig) { c.BindPassword = "x"; c.URL = "https://x" }, "ldap:// or ldaps://", ""},
		{"bad filter", func(c *LDAPConfig) { c.BindPassword = "x"; c.UserFilter = "(uid=" }, "invalid LDAP filter", ""},
		{"bad admin group", func(c *LDAPConfig) { c.BindPassword = "x"; c.AdminGroup = "admins" }, "invalid DN", ""},
		{"negative ttl", func(c *LDAPConfig) { c.BindPassword = "x"; c.CacheTTL = -1 }, "must not be negative", ""},
		{"missing CA file", func(c *LDAPConfig) { c.BindPassword = "x"; c.CAFile = filepath.Join(dir, "nope.pem") }, "read ldap CA file", ""},
		{"CA file without certificates", func(c *LDAPConfig) { c.BindPassword = "x"; c.CAFile = pwFile }, "no PEM certificate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.edit(&c)
			err := c.validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("validate = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.URL == "" {
				return
			}
			dc, err := c.directoryConfig()
			if err != nil {
				t.Fatal(err)
			}
			if dc.BindPassword != tt.wantPW {
				t.Fatalf("password %q, want %q", dc.BindPassword, tt.wantPW)
			}
		})
	}
}
