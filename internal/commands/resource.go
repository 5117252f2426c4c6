package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
)

// ResourceStore is the state the resource commands read and change.
type ResourceStore interface {
	AppStore
	Apps() ([]*paas.App, error)
	Releases(app string) ([]*paas.Release, error)
	GlobalResources() (paas.ResourceSettings, error)
	UpdateGlobalResources(fn func(*paas.ResourceSettings) error) error
}

// ResourcePipeline applies an app's new resource settings: a rollout of a
// new release when the app runs (deploy.Pipeline.SetResources).
type ResourcePipeline interface {
	SetResources(ctx context.Context, app string, who paas.Identity, reason string, fn func(*paas.ResourceSettings) error, out io.Writer) error
}

// Resources are Dokku's resource:* commands: CPU and memory limits and
// reservations per app and process type, and the installation's default.
type Resources struct {
	Store    ResourceStore
	Pipeline ResourcePipeline
}

const (
	resourceLimit   = "limit"
	resourceReserve = "reserve"
)

// ResourceCommands returns the resource:* commands.
func ResourceCommands(st ResourceStore, pipeline ResourcePipeline) []*Command {
	r := &Resources{Store: st, Pipeline: pipeline}
	set := map[string]bool{"--cpu": true, "--memory": true, "--process-type": true, "--global": false}
	clearFlags := map[string]bool{"--process-type": true, "--global": false}
	details := `--cpu N          CPUs, e.g. 1 or 0.5 (at least 0.01)
--memory SIZE    memory, e.g. 512m or 1g (units b, k, m, g, t, binary; a bare number is megabytes); at least 6m
--process-type   the process type it applies to (default: every process type without its own)
--global         the installation's default, for every app without its own (administrators)

A change rolls a deployed app out as a new release, health-checked, with zero
downtime; nothing changes when the rollout fails. A reservation above its
limit, an unknown unit, zero or a negative value is refused and changes nothing.`
	return []*Command{
		{Name: "resource:limit", Args: "[--process-type TYPE] [--cpu N] [--memory SIZE] (APP|--global)", Help: "Limit the CPU and memory of an app's tasks (without --cpu or --memory: show the limits)",
			App: true, Global: true, Flags: set, Details: details, Run: r.set(resourceLimit)},
		{Name: "resource:reserve", Args: "[--process-type TYPE] [--cpu N] [--memory SIZE] (APP|--global)", Help: "Reserve CPU and memory for an app's tasks on their node (without --cpu or --memory: show the reservations)",
			App: true, Global: true, Flags: set, Details: details, Run: r.set(resourceReserve)},
		{Name: "resource:limit-clear", Args: "[--process-type TYPE] (APP|--global)", Help: "Remove the limits of an app (of one process type with --process-type)",
			App: true, Global: true, Flags: clearFlags, Run: r.clear(resourceLimit)},
		{Name: "resource:reserve-clear", Args: "[--process-type TYPE] (APP|--global)", Help: "Remove the reservations of an app (of one process type with --process-type)",
			App: true, Global: true, Flags: clearFlags, Run: r.clear(resourceReserve)},
		{Name: "resource:report", Args: "[APP|--global] [--format json]", Help: "Show the resource limits and reservations of an app (of every app without one)",
			NamesApp: true, Flags: map[string]bool{"--format": true, "--global": false}, Run: r.report},
	}
}

var processTypeRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// processTypeFlag is the process type of --process-type, ResourceDefault
// when not given.
func processTypeFlag(c *Call) (string, error) {
	v, ok := c.Flags["--process-type"]
	if !ok || v == paas.ResourceDefault {
		return paas.ResourceDefault, nil
	}
	if !processTypeRe.MatchString(v) {
		return "", refuse("invalid process type %q: use letters, digits, - and _", sanitize(v))
	}
	return v, nil
}

// resourceFlags reads --cpu and --memory.
func resourceFlags(c *Call) (paas.Resources, error) {
	var res paas.Resources
	var err error
	if v, ok := c.Flags["--cpu"]; ok {
		if res.NanoCPUs, err = paas.ParseCPU(v); err != nil {
			return res, refusedInput{err}
		}
	}
	if v, ok := c.Flags["--memory"]; ok {
		if res.MemoryBytes, err = paas.ParseMemory(v); err != nil {
			return res, refusedInput{err}
		}
	}
	return res, nil
}

// settingsOf returns the map of kind (limits or reservations) in s.
func settingsOf(s *paas.ResourceSettings, kind string) *map[string]paas.Resources {
	if kind == resourceLimit {
		return &s.Limits
	}
	return &s.Reservations
}

// changeTarget checks a resource change's caller and arguments and returns
// the process type it applies to.
func changeTarget(c *Call) (string, error) {
	if c.App == nil && !c.ID.Admin {
		return "", errors.New("--global resources are for administrators only")
	}
	if len(c.Args) > 0 {
		return "", fmt.Errorf("Unexpected argument(s): %s", sanitize(c.Args[0]))
	}
	return processTypeFlag(c)
}

func resourceTarget(c *Call) string {
	if c.App == nil {
		return "the installation (every app without its own)"
	}
	return c.App.Name
}

