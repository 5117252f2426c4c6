package registry

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestPrune(t *testing.T) {
	tr := newTestRegistry(t, time.Millisecond)
	ctx := context.Background()
	base := randomLayer(t)
	var imgs []v1.Image
	var digests []string
	for _, tag := range []string{"v1-abc", "v2-def", "v3-123"} {
		img := randomImage(t, base)
		imgs = append(imgs, img)
		digests = append(digests, tr.push(t, "paas/hello:"+tag, img))
	}
	tr.push(t, "paas/hello:latest", imgs[2])
	other := randomImage(t, base)
	tr.push(t, "paas/other:1", other)
	blobs := tr.blobFiles(t)

	// keep v2 and v3 (and a digest the repository never had)
	removed, err := tr.Prune(ctx, "paas/hello", []string{digests[1], digests[2], "sha256:" + strings.Repeat("0", 64)})
	if err != nil || removed != 1 {
		t.Fatalf("Prune = %d, %v; want 1 manifest removed", removed, err)
	}
	for _, gone := range []string{"paas/hello@" + digests[0], "paas/hello:v1-abc"} {
		if tr.exists(t, gone) {
			t.Errorf("%s still there", gone)
		}
	}
	for _, kept := range []string{"paas/hello:v2-def", "paas/hello:v3-123", "paas/hello:latest", "paas/hello@" + digests[1], "paas/other:1"} {
		if !tr.exists(t, kept) {
			t.Errorf("%s is gone", kept)
		}
	}
	// v1's manifest, config and layer go with the garbage; the base layer
	// is kept, the other repository untouched.
	tr.collect(t)
	if got := tr.blobFiles(t); got != blobs-3 {
		t.Errorf("blobs on disk: %d, want %d", got, blobs-3)
	}
	baseDigest, _ := base.Digest()
	for _, d := range uniqueBlobs(t, imgs[0])[1:] {
		if d != baseDigest && tr.blobExists(t, "paas/hello", d) {
			t.Errorf("blob %s of v1 still served", d)
		}
	}
	for _, repo := range []string{"paas/hello", "paas/other"} {
		if !tr.blobExists(t, repo, baseDigest) {
			t.Errorf("%s lost the base layer", repo)
		}
	}
	if _, err := remote.Image(tr.ref(t, "paas/other:1"), tr.remoteOpts()...); err != nil {
		t.Error(err)
	}

	// Pruning again changes nothing; a missing repository is not an error.
	if removed, err := tr.Prune(ctx, "paas/hello", digests[1:]); err != nil || removed != 0 {
		t.Errorf("second Prune = %d, %v", removed, err)
	}
	if _, err := tr.Prune(ctx, "paas/never", nil); err != nil {
		t.Errorf("Prune of a missing repository: %v", err)
	}
	for _, bad := range []struct{ name, digest string }{{"../x", digests[1]}, {"Paas/Hello", digests[1]}, {"paas/hello", "sha256:zz"}} {
		if _, err := tr.Prune(ctx, bad.name, []string{bad.digest}); err == nil {
			t.Errorf("Prune(%q, %q) succeeded", bad.name, bad.digest)
		}
	}
	// Keeping nothing empties the repository.
	if removed, err := tr.Prune(ctx, "paas/hello", nil); err != nil || removed != 2 {
		t.Fatalf("Prune keeping nothing = %d, %v", removed, err)
	}
	if tr.exists(t, "paas/hello:latest") {
		t.Error("latest still there")
	}
	tr.collect(t)
	if !tr.exists(t, "paas/other:1") || !tr.blobExists(t, "paas/other", baseDigest) {
		t.Error("the other repository lost its image")
	}
}

// TestPruneKeepsIndexChildren: keeping an index keeps the manifests it lists.
func TestPruneKeepsIndexChildren(t *testing.T) {
	tr := newTestRegistry(t, time.Millisecond)
	img := randomImage(t)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	if err := remote.WriteIndex(tr.ref(t, "multi/app:v1"), idx, tr.remoteOpts()...); err != nil {
		t.Fatal(err)
	}
	old := tr.push(t, "multi/app:v0", randomImage(t))
	id, _ := idx.Digest()
	imgDigest, _ := img.Digest()
	removed, err := tr.Prune(context.Background(), "multi/app", []string{id.String()})
	if err != nil || removed != 1 {
		t.Fatalf("Prune = %d, %v; want the one other manifest removed", removed, err)
	}
	tr.collect(t)
	if !tr.exists(t, "multi/app:v1") || !tr.exists(t, "multi/app@"+imgDigest.String()) || tr.exists(t, "multi/app@"+old) {
		t.Error("the index or its child went, or the old image stayed")
	}
	if _, err := remote.Image(tr.ref(t, "multi/app:v1"), tr.remoteOpts()...); err != nil {
		t.Errorf("pull the kept index: %v", err)
	}
}

