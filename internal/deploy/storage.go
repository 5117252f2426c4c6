package deploy

import (
	"context"
	"io"
	"slices"

	"paas/internal/paas"
)

// withStorage gives rel the app's storage mounts and the node they pin it
// to: every rollout runs with the app's mounts of now, whatever release it
// runs (a rollback keeps the volumes it had).
func withStorage(app *paas.App, rel *paas.Release) {
	rel.Mounts = slices.Clone(app.Mounts)
	rel.Node = ""
	if len(app.Mounts) > 0 {
		rel.Node = app.StorageNode
	}
}

// SetStorage changes an app's storage mounts through change. A running app
// is rolled out again with them as a config change is (a new deployment,
// health-gated, the old tasks drained), and the change is stored only once
// the new tasks serve; an app not deployed yet, or stopped, gets them at its
// next deploy or start. An error from change changes nothing.
func (p *Pipeline) SetStorage(ctx context.Context, appName string, who paas.Identity, reason string, change func(*paas.App) error, out io.Writer) error {
	app, unlock, err := p.lockApp(ctx, appName, out)
	if err != nil {
		return err
	}
	if err := change(app); err != nil {
		unlock()
		return err
	}
	if app.Current == 0 || app.Stopped {
		defer unlock()
		_, err := p.store.UpdateApp(appName, change)
		return err
	}
	unlock()
	// withCurrent takes the lock again and runs change on the app as it
	// is then, before the rollout and once more on the stored app after.
	return p.withCurrent(ctx, appName, who, reason, true, out, func(a *paas.App, _ *paas.Release) error { return change(a) })
}
