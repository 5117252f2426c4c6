package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/scheduler"
)

// fakeStore is an in-memory Store. It hands out copies, as the real store does.
type fakeStore struct {
	mu       sync.Mutex
	apps     map[string]*paas.App
	keys     map[string]*paas.SSHKey
	deleted  []string
	rels     map[string][]*paas.Release // newest first
	deploys  map[string][]*paas.Deploy  // newest first
	global   map[string]string
	settings paas.AppsSettings
	renames  []string // "old>new"
	onRename func(old, to string)
}

func (s *fakeStore) GlobalConfig() (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return nonNil(maps.Clone(s.global)), nil
}

func (s *fakeStore) UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[name]
	if !ok {
		return nil, paas.ErrAppNotFound
	}
	c := copyApp(a)
	if err := fn(c); err != nil {
		return nil, err
	}
	s.apps[name] = c
	return copyApp(c), nil
}

func (s *fakeStore) RenameApp(old, to string, image func(paas.Image) paas.Image) (*paas.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[old]
	if !ok {
		return nil, paas.ErrAppNotFound
	}
	if _, taken := s.apps[to]; taken {
		return nil, paas.ErrAppExists
	}
	a.Name, a.RenamedFrom = to, old
	s.apps[to] = a
	delete(s.apps, old)
	for _, r := range s.rels[old] {
		r.App = to
		if image != nil {
			r.Image = image(r.Image)
		}
	}
	if s.rels != nil {
		s.rels[to] = s.rels[old]
		delete(s.rels, old)
	}
	s.renames = append(s.renames, old+">"+to)
	if s.onRename != nil {
		s.onRename(old, to)
	}
	return copyApp(a), nil
}

func (s *fakeStore) AppsSettings() (paas.AppsSettings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings, nil
}

func (s *fakeStore) UpdateGlobalConfig(fn func(map[string]string) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := nonNil(maps.Clone(s.global))
	if err := fn(cfg); err != nil {
		return err
	}
	s.global = cfg
	return nil
}

var _ Store = (*fakeStore)(nil)

func newFakeStore(apps ...*paas.App) *fakeStore {
	s := &fakeStore{apps: map[string]*paas.App{}, keys: map[string]*paas.SSHKey{}}
	for _, a := range apps {
		if a.Config == nil {
			a.Config = map[string]string{}
		}
		s.apps[a.Name] = a
	}
	return s
}

func copyApp(a *paas.App) *paas.App {
	c := *a
	c.Config = maps.Clone(a.Config)
	return &c
}

func (s *fakeStore) App(name string) (*paas.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[name]
	if !ok {
		return nil, paas.ErrAppNotFound
	}
	return copyApp(a), nil
}

func (s *fakeStore) Apps() ([]*paas.App, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*paas.App
	for _, n := range slices.Sorted(maps.Keys(s.apps)) {
		out = append(out, copyApp(s.apps[n]))
	}
	return out, nil
}

func (s *fakeStore) AppList() ([]paas.AppEntry, error) {
	apps, _ := s.Apps()
	var out []paas.AppEntry
	for _, a := range apps {
		out = append(out, paas.AppEntry{Name: a.Name, Owner: a.Owner, Access: a.Access, Current: a.Current, Stopped: a.Stopped})
	}
	return out, nil
}

func (s *fakeStore) ServedSince(apps []paas.AppEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range apps {
		apps[i].DeployedAt = time.Time{}
		for _, rel := range s.rels[a.Name] {
			if rel.Version == a.Current {
				apps[i].DeployedAt = rel.CreatedAt.UTC()
			}
		}
	}
	return nil
}

func (s *fakeStore) CreateApp(app *paas.App) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[app.Name]; ok {
		return paas.ErrAppExists
	}
	if app.Config == nil {
		app.Config = map[string]string{}
	}
	s.apps[app.Name] = copyApp(app)
	return nil
}

func (s *fakeStore) DeleteApp(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[name]; !ok {
		return paas.ErrAppNotFound
	}
	delete(s.apps, name)
	s.deleted = append(s.deleted, name)
	return nil
}

func (s *fakeStore) AddKey(k *paas.SSHKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[k.Name]; ok {
		return paas.ErrKeyExists
	}
	for _, o := range s.keys {
		if o.Fingerprint == k.Fingerprint {
			return paas.ErrKeyExists
		}
	}
	c := *k
	s.keys[k.Name] = &c
	return nil
}

func (s *fakeStore) Keys() ([]*paas.SSHKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*paas.SSHKey
	for _, n := range slices.Sorted(maps.Keys(s.keys)) {
		c := *s.keys[n]
		out = append(out, &c)
	}
	return out, nil
}

func (s *fakeStore) RemoveKey(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[name]; !ok {
		return paas.ErrKeyNotFound
	}
	delete(s.keys, name)
	return nil
}

func (s *fakeStore) Releases(app string) ([]*paas.Release, error) {
	if _, err := s.App(app); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rels[app], nil
}

