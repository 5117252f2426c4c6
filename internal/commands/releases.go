package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
)

// Releases is the part of the pipeline that makes releases and rolls the
// current one out again.
type Releases interface {
	Rollback(ctx context.Context, app string, who paas.Identity, target int, out io.Writer) error
	Scale(ctx context.Context, app string, who paas.Identity, scale map[string]int, out io.Writer) error
	Restart(ctx context.Context, app string, who paas.Identity, out io.Writer) error
	Stop(ctx context.Context, app string, who paas.Identity, out io.Writer) error
	Start(ctx context.Context, app string, who paas.Identity, out io.Writer) error
	// Rebuild builds and deploys the app's deploy branch head again.
	Rebuild(ctx context.Context, app string, who paas.Identity, out io.Writer) error
	// UpdateChecks changes the app's checks:* settings.
	UpdateChecks(app string, fn func(*paas.CheckSettings) error) (*paas.App, error)
	// DeployFrom releases app from another app's release with img, a
	// copy of its image (apps:clone).
	DeployFrom(ctx context.Context, app string, who paas.Identity, from *paas.Release, img paas.Image, reason string, out io.Writer) error
	// RestartProcess restarts one process type of the current release.
	RestartProcess(ctx context.Context, app string, who paas.Identity, process string, out io.Writer) error
	// SetFormation records a formation for the next rollout (ps:scale --skip-deploy).
	SetFormation(ctx context.Context, app string, who paas.Identity, scale map[string]int, out io.Writer) error
	// RunChecks runs the app's checks against its running tasks now.
	RunChecks(ctx context.Context, app, target string, out io.Writer) error
	// Retire removes the app's leftover services (ps:retire), returning how many.
	Retire(ctx context.Context, app string, out io.Writer) (int, error)
}

func (p *Platform) releaseCommands() []*Command {
	return []*Command{
		{Name: "releases", Args: "APP", Help: "List an app's releases, newest first", App: true, Flags: formatFlag, Run: p.releasesList},
		{Name: "releases:info", Args: "APP [VERSION]", Help: "Show one release (the current one by default)", App: true, Flags: formatFlag, Run: p.releasesInfo},
		{Name: "rollback", Args: "APP [VERSION]", Help: "Release again the image and config of an earlier release (the previous one by default)", App: true, Run: p.rollback},
		{Name: "ps:scale", Args: "[--skip-deploy] APP [PROCESS=COUNT...]", Help: "Show or set how many tasks each process type runs; --skip-deploy records it for the next deploy", App: true,
			Flags: map[string]bool{"--format": true, "--skip-deploy": false}, Run: p.psScale},
		{Name: "ps:restart", Args: "APP [PROCESS]", Help: "Restart every task, or those of one process type, with no downtime: new tasks, checked, then the old ones drained", App: true, Run: p.psRestart},
		{Name: "ps:stop", Args: "APP", Help: "Stop the app's tasks (requests get 503 until ps:start)", App: true, Run: p.lifecycle("ps:stop")},
		{Name: "ps:start", Args: "APP", Help: "Start a stopped app", App: true, Run: p.lifecycle("ps:start")},
		{Name: "ps:rebuild", Args: "APP", Help: "Build the deploy branch again and deploy it", App: true, Run: p.lifecycle("ps:rebuild")},
		{Name: "checks:report", Args: "APP", Help: "Show the health check settings", App: true, Flags: formatFlag, Run: p.checksReport},
		{Name: "checks:disable", Args: "APP [PROCESS,...]", Help: "No checks for every process type, or those named: web is routed as soon as it runs, others are not waited for", App: true, Run: p.checksToggle(paas.CheckDisabled)},
		{Name: "checks:skip", Args: "APP [PROCESS,...]", Help: "Skip checks: web keeps only the default one (answers on PORT), others need only be running", App: true, Run: p.checksToggle(paas.CheckSkipped)},
		{Name: "checks:enable", Args: "APP [PROCESS,...]", Help: "Check again: web runs app.json's checks (or the default one), every task must stay up for the settle time", App: true, Run: p.checksToggle(paas.CheckEnabled)},
		{Name: "checks:run", Args: "APP [PROCESS|PROCESS.N]", Help: "Run the checks against the running tasks now and report each one", App: true, Run: p.checksRun},
		{Name: "checks:set", Args: "APP PROPERTY [VALUE]", Help: "Set a check property (attempts, timeout, wait, initial-delay, wait-to-retire); no value unsets it", App: true, MinArgs: 1, Run: p.checksSet},
	}
}

