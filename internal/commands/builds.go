package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
)

// BuildStore is the state the build commands read and change.
type BuildStore interface {
	AppStore
	UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error)
	GlobalBuildSettings() (paas.BuildSettings, error)
	UpdateGlobalBuildSettings(fn func(*paas.BuildSettings) error) error
	Deploys(app string) ([]*paas.Deploy, error)
	Deploy(app string, id int) (*paas.Deploy, error)
	// DeploysStamp changes whenever one of app's deploy records does.
	DeploysStamp(app string) (string, error)
}

// ImageDeployer deploys a prebuilt image (the pipeline with an importer).
type ImageDeployer interface {
	DeployImage(ctx context.Context, app string, who paas.Identity, source string, out io.Writer) error
}

// BuildCache drops an app's build cache.
type BuildCache interface {
	PurgeCache(ctx context.Context, app string) error
}

// RegistryLogins checks and stores registry credentials.
type RegistryLogins interface {
	// Check asks the registry whether it accepts user and password.
	Check(ctx context.Context, server, user, password string) error
	Login(server, user, password string) error
	Servers() (map[string]string, error)
}

// Builds are the commands about how apps are built: builder:*, buildpacks:*,
// builds:*, git:from-image, registry:*, repo:purge-cache.
type Builds struct {
	Store    BuildStore
	Pipeline Pipeline // for the deploy lock
	Images   ImageDeployer
	Cache    BuildCache
	Logins   RegistryLogins
	Running  RunningLogs // optional
}

// RunningLogs has the output of builds that have not finished.
type RunningLogs interface {
	// RunningLogFrom returns what the build has written from byte offset
	// off on and a channel closed when it writes more or ends; ok is false
	// when it is not running (any more).
	RunningLogFrom(app string, id, off int) (more string, changed <-chan struct{}, ok bool)
}

// Commands returns the build commands.
func (b *Builds) Commands() []*Command {
	var cmds []*Command
	cmds = append(cmds, b.builderCommands()...)
	cmds = append(cmds, b.buildCommands()...)
	cmds = append(cmds, b.gitCommands()...)
	cmds = append(cmds, b.registryCommands()...)
	return cmds
}

// appOrGlobal resolves the first argument of a command taking
// "[--global|APP]": nil with --global (administrators only).
func (b *Builds) appOrGlobal(c *Call) (*paas.App, []string, error) {
	if c.Has("--global") {
		if !c.ID.Admin {
			return nil, nil, errors.New("--global is for administrators only")
		}
		return nil, c.Args, nil
	}
	if len(c.Args) == 0 {
		return nil, nil, errors.New("please specify an app name or --global")
	}
	name := c.Args[0]
	if err := paas.ValidateAppName(name); err != nil {
		return nil, nil, err
	}
	app, err := b.Store.App(name)
	if errors.Is(err, paas.ErrAppNotFound) || (err == nil && !auth.CanUseApp(c.ID, app)) {
		return nil, nil, notFound(name)
	}
	return app, c.Args[1:], err
}

func (b *Builds) buildCommands() []*Command {
	return []*Command{
		{Name: "builds:list", Args: "APP [--format json [--watch]]", Help: "List an app's builds, newest first; --watch prints the JSON list again at each change until interrupted", App: true,
			Flags: map[string]bool{"--format": true, "--watch": false}, Run: b.buildsList},
		{Name: "builds:info", Args: "APP [ID]", Help: "Show a build (the latest without ID)", App: true, Flags: formatFlag, Run: b.buildsInfo},
		{Name: "builds:output", Args: "APP [ID] [--follow|-f]", Help: "Print a build's log (the latest without ID); --follow prints a running build's output as it is written, until the build ends", App: true,
			Flags: map[string]bool{"--follow": false, "-f": false}, Run: b.buildsOutput},
	}
}

// isBuild tells deploy records that built or imported an image from config changes.
func isBuild(d *paas.Deploy) bool {
	switch d.Reason {
	case "push", "ps:rebuild", "git:from-image", "git:sync", "git:from-archive":
		return true
	}
	return false
}

