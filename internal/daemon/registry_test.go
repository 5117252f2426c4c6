package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"paas/internal/paas"
	"paas/internal/registry"
)

func TestRegistryConfig(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*Config)
		wantErr   string
		advertise string // for the embedded registry
	}{
		{"default", func(c *Config) {}, "", "127.0.0.1:5000"},
		{"advertise host, port of the listener", func(c *Config) {
			c.RegistryAddr, c.RegistryAdvertiseAddr = "0.0.0.0:5000", "10.0.0.5"
		}, "", "10.0.0.5:5000"},
		{"advertise host and port", func(c *Config) {
			c.RegistryAddr, c.RegistryAdvertiseAddr = ":5000", "registry.example.com:443"
		}, "", "registry.example.com:443"},
		{"advertise IPv6", func(c *Config) {
			c.RegistryAddr, c.RegistryAdvertiseAddr = "[::]:5000", "[fd00::5]"
		}, "", "[fd00::5]:5000"},
		{"every address, no advertise", func(c *Config) { c.RegistryAddr = "0.0.0.0:5000" }, "set --registry-advertise-addr", ""},
		{"empty host, no advertise", func(c *Config) { c.RegistryAddr = ":5000" }, "set --registry-advertise-addr", ""},
		{"unspecified advertise", func(c *Config) { c.RegistryAdvertiseAddr = "0.0.0.0" }, "not an address the nodes can reach", ""},
		{"bad listen address", func(c *Config) { c.RegistryAddr = "5000" }, "--registry-addr", ""},
		{"elsewhere", func(c *Config) { c.Registry = "ghcr.io/acme/paas" }, "", ""},
		{"elsewhere with https and a login", func(c *Config) {
			c.Registry, c.RegistryUser, c.RegistryPasswordFile = "https://harbor.example.com:8443/team/", "u", "/pw"
		}, "", ""},
		{"elsewhere over plain HTTP", func(c *Config) { c.Registry = "http://registry.example.com/x" }, "plain HTTP is not supported", ""},
		{"elsewhere without a host", func(c *Config) { c.Registry = "acme/paas" }, "HOST[:PORT][/PATH]", ""},
		{"elsewhere, bad name", func(c *Config) { c.Registry = "ghcr.io/Acme" }, "HOST[:PORT][/PATH]", ""},
		{"user without password", func(c *Config) { c.Registry, c.RegistryUser = "ghcr.io/acme", "u" }, "go together", ""},
		{"elsewhere and advertise", func(c *Config) { c.Registry, c.RegistryAdvertiseAddr = "ghcr.io/acme", "10.0.0.5" }, "not with --registry", ""},
		{"login without --registry", func(c *Config) { c.RegistryUser, c.RegistryPasswordFile = "u", "/pw" }, "for a registry elsewhere", ""},
		{"CA without --registry", func(c *Config) { c.RegistryCAFile = "/ca.pem" }, "for a registry elsewhere", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{RegistryAddr: "127.0.0.1:5000"}
			tt.edit(&c)
			err := c.validateRegistry()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.advertise != "" {
				if got, _ := c.registryAdvertise(); got != tt.advertise {
					t.Errorf("advertise %q, want %q", got, tt.advertise)
				}
			}
		})
	}
}

// TestOpenRegistryElsewhere: a registry elsewhere gets its login from the
// password file and its CA written where the Docker daemon reads it; paasd
// serves no registry then.
func TestOpenRegistryElsewhere(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("t0ken\n"), 0o600)
	// A CA of a private registry: paasd passes it on, and trusts it.
	certs, err := registry.LoadCertificates(filepath.Join(dir, "harbor"), []string{"harbor.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ca, caPEM := certs.CAFile(), certs.CA
	certsDir := filepath.Join(dir, "certs.d")
	cfg := Config{Name: "paas", Registry: "https://harbor.example.com:8443/team/paas", RegistryUser: "deploy", RegistryPasswordFile: pw, RegistryCAFile: ca, DockerCertsDir: certsDir}
	r, err := openRegistry(cfg, filepath.Join(dir, "data"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := paas.ImageRegistry{Prefix: "harbor.example.com:8443/team/paas", Username: "deploy", Password: "t0ken", CAFile: ca}
	if r.target != want || r.embedded != nil || r.Addr() != "" {
		t.Errorf("target %+v, embedded %v, listening on %q", r.target, r.embedded != nil, r.Addr())
	}
	if r.target.Repository("web") != "harbor.example.com:8443/team/paas/web" {
		t.Errorf("repository %q", r.target.Repository("web"))
	}
	if b, err := os.ReadFile(filepath.Join(certsDir, "harbor.example.com:8443", "ca.crt")); err != nil || string(b) != string(caPEM) {
		t.Errorf("CA for the Docker daemon: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("the embedded registry's files were made")
	}
}