type releaseJSON struct {
	Version       int                `json:"version"`
	Current       bool               `json:"current"`
	Image         string             `json:"image"`
	ConfigVersion int                `json:"config_version"`
	ConfigKeys    []string           `json:"config_keys"`
	Formation     map[string]int     `json:"formation"`
	Processes     []paas.ProcessType `json:"processes"`
	Commit        string             `json:"commit,omitempty"`
	Author        string             `json:"author"`
	Description   string             `json:"description"`
	CreatedAt     time.Time          `json:"created_at"`
}

func toJSON(r *paas.Release, current int) releaseJSON {
	return releaseJSON{
		Version: r.Version, Current: r.Version == current, Image: r.Image.Ref(),
		ConfigVersion: r.ConfigVersion, ConfigKeys: paas.SortedKeys(r.Config), Formation: r.Scale,
		Processes: r.Processes, Commit: r.Commit, Author: r.Author, Description: r.Reason, CreatedAt: r.CreatedAt,
	}
}

func (p *Platform) releasesList(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	rels, err := p.Store.Releases(c.App.Name)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]releaseJSON, 0, len(rels))
		for _, r := range rels { // newest first
			out = append(out, toJSON(r, c.App.Current))
		}
		return output.JSON(c.Out, out)
	}
	output.Header(c.Out, "%s releases", c.App.Name)
	if len(rels) == 0 {
		output.Detail(c.Out, "(none yet: git push to make one)")
		return nil
	}
	output.Detail(c.Out, "%-8s %-20s %-12s %-8s %-12s %s", "Version", "Created", "Image", "Commit", "By", "Description")
	for _, r := range rels { // newest first
		v := fmt.Sprintf("v%d", r.Version)
		if r.Version == c.App.Current {
			v += "*"
		}
		output.Detail(c.Out, "%-8s %-20s %-12s %-8s %-12s %s", v, r.CreatedAt.UTC().Format("2006-01-02 15:04:05"),
			shortDigest(r.Image.Digest), shortCommit(r.Commit), sanitize(r.Author), sanitize(r.Reason))
	}
	return nil
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	return d[:min(len(d), 12)]
}

func shortCommit(c string) string { return c[:min(len(c), 7)] }

// parseVersion reads "7" or "v7".
func parseVersion(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "v"))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid release %q: use a version like v7", sanitize(s))
	}
	return n, nil
}

func (p *Platform) releasesInfo(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	v := c.App.Current
	if len(c.Args) > 0 {
		if v, err = parseVersion(c.Args[0]); err != nil {
			return err
		}
	}
	rels, err := p.Store.Releases(c.App.Name)
	if err != nil {
		return err
	}
	for _, r := range rels {
		if r.Version != v {
			continue
		}
		if asJSON {
			return output.JSON(c.Out, toJSON(r, c.App.Current))
		}
		procs := make([]string, len(r.Processes))
		for i, pt := range r.Processes {
			procs[i] = fmt.Sprintf("%s=%d", pt.Name, r.Scale[pt.Name])
		}
		return report(c, false, fmt.Sprintf("%s v%d", c.App.Name, r.Version), []kv{
			{"Current", strconv.FormatBool(r.Version == c.App.Current)},
			{"Created", r.CreatedAt.UTC().Format(time.RFC3339)},
			{"By", r.Author},
			{"Description", r.Reason},
			{"Commit", r.Commit},
			{"Image", r.Image.Ref()},
			{"Config version", strconv.Itoa(r.ConfigVersion)},
			{"Config keys", strings.Join(paas.SortedKeys(r.Config), " ")},
			{"Formation", strings.Join(procs, " ")},
		})
	}
	return fmt.Errorf("release v%d of %s does not exist", v, c.App.Name)
}

func (p *Platform) rollback(ctx context.Context, c *Call) error {
	target := 0
	if len(c.Args) > 1 {
		return errors.New("rollback takes at most one version")
	}
	if len(c.Args) == 1 {
		var err error
		if target, err = parseVersion(c.Args[0]); err != nil {
			return err
		}
	}
	return p.Releases.Rollback(ctx, c.App.Name, c.ID, target, c.Out)
}

