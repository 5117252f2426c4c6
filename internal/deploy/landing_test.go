package deploy

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
)

// withRelease gives the app release v1 from deploy 0 (before any record).
func withRelease(e *pipelineEnv) {
	e.store.releases["hello"] = map[int]*paas.Release{1: {App: "hello", Version: 1, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:v1"}, Commit: "1111111"}}
	e.store.UpdateApp("hello", func(a *paas.App) error { a.Current = 1; return nil })
}

func TestLanding(t *testing.T) {
	tests := []struct {
		name        string
		first       bool // the app had no release before the push
		moved       bool
		wantErr     string
		wantCurrent int
		wantImage   string // of the current release
		wantStopped bool
		wantStates  []string // deploy records, oldest first
	}{
		{name: "branch moved", moved: true, wantCurrent: 2, wantImage: "sha256:v2-0123456", wantStates: []string{paas.DeploySucceeded}},
		{name: "branch did not move: rolled back", wantErr: "v2 was rolled back to v1", wantCurrent: 3, wantImage: "sha256:v1",
			wantStates: []string{paas.DeployFailed, paas.DeploySucceeded}},
		{name: "first push did not land: stopped", first: true, wantErr: "stopped v1, nothing serves", wantCurrent: 0, wantStopped: true,
			wantStates: []string{paas.DeployFailed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
			if !tc.first {
				withRelease(e)
			}
			ctx := context.Background()
			l, err := e.p.Push(ctx, "hello", alice, source(), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = l.Land(ctx, tc.moved, &out)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Land = %v, want %q\n%s", err, tc.wantErr, out.String())
			}
			app, _ := e.store.App("hello")
			if app.Current != tc.wantCurrent {
				t.Fatalf("current v%d, want v%d", app.Current, tc.wantCurrent)
			}
			if tc.wantImage != "" {
				rel, _ := e.store.Release("hello", 0)
				if rel.Image.Digest != tc.wantImage {
					t.Fatalf("current image %s, want %s", rel.Image.Digest, tc.wantImage)
				}
			}
			if got := len(e.scheduler.stopped) > 0; got != tc.wantStopped {
				t.Fatalf("stopped = %v, want %v", got, tc.wantStopped)
			}
			var states []string
			for _, d := range e.store.deployRecords("hello") {
				states = append(states, d.State)
			}
			if strings.Join(states, " ") != strings.Join(tc.wantStates, " ") {
				t.Fatalf("deploy records %v, want %v", states, tc.wantStates)
			}
			if err := l.Land(ctx, true, io.Discard); err == nil {
				t.Fatal("a second Land succeeded")
			}
		})
	}
}

// The deploy lock is held from the push until it lands: a config change
// waits, then starts from the landed release.
func TestLandingHoldsTheDeployLock(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
	withRelease(e)
	ctx := context.Background()
	l, err := e.p.Push(ctx, "hello", alice, source(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var waitMsg syncBuffer
	done := make(chan error)
	go func() {
		done <- e.p.SetConfig(ctx, "hello", alice, "config:set", true, func(cfg map[string]string) error { cfg["A"] = "2"; return nil }, &waitMsg)
	}()
	select {
	case err := <-done:
		t.Fatalf("config change ran before the push landed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := l.Land(ctx, true, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(waitMsg.String(), "Waiting for the running deploy") {
		t.Fatalf("config change did not say it waited:\n%s", waitMsg.String())
	}
	if rel, _ := e.store.Release("hello", 0); rel.Version != 3 || rel.Commit != commit {
		t.Fatalf("current release v%d of %s, want v3 on the pushed commit", rel.Version, rel.Commit)
	}
}

func TestRecover(t *testing.T) {
	tests := []struct {
		name        string
		reason      string
		served      bool   // the deploy's release was recorded (received traffic)
		branch      string // where the deploy branch is now
		wantState   string
		wantErr     string
		wantCurrent int
	}{
		{name: "never served", reason: "push", branch: "1111111", wantState: paas.DeployFailed, wantErr: "before the new release was recorded as serving", wantCurrent: 1},
		{name: "served, branch moved", reason: "push", served: true, branch: commit, wantState: paas.DeploySucceeded, wantCurrent: 2},
		{name: "served, branch did not move", reason: "push", served: true, branch: "1111111", wantState: paas.DeployFailed,
			wantErr: "v2 was rolled back to v1", wantCurrent: 3},
		{name: "config change served", reason: "config:set", served: true, branch: "1111111", wantState: paas.DeploySucceeded, wantCurrent: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
			withRelease(e)
			d := &paas.Deploy{App: "hello", Commit: commit, Reason: tc.reason, Author: "alice", StartedAt: time.Now().Add(-time.Minute)}
			if err := e.store.StartDeploy(d); err != nil {
				t.Fatal(err)
			}
			if tc.served {
				rel := &paas.Release{App: "hello", Version: 2, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:v2"}, Commit: commit, Deploy: d.ID, CreatedAt: time.Now()}
				if err := e.store.AddRelease(rel); err != nil {
					t.Fatal(err)
				}
			}
			rec, err := e.p.Recover(context.Background(), d, func(*paas.App) (string, error) { return tc.branch, nil }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != tc.wantState || !strings.Contains(rec.Error, tc.wantErr) {
				t.Fatalf("settled as %s %q, want %s %q", rec.State, rec.Error, tc.wantState, tc.wantErr)
			}
			stored := e.store.deployRecords("hello")[0]
			if stored.State != rec.State || stored.FinishedAt.IsZero() || stored.Log == "" {
				t.Fatalf("stored record %+v", stored)
			}
			if app, _ := e.store.App("hello"); app.Current != tc.wantCurrent {
				t.Fatalf("current v%d, want v%d", app.Current, tc.wantCurrent)
			}
		})
	}
}
