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