func (s *fakeStore) Deploys(app string) ([]*paas.Deploy, error) {
	if _, err := s.App(app); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deploys[app], nil
}

// setConfigCall is one recorded Pipeline.SetConfig.
type setConfigCall struct {
	app     string
	who     string
	reason  string
	restart bool
}

// fakePipeline applies config changes straight to the fake store.
type fakePipeline struct {
	store *fakeStore
	err   error // returned by SetConfig after fn ran, without storing

	mu     sync.Mutex
	calls  []setConfigCall
	locked []string
}

var _ Pipeline = (*fakePipeline)(nil)

func (p *fakePipeline) SetConfig(_ context.Context, app string, who paas.Identity, reason string, restart bool, fn func(map[string]string) error, out io.Writer, also ...func(*paas.App)) error {
	p.mu.Lock()
	p.calls = append(p.calls, setConfigCall{app, who.Name, reason, restart})
	p.mu.Unlock()
	a, err := p.store.App(app)
	if err != nil {
		return err
	}
	cfg := maps.Clone(a.Config)
	if err := fn(cfg); err != nil {
		return err
	}
	if p.err != nil {
		return p.err
	}
	p.store.mu.Lock()
	p.store.apps[app].Config = cfg
	for _, f := range also {
		f(p.store.apps[app])
	}
	p.store.mu.Unlock()
	return nil
}

func (p *fakePipeline) Locked(_ context.Context, app string, _ io.Writer, fn func() error) error {
	p.mu.Lock()
	p.locked = append(p.locked, app)
	p.mu.Unlock()
	return fn()
}

type fakeRuntime struct {
	mu      sync.Mutex
	removed []string
	stopped []string
	logOpts []scheduler.LogOptions
	status  []scheduler.ProcessStatus // what Status returns when set
}

func (r *fakeRuntime) Stop(_ context.Context, app string, _ time.Duration, _ io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = append(r.stopped, app)
	return nil
}

var _ Runtime = (*fakeRuntime)(nil)

func (r *fakeRuntime) Logs(_ context.Context, app string, opts scheduler.LogOptions, w io.Writer) error {
	r.mu.Lock()
	r.logOpts = append(r.logOpts, opts)
	r.mu.Unlock()
	_, err := io.WriteString(w, app+" log line\n")
	return err
}

func (r *fakeRuntime) Status(_ context.Context, app string) ([]scheduler.ProcessStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status != nil {
		return r.status, nil
	}
	return []scheduler.ProcessStatus{{Process: "web", Desired: 1, Running: 1,
		Tasks: []scheduler.TaskStatus{{ID: "t1", Slot: 1, State: "running", Node: "node2"}}}}, nil
}

func (r *fakeRuntime) Remove(_ context.Context, app string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, app)
	return nil
}

type fakeRepos struct {
	createErr error
	renameErr error
	renamed   []string // "old>new"
	copied    []string // "from>to"

	mu      sync.Mutex
	created []string
	removed []string
}

var _ Repos = (*fakeRepos)(nil)

func (r *fakeRepos) Create(app string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.createErr != nil {
		return r.createErr
	}
	r.created = append(r.created, app)
	return nil
}

func (r *fakeRepos) Remove(app string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, app)
	return nil
}

func (r *fakeRepos) Path(app string) string { return "/data/repos/" + app + ".git" }

func (r *fakeRepos) Head(app, branch string) (string, error) { return "", nil }

func (r *fakeRepos) Rename(old, to string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.renameErr != nil {
		return r.renameErr
	}
	r.renamed = append(r.renamed, old+">"+to)
	return nil
}

func (r *fakeRepos) CopyRefs(from, to string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.copied = append(r.copied, from+">"+to)
	return nil
}

func (r *fakeRepos) UpdatedAt(app, branch string) (time.Time, error) { return time.Time{}, nil }

type fakeImages struct {
	mu      sync.Mutex
	deleted []string
	copied  []string        // "digest>app:tag"
	missing map[string]bool // digests the registry no longer has
}

func (i *fakeImages) Copy(_ context.Context, img paas.Image, app, tag string) (paas.Image, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.missing[img.Digest] {
		return paas.Image{}, errors.New("MANIFEST_UNKNOWN")
	}
	i.copied = append(i.copied, img.Digest+">"+app+":"+tag)
	img.Repository = "reg/" + app
	return img, nil
}

var _ Images = (*fakeImages)(nil)

func (i *fakeImages) DeleteApp(app string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.deleted = append(i.deleted, app)
	return nil
}

// env is a dispatcher over the built-in commands with fakes behind it.
type env struct {
	store    *fakeStore
	pipeline *fakePipeline
	runtime  *fakeRuntime
	repos    *fakeRepos
	images   *fakeImages
	releases *fakeReleases
	d        *Dispatcher
}

var (
	alice = paas.Identity{Name: "alice"}
	bob   = paas.Identity{Name: "bob"}
	root  = paas.Identity{Name: "root", Admin: true}
)

