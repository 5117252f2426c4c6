package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
	"paas/scheduler"
)

// Store is the state the commands read and change.
type Store interface {
	AppStore
	Apps() ([]*paas.App, error)
	// AppList is every app as apps:list shows it, sorted by name;
	// ServedSince sets the DeployedAt of some of them.
	AppList() ([]paas.AppEntry, error)
	ServedSince(apps []paas.AppEntry) error
	CreateApp(app *paas.App) error
	DeleteApp(name string) error
	AddKey(k *paas.SSHKey) error
	Keys() ([]*paas.SSHKey, error)
	RemoveKey(name string) error
	Releases(app string) ([]*paas.Release, error)
	Deploys(app string) ([]*paas.Deploy, error)

	// GlobalConfig and UpdateGlobalConfig keep the config every app
	// inherits (config:set --global).
	GlobalConfig() (map[string]string, error)
	UpdateGlobalConfig(fn func(cfg map[string]string) error) error
	UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error)
	AppsSettings() (paas.AppsSettings, error)
	// RenameApp moves an app with its releases, deploy records and
	// routing settings to a new name (paas.ErrAppExists when taken),
	// passing each release's image through image.
	RenameApp(old, to string, image func(paas.Image) paas.Image) (*paas.App, error)
}

// Pipeline applies changes that roll out.
type Pipeline interface {
	SetConfig(ctx context.Context, app string, who paas.Identity, reason string, restart bool, fn func(map[string]string) error, out io.Writer, also ...func(*paas.App)) error
	Locked(ctx context.Context, app string, out io.Writer, fn func() error) error
}

// Runtime is what runs the apps (the scheduler).
type Runtime interface {
	Logs(ctx context.Context, app string, opts scheduler.LogOptions, w io.Writer) error
	Status(ctx context.Context, app string) ([]scheduler.ProcessStatus, error)
	Remove(ctx context.Context, app string) error
	// Stop takes the app's tasks out of the router, lets their requests
	// finish (at most drain) and stops them.
	Stop(ctx context.Context, app string, drain time.Duration, out io.Writer) error
	// Inspect returns the inspect documents of the app's tasks (ps:inspect).
	Inspect(ctx context.Context, app string) ([]json.RawMessage, error)
}

// Repos holds the apps' git repositories.
type Repos interface {
	Create(app string) error
	Remove(app string) error
	Path(app string) string
	// Head returns the commit the app's branch points to, "" when it has none.
	Head(app, branch string) (string, error)
	// UpdatedAt is when the app's branch was last written; zero when it
	// has none.
	UpdatedAt(app, branch string) (time.Time, error)
	// Rename moves an app's repository to a new name; CopyRefs copies the
	// branches and tags of one app's repository into another's.
	Rename(old, to string) error
	CopyRefs(from, to string) error
}

// Images are the apps' images in the installation's registry.
type Images interface {
	// DeleteApp drops an app's images (and its build cache).
	DeleteApp(app string) error
	// Copy copies img into app's repository as tag; the copy has the
	// same digest.
	Copy(ctx context.Context, img paas.Image, app, tag string) (paas.Image, error)
}

// Locker is a lock per app: the push lock, which a push of the app holds.
type Locker interface {
	Lock(ctx context.Context, app string, waiting func()) (unlock func(), err error)
}

// Platform is everything the built-in commands act on.
type Platform struct {
	Store    Store
	Pipeline Pipeline
	Runtime  Runtime
	Repos    Repos
	Images   Images
	AppURL   func(app string) string
	Releases Releases
	OneOffs  OneOffs
	// Routing and RoutingStore serve the domains, certs, letsencrypt, proxy
	// and ports commands; without them those commands are not offered.
	Routing      Routing
	RoutingStore RoutingStore
	Limits       Limits
	// Sources serve git:sync and git:from-archive; without them those
	// commands are not offered.
	Sources GitSources
	// PushLocks are the apps' push locks (apps:rename takes the app's).
	PushLocks Locker
	// Counts, when set, gives apps:list --detail every app's task counts
	// at once (the scheduler's one service list).
	Counts Counts
}

// Counts are the task counts of every app's process types, by app.
type Counts interface {
	Counts(ctx context.Context) (map[string][]scheduler.ProcessCount, error)
}

// Limits bound what a command may set; `paasd serve` flags set them. A zero
// field is no limit.
type Limits struct {
	MaxConfigValue int // bytes of one config value
	MaxConfigSize  int // bytes of an app's whole config, KEY=VALUE summed
	MaxScale       int // tasks of one process type (ps:scale)
}

