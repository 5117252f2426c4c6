package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/builder"
	"paas/internal/paas"
	"paas/scheduler"
)

// fakeStore keeps apps, releases and deploy records in memory with the
// semantics of internal/store: AddRelease makes the release current and copies
// its config into the app.
type fakeStore struct {
	mu       sync.Mutex
	apps     map[string]*paas.App
	releases map[string]map[int]*paas.Release
	deploys  map[string][]*paas.Deploy
	global   map[string]string // config:set --global
}

var _ Store = (*fakeStore)(nil)

func (s *fakeStore) GlobalResources() (paas.ResourceSettings, error) {
	return paas.ResourceSettings{}, nil
}

func (s *fakeStore) GlobalConfig() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.global), nil
}

func newFakeStore(apps ...*paas.App) *fakeStore {
	s := &fakeStore{apps: map[string]*paas.App{}, releases: map[string]map[int]*paas.Release{}, deploys: map[string][]*paas.Deploy{}}
	for _, a := range apps {
		if a.Config == nil {
			a.Config = map[string]string{}
		}
		s.apps[a.Name] = a
	}
	return s
}

func cloneApp(a *paas.App) *paas.App {
	c := *a
	c.Config = maps.Clone(a.Config)
	c.Formation = maps.Clone(a.Formation)
	return &c
}

func cloneRelease(r *paas.Release) *paas.Release {
	c := *r
	c.Config = maps.Clone(r.Config)
	c.Scale = maps.Clone(r.Scale)
	c.Processes = slices.Clone(r.Processes)
	return &c
}

func (s *fakeStore) App(name string) (*paas.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[name]
	if !ok {
		return nil, paas.ErrAppNotFound
	}
	return cloneApp(a), nil
}

func (s *fakeStore) Apps() ([]*paas.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*paas.App
	for _, a := range s.apps {
		out = append(out, cloneApp(a))
	}
	return out, nil
}

func (s *fakeStore) UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[name]
	if !ok {
		return nil, paas.ErrAppNotFound
	}
	c := cloneApp(a)
	if err := fn(c); err != nil {
		return nil, err
	}
	s.apps[name] = c
	return cloneApp(c), nil
}

func (s *fakeStore) Releases(app string) ([]*paas.Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*paas.Release
	for _, r := range s.releases[app] {
		out = append(out, cloneRelease(r))
	}
	slices.SortFunc(out, func(a, b *paas.Release) int { return b.Version - a.Version })
	return out, nil
}

func (s *fakeStore) Release(app string, v int) (*paas.Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[app]
	if !ok {
		return nil, paas.ErrAppNotFound
	}
	if v == 0 {
		v = a.Current
	}
	r, ok := s.releases[app][v]
	if !ok {
		return nil, paas.ErrNoRelease
	}
	return cloneRelease(r), nil
}

func (s *fakeStore) LatestVersion(app string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[app]; !ok {
		return 0, paas.ErrAppNotFound
	}
	v := 0
	for k := range s.releases[app] {
		v = max(v, k)
	}
	return v, nil
}

func (s *fakeStore) AddRelease(rel *paas.Release) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[rel.App]
	if !ok {
		return paas.ErrAppNotFound
	}
	if s.releases[rel.App] == nil {
		s.releases[rel.App] = map[int]*paas.Release{}
	}
	if _, dup := s.releases[rel.App][rel.Version]; dup {
		return fmt.Errorf("release v%d of %s already exists", rel.Version, rel.App)
	}
	s.releases[rel.App][rel.Version] = cloneRelease(rel)
	a.Current, a.Stopped = rel.Version, false
	a.Config, a.ConfigVersion = maps.Clone(rel.Config), rel.ConfigVersion
	a.Resources = rel.Resources.Clone()
	return nil
}

func (s *fakeStore) StartDeploy(d *paas.Deploy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[d.App]; !ok {
		return paas.ErrAppNotFound
	}
	d.ID = len(s.deploys[d.App]) + 1
	d.State = paas.DeployRunning
	c := *d
	s.deploys[d.App] = append(s.deploys[d.App], &c)
	return nil
}

func (s *fakeStore) FinishDeploy(d *paas.Deploy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.ID < 1 || d.ID > len(s.deploys[d.App]) {
		return fmt.Errorf("no deploy %d of %s", d.ID, d.App)
	}
	c := *d
	s.deploys[d.App][d.ID-1] = &c
	return nil
}

