// Package deploy is the pipeline: it turns a pushed commit or a config change
// into a new release running on the scheduler, one deploy at a time per app.
// The data flow of a push reads top to bottom in Pipeline.Push.
package deploy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"paas/builder"
	"paas/internal/applock"
	"paas/internal/cron"
	"paas/internal/output"
	"paas/internal/paas"
	"paas/plugins"
	"paas/scheduler"
)

// Store is the state the pipeline reads and records.
type Store interface {
	App(name string) (*paas.App, error)
	Apps() ([]*paas.App, error)
	UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error)
	Release(app string, v int) (*paas.Release, error)
	Releases(app string) ([]*paas.Release, error)
	LatestVersion(app string) (int, error)
	AddRelease(rel *paas.Release) error
	StartDeploy(d *paas.Deploy) error
	FinishDeploy(d *paas.Deploy) error
	// GlobalConfig is the config every app inherits (config:set --global).
	GlobalConfig() (map[string]string, error)
	// GlobalResources are the resource settings of every app without its
	// own (resource:limit --global).
	GlobalResources() (paas.ResourceSettings, error)
}

// Builder turns an exported commit into an image in the registry.
type Builder interface {
	Build(ctx context.Context, in builder.Input) (paas.Image, error)
}

// Scheduler runs a release; an error means the previous release still runs.
type Scheduler interface {
	Deploy(ctx context.Context, rel *paas.Release, opts scheduler.DeployOptions, out io.Writer) error
	Stop(ctx context.Context, app string, drain time.Duration, out io.Writer) error
	// CheckNow runs rel's checks against the tasks that serve the app now.
	CheckNow(ctx context.Context, rel *paas.Release, opts scheduler.DeployOptions, target string, out io.Writer) error
}

// Images drops the images of old releases from the registry.
type Images interface {
	// Prune keeps only the images keep (digests) of app.
	Prune(app string, keep []string) error
}

// Triggers runs plugin triggers; an error from a pre-* trigger stops the deploy.
type Triggers interface {
	Trigger(ctx context.Context, name string, args []string, out io.Writer) error
}

// Source is a commit to deploy.
type Source struct {
	Commit string
	// Export writes the commit's tree as a tar stream.
	Export func(ctx context.Context, w io.Writer) error
	// Reason names what deploys it in the build record ("push" when
	// empty; "ps:rebuild", "git:sync", "git:from-archive").
	Reason string
	// Kind and Metadata are what apps:report shows as the deploy source
	// once it serves: "git" and the commit when empty.
	Kind, Metadata string
}

// Pipeline runs deploys.
type Pipeline struct {
	store     Store
	builder   Builder
	scheduler Scheduler
	triggers  Triggers
	buildRoot string
	appURL    func(app string) string
	appHost   func(app string) string
	images    Images
	keep      int
	log       *slog.Logger
	// cronSeconds: app.json cron schedules may have a seconds field.
	cronSeconds bool
	envWrapper  EnvWrapper

	// networks lends each app a network of its own (nil: every app on
	// the installation's network); netMu serializes the lending.
	networks NetworkPool
	netMu    sync.Mutex

	locks applock.Set
	// running holds the log so far of each deploy being run, by runningKey.
	running sync.Map
}

// Options configures a Pipeline.
type Options struct {
	BuildRoot string                  // build dirs are made under it
	AppURL    func(app string) string // shown at the end of a deploy
	AppHost   func(app string) string // the Host header of health checks
	// Images, when set, drops the images of all but the last KeepReleases
	// releases (10 when zero) after each new release.
	Images       Images
	KeepReleases int
	Log          *slog.Logger
	// CronSeconds lets app.json cron schedules have a leading seconds
	// field (paasd serve --cron-seconds, for tests).
	CronSeconds bool
	// Networks, when set, gives each app a network of its own.
	Networks NetworkPool
	// EnvWrapper, when set, gives every release's image the env wrapper
	// before it rolls out, so its tasks get their config as a file.
	EnvWrapper EnvWrapper
}

// EnvWrapper adds the env wrapper to an image (builder.EnvWrapper).
type EnvWrapper interface {
	Wrap(ctx context.Context, img paas.Image, tag string) (paas.Image, error)
}

