package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/internal/store"
)

type fakeImageDeployer struct{ calls []string }

func (f *fakeImageDeployer) DeployImage(_ context.Context, app string, _ paas.Identity, source string, out io.Writer) error {
	f.calls = append(f.calls, app+" "+source)
	if strings.Contains(source, "missing") {
		return errors.New("fetch image: MANIFEST_UNKNOWN")
	}
	io.WriteString(out, "-----> Deploying "+app+" from image "+source+"\n")
	return nil
}

type fakeCache struct{ purged []string }

func (f *fakeCache) PurgeCache(_ context.Context, app string) error {
	f.purged = append(f.purged, app)
	return nil
}

type fakeLogins map[string][2]string

func (f fakeLogins) Login(server, user, password string) error {
	if password == "" {
		return errors.New("a user name and a password are required")
	}
	f[server] = [2]string{user, password}
	return nil
}

func (f fakeLogins) Check(_ context.Context, server, user, password string) error {
	if password == "wrong" {
		return errors.New("log in to " + server + ": the registry refused user " + user + " and this password")
	}
	return nil
}

func (f fakeLogins) Servers() (map[string]string, error) {
	out := map[string]string{}
	for s, up := range f {
		out[s] = up[0]
	}
	return out, nil
}

// storeWith opens a store in a temporary folder with the given apps.
func storeWith(t *testing.T, apps ...*paas.App) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, a := range apps {
		if err := st.CreateApp(a); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestBuildCommands(t *testing.T) {
	st := storeWith(t, &paas.App{Name: "alpha", Owner: "alice"}, &paas.App{Name: "other", Owner: "bob"})
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, d := range []*paas.Deploy{
		{App: "alpha", Reason: "push", Commit: "0123456789abcdef0123456789abcdef01234567", Builder: "pack default", Author: "alice", StartedAt: start},
		{App: "alpha", Reason: "config:set", StartedAt: start},
		{App: "alpha", Reason: "push", Commit: "fedcba9876543210fedcba9876543210fedcba98", Builder: "dockerfile", Author: "alice", StartedAt: start},
	} {
		if err := st.StartDeploy(d); err != nil {
			t.Fatal(err)
		}
		d.FinishedAt, d.State, d.Log = start.Add(2500*time.Millisecond), paas.DeploySucceeded, "log of "+d.Builder+"\n"
		if d.Builder == "dockerfile" {
			d.State, d.Error = paas.DeployFailed, "build failed: boom"
		}
		if err := st.FinishDeploy(d); err != nil {
			t.Fatal(err)
		}
	}
	images, cache, logins := &fakeImageDeployer{}, &fakeCache{}, fakeLogins{}
	b := &Builds{Store: st, Pipeline: &fakePipeline{}, Images: images, Cache: cache, Logins: logins}
	d := NewDispatcher(st, "test", b.Commands())
	tests := []struct {
		name     string
		id       paas.Identity
		args     []string
		stdin    string
		wantCode int
		wantOut  []string
		wantErr  []string
		notOut   []string
	}{
		{name: "builds:list skips config changes", id: alice, args: []string{"builds:list", "alpha"},
			wantOut: []string{"3     failed", "1     succeeded  2.5s      0123456", "pack default"}, notOut: []string{"\n2 "}},
		{name: "builds:list json", id: alice, args: []string{"builds:list", "--format", "json", "alpha"},
			wantOut: []string{`"id":3`, `"status":"failed"`, `"duration_seconds":2.5`, `"builder":"pack default"`}},
		{name: "builds:info latest", id: alice, args: []string{"builds:info", "alpha"},
			wantOut: []string{"Build id:", "3", "Build error:", "build failed: boom"}},
		{name: "builds:info by id", id: alice, args: []string{"builds:info", "alpha", "1"},
			wantOut: []string{"Build commit:", "0123456789abcdef0123456789abcdef01234567"}},
		{name: "builds:info of a config change", id: alice, args: []string{"builds:info", "alpha", "2"},
			wantCode: ExitError, wantErr: []string{"alpha has no build 2"}},
		{name: "builds:info bad id", id: alice, args: []string{"builds:info", "alpha", "x"},
			wantCode: ExitError, wantErr: []string{`build ID "x": want a number`}},
		{name: "builds:output", id: alice, args: []string{"builds:output", "alpha", "1"}, wantOut: []string{"log of pack default\n"}},
		{name: "builds of another's app", id: alice, args: []string{"builds:list", "other"},
			wantCode: ExitNotFound, wantErr: []string{"App other does not exist"}},
		{name: "builder:set selected", id: alice, args: []string{"builder:set", "alpha", "selected", "pack"},
			wantOut: []string{"Set pack as selected for alpha"}},
		{name: "builder:set unknown builder", id: alice, args: []string{"builder:set", "alpha", "selected", "herokuish"},
			wantCode: ExitError, wantErr: []string{`unknown builder "herokuish"`}},
		{name: "builder:set unknown property", id: alice, args: []string{"builder:set", "alpha", "color", "red"},
			wantCode: ExitError, wantErr: []string{`unknown property "color"`}},
		{name: "builder:set --global by a user", id: alice, args: []string{"builder:set", "--global", "selected", "pack"},
			wantCode: ExitError, wantErr: []string{"--global is for administrators only"}},
		{name: "builder:set on another's app", id: alice, args: []string{"builder:set", "other", "selected", "pack"},
			wantCode: ExitNotFound},
		{name: "buildpacks:set-property --global", id: root, args: []string{"buildpacks:set-property", "--global", "stack", "heroku/builder:24"},
			wantOut: []string{"Set heroku/builder:24 as stack for all apps (--global)"}},
		{name: "buildpacks:set-property bad image", id: alice, args: []string{"buildpacks:set-property", "alpha", "stack", "a\\b"},
			wantCode: ExitError, wantErr: []string{"invalid image reference"}},
		{name: "builder:report merges", id: alice, args: []string{"builder:report", "alpha"},
			wantOut: []string{"Builder computed selected:", "pack", "Buildpacks computed stack:", "heroku/builder:24"}},
		{name: "git:from-image", id: alice, args: []string{"git:from-image", "alpha", "r.example.com/team/api:1.4"},
			wantOut: []string{"Deploying alpha from image r.example.com/team/api:1.4"}},
		{name: "git:from-image failure", id: alice, args: []string{"git:from-image", "alpha", "r.example.com/missing:1"},
			wantCode: ExitError, wantErr: []string{"MANIFEST_UNKNOWN"}},
		{name: "git:from-image bad ref", id: alice, args: []string{"git:from-image", "alpha", "a b"},
			wantCode: ExitError, wantErr: []string{"invalid image reference"}},
		{name: "registry:login by a user", id: alice, args: []string{"registry:login", "r.example.com", "team"}, stdin: "pw\n",
			wantCode: ExitError, wantErr: []string{"administrators only"}},
		{name: "registry:login", id: root, args: []string{"registry:login", "r.example.com", "team"}, stdin: "s3cret\n",
			wantOut: []string{"Logged in to r.example.com as team"}, notOut: []string{"s3cret"}},
		{name: "registry:login without a password", id: root, args: []string{"registry:login", "r.example.com", "team"},
			wantCode: ExitError, wantErr: []string{"password on stdin"}},
		{name: "registry:login with a refused password", id: root, args: []string{"registry:login", "other.example.com", "team"}, stdin: "wrong\n",
			wantCode: ExitError, wantErr: []string{"the registry refused user team"}, notOut: []string{"wrong"}},
		{name: "registry:report hides passwords", id: root, args: []string{"registry:report"},
			wantOut: []string{"r.example.com (team)"}, notOut: []string{"s3cret", "other.example.com"}},
		{name: "repo:purge-cache", id: alice, args: []string{"repo:purge-cache", "alpha"}, wantOut: []string{"Purged the build cache of alpha"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := d.RunCommand(context.Background(), tt.id, tt.args, strings.NewReader(tt.stdin), &out, &errb)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, out.String(), errb.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			for _, w := range tt.notOut {
				if strings.Contains(out.String()+errb.String(), w) {
					t.Errorf("output has %q:\n%s%s", w, out.String(), errb.String())
				}
			}
		})
	}
	if got := logins["r.example.com"]; got != [2]string{"team", "s3cret"} {
		t.Errorf("stored login %q", got)
	}
	if len(cache.purged) != 1 || cache.purged[0] != "alpha" {
		t.Errorf("purged %q", cache.purged)
	}
}

type fakeRunning map[string]string // by "APP ID"

func (f fakeRunning) RunningLog(app string, id int) (string, bool) {
	s, ok := f[fmt.Sprintf("%s %d", app, id)]
	return s, ok
}

// builds:output of a build that is still running prints its output so far.
func TestBuildsOutputWhileRunning(t *testing.T) {
	st := storeWith(t, &paas.App{Name: "alpha", Owner: "alice"})
	running := &paas.Deploy{App: "alpha", Reason: "push", Commit: strings.Repeat("a", 40), Author: "alice", StartedAt: time.Now()}
	if err := st.StartDeploy(running); err != nil {
		t.Fatal(err)
	}
	b := &Builds{Store: st, Pipeline: &fakePipeline{}, Logins: fakeLogins{}, Running: fakeRunning{fmt.Sprintf("alpha %d", running.ID): "-----> Building so far\n"}}
	d := NewDispatcher(st, "test", b.Commands())
	var out, errb bytes.Buffer
	if code := d.RunCommand(context.Background(), alice, []string{"builds:output", "alpha"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if out.String() != "-----> Building so far\n" {
		t.Errorf("builds:output of a running build = %q", out.String())
	}
}