func (s *fakeStore) deployRecords(app string) []paas.Deploy {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []paas.Deploy
	for _, d := range s.deploys[app] {
		out = append(out, *d)
	}
	return out
}

func (s *fakeStore) releaseVersions(app string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.releases[app]))
}

// fakeBuilder records builds and how many ran at once, per app and overall.
type fakeBuilder struct {
	err error
	// gate, when set, is called inside Build after the overlap is counted; it
	// lets a test hold builds open.
	gate func(app string)

	mu         sync.Mutex
	inputs     []builder.Input
	files      []map[string]string // Dir contents seen by each build
	active     map[string]int
	maxPerApp  map[string]int
	total, max int
}

var _ Builder = (*fakeBuilder)(nil)

func (b *fakeBuilder) Build(ctx context.Context, in builder.Input) (paas.Image, error) {
	b.mu.Lock()
	if b.active == nil {
		b.active, b.maxPerApp = map[string]int{}, map[string]int{}
	}
	b.active[in.App]++
	b.total++
	b.maxPerApp[in.App] = max(b.maxPerApp[in.App], b.active[in.App])
	b.max = max(b.max, b.total)
	b.inputs = append(b.inputs, in)
	files := map[string]string{}
	for _, n := range []string{"Dockerfile", "Procfile"} {
		if data, err := os.ReadFile(filepath.Join(in.Dir, n)); err == nil {
			files[n] = string(data)
		}
	}
	b.files = append(b.files, files)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.active[in.App]--
		b.total--
		b.mu.Unlock()
	}()
	if in.Report != nil {
		in.Report("dockerfile")
	}
	fmt.Fprintf(in.Out, "building %s\n", in.Tag)
	if b.gate != nil {
		b.gate(in.App)
	}
	if b.err != nil {
		return paas.Image{}, b.err
	}
	return paas.Image{Repository: "reg/" + in.App, Digest: "sha256:" + in.Tag}, nil
}

type fakeScheduler struct {
	err    error
	during func() // runs in Deploy, after its first line of output

	mu       sync.Mutex
	deployed []*paas.Release
	opts     []scheduler.DeployOptions
	stopped  []string
}

var _ Scheduler = (*fakeScheduler)(nil)

func (s *fakeScheduler) Deploy(_ context.Context, rel *paas.Release, opts scheduler.DeployOptions, out io.Writer) error {
	s.mu.Lock()
	s.deployed = append(s.deployed, cloneRelease(rel))
	s.opts = append(s.opts, opts)
	s.mu.Unlock()
	fmt.Fprintf(out, "rolling out v%d\n", rel.Version)
	if s.during != nil {
		s.during()
	}
	if s.err != nil {
		return s.err
	}
	if opts.Routed != nil {
		return opts.Routed() // as the Swarm scheduler does once the release receives traffic
	}
	return nil
}

func (s *fakeScheduler) Stop(_ context.Context, app string, _ time.Duration, out io.Writer) error {
	s.mu.Lock()
	s.stopped = append(s.stopped, app)
	s.mu.Unlock()
	fmt.Fprintf(out, "stopping %s\n", app)
	return s.err
}

func (s *fakeScheduler) CheckNow(_ context.Context, rel *paas.Release, opts scheduler.DeployOptions, target string, out io.Writer) error {
	s.mu.Lock()
	s.opts = append(s.opts, opts)
	s.mu.Unlock()
	fmt.Fprintf(out, "checking v%d %q\n", rel.Version, target)
	return s.err
}

type fakeTriggers struct {
	errs map[string]error // by trigger name

	mu    sync.Mutex
	calls []string
	args  [][]string
}

var _ Triggers = (*fakeTriggers)(nil)

func (f *fakeTriggers) Trigger(_ context.Context, name string, args []string, out io.Writer) error {
	f.mu.Lock()
	f.calls = append(f.calls, name+" "+args[0]) // the app; TestTriggerArgs checks the rest
	f.args = append(f.args, args)
	f.mu.Unlock()
	return f.errs[name]
}

type pipelineEnv struct {
	store     *fakeStore
	builder   *fakeBuilder
	scheduler *fakeScheduler
	triggers  *fakeTriggers
	buildRoot string
	p         *Pipeline
}