// Builtins returns the built-in commands.
func (p *Platform) Builtins() []*Command {
	var cmds []*Command
	cmds = append(cmds, p.appCommands()...)
	cmds = append(cmds, p.configCommands()...)
	cmds = append(cmds, p.keyCommands()...)
	cmds = append(cmds, p.psCommands()...)
	cmds = append(cmds, p.releaseCommands()...)
	cmds = append(cmds, p.runCommands()...)
	cmds = append(cmds, p.gitCommands()...)
	cmds = append(cmds, p.logsCommands()...)
	if p.Routing != nil && p.RoutingStore != nil {
		cmds = append(cmds, p.domainCommands()...)
		cmds = append(cmds, p.certCommands()...)
		cmds = append(cmds, p.letsencryptCommands()...)
		cmds = append(cmds, p.proxyCommands()...)
	}
	cmds = append(cmds, p.processCommands()...)
	return cmds
}

var formatFlag = map[string]bool{"--format": true}

func wantJSON(c *Call) (bool, error) { return output.WantJSON(c.Flags["--format"]) }

func (p *Platform) appCommands() []*Command {
	return []*Command{
		{Name: "apps:create", Args: "APP", Help: "Create a new app", MinArgs: 1, NamesApp: true, Run: p.appsCreate},
		{Name: "apps:list", Args: "[--detail [--offset N] [--limit N]] [--format stdout|json]", Help: "List your apps (json: a list of names, as Dokku's); --detail: with state, tasks running/desired per process, release, last deploy and URL (--offset, --limit: a page of them)",
			Flags: map[string]bool{"--format": true, "--detail": false, "--offset": true, "--limit": true}, Run: p.appsList},
		{Name: "apps:exists", Args: "APP", Help: "Exit 0 when the app exists, 20 when it does not", App: true, Run: func(_ context.Context, c *Call) error {
			fmt.Fprintf(c.Out, "App %s exists\n", c.App.Name)
			return nil
		}},
		{Name: "apps:destroy", Args: "APP --force", Help: "Destroy an app: its services, repository, images, config and releases", App: true, Flags: map[string]bool{"--force": false}, Run: p.appsDestroy},
		{Name: "apps:report", Args: "APP [--format json|--FLAG]", Help: "Show an app's information", App: true, Flags: formatFlag, Run: p.appsReport},
		{Name: "apps:rename", Args: "[--skip-deploy] OLD NEW", Help: "Rename an app: its repository, config, releases, builds, domains and access list move; it is served at NEW.DOMAIN with no downtime, and OLD.DOMAIN no more",
			App: true, MinArgs: 1, Flags: map[string]bool{"--skip-deploy": false}, Run: p.appsRename},
		{Name: "apps:clone", Args: "[--skip-deploy] [--ignore-existing] OLD NEW", Help: "Make a new app from an app: its repository and config (not its domains or certificates), and a new release of its image",
			App: true, MinArgs: 1, Flags: map[string]bool{"--skip-deploy": false, "--ignore-existing": false}, Run: p.appsClone},
		{Name: "url", Args: "APP", Help: "Print the app's URL (https when a certificate covers it)", App: true, Run: p.url},
		{Name: "urls", Args: "APP", Help: "Print every URL the app is served at: APP.DOMAIN and its domains, http or https as served", App: true, Flags: formatFlag, Run: p.urls},
	}
}

func (p *Platform) appsCreate(_ context.Context, c *Call) error {
	_, err := p.CreateApp(c.ID, c.Args[0], c.Out)
	return err
}

// CreateApp creates the app name owned by id, with its repository: what
// apps:create does, and a push to a missing app.
func (p *Platform) CreateApp(id paas.Identity, name string, out io.Writer) (*paas.App, error) {
	if err := paas.ValidateNewAppName(name); err != nil {
		return nil, err
	}
	app := &paas.App{Name: name, Owner: id.Name, CreatedAt: time.Now().UTC()}
	if err := p.Store.CreateApp(app); err != nil {
		if errors.Is(err, paas.ErrAppExists) {
			// Do not tell apart an app one may not see from a new name clash.
			return nil, fmt.Errorf("Name is already taken: %s", name)
		}
		return nil, err
	}
	if err := p.Repos.Create(name); err != nil {
		p.Store.DeleteApp(name)
		return nil, fmt.Errorf("create repository: %w", err)
	}
	output.Step(out, "Creating %s...", name)
	return app, nil
}

