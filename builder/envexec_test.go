package builder

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"paas/builder/buildertest"
	"paas/internal/paas"
)

// Wrap appends the wrapper to an image in a real registry and puts it in
// front of the image's own entrypoint, keeping its command; the same binary
// is the same layer in every image.
func TestEnvWrapper(t *testing.T) {
	reg := buildertest.Registry(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module w\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", "wrapper", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a static binary: %v\n%s", err, out)
	}

	push := func(repo string, entrypoint, cmd []string) paas.Image {
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		cfg = cfg.DeepCopy()
		cfg.Config.Entrypoint, cfg.Config.Cmd = entrypoint, cmd
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(reg.Repository(repo) + ":1")
		if err := remote.Write(ref, img, remote.WithAuthFromKeychain(registryKeychain{reg})); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return paas.Image{Repository: reg.Repository(repo), Digest: d.String()}
	}
	w := NewEnvWrapper(NewImporter(nil, reg), filepath.Join(dir, "wrapper"))
	var layers []v1.Hash
	for _, tt := range []struct {
		repo            string
		entrypoint, cmd []string
	}{
		{"withentry", []string{"/app"}, []string{"serve"}},
		{"cmdonly", nil, []string{"/server"}},
	} {
		img := push(tt.repo, tt.entrypoint, tt.cmd)
		got, err := w.Wrap(context.Background(), img, "v1-env")
		if err != nil {
			t.Fatalf("Wrap(%s): %v", tt.repo, err)
		}
		if !got.EnvExec || got.Digest == img.Digest || got.Repository != img.Repository {
			t.Fatalf("Wrap(%s) = %+v", tt.repo, got)
		}
		ref, _ := name.NewDigest(got.Ref())
		wrapped, err := remote.Image(ref, remote.WithAuthFromKeychain(registryKeychain{reg}))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := wrapped.ConfigFile()
		if want := append(paas.EnvExecCommand(), tt.entrypoint...); !slices.Equal(cfg.Config.Entrypoint, want) || !slices.Equal(cfg.Config.Cmd, tt.cmd) {
			t.Errorf("%s: entrypoint %q cmd %q, want %q %q", tt.repo, cfg.Config.Entrypoint, cfg.Config.Cmd, want, tt.cmd)
		}
		ls, _ := wrapped.Layers()
		if len(ls) != 2 {
			t.Fatalf("%s: %d layers, want the image's and the wrapper's", tt.repo, len(ls))
		}
		d, _ := ls[1].Digest()
		layers = append(layers, d)
		// Wrapping a wrapped image changes nothing.
		if again, err := w.Wrap(context.Background(), got, "v2-env"); err != nil || again != got {
			t.Errorf("Wrap of a wrapped image = %+v, %v", again, err)
		}
	}
	if layers[0] != layers[1] {
		t.Errorf("the wrapper layer differs between images: %s, %s", layers[0], layers[1])
	}
}