// push runs a push whose branch git then moves: the deploy lands at once.
func (e *pipelineEnv) push(ctx context.Context, app string, who paas.Identity, src Source, out io.Writer) error {
	l, err := e.p.Push(ctx, app, who, src, out)
	if err != nil {
		return err
	}
	return l.Land(ctx, true, out)
}

func newPipelineEnv(t *testing.T, apps ...*paas.App) *pipelineEnv {
	t.Helper()
	e := &pipelineEnv{
		store: newFakeStore(apps...), builder: &fakeBuilder{}, scheduler: &fakeScheduler{},
		triggers: &fakeTriggers{errs: map[string]error{}}, buildRoot: t.TempDir(),
	}
	e.p = New(e.store, e.builder, e.scheduler, e.triggers, Options{
		BuildRoot: e.buildRoot,
		AppURL:    func(app string) string { return "http://" + app + ".example.test" },
		Log:       slog.New(slog.DiscardHandler),
	})
	return e
}

const commit = "0123456789abcdef0123456789abcdef01234567"

func source(entries ...entry) Source {
	if len(entries) == 0 {
		entries = []entry{file("Dockerfile", "FROM scratch\n"), file("Procfile", "web: ./web\nworker: ./worker\n")}
	}
	return Source{Commit: commit, Export: tarExport(entries...)}
}

var alice = paas.Identity{Name: "alice"}

// syncBuffer is an io.Writer safe for the concurrent writes of a push.
type syncBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

