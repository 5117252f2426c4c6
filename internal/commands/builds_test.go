package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
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

// fakeRunning is the output of running builds, by "APP ID", as the
// pipeline shares it: appended to, then ended.
type fakeRunning struct {
	mu    sync.Mutex
	logs  map[string]string
	grown map[string]chan struct{}
}

func newFakeRunning(logs map[string]string) *fakeRunning {
	f := &fakeRunning{logs: logs, grown: map[string]chan struct{}{}}
	for k := range logs {
		f.grown[k] = make(chan struct{})
	}
	return f
}

func (f *fakeRunning) RunningLogFrom(app string, id, off int) (string, <-chan struct{}, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fmt.Sprintf("%s %d", app, id)
	s, ok := f.logs[k]
	if !ok {
		return "", nil, false
	}
	return s[min(off, len(s)):], f.grown[k], true
}

// write appends to a running build's output and wakes its followers.
func (f *fakeRunning) write(k, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs[k] += s
	close(f.grown[k])
	f.grown[k] = make(chan struct{})
}

// end forgets the build (its record holds the log now) and wakes its
// followers.
func (f *fakeRunning) end(k string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.logs, k)
	close(f.grown[k])
}

// builds:output of a build that is still running prints its output so far.
func TestBuildsOutputWhileRunning(t *testing.T) {
	st := storeWith(t, &paas.App{Name: "alpha", Owner: "alice"})
	running := &paas.Deploy{App: "alpha", Reason: "push", Commit: strings.Repeat("a", 40), Author: "alice", StartedAt: time.Now()}
	if err := st.StartDeploy(running); err != nil {
		t.Fatal(err)
	}
	b := &Builds{Store: st, Pipeline: &fakePipeline{}, Logins: fakeLogins{}, Running: newFakeRunning(map[string]string{fmt.Sprintf("alpha %d", running.ID): "-----> Building so far\n"})}
	d := NewDispatcher(st, "test", b.Commands())
	var out, errb bytes.Buffer
	if code := d.RunCommand(context.Background(), alice, []string{"builds:output", "alpha"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if out.String() != "-----> Building so far\n" {
		t.Errorf("builds:output of a running build = %q", out.String())
	}
}

// builds:output --follow prints a running build's output so far, then what
// it writes, each byte once, until it ends; a finished build's log at once.
func TestBuildsOutputFollow(t *testing.T) {
	st := storeWith(t, &paas.App{Name: "alpha", Owner: "alice"}, &paas.App{Name: "other", Owner: "bob"})
	build := &paas.Deploy{App: "alpha", Reason: "push", Commit: strings.Repeat("a", 40), Author: "alice", StartedAt: time.Now()}
	if err := st.StartDeploy(build); err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("alpha %d", build.ID)
	running := newFakeRunning(map[string]string{key: "-----> Building\n"})
	b := &Builds{Store: st, Pipeline: &fakePipeline{}, Logins: fakeLogins{}, Running: running}
	d := NewDispatcher(st, "test", b.Commands())

	for _, bad := range []struct {
		id   paas.Identity
		args []string
		code int
		err  string
	}{
		{alice, []string{"builds:output", "alpha", "9", "--follow"}, ExitError, "alpha has no build 9"},
		{alice, []string{"builds:output", "alpha", "x", "-f"}, ExitError, `build ID "x": want a number`},
		{alice, []string{"builds:output", "other", "--follow"}, ExitNotFound, "App other does not exist"},
	} {
		var out, errb bytes.Buffer
		if code := d.RunCommand(context.Background(), bad.id, bad.args, strings.NewReader(""), &out, &errb); code != bad.code || !strings.Contains(errb.String(), bad.err) || out.Len() > 0 {
			t.Errorf("%v: exit %d, out %q, err %q; want %d, %q", bad.args, code, out.String(), errb.String(), bad.code, bad.err)
		}
	}

	var out, errb syncBuilder
	done := make(chan int, 1)
	go func() {
		done <- d.RunCommand(context.Background(), alice, []string{"builds:output", "alpha", "--follow"}, strings.NewReader(""), &out, &errb)
	}()
	waitOut := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if out.String() == want {
				return
			}
		}
		t.Fatalf("output %q, want %q (stderr %q)", out.String(), want, errb.String())
	}
	waitOut("-----> Building\n")
	running.write(key, "Step 1/2 : FROM scratch\n")
	waitOut("-----> Building\nStep 1/2 : FROM scratch\n")
	select {
	case code := <-done:
		t.Fatalf("--follow ended (exit %d) while the build runs", code)
	default:
	}
	// the last lines are written, the record closed, then the follower woken
	running.write(key, "Step 2/2 : COPY . /\n")
	build.State, build.FinishedAt = paas.DeploySucceeded, time.Now()
	build.Log = "-----> Building\nStep 1/2 : FROM scratch\nStep 2/2 : COPY . /\n-----> Released v1\n"
	if err := st.FinishDeploy(build); err != nil {
		t.Fatal(err)
	}
	running.end(key)
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("--follow of a build that ended: exit %d %q", code, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("--follow did not end with the build")
	}
	if out.String() != build.Log {
		t.Errorf("followed %q, want the whole log once: %q", out.String(), build.Log)
	}

	// a finished build: its log, at once
	var again, errAgain bytes.Buffer
	if code := d.RunCommand(context.Background(), alice, []string{"builds:output", "alpha", fmt.Sprint(build.ID), "-f"}, strings.NewReader(""), &again, &errAgain); code != ExitOK || again.String() != build.Log {
		t.Errorf("-f of a finished build: exit %d, %q %q", code, again.String(), errAgain.String())
	}
}