func TestDeleteRepository(t *testing.T) {
	tr := newTestRegistry(t, time.Millisecond)
	ctx := context.Background()
	shared := randomLayer(t)
	a := randomImage(t, shared)
	tr.push(t, "apps/a:1", a)
	worker := randomImage(t, shared)
	tr.push(t, "apps/a/worker:1", worker)
	pending, _ := tr.status(t, http.MethodPost, "/v2/apps/a/blobs/uploads/", tr.login.User, tr.login.Password, nil)
	if pending != http.StatusAccepted {
		t.Fatalf("start an upload: %d", pending)
	}
	blobs := tr.blobFiles(t)

	if err := tr.DeleteRepository(ctx, "apps/a"); err != nil {
		t.Fatalf("DeleteRepository: %v", err)
	}
	ad, _ := a.Digest()
	for _, gone := range []string{"apps/a:1", "apps/a@" + ad.String()} {
		if tr.exists(t, gone) {
			t.Errorf("%s still there", gone)
		}
	}
	sd, _ := shared.Digest()
	if tr.blobExists(t, "apps/a", sd) {
		t.Error("apps/a still serves the shared layer")
	}
	// The nested repository and the blob it shares are untouched.
	if !tr.exists(t, "apps/a/worker:1") || !tr.blobExists(t, "apps/a/worker", sd) {
		t.Error("apps/a/worker lost its image")
	}
	tr.collect(t)
	// a's manifest, config and own layer are gone from disk.
	if got := tr.blobFiles(t); got != blobs-3 {
		t.Errorf("blobs on disk: %d, want %d", got, blobs-3)
	}
	if _, err := remote.Image(tr.ref(t, "apps/a/worker:1"), tr.remoteOpts()...); err != nil {
		t.Error(err)
	}

	if err := tr.DeleteRepository(ctx, "apps/a/worker"); err != nil {
		t.Fatal(err)
	}
	if err := tr.DeleteRepository(ctx, "apps/never"); err != nil {
		t.Errorf("DeleteRepository of a missing repository: %v", err)
	}
	for _, bad := range []string{"../apps", "", "Apps"} {
		if err := tr.DeleteRepository(ctx, bad); err == nil {
			t.Errorf("DeleteRepository(%q) succeeded", bad)
		}
	}
	tr.collect(t)
	if n := tr.blobFiles(t); n != 0 {
		t.Errorf("%d blobs left after every repository was deleted", n)
	}
	if _, err := os.Stat(filepath.Join(tr.dir, "docker", "registry", "v2", "repositories", "apps", "a", "worker")); err == nil {
		t.Error("the deleted repository's directory is left")
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+tr.host+"/v2/_catalog", nil)
	req.SetBasicAuth(tr.login.User, tr.login.Password)
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != `{"repositories":[]}` {
		t.Errorf("repositories left: %s", body)
	}
}

