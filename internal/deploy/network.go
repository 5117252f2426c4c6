package deploy

import (
	"context"
	"fmt"
	"slices"

	"paas/internal/paas"
)

// NetworkPool is the scheduler's pool of app networks, which the router is
// on (scheduler.Swarm).
type NetworkPool interface {
	AppNetworks(ctx context.Context) ([]string, error)
	// AddAppNetworks makes more, attaching the router to them.
	AddAppNetworks(ctx context.Context) error
}

// withNetworks gives rel the app's networks of now, whatever release it
// runs (a rollback keeps the networks the app has), as withStorage does.
func withNetworks(app *paas.App, rel *paas.Release) {
	rel.Networks = app.Network.All()
}

// ensureOwnNetwork lends the app a network of its own from the pool when it
// has none yet (its first rollout, or its first since apps had networks of
// their own), and sets it on app. Two apps never get the same one: lending
// is serialized, and a network is free when no app in the store has it. A
// destroyed app's record is gone, so its network is free again.
func (p *Pipeline) ensureOwnNetwork(ctx context.Context, app *paas.App) error {
	if p.networks == nil || app.Network.Own != "" {
		return nil
	}
	p.netMu.Lock()
	defer p.netMu.Unlock()
	apps, err := p.store.Apps()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, a := range apps {
		if a.Name == app.Name && a.Network.Own != "" {
			app.Network.Own = a.Network.Own
			return nil
		}
		used[a.Network.Own] = true
	}
	for attempt := 0; attempt < 2; attempt++ {
		pool, err := p.networks.AppNetworks(ctx)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(pool, func(n string) bool { return !used[n] }); i >= 0 {
			own := pool[i]
			if _, err := p.store.UpdateApp(app.Name, func(a *paas.App) error {
				a.Network.Own = own
				return nil
			}); err != nil {
				return err
			}
			app.Network.Own = own
			p.log.Info("app network lent", "app", app.Name, "network", own)
			return nil
		}
		p.log.Info("app networks all lent: making more (the router is replaced once)", "in_use", len(used))
		if err := p.networks.AddAppNetworks(ctx); err != nil {
			return fmt.Errorf("add app networks: %w", err)
		}
	}
	return fmt.Errorf("no free app network for %s", app.Name)
}
