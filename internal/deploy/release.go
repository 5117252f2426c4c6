package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/plugins"
	"paas/scheduler"
)

// Rollback makes a new release from release target's image, config and
// process types (the one before the current when target is 0) and rolls
// it out through the same health gate as a push.
func (p *Pipeline) Rollback(ctx context.Context, appName string, who paas.Identity, target int, out io.Writer) error {
	return p.change(ctx, appName, who, "rollback", out, func(app *paas.App, version int, out io.Writer) (*paas.Release, error) {
		if app.Current == 0 {
			return nil, fmt.Errorf("%w: nothing to roll back", paas.ErrNoRelease)
		}
		if target == 0 {
			target = app.Current - 1
		}
		if target == app.Current {
			return nil, fmt.Errorf("v%d is the current release already", target)
		}
		old, err := p.store.Release(appName, target)
		if err != nil {
			return nil, fmt.Errorf("release v%d of %s: %w", target, appName, err)
		}
		return p.rollbackRelease(app, old, who, version, fmt.Sprintf("rollback to v%d", target), out), nil
	})
}

// DeployFrom makes a new release of appName from another app's release:
// its process types, checks and commit, the image img (a copy of its image
// in appName's repository), and appName's own config; it is rolled out
// through the same health gate as a push (apps:clone).
func (p *Pipeline) DeployFrom(ctx context.Context, appName string, who paas.Identity, from *paas.Release, img paas.Image, reason string, out io.Writer) error {
	global, err := p.store.GlobalConfig()
	if err != nil {
		return err
	}
	return p.change(ctx, appName, who, reason, out, func(app *paas.App, version int, out io.Writer) (*paas.Release, error) {
		output.Step(out, "Releasing %s v%d from %s v%d (%s)", appName, version, from.App, from.Version, shortDigest(img.Digest))
		return &paas.Release{
			App: appName, Version: version, Image: img,
			Config: app.Config, Global: global, ConfigVersion: app.ConfigVersion,
			Processes: slices.Clone(from.Processes), Checks: maps.Clone(from.Checks), Cron: slices.Clone(from.Cron),
			Commit: from.Commit, Author: who.Name, Reason: reason,
		}, nil
	})
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	return d[:min(12, len(d))]
}

// rollbackRelease is release version of app: old's image, config and
// process types again.
func (p *Pipeline) rollbackRelease(app *paas.App, old *paas.Release, who paas.Identity, version int, reason string, out io.Writer) *paas.Release {
	rel := *old
	rel.Version, rel.Author, rel.Reason = version, who.Name, reason
	rel.ConfigVersion = app.ConfigVersion + 1
	output.Step(out, "Rolling back %s to v%d (as v%d)", app.Name, old.Version, version)
	return &rel
}