// TestCollectWaitsForQuiet: a blob uploaded for a manifest that is still to
// come survives a collection asked for meanwhile, because the collection
// waits until no request has come for the quiet period; requests that come
// during a collection wait for its end.
func TestCollectWaitsForQuiet(t *testing.T) {
	quiet := 600 * time.Millisecond
	tr := newTestRegistry(t, quiet)
	ctx := context.Background()
	img := randomImage(t)
	m, _ := img.Manifest()
	layer := mustLayer(t, img)
	// The layer and the config are pushed, the manifest not yet.
	if err := remote.WriteLayer(tr.ref(t, "slow/app:x").Context(), layer, tr.remoteOpts()...); err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.RawConfigFile()
	if err := remote.WriteLayer(tr.ref(t, "slow/app:x").Context(), static.NewLayer(cfg, m.Config.MediaType), tr.remoteOpts()...); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- tr.Collect(ctx) }()
	// The push goes on at a pace faster than the quiet period.
	for range 3 {
		time.Sleep(quiet / 3)
		tr.status(t, http.MethodHead, "/v2/slow/app/blobs/"+m.Config.Digest.String(), tr.login.User, tr.login.Password, nil)
	}
	select {
	case err := <-done:
		t.Fatalf("Collect ran during the push (after %s): %v", time.Since(start), err)
	default:
	}
	tr.push(t, "slow/app:v1", img)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < quiet {
		t.Errorf("Collect returned after %s, before the quiet period", took)
	}
	if _, err := remote.Image(tr.ref(t, "slow/app:v1"), tr.remoteOpts()...); err != nil {
		t.Fatalf("the pushed image lost a blob: %v", err)
	}
	ld, _ := layer.Digest()
	if !tr.blobExists(t, "slow/app", ld) {
		t.Fatal("layer collected")
	}

	// During a collection, a request waits.
	if err := tr.gate.close(ctx, 0); err != nil {
		t.Fatal(err)
	}
	served := make(chan int, 1)
	go func() {
		code, _ := tr.status(t, http.MethodGet, "/v2/", tr.login.User, tr.login.Password, nil)
		served <- code
	}()
	select {
	case code := <-served:
		t.Fatalf("request served (%d) during a collection", code)
	case <-time.After(200 * time.Millisecond):
	}
	tr.gate.open()
	if code := <-served; code != http.StatusOK {
		t.Errorf("request after the collection: %d", code)
	}
}

// TestRunCollectsAfterPrune: the background collector removes what a prune
// left, without being asked more.
func TestRunCollectsAfterPrune(t *testing.T) {
	tr := newTestRegistry(t, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	d1 := tr.push(t, "run/app:v1", randomImage(t))
	d2 := tr.push(t, "run/app:v2", randomImage(t))
	before := tr.blobFiles(t)
	if _, err := tr.Prune(ctx, "run/app", []string{d2}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tr.blobFiles(t) != before-3 {
		if time.Now().After(deadline) {
			t.Fatalf("blobs: %d, want %d after the background collection", tr.blobFiles(t), before-3)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tr.exists(t, "run/app@"+d1) || !tr.exists(t, "run/app:v2") {
		t.Error("wrong image pruned")
	}
}

func mustLayer(t *testing.T, img v1.Image) v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		t.Fatal(err)
	}
	return ls[0]
}

// TestRemote prunes and deletes through the distribution API, as paasd does
// with a registry elsewhere; here a second instance of the embedded one.
func TestRemote(t *testing.T) {
	tr := newTestRegistry(t, time.Millisecond)
	ctx := context.Background()
	var digests []string
	for _, tag := range []string{"v1", "v2", "v3"} {
		digests = append(digests, tr.push(t, "team/paas/web:"+tag, randomImage(t)))
	}
	tr.push(t, "team/paas/web:latest", randomImage(t))
	other := tr.push(t, "team/paas/other:v1", randomImage(t))
	r := &Remote{Auth: tr.auth(), Transport: tr.client.Transport}
	repo := tr.host + "/team/paas/web"

	removed, err := r.Prune(ctx, repo, []string{digests[2], "sha256:" + strings.Repeat("1", 64)})
	if err != nil || removed != 3 {
		t.Fatalf("Prune = %d, %v; want 3 (v1, v2, latest)", removed, err)
	}
	for _, gone := range []string{"team/paas/web:v1", "team/paas/web:v2", "team/paas/web:latest", "team/paas/web@" + digests[0]} {
		if tr.exists(t, gone) {
			t.Errorf("%s still there", gone)
		}
	}
	if !tr.exists(t, "team/paas/web:v3") {
		t.Error("the kept image is gone")
	}
	if removed, err := r.Prune(ctx, repo, digests[2:]); err != nil || removed != 0 {
		t.Errorf("second Prune = %d, %v", removed, err)
	}
	if err := r.DeleteRepository(ctx, repo); err != nil {
		t.Fatal(err)
	}
	if tr.exists(t, "team/paas/web:v3") || !tr.exists(t, "team/paas/other@"+other) {
		t.Error("DeleteRepository deleted the wrong images")
	}
	if err := r.DeleteRepository(ctx, tr.host+"/team/paas/never"); err != nil {
		t.Errorf("DeleteRepository of a missing repository: %v", err)
	}
	// Without the login, nothing is deleted.
	anon := &Remote{Transport: tr.client.Transport}
	if _, err := anon.Prune(ctx, tr.host+"/team/paas/other", nil); err == nil || !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("anonymous Prune: %v, want 401", err)
	}
	if !tr.exists(t, "team/paas/other@"+other) {
		t.Error("an anonymous client deleted an image")
	}
}
