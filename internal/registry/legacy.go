package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The layout of the registry paasd embedded before Distribution, under the
// same directory: blobs/sha256/HEX (every blob and manifest),
// repositories/NAME/_layers/HEX (empty: the blob belongs to NAME),
// _manifests/HEX (the manifest's media type), _tags/TAG ("sha256:HEX"),
// and tmp/ and uploads/.
var legacyDirs = []string{"blobs", "repositories", "tmp", "uploads"}

// ImportLegacy moves the images a previous paasd's own registry left under
// dir (Options.Dir) into this one, so the releases recorded before an
// upgrade still pull and roll back, then removes that layout. It does
// nothing when there is none. On an error it keeps the old layout, for the
// next start to try again.
func (r *Registry) ImportLegacy(ctx context.Context, dir string) (repos int, err error) {
	root := filepath.Join(dir, "repositories")
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		return 0, removeLegacy(dir)
	}
	if err := r.gate.enter(ctx); err != nil {
		return 0, err
	}
	defer r.gate.leave()
	var names []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "_manifests" {
			name, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(name))
			return fs.SkipDir
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "_") {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("import the old registry: %w", err)
	}
	imp := &legacyImport{dir: dir, reg: r, holder: map[digest.Digest]reference.Named{}}
	for _, name := range names {
		if err := imp.repository(ctx, name); err != nil {
			return repos, fmt.Errorf("import the old registry's %s: %w", name, err)
		}
		repos++
	}
	if err := removeLegacy(dir); err != nil {
		return repos, err
	}
	r.log.Info("old registry imported", "repositories", repos)
	return repos, nil
}

func removeLegacy(dir string) error {
	for _, d := range legacyDirs {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return fmt.Errorf("remove the old registry: %w", err)
		}
	}
	return nil
}

type legacyImport struct {
	dir    string
	reg    *Registry
	holder map[digest.Digest]reference.Named // a repository already holding the blob, to mount it from
}

func (l *legacyImport) repository(ctx context.Context, name string) error {
	named, err := reference.WithName(name)
	if err != nil {
		return err
	}
	repo, err := l.reg.ns.Repository(ctx, named)
	if err != nil {
		return err
	}
	repoDir := filepath.Join(l.dir, "repositories", filepath.FromSlash(name))
	layers, err := os.ReadDir(filepath.Join(repoDir, "_layers"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	manifests, err := os.ReadDir(filepath.Join(repoDir, "_manifests"))
	if err != nil {
		return err
	}
	// Blobs first (layers and configs, then the manifests' own), indexes
	// after the manifests they list, tags last.
	for _, e := range layers {
		if err := l.blob(ctx, repo, digest.NewDigestFromEncoded(digest.SHA256, e.Name())); err != nil {
			return err
		}
	}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return err
	}
	var indexes []fs.DirEntry
	for _, e := range manifests {
		mt, err := os.ReadFile(filepath.Join(repoDir, "_manifests", e.Name()))
		if err != nil {
			return err
		}
		if strings.Contains(string(mt), "index") || strings.Contains(string(mt), "list") {
			indexes = append(indexes, e)
			continue
		}
		if err := l.manifest(ctx, ms, string(mt), e.Name()); err != nil {
			return err
		}
	}
	for _, e := range indexes {
		mt, err := os.ReadFile(filepath.Join(repoDir, "_manifests", e.Name()))
		if err != nil {
			return err
		}
		if err := l.manifest(ctx, ms, string(mt), e.Name()); err != nil {
			return err
		}
	}
	tags, err := os.ReadDir(filepath.Join(repoDir, "_tags"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range tags {
		b, err := os.ReadFile(filepath.Join(repoDir, "_tags", e.Name()))
		if err != nil {
			return err
		}
		d, err := digest.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("tag %s: %w", e.Name(), err)
		}
		if err := repo.Tags(ctx).Tag(ctx, e.Name(), v1.Descriptor{Digest: d}); err != nil {
			return fmt.Errorf("tag %s: %w", e.Name(), err)
		}
	}
	return nil
}

// blob links d into repo: mounted from a repository that holds it already,
// written from the old layout otherwise.
func (l *legacyImport) blob(ctx context.Context, repo distribution.Repository, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return err
	}
	bs := repo.Blobs(ctx)
	if _, err := bs.Stat(ctx, d); err == nil {
		return nil
	}
	var opts []distribution.BlobCreateOption
	if from, ok := l.holder[d]; ok {
		canonical, err := reference.WithDigest(from, d)
		if err != nil {
			return err
		}
		opts = append(opts, storage.WithMountFrom(canonical))
	}
	w, err := bs.Create(ctx, opts...)
	var mounted distribution.ErrBlobMounted
	if errors.As(err, &mounted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	f, err := os.Open(filepath.Join(l.dir, "blobs", "sha256", d.Encoded()))
	if err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	n, err := io.Copy(w, f)
	if err == nil {
		_, err = w.Commit(ctx, v1.Descriptor{Digest: d, Size: n})
	}
	if err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("blob %s: %w", d, err)
	}
	l.holder[d] = repo.Named()
	return nil
}

func (l *legacyImport) manifest(ctx context.Context, ms distribution.ManifestService, mediaType, hex string) error {
	d := digest.NewDigestFromEncoded(digest.SHA256, hex)
	if err := d.Validate(); err != nil {
		return err
	}
	body, err := os.ReadFile(filepath.Join(l.dir, "blobs", "sha256", hex))
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	m, _, err := distribution.UnmarshalManifest(mediaType, body)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	got, err := ms.Put(ctx, m)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	if got != d {
		return fmt.Errorf("manifest %s stored as %s", d, got)
	}
	return nil
}
