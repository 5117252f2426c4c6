package daemon

import (
	"testing"

	"paas/builder"
	"paas/internal/paas"
)

// TestCheckSource: a non-administrator's git:from-image may name the app's
// own repository or any image elsewhere, but no other repository of the
// installation's registry (wherever it is) nor any registry on this machine.
func TestCheckSource(t *testing.T) {
	tests := []struct {
		prefix, source string
		refused        bool
	}{
		{"10.0.0.5:5000/paas", "10.0.0.5:5000/paas/web:v1", false},
		{"10.0.0.5:5000/paas", "10.0.0.5:5000/paas/db@sha256:" + sha, true},
		{"10.0.0.5:5000/paas", "10.0.0.5:5000/paas/router:abc", true},
		{"10.0.0.5:5000/paas", "10.0.0.5:5000/other/web:v1", false},
		{"10.0.0.5:5000/paas", "127.0.0.1:5000/paas/db:v1", true},
		{"10.0.0.5:5000/paas", "localhost:5001/anything:v1", true},
		{"ghcr.io/acme/paas", "ghcr.io/acme/paas/db:v1", true},
		{"ghcr.io/acme/paas", "ghcr.io/acme/paas/web:v1", false},
		{"ghcr.io/acme/paas", "ghcr.io/acme/tools:v1", false},
		{"ghcr.io/acme/paas", "registry.example.com/team/api:1.4", false},
	}
	for _, tt := range tests {
		reg := paas.ImageRegistry{Prefix: tt.prefix}
		d := &imageDeployer{importer: builder.NewImporter(nil, reg), reg: reg}
		err := d.checkSource(t.Context(), "web", tt.source)
		if (err != nil) != tt.refused {
			t.Errorf("registry %s, checkSource(web, %s) = %v, want refused %v", tt.prefix, tt.source, err, tt.refused)
		}
	}
}

const sha = "0000000000000000000000000000000000000000000000000000000000000000"
