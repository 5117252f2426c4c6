package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
)

// fakeImageStore holds images by ID; ImageRemove drops a name, and the image
// with its last name, unless a container uses it.
type fakeImageStore struct {
	imgs       map[string]*image.Summary
	containers []container.Summary // of the app under test
	removed    []string
}

func (f *fakeImageStore) inUse(id string) bool {
	for _, c := range f.containers {
		if c.ImageID == id {
			return true
		}
	}
	return false
}

func (f *fakeImageStore) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	if !opts.All || !opts.Filters.ExactMatch("label", "paas.app=hello") || !opts.Filters.ExactMatch("label", "paas.installation=paas") {
		return nil, errors.New("unexpected filters")
	}
	var out []container.Summary
	for _, c := range f.containers {
		if opts.Filters.ExactMatch("ancestor", c.ImageID) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeImageStore) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	f.containers = slices.DeleteFunc(f.containers, func(c container.Summary) bool { return c.ID == id })
	return nil
}

func (f *fakeImageStore) ImageList(_ context.Context, opts image.ListOptions) ([]image.Summary, error) {
	repo := opts.Filters.Get("reference")[0]
	var out []image.Summary
	for _, img := range f.imgs {
		if len(refsIn(*img, repo)) > 0 {
			out = append(out, *img)
		}
	}
	return out, nil
}

func (f *fakeImageStore) ImageRemove(_ context.Context, ref string, _ image.RemoveOptions) ([]image.DeleteResponse, error) {
	for id, img := range f.imgs {
		tags, digests := slices.Index(img.RepoTags, ref), slices.Index(img.RepoDigests, ref)
		if tags < 0 && digests < 0 {
			continue
		}
		if f.inUse(id) && len(img.RepoTags)+len(img.RepoDigests) == 1 {
			return nil, errors.New("conflict: image is being used by a stopped container")
		}
		if tags >= 0 {
			img.RepoTags = slices.Delete(img.RepoTags, tags, tags+1)
		} else {
			img.RepoDigests = slices.Delete(img.RepoDigests, digests, digests+1)
		}
		if len(img.RepoTags)+len(img.RepoDigests) == 0 {
			delete(f.imgs, id)
		}
		f.removed = append(f.removed, ref)
		return nil, nil
	}
	return nil, notFoundError{}
}

type notFoundError struct{}

func (notFoundError) Error() string { return "No such image" }
func (notFoundError) NotFound()     {}

func TestLocalImagesPrune(t *testing.T) {
	const repo = "127.0.0.1:5000/paas/hello"
	newStore := func() *fakeImageStore {
		return &fakeImageStore{imgs: map[string]*image.Summary{
			// v1, built here and pushed (a Dockerfile build)
			"i1": {ID: "i1", RepoTags: []string{repo + ":v1-aaa"}, RepoDigests: []string{repo + "@sha256:d1"}},
			// v2, pulled by Swarm by digest (buildpacks, git:from-image)
			"i2": {ID: "i2", RepoDigests: []string{repo + "@sha256:d2"}},
			// v3, the current release
			"i3": {ID: "i3", RepoTags: []string{repo + ":v3-ccc"}, RepoDigests: []string{repo + "@sha256:d3"}},
			// the same build as another app's
			"i4": {ID: "i4", RepoTags: []string{repo + ":v4-ddd", "127.0.0.1:5000/paas/other:v1-ddd"},
				RepoDigests: []string{repo + "@sha256:d4", "127.0.0.1:5000/paas/other@sha256:d4"}},
			// built, never pushed (the push failed)
			"i5": {ID: "i5", RepoTags: []string{repo + ":v5-eee"}},
			// an app whose name starts with this one's
			"i6": {ID: "i6", RepoTags: []string{repo + "-two:v1-fff"}, RepoDigests: []string{repo + "-two@sha256:d6"}},
		}}
	}
	log := slog.New(slog.DiscardHandler)

	st := newStore()
	// v1's task exited long ago; Swarm keeps its container in the task history.
	st.containers = []container.Summary{{ID: "c1", ImageID: "i1", State: container.StateExited}}
	l := &localImages{docker: st, repoPrefix: "127.0.0.1:5000/paas", installation: "paas", log: log}
	if _, err := l.Prune(context.Background(), "hello", []string{"sha256:d3", "sha256:d2"}); err != nil {
		t.Fatal(err)
	}
	var left []string
	for id := range st.imgs {
		left = append(left, id)
	}
	slices.Sort(left)
	if want := []string{"i2", "i3", "i4", "i6"}; !slices.Equal(left, want) {
		t.Fatalf("images left %v, want %v (removed %v)", left, want, st.removed)
	}
	if len(st.containers) != 0 {
		t.Fatalf("containers left %v, want v1's exited one removed", st.containers)
	}
	if other := st.imgs["i4"]; !slices.Equal(other.RepoTags, []string{"127.0.0.1:5000/paas/other:v1-ddd"}) || len(other.RepoDigests) != 1 {
		t.Fatalf("the other app's names of a shared image changed: %+v", other)
	}

	// apps:destroy: keep nothing; an image a running container holds stays,
	// no error.
	st = newStore()
	st.containers = []container.Summary{{ID: "c3", ImageID: "i3", State: container.StateRunning}}
	l.docker = st
	if _, err := l.Prune(context.Background(), "hello", nil); err != nil {
		t.Fatal(err)
	}
	left = left[:0]
	for id := range st.imgs {
		left = append(left, id)
	}
	slices.Sort(left)
	if want := []string{"i3", "i4", "i6"}; !slices.Equal(left, want) {
		t.Fatalf("images left %v, want %v", left, want)
	}
	if refs := refsIn(*st.imgs["i4"], repo); len(refs) != 0 {
		t.Fatalf("the shared image still has this app's names %v", refs)
	}
}

func TestRemoveLeftoverBuilds(t *testing.T) {
	root := filepath.Join(t.TempDir(), "builds")
	if err := removeLeftoverBuilds(root, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("no build dir: %v", err)
	}
	for _, d := range []string{"hello-3/src", "other-9"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "hello-3", "src", "main.go"), []byte("package main"), 0o600)
	if err := removeLeftoverBuilds(root, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
		t.Fatalf("build root holds %v (%v), want nothing", entries, err)
	}
}
