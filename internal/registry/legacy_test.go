package registry

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// writeLegacy writes img as repo:tag in the layout of the registry paasd
// embedded before Distribution.
func writeLegacy(t *testing.T, dir, repo, tag string, img v1.Image) string {
	t.Helper()
	put := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	blob := func(d v1.Hash, content []byte) {
		put(filepath.Join(dir, "blobs", "sha256", d.Hex), string(content))
	}
	repoDir := filepath.Join(dir, "repositories", filepath.FromSlash(repo))
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.RawConfigFile()
	blob(m.Config.Digest, cfg)
	put(filepath.Join(repoDir, "_layers", m.Config.Digest.Hex), "")
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if _, err := io.Copy(&b, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		blob(d, []byte(b.String()))
		put(filepath.Join(repoDir, "_layers", d.Hex), "")
	}
	raw, _ := img.RawManifest()
	d, _ := img.Digest()
	mt, _ := img.MediaType()
	blob(d, raw)
	put(filepath.Join(repoDir, "_manifests", d.Hex), string(mt))
	put(filepath.Join(repoDir, "_tags", tag), d.String())
	return d.String()
}

// TestImportLegacy: the images of the old layout pull from the new registry
// by tag and digest after an import, which removes the old layout.
func TestImportLegacy(t *testing.T) {
	tr := newTestRegistry(t, 0)
	ctx := context.Background()
	if n, err := tr.ImportLegacy(ctx, tr.dir); err != nil || n != 0 {
		t.Fatalf("import of nothing = %d, %v", n, err)
	}
	shared := randomLayer(t)
	a, b := randomImage(t, shared), randomImage(t, shared)
	da := writeLegacy(t, tr.dir, "paas/hello", "v1-abc", a)
	db := writeLegacy(t, tr.dir, "paas/hello/worker", "v1", b)
	// An index listing a, pushed by digest with a tag of its own.
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: a})
	raw, _ := idx.RawManifest()
	id, _ := idx.Digest()
	mt, _ := idx.MediaType()
	os.WriteFile(filepath.Join(tr.dir, "blobs", "sha256", id.Hex), raw, 0o644)
	os.WriteFile(filepath.Join(tr.dir, "repositories", "paas", "hello", "_manifests", id.Hex), []byte(mt), 0o644)
	os.WriteFile(filepath.Join(tr.dir, "repositories", "paas", "hello", "_tags", "multi"), []byte(id.String()), 0o644)
	os.MkdirAll(filepath.Join(tr.dir, "uploads"), 0o755)

	n, err := tr.ImportLegacy(ctx, tr.dir)
	if err != nil || n != 2 {
		t.Fatalf("ImportLegacy = %d, %v; want 2 repositories", n, err)
	}
	for _, ref := range []string{"paas/hello:v1-abc", "paas/hello@" + da, "paas/hello/worker:v1", "paas/hello/worker@" + db} {
		img, err := remote.Image(tr.ref(t, ref), tr.remoteOpts()...)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		ls, _ := img.Layers()
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatalf("pull a layer of %s: %v", ref, err)
			}
			var sb strings.Builder
			if _, err := io.Copy(&sb, rc); err != nil {
				t.Fatalf("pull a layer of %s: %v", ref, err)
			}
			rc.Close()
		}
	}
	if desc, err := remote.Head(tr.ref(t, "paas/hello:multi"), tr.remoteOpts()...); err != nil || desc.Digest != id {
		t.Errorf("the index: %v, %v", desc, err)
	}
	for _, d := range legacyDirs {
		if _, err := os.Stat(filepath.Join(tr.dir, d)); err == nil {
			t.Errorf("old %s left", d)
		}
	}
	// Nothing left to import the next time.
	if n, err := tr.ImportLegacy(ctx, tr.dir); err != nil || n != 0 {
		t.Errorf("second import = %d, %v", n, err)
	}
}

// TestImportLegacyKeepsOnError: a broken old layout stays for the next try.
func TestImportLegacyKeepsOnError(t *testing.T) {
	tr := newTestRegistry(t, 0)
	d := writeLegacy(t, tr.dir, "paas/broken", "v1", randomImage(t))
	os.Remove(filepath.Join(tr.dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
	if _, err := tr.ImportLegacy(context.Background(), tr.dir); err == nil {
		t.Fatal("import of a manifest with no blob succeeded")
	}
	if _, err := os.Stat(filepath.Join(tr.dir, "repositories", "paas", "broken", "_tags", "v1")); err != nil {
		t.Errorf("the old layout was removed after a failed import: %v", err)
	}
}