func (r *Resources) set(kind string) func(ctx context.Context, c *Call) error {
	return func(ctx context.Context, c *Call) error {
		proc, err := changeTarget(c)
		if err != nil {
			return err
		}
		res, err := resourceFlags(c)
		if err != nil {
			return err
		}
		if res.IsZero() {
			return r.show(c, kind, proc)
		}
		change := func(s *paas.ResourceSettings) error {
			m := settingsOf(s, kind)
			*m = maps.Clone(*m)
			if *m == nil {
				*m = map[string]paas.Resources{}
			}
			cur := (*m)[proc]
			if res.NanoCPUs != 0 {
				cur.NanoCPUs = res.NanoCPUs
			}
			if res.MemoryBytes != 0 {
				cur.MemoryBytes = res.MemoryBytes
			}
			(*m)[proc] = cur
			return nil
		}
		output.Step(c.Out, "Setting resource %ss of %s for %s", kind, paas.ProcessTypeName(proc), resourceTarget(c))
		if res.NanoCPUs != 0 {
			output.Detail(c.Out, "cpu:    %s", paas.FormatCPU(res.NanoCPUs))
		}
		if res.MemoryBytes != 0 {
			output.Detail(c.Out, "memory: %s", paas.FormatMemory(res.MemoryBytes))
		}
		return r.apply(ctx, c, "resource:"+kind, change)
	}
}

func (r *Resources) clear(kind string) func(ctx context.Context, c *Call) error {
	return func(ctx context.Context, c *Call) error {
		proc, err := changeTarget(c)
		if err != nil {
			return err
		}
		cur, err := r.settings(c)
		if err != nil {
			return err
		}
		if _, ok := (*settingsOf(&cur, kind))[proc]; !ok {
			output.Step(c.Out, "No resource %ss of %s are set for %s", kind, paas.ProcessTypeName(proc), resourceTarget(c))
			return nil // nothing changes: no new release
		}
		output.Step(c.Out, "Clearing resource %ss of %s for %s", kind, paas.ProcessTypeName(proc), resourceTarget(c))
		return r.apply(ctx, c, "resource:"+kind+"-clear", func(s *paas.ResourceSettings) error {
			m := settingsOf(s, kind)
			*m = maps.Clone(*m)
			delete(*m, proc)
			if len(*m) == 0 {
				*m = nil
			}
			return nil
		})
	}
}

// settings returns the app's settings, or the installation's (--global).
func (r *Resources) settings(c *Call) (paas.ResourceSettings, error) {
	if c.App == nil {
		return r.Store.GlobalResources()
	}
	return c.App.Resources, nil
}

// apply changes the app's settings (rolled out) or the installation's,
// which every app without its own takes at its next release. A global
// change that would make an app reserve more than its limit is refused.
func (r *Resources) apply(ctx context.Context, c *Call, reason string, change func(*paas.ResourceSettings) error) error {
	if c.App != nil {
		err := r.Pipeline.SetResources(ctx, c.App.Name, c.ID, reason, change, c.Out)
		if errors.Is(err, paas.ErrInvalidResource) {
			return refusedInput{fmt.Errorf("%w; nothing was changed", err)}
		}
		return err
	}
	apps, err := r.Store.Apps()
	if err != nil {
		return err
	}
	err = r.Store.UpdateGlobalResources(func(s *paas.ResourceSettings) error {
		if err := change(s); err != nil {
			return err
		}
		if err := paas.CheckResources(paas.ResourceSettings{}, *s); err != nil {
			return err
		}
		for _, a := range apps {
			if err := paas.CheckResources(a.Resources, *s); err != nil {
				return fmt.Errorf("app %s: %w", a.Name, err)
			}
		}
		return nil
	})
	if errors.Is(err, paas.ErrInvalidResource) {
		return refusedInput{fmt.Errorf("%w; nothing was changed", err)}
	}
	if err == nil {
		output.Step(c.Out, "Apps without their own take it at their next release")
	}
	return err
}

// show prints the limits or reservations of one process type (resource:limit APP).
func (r *Resources) show(c *Call, kind, proc string) error {
	s, err := r.settings(c)
	if err != nil {
		return err
	}
	res := (*settingsOf(&s, kind))[proc]
	output.Header(c.Out, "resource %ss of %s for %s", kind, paas.ProcessTypeName(proc), resourceTarget(c))
	output.Detail(c.Out, "cpu:    %s", cpuText(res.NanoCPUs))
	output.Detail(c.Out, "memory: %s", memoryText(res.MemoryBytes))
	return nil
}

func cpuText(n int64) string {
	if n == 0 {
		return ""
	}
	return paas.FormatCPU(n)
}

func memoryText(n int64) string {
	if n == 0 {
		return ""
	}
	return paas.FormatMemory(n)
}