func (p *Platform) psScale(ctx context.Context, c *Call) error {
	if len(c.Args) == 0 {
		if c.Has("--skip-deploy") {
			return errors.New("--skip-deploy records a formation: give PROCESS=COUNT, e.g. ps:scale --skip-deploy APP web=2")
		}
		asJSON, err := wantJSON(c)
		if err != nil {
			return err
		}
		return p.showScale(c, asJSON)
	}
	scale := map[string]int{}
	for _, a := range c.Args {
		name, count, ok := strings.Cut(a, "=")
		n, err := strconv.Atoi(count)
		if !ok || paas.ValidateAppName(name) != nil || err != nil || n < 0 {
			return fmt.Errorf("invalid formation %q: use PROCESS=COUNT, e.g. web=3", sanitize(a))
		}
		if _, dup := scale[name]; dup {
			return fmt.Errorf("process type %s given twice", name)
		}
		if max := p.Limits.MaxScale; max > 0 && n > max {
			return refuse("%s=%d: a process type may run at most %d tasks here (paasd serve --max-scale); nothing was changed", name, n, max)
		}
		scale[name] = n
	}
	if c.Has("--skip-deploy") {
		if err := p.Releases.SetFormation(ctx, c.App.Name, c.ID, scale, c.Out); err != nil {
			return err
		}
		output.Step(c.Out, "Scaling %s processes: %s (applied at the next deploy)", c.App.Name, strings.Join(c.Args, " "))
		return nil
	}
	return p.Releases.Scale(ctx, c.App.Name, c.ID, scale, c.Out)
}

// showScale prints the formation, Dokku's way: the current release's
// process types at the app's formation, or before the first deploy what
// ps:scale --skip-deploy recorded.
func (p *Platform) showScale(c *Call, asJSON bool) error {
	procs := []paas.ProcessType{{Name: paas.WebProcess}}
	for _, name := range slices.Sorted(maps.Keys(c.App.Formation)) {
		if name != paas.WebProcess {
			procs = append(procs, paas.ProcessType{Name: name})
		}
	}
	if c.App.Current > 0 {
		cur, err := p.currentRelease(c.App)
		if err != nil {
			return err
		}
		procs = cur.Processes
	}
	formation := c.App.ScaleOf(procs)
	type entry struct {
		Process  string `json:"process_type"`
		Quantity int    `json:"quantity"`
	}
	list := make([]entry, 0, len(procs))
	for _, pt := range procs {
		list = append(list, entry{pt.Name, formation[pt.Name]})
	}
	if asJSON {
		return output.JSON(c.Out, list)
	}
	output.Step(c.Out, "Scaling for %s", c.App.Name)
	fmt.Fprint(c.Out, "proctype: qty\n--------: ---\n")
	for _, e := range list {
		fmt.Fprintf(c.Out, "%s: %d\n", e.Process, e.Quantity)
	}
	return nil
}

// currentRelease is the release that serves app.
func (p *Platform) currentRelease(app *paas.App) (*paas.Release, error) {
	if app.Current == 0 {
		return nil, fmt.Errorf("App %s has not been deployed", app.Name)
	}
	rels, err := p.Store.Releases(app.Name)
	if err != nil {
		return nil, err
	}
	for _, r := range rels {
		if r.Version == app.Current {
			return r, nil
		}
	}
	return nil, fmt.Errorf("release v%d of %s is missing", app.Current, app.Name)
}

func (p *Platform) lifecycle(name string) func(context.Context, *Call) error {
	return func(ctx context.Context, c *Call) error {
		if len(c.Args) > 0 {
			return fmt.Errorf("%s takes only the app name", name)
		}
		switch name {
		case "ps:stop":
			return p.Releases.Stop(ctx, c.App.Name, c.ID, c.Out)
		case "ps:start":
			if !c.App.Stopped {
				output.Step(c.Out, "%s is not stopped; use ps:restart to restart it", c.App.Name)
				return nil
			}
			return p.Releases.Start(ctx, c.App.Name, c.ID, c.Out)
		default:
			return p.Releases.Rebuild(ctx, c.App.Name, c.ID, c.Out)
		}
	}
}

func (p *Platform) checksReport(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	set := c.App.Checks
	state := "enabled"
	switch {
	case set.Disabled:
		state = "disabled"
	case set.Skipped:
		state = "skipped (default check only)"
	}
	retire := set.Props["wait-to-retire"]
	if retire == "" {
		retire = "30"
	}
	fields := []kv{
		{"Checks", state},
		{"Checks disabled list", set.List(paas.CheckDisabled)},
		{"Checks skipped list", set.List(paas.CheckSkipped)},
		{"Checks computed wait to retire", retire},
	}
	for _, prop := range []string{"attempts", "timeout", "wait", "initial-delay", "wait-to-retire"} {
		v := set.Props[prop]
		if v == "" {
			v = "(default)"
		}
		fields = append(fields, kv{"Checks " + prop, v})
	}
	return report(c, asJSON, c.App.Name+" checks information", fields)
}

