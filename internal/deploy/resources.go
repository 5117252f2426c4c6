package deploy

import (
	"context"
	"io"
	"maps"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/plugins"
)

// SetResources changes an app's limits and reservations through fn
// (resource:limit, resource:reserve and their -clear). A deployed app rolls
// out a new release that runs with them, through the same health gate as
// config:set, and they are stored only once it runs; an app without a
// release keeps them for its first. A reservation above its limit is
// refused before anything changes.
func (p *Pipeline) SetResources(ctx context.Context, appName string, who paas.Identity, reason string, fn func(*paas.ResourceSettings) error, out io.Writer) error {
	ctx = plugins.WithUser(ctx, who)
	app, unlock, err := p.lockApp(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	set := app.Resources.Clone()
	if err := fn(&set); err != nil {
		return err
	}
	global, err := p.store.GlobalResources()
	if err != nil {
		return err
	}
	var cur *paas.Release
	if app.Current > 0 {
		if cur, err = p.store.Release(appName, 0); err != nil {
			return err
		}
	}
	if err := paas.CheckResources(set, global, processNames(cur)...); err != nil {
		return err
	}
	if cur == nil {
		_, err := p.store.UpdateApp(appName, func(a *paas.App) error { a.Resources = set; return nil })
		return err
	}
	gcfg, err := p.store.GlobalConfig()
	if err != nil {
		return err
	}
	return p.changeLocked(ctx, app, who, reason, out, func(app *paas.App, version int, out io.Writer) (*paas.Release, error) {
		output.Step(out, "Restarting app %s", appName)
		rel := *cur
		rel.Version, rel.Author, rel.Reason = version, who.Name, reason
		// The app's config as it is now (a config:set --no-restart is
		// applied too, as by any restart).
		rel.Config, rel.Global, rel.ConfigVersion = maps.Clone(app.Config), gcfg, app.ConfigVersion
		app.Resources = set // rollOut gives it to the release
		return &rel, nil
	})
}

// processNames returns the process types of rel ("web" for an image
// without a Procfile); none for a nil rel.
func processNames(rel *paas.Release) []string {
	if rel == nil {
		return nil
	}
	if len(rel.Processes) == 0 {
		return []string{paas.WebProcess}
	}
	names := make([]string, len(rel.Processes))
	for i, pt := range rel.Processes {
		names[i] = pt.Name
	}
	return names
}
