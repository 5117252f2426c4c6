package daemon

import (
	"context"
	"fmt"
	"io"

	"paas/gitreceive"
	"paas/internal/commands"
	"paas/internal/deploy"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/scheduler"
)

// releases gives the commands the pipeline's release operations, plus the
// two that need more than the pipeline: rebuilding from the app's
// repository and changing checks settings.
type releases struct {
	*deploy.Pipeline
	store *store.Store
	repos *repos
	sched *scheduler.Swarm
}

var _ commands.Releases = (*releases)(nil)

// Rebuild deploys the deploy branch's head again, built from scratch.
func (r *releases) Rebuild(ctx context.Context, app string, who paas.Identity, out io.Writer) error {
	a, err := r.store.App(app)
	if err != nil {
		return err
	}
	commit, err := r.repos.Head(app, a.Branch())
	if err != nil {
		return err
	}
	if commit == "" {
		return fmt.Errorf("App %s has nothing on its %s branch to build: git push first", app, a.Branch())
	}
	repo := &gitreceive.Push{Repo: r.repos.Path(app)}
	src := deploy.Source{
		Commit: commit,
		Export: func(ctx context.Context, w io.Writer) error { return repo.Archive(ctx, commit, w) },
		// The build and the release say it was a rebuild, not a push.
		Reason: "ps:rebuild",
	}
	landing, err := r.Push(ctx, app, who, src, out)
	if err != nil {
		return err
	}
	// The branch already holds the commit: nothing for git to move.
	return landing.Land(ctx, true, out)
}

func (r *releases) UpdateChecks(app string, fn func(*paas.CheckSettings) error) (*paas.App, error) {
	return r.store.UpdateApp(app, func(a *paas.App) error { return fn(&a.Checks) })
}

// Retire removes what interrupted rollouts left of the app (ps:retire): what
// paasd does for every app when it starts, under the app's deploy lock so
// that a rollout under way is never taken for a leftover.
func (r *releases) Retire(ctx context.Context, app string, out io.Writer) (int, error) {
	removed := 0
	err := r.Locked(ctx, app, out, func() error {
		a, err := r.store.App(app)
		if err != nil {
			return err
		}
		removed, err = r.sched.Retire(ctx, app, a.Current, out)
		return err
	})
	return removed, err
}
