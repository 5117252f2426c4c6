package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/scheduler"
)

// appsRename moves an app to a new name with no downtime: its images are
// copied to the new name's repository, its state (config, releases,
// builds, routing settings, access list) moves in one transaction, its
// repository is renamed, and its current release is rolled out under the
// new name, health-checked, before the old name's tasks are drained and
// removed. Anything failing before the old tasks are touched puts
// everything back: the app keeps serving under its old name.
func (p *Platform) appsRename(ctx context.Context, c *Call) error {
	old, to := c.App.Name, c.Args[0]
	if len(c.Args) > 1 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(c.Args[1]))
	}
	if err := p.checkNewName(to); err != nil {
		return err
	}
	if p.PushLocks != nil {
		unlock, err := p.PushLocks.Lock(ctx, old, func() {
			output.Step(c.Out, "Waiting for a push to %s to finish", old)
		})
		if err != nil {
			return err
		}
		defer unlock()
	}
	return p.Pipeline.Locked(ctx, old, c.Out, func() error {
		app, err := p.Store.App(old)
		if err != nil {
			return err
		}
		output.Step(c.Out, "Renaming %s to %s", old, to)
		moved, err := p.copyImages(ctx, old, to, c.Out)
		if err != nil {
			p.dropCopies(to, c)
			return err
		}
		if _, err := p.Store.RenameApp(old, to, moved.forward); err != nil {
			if errors.Is(err, paas.ErrAppExists) {
				return fmt.Errorf("Name is already taken: %s", to) // the copies stay: the name is another app's now
			}
			p.dropCopies(to, c)
			return err
		}
		undo := func(cause error) error {
			if _, err := p.Store.RenameApp(to, old, moved.back); err != nil {
				return fmt.Errorf("%w; putting %s back failed: %v", cause, old, err)
			}
			p.dropCopies(to, c)
			p.renamed(old, c)
			return fmt.Errorf("%w; %s keeps its name and serves as before", cause, old)
		}
		if err := p.Repos.Rename(old, to); err != nil {
			return undo(fmt.Errorf("rename the repository: %w", err))
		}
		serves := app.Current > 0 && !app.Stopped
		if serves && !c.Has("--skip-deploy") {
			output.Step(c.Out, "Deploying v%d as %s", app.Current, to)
			if err := p.Releases.Restart(ctx, to, c.ID, c.Out); err != nil {
				if rerr := p.Repos.Rename(to, old); rerr != nil {
					return fmt.Errorf("%w; putting the repository back failed: %v", err, rerr)
				}
				return undo(err)
			}
		}
		// From here on the new name serves (or nothing was serving): the
		// old name's route, tasks and images go.
		p.publishRenamed(ctx, old, to, c)
		if serves {
			output.Step(c.Out, "Retiring the tasks of %s", old)
			if err := p.Runtime.Stop(ctx, old, app.DrainTimeout(), c.Out); err != nil {
				output.Warn(c.Err, "drain the tasks of %s: %v", old, err)
			}
		}
		if err := p.Runtime.Remove(ctx, old); err != nil {
			output.Warn(c.Err, "remove the services of %s: %v", old, err)
		}
		if err := p.Images.DeleteApp(old); err != nil {
			output.Warn(c.Err, "remove the images of %s: %v", old, err)
		}
		if serves && c.Has("--skip-deploy") {
			if _, err := p.Store.UpdateApp(to, func(a *paas.App) error { a.Stopped = true; return nil }); err != nil {
				return err
			}
			output.Step(c.Out, "%s is stopped: ps:start %s runs it again", to, to)
		}
		p.renamed(to, c)
		url, err := p.appURL(to)
		if err != nil {
			return err
		}
		output.Step(c.Out, "Renamed %s to %s: %s", old, to, url)
		output.Detail(c.Out, "git remote set-url paas <host>:%s", to)
		return nil
	})
}

// dropCopies removes the images a rename copied to a name it then did not
// take.
func (p *Platform) dropCopies(to string, c *Call) {
	if err := p.Images.DeleteApp(to); err != nil {
		output.Warn(c.Err, "remove the copies of the images in %s: %v", to, err)
	}
}

// renamed marks app's rename complete (store.RenameApp set RenamedFrom).
func (p *Platform) renamed(app string, c *Call) {
	if _, err := p.Store.UpdateApp(app, func(a *paas.App) error { a.RenamedFrom = ""; return nil }); err != nil {
		output.Warn(c.Err, "record the rename of %s as complete: %v", app, err)
	}
}

