package registry

import (
	"net/http"
	"path/filepath"
	"testing"
)

func TestPrune(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	base := []byte("base layer every release shares")
	bd := tr.pushBlob(t, "paas/hello", base)
	tr.pushBlob(t, "paas/other", base)
	var digests []string
	for i, content := range []string{"v1", "v2", "v3"} {
		m := tr.pushImage(t, "paas/hello", content)
		tag := []string{"v1-abc", "v2-def", "v3-123"}[i]
		tr.expect(t, http.StatusCreated, "PUT", "/v2/paas/hello/manifests/"+tag, m, "Content-Type", mediaTypeDockerManifest)
		digests = append(digests, digestOf(m))
	}
	mo := tr.pushImage(t, "paas/other", "other")
	tr.expect(t, http.StatusCreated, "PUT", "/v2/paas/other/manifests/1", mo, "Content-Type", mediaTypeDockerManifest)
	blobs := countFiles(t, filepath.Join(tr.dir, "blobs", "sha256"))

	// keep v2 and v3 (and a digest the repository never had)
	removed, err := tr.Prune("paas/hello", []string{digests[1], digests[2], "sha256:0000000000000000000000000000000000000000000000000000000000000000"})
	if err != nil || removed != 1 {
		t.Fatalf("Prune = %d, %v; want 1 manifest removed", removed, err)
	}
	tr.expect(t, http.StatusNotFound, "GET", "/v2/paas/hello/manifests/"+digests[0], nil)
	tr.expect(t, http.StatusNotFound, "GET", "/v2/paas/hello/manifests/v1-abc", nil)
	for i, tag := range []string{"v2-def", "v3-123"} {
		tr.expect(t, http.StatusOK, "GET", "/v2/paas/hello/manifests/"+tag, nil)
		tr.expect(t, http.StatusOK, "GET", "/v2/paas/hello/manifests/"+digests[i+1], nil)
	}
	// v1's manifest, config and layer are gone; the base layer is kept by
	// the other repository, which is untouched.
	if got := countFiles(t, filepath.Join(tr.dir, "blobs", "sha256")); got != blobs-3 {
		t.Errorf("blobs on disk: %d, want %d", got, blobs-3)
	}
	tr.expect(t, http.StatusNotFound, "HEAD", "/v2/paas/hello/blobs/"+bd, nil)
	tr.expect(t, http.StatusOK, "HEAD", "/v2/paas/other/blobs/"+bd, nil)
	tr.expect(t, http.StatusOK, "GET", "/v2/paas/other/manifests/1", nil)

	// Pruning again changes nothing; a missing repository is not an error.
	if removed, err := tr.Prune("paas/hello", digests[1:]); err != nil || removed != 0 {
		t.Errorf("second Prune = %d, %v", removed, err)
	}
	if _, err := tr.Prune("paas/never", nil); err != nil {
		t.Errorf("Prune of a missing repository: %v", err)
	}
	for _, bad := range []struct{ name, digest string }{{"../x", digests[1]}, {"paas/hello", "sha256:zz"}} {
		if _, err := tr.Prune(bad.name, []string{bad.digest}); err == nil {
			t.Errorf("Prune(%q, %q) succeeded", bad.name, bad.digest)
		}
	}
	// Keeping nothing empties the repository's content.
	if _, err := tr.Prune("paas/hello", nil); err != nil {
		t.Fatal(err)
	}
	tr.expect(t, http.StatusNotFound, "GET", "/v2/paas/hello/manifests/v3-123", nil)
}