func TestPush(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name        string
		setup       func(e *pipelineEnv)
		src         Source
		wantErr     string
		wantCurrent int    // app's Current afterwards (it starts at 1)
		wantBuilds  int    // Build calls
		wantRollout int    // Scheduler.Deploy calls
		wantOut     string // substring of the output, also in the deploy log
		wantTrig    []string
	}{
		{
			name: "success", src: source(),
			wantCurrent: 2, wantBuilds: 1, wantRollout: 1,
			wantOut:  "=====> Application deployed:\n       http://hello.example.test",
			wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello", "post-build hello", "pre-deploy hello", "post-deploy hello"},
		},
		{
			name: "build fails", setup: func(e *pipelineEnv) { e.builder.err = boom }, src: source(),
			wantErr: "build failed: boom", wantCurrent: 1, wantBuilds: 1, wantRollout: 0,
			wantOut: "building v2-0123456", wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello"},
		},
		{
			name: "scheduler fails", setup: func(e *pipelineEnv) { e.scheduler.err = boom }, src: source(),
			wantErr: "release v2 failed, v1 keeps serving: boom", wantCurrent: 1, wantBuilds: 1, wantRollout: 1,
			wantOut: "rolling out v2", wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello", "post-build hello", "pre-deploy hello"},
		},
		{
			name: "pre-build trigger stops before the build", setup: func(e *pipelineEnv) { e.triggers.errs["pre-build"] = boom }, src: source(),
			wantErr: "boom", wantCurrent: 1, wantBuilds: 0, wantRollout: 0,
			wantOut: "-----> Deploying hello (0123456)", wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello"},
		},
		{
			name: "post-deploy failure is only reported", setup: func(e *pipelineEnv) { e.triggers.errs["post-deploy"] = boom }, src: source(),
			wantCurrent: 2, wantBuilds: 1, wantRollout: 1,
			wantOut: " !     post-deploy: boom", wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello", "post-build hello", "pre-deploy hello", "post-deploy hello"},
		},
		{
			name: "bad Procfile", src: source(file("Dockerfile", "FROM scratch"), file("Procfile", "Web: x")),
			wantErr: "Procfile line 1", wantCurrent: 1, wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello"},
		},
		{
			name: "pre-receive-app refuses before anything", setup: func(e *pipelineEnv) { e.triggers.errs["pre-receive-app"] = boom }, src: source(),
			wantErr: "boom", wantCurrent: 1, wantTrig: []string{"pre-receive-app hello"},
		},
		{
			name: "post-build failure rejects before the rollout", setup: func(e *pipelineEnv) { e.triggers.errs["post-build"] = boom }, src: source(),
			wantErr: "boom", wantCurrent: 1, wantBuilds: 1, wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello", "post-build hello"},
		},
		{
			name: "pre-deploy refuses the rollout", setup: func(e *pipelineEnv) { e.triggers.errs["pre-deploy"] = boom }, src: source(),
			wantErr: "boom", wantCurrent: 1, wantBuilds: 1, wantTrig: []string{"pre-receive-app hello", "post-extract hello", "pre-build hello", "post-build hello", "pre-deploy hello"},
		},
		{
			name: "archive escaping the build dir", src: source(file("../evil", "x")),
			wantErr: "export 0123456", wantCurrent: 1, wantTrig: []string{"pre-receive-app hello"},
		},
		{
			name: "export fails", src: Source{Commit: commit, Export: func(context.Context, io.Writer) error { return boom }},
			wantErr: "export 0123456: boom", wantCurrent: 1, wantTrig: []string{"pre-receive-app hello"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice", Current: 1, Config: map[string]string{"A": "1"}, ConfigVersion: 4})
			prev := &paas.Release{App: "hello", Version: 1, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:v1"}, Config: map[string]string{"A": "1"}, ConfigVersion: 4}
			e.store.releases["hello"] = map[int]*paas.Release{1: prev}
			if tc.setup != nil {
				tc.setup(e)
			}
			var out syncBuffer
			err := e.push(context.Background(), "hello", alice, tc.src, &out)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Push = %v\n%s", err, out.String())
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Push = %v, want error containing %q\n%s", err, tc.wantErr, out.String())
			}
			app, _ := e.store.App("hello")
			if app.Current != tc.wantCurrent {
				t.Fatalf("Current = %d, want %d", app.Current, tc.wantCurrent)
			}
			if n := len(e.builder.inputs); n != tc.wantBuilds {
				t.Fatalf("%d builds, want %d", n, tc.wantBuilds)
			}
			if n := len(e.scheduler.deployed); n != tc.wantRollout {
				t.Fatalf("%d rollouts, want %d", n, tc.wantRollout)
			}
			if !slices.Equal(e.triggers.calls, tc.wantTrig) {
				t.Fatalf("triggers %q, want %q", e.triggers.calls, tc.wantTrig)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("output %q does not contain %q", out.String(), tc.wantOut)
			}

			recs := e.store.deployRecords("hello")
			if len(recs) != 1 {
				t.Fatalf("deploy records %+v, want 1", recs)
			}
			rec := recs[0]
			if rec.Commit != commit || rec.Reason != "push" || rec.Author != "alice" || rec.StartedAt.IsZero() || rec.FinishedAt.IsZero() {
				t.Fatalf("deploy record %+v", rec)
			}
			if rec.Log != out.String() {
				t.Fatalf("deploy log %q, want the output %q", rec.Log, out.String())
			}
			if tc.wantErr != "" {
				if rec.State != paas.DeployFailed || rec.Error != err.Error() || rec.Release != 0 {
					t.Fatalf("failed deploy record %+v", rec)
				}
				if vs := e.store.releaseVersions("hello"); !slices.Equal(vs, []int{1}) {
					t.Fatalf("releases %v after a failed push, want [1]", vs)
				}
			} else {
				if rec.State != paas.DeploySucceeded || rec.Error != "" || rec.Release != 2 || rec.Builder != "dockerfile" {
					t.Fatalf("succeeded deploy record %+v", rec)
				}
				rel, err := e.store.Release("hello", 0)
				if err != nil {
					t.Fatal(err)
				}
				want := &paas.Release{
					App: "hello", Version: 2, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:v2-0123456"},
					Config: map[string]string{"A": "1"}, ConfigVersion: 4,
					Processes: []paas.ProcessType{{Name: "web", Command: "./web"}, {Name: "worker", Command: "./worker"}},
					Scale:     map[string]int{"web": 1, "worker": 0},
					Commit:    commit, Author: "alice", Reason: "push 0123456",
				}
				if rel.CreatedAt.IsZero() {
					t.Fatalf("release without CreatedAt")
				}
				rel.CreatedAt = time.Time{}
				if !equalRelease(rel, want) {
					t.Fatalf("release\n%+v\nwant\n%+v", rel, want)
				}
				in := e.builder.inputs[0]
				if in.App != "hello" || in.Tag != "v2-0123456" || e.builder.files[0]["Dockerfile"] != "FROM scratch\n" {
					t.Fatalf("build input %+v, files %q", in, e.builder.files[0])
				}
			}
			// The build dir is gone either way.
			if left, _ := os.ReadDir(e.buildRoot); len(left) != 0 {
				t.Fatalf("build dirs left behind: %v", left)
			}
		})
	}
}

