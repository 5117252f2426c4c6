package store

import (
	"errors"
	"testing"
	"time"

	"paas/internal/paas"
)

func TestBuildSettings(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateApp(&paas.App{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateGlobalBuildSettings(func(b *paas.BuildSettings) error { b.Stack = "heroku/builder:24"; b.Selected = "pack"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateApp("a", func(a *paas.App) error { a.Build.Selected = "dockerfile"; return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := s.BuildSettings("a")
	if err != nil {
		t.Fatal(err)
	}
	if want := (paas.BuildSettings{Selected: "dockerfile", Stack: "heroku/builder:24"}); got != want {
		t.Fatalf("settings %+v, want %+v", got, want)
	}
	if _, err := s.BuildSettings("missing"); !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("missing app: %v", err)
	}
}

func TestDeployByID(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateApp(&paas.App{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deploy("a", 0); !errors.Is(err, ErrBuildNotFound) {
		t.Fatalf("no builds: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.StartDeploy(&paas.Deploy{App: "a", Reason: "push", StartedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := s.Deploy("a", 0); err != nil || d.ID != 2 {
		t.Fatalf("latest: %+v %v", d, err)
	}
	if d, err := s.Deploy("a", 1); err != nil || d.ID != 1 {
		t.Fatalf("first: %+v %v", d, err)
	}
	if _, err := s.Deploy("a", 7); !errors.Is(err, ErrBuildNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

// DeploysStamp changes at each write of a deploy record, the same value
// written again included, and when a new app takes the name (its own, none);
// not otherwise.
func TestDeploysStamp(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.DeploysStamp("a"); !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("missing app: %v", err)
	}
	if err := s.CreateApp(&paas.App{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	stamp := func() string {
		t.Helper()
		st, err := s.DeploysStamp("a")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	seen := map[string]bool{}
	changed := func(what string) {
		t.Helper()
		st := stamp()
		if seen[st] {
			t.Fatalf("%s: the stamp did not change", what)
		}
		seen[st] = true
		if stamp() != st {
			t.Fatalf("%s: the stamp changed without a write", what)
		}
	}
	changed("no deploys")
	d := &paas.Deploy{App: "a", Reason: "push", StartedAt: time.Now()}
	if err := s.StartDeploy(d); err != nil {
		t.Fatal(err)
	}
	changed("a deploy started")
	if err := s.FinishDeploy(d); err != nil {
		t.Fatal(err)
	}
	changed("the same record written again")
	d.State = paas.DeploySucceeded
	if err := s.FinishDeploy(d); err != nil {
		t.Fatal(err)
	}
	changed("the deploy finished")
	if err := s.DeleteApp("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateApp(&paas.App{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if stamp() != "" || !seen[""] {
		t.Fatalf("a new app of the same name: stamp %q", stamp())
	}
}