// FinishRenames completes the renames a stopped or killed paasd left half
// done (an app whose RenamedFrom is set): the repository is moved if it was
// not, the app is rolled out under its name if it serves nowhere, and the
// old name's route, tasks and images are removed. Run at start, before
// anything else can use the apps.
func (p *Platform) FinishRenames(ctx context.Context, out io.Writer) error {
	apps, err := p.Store.Apps()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range apps {
		if a.RenamedFrom == "" {
			continue
		}
		err := p.Pipeline.Locked(ctx, a.Name, out, func() error { return p.finishRename(ctx, a.RenamedFrom, a.Name, out) })
		if err != nil {
			errs = append(errs, fmt.Errorf("finish the rename of %s to %s: %w", a.RenamedFrom, a.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Platform) finishRename(ctx context.Context, old, to string, out io.Writer) error {
	c := &Call{ID: paas.Identity{Name: "paasd"}, Flags: map[string]string{}, Out: out, Err: out}
	if err := p.Repos.Rename(old, to); err != nil {
		return fmt.Errorf("move the repository: %w", err)
	}
	app, err := p.Store.App(to)
	if err != nil {
		return err
	}
	if app.Current > 0 && !app.Stopped {
		procs, err := p.Runtime.Status(ctx, to)
		if err != nil {
			return err
		}
		running := slices.ContainsFunc(procs, func(s scheduler.ProcessStatus) bool { return s.Process == paas.WebProcess && s.Running > 0 })
		if !running {
			output.Step(out, "Deploying v%d as %s", app.Current, to)
			if err := p.Releases.Restart(ctx, to, c.ID, out); err != nil {
				return err // the old name keeps serving; tried again at the next start
			}
		}
	}
	if _, err := p.Store.App(old); err == nil {
		// The old name is an app again: what runs under it is its own.
		p.renamed(to, c)
		return nil
	} else if !errors.Is(err, paas.ErrAppNotFound) {
		return err
	}
	p.publishRenamed(ctx, old, to, c)
	if err := p.Runtime.Stop(ctx, old, app.DrainTimeout(), out); err != nil {
		return err
	}
	if err := p.Runtime.Remove(ctx, old); err != nil {
		return err
	}
	if err := p.Images.DeleteApp(old); err != nil {
		return err
	}
	p.renamed(to, c)
	return nil
}

// checkNewName refuses a name apps:rename or apps:clone cannot take: an
// invalid one, or one an app has. A name taken by an app the caller cannot
// see is reported the same way (as apps:create does).
func (p *Platform) checkNewName(to string) error {
	if err := paas.ValidateAppName(to); err != nil {
		return err
	}
	if _, err := p.Store.App(to); err == nil {
		return fmt.Errorf("Name is already taken: %s", to)
	} else if !errors.Is(err, paas.ErrAppNotFound) {
		return err
	}
	return nil
}

// publishRenamed hands the routers the new name's settings (its domains,
// certificates, port map) and then drops the old name's: a custom domain is
// served by one name or the other all along.
func (p *Platform) publishRenamed(ctx context.Context, old, to string, c *Call) {
	if p.Routing == nil {
		return
	}
	if err := p.Routing.Publish(ctx, to); err != nil {
		output.Warn(c.Err, "publish the routing of %s: %v", to, err)
	}
	if err := p.Routing.Forget(ctx, old); err != nil {
		output.Warn(c.Err, "remove the routing of %s: %v", old, err)
	}
}

// movedImages maps an app's release images to their copies under a new
// name, both ways.
type movedImages struct{ to, from map[string]paas.Image } // by digest

func (m movedImages) forward(img paas.Image) paas.Image {
	if c, ok := m.to[img.Digest]; ok {
		return c
	}
	return img
}

func (m movedImages) back(img paas.Image) paas.Image {
	if c, ok := m.from[img.Digest]; ok {
		return c
	}
	return img
}

// copyImages copies the images of app's releases to the repository of the
// name to. The current release's image must copy; an older one the
// registry no longer has (pruned) is left as it is, and rolling back to it
// fails as it did before.
func (p *Platform) copyImages(ctx context.Context, app, to string, out io.Writer) (movedImages, error) {
	m := movedImages{to: map[string]paas.Image{}, from: map[string]paas.Image{}}
	rels, err := p.Store.Releases(app)
	if err != nil {
		return m, err
	}
	a, err := p.Store.App(app)
	if err != nil {
		return m, err
	}
	if len(rels) > 0 {
		output.Step(out, "Copying the images of %s to %s", app, to)
	}
	for _, r := range rels {
		if _, done := m.to[r.Image.Digest]; done || r.Image.Digest == "" {
			continue
		}
		img, err := p.Images.Copy(ctx, r.Image, to, fmt.Sprintf("v%d", r.Version))
		if err != nil {
			if r.Version == a.Current {
				return m, fmt.Errorf("copy the image of v%d: %w; nothing was changed", r.Version, err)
			}
			continue
		}
		m.to[r.Image.Digest], m.from[r.Image.Digest] = img, r.Image
	}
	return m, nil
}

// appsClone makes a new app, owned by the caller, from an app: its
// repository, config and settings (not its domains, certificates or access
// list), and, when the app has a release, a new release of the same image
// and process types with the clone's config, health-checked like a push.
// A failure removes the clone again.
func (p *Platform) appsClone(ctx context.Context, c *Call) error {
	from, to := c.App, c.Args[0]
	if len(c.Args) > 1 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(c.Args[1]))
	}
	if err := p.checkNewName(to); err != nil {
		if c.Has("--ignore-existing") && paas.ValidateAppName(to) == nil {
			output.Warn(c.Err, "Name is already taken: %s; nothing was cloned", to)
			return &exitError{code: ExitOK} // success, but nothing for post-app-clone
		}
		return err
	}
	output.Step(c.Out, "Cloning %s to %s", from.Name, to)
	if _, err := p.CreateApp(c.ID, to, c.Out); err != nil {
		return err
	}
	fail := func(cause error) error {
		p.removeClone(ctx, to, c)
		return fmt.Errorf("%w; the clone %s was removed", cause, to)
	}
	_, err := p.Store.UpdateApp(to, func(a *paas.App) error {
		a.Config = maps.Clone(from.Config)
		a.DeployBranch, a.Checks, a.Build = from.DeployBranch, from.Checks, from.Build
		a.Checks.Props = maps.Clone(from.Checks.Props)
		a.Formation = maps.Clone(from.Formation)
		a.Resources = from.Resources.Clone() // as Dokku's resource plugin does on clone
		// network:set's networks, as Dokku copies an app's properties; the
		// clone gets a network of its own at its first rollout, and no
		// database's network until one is linked to it.
		a.Network = from.Network.Clone()
		a.Network.Own, a.Network.Linked = "", nil
		a.DeploySource, a.DeploySourceMetadata = from.DeploySource, from.DeploySourceMetadata
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if p.RoutingStore != nil {
		r, err := p.RoutingStore.Routing(from.Name)
		if err != nil {
			return fail(err)
		}
		// Dokku's rules: no custom domains, no certificates, no https:443 mapping.
		ports := slices.DeleteFunc(slices.Clone(r.Ports), func(m paas.PortMap) bool { return m.Scheme == "https" && m.HostPort == 443 })
		if len(ports) > 0 || r.MaxBodyBytes != 0 || r.ReadTimeout != 0 {
			_, err := p.RoutingStore.UpdateRouting(to, func(n *paas.Routing) error {
				n.Ports, n.MaxBodyBytes, n.ReadTimeout = ports, r.MaxBodyBytes, r.ReadTimeout
				return nil
			})
			if err != nil {
				return fail(err)
			}
			if err := p.Routing.Publish(ctx, to); err != nil {
				return fail(err)
			}
		}
	}
	if err := p.Repos.CopyRefs(from.Name, to); err != nil {
		return fail(fmt.Errorf("copy the repository: %w", err))
	}
	if from.Current > 0 && !c.Has("--skip-deploy") {
		rels, err := p.Store.Releases(from.Name)
		if err != nil {
			return fail(err)
		}
		i := slices.IndexFunc(rels, func(r *paas.Release) bool { return r.Version == from.Current })
		if i < 0 {
			return fail(fmt.Errorf("release v%d of %s is missing", from.Current, from.Name))
		}
		cur := rels[i]
		img, err := p.Images.Copy(ctx, cur.Image, to, "v1-clone")
		if err != nil {
			return fail(fmt.Errorf("copy the image of %s v%d: %w", from.Name, cur.Version, err))
		}
		if err := p.Releases.DeployFrom(ctx, to, c.ID, cur, img, fmt.Sprintf("apps:clone %s v%d", from.Name, cur.Version), c.Out); err != nil {
			return fail(err)
		}
	}
	output.Step(c.Out, "Cloned %s to %s", from.Name, to)
	return nil
}

// removeClone takes a clone that failed away again.
func (p *Platform) removeClone(ctx context.Context, app string, c *Call) {
	ctx = context.WithoutCancel(ctx)
	steps := []struct {
		what string
		do   func() error
	}{
		{"services", func() error { return p.Runtime.Remove(ctx, app) }},
		{"record", func() error { return p.Store.DeleteApp(app) }},
		{"repository", func() error { return p.Repos.Remove(app) }},
		{"images", func() error { return p.Images.DeleteApp(app) }},
	}
	if p.Routing != nil {
		steps = append(steps, struct {
			what string
			do   func() error
		}{"routing", func() error { return p.Routing.Forget(ctx, app) }})
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			output.Warn(c.Err, "remove the clone's %s: %v", s.what, err)
		}
	}
}
