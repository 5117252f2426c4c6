package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"paas/internal/auth"
	"paas/internal/paas"
	"paas/scheduler"
)

// Store is the state the commands read and change.
type Store interface {
	AppStore
	Apps() ([]*paas.App, error)
	CreateApp(app *paas.App) error
	DeleteApp(name string) error
	AddKey(k *paas.SSHKey) error
	Keys() ([]*paas.SSHKey, error)
	RemoveKey(name string) error
	Releases(app string) ([]*paas.Release, error)
	Deploys(app string) ([]*paas.Deploy, error)
	UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error)
}

// Pipeline applies changes that roll out.
type Pipeline interface {
	SetConfig(ctx context.Context, app string, who paas.Identity, reason string, restart bool, fn func(map[string]string) error, out io.Writer) error
	Locked(ctx context.Context, app string, out io.Writer, fn func() error) error
}

// Runtime is what runs the apps (the scheduler).
type Runtime interface {
	Logs(ctx context.Context, app string, opts scheduler.LogOptions, w io.Writer) error
	Status(ctx context.Context, app string) ([]scheduler.ProcessStatus, error)
	Remove(ctx context.Context, app string) error
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
}

// Images drops an app's images from the registry.
type Images interface {
	DeleteApp(app string) error
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
}

// Builtins returns the built-in commands.
func (p *Platform) Builtins() []*Command {
	var cmds []*Command
	cmds = append(cmds, p.appCommands()...)
	cmds = append(cmds, p.configCommands()...)
	cmds = append(cmds, p.keyCommands()...)
	cmds = append(cmds, p.psCommands()...)
	cmds = append(cmds, p.releaseCommands()...)
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

func wantJSON(c *Call) (bool, error) {
	switch f := c.Flags["--format"]; f {
	case "", "stdout":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, fmt.Errorf("unknown format %q: use json or stdout", sanitize(f))
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (p *Platform) appCommands() []*Command {
	return []*Command{
		{Name: "apps:create", Args: "APP", Help: "Create a new app", MinArgs: 1, NamesApp: true, Run: p.appsCreate},
		{Name: "apps:list", Help: "List your apps", Flags: formatFlag, Run: p.appsList},
		{Name: "apps:exists", Args: "APP", Help: "Exit 0 when the app exists, 20 when it does not", App: true, Run: func(_ context.Context, c *Call) error {
			fmt.Fprintf(c.Out, "App %s exists\n", c.App.Name)
			return nil
		}},
		{Name: "apps:destroy", Args: "APP --force", Help: "Destroy an app: its services, repository, images, config and releases", App: true, Flags: map[string]bool{"--force": false}, Run: p.appsDestroy},
		{Name: "apps:report", Args: "APP", Help: "Show an app's information", App: true, Flags: formatFlag, Run: p.appsReport},
	}
}

func (p *Platform) appsCreate(_ context.Context, c *Call) error {
	_, err := p.CreateApp(c.ID, c.Args[0], c.Out)
	return err
}

// CreateApp creates the app name owned by id, with its repository: what
// apps:create does, and a push to a missing app.
func (p *Platform) CreateApp(id paas.Identity, name string, out io.Writer) (*paas.App, error) {
	if err := paas.ValidateAppName(name); err != nil {
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
	fmt.Fprintf(out, "-----> Creating %s...\n", name)
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

type appJSON struct {
	Name      string    `json:"name"`
	Owner     string    `json:"owner"`
	CreatedAt time.Time `json:"created_at"`
	Deployed  bool      `json:"deployed"`
	Release   int       `json:"release"`
	URL       string    `json:"url"`
}

func (p *Platform) appsList(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	apps, err := p.visibleApps(c.ID)
	if err != nil {
		return err
	}
	if asJSON {
		list := make([]appJSON, 0, len(apps))
		for _, a := range apps {
			list = append(list, appJSON{a.Name, a.Owner, a.CreatedAt, a.Current > 0, a.Current, p.AppURL(a.Name)})
		}
		return writeJSON(c.Out, list)
	}
	fmt.Fprintln(c.Out, "=====> My Apps")
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
		fmt.Fprintf(c.Out, "-----> Destroying %s\n", name)
		if err := p.Runtime.Remove(ctx, name); err != nil {
			return fmt.Errorf("remove services: %w", err)
		}
		if err := p.Store.DeleteApp(name); err != nil {
			return err
		}
		if p.Routing != nil {
			if err := p.Routing.Forget(ctx, name); err != nil {
				fmt.Fprintf(c.Err, " !     remove routing: %v\n", err)
			}
		}
		if err := p.Repos.Remove(name); err != nil {
			fmt.Fprintf(c.Err, " !     remove repository: %v\n", err)
		}
		if err := p.Images.DeleteApp(name); err != nil {
			fmt.Fprintf(c.Err, " !     remove images: %v\n", err)
		}
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
	fields := []kv{
		{"App created at", a.CreatedAt.Format(time.RFC3339)},
		{"App deploy source", "git"},
		{"App deploy branch", a.Branch()},
		{"App dir", p.Repos.Path(a.Name)},
		{"App owner", a.Owner},
		{"App release", fmt.Sprint(a.Current)},
		{"App commit", commit},
		{"App git head", head},
		{"App locked", fmt.Sprint(a.Locked)},
		{"App image", image},
		{"App url", p.AppURL(a.Name)},
	}
	return report(c, asJSON, a.Name+" app information", fields)
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
		return writeJSON(c.Out, m)
	}
	width := 0
	for _, f := range fields {
		width = max(width, len(f.k)+1)
	}
	fmt.Fprintf(c.Out, "=====> %s\n", title)
	for _, f := range fields {
		fmt.Fprintf(c.Out, "       %-*s %s\n", width, f.k+":", sanitize(f.v))
	}
	return nil
}
