package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"paas/internal/paas"
)

// Routing is the router's configuration (internal/routing): it publishes an
// app's routing settings to the routers and obtains ACME certificates.
type Routing interface {
	Domain() string
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
}

func (p *Platform) domainCommands() []*Command {
	return []*Command{
		{Name: "domains:add", Args: "APP DOMAIN...", Help: "Serve an app at more domains (exact names or *.wildcards)", App: true, MinArgs: 1, Run: p.domainsAdd},
		{Name: "domains:remove", Args: "APP DOMAIN...", Help: "Stop serving an app at some domains", App: true, MinArgs: 1, Run: p.domainsRemove},
		{Name: "domains:set", Args: "APP DOMAIN...", Help: "Replace an app's domains", App: true, MinArgs: 1, Run: p.domainsSet},
		{Name: "domains:clear", Args: "APP", Help: "Remove all of an app's domains (it keeps APP.DOMAIN)", App: true, Run: p.domainsClear},
		{Name: "domains:report", Args: "APP", Help: "Show the domains an app is served at", App: true, Flags: formatFlag, Run: p.domainsReport},
		{Name: "domains:set-global", Args: "DOMAIN", Help: "Serve every app at APP.DOMAIN", Admin: true, MinArgs: 1, Run: p.domainsSetGlobal},
	}
}

// parseDomains canonicalizes and checks the domains given for app: valid
// names, and none that is another app's default name or covers them all.
func (p *Platform) parseDomains(app string, args []string) ([]string, error) {
	global := p.Routing.Domain()
	out := make([]string, 0, len(args))
	for _, a := range args {
		d := paas.CanonicalDomain(a)
		if err := paas.ValidateDomain(d); err != nil {
			return nil, fmt.Errorf("%s", sanitize(err.Error()))
		}
		if d == "*."+global {
			return nil, fmt.Errorf("%w %q: it would take every app's default name", paas.ErrInvalidDomain, d)
		}
		if label, ok := strings.CutSuffix(d, "."+global); ok && !strings.Contains(label, ".") && label != app {
			return nil, fmt.Errorf("%w %q: names of the form NAME.%s are the apps' default names", paas.ErrInvalidDomain, d, global)
		}
		out = append(out, d)
	}
	return out, nil
}

// changeDomains applies fn to the app's domain list, stores it (refused when
// another app has one of them) and publishes it.
func (p *Platform) changeDomains(ctx context.Context, c *Call, fn func([]string) []string) (*paas.Routing, error) {
	r, err := p.RoutingStore.UpdateRouting(c.App.Name, func(r *paas.Routing) error {
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
	if _, err := p.changeDomains(ctx, c, func(cur []string) []string { return append(cur, ds...) }); err != nil {
		return err
	}
	for _, d := range ds {
		fmt.Fprintf(c.Out, "-----> Added %s to %s\n", d, c.App.Name)
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
		fmt.Fprintf(c.Out, "-----> Removed %s from %s\n", d, c.App.Name)
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
	fmt.Fprintf(c.Out, "-----> Set %s for %s\n", strings.Join(ds, " "), c.App.Name)
	return nil
}

func (p *Platform) domainsClear(ctx context.Context, c *Call) error {
	if _, err := p.changeDomains(ctx, c, func([]string) []string { return nil }); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "-----> Cleared domains in %s\n", c.App.Name)
	return nil
}

func (p *Platform) domainsReport(_ context.Context, c *Call) error {
	return p.routingReport(c, "domains information", func(r *paas.Routing) []kv {
		vhosts := append([]string{p.Routing.DefaultHost(c.App.Name)}, r.Domains...)
		return []kv{
			{"Domains app enabled", "true"},
			{"Domains app vhosts", strings.Join(vhosts, " ")},
			{"Domains global enabled", "true"},
			{"Domains global vhosts", p.Routing.Domain()},
		}
	})
}

func (p *Platform) domainsSetGlobal(ctx context.Context, c *Call) error {
	if len(c.Args) != 1 {
		return errors.New("give exactly one global domain")
	}
	d := paas.CanonicalDomain(c.Args[0])
	if err := paas.ValidateDomain(d); err != nil || strings.HasPrefix(d, "*.") {
		if err == nil {
			err = fmt.Errorf("%w %q: the global domain cannot be a wildcard", paas.ErrInvalidDomain, d)
		}
		return fmt.Errorf("%s", sanitize(err.Error()))
	}
	if err := p.RoutingStore.SetGlobalDomain(d); err != nil {
		return err
	}
	if err := p.Routing.PublishGlobal(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "-----> Set global domain to %s\n", d)
	return nil
}
