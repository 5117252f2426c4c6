package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
)

func TestSigninConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     SigninConfig
		wantErr string
	}{
		{name: "off", cfg: SigninConfig{}},
		{name: "oidc", cfg: SigninConfig{OIDCIssuer: "https://idp.example.com", OIDCClientID: "paas", OIDCClientSecretFile: secret}},
		{name: "secret from the environment", cfg: SigninConfig{OIDCIssuer: "https://idp.example.com", OIDCClientID: "paas", OIDCClientSecret: "x"}},
		{name: "no secret", cfg: SigninConfig{OIDCIssuer: "https://idp.example.com", OIDCClientID: "paas"}, wantErr: "PAAS_OIDC_CLIENT_SECRET"},
		{name: "no client", cfg: SigninConfig{OIDCIssuer: "https://idp.example.com", OIDCClientSecretFile: secret}, wantErr: "--oidc-client-id"},
		{name: "client without issuer", cfg: SigninConfig{OIDCClientID: "paas"}, wantErr: "need --oidc-issuer"},
		{name: "missing secret file", cfg: SigninConfig{OIDCIssuer: "https://idp.example.com", OIDCClientID: "paas", OIDCClientSecretFile: filepath.Join(dir, "none")}, wantErr: "--oidc-client-secret-file"},
		{name: "short session", cfg: SigninConfig{SessionTTL: time.Second}, wantErr: "--session-ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.validate("")
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
	oc, err := SigninConfig{OIDCIssuer: "https://idp.example.com", OIDCClientID: "paas", OIDCClientSecretFile: secret, OIDCScopes: "openid,profile groups"}.
		oidcConfig("cn=paas-admins,ou=groups,dc=example,dc=com")
	if err != nil || oc.ClientSecret != "s3cret" || oc.AdminGroup != "paas-admins" || strings.Join(oc.Scopes, " ") != "openid profile groups" {
		t.Fatalf("oidcConfig = %+v, %v", oc, err)
	}
}

func TestNewSignin(t *testing.T) {
	for _, tt := range []struct {
		http, https int
		want        string
	}{
		{80, 443, "https://paas.example.com"},
		{8080, 8443, "https://paas.example.com:8443"},
		{8080, 0, "http://paas.example.com:8080"},
	} {
		cfg := Config{Domain: "example.com", HTTPPort: tt.http, HTTPSPort: tt.https}
		if got, _ := cfg.dashboardURL(); got != tt.want {
			t.Errorf("dashboardURL(%d, %d) = %s, want %s", tt.http, tt.https, got, tt.want)
		}
		dataDir := t.TempDir()
		svc, err := newSignin(cfg, dataDir, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		link, _, err := svc.IssueLink(paas.Identity{Name: "alice"})
		if err != nil || !strings.HasPrefix(link, tt.want+"/auth/link?token=") {
			t.Fatalf("IssueLink = %s, %v", link, err)
		}
		if fi, err := os.Stat(filepath.Join(dataDir, "signin_key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("signin_key: %v %v", fi, err)
		}
	}
}