func (p *Platform) checksToggle(state string) func(context.Context, *Call) error {
	return func(_ context.Context, c *Call) error {
		if len(c.Args) > 1 {
			return errors.New("give the process types as one comma-separated list, e.g. web,worker")
		}
		var procs []string
		if len(c.Args) == 1 {
			var err error
			if procs, err = paas.ParseProcessList(c.Args[0]); err != nil {
				return fmt.Errorf("%s", sanitize(err.Error()))
			}
		}
		if _, err := p.Releases.UpdateChecks(c.App.Name, func(s *paas.CheckSettings) error {
			*s = s.WithState(state, procs)
			return nil
		}); err != nil {
			return err
		}
		what := "every process type of " + c.App.Name
		if len(procs) > 0 {
			what = fmt.Sprintf("%s of %s", strings.Join(procs, ","), c.App.Name)
		}
		switch state {
		case paas.CheckDisabled:
			output.Step(c.Out, "Checks disabled for %s: web is routed as soon as it runs, other process types are not waited for", what)
		case paas.CheckSkipped:
			output.Step(c.Out, "Checks skipped for %s: web keeps only the default check, other process types need only be running", what)
		default:
			output.Step(c.Out, "Checks enabled for %s", what)
		}
		return nil
	}
}

func (p *Platform) checksRun(ctx context.Context, c *Call) error {
	if len(c.Args) > 1 {
		return errors.New("checks:run takes at most one process type or task, e.g. web or web.2")
	}
	target := ""
	if len(c.Args) == 1 {
		target = c.Args[0]
		proc, slot, hasSlot := strings.Cut(target, ".")
		if paas.ValidateAppName(proc) != nil || hasSlot && !isDigits(slot) {
			return fmt.Errorf("invalid process %q: give a process type or a task, e.g. web or web.2", sanitize(target))
		}
	}
	return p.Releases.RunChecks(ctx, c.App.Name, target, c.Out)
}

func (p *Platform) psRestart(ctx context.Context, c *Call) error {
	switch len(c.Args) {
	case 0:
		return p.Releases.Restart(ctx, c.App.Name, c.ID, c.Out)
	case 1:
		if paas.ValidateAppName(c.Args[0]) != nil {
			return fmt.Errorf("invalid process type %q: give a process type such as web or worker (every task of it restarts)", sanitize(c.Args[0]))
		}
		return p.Releases.RestartProcess(ctx, c.App.Name, c.ID, c.Args[0], c.Out)
	}
	return errors.New("ps:restart takes at most one process type")
}

func (p *Platform) checksSet(_ context.Context, c *Call) error {
	if len(c.Args) > 2 {
		return errors.New("checks:set takes one property and at most one value")
	}
	prop, value := c.Args[0], ""
	if len(c.Args) == 2 {
		value = c.Args[1]
	}
	if err := validateCheckProp(prop, value); err != nil {
		return err
	}
	if _, err := p.Releases.UpdateChecks(c.App.Name, func(s *paas.CheckSettings) error {
		if value == "" {
			delete(s.Props, prop)
			return nil
		}
		if s.Props == nil {
			s.Props = map[string]string{}
		}
		s.Props[prop] = value
		return nil
	}); err != nil {
		return err
	}
	if value == "" {
		output.Step(c.Out, "Unset checks %s of %s", prop, c.App.Name)
	} else {
		output.Step(c.Out, "Set checks %s to %s for %s", prop, value, c.App.Name)
	}
	return nil
}

func validateCheckProp(prop, value string) error {
	if _, ok := paas.CheckProps[prop]; !ok {
		return fmt.Errorf("unknown property %q: use attempts, timeout, wait, initial-delay or wait-to-retire", sanitize(prop))
	}
	if value == "" {
		return nil
	}
	limit := paas.MaxCheckSeconds
	if prop == "attempts" {
		limit = paas.MaxCheckAttempts
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < 0 || n > limit {
		return fmt.Errorf("%s wants a whole number from 0 to %d, got %q", prop, limit, sanitize(value))
	}
	return nil
}