// The caller hanging up ends --follow without error.
func TestBuildsOutputFollowHangUp(t *testing.T) {
	st := storeWith(t, &paas.App{Name: "alpha", Owner: "alice"})
	build := &paas.Deploy{App: "alpha", Reason: "push", Author: "alice", StartedAt: time.Now()}
	if err := st.StartDeploy(build); err != nil {
		t.Fatal(err)
	}
	running := newFakeRunning(map[string]string{fmt.Sprintf("alpha %d", build.ID): "-----> Building\n"})
	d := NewDispatcher(st, "test", (&Builds{Store: st, Pipeline: &fakePipeline{}, Logins: fakeLogins{}, Running: running}).Commands())
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuilder
	done := make(chan int, 1)
	go func() {
		done <- d.RunCommand(ctx, alice, []string{"builds:output", "alpha", "-f"}, strings.NewReader(""), &out, &errb)
	}()
	for deadline := time.Now().Add(5 * time.Second); out.String() == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK || out.String() != "-----> Building\n" {
			t.Errorf("hung up: exit %d, %q %q", code, out.String(), errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("--follow went on after the caller hung up")
	}
}

// builds:list --watch: the list at once, again when a build starts and when
// it ends, not while it only runs longer; it ends without error when the
// caller hangs up.
func TestBuildsListWatch(t *testing.T) {
	st := storeWith(t, &paas.App{Name: "alpha", Owner: "alice"})
	b := &Builds{Store: st, Pipeline: &fakePipeline{}, Images: &fakeImageDeployer{}, Cache: &fakeCache{}, Logins: fakeLogins{}}
	d := NewDispatcher(st, "test", b.Commands())
	run := func(id paas.Identity, args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := d.RunCommand(context.Background(), id, args, strings.NewReader(""), &out, &errOut)
		return code, errOut.String()
	}
	if code, errOut := run(alice, "builds:list", "alpha", "--watch"); code != ExitError || !strings.Contains(errOut, "add --format json") {
		t.Fatalf("--watch without --format json: exit %d %q", code, errOut)
	}
	if code, _ := run(bob, "builds:list", "alpha", "--watch", "--format", "json"); code != ExitNotFound {
		t.Fatalf("another user's app watched: exit %d", code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := startWatch(t, ctx, d, alice, "builds:list", "alpha", "--watch", "--format", "json")
	w.waitFor(t, 1)
	if w.lines()[0] != "[]" {
		t.Fatalf("first list %s", w.lines()[0])
	}
	build := &paas.Deploy{App: "alpha", Reason: "push", Commit: "0123456789abcdef0123456789abcdef01234567", Builder: "dockerfile", Author: "alice", StartedAt: time.Now().UTC()}
	if err := st.StartDeploy(build); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 2)
	if !strings.Contains(w.lines()[1], `"status":"running"`) {
		t.Fatalf("second list %s", w.lines()[1])
	}
	time.Sleep(buildsWatchEvery + buildsWatchEvery/2)
	if n := len(w.lines()); n != 2 {
		t.Fatalf("%d lists while the build only ran longer: %q", n, w.out.String())
	}
	build.FinishedAt, build.State = time.Now().UTC(), paas.DeploySucceeded
	if err := st.FinishDeploy(build); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 3)
	if !strings.Contains(w.lines()[2], `"status":"succeeded"`) {
		t.Fatalf("third list %s", w.lines()[2])
	}
	cancel()
	if code := <-w.done; code != ExitOK {
		t.Fatalf("hung up: exit %d (%s)", code, w.errOut.String())
	}
}
