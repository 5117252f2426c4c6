package store_test

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/internal/store"
)

// openStore opens a store in dir and closes it when the test ends (unless the
// test closed it itself).
func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t *testing.T, s *store.Store, name, owner string) {
	t.Helper()
	if err := s.CreateApp(&paas.App{Name: name, Owner: owner, CreatedAt: time.Unix(1700000000, 0).UTC()}); err != nil {
		t.Fatalf("CreateApp(%s): %v", name, err)
	}
}

func release(app string, v int, cfg map[string]string) *paas.Release {
	return &paas.Release{
		App: app, Version: v,
		Image:         paas.Image{Repository: "reg/" + app, Digest: "sha256:" + app},
		Config:        cfg,
		ConfigVersion: v * 10,
		Processes:     []paas.ProcessType{{Name: "web"}},
		Scale:         map[string]int{"web": 1},
		Commit:        "c0ffee", Author: "alice", Reason: "push",
		CreatedAt: time.Unix(1700000000, 0).UTC(),
	}
}

func TestOpenCreatesDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	openStore(t, dir)
	fi, err := os.Stat(filepath.Join(dir, "paas.db"))
	if err != nil {
		t.Fatalf("store file: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("store file mode %v, want no group/other access", perm)
	}
}

func TestApps(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustCreate(t, s, "zeta", "alice")
	mustCreate(t, s, "alpha", "bob")

	tests := []struct {
		name    string
		run     func() error
		wantErr error
	}{
		{"create taken name", func() error { return s.CreateApp(&paas.App{Name: "zeta", Owner: "eve"}) }, paas.ErrAppExists},
		{"get missing", func() error { _, err := s.App("nope"); return err }, paas.ErrAppNotFound},
		{"update missing", func() error {
			_, err := s.UpdateApp("nope", func(*paas.App) error { return nil })
			return err
		}, paas.ErrAppNotFound},
		{"delete missing", func() error { return s.DeleteApp("nope") }, paas.ErrAppNotFound},
		{"releases of missing", func() error { _, err := s.Releases("nope"); return err }, paas.ErrAppNotFound},
		{"deploys of missing", func() error { _, err := s.Deploys("nope"); return err }, paas.ErrAppNotFound},
		{"latest of missing", func() error { _, err := s.LatestVersion("nope"); return err }, paas.ErrAppNotFound},
		{"release of missing", func() error { _, err := s.Release("nope", 0); return err }, paas.ErrAppNotFound},
		{"release of undeployed", func() error { _, err := s.Release("zeta", 0); return err }, paas.ErrNoRelease},
		{"unknown version", func() error { _, err := s.Release("zeta", 7); return err }, paas.ErrNoRelease},
		{"add release to missing", func() error { return s.AddRelease(release("nope", 1, nil)) }, paas.ErrAppNotFound},
		{"start deploy of missing", func() error { return s.StartDeploy(&paas.Deploy{App: "nope"}) }, paas.ErrAppNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want errors.Is %v", err, tc.wantErr)
			}
		})
	}

	t.Run("get", func(t *testing.T) {
		a, err := s.App("zeta")
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != "zeta" || a.Owner != "alice" || a.Config == nil || a.Current != 0 {
			t.Fatalf("App(zeta) = %+v", a)
		}
	})
	t.Run("taken name keeps the first owner", func(t *testing.T) {
		a, err := s.App("zeta")
		if err != nil {
			t.Fatal(err)
		}
		if a.Owner != "alice" {
			t.Fatalf("owner = %q, want alice", a.Owner)
		}
	})
	t.Run("list sorted by name", func(t *testing.T) {
		apps, err := s.Apps()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, a := range apps {
			names = append(names, a.Name)
		}
		if want := []string{"alpha", "zeta"}; !slices.Equal(names, want) {
			t.Fatalf("Apps() = %q, want %q", names, want)
		}
	})
	t.Run("update", func(t *testing.T) {
		got, err := s.UpdateApp("alpha", func(a *paas.App) error {
			a.Config["K"] = "v"
			a.DeployBranch = "prod"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Config["K"] != "v" || got.DeployBranch != "prod" {
			t.Fatalf("UpdateApp returned %+v", got)
		}
		a, err := s.App("alpha")
		if err != nil {
			t.Fatal(err)
		}
		if a.Config["K"] != "v" || a.DeployBranch != "prod" {
			t.Fatalf("after update App = %+v", a)
		}
	})
	t.Run("update error rolls back", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := s.UpdateApp("alpha", func(a *paas.App) error {
			a.Config["K"] = "changed"
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("UpdateApp err = %v, want boom", err)
		}
		a, err := s.App("alpha")
		if err != nil {
			t.Fatal(err)
		}
		if a.Config["K"] != "v" {
			t.Fatalf("config after failed update = %q, want v", a.Config["K"])
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := s.DeleteApp("alpha"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.App("alpha"); !errors.Is(err, paas.ErrAppNotFound) {
			t.Fatalf("App after delete: %v", err)
		}
	})
}

func TestKeys(t *testing.T) {
	s := openStore(t, t.TempDir())
	first := &paas.SSHKey{Name: "alice", Fingerprint: "SHA256:aaa", Key: "ssh-ed25519 AAA", AddedBy: "admin"}
	if err := s.AddKey(first); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     *paas.SSHKey
		wantErr error
	}{
		{"duplicate name", &paas.SSHKey{Name: "alice", Fingerprint: "SHA256:other"}, paas.ErrKeyExists},
		{"duplicate fingerprint", &paas.SSHKey{Name: "mallory", Fingerprint: "SHA256:aaa"}, paas.ErrKeyExists},
		{"new key", &paas.SSHKey{Name: "bob", Fingerprint: "SHA256:bbb"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AddKey(tc.key)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("AddKey(%s) = %v, want %v", tc.key.Name, err, tc.wantErr)
			}
		})
	}
	keys, err := s.Keys()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		names = append(names, k.Name+"="+k.Fingerprint)
	}
	if want := []string{"alice=SHA256:aaa", "bob=SHA256:bbb"}; !slices.Equal(names, want) {
		t.Fatalf("Keys() = %q, want %q", names, want)
	}
	if err := s.RemoveKey("alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveKey("alice"); !errors.Is(err, paas.ErrKeyNotFound) {
		t.Fatalf("second RemoveKey = %v, want ErrKeyNotFound", err)
	}
	// The fingerprint is free again once its key is removed.
	if err := s.AddKey(&paas.SSHKey{Name: "alice2", Fingerprint: "SHA256:aaa"}); err != nil {
		t.Fatalf("re-add removed fingerprint: %v", err)
	}
}

