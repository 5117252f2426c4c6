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

	"paas/internal/output"
	"paas/internal/paas"
)

// Routing is the router's configuration (internal/routing): it publishes an
// app's routing settings to the routers and obtains ACME certificates.
type Routing interface {
	Domain() string
	// Domains are every global domain, Domain's first.
	Domains() []string
	DefaultHost(app string) string
	HTTPPort() int
	HTTPSPort() int
	ACMENames(app string, r *paas.Routing) []string
	Publish(ctx context.Context, app string) error
	PublishGlobal(ctx context.Context) error
	Issue(ctx context.Context, app string, out io.Writer) error
	Forget(ctx context.Context, app string) error
}

// RoutingStore keeps the apps' routing settings.
type RoutingStore interface {
	Routing(app string) (*paas.Routing, error)
	UpdateRouting(app string, fn func(*paas.Routing) error) (*paas.Routing, error)
	SetGlobalDomain(domain string) error
	SetGlobalDomains(domains []string) error
}

func (p *Platform) domainCommands() []*Command {
	return []*Command{
		{Name: "domains:add", Args: "APP DOMAIN...", Help: "Serve an app at more domains (exact names or *.wildcards)", App: true, MinArgs: 1, Run: p.domainsAdd},
		{Name: "domains:remove", Args: "APP DOMAIN...", Help: "Stop serving an app at some domains", App: true, MinArgs: 1, Run: p.domainsRemove},
		{Name: "domains:set", Args: "APP DOMAIN...", Help: "Replace an app's domains", App: true, MinArgs: 1, Run: p.domainsSet},
		{Name: "domains:clear", Args: "APP", Help: "Remove all of an app's domains (it keeps APP.DOMAIN)", App: true, Run: p.domainsClear},
		{Name: "domains:report", Args: "APP|--global", Help: "Show the domains an app is served at, or the global domains", NamesApp: true,
			Flags: map[string]bool{"--format": true, "--global": false}, Run: p.domainsReport},
		{Name: "domains:set-global", Args: "DOMAIN...", Help: "Serve every app at APP.DOMAIN for each DOMAIN (the first is its URL) (administrators)", Admin: true, MinArgs: 1, Run: p.domainsGlobal("set")},
		{Name: "domains:add-global", Args: "DOMAIN...", Help: "Serve every app at APP.DOMAIN too (administrators)", Admin: true, MinArgs: 1, Run: p.domainsGlobal("add")},
		{Name: "domains:remove-global", Args: "DOMAIN...", Help: "Stop serving apps at APP.DOMAIN (administrators)", Admin: true, MinArgs: 1, Run: p.domainsGlobal("remove")},
		{Name: "domains:clear-global", Help: "Serve apps at APP.DOMAIN of paasd's --domain only (administrators)", Admin: true, Run: p.domainsGlobal("clear")},
		{Name: "domains:enable", Args: "APP", Help: "Serve an app at its names again (APP.DOMAIN and its domains)", App: true, Run: p.domainsToggle(false)},
		{Name: "domains:disable", Args: "APP", Help: "Serve an app at no name at all, APP.DOMAIN included (apps sharing a network with it still reach it there); its domains are kept", App: true, Run: p.domainsToggle(true)},
	}
}

