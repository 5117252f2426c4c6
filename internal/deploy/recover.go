package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"paas/internal/paas"
)

// lostLog stands for the log of a deploy whose paasd was killed: the log is
// kept in memory until the deploy ends.
const lostLog = "(the log of this deploy was lost: paasd stopped while it ran)\n"

// Recover settles d, a deploy that a stopped paasd left open, so that the
// records say what happened:
//   - its release never received traffic: it failed (what it started is
//     removed by the scheduler's Reconcile);
//   - its release serves and, for a push, the branch holds its commit (git
//     moved it after the deploy): it succeeded;
//   - its release serves but the branch never moved to its commit (the
//     pusher was told the push failed): the release is rolled back, and the
//     deploy failed.
//
// branchHead returns the commit the app's deploy branch holds. Recover
// returns the deploy as recorded.
func (p *Pipeline) Recover(ctx context.Context, d *paas.Deploy, branchHead func(*paas.App) (string, error), out io.Writer) (*paas.Deploy, error) {
	unlock, err := p.lock(ctx, d.App, out)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec := *d
	rec.FinishedAt = time.Now().UTC()
	if rec.Log == "" {
		rec.Log = lostLog
	}
	rec.State, rec.Error = paas.DeployFailed, "interrupted: paasd stopped before the new release was recorded as serving; the one before it serves"
	app, err := p.store.App(d.App)
	if errors.Is(err, paas.ErrAppNotFound) {
		return &rec, nil // destroyed since; nothing records it any more
	}
	if err != nil {
		return nil, err
	}
	rel, err := p.releaseOf(d)
	if err != nil {
		return nil, err
	}
	if rel != nil {
		rec.Release = rel.Version
		rec.State, rec.Error = paas.DeploySucceeded, ""
		if d.Reason == "push" {
			head, err := branchHead(app)
			if err != nil {
				return nil, fmt.Errorf("read the deploy branch of %s: %w", d.App, err)
			}
			switch {
			case head == d.Commit:
			case app.Current == rel.Version:
				rec.State = paas.DeployFailed
				rec.Error = "interrupted: " + p.unland(ctx, rel, paas.Identity{Name: d.Author}, out).Error()
			default:
				rec.State = paas.DeployFailed
				rec.Error = fmt.Sprintf("interrupted: git did not move the branch to %s; v%d served until v%d replaced it", shortSHA(d.Commit), rel.Version, app.Current)
			}
		}
	}
	if err := p.store.FinishDeploy(&rec); err != nil {
		return nil, fmt.Errorf("record deploy: %w", err)
	}
	p.log.Info("settled an interrupted deploy", "app", rec.App, "deploy", rec.ID, "release", rec.Release, "state", rec.State)
	return &rec, nil
}

// releaseOf returns the release deploy d recorded, nil when it recorded none.
func (p *Pipeline) releaseOf(d *paas.Deploy) (*paas.Release, error) {
	rels, err := p.store.Releases(d.App)
	if err != nil {
		return nil, err
	}
	for _, r := range rels { // newest first: d is among the last few
		if r.Deploy == d.ID {
			return r, nil
		}
		if r.CreatedAt.Before(d.StartedAt) {
			break
		}
	}
	return nil, nil
}