type buildJSON struct {
	ID         int       `json:"id"`
	App        string    `json:"app"`
	Status     string    `json:"status"`
	Kind       string    `json:"kind"`
	Builder    string    `json:"builder"`
	Commit     string    `json:"commit"`
	Author     string    `json:"author"`
	Release    int       `json:"release,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Duration   float64   `json:"duration_seconds"`
}

func toBuildJSON(d *paas.Deploy) buildJSON {
	return buildJSON{
		ID: d.ID, App: d.App, Status: d.State, Kind: d.Reason, Builder: d.Builder, Commit: d.Commit,
		Author: d.Author, Release: d.Release, Error: d.Error, StartedAt: d.StartedAt, FinishedAt: d.FinishedAt,
		Duration: duration(d).Seconds(),
	}
}

func duration(d *paas.Deploy) time.Duration {
	if d.FinishedAt.IsZero() {
		return time.Since(d.StartedAt).Round(time.Millisecond)
	}
	return d.FinishedAt.Sub(d.StartedAt).Round(time.Millisecond)
}

func (b *Builds) buildsList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	if c.Has("--watch") {
		if !asJSON {
			return refuse("builds:list --watch prints the JSON list at each change: add --format json")
		}
		return b.watchBuilds(ctx, c)
	}
	list, err := b.builds(c.App.Name)
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, list)
	}
	output.Header(c.Out, "%s builds", c.App.Name)
	fmt.Fprintf(c.Out, "%-5s %-10s %-9s %-8s %-20s %s\n", "ID", "STATUS", "DURATION", "COMMIT", "STARTED", "BUILDER")
	for _, d := range list {
		commit := d.Commit
		if len(commit) > 7 {
			commit = commit[:7]
		}
		fmt.Fprintf(c.Out, "%-5d %-10s %-9s %-8s %-20s %s\n", d.ID, d.Status, fmt.Sprintf("%.1fs", d.Duration), commit, d.StartedAt.Format(time.RFC3339), sanitize(d.Builder))
	}
	return nil
}

// builds is app's builds, newest first.
func (b *Builds) builds(app string) ([]buildJSON, error) {
	all, err := b.Store.Deploys(app)
	if err != nil {
		return nil, err
	}
	list := []buildJSON{}
	for _, d := range all {
		if isBuild(d) {
			list = append(list, toBuildJSON(d))
		}
	}
	return list, nil
}

// buildsWatchEvery is how often builds:list --watch reads the builds.
const buildsWatchEvery = 2 * time.Second

// watchBuilds prints builds:list's JSON list, one line, and again each
// time a build starts or changes state (the records read again only when
// the store's stamp of them changed, looked at every buildsWatchEvery; a
// running build's growing duration alone is no change), until the caller
// hangs up or the app is destroyed. One command, so one audit record.
func (b *Builds) watchBuilds(ctx context.Context, c *Call) error {
	var list []buildJSON
	read, key := "", ""
	return watchJSON(ctx, c, buildsWatchEvery, func() (any, string, error) {
		stamp, err := b.Store.DeploysStamp(c.App.Name)
		if err != nil {
			return nil, "", err // destroyed meanwhile
		}
		if list == nil || stamp != read {
			if list, err = b.builds(c.App.Name); err != nil {
				return nil, "", err
			}
			read, key = stamp, watchKey(list)
		}
		return list, key, nil
	})
}

// watchKey is what builds:list --watch tells changes by: the list without
// the durations of builds still running, which grow at each read.
func watchKey(list []buildJSON) string {
	key := slices.Clone(list)
	for i := range key {
		if key[i].FinishedAt.IsZero() {
			key[i].Duration = 0
		}
	}
	data, _ := json.Marshal(key)
	return string(data)
}

// build returns the build named by the optional ID argument, the latest one without it.
func (b *Builds) build(c *Call) (*paas.Deploy, error) {
	id := 0
	if len(c.Args) > 0 && c.Args[0] != "current" && c.Args[0] != "latest" {
		n, err := strconv.Atoi(c.Args[0])
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("build ID %q: want a number", sanitize(c.Args[0]))
		}
		id = n
	}
	if id == 0 {
		all, err := b.Store.Deploys(c.App.Name)
		if err != nil {
			return nil, err
		}
		for _, d := range all {
			if isBuild(d) {
				return d, nil
			}
		}
		return nil, fmt.Errorf("%s has no build yet", c.App.Name)
	}
	d, err := b.Store.Deploy(c.App.Name, id)
	if err != nil || !isBuild(d) {
		return nil, fmt.Errorf("%s has no build %d", c.App.Name, id)
	}
	return d, nil
}

func (b *Builds) buildsInfo(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	d, err := b.build(c)
	if err != nil {
		return err
	}
	j := toBuildJSON(d)
	if asJSON {
		return output.JSON(c.Out, j)
	}
	finished := ""
	if !d.FinishedAt.IsZero() {
		finished = d.FinishedAt.Format(time.RFC3339)
	}
	release := ""
	if d.Release > 0 {
		release = fmt.Sprint(d.Release)
	}
	return report(c, false, fmt.Sprintf("%s build %d information", c.App.Name, d.ID), []kv{
		{"Build id", fmt.Sprint(d.ID)},
		{"Build status", d.State},
		{"Build kind", d.Reason},
		{"Build builder", d.Builder},
		{"Build commit", d.Commit},
		{"Build author", d.Author},
		{"Build started at", d.StartedAt.Format(time.RFC3339)},
		{"Build finished at", finished},
		{"Build duration", fmt.Sprintf("%.1fs", j.Duration)},
		{"Build release", release},
		{"Build error", d.Error},
	})
}

// buildsOutput prints a build's log. A running build's is its output so
// far; with --follow, then what it writes next, each byte read once from
// the offset reached, until it ends or the caller hangs up.
func (b *Builds) buildsOutput(ctx context.Context, c *Call) error {
	d, err := b.build(c)
	if err != nil {
		return err
	}
	if d.State != paas.DeployRunning || b.Running == nil {
		_, err = fmt.Fprint(c.Out, d.Log)
		return err
	}
	follow := c.Has("--follow") || c.Has("-f")
	off, seen := 0, false
	for tries := 0; ; {
		more, changed, ok := b.Running.RunningLogFrom(d.App, d.ID, off)
		if !ok {
			// ended: the rest is in its record
			d, err = b.Store.Deploy(d.App, d.ID)
			if err != nil {
				return err
			}
			if d.State == paas.DeployRunning && follow && !seen && tries < buildStartTries {
				// recorded a moment before the pipeline shares its output
				tries++
				if !sleepCtx(ctx, buildStartWait) {
					return nil
				}
				continue
			}
			if len(d.Log) > off {
				_, err = fmt.Fprint(c.Out, d.Log[off:])
			}
			return err
		}
		seen = true
		if more != "" {
			if _, err := fmt.Fprint(c.Out, more); err != nil {
				return nil // the user hung up
			}
			output.Flush(c.Out)
			off += len(more)
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // the user hung up
		case <-changed:
		}
	}
}

// A build is recorded a moment before its output can be followed: a
// follower asks again this often, this many times.
const (
	buildStartWait  = 50 * time.Millisecond
	buildStartTries = 40
)

// sleepCtx waits d, false if ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