// parseDomains canonicalizes and checks the domains given for app: valid
// names, and none that is another app's default name or covers them all.
func (p *Platform) parseDomains(app string, args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		d := paas.CanonicalDomain(a)
		if err := paas.ValidateDomain(d); err != nil {
			return nil, fmt.Errorf("%s", sanitize(err.Error()))
		}
		for _, global := range p.Routing.Domains() {
			if d == "*."+global {
				return nil, fmt.Errorf("%w %q: it would take every app's default name", paas.ErrInvalidDomain, d)
			}
			if label, ok := strings.CutSuffix(d, "."+global); ok && !strings.Contains(label, ".") && label != app {
				return nil, fmt.Errorf("%w %q: names of the form NAME.%s are the apps' default names", paas.ErrInvalidDomain, d, global)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// defaultHosts are APP.D for every global domain.
func (p *Platform) defaultHosts(app string) []string {
	var out []string
	for _, d := range p.Routing.Domains() {
		out = append(out, app+"."+d)
	}
	return out
}

// changeDomains applies fn to the app's domain list, stores it (refused when
// another app has one of them) and publishes it.
func (p *Platform) changeDomains(ctx context.Context, c *Call, fn func([]string) []string) (*paas.Routing, error) {
	r, err := p.RoutingStore.UpdateRouting(c.App.Name, func(r *paas.Routing) error {
		r.DomainsDisabled = false // Dokku's domains:add and domains:set enable them again
		r.Domains = fn(slices.Clone(r.Domains))
		slices.Sort(r.Domains)
		r.Domains = slices.Compact(r.Domains)
		return nil
	})
	if errors.Is(err, paas.ErrDomainTaken) {
		return nil, fmt.Errorf("%s; nothing changed", err)
	}
	if err != nil {
		return nil, err
	}
	return r, p.Routing.Publish(ctx, c.App.Name)
}

func (p *Platform) domainsAdd(ctx context.Context, c *Call) error {
	ds, err := p.parseDomains(c.App.Name, c.Args)
	if err != nil {
		return err
	}
	cur, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	have := append(p.defaultHosts(c.App.Name), cur.Domains...)
	var added []string
	for _, d := range ds {
		if slices.Contains(have, d) || slices.Contains(added, d) {
			output.Step(c.Out, "Skipping: %s already added to %s", d, c.App.Name)
			continue
		}
		added = append(added, d)
	}
	if len(added) == 0 && !cur.DomainsDisabled {
		return nil
	}
	if _, err := p.changeDomains(ctx, c, func(cur []string) []string { return append(cur, added...) }); err != nil {
		return err
	}
	for _, d := range added {
		output.Step(c.Out, "Added %s to %s", d, c.App.Name)
	}
	if cur.DomainsDisabled {
		output.Step(c.Out, "Domains of %s enabled again", c.App.Name)
	}
	return nil
}

func (p *Platform) domainsRemove(ctx context.Context, c *Call) error {
	ds := make([]string, len(c.Args))
	for i, a := range c.Args {
		ds[i] = paas.CanonicalDomain(a)
	}
	cur, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if !slices.Contains(cur.Domains, d) {
			return fmt.Errorf("%s is not a domain of %s; nothing changed", sanitize(d), c.App.Name)
		}
	}
	if _, err := p.changeDomains(ctx, c, func(cur []string) []string {
		return slices.DeleteFunc(cur, func(d string) bool { return slices.Contains(ds, d) })
	}); err != nil {
		return err
	}
	for _, d := range ds {
		output.Step(c.Out, "Removed %s from %s", d, c.App.Name)
	}
	return nil
}

func (p *Platform) domainsSet(ctx context.Context, c *Call) error {
	ds, err := p.parseDomains(c.App.Name, c.Args)
	if err != nil {
		return err
	}
	if _, err := p.changeDomains(ctx, c, func([]string) []string { return ds }); err != nil {
		return err
	}
	output.Step(c.Out, "Set %s for %s", strings.Join(ds, " "), c.App.Name)
	return nil
}

func (p *Platform) domainsClear(ctx context.Context, c *Call) error {
	if _, err := p.changeDomains(ctx, c, func([]string) []string { return nil }); err != nil {
		return err
	}
	output.Step(c.Out, "Cleared domains in %s", c.App.Name)
	return nil
}

func (p *Platform) domainsReport(_ context.Context, c *Call) error {
	global := []kv{
		{"Domains global enabled", "true"},
		{"Domains global vhosts", strings.Join(p.Routing.Domains(), " ")},
	}
	if c.Has("--global") {
		if len(c.Args) > 0 {
			return errors.New("give an app or --global, not both")
		}
		asJSON, err := wantJSON(c)
		if err != nil {
			return err
		}
		only := *c
		only.Flags = maps.Clone(c.Flags)
		delete(only.Flags, "--global")
		return report(&only, asJSON, "global domains information", global)
	}
	if len(c.Args) != 1 {
		return fmt.Errorf("please specify an app name, or --global\n Usage: domains:report APP|--global")
	}
	app, err := p.usableApp(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	withApp := *c
	withApp.App = app
	return p.routingReport(&withApp, "domains information", func(r *paas.Routing) []kv {
		var vhosts []string
		if !r.DomainsDisabled {
			vhosts = append(p.defaultHosts(app.Name), r.Domains...)
		}
		return append([]kv{
			{"Domains app enabled", strconv.FormatBool(!r.DomainsDisabled)},
			{"Domains app vhosts", strings.Join(vhosts, " ")},
		}, global...)
	})
}

func (p *Platform) domainsToggle(disable bool) func(context.Context, *Call) error {
	return func(ctx context.Context, c *Call) error {
		if len(c.Args) > 0 {
			return fmt.Errorf("%s takes only the app name", map[bool]string{true: "domains:disable", false: "domains:enable"}[disable])
		}
		cur, err := p.RoutingStore.Routing(c.App.Name)
		if err != nil {
			return err
		}
		if cur.DomainsDisabled == disable {
			output.Step(c.Out, "Domains of %s are already %s", c.App.Name, map[bool]string{true: "disabled", false: "enabled"}[disable])
			return nil
		}
		if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.DomainsDisabled = disable }); err != nil {
			return err
		}
		if disable {
			output.Step(c.Out, "Domains of %s disabled: it is served at none of its names now (domains:enable serves them again)", c.App.Name)
		} else {
			output.Step(c.Out, "Domains of %s enabled: %s", c.App.Name, strings.Join(append(p.defaultHosts(c.App.Name), cur.Domains...), " "))
		}
		return nil
	}
}

// domainsGlobal is domains:set-global, add-global, remove-global and
// clear-global. Apps are served at APP.D for every global domain D; the
// first is where an app's URL, health checks and ACME certificate point.
// With none set, the installation's --domain is the only one.
func (p *Platform) domainsGlobal(op string) func(context.Context, *Call) error {
	return func(ctx context.Context, c *Call) error {
		var ds []string
		for _, a := range c.Args {
			d := paas.CanonicalDomain(a)
			if err := paas.ValidateDomain(d); err != nil || strings.HasPrefix(d, "*.") {
				if err == nil {
					err = fmt.Errorf("%w %q: a global domain cannot be a wildcard", paas.ErrInvalidDomain, d)
				}
				return fmt.Errorf("%s", sanitize(err.Error()))
			}
			if !slices.Contains(ds, d) {
				ds = append(ds, d)
			}
		}
		cur := p.Routing.Domains()
		next := slices.Clone(cur)
		var said []string
		switch op {
		case "set":
			next = ds
			plural := map[bool]string{true: "s", false: ""}[len(ds) > 1]
			said = append(said, fmt.Sprintf("Set global domain%s to %s", plural, strings.Join(ds, " ")))
		case "add":
			for _, d := range ds {
				if slices.Contains(next, d) {
					output.Step(c.Out, "Skipping %s: already added", d)
					continue
				}
				next = append(next, d)
				said = append(said, "Added "+d)
			}
		case "remove":
			for _, d := range ds {
				if !slices.Contains(next, d) {
					return fmt.Errorf("%s is not a global domain (they are %s); nothing changed", d, strings.Join(cur, " "))
				}
				next = slices.DeleteFunc(next, func(x string) bool { return x == d })
				said = append(said, "Removed "+d)
			}
			if len(next) == 0 {
				return errors.New("that would leave no global domain: set another first, or run domains:clear-global to serve apps at APP.DOMAIN of paasd's --domain again; nothing changed")
			}
		case "clear":
			if len(c.Args) > 0 {
				return errors.New("domains:clear-global takes no domain")
			}
			next = nil
		}
		if slices.Equal(next, cur) && op != "clear" {
			return nil
		}
		if err := p.RoutingStore.SetGlobalDomains(next); err != nil {
			return err
		}
		if err := p.Routing.PublishGlobal(ctx); err != nil {
			return err
		}
		if op == "clear" {
			said = append(said, "Cleared the global domains: apps are served at APP."+p.Routing.Domain())
		}
		for _, line := range said {
			output.Step(c.Out, "%s", line)
		}
		return nil
	}
}
