package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"paas/internal/paas"
)

func TestSetResources(t *testing.T) {
	limit512 := func(s *paas.ResourceSettings) error {
		s.Limits = map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 512 << 20, NanoCPUs: 1e9}}
		return nil
	}
	overLimit := func(s *paas.ResourceSettings) error {
		s.Reservations = map[string]paas.Resources{"web": {MemoryBytes: 1 << 30}}
		return nil
	}
	boom := errors.New("boom")
	tests := []struct {
		name        string
		current     bool
		fn          func(*paas.ResourceSettings) error
		schedErr    error
		wantErr     string
		wantLimit   int64 // the stored app's default memory limit
		wantCurrent int
		wantRollout bool
	}{
		{name: "a deployed app rolls out a release with the limits", current: true, fn: limit512, wantLimit: 512 << 20, wantCurrent: 3, wantRollout: true},
		{name: "an app without a release only stores them", fn: limit512, wantLimit: 512 << 20},
		{name: "a failed rollout changes nothing", current: true, fn: limit512, schedErr: boom, wantErr: "v2 keeps serving: boom", wantLimit: 256 << 20, wantCurrent: 2, wantRollout: true},
		{name: "a reservation over the limit is refused before anything", current: true, fn: overLimit, wantErr: "process type web would reserve 1 GB of memory, more than its limit of 256 MB", wantLimit: 256 << 20, wantCurrent: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := &paas.App{Name: "hello", Owner: "alice", Config: map[string]string{"K": "v"}, ConfigVersion: 3,
				Resources: paas.ResourceSettings{Limits: map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 256 << 20}}}}
			e := newPipelineEnv(t, app)
			if tc.current {
				app.Current = 2
				e.store.releases["hello"] = map[int]*paas.Release{
					1: {App: "hello", Version: 1, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:one"}},
					2: {App: "hello", Version: 2, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:two"}, Config: map[string]string{"K": "v"}, ConfigVersion: 3,
						Processes: []paas.ProcessType{{Name: "web"}}, Resources: app.Resources.Clone()},
				}
			}
			e.scheduler.err = tc.schedErr
			var out syncBuffer
			err := e.p.SetResources(context.Background(), "hello", alice, "resource:limit", tc.fn, &out)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("SetResources = %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("SetResources = %v, want %q", err, tc.wantErr)
			}
			got, _ := e.store.App("hello")
			if m := got.Resources.Limits[paas.ResourceDefault].MemoryBytes; m != tc.wantLimit || got.Current != tc.wantCurrent {
				t.Fatalf("app limit %d current %d, want %d current %d", m, got.Current, tc.wantLimit, tc.wantCurrent)
			}
			if rolled := len(e.scheduler.deployed) > 0; rolled != tc.wantRollout {
				t.Fatalf("rolled out %v, want %v", rolled, tc.wantRollout)
			}
			if tc.wantRollout {
				rel := e.scheduler.deployed[0]
				res := rel.ResourcesOf("web")
				if rel.Version != 3 || rel.Image.Digest != "sha256:two" || res.Limit.MemoryBytes != 512<<20 || res.Limit.NanoCPUs != 1e9 || rel.Config["K"] != "v" {
					t.Fatalf("rolled out release %+v, web resources %+v", rel, res)
				}
			}
		})
	}
}

// A rollback runs with the app's limits as they are now, not those of the
// release it goes back to.
func TestRollbackKeepsResources(t *testing.T) {
	now := paas.ResourceSettings{Limits: map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 128 << 20}}}
	app := &paas.App{Name: "hello", Owner: "alice", Current: 2, Resources: now}
	e := newPipelineEnv(t, app)
	e.store.releases["hello"] = map[int]*paas.Release{
		1: {App: "hello", Version: 1, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:one"}},
		2: {App: "hello", Version: 2, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:two"}, Resources: now},
	}
	if err := e.p.Rollback(context.Background(), "hello", alice, 1, &syncBuffer{}); err != nil {
		t.Fatal(err)
	}
	rel := e.scheduler.deployed[0]
	if rel.Image.Digest != "sha256:one" || rel.ResourcesOf("web").Limit.MemoryBytes != 128<<20 {
		t.Fatalf("rollback release %+v", rel)
	}
}