func (p *Platform) visibleApps(id paas.Identity) ([]*paas.App, error) {
	apps, err := p.Store.Apps()
	if err != nil {
		return nil, err
	}
	out := apps[:0]
	for _, a := range apps {
		if auth.CanUseApp(id, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (p *Platform) appsList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	all, err := p.Store.AppList()
	if err != nil {
		return err
	}
	apps := all[:0]
	for _, a := range all {
		if auth.CanUseApp(c.ID, &paas.App{Name: a.Name, Owner: a.Owner, Access: a.Access}) {
			apps = append(apps, a)
		}
	}
	if c.Has("--detail") {
		offset, err := countFlag(c, "--offset", 0)
		if err != nil {
			return err
		}
		limit, err := countFlag(c, "--limit", len(apps))
		if err != nil {
			return err
		}
		apps = apps[min(offset, len(apps)):min(offset+limit, len(apps))]
		return p.appsDetail(ctx, c, apps, asJSON)
	}
	if c.Has("--offset") || c.Has("--limit") {
		return errors.New("--offset and --limit go with --detail")
	}
	if asJSON {
		names := make([]string, 0, len(apps))
		for _, a := range apps {
			names = append(names, a.Name)
		}
		return output.JSON(c.Out, names) // Dokku's: ["a","b"]; apps:report --format json has the rest
	}
	output.Header(c.Out, "My Apps")
	for _, a := range apps {
		fmt.Fprintln(c.Out, a.Name)
	}
	return nil
}

func (p *Platform) appsDestroy(ctx context.Context, c *Call) error {
	name := c.App.Name
	if !c.Has("--force") {
		return fmt.Errorf("destroying %s removes its services, repository, images, config and releases\nrun `apps:destroy %s --force` to confirm", name, name)
	}
	return p.Pipeline.Locked(ctx, name, c.Out, func() error {
		output.Step(c.Out, "Destroying %s", name)
		if err := p.Runtime.Remove(ctx, name); err != nil {
			return fmt.Errorf("remove services: %w", err)
		}
		if err := p.Store.DeleteApp(name); err != nil {
			return err
		}
		if p.Routing != nil {
			if err := p.Routing.Forget(ctx, name); err != nil {
				output.Warn(c.Err, "remove routing: %v", err)
			}
		}
		if err := p.Repos.Remove(name); err != nil {
			output.Warn(c.Err, "remove repository: %v", err)
		}
		if err := p.Images.DeleteApp(name); err != nil {
			output.Warn(c.Err, "remove images: %v", err)
		}
		keptVolumes(c.Out, c.App)
		return nil
	})
}

func (p *Platform) appsReport(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a := c.App
	rels, err := p.Store.Releases(a.Name)
	if err != nil {
		return err
	}
	var commit, image string
	for _, r := range rels {
		if r.Version == a.Current {
			commit, image = r.Commit, r.Image.Ref()
		}
	}
	head, err := p.Repos.Head(a.Name, a.Branch())
	if err != nil {
		return err
	}
	settings, err := p.Store.AppsSettings()
	if err != nil {
		return err
	}
	url, err := p.appURL(a.Name)
	if err != nil {
		return err
	}
	// Dokku's keys (created at is a UNIX time, as Dokku's), sorted as
	// Dokku prints them, then paas's own.
	fields := []kv{
		{"App created at", fmt.Sprint(a.CreatedAt.Unix())},
		{"App deploy source", a.DeploySource},
		{"App deploy source metadata", a.DeploySourceMetadata},
		{"App dir", p.Repos.Path(a.Name)},
		{"App global disable autocreation", strconv.FormatBool(settings.DisableAutocreation)},
		{"App locked", strconv.FormatBool(a.Locked)},
		{"App commit", commit},
		{"App deploy branch", a.Branch()},
		{"App git head", head},
		{"App image", image},
		{"App owner", a.Owner},
		{"App release", fmt.Sprint(a.Current)},
		{"App url", url},
	}
	return reportTrimmed(c, asJSON, true, a.Name+" app information", fields)
}

// reportTrimmed is report whose JSON keys lack the plugin's prefix, as
// Dokku 0.38's apps:report and git:report print them ("created-at"); with
// legacy, each key is there with its prefix too ("app-created-at").
func reportTrimmed(c *Call, asJSON, legacy bool, title string, fields []kv) error {
	for flag := range c.Flags {
		if flag != "--format" && flag != "--help" {
			asJSON = false // a single-value flag: report prints that value
		}
	}
	if !asJSON {
		return report(c, false, title, fields)
	}
	m := map[string]string{}
	for _, f := range fields {
		key := strings.ReplaceAll(strings.ToLower(f.k), " ", "-")
		if legacy {
			m[key] = f.v
		}
		if _, rest, ok := strings.Cut(key, "-"); ok {
			m[rest] = f.v
		}
	}
	return output.JSON(c.Out, m)
}

type kv struct{ k, v string }

// report prints Dokku's "=====> title" block of aligned "Key: value" lines, or a
// JSON object with lower-case dashed keys. With one of Dokku's single-value
// flags (the dashed key, e.g. --app-deploy-source) it prints just that value.
func report(c *Call, asJSON bool, title string, fields []kv) error {
	dashed := func(k string) string { return strings.ReplaceAll(strings.ToLower(k), " ", "-") }
	for flag := range c.Flags {
		if flag == "--format" || flag == "--help" || !strings.HasPrefix(flag, "--") {
			continue
		}
		for _, f := range fields {
			if "--"+dashed(f.k) == flag {
				fmt.Fprintln(c.Out, sanitize(f.v))
				return nil
			}
		}
		return fmt.Errorf("unknown flag %s for this report", sanitize(flag))
	}
	if asJSON {
		m := map[string]string{}
		for _, f := range fields {
			m[dashed(f.k)] = f.v
		}
		return output.JSON(c.Out, m)
	}
	width := 0
	for _, f := range fields {
		width = max(width, len(f.k)+1)
	}
	output.Header(c.Out, "%s", title)
	for _, f := range fields {
		output.Detail(c.Out, "%-*s %s", width, f.k+":", sanitize(f.v))
	}
	return nil
}

// AppSummary is one app of apps:list --detail.
type AppSummary struct {
	Name    string `json:"name"`
	State   string `json:"state"` // not deployed, stopped, running, degraded, down
	Release int    `json:"release"`
	// DeployedAt is when the serving release was made (zero before the first deploy).
	DeployedAt time.Time                `json:"deployed_at,omitzero"`
	URL        string                   `json:"url"`
	Processes  []scheduler.ProcessCount `json:"processes"`
}

// appsDetail lists apps with their state: the task counts of all of them
// come from one call to the scheduler, the rest from the store's list.
func (p *Platform) appsDetail(ctx context.Context, c *Call, apps []paas.AppEntry, asJSON bool) error {
	var counts map[string][]scheduler.ProcessCount
	// Only a deployed app has services: a list of apps none of which is
	// deployed needs no call to the scheduler.
	if p.Counts != nil && slices.ContainsFunc(apps, func(a paas.AppEntry) bool { return a.Current > 0 }) {
		var err error
		if counts, err = p.Counts.Counts(ctx); err != nil {
			return err
		}
	}
	if err := p.Store.ServedSince(apps); err != nil {
		return err
	}
	out := make([]AppSummary, 0, len(apps))
	for _, a := range apps {
		s := AppSummary{Name: a.Name, Release: a.Current, DeployedAt: a.DeployedAt, Processes: counts[a.Name]}
		if s.Processes == nil {
			s.Processes = []scheduler.ProcessCount{}
		}
		url, err := p.appURL(a.Name)
		if err != nil {
			return err
		}
		s.URL = url
		s.State = appState(a.Current, a.Stopped, s.Processes)
		out = append(out, s)
	}
	if asJSON {
		return output.JSON(c.Out, out)
	}
	output.Header(c.Out, "My Apps")
	output.Detail(c.Out, "%-24s %-12s %-8s %-20s %-24s %s", "Name", "State", "Release", "Deployed", "Tasks", "URL")
	for _, s := range out {
		var tasks []string
		for _, pc := range s.Processes {
			tasks = append(tasks, fmt.Sprintf("%s %d/%d", pc.Process, pc.Running, pc.Desired))
		}
		deployed := "-"
		if !s.DeployedAt.IsZero() {
			deployed = s.DeployedAt.Format("2006-01-02 15:04:05")
		}
		output.Detail(c.Out, "%-24s %-12s %-8s %-20s %-24s %s", s.Name, s.State, "v"+strconv.Itoa(s.Release), deployed, strings.Join(tasks, " "), s.URL)
	}
	return nil
}

// appState says in a word how an app is doing from its serving release,
// whether it is stopped and its task counts.
func appState(current int, stopped bool, procs []scheduler.ProcessCount) string {
	switch {
	case current == 0:
		return "not deployed"
	case stopped:
		return "stopped"
	}
	running, desired := 0, 0
	for _, pc := range procs {
		running += pc.Running
		desired += pc.Desired
	}
	switch {
	case running >= desired:
		return "running"
	case running == 0:
		return "down"
	}
	return "degraded"
}

// countFlag reads a flag whose value is a number from 0, def when not given.
func countFlag(c *Call, flag string, def int) (int, error) {
	v, ok := c.Flags[flag]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1_000_000_000 {
		return 0, fmt.Errorf("%s wants a number from 0, got %q", flag, sanitize(v))
	}
	return n, nil
}
