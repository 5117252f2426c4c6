package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Prune keeps only the manifests keep (digests) of repository name, with
// what they reference, and deletes the rest: other tags, other manifest
// links, layer links no kept manifest uses, and then every blob no
// repository links any more. A digest of keep the repository does not hold
// is ignored. Pushes to name must not run at the same time (paasd prunes an
// app's images under the app's deploy lock); other repositories may.
func (r *Registry) Prune(name string, keep []string) (removed int, err error) {
	if !validName(name) {
		return 0, fmt.Errorf("prune repository %q: invalid name", name)
	}
	r.repoMu.Lock()
	defer r.repoMu.Unlock()
	if !r.repoExists(name) {
		return 0, nil
	}
	manifests := map[string]bool{}
	layers := map[string]bool{}
	var walk func(digest string, depth int) error
	walk = func(digest string, depth int) error {
		if manifests[digest] || depth > 2 {
			return nil
		}
		if _, err := os.Stat(r.manifestLink(name, digest)); err != nil {
			return nil // not held: nothing to keep
		}
		manifests[digest] = true
		body, err := os.ReadFile(r.blobPath(digest))
		if err != nil {
			return fmt.Errorf("read manifest %s: %w", digest, err)
		}
		var m manifest
		if err := json.Unmarshal(body, &m); err != nil {
			return fmt.Errorf("parse manifest %s: %w", digest, err)
		}
		if m.Config != nil {
			layers[m.Config.Digest] = true
		}
		for _, l := range m.Layers {
			layers[l.Digest] = true
		}
		for _, sub := range m.Manifests {
			if err := walk(sub.Digest, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range keep {
		if !validDigest(d) {
			return 0, fmt.Errorf("prune %s: invalid digest %q", name, d)
		}
		if err := walk(d, 0); err != nil {
			return 0, fmt.Errorf("prune %s: %w", name, err)
		}
	}

	dir := r.repoDir(name)
	drop := func(sub string, keepEntry func(entry string) bool) error {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if keepEntry(e.Name()) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, sub, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if sub == "_manifests" {
				removed++
			}
		}
		return syncDir(filepath.Join(dir, sub))
	}
	err = errors.Join(
		drop("_tags", func(tag string) bool {
			b, err := os.ReadFile(r.tagPath(name, tag))
			return err == nil && manifests[strings.TrimSpace(string(b))]
		}),
		drop("_manifests", func(hex string) bool { return manifests["sha256:"+hex] }),
		drop("_layers", func(hex string) bool { return layers["sha256:"+hex] }),
	)
	if err != nil {
		return removed, fmt.Errorf("prune %s: %w", name, err)
	}
	if err := r.removeUnlinkedBlobs(); err != nil {
		return removed, fmt.Errorf("prune %s: %w", name, err)
	}
	if removed > 0 {
		r.log.Info("repository pruned", "repository", name, "manifests_removed", removed, "manifests_kept", len(manifests))
	}
	return removed, nil
}