func TestReleases(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustCreate(t, s, "hello", "alice")

	if v, err := s.LatestVersion("hello"); err != nil || v != 0 {
		t.Fatalf("LatestVersion before release = %d, %v; want 0", v, err)
	}
	if rels, err := s.Releases("hello"); err != nil || len(rels) != 0 {
		t.Fatalf("Releases before release = %v, %v; want none", rels, err)
	}

	steps := []struct {
		name string
		rel  *paas.Release
	}{
		{"v1", release("hello", 1, map[string]string{"A": "1"})},
		{"v2", release("hello", 2, map[string]string{"A": "2", "B": "x=y"})},
		// Versions are keyed big-endian so that 10 sorts after 2.
		{"v10", release("hello", 10, map[string]string{"A": "10"})},
	}
	for _, st := range steps {
		t.Run("add "+st.name, func(t *testing.T) {
			if err := s.AddRelease(st.rel); err != nil {
				t.Fatal(err)
			}
			app, err := s.App("hello")
			if err != nil {
				t.Fatal(err)
			}
			if app.Current != st.rel.Version {
				t.Fatalf("Current = %d, want %d", app.Current, st.rel.Version)
			}
			if !maps.Equal(app.Config, st.rel.Config) || app.ConfigVersion != st.rel.ConfigVersion {
				t.Fatalf("app config = %v (v%d), want %v (v%d)", app.Config, app.ConfigVersion, st.rel.Config, st.rel.ConfigVersion)
			}
			v, err := s.LatestVersion("hello")
			if err != nil || v != st.rel.Version {
				t.Fatalf("LatestVersion = %d, %v; want %d", v, err, st.rel.Version)
			}
			cur, err := s.Release("hello", 0)
			if err != nil {
				t.Fatal(err)
			}
			if cur.Version != st.rel.Version || cur.Image.Ref() != st.rel.Image.Ref() || !maps.Equal(cur.Config, st.rel.Config) {
				t.Fatalf("Release(0) = %+v, want %+v", cur, st.rel)
			}
		})
	}

	t.Run("existing version refused", func(t *testing.T) {
		if err := s.AddRelease(release("hello", 2, map[string]string{"A": "dup"})); err == nil {
			t.Fatal("AddRelease of an existing version succeeded")
		}
		app, err := s.App("hello")
		if err != nil {
			t.Fatal(err)
		}
		if app.Current != 10 || app.Config["A"] != "10" {
			t.Fatalf("failed AddRelease changed the app: %+v", app)
		}
	})
	t.Run("by version", func(t *testing.T) {
		r, err := s.Release("hello", 2)
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != 2 || r.Config["B"] != "x=y" {
			t.Fatalf("Release(2) = %+v", r)
		}
	})
	t.Run("newest first", func(t *testing.T) {
		rels, err := s.Releases("hello")
		if err != nil {
			t.Fatal(err)
		}
		var vs []int
		for _, r := range rels {
			vs = append(vs, r.Version)
		}
		if want := []int{10, 2, 1}; !slices.Equal(vs, want) {
			t.Fatalf("Releases versions = %v, want %v", vs, want)
		}
	})
}