// change runs one release-making change of the app under its deploy lock,
// recorded like a push: make builds the new release from the app and the
// next version number; what it writes to its out goes to the deploy's log.
func (p *Pipeline) change(ctx context.Context, appName string, who paas.Identity, reason string, out io.Writer, make func(app *paas.App, version int, out io.Writer) (*paas.Release, error)) error {
	app, unlock, err := p.lockApp(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	return p.changeLocked(ctx, app, who, reason, out, make)
}

// lockApp takes the app's deploy lock and loads the app.
func (p *Pipeline) lockApp(ctx context.Context, appName string, out io.Writer) (*paas.App, func(), error) {
	unlock, err := p.lock(ctx, appName, out)
	if err != nil {
		return nil, nil, err
	}
	app, err := p.store.App(appName)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return app, unlock, nil
}

// changeLocked is change for a caller that holds the app's deploy lock.
func (p *Pipeline) changeLocked(ctx context.Context, app *paas.App, who paas.Identity, reason string, out io.Writer, make func(app *paas.App, version int, out io.Writer) (*paas.Release, error)) error {
	ctx = plugins.WithUser(ctx, who)
	version, err := p.store.LatestVersion(app.Name)
	if err != nil {
		return err
	}
	// What make says belongs to the deploy's log, which starts only once
	// make has accepted the change.
	var said bytes.Buffer
	rel, err := make(app, version+1, &said)
	if err != nil {
		out.Write(said.Bytes())
		return err
	}
	rec := &paas.Deploy{App: app.Name, Commit: rel.Commit, Reason: reason, Author: who.Name, StartedAt: time.Now().UTC()}
	out, finish, err := p.record(rec, out)
	if err != nil {
		return err
	}
	out.Write(said.Bytes())
	rel.Deploy = rec.ID
	err = p.rollOut(ctx, app, rel, out)
	if err == nil {
		rec.Release = rel.Version
	}
	finish(err)
	return err
}

// Scale sets how many tasks each named process type runs and rolls the
// current release out at that formation (no new release: Heroku's
// formation is not part of one). Web changes go through a new health-checked
// deployment; other process types are scaled in place.
func (p *Pipeline) Scale(ctx context.Context, appName string, who paas.Identity, scale map[string]int, out io.Writer) error {
	return p.withCurrent(ctx, appName, who, "ps:scale", false, out, func(app *paas.App, rel *paas.Release) error {
		if err := checkScale(rel, scale); err != nil {
			return err
		}
		app.Formation = maps.Clone(app.Formation)
		if app.Formation == nil {
			app.Formation = map[string]int{}
		}
		maps.Copy(app.Formation, scale)
		return nil
	})
}

// Restart runs the current release again in a new deployment: new tasks,
// health-checked, then the old ones drained and stopped.
func (p *Pipeline) Restart(ctx context.Context, appName string, who paas.Identity, out io.Writer) error {
	return p.Redeploy(ctx, appName, who, "ps:restart", out)
}

// Redeploy runs the current release again in a new deployment as Restart
// does, recorded as a deploy of reason ("restore": the first start on a
// data dir restored from a backup).
func (p *Pipeline) Redeploy(ctx context.Context, appName string, who paas.Identity, reason string, out io.Writer) error {
	return p.withCurrent(ctx, appName, who, reason, true, out, nil)
}

// RestartProcess restarts the tasks of one process type of the current
// release (ps:restart APP PROCESS) as Restart does all of them: new tasks
// first, gated and (web) checked, routed, then the old ones drained; the
// other process types keep running untouched.
func (p *Pipeline) RestartProcess(ctx context.Context, appName string, who paas.Identity, process string, out io.Writer) error {
	return p.withCurrent(ctx, appName, who, "ps:restart "+process, true, out, func(app *paas.App, rel *paas.Release) error {
		if app.Stopped {
			return fmt.Errorf("App %s is stopped: ps:start starts every process type", appName)
		}
		if !hasProcess(rel, process) {
			return fmt.Errorf("process type %s is not in the Procfile of v%d", process, rel.Version)
		}
		return nil
	}, func(o *scheduler.DeployOptions) { o.Only = process })
}

func hasProcess(rel *paas.Release, name string) bool {
	return slices.ContainsFunc(rel.Processes, func(pt paas.ProcessType) bool { return pt.Name == name }) ||
		len(rel.Processes) == 0 && name == paas.WebProcess
}

// SetFormation records how many tasks each named process type runs without
// rolling anything out (ps:scale --skip-deploy): the next deploy, restart or
// scale applies it. Process types are checked against the current release's
// Procfile when the app has one.
func (p *Pipeline) SetFormation(ctx context.Context, appName string, who paas.Identity, scale map[string]int, out io.Writer) error {
	app, unlock, err := p.lockApp(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	var rel *paas.Release
	if app.Current > 0 {
		if rel, err = p.store.Release(appName, 0); err != nil {
			return err
		}
	}
	if err := checkScale(rel, scale); err != nil {
		return err
	}
	_, err = p.store.UpdateApp(appName, func(a *paas.App) error {
		a.Formation = maps.Clone(a.Formation)
		if a.Formation == nil {
			a.Formation = map[string]int{}
		}
		maps.Copy(a.Formation, scale)
		return nil
	})
	return err
}

// checkScale refuses counts out of range and, with a release, process
// types its Procfile does not have.
func checkScale(rel *paas.Release, scale map[string]int) error {
	for _, name := range slices.Sorted(maps.Keys(scale)) {
		if rel != nil && !hasProcess(rel, name) {
			return fmt.Errorf("process type %s is not in the Procfile of v%d", name, rel.Version)
		}
		if n := scale[name]; n < 0 || n > 100 {
			return fmt.Errorf("%s=%d: scale to 0 to 100 tasks", name, n)
		}
	}
	return nil
}

// RunChecks runs the app's checks against the tasks that serve it now
// (checks:run APP [PROCESS|PROCESS.SLOT]), as the app's checks settings and
// its current release say.
func (p *Pipeline) RunChecks(ctx context.Context, appName, target string, out io.Writer) error {
	app, err := p.store.App(appName)
	if err != nil {
		return err
	}
	if app.Current == 0 {
		return fmt.Errorf("App %s has not been deployed", appName)
	}
	rel, err := p.store.Release(appName, 0)
	if err != nil {
		return err
	}
	return p.scheduler.CheckNow(ctx, rel, p.deployOptions(app, rel, false), target, out)
}

// Start runs a stopped app's current release again.
func (p *Pipeline) Start(ctx context.Context, appName string, who paas.Identity, out io.Writer) error {
	return p.withCurrent(ctx, appName, who, "ps:start", true, out, func(a *paas.App, _ *paas.Release) error {
		a.Stopped = false
		return nil
	})
}

// Stop drains the app's tasks and stops them; the app answers 503 until
// ps:start or the next deploy.
func (p *Pipeline) Stop(ctx context.Context, appName string, who paas.Identity, out io.Writer) error {
	app, unlock, err := p.lockDeployed(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	output.Step(out, "Stopping %s", appName)
	if err := p.scheduler.Stop(ctx, appName, drainTimeout(app), out); err != nil {
		return err
	}
	_, err = p.store.UpdateApp(appName, func(a *paas.App) error { a.Stopped = true; return nil })
	return err
}

// lockDeployed takes the app's deploy lock and loads the app, which must
// have a release.
func (p *Pipeline) lockDeployed(ctx context.Context, appName string, out io.Writer) (*paas.App, func(), error) {
	app, unlock, err := p.lockApp(ctx, appName, out)
	if err == nil && app.Current == 0 {
		unlock()
		return nil, nil, fmt.Errorf("App %s has not been deployed", appName)
	}
	return app, unlock, err
}

// withCurrent rolls the current release out again (a new deployment when
// force) after change, if any, changed the app. change runs on the loaded
// app before the rollout and on the stored one once the rollout succeeded,
// so a failed rollout changes nothing.
func (p *Pipeline) withCurrent(ctx context.Context, appName string, who paas.Identity, reason string, force bool, out io.Writer,
	change func(*paas.App, *paas.Release) error, tune ...func(*scheduler.DeployOptions)) error {
	ctx = plugins.WithUser(ctx, who)
	app, unlock, err := p.lockDeployed(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	rel, err := p.store.Release(appName, 0)
	if err != nil {
		return err
	}
	if change != nil {
		if err := change(app, rel); err != nil {
			return err
		}
	}
	rec := &paas.Deploy{App: appName, Commit: rel.Commit, Reason: reason, Author: who.Name, StartedAt: time.Now().UTC(), Release: rel.Version}
	out, finish, err := p.record(rec, out)
	if err != nil {
		return err
	}
	run := *rel
	run.Scale = app.ScaleOf(run.Processes)
	withStorage(app, &run)
	if err := p.ensureOwnNetwork(ctx, app); err != nil {
		finish(err)
		return err
	}
	withNetworks(app, &run)
	opts := p.deployOptions(app, &run, force)
	for _, t := range tune {
		t(&opts)
	}
	err = p.deployTriggered(ctx, &run, opts, out, func() error {
		if change == nil {
			return nil
		}
		_, err := p.store.UpdateApp(appName, func(a *paas.App) error { return change(a, rel) })
		return err
	})
	if err != nil {
		err = fmt.Errorf("%s failed, v%d keeps running as it was: %w", reason, rel.Version, err)
	}
	finish(err)
	return err
}

// deployOptions resolves the app's checks settings against rel's checks
// and process types.
func (p *Pipeline) deployOptions(app *paas.App, rel *paas.Release, force bool) scheduler.DeployOptions {
	opts := scheduler.DeployOptions{Force: force, DrainTimeout: drainTimeout(app)}
	if p.appHost != nil {
		opts.Host = p.appHost(app.Name)
	}
	opts.Gates = gates(app.Checks, rel.Processes)
	return withChecks(opts, app.Checks, rel.Checks[paas.WebProcess])
}

// gates maps the check state of each process type to how a rollout waits
// for its tasks:
//
//	state     web                                   other process types
//	enabled   checks, and up for the settle time    up for the settle time
//	skipped   the default check, settle time        running is enough
//	disabled  running is enough, no check           not waited for
//
// nil when every process type gets the default (GateSettle).
func gates(set paas.CheckSettings, procs []paas.ProcessType) map[string]scheduler.Gate {
	var out map[string]scheduler.Gate
	names := []string{paas.WebProcess}
	for _, pt := range procs {
		if pt.Name != paas.WebProcess {
			names = append(names, pt.Name)
		}
	}
	for _, name := range names {
		gate := scheduler.GateSettle
		switch st := set.State(name); {
		case st == paas.CheckDisabled && name == paas.WebProcess:
			gate = scheduler.GateRunning
		case st == paas.CheckDisabled:
			gate = scheduler.GateNone
		case st == paas.CheckSkipped && name != paas.WebProcess:
			gate = scheduler.GateRunning
		}
		if gate != scheduler.GateSettle {
			if out == nil {
				out = map[string]scheduler.Gate{}
			}
			out[name] = gate
		}
	}
	return out
}

// withChecks sets the web checks: app.json's, the default one when the app
// declares none or web's checks are skipped, none when they are disabled.
func withChecks(opts scheduler.DeployOptions, set paas.CheckSettings, declared []paas.HealthCheck) scheduler.DeployOptions {
	switch st := set.State(paas.WebProcess); {
	case st == paas.CheckDisabled:
		opts.Checks = []paas.HealthCheck{}
		return opts
	case st == paas.CheckSkipped || len(declared) == 0:
		opts.Checks = []paas.HealthCheck{paas.DefaultCheck()}
	default:
		opts.Checks = append([]paas.HealthCheck(nil), declared...)
	}
	for i := range opts.Checks {
		c := &opts.Checks[i]
		for prop, field := range map[string]*int{"attempts": &c.Attempts, "timeout": &c.Timeout, "wait": &c.Wait, "initial-delay": &c.InitialDelay} {
			if v, ok := set.Props[prop]; ok {
				*field, _ = strconv.Atoi(v) // validated by checks:set
			}
		}
	}
	return opts
}

func drainTimeout(app *paas.App) time.Duration { return app.DrainTimeout() }

// ReadAppJSON returns the health checks of app.json in dir, by process type;
// nil without app.json or without checks.
func ReadAppJSON(dir string) (map[string][]paas.HealthCheck, error) {
	data, err := os.ReadFile(filepath.Join(dir, "app.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read app.json: %w", err)
	}
	return ParseAppJSON(data)
}

// ParseAppJSON parses the "healthchecks" of an app.json and checks them.
func ParseAppJSON(data []byte) (map[string][]paas.HealthCheck, error) {
	var doc struct {
		Healthchecks map[string][]paas.HealthCheck `json:"healthchecks"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("app.json: %w", err)
	}
	for proc, checks := range doc.Healthchecks {
		if err := paas.ValidateAppName(proc); err != nil {
			return nil, fmt.Errorf("app.json healthchecks: invalid process type %q", proc)
		}
		for i, c := range checks {
			where := fmt.Sprintf("app.json healthchecks.%s[%d]", proc, i)
			switch c.Type {
			case "", "startup", "readiness", "liveness":
			default:
				return nil, fmt.Errorf("%s: unknown type %q (startup, readiness or liveness)", where, c.Type)
			}
			if c.Path != "" && (!strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \t\r\n")) {
				return nil, fmt.Errorf("%s: path must start with / and have no spaces, got %q", where, c.Path)
			}
			if c.Port < 0 || c.Port > 65535 {
				return nil, fmt.Errorf("%s: port %d out of range", where, c.Port)
			}
			if c.Attempts < 0 || c.Attempts > paas.MaxCheckAttempts {
				return nil, fmt.Errorf("%s: attempts must be 0 to %d", where, paas.MaxCheckAttempts)
			}
			for name, v := range map[string]int{"timeout": c.Timeout, "wait": c.Wait, "initialDelay": c.InitialDelay} {
				if v < 0 || v > paas.MaxCheckSeconds {
					return nil, fmt.Errorf("%s: %s must be 0 to %d seconds", where, name, paas.MaxCheckSeconds)
				}
			}
			if proc != paas.WebProcess {
				return nil, fmt.Errorf("%s: only the web process can be checked (it is the one that takes requests)", where)
			}
		}
	}
	return doc.Healthchecks, nil
}