// resourceFields are report lines of settings: "Resource limit cpu" for
// every process type, "Resource web limit memory" for one.
func resourceFields(prefix string, s paas.ResourceSettings) []kv {
	var out []kv
	names := s.ProcessTypes()
	if !slices.Contains(names, paas.ResourceDefault) {
		names = append([]string{paas.ResourceDefault}, names...)
	}
	for _, proc := range names {
		p := prefix
		if proc != paas.ResourceDefault {
			p += " " + proc
		}
		l, res := s.Limits[proc], s.Reservations[proc]
		out = append(out,
			kv{p + " limit cpu", cpuText(l.NanoCPUs)}, kv{p + " limit memory", memoryText(l.MemoryBytes)},
			kv{p + " reserve cpu", cpuText(res.NanoCPUs)}, kv{p + " reserve memory", memoryText(res.MemoryBytes)})
	}
	return out
}

// ResourceJSON is resource:report --format json of one app.
type ResourceJSON struct {
	App          string                           `json:"app,omitempty"`
	Limits       map[string]paas.Resources        `json:"limits"`
	Reservations map[string]paas.Resources        `json:"reservations"`
	Global       paas.ResourceSettings            `json:"global"`
	Computed     map[string]paas.ProcessResources `json:"computed,omitempty"` // by process type of the serving release
}

func (r *Resources) report(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	global, err := r.Store.GlobalResources()
	if err != nil {
		return err
	}
	if c.Has("--global") {
		if len(c.Args) > 0 {
			return fmt.Errorf("--global takes no app")
		}
		delete(c.Flags, "--global") // not one of the report's single-value flags
		if asJSON {
			return output.JSON(c.Out, ResourceJSON{Limits: nonNilRes(global.Limits), Reservations: nonNilRes(global.Reservations), Global: global})
		}
		return report(c, false, "global resource information", resourceFields("Resource", global))
	}
	var apps []*paas.App
	if len(c.Args) > 0 {
		app, err := usableApp(r.Store, c.ID, c.Args[0])
		if err != nil {
			return err
		}
		apps = []*paas.App{app}
	} else {
		all, err := r.Store.Apps()
		if err != nil {
			return err
		}
		for _, a := range all {
			if auth.CanUseApp(c.ID, a) {
				apps = append(apps, a)
			}
		}
	}
	var docs []ResourceJSON
	for _, a := range apps {
		computed, err := r.computed(a)
		if err != nil {
			return err
		}
		if asJSON {
			docs = append(docs, ResourceJSON{App: a.Name, Limits: nonNilRes(a.Resources.Limits), Reservations: nonNilRes(a.Resources.Reservations), Global: global, Computed: computed})
			continue
		}
		fields := resourceFields("Resource", a.Resources)
		for _, proc := range slices.Sorted(maps.Keys(computed)) {
			fields = append(fields, kv{"Resource computed " + proc, describeResources(computed[proc])})
		}
		if err := report(c, false, a.Name+" resource information", fields); err != nil {
			return err
		}
	}
	if asJSON {
		if len(c.Args) > 0 {
			return output.JSON(c.Out, docs[0])
		}
		return output.JSON(c.Out, docs)
	}
	return nil
}

// computed returns what each process type of the app's serving release
// runs with; nil before the first release.
func (r *Resources) computed(a *paas.App) (map[string]paas.ProcessResources, error) {
	rel, err := servingRelease(r.Store, a)
	if err != nil || rel == nil {
		return nil, err
	}
	return releaseResources(rel), nil
}

// servingRelease returns the app's serving release, nil before the first.
func servingRelease(st interface {
	Releases(app string) ([]*paas.Release, error)
}, a *paas.App) (*paas.Release, error) {
	if a.Current == 0 {
		return nil, nil
	}
	rels, err := st.Releases(a.Name)
	if err != nil {
		return nil, err
	}
	for _, rel := range rels {
		if rel.Version == a.Current {
			return rel, nil
		}
	}
	return nil, nil
}

// releaseResources returns what each process type of rel runs with.
func releaseResources(rel *paas.Release) map[string]paas.ProcessResources {
	out := map[string]paas.ProcessResources{}
	procs := rel.Processes
	if len(procs) == 0 {
		procs = []paas.ProcessType{{Name: paas.WebProcess}}
	}
	for _, pt := range procs {
		out[pt.Name] = rel.ResourcesOf(pt.Name)
	}
	return out
}

// describeResources is one line of what a process type runs with:
// "limit cpu 1, memory 512 MB; reserve memory 256 MB", or "no limit".
func describeResources(p paas.ProcessResources) string {
	part := func(name string, r paas.Resources) string {
		s := name
		if r.NanoCPUs != 0 {
			s += " cpu " + paas.FormatCPU(r.NanoCPUs)
		}
		if r.MemoryBytes != 0 {
			if r.NanoCPUs != 0 {
				s += ","
			}
			s += " memory " + paas.FormatMemory(r.MemoryBytes)
		}
		return s
	}
	switch {
	case p.IsZero():
		return "no limit"
	case p.Reserve.IsZero():
		return part("limit", p.Limit)
	case p.Limit.IsZero():
		return "no limit; " + part("reserve", p.Reserve)
	}
	return part("limit", p.Limit) + "; " + part("reserve", p.Reserve)
}

func nonNilRes(m map[string]paas.Resources) map[string]paas.Resources {
	if m == nil {
		return map[string]paas.Resources{}
	}
	return m
}