func equalRelease(a, b *paas.Release) bool {
	return a.App == b.App && a.Version == b.Version && a.Image == b.Image &&
		maps.Equal(a.Config, b.Config) && a.ConfigVersion == b.ConfigVersion &&
		slices.Equal(a.Processes, b.Processes) && maps.Equal(a.Scale, b.Scale) &&
		a.Commit == b.Commit && a.Author == b.Author && a.Reason == b.Reason && a.CreatedAt.Equal(b.CreatedAt)
}

func TestPushVersionsFollowLatest(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
	for want := 1; want <= 3; want++ {
		if err := e.push(context.Background(), "hello", alice, source(), io.Discard); err != nil {
			t.Fatal(err)
		}
		app, _ := e.store.App("hello")
		if app.Current != want {
			t.Fatalf("after push %d Current = %d", want, app.Current)
		}
	}
	if vs := e.store.releaseVersions("hello"); !slices.Equal(vs, []int{1, 2, 3}) {
		t.Fatalf("versions %v", vs)
	}
}

func TestPushUnknownApp(t *testing.T) {
	e := newPipelineEnv(t)
	err := e.push(context.Background(), "nope", alice, source(), io.Discard)
	if !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("Push = %v, want ErrAppNotFound", err)
	}
	if len(e.builder.inputs) != 0 {
		t.Fatal("built an unknown app")
	}
}

// notifyWriter closes ch the first time the output contains marker.
type notifyWriter struct {
	syncBuffer
	marker string
	once   sync.Once
	ch     chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	if strings.Contains(w.String(), w.marker) {
		w.once.Do(func() { close(w.ch) })
	}
	return n, err
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestPushSerializesOneApp(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
	entered := make(chan string, 2)
	release := make(chan struct{})
	e.builder.gate = func(app string) {
		entered <- app
		<-release
	}

	errc := make(chan error, 2)
	go func() { errc <- e.push(context.Background(), "hello", alice, source(), io.Discard) }()
	waitFor(t, chanOf(entered), "the first build")

	// The second push must wait for the lock, and say so, while the first builds.
	second := &notifyWriter{marker: "Waiting for the running deploy of hello to finish", ch: make(chan struct{})}
	go func() { errc <- e.push(context.Background(), "hello", alice, source(), second) }()
	waitFor(t, second.ch, "the second push to wait")
	close(release)
	waitFor(t, chanOf(entered), "the second build")
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if m := e.builder.maxPerApp["hello"]; m != 1 {
		t.Fatalf("%d builds of hello ran at once, want 1", m)
	}
	if vs := e.store.releaseVersions("hello"); !slices.Equal(vs, []int{1, 2}) {
		t.Fatalf("versions %v, want [1 2]", vs)
	}
	for _, d := range e.store.deployRecords("hello") {
		if d.State != paas.DeploySucceeded {
			t.Fatalf("deploy %+v", d)
		}
	}
}

// chanOf turns one receive from c into a closed channel.
func chanOf(c <-chan string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		<-c
		close(done)
	}()
	return done
}

func TestPushOverlapsDifferentApps(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "one", Owner: "alice"}, &paas.App{Name: "two", Owner: "alice"})
	var wg sync.WaitGroup
	wg.Add(2)
	both := make(chan struct{})
	go func() { wg.Wait(); close(both) }()
	// Each build waits until both are inside Build: serialized pushes would never get there.
	e.builder.gate = func(string) {
		wg.Done()
		<-both
	}
	errc := make(chan error, 2)
	for _, app := range []string{"one", "two"} {
		go func() { errc <- e.push(context.Background(), app, alice, source(), io.Discard) }()
	}
	waitFor(t, both, "both builds to run at once")
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if e.builder.max != 2 {
		t.Fatalf("max concurrent builds %d, want 2", e.builder.max)
	}
}