func TestDeploys(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustCreate(t, s, "hello", "alice")
	mustCreate(t, s, "other", "bob")

	d1 := &paas.Deploy{App: "hello", Commit: "abc", Reason: "push", Author: "alice", StartedAt: time.Unix(1, 0).UTC()}
	d2 := &paas.Deploy{App: "hello", Reason: "config:set A", Author: "alice", StartedAt: time.Unix(2, 0).UTC()}
	o1 := &paas.Deploy{App: "other", Reason: "push", Author: "bob"}
	for _, d := range []*paas.Deploy{d1, d2, o1} {
		if err := s.StartDeploy(d); err != nil {
			t.Fatal(err)
		}
		if d.State != paas.DeployRunning {
			t.Fatalf("StartDeploy state = %q, want running", d.State)
		}
	}
	if d1.ID != 1 || d2.ID != 2 || o1.ID != 1 {
		t.Fatalf("IDs = %d, %d, %d; want 1, 2 and 1 (per app)", d1.ID, d2.ID, o1.ID)
	}

	d1.State, d1.Release, d1.Log, d1.FinishedAt = paas.DeploySucceeded, 1, "-----> done\n", time.Unix(3, 0).UTC()
	if err := s.FinishDeploy(d1); err != nil {
		t.Fatal(err)
	}
	got, err := s.Deploys("hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != 2 || got[1].ID != 1 {
		t.Fatalf("Deploys = %+v, want IDs 2, 1", got)
	}
	if g := got[1]; g.State != paas.DeploySucceeded || g.Log != "-----> done\n" || g.Release != 1 || !g.FinishedAt.Equal(d1.FinishedAt) {
		t.Fatalf("finished deploy = %+v", g)
	}
	if got[0].State != paas.DeployRunning {
		t.Fatalf("running deploy state = %q", got[0].State)
	}

	open, err := s.OpenDeploys()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range open {
		names = append(names, fmt.Sprintf("%s#%d", d.App, d.ID))
	}
	if strings.Join(names, " ") != "hello#2 other#1" {
		t.Fatalf("OpenDeploys = %v, want hello#2 other#1 (the finished hello#1 is not open)", names)
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "hello", "alice")
	if err := s.AddKey(&paas.SSHKey{Name: "alice", Fingerprint: "SHA256:a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRelease(release("hello", 1, map[string]string{"K": "it's"})); err != nil {
		t.Fatal(err)
	}
	d := &paas.Deploy{App: "hello", Reason: "push", Log: "line\n"}
	if err := s.StartDeploy(d); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	app, err := s.App("hello")
	if err != nil {
		t.Fatal(err)
	}
	if app.Owner != "alice" || app.Current != 1 || app.Config["K"] != "it's" {
		t.Fatalf("reopened app = %+v", app)
	}
	keys, err := s.Keys()
	if err != nil || len(keys) != 1 || keys[0].Name != "alice" {
		t.Fatalf("reopened keys = %v, %v", keys, err)
	}
	rel, err := s.Release("hello", 0)
	if err != nil || rel.Version != 1 || rel.Image.Digest != "sha256:hello" {
		t.Fatalf("reopened release = %+v, %v", rel, err)
	}
	ds, err := s.Deploys("hello")
	if err != nil || len(ds) != 1 || ds[0].State != paas.DeployRunning || ds[0].Log != "line\n" {
		t.Fatalf("reopened deploys = %+v, %v", ds, err)
	}
	// The next deploy ID continues after the persisted one.
	d2 := &paas.Deploy{App: "hello"}
	if err := s.StartDeploy(d2); err != nil || d2.ID != 2 {
		t.Fatalf("StartDeploy after reopen: id %d, %v; want 2", d2.ID, err)
	}
}

func TestDeleteAppRemovesHistory(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustCreate(t, s, "hello", "alice")
	mustCreate(t, s, "keep", "alice")
	for v := 1; v <= 3; v++ {
		if err := s.AddRelease(release("hello", v, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddRelease(release("keep", 1, nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.StartDeploy(&paas.Deploy{App: "hello"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteApp("hello"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "hello", "bob")

	tests := []struct {
		name  string
		check func() (any, bool)
	}{
		{"latest version 0", func() (any, bool) { v, err := s.LatestVersion("hello"); return v, err == nil && v == 0 }},
		{"no releases", func() (any, bool) { r, err := s.Releases("hello"); return r, err == nil && len(r) == 0 }},
		{"no deploys", func() (any, bool) { d, err := s.Deploys("hello"); return d, err == nil && len(d) == 0 }},
		{"no current release", func() (any, bool) {
			_, err := s.Release("hello", 0)
			return err, errors.Is(err, paas.ErrNoRelease)
		}},
		{"old version gone", func() (any, bool) {
			_, err := s.Release("hello", 2)
			return err, errors.Is(err, paas.ErrNoRelease)
		}},
		{"new owner, not deployed", func() (any, bool) {
			a, err := s.App("hello")
			return a, err == nil && a.Owner == "bob" && a.Current == 0
		}},
		{"other app untouched", func() (any, bool) { v, err := s.LatestVersion("keep"); return v, err == nil && v == 1 }},
		{"deploy IDs restart", func() (any, bool) {
			d := &paas.Deploy{App: "hello"}
			err := s.StartDeploy(d)
			return d.ID, err == nil && d.ID == 1
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := tc.check(); !ok {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestGlobalConfig(t *testing.T) {
	s := openStore(t, t.TempDir())
	if cfg, err := s.GlobalConfig(); err != nil || cfg == nil || len(cfg) != 0 {
		t.Fatalf("GlobalConfig() = %v, %v; want an empty map", cfg, err)
	}
	if err := s.UpdateGlobalConfig(func(cfg map[string]string) error { cfg["A"] = "1"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateGlobalConfig(func(map[string]string) error { return errors.New("no") }); err == nil {
		t.Fatal("an error of fn was not returned")
	}
	if cfg, _ := s.GlobalConfig(); !maps.Equal(cfg, map[string]string{"A": "1"}) {
		t.Fatalf("GlobalConfig() = %v", cfg)
	}
}

func TestRenameApp(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustCreate(t, s, "old", "alice")
	mustCreate(t, s, "taken", "bob")
	if _, err := s.UpdateApp("old", func(a *paas.App) error { a.Access = []string{"bob"}; a.Config["K"] = "v"; return nil }); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 2; v++ {
		if err := s.AddRelease(release("old", v, map[string]string{"K": "v"})); err != nil {
			t.Fatal(err)
		}
		d := &paas.Deploy{App: "old", Reason: "push"}
		if err := s.StartDeploy(d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpdateRouting("old", func(r *paas.Routing) error { r.Domains = []string{"www.example.com"}; return nil }); err != nil {
		t.Fatal(err)
	}

	if _, err := s.RenameApp("old", "taken", nil); !errors.Is(err, paas.ErrAppExists) {
		t.Fatalf("rename onto a taken name: %v", err)
	}
	if _, err := s.RenameApp("nope", "fresh", nil); !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("rename of a missing app: %v", err)
	}
	if _, err := s.App("old"); err != nil {
		t.Fatalf("a refused rename changed the app: %v", err)
	}

	moved := func(img paas.Image) paas.Image { img.Repository = "reg/fresh"; return img }
	a, err := s.RenameApp("old", "fresh", moved)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "fresh" || a.Config["K"] != "v" || !slices.Equal(a.Access, []string{"bob"}) || a.Current != 2 {
		t.Fatalf("renamed app %+v", a)
	}
	if _, err := s.App("old"); !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("old name still there: %v", err)
	}
	rels, err := s.Releases("fresh")
	if err != nil || len(rels) != 2 {
		t.Fatalf("releases %v, %v", rels, err)
	}
	for _, r := range rels {
		if r.App != "fresh" || r.Image.Repository != "reg/fresh" || r.Image.Digest != "sha256:old" {
			t.Fatalf("release %+v", r)
		}
	}
	ds, err := s.Deploys("fresh")
	if err != nil || len(ds) != 2 || ds[0].App != "fresh" {
		t.Fatalf("deploys %v, %v", ds, err)
	}
	// the deploy sequence carries over: the next deploy is 3
	d := &paas.Deploy{App: "fresh", Reason: "push"}
	if err := s.StartDeploy(d); err != nil || d.ID != 3 {
		t.Fatalf("next deploy id %d, %v", d.ID, err)
	}
	if r, _ := s.Routing("fresh"); !slices.Equal(r.Domains, []string{"www.example.com"}) {
		t.Fatalf("routing of the new name %+v", r)
	}
	if r, _ := s.Routing("old"); len(r.Domains) != 0 {
		t.Fatalf("routing left under the old name %+v", r)
	}
	// the old name is free again, with nothing of the renamed app
	mustCreate(t, s, "old", "carol")
	if rels, _ := s.Releases("old"); len(rels) != 0 {
		t.Fatalf("a new app of the old name has releases %v", rels)
	}
}

// TestRebaseImages renames the images of a registry restored at another
// address, in every release of every app, and nothing else.
func TestRebaseImages(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustCreate(t, s, "web", "alice")
	mustCreate(t, s, "api", "alice")
	for v, repo := range map[int]string{1: "10.0.0.1:5000/paas/web", 2: "10.0.0.1:5000/paas/web", 3: "elsewhere.example/team/web"} {
		rel := release("web", v, nil)
		rel.Image.Repository = repo
		if err := s.AddRelease(rel); err != nil {
			t.Fatal(err)
		}
	}
	rel := release("api", 1, nil)
	rel.Image.Repository = "10.0.0.1:5000/paasx/api" // another installation's prefix: not this one's
	if err := s.AddRelease(rel); err != nil {
		t.Fatal(err)
	}
	n, err := s.RebaseImages("10.0.0.1:5000/paas", "10.0.0.9:5000/paas")
	if err != nil || n != 2 {
		t.Fatalf("RebaseImages = %d, %v; want 2 releases", n, err)
	}
	want := map[string][]string{
		"web": {"elsewhere.example/team/web", "10.0.0.9:5000/paas/web", "10.0.0.9:5000/paas/web"},
		"api": {"10.0.0.1:5000/paasx/api"},
	}
	for app, repos := range want {
		rels, err := s.Releases(app)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rels {
			if r.Image.Repository != repos[i] || r.Image.Digest != "sha256:"+app {
				t.Errorf("%s v%d: %+v, want %s", app, r.Version, r.Image, repos[i])
			}
		}
	}
}
