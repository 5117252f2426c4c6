package store_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"paas/internal/paas"
)

func TestRouting(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	mustCreate(t, s, "web", "alice")
	mustCreate(t, s, "api", "bob")

	r, err := s.Routing("web")
	if err != nil || len(r.Domains) != 0 || r.Cert != nil {
		t.Fatalf("empty routing = %+v, %v", r, err)
	}
	set := func(app string, domains ...string) error {
		_, err := s.UpdateRouting(app, func(r *paas.Routing) error { r.Domains = domains; return nil })
		return err
	}
	if err := set("web", "app.example.com", "*.preview.example.com"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		app     string
		domains []string
		err     error
	}{
		{"another app's exact name", "api", []string{"app.example.com"}, paas.ErrDomainTaken},
		{"another app's wildcard", "api", []string{"ok.example.com", "*.preview.example.com"}, paas.ErrDomainTaken},
		{"a missing app", "nope", []string{"x.example.com"}, paas.ErrAppNotFound},
		{"free names", "api", []string{"api.example.com"}, nil},
		{"the app's own names again", "web", []string{"app.example.com"}, nil},
	} {
		if err := set(tc.app, tc.domains...); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	api, _ := s.Routing("api")
	if !slices.Equal(api.Domains, []string{"api.example.com"}) {
		t.Errorf("api domains %v: a refused change was stored", api.Domains)
	}

	// A refused fn changes nothing.
	boom := errors.New("boom")
	if _, err := s.UpdateRouting("web", func(r *paas.Routing) error { r.Domains = nil; return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if web, _ := s.Routing("web"); !slices.Equal(web.Domains, []string{"app.example.com"}) {
		t.Errorf("web domains %v after a failed update", web.Domains)
	}

	all, err := s.AllRouting()
	if err != nil || len(all) != 2 {
		t.Fatalf("AllRouting = %v, %v", all, err)
	}
	if err := s.DeleteRouting("web"); err != nil {
		t.Fatal(err)
	}
	if err := set("api", "app.example.com"); err != nil {
		t.Errorf("a deleted app's domain is not free: %v", err)
	}

	if d, err := s.GlobalDomain(); d != "" || err != nil {
		t.Errorf("GlobalDomain = %q, %v", d, err)
	}
	if err := s.SetGlobalDomain("apps.example.org"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir) // survives a restart
	if d, _ := s.GlobalDomain(); d != "apps.example.org" {
		t.Errorf("GlobalDomain after reopen = %q", d)
	}
	if err := s.SetGlobalDomains([]string{"a.example.org", "b.example.org", "c.example.org"}); err != nil {
		t.Fatal(err)
	}
	if ds, err := s.GlobalDomains(); err != nil || strings.Join(ds, " ") != "a.example.org b.example.org c.example.org" {
		t.Errorf("GlobalDomains = %v, %v", ds, err)
	}
	if d, _ := s.GlobalDomain(); d != "a.example.org" {
		t.Errorf("GlobalDomain = %q, want the first", d)
	}
	if err := s.SetGlobalDomain("one.example.org"); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.GlobalDomains(); strings.Join(ds, " ") != "one.example.org" {
		t.Errorf("GlobalDomains after SetGlobalDomain = %v", ds)
	}
	if err := s.SetGlobalDomains(nil); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.GlobalDomains(); len(ds) != 0 {
		t.Errorf("GlobalDomains after clearing = %v", ds)
	}
	if api, _ := s.Routing("api"); !slices.Equal(api.Domains, []string{"app.example.com"}) {
		t.Errorf("api domains after reopen %v", api.Domains)
	}
}
