package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"paas/internal/paas"
)

// imageStore is the part of the Docker client localImages uses.
type imageStore interface {
	ImageList(ctx context.Context, options image.ListOptions) ([]image.Summary, error)
	ImageRemove(ctx context.Context, ref string, options image.RemoveOptions) ([]image.DeleteResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerRemove(ctx context.Context, id string, options container.RemoveOptions) error
}

var _ imageStore = (*client.Client)(nil)

// localImages drops an app's images from this node's Docker image store:
// those a Dockerfile build tagged there, and those Swarm pulled from the
// registry to run the app's tasks (buildpacks and git:from-image images
// included), all named after the app's repository in the registry. The
// registry holds the images; these are copies that nothing else removes.
type localImages struct {
	docker       imageStore
	repoPrefix   string // the installation's registry prefix (paas.ImageRegistry.Prefix)
	installation string
	log          *slog.Logger
}

// Prune removes the app's local images but those whose registry digest is
// in keep (all of them when keep is empty). An image shared with another
// app (the same build) loses only this app's names. The app's stopped
// containers of a removed image go first: Swarm keeps the exited
// containers of a service's past tasks (its task history), which would
// hold an old release's image as long as the service lives. An image a
// running container uses stays (it is tried again at the next prune), and
// so does one the daemon fails to remove: that is logged, never an error
// for the deploy or destroy that asked.
func (l *localImages) Prune(ctx context.Context, app string, keep []string) (removed int, err error) {
	repo := l.repoPrefix + "/" + app
	imgs, err := l.docker.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
	if err != nil {
		return 0, fmt.Errorf("list images of %s: %w", app, err)
	}
	kept := map[string]bool{}
	for _, d := range keep {
		kept[d] = true
	}
	var errs []error
	var later []staleRef
	for _, img := range imgs {
		if keepImage(img, repo, kept) {
			continue
		}
		if err := l.removeStopped(ctx, app, img.ID); err != nil {
			errs = append(errs, err)
		}
		for _, ref := range refsIn(img, repo) {
			if _, err := l.docker.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
				errs = append(errs, err)
				later = append(later, staleRef{ref: ref, id: img.ID})
				continue
			}
			removed++
		}
	}
	if len(errs) > 0 {
		l.log.Warn("some local images stay for now; trying again shortly", "app", app, "err", errors.Join(errs...))
	}
	if len(later) > 0 {
		// A container of a service just removed (the release retired, or
		// the app destroyed) holds its image until Docker has removed it,
		// which takes a moment: those names are removed once it is gone.
		go l.removeLater(app, later)
	}
	return removed, nil
}

// staleRef is an image name Prune decided to remove but could not yet.
type staleRef struct{ ref, id string }

// retryDelays are the waits before each new try of removeLater.
var retryDelays = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second}

// removeLater tries again to remove refs, as their containers go.
func (l *localImages) removeLater(app string, refs []staleRef) {
	for _, d := range retryDelays {
		time.Sleep(d)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var left []staleRef
		for _, r := range refs {
			_ = l.removeStopped(ctx, app, r.id)
			if _, err := l.docker.ImageRemove(ctx, r.ref, image.RemoveOptions{PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
				left = append(left, r)
			}
		}
		cancel()
		if refs = left; len(refs) == 0 {
			return
		}
	}
	l.log.Warn("local images stay; they go at the app's next prune", "app", app, "count", len(refs))
}

// removeStopped removes the app's containers of image id that have stopped.
func (l *localImages) removeStopped(ctx context.Context, app, id string) error {
	cs, err := l.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("ancestor", id),
		filters.Arg("label", paas.LabelInstallation+"="+l.installation),
		filters.Arg("label", paas.LabelApp+"="+app),
	)})
	if err != nil {
		return fmt.Errorf("list containers of image %s: %w", id, err)
	}
	for _, c := range cs {
		if c.State != container.StateExited && c.State != container.StateDead {
			continue
		}
		if err := l.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil && !client.IsErrNotFound(err) {
			return fmt.Errorf("remove stopped container %s: %w", c.ID, err)
		}
	}
	return nil
}

// keepImage reports whether img is one of the kept releases' images: by
// the registry digest Docker recorded when it pushed or pulled it.
func keepImage(img image.Summary, repo string, kept map[string]bool) bool {
	for _, rd := range img.RepoDigests {
		name, digest, ok := strings.Cut(rd, "@")
		if ok && name == repo && kept[digest] {
			return true
		}
	}
	return false
}

// refsIn returns the names img has in repo: repo:tag and repo@digest.
func refsIn(img image.Summary, repo string) []string {
	var refs []string
	for _, r := range append(append([]string(nil), img.RepoTags...), img.RepoDigests...) {
		if name, _, ok := strings.Cut(r, "@"); ok && name == repo {
			refs = append(refs, r)
		} else if i := strings.LastIndex(r, ":"); i > 0 && r[:i] == repo {
			refs = append(refs, r)
		}
	}
	return refs
}

// removeLeftoverBuilds empties the build root: at start nothing builds, so
// whatever is there was left by a build paasd was killed during. Called
// before anything can start a build.
func removeLeftoverBuilds(buildRoot string, log *slog.Logger) error {
	entries, err := os.ReadDir(buildRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read build dir: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(buildRoot, e.Name())); err != nil {
			return fmt.Errorf("remove leftover build %s: %w", e.Name(), err)
		}
	}
	if len(entries) > 0 {
		log.Info("removed the build directories of interrupted builds", "count", len(entries))
	}
	return nil
}
