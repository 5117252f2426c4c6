package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"paas/gitreceive"
	"paas/internal/deploy"
	"paas/internal/output"
	"paas/internal/paas"
	"paas/plugins"
)

// pushes decides what a received push means: which update deploys, which are
// only stored. It adapts gitreceive's Push to the pipeline's Source, and
// records each push in the audit log once its outcome is known: after git
// has applied, or refused, its ref updates.
type pushes struct {
	pipeline *deploy.Pipeline
	store    interface {
		App(string) (*paas.App, error)
	}
	audit    *auditLog
	triggers *plugins.Registry

	// outcomes holds, by push, what pre-receive decided, until PushDone.
	outcomes sync.Map // *gitreceive.Push -> *pushOutcome
}

// pushOutcome is what pre-receive made of a push.
type pushOutcome struct {
	err     error                // the hook's verdict
	deploy  gitreceive.RefUpdate // the update that deployed, if any
	landing *deploy.Landing      // the deploy waiting for git, when it succeeded
}

var _ gitreceive.PushHandler = (*pushes)(nil)

// HandlePush fires user-auth (USER git-receive-pack APP), then deploys the
// update to the deploy branch. A failing plugin or deploy rejects the push.
func (h *pushes) HandlePush(ctx context.Context, p *gitreceive.Push, out io.Writer) error {
	o := &pushOutcome{}
	h.outcomes.Store(p, o)
	ctx = plugins.WithUser(ctx, p.Identity)
	if err := h.triggers.Trigger(ctx, plugins.TriggerUserAuth, []string{p.Identity.Name, "git-receive-pack", p.App}, out); err != nil {
		o.err = fmt.Errorf("permission denied: %w", err)
		return o.err
	}
	o.err = h.handlePush(ctx, p, o, out)
	return o.err
}

// PushDone closes the push's deploy with whether git moved the deploy branch
// (a deploy git then refused is rolled back), and records the push and its
// deploy as they ended.
func (h *pushes) PushDone(ctx context.Context, p *gitreceive.Push, out io.Writer) {
	v, ok := h.outcomes.LoadAndDelete(p)
	if !ok {
		if p.ExitCode != 0 {
			// The hook never ran: git refused the push before any ref
			// update (a malformed or too large pack, a client that left).
			h.audit.recordPush(p.Identity, "push", p.App, fmt.Errorf("git-receive-pack exited with %d before any ref update", p.ExitCode), "")
		}
		return
	}
	o := v.(*pushOutcome)
	err := o.err
	if o.landing != nil {
		moved := p.Landed(o.deploy)
		if !moved {
			output.Warn(out, "git did not update %s: taking the deploy of %s back", o.deploy.Ref, short(o.deploy.New))
		}
		if lerr := o.landing.Land(ctx, moved, out); lerr != nil {
			output.Warn(out, "%v", lerr)
			err = lerr
		}
	}
	var refs []string
	for _, u := range p.Updates {
		refs = append(refs, u.Ref)
		if err == nil && !p.Landed(u) {
			err = fmt.Errorf("git did not update %s", u.Ref)
		}
	}
	h.audit.recordPush(p.Identity, "push", p.App, err, strings.Join(refs, " "))
	if o.deploy != (gitreceive.RefUpdate{}) {
		h.audit.recordPush(p.Identity, "deploy", p.App, err, "commit "+o.deploy.New)
	}
}

func short(sha string) string { return sha[:min(7, len(sha))] }

func (h *pushes) handlePush(ctx context.Context, p *gitreceive.Push, o *pushOutcome, out io.Writer) error {
	app, err := h.store.App(p.App)
	if err != nil {
		return err
	}
	deployUpdate, err := selectDeploy(app.Branch(), p.Updates)
	if err != nil {
		return err
	}
	if app.Locked && deployUpdate != (gitreceive.RefUpdate{}) {
		return fmt.Errorf("%w (apps:unlock %s); nothing was stored", paas.ErrAppLocked, app.Name)
	}
	for _, u := range p.Updates {
		if u == deployUpdate {
			continue
		}
		switch {
		case u.Branch() == "":
			output.Step(out, "%s stored; only pushes to %s deploy", u.Ref, app.Branch())
		case u.Deletes():
			output.Step(out, "Branch %s deleted; no deploy", u.Branch())
		default:
			output.Step(out, "Branch %s stored; only pushes to %s deploy, so no deploy happened", u.Branch(), app.Branch())
		}
	}
	if deployUpdate == (gitreceive.RefUpdate{}) {
		return nil
	}
	o.deploy = deployUpdate
	src := deploy.Source{
		Commit: deployUpdate.New,
		Export: func(ctx context.Context, w io.Writer) error { return p.Archive(ctx, deployUpdate.New, w) },
	}
	o.landing, err = h.pipeline.Push(ctx, p.App, p.Identity, src, out)
	return err
}

// selectDeploy returns the update that deploys: the one to the deploy branch,
// or to master when the deploy branch is main and master is the only branch
// pushed. Deleting the deploy branch is refused.
func selectDeploy(branch string, updates []gitreceive.RefUpdate) (gitreceive.RefUpdate, error) {
	var branches []gitreceive.RefUpdate
	for _, u := range updates {
		if u.Branch() == "" {
			continue
		}
		if u.Branch() == branch {
			if u.Deletes() {
				return gitreceive.RefUpdate{}, errors.New("refusing to delete the deploy branch " + branch)
			}
			return u, nil
		}
		branches = append(branches, u)
	}
	if branch == "main" && len(branches) == 1 && branches[0].Branch() == "master" && !branches[0].Deletes() {
		return branches[0], nil
	}
	return gitreceive.RefUpdate{}, nil
}