// New returns a Pipeline.
func New(st Store, b Builder, s Scheduler, t Triggers, opts Options) *Pipeline {
	return &Pipeline{
		store: st, builder: b, scheduler: s, triggers: t,
		buildRoot: opts.BuildRoot, appURL: opts.AppURL, appHost: opts.AppHost, log: opts.Log,
		images: opts.Images, keep: cmp.Or(opts.KeepReleases, 10), cronSeconds: opts.CronSeconds,
		networks:   opts.Networks,
		envWrapper: opts.EnvWrapper,
	}
}

// lock serializes deploys of one app; pushes of different apps run side by side.
func (p *Pipeline) lock(ctx context.Context, app string, out io.Writer) (func(), error) {
	return p.locks.Lock(ctx, app, func() {
		output.Step(out, "Waiting for the running deploy of %s to finish", app)
	})
}

// lockUnlocked takes the deploy lock of an app that is not locked against
// deploys (apps:lock).
func (p *Pipeline) lockUnlocked(ctx context.Context, appName string, out io.Writer) (func(), error) {
	unlock, err := p.lock(ctx, appName, out)
	if err != nil {
		return nil, err
	}
	app, err := p.store.App(appName)
	if err == nil && app.Locked {
		err = fmt.Errorf("%w (apps:unlock %s)", paas.ErrAppLocked, appName)
	}
	if err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// Push deploys a pushed commit: export, pre-build, build, release, roll out,
// post-deploy. Any error leaves the previous release serving and closes the
// deploy. On success the deploy stays open, with the app's deploy lock held,
// until the returned Landing is told whether git moved the branch to the
// commit: a push that git refuses after the deploy must not stay live.
func (p *Pipeline) Push(ctx context.Context, appName string, who paas.Identity, src Source, out io.Writer) (*Landing, error) {
	unlock, err := p.lockUnlocked(ctx, appName, out)
	if err != nil {
		return nil, err
	}
	rec := &paas.Deploy{App: appName, Commit: src.Commit, Reason: cmp.Or(src.Reason, "push"), Author: who.Name, StartedAt: time.Now().UTC()}
	out, finish, err := p.record(rec, out)
	if err != nil {
		unlock()
		return nil, err
	}
	rel, err := p.push(ctx, appName, who, src, rec, out)
	if err != nil {
		finish(err)
		unlock()
		return nil, err
	}
	source := [2]string{cmp.Or(src.Kind, "git"), cmp.Or(src.Metadata, src.Commit)}
	return &Landing{p: p, who: who, rel: rel, rec: rec, finish: finish, unlock: unlock, source: source}, nil
}

// setDeploySource records how the app's serving release was made
// (apps:report's deploy source); a failure is only logged.
func (p *Pipeline) setDeploySource(app, kind, metadata string) {
	_, err := p.store.UpdateApp(app, func(a *paas.App) error {
		a.DeploySource, a.DeploySourceMetadata = kind, metadata
		return nil
	})
	if err != nil {
		p.log.Warn("record deploy source", "app", app, "err", err)
	}
}

// Landing is a pushed commit that serves, waiting for git to move its branch.
type Landing struct {
	p      *Pipeline
	who    paas.Identity
	rel    *paas.Release
	rec    *paas.Deploy
	finish func(error)
	unlock func()
	once   sync.Once
	source [2]string // deploy source kind and metadata
}

// Release is the version that serves the pushed commit.
func (l *Landing) Release() int { return l.rel.Version }

// Land closes the push's deploy and frees the app. moved says whether git
// moved the branch to the commit; when it did not, the release is rolled back
// (to the release before it, or the app is stopped when it had none), so what
// serves is always what the branch holds. The error is the push's outcome.
func (l *Landing) Land(ctx context.Context, moved bool, out io.Writer) error {
	err := errors.New("deploy already landed")
	l.once.Do(func() {
		defer l.unlock()
		if moved {
			l.p.setDeploySource(l.rel.App, l.source[0], l.source[1])
			l.finish(nil)
			err = nil
			return
		}
		err = l.p.unland(ctx, l.rel, l.who, out)
		l.finish(err)
	})
	return err
}

// unland takes back rel, a pushed release that serves although git did not
// move the branch to its commit. It runs under the app's deploy lock, held by
// the caller, and returns the error that closes the push's deploy.
func (p *Pipeline) unland(ctx context.Context, rel *paas.Release, who paas.Identity, out io.Writer) error {
	cause := fmt.Errorf("git did not move the branch to %s", shortSHA(rel.Commit))
	app, err := p.store.App(rel.App)
	if err != nil {
		return fmt.Errorf("%w; v%d still serves: %w", cause, rel.Version, err)
	}
	if app.Current != rel.Version {
		return fmt.Errorf("%w; v%d no longer serves", cause, rel.Version)
	}
	prev, err := (*paas.Release)(nil), paas.ErrNoRelease
	if rel.Version > 1 { // Release takes 0 for the current one
		prev, err = p.store.Release(rel.App, rel.Version-1)
	}
	if errors.Is(err, paas.ErrNoRelease) {
		output.Step(out, "Stopping %s: its first push did not complete", rel.App)
		if err := p.scheduler.Stop(ctx, rel.App, drainTimeout(app), out); err != nil {
			return fmt.Errorf("%w; v%d still serves: %w", cause, rel.Version, err)
		}
		_, err := p.store.UpdateApp(rel.App, func(a *paas.App) error { a.Current, a.Stopped = 0, false; return nil })
		if err != nil {
			return fmt.Errorf("%w; stopped v%d: %w", cause, rel.Version, err)
		}
		return fmt.Errorf("%w; stopped v%d, nothing serves", cause, rel.Version)
	}
	if err != nil {
		return fmt.Errorf("%w; v%d still serves: %w", cause, rel.Version, err)
	}
	err = p.changeLocked(ctx, app, who, "rollback", out, func(app *paas.App, version int, out io.Writer) (*paas.Release, error) {
		return p.rollbackRelease(app, prev, who, version, fmt.Sprintf("rollback to v%d: the push of %s did not complete", prev.Version, shortSHA(rel.Commit)), out), nil
	})
	if err != nil {
		return fmt.Errorf("%w; rolling v%d back failed, it still serves: %w", cause, rel.Version, err)
	}
	return fmt.Errorf("%w; v%d was rolled back to v%d", cause, rel.Version, prev.Version)
}

func (p *Pipeline) push(ctx context.Context, appName string, who paas.Identity, src Source, rec *paas.Deploy, out io.Writer) (*paas.Release, error) {
	app, err := p.store.App(appName)
	if err != nil {
		return nil, err
	}
	short := shortSHA(src.Commit)
	output.Step(out, "Deploying %s (%s)", appName, short)
	ctx = plugins.WithUser(ctx, who)
	if err := p.triggers.Trigger(ctx, plugins.TriggerPreReceiveApp, []string{appName, src.Commit}, out); err != nil {
		return nil, err
	}

	// 1. export the pushed commit to a build dir
	dir := filepath.Join(p.buildRoot, fmt.Sprintf("%s-%d", appName, rec.ID))
	defer os.RemoveAll(dir)
	if err := exportTo(ctx, src.Export, dir); err != nil {
		return nil, fmt.Errorf("export %s: %w", short, err)
	}
	if err := p.triggers.Trigger(ctx, plugins.TriggerPostExtract, []string{appName, dir, src.Commit}, out); err != nil {
		return nil, err
	}

	// 2. pre-build plugins
	if err := p.triggers.Trigger(ctx, plugins.TriggerPreBuild, []string{appName, dir}, out); err != nil {
		return nil, err
	}

	// 3. build the image
	if err := useProcfile(dir, app.ProcfilePath, out); err != nil {
		return nil, err
	}
	procs, err := ReadProcfile(dir)
	if err != nil {
		return nil, err
	}
	checks, err := ReadAppJSON(dir)
	if err != nil {
		return nil, err
	}
	tasks, err := cron.ReadAppJSON(dir, p.cronSeconds)
	if err != nil {
		return nil, err
	}
	version, err := p.store.LatestVersion(appName)
	if err != nil {
		return nil, err
	}
	version++
	global, err := p.store.GlobalConfig()
	if err != nil {
		return nil, err
	}
	img, err := p.builder.Build(ctx, builder.Input{
		App: appName, Dir: dir, Tag: fmt.Sprintf("v%d-%s", version, short), Out: out,
		Config: paas.MergeConfig(global, app.Config), Report: func(b string) { rec.Builder = b },
	})
	if err != nil {
		return nil, fmt.Errorf("build failed: %w", err)
	}
	if err := p.triggers.Trigger(ctx, plugins.TriggerPostBuild, []string{appName, img.Ref()}, out); err != nil {
		return nil, err
	}

	// 4-6. release and roll out (the router follows the running tasks)
	rel := &paas.Release{
		App: appName, Version: version, Image: img,
		Config: app.Config, Global: global, ConfigVersion: app.ConfigVersion,
		Processes: procs, Checks: checks, Cron: tasks,
		Commit: src.Commit, Author: who.Name, Reason: rec.Reason + " " + short, Deploy: rec.ID,
	}
	// (pre-deploy and post-deploy plugins run in rollOut)
	if err := p.rollOut(ctx, app, rel, out); err != nil {
		return nil, err
	}
	rec.Release = rel.Version
	output.Header(out, "Application deployed:")
	output.Detail(out, "%s", p.appURL(appName))
	return rel, nil
}

// rollOut runs rel, a new release (of a push, an image, a rollback or a
// config change), on the scheduler at the app's formation and records it as
// current once it serves, between the pre-deploy and post-deploy plugins.
func (p *Pipeline) rollOut(ctx context.Context, app *paas.App, rel *paas.Release, out io.Writer) error {
	rel.CreatedAt = time.Now().UTC()
	rel.Scale = app.ScaleOf(rel.Processes)
	// Every new release, a rollback's too, runs with the app's resource
	// settings as they are now, over the installation's.
	global, err := p.store.GlobalResources()
	if err != nil {
		return err
	}
	rel.Resources, rel.GlobalResources = app.Resources.Clone(), global
	withStorage(app, rel)
	if err := p.ensureOwnNetwork(ctx, app); err != nil {
		return err
	}
	withNetworks(app, rel)
	if err := paas.CheckResources(rel.Resources, global, processNames(rel)...); err != nil {
		return err
	}
	if p.envWrapper != nil && !rel.Image.EnvExec {
		// Once per image: a release made from a wrapped image (a config
		// change, a rollback) keeps it.
		img, err := p.envWrapper.Wrap(ctx, rel.Image, fmt.Sprintf("v%d-env", rel.Version))
		if err != nil {
			return err
		}
		rel.Image = img
	}
	err = p.deployTriggered(ctx, rel, p.deployOptions(app, rel, false), out, func() error {
		if err := p.store.AddRelease(rel); err != nil {
			return fmt.Errorf("record release: %w", err)
		}
		return nil
	})
	var refused refusedError
	switch {
	case err == nil:
		p.pruneImages(app.Name, out)
		return nil
	case errors.As(err, &refused):
		return err
	case app.Current == 0:
		return fmt.Errorf("release v%d failed: %w", rel.Version, err)
	}
	return fmt.Errorf("release v%d failed, v%d keeps serving: %w", rel.Version, app.Current, err)
}

// refusedError is a rollout a pre-deploy plugin refused: nothing was started.
type refusedError struct{ error }

func (e refusedError) Unwrap() error { return e.error }

// deployTriggered rolls rel out on the scheduler between the pre-deploy
// plugins, which may refuse it, and the post-deploy ones, whose failure is
// only reported; serving runs the moment the release receives traffic,
// before older tasks are drained, so that what serves is on record even if
// paasd dies during the drain.
func (p *Pipeline) deployTriggered(ctx context.Context, rel *paas.Release, opts scheduler.DeployOptions, out io.Writer, serving func() error) error {
	if err := p.triggers.Trigger(ctx, plugins.TriggerPreDeploy, []string{rel.App, rel.Image.Ref(), fmt.Sprint(rel.Version)}, out); err != nil {
		return refusedError{err}
	}
	opts.Routed = serving
	if err := p.scheduler.Deploy(ctx, rel, opts, out); err != nil {
		return err
	}
	if err := p.triggers.Trigger(ctx, plugins.TriggerPostDeploy, []string{rel.App, fmt.Sprint(rel.Version), rel.Image.Ref()}, out); err != nil {
		output.Warn(out, "post-deploy: %v", err)
	}
	return nil
}

// pruneImages drops the images that only releases older than the last p.keep
// use. Those releases stay in the history; rolling back to one of them
// fails at the rollout and changes nothing. A failure is only reported: the
// release is live.
func (p *Pipeline) pruneImages(app string, out io.Writer) {
	if p.images == nil {
		return
	}
	rels, err := p.store.Releases(app)
	if err == nil && len(rels) <= p.keep {
		return
	}
	var keep []string
	if err == nil {
		for _, r := range rels[:p.keep] { // newest first
			keep = append(keep, r.Image.Digest)
		}
		err = p.images.Prune(app, keep)
	}
	if err != nil {
		p.log.Warn("prune images", "app", app, "err", err)
		output.Warn(out, "could not drop the images of old releases: %v", err)
	}
}

// SetConfig changes an app's config through fn, and the app through each of
// also (postgres:link's network). With restart and a running release, the
// change is rolled out as a new release and stored only once it runs;
// otherwise it is stored for the next deploy.
func (p *Pipeline) SetConfig(ctx context.Context, appName string, who paas.Identity, reason string, restart bool, fn func(cfg map[string]string) error, out io.Writer, also ...func(*paas.App)) error {
	ctx = plugins.WithUser(ctx, who)
	unlock, err := p.lock(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	app, err := p.store.App(appName)
	if err != nil {
		return err
	}
	cfg := make(map[string]string, len(app.Config))
	for k, v := range app.Config {
		cfg[k] = v
	}
	if err := fn(cfg); err != nil {
		return err
	}
	changeApp := func(a *paas.App) {
		for _, f := range also {
			f(a)
		}
	}
	if !restart || app.Current == 0 {
		_, err := p.store.UpdateApp(appName, func(a *paas.App) error {
			a.Config = cfg
			a.ConfigVersion++
			changeApp(a)
			return nil
		})
		return err
	}
	cur, err := p.store.Release(appName, 0)
	if err != nil {
		return err
	}
	global, err := p.store.GlobalConfig()
	if err != nil {
		return err
	}
	err = p.changeLocked(ctx, app, who, reason, out, func(app *paas.App, version int, out io.Writer) (*paas.Release, error) {
		output.Step(out, "Restarting app %s", appName)
		rel := *cur
		rel.Version, rel.Config, rel.Global, rel.ConfigVersion = version, cfg, global, app.ConfigVersion+1
		rel.Author, rel.Reason = who.Name, reason
		app.Config, app.ConfigVersion = cfg, app.ConfigVersion+1
		changeApp(app)
		return &rel, nil
	})
	if err != nil || len(also) == 0 {
		return err
	}
	_, err = p.store.UpdateApp(appName, func(a *paas.App) error {
		changeApp(a)
		return nil
	})
	return err
}

// Locked runs fn holding the app's deploy lock (used by apps:destroy).
func (p *Pipeline) Locked(ctx context.Context, appName string, out io.Writer, fn func() error) error {
	unlock, err := p.lock(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

const maxLog = 1 << 20

// record starts a deploy record and returns an output that also keeps the log,
// and the function that closes the record with the result.
func (p *Pipeline) record(rec *paas.Deploy, out io.Writer) (io.Writer, func(error), error) {
	if err := p.store.StartDeploy(rec); err != nil {
		return nil, nil, err
	}
	buf := &cappedBuffer{max: maxLog, grown: make(chan struct{})}
	p.running.Store(runningKey{rec.App, rec.ID}, buf)
	finish := func(err error) {
		rec.FinishedAt = time.Now().UTC()
		rec.State = paas.DeploySucceeded
		if err != nil {
			rec.State, rec.Error = paas.DeployFailed, err.Error()
		}
		rec.Log = buf.String()
		if ferr := p.store.FinishDeploy(rec); ferr != nil {
			p.log.Error("record deploy", "app", rec.App, "err", ferr)
		}
		p.running.Delete(runningKey{rec.App, rec.ID})
		buf.end() // followers read the rest from the record
		p.log.Info("deploy finished", "app", rec.App, "deploy", rec.ID, "release", rec.Release, "state", rec.State)
	}
	return io.MultiWriter(out, buf), finish, nil
}

// runningKey names a deploy: ids count per app.
type runningKey struct {
	app string
	id  int
}

// RunningLogFrom returns what the app's deploy id has written from byte
// offset off on, while it runs, and a channel closed as soon as it writes
// more or ends: a follower reads each byte once, however long the log.
// ok is false once the deploy has ended (its record then holds the whole
// log, of which the bytes read so far are the beginning).
func (p *Pipeline) RunningLogFrom(app string, id, off int) (more string, changed <-chan struct{}, ok bool) {
	buf, ok := p.running.Load(runningKey{app, id})
	if !ok {
		return "", nil, false
	}
	more, changed = buf.(*cappedBuffer).from(off)
	return more, changed, true
}

// cappedBuffer keeps a running deploy's output, up to max bytes, and
// tells followers when it grows.
type cappedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	max   int
	grown chan struct{} // closed and replaced at each write, closed at the end
	ended bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 && len(p) > 0 {
		c.buf.Write(p[:min(len(p), room)])
		if !c.ended {
			close(c.grown)
			c.grown = make(chan struct{})
		}
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// from returns the bytes from offset off on and the channel closed at the
// next write or at the end.
func (c *cappedBuffer) from(off int) (string, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf.Bytes()
	return string(b[min(max(off, 0), len(b)):]), c.grown
}

// end wakes the followers for the last time.
func (c *cappedBuffer) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		c.ended = true
		close(c.grown)
	}
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

// ReadProcfile returns the process types of the commit in dir; without a
// Procfile the app has one web process running the image's own command.
func ReadProcfile(dir string) ([]paas.ProcessType, error) {
	data, err := os.ReadFile(filepath.Join(dir, "Procfile"))
	if errors.Is(err, os.ErrNotExist) {
		return []paas.ProcessType{{Name: paas.WebProcess}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Procfile: %w", err)
	}
	return ParseProcfile(data)
}

// useProcfile makes the Procfile at path (relative to the root of the
// commit in dir; ps:set APP procfile-path) the build's Procfile, so that the
// release and a buildpacks build both read it. A path the commit does not
// have means no Procfile, as Dokku does. The file is read and the root one
// replaced through an os.Root, so that a symlink in the pushed tree cannot
// reach outside dir.
func useProcfile(dir, path string, out io.Writer) error {
	if path == "" || path == "Procfile" {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open build dir: %w", err)
	}
	defer root.Close()
	data, err := root.ReadFile(path)
	found := err == nil
	switch {
	case errors.Is(err, os.ErrNotExist):
		output.Step(out, "No Procfile at %s (ps:set procfile-path): building as if the repository had none", path)
	case err != nil:
		return fmt.Errorf("read the Procfile at %s: %w", path, err)
	default:
		output.Step(out, "Using the Procfile at %s", path)
	}
	if err := root.Remove("Procfile"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace the Procfile: %w", err)
	}
	if !found {
		return nil
	}
	if err := root.WriteFile("Procfile", data, 0o644); err != nil {
		return fmt.Errorf("replace the Procfile: %w", err)
	}
	return nil
}

// ParseProcfile parses "name: command" lines.
func ParseProcfile(data []byte) ([]paas.ProcessType, error) {
	var procs []paas.ProcessType
	seen := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		if !ok || paas.ValidateAppName(name) != nil || cmd == "" {
			return nil, fmt.Errorf("Procfile line %d: want \"name: command\" with a lowercase name, got %q", i+1, line)
		}
		if seen[name] {
			return nil, fmt.Errorf("Procfile line %d: process type %q defined twice", i+1, name)
		}
		seen[name] = true
		procs = append(procs, paas.ProcessType{Name: name, Command: cmd})
	}
	if !seen[paas.WebProcess] {
		procs = append([]paas.ProcessType{{Name: paas.WebProcess}}, procs...)
	}
	return procs, nil
}
