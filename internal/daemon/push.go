package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"paas/gitreceive"
	"paas/internal/deploy"
	"paas/internal/paas"
)

// pushes decides what a received push means: which update deploys, which are
// only stored. It adapts gitreceive's Push to the pipeline's Source.
type pushes struct {
	pipeline *deploy.Pipeline
	store    interface {
		App(string) (*paas.App, error)
	}
	audit *auditLog
}

var _ gitreceive.PushHandler = (*pushes)(nil)

// HandlePush handles the push and records it, and the deploy it ran, in the audit log.
func (h *pushes) HandlePush(ctx context.Context, p *gitreceive.Push, out io.Writer) error {
	var refs []string
	for _, u := range p.Updates {
		refs = append(refs, u.Ref)
	}
	deployed, err := h.handlePush(ctx, p, out)
	h.audit.recordPush(p.Identity, "push", p.App, err, strings.Join(refs, " "))
	if deployed != "" {
		h.audit.recordPush(p.Identity, "deploy", p.App, err, "commit "+deployed)
	}
	return err
}

func (h *pushes) handlePush(ctx context.Context, p *gitreceive.Push, out io.Writer) (deployed string, err error) {
	app, err := h.store.App(p.App)
	if err != nil {
		return "", err
	}
	deployUpdate, err := selectDeploy(app.Branch(), p.Updates)
	if err != nil {
		return "", err
	}
	for _, u := range p.Updates {
		if u == deployUpdate {
			continue
		}
		switch {
		case u.Branch() == "":
			fmt.Fprintf(out, "-----> %s stored; only pushes to %s deploy\n", u.Ref, app.Branch())
		case u.Deletes():
			fmt.Fprintf(out, "-----> Branch %s deleted; no deploy\n", u.Branch())
		default:
			fmt.Fprintf(out, "-----> Branch %s stored; only pushes to %s deploy, so no deploy happened\n", u.Branch(), app.Branch())
		}
	}
	if deployUpdate == (gitreceive.RefUpdate{}) {
		return "", nil
	}
	src := deploy.Source{
		Commit: deployUpdate.New,
		Export: func(ctx context.Context, w io.Writer) error { return p.Archive(ctx, deployUpdate.New, w) },
	}
	return deployUpdate.New, h.pipeline.Push(ctx, p.App, p.Identity, src, out)
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
