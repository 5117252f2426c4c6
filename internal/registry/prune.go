package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// repository returns the storage's view of repository name.
func (r *Registry) repository(ctx context.Context, name string) (distribution.Repository, error) {
	named, err := reference.WithName(name)
	if err != nil {
		return nil, fmt.Errorf("invalid repository name %q: %w", name, err)
	}
	return r.ns.Repository(ctx, named)
}

// Prune keeps only the manifests keep (digests) of repository name, with the
// manifests a kept index lists, and deletes the others and every tag
// pointing elsewhere; Run then collects the blobs nothing references any
// more. A digest of keep the repository does not hold is ignored. Pushes to
// name must not run at the same time (paasd prunes an app's images under the
// app's deploy lock); other repositories may.
func (r *Registry) Prune(ctx context.Context, name string, keep []string) (removed int, err error) {
	keepSet := map[digest.Digest]bool{}
	for _, k := range keep {
		d, err := digest.Parse(k)
		if err != nil {
			return 0, fmt.Errorf("prune %s: invalid digest %q", name, k)
		}
		keepSet[d] = true
	}
	repo, err := r.repository(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", name, err)
	}
	if err := r.gate.enter(ctx); err != nil {
		return 0, err
	}
	defer r.gate.leave()
	manifests, err := repo.Manifests(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", name, err)
	}
	// The children of a kept index are kept too.
	for _, d := range keep {
		if err := keepChildren(ctx, manifests, digest.Digest(d), keepSet, 0); err != nil {
			return 0, fmt.Errorf("prune %s: %w", name, err)
		}
	}

	tags := repo.Tags(ctx)
	all, err := tags.All(ctx)
	var unknown distribution.ErrRepositoryUnknown
	if err != nil && !errors.As(err, &unknown) {
		return 0, fmt.Errorf("prune %s: list tags: %w", name, err)
	}
	for _, tag := range all {
		desc, err := tags.Get(ctx, tag)
		if err == nil && keepSet[desc.Digest] {
			continue
		}
		if err := tags.Untag(ctx, tag); err != nil {
			return 0, fmt.Errorf("prune %s: untag %s: %w", name, tag, err)
		}
	}

	var drop []digest.Digest
	err = manifests.(distribution.ManifestEnumerator).Enumerate(ctx, func(d digest.Digest) error {
		if !keepSet[d] {
			drop = append(drop, d)
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return 0, fmt.Errorf("prune %s: list manifests: %w", name, err)
	}
	for _, d := range drop {
		if err := manifests.Delete(ctx, d); err != nil {
			return removed, fmt.Errorf("prune %s: delete manifest %s: %w", name, d, err)
		}
		removed++
	}
	if removed > 0 {
		r.log.Info("repository pruned", "repository", name, "manifests_removed", removed, "manifests_kept", len(keepSet))
		r.collectLater()
	}
	return removed, nil
}

// keepChildren adds to keep the manifests the index d lists, recursively
// (an index of indexes is as deep as it goes in practice).
func keepChildren(ctx context.Context, manifests distribution.ManifestService, d digest.Digest, keep map[digest.Digest]bool, depth int) error {
	if depth > 2 {
		return nil
	}
	if ok, err := manifests.Exists(ctx, d); err != nil || !ok {
		return err
	}
	m, err := manifests.Get(ctx, d)
	if err != nil {
		return fmt.Errorf("read manifest %s: %w", d, err)
	}
	for _, ref := range m.References() {
		if ok, _ := manifests.Exists(ctx, ref.Digest); !ok || keep[ref.Digest] {
			continue
		}
		keep[ref.Digest] = true
		if err := keepChildren(ctx, manifests, ref.Digest, keep, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// DeleteRepository removes the repository's tags, manifests, blob links and
// uploads in progress; Run then collects the blobs no other repository
// references. A repository nested under it (name/x) stays. Deleting a
// repository that does not exist is not an error.
func (r *Registry) DeleteRepository(ctx context.Context, name string) error {
	if _, err := reference.WithName(name); err != nil {
		return fmt.Errorf("delete repository %q: invalid name", name)
	}
	if err := r.gate.enter(ctx); err != nil {
		return err
	}
	defer r.gate.leave()
	if err := storage.NewVacuum(ctx, r.driver).RemoveRepository(name); err != nil {
		return fmt.Errorf("delete repository %s: %w", name, err)
	}
	// Its directory goes too when no nested repository is left in it (its
	// parent stays: a push may be creating a sibling).
	dir := path.Join(repositoriesRoot, name)
	if children, err := r.driver.List(ctx, dir); err == nil && len(children) == 0 {
		if err := r.driver.Delete(ctx, dir); err != nil && !isPathNotFound(err) {
			return fmt.Errorf("delete repository %s: %w", name, err)
		}
	}
	r.log.Info("repository deleted", "repository", name)
	r.collectLater()
	return nil
}

// repositoriesRoot is where Distribution's storage keeps repositories.
const repositoriesRoot = "/docker/registry/v2/repositories"

func isPathNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

func (r *Registry) collectLater() {
	select {
	case r.garbage <- struct{}{}:
	default:
	}
}

// Run collects the garbage Prune and DeleteRepository leave, each time once
// the registry has been quiet for Options.Quiet, until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.garbage:
		}
		if err := r.Collect(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("registry garbage collection failed", "err", err)
		}
	}
}

// Collect waits until the registry has served no request for Options.Quiet,
// then removes the blobs (and blob links) no manifest references, with
// Distribution's mark and sweep. Requests that arrive meanwhile wait for it.
func (r *Registry) Collect(ctx context.Context) error {
	if err := r.gate.close(ctx, r.quiet); err != nil {
		return err
	}
	defer r.gate.open()
	start := time.Now()
	if err := storage.MarkAndSweep(ctx, r.driver, r.ns, storage.GCOpts{Quiet: true}); err != nil {
		return fmt.Errorf("collect garbage: %w", err)
	}
	r.log.Info("registry garbage collected", "took", time.Since(start).Round(time.Millisecond))
	return nil
}