// newEnv has apps "alpha" (alice's, with config) and "bravo" (bob's, deployed).
func newEnv(t *testing.T, more ...func(*Platform)) *env {
	t.Helper()
	st := newFakeStore(
		&paas.App{Name: "alpha", Owner: "alice", CreatedAt: time.Unix(1700000000, 0).UTC(), Config: map[string]string{"GREETING": "hi", "EMPTY": ""}},
		&paas.App{Name: "bravo", Owner: "bob", CreatedAt: time.Unix(1700000000, 0).UTC(), Current: 3},
	)
	e := &env{store: st, pipeline: &fakePipeline{store: st}, runtime: &fakeRuntime{}, repos: &fakeRepos{}, images: &fakeImages{}}
	p := &Platform{
		Store: st, Pipeline: e.pipeline, Runtime: e.runtime, Repos: e.repos, Images: e.images,
		AppURL: func(app string) string { return "http://" + app + ".example.test" },
	}
	e.releases = &fakeReleases{store: st}
	p.Releases, p.OneOffs = e.releases, e.releases
	for _, f := range more {
		f(p)
	}
	e.d = NewDispatcher(st, "1.2.3", p.Builtins())
	return e
}

// fakeReleases records the release operations.
type fakeReleases struct {
	store *fakeStore
	err   error
	calls []string
	run   scheduler.RunOptions
	code  int
}

func (f *fakeReleases) record(format string, args ...any) error {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fakeReleases) Rollback(_ context.Context, app string, who paas.Identity, target int, _ io.Writer) error {
	return f.record("rollback %s %d by %s", app, target, who.Name)
}

func (f *fakeReleases) Scale(_ context.Context, app string, _ paas.Identity, scale map[string]int, _ io.Writer) error {
	return f.record("scale %s %v", app, scale)
}

func (f *fakeReleases) Restart(_ context.Context, app string, _ paas.Identity, _ io.Writer) error {
	return f.record("restart %s", app)
}

func (f *fakeReleases) Stop(_ context.Context, app string, _ paas.Identity, _ io.Writer) error {
	return f.record("stop %s", app)
}

func (f *fakeReleases) Start(_ context.Context, app string, _ paas.Identity, _ io.Writer) error {
	return f.record("start %s", app)
}

func (f *fakeReleases) Rebuild(_ context.Context, app string, _ paas.Identity, _ io.Writer) error {
	return f.record("rebuild %s", app)
}

func (f *fakeReleases) UpdateChecks(app string, fn func(*paas.CheckSettings) error) (*paas.App, error) {
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	a := f.store.apps[app]
	c := a.Checks
	c.Props = maps.Clone(c.Props)
	if err := fn(&c); err != nil {
		return nil, err
	}
	a.Checks = c
	return a, nil
}

func (f *fakeReleases) DeployFrom(_ context.Context, app string, who paas.Identity, from *paas.Release, img paas.Image, reason string, _ io.Writer) error {
	return f.record("deploy-from %s %s v%d %s %q", app, from.App, from.Version, img.Ref(), reason)
}

func (f *fakeReleases) Run(_ context.Context, rel *paas.Release, opts scheduler.RunOptions) (int, error) {
	f.run = opts
	return f.code, f.record("run %s v%d %q", rel.App, rel.Version, opts.Args)
}

func (f *fakeReleases) Detach(_ context.Context, rel *paas.Release, opts scheduler.RunOptions) (string, error) {
	f.run = opts
	return "paas-" + rel.App + "-run-abc123", f.record("detach %s v%d %q", rel.App, rel.Version, opts.Args)
}

func (f *fakeReleases) OneOffs(_ context.Context, app string) ([]scheduler.OneOff, error) {
	if err := f.record("list %s", app); err != nil {
		return nil, err
	}
	return []scheduler.OneOff{{Name: "paas-" + app + "-run-abc123", State: "running", Command: "sleep 60", CreatedAt: time.Unix(1700000000, 0).UTC(), Release: 3, Detached: true}}, nil
}

func (f *fakeReleases) OneOffLogs(_ context.Context, app string, opts scheduler.OneOffLogOptions, w io.Writer) error {
	if opts.Name == "nope" {
		return fmt.Errorf("%w %q of %s", scheduler.ErrNoOneOff, opts.Name, app)
	}
	return f.record("logs %s %+v", app, opts)
}

func (f *fakeReleases) StopOneOffs(_ context.Context, app, name string) ([]string, error) {
	if name == "nope" {
		return nil, fmt.Errorf("%w %q of %s", scheduler.ErrNoOneOff, name, app)
	}
	if err := f.record("stop-run %s %q", app, name); err != nil {
		return nil, err
	}
	if name == "" {
		return []string{"paas-" + app + "-run-abc123", "paas-" + app + "-run-def456"}, nil
	}
	return []string{name}, nil
}

// run runs one command and returns its exit code, stdout and stderr.
func (e *env) run(t *testing.T, id paas.Identity, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	code := e.d.RunCommand(context.Background(), id, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

var errBoom = errors.New("boom")