func TestPushWaitingCancelled(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
	entered := make(chan string, 1)
	release := make(chan struct{})
	e.builder.gate = func(app string) {
		entered <- app
		<-release
	}
	errc := make(chan error, 1)
	go func() { errc <- e.push(context.Background(), "hello", alice, source(), io.Discard) }()
	waitFor(t, chanOf(entered), "the first build")

	ctx, cancel := context.WithCancel(context.Background())
	second := &notifyWriter{marker: "Waiting for the running deploy", ch: make(chan struct{})}
	secondErr := make(chan error, 1)
	go func() { secondErr <- e.push(ctx, "hello", alice, source(), second) }()
	waitFor(t, second.ch, "the second push to wait")
	cancel()
	if err := <-secondErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiting push = %v, want context.Canceled", err)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// The lock is free again afterwards.
	e.builder.gate = nil
	if err := e.push(context.Background(), "hello", alice, source(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if vs := e.store.releaseVersions("hello"); !slices.Equal(vs, []int{1, 2}) {
		t.Fatalf("versions %v, want [1 2]", vs)
	}
}

func TestSetConfig(t *testing.T) {
	boom := errors.New("boom")
	set := func(cfg map[string]string) error {
		cfg["NEW"] = "it's new"
		delete(cfg, "OLD")
		return nil
	}
	tests := []struct {
		name        string
		current     bool // the app has a running release v2 (v1 and v2 exist)
		restart     bool
		fn          func(map[string]string) error
		schedErr    error
		wantErr     string
		wantCfg     map[string]string
		wantCfgVer  int
		wantCurrent int
		wantRollout bool
		wantDeploy  string // state of the one deploy record, "" for none
	}{
		{
			name: "no restart only stores", current: true, restart: false, fn: set,
			wantCfg: map[string]string{"KEEP": "k", "NEW": "it's new"}, wantCfgVer: 8, wantCurrent: 2,
		},
		{
			name: "restart without a release only stores", current: false, restart: true, fn: set,
			wantCfg: map[string]string{"KEEP": "k", "NEW": "it's new"}, wantCfgVer: 8, wantCurrent: 0,
		},
		{
			name: "restart rolls out a new release", current: true, restart: true, fn: set,
			wantCfg: map[string]string{"KEEP": "k", "NEW": "it's new"}, wantCfgVer: 8, wantCurrent: 3,
			wantRollout: true, wantDeploy: paas.DeploySucceeded,
		},
		{
			name: "failed rollout leaves config unchanged", current: true, restart: true, fn: set, schedErr: boom,
			wantErr: "release v3 failed, v2 keeps serving: boom",
			wantCfg: map[string]string{"KEEP": "k", "OLD": "o"}, wantCfgVer: 7, wantCurrent: 2,
			wantRollout: true, wantDeploy: paas.DeployFailed,
		},
		{
			name: "fn error changes nothing", current: true, restart: true, fn: func(map[string]string) error { return boom },
			wantErr: "boom",
			wantCfg: map[string]string{"KEEP": "k", "OLD": "o"}, wantCfgVer: 7, wantCurrent: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := &paas.App{Name: "hello", Owner: "alice", Config: map[string]string{"KEEP": "k", "OLD": "o"}, ConfigVersion: 7}
			e := newPipelineEnv(t, app)
			if tc.current {
				app.Current = 2
				e.store.releases["hello"] = map[int]*paas.Release{
					1: {App: "hello", Version: 1, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:one"}, Config: map[string]string{}},
					2: {
						App: "hello", Version: 2, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:two"},
						Config: map[string]string{"KEEP": "k", "OLD": "o"}, ConfigVersion: 7,
						Processes: []paas.ProcessType{{Name: "web"}}, Scale: map[string]int{"web": 1},
						Commit: commit, Author: "bob", Reason: "push 0123456",
					},
				}
			}
			e.scheduler.err = tc.schedErr
			var out syncBuffer
			err := e.p.SetConfig(context.Background(), "hello", alice, "config:set NEW", tc.restart, tc.fn, &out)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("SetConfig = %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("SetConfig = %v, want %q", err, tc.wantErr)
			}
			got, _ := e.store.App("hello")
			if !maps.Equal(got.Config, tc.wantCfg) || got.ConfigVersion != tc.wantCfgVer || got.Current != tc.wantCurrent {
				t.Fatalf("app config %q v%d current %d, want %q v%d current %d", got.Config, got.ConfigVersion, got.Current, tc.wantCfg, tc.wantCfgVer, tc.wantCurrent)
			}
			if rolled := len(e.scheduler.deployed) > 0; rolled != tc.wantRollout {
				t.Fatalf("rolled out %v, want %v", rolled, tc.wantRollout)
			}
			if tc.wantRollout {
				rel := e.scheduler.deployed[0]
				if rel.Version != 3 || rel.Image.Digest != "sha256:two" || !maps.Equal(rel.Config, map[string]string{"KEEP": "k", "NEW": "it's new"}) ||
					rel.ConfigVersion != 8 || rel.Author != "alice" || rel.Reason != "config:set NEW" || rel.Commit != commit ||
					!slices.Equal(rel.Processes, []paas.ProcessType{{Name: "web"}}) {
					t.Fatalf("rolled out release %+v", rel)
				}
				if !strings.Contains(out.String(), "-----> Restarting app hello") {
					t.Fatalf("output %q", out.String())
				}
			}
			wantVersions := []int(nil)
			if tc.current {
				wantVersions = []int{1, 2}
				if tc.wantCurrent == 3 {
					wantVersions = []int{1, 2, 3}
				}
			}
			if vs := e.store.releaseVersions("hello"); !slices.Equal(vs, wantVersions) {
				t.Fatalf("releases %v, want %v", vs, wantVersions)
			}
			recs := e.store.deployRecords("hello")
			if tc.wantDeploy == "" {
				if len(recs) != 0 {
					t.Fatalf("deploy records %+v, want none", recs)
				}
				return
			}
			if len(recs) != 1 || recs[0].State != tc.wantDeploy || recs[0].Reason != "config:set NEW" || recs[0].Log != out.String() {
				t.Fatalf("deploy records %+v, want one %s", recs, tc.wantDeploy)
			}
			if wantRel := map[bool]int{true: 3, false: 0}[tc.wantDeploy == paas.DeploySucceeded]; recs[0].Release != wantRel {
				t.Fatalf("deploy record release %d, want %d", recs[0].Release, wantRel)
			}
		})
	}
}

func TestSetConfigUnknownApp(t *testing.T) {
	e := newPipelineEnv(t)
	err := e.p.SetConfig(context.Background(), "nope", alice, "x", true, func(map[string]string) error { return nil }, io.Discard)
	if !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("SetConfig = %v, want ErrAppNotFound", err)
	}
}

func TestLocked(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
	entered := make(chan string, 1)
	release := make(chan struct{})
	e.builder.gate = func(app string) {
		entered <- app
		<-release
	}
	errc := make(chan error, 1)
	go func() { errc <- e.push(context.Background(), "hello", alice, source(), io.Discard) }()
	waitFor(t, chanOf(entered), "the build")

	ran := make(chan struct{})
	w := &notifyWriter{marker: "Waiting for the running deploy", ch: make(chan struct{})}
	lockedErr := make(chan error, 1)
	go func() {
		lockedErr <- e.p.Locked(context.Background(), "hello", w, func() error {
			close(ran)
			return errors.New("from fn")
		})
	}()
	waitFor(t, w.ch, "Locked to wait for the push")
	select {
	case <-ran:
		t.Fatal("Locked ran fn while a push held the lock")
	default:
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := <-lockedErr; err == nil || err.Error() != "from fn" {
		t.Fatalf("Locked = %v, want fn's error", err)
	}
}

// TestTriggerArgs checks the arguments every pipeline trigger gets (the
// contract the README documents for plugin authors).
func TestTriggerArgs(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
	if err := e.push(context.Background(), "hello", alice, source(), io.Discard); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.buildRoot, "hello-1")
	img := "reg/hello@sha256:v1-0123456"
	want := [][]string{
		{"hello", commit},
		{"hello", dir, commit},
		{"hello", dir},
		{"hello", img},
		{"hello", img, "1"},
		{"hello", "1", img},
	}
	if len(e.triggers.args) != len(want) {
		t.Fatalf("trigger args %q, want %q", e.triggers.args, want)
	}
	for i := range want {
		if !slices.Equal(e.triggers.args[i], want[i]) {
			t.Fatalf("%s args %q, want %q", e.triggers.calls[i], e.triggers.args[i], want[i])
		}
	}
}
