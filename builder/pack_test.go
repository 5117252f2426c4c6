package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"paas/builder/buildertest"
	"paas/internal/paas"
)

// packForTest returns a Pack publishing to a throwaway registry, with cache
// volumes named after a unique installation, removed at the end.
func packForTest(t *testing.T) *Pack {
	t.Helper()
	cli := buildertest.Docker(t)
	ctx := context.Background()
	if _, err := cli.ImageInspect(ctx, DefaultCNBBuilder); err != nil {
		buildertest.Missing(t, "the air-gapped builder "+DefaultCNBBuilder+" is missing: run scripts/builder/build.sh (scripts/install.sh --deps does)")
	}
	moby, err := NewPackDocker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { moby.Close() })
	inst := buildertest.Unique("ptest")
	reg := buildertest.Registry(t)
	reg.Prefix += "/" + inst
	prefix := reg.Prefix
	p := NewPack(cli, moby, nil, reg, inst, nil)
	t.Cleanup(func() {
		// Untag the run image's mirror tag (the image is the builder's).
		imgs, _ := cli.ImageList(context.Background(), image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", prefix+"/*"))})
		for _, img := range imgs {
			for _, tag := range img.RepoTags {
				cli.ImageRemove(context.Background(), tag, image.RemoveOptions{})
			}
		}
		vols, _ := cli.VolumeList(context.Background(), volume.ListOptions{})
		for _, v := range vols.Volumes {
			if strings.HasPrefix(v.Name, inst+"-") {
				cli.VolumeRemove(context.Background(), v.Name, true)
			}
		}
	})
	return p
}

func writeApp(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, c := range files {
		mustWrite(t, filepath.Join(dir, n), c)
	}
	return dir
}

// processTypes reads the process types from the published image's CNB label.
func processTypes(t *testing.T, p *Pack, img paas.Image) []string {
	t.Helper()
	ref, err := name.ParseReference(img.Ref())
	if err != nil {
		t.Fatal(err)
	}
	ri, err := remote.Image(ref, remote.WithAuthFromKeychain(p.keychain))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ri.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Processes []struct {
			Type string `json:"type"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(cfg.Config.Labels[labelBuildMetadata]), &meta); err != nil {
		t.Fatalf("image has no build metadata: %v", err)
	}
	var types []string
	for _, p := range meta.Processes {
		types = append(types, p.Type)
	}
	return types
}

const goApp = `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "VERSION") })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`

func TestPackBuilds(t *testing.T) {
	p := packForTest(t)
	tests := []struct {
		name    string
		files   map[string]string
		procs   string
		wantOut string
		wantErr string
	}{
		{name: "procfile", files: map[string]string{"Procfile": "web: httpd -f -p $PORT\nworker: sleep 1000\n", "index.html": "hi"},
			procs: "web,worker", wantOut: "Process worker: sleep 1000"},
		{name: "static", files: map[string]string{"public/index.html": "<h1>hi</h1>"}, procs: "web", wantOut: "with paas-static"},
		{name: "go", files: map[string]string{"go.mod": "module example.com/hello\n\ngo 1.22\n", "main.go": goApp}, procs: "web", wantOut: "process web runs hello"},
		{name: "project.toml env", files: map[string]string{
			"go.mod": "module example.com/tagged\n\ngo 1.22\n", "main.go": "//go:build special\n\n" + goApp,
			"project.toml": "[_]\nschema-version = \"0.2\"\n\n[[io.buildpacks.build.env]]\nname = \"GOFLAGS\"\nvalue = \"-tags=special\"\n",
		}, procs: "web", wantOut: "process web runs tagged"},
		{name: "undetected", files: map[string]string{"README": "nothing to build"}, wantErr: "detect"},
		{name: "broken go", files: map[string]string{"go.mod": "module broken\n\ngo 1.22\n", "main.go": "package main\nfunc main() { undefined() }\n"}, wantErr: "failed with status code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var out bytes.Buffer
			app := strings.ReplaceAll(tt.name, " ", "-")
			img, err := p.Build(ctx, Input{App: app, Dir: writeApp(t, tt.files), Tag: "v1", Out: &out})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error()+out.String(), tt.wantErr) {
					t.Fatalf("err %v, want %q; output:\n%s", err, tt.wantErr, out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("build: %v\n%s", err, out.String())
			}
			if !strings.HasPrefix(img.Digest, "sha256:") || !img.CNB || img.Repository != p.Repository(app) {
				t.Fatalf("image %+v", img)
			}
			if got := strings.Join(processTypes(t, p, img), ","); got != tt.procs {
				t.Errorf("process types %q, want %q", got, tt.procs)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}

// A second build of the same Go app restores the module and build cache
// and reuses the app layer: same image, in a fraction of the time.
func TestPackGoCache(t *testing.T) {
	p := packForTest(t)
	dir := writeApp(t, map[string]string{"go.mod": "module example.com/hello\n\ngo 1.22\n", "main.go": goApp})
	ctx := context.Background()
	var first, second bytes.Buffer
	img1, err := p.Build(ctx, Input{App: "cached", Dir: dir, Tag: "v1", Out: &first})
	if err != nil {
		t.Fatalf("%v\n%s", err, first.String())
	}
	start := time.Now()
	img2, err := p.Build(ctx, Input{App: "cached", Dir: dir, Tag: "v2", Out: &second})
	t.Logf("cached rebuild took %v", time.Since(start))
	if err != nil {
		t.Fatalf("%v\n%s", err, second.String())
	}
	if !strings.Contains(second.String(), "Restoring data for \"paas/go:go-cache\"") && !strings.Contains(second.String(), "go-cache") {
		t.Errorf("second build did not restore the go cache:\n%s", second.String())
	}
	if !strings.Contains(second.String(), "Reusing layer 'paas/go:app'") {
		t.Errorf("second build did not reuse the app layer:\n%s", second.String())
	}
	if img1.Digest != img2.Digest {
		t.Errorf("the rebuild of the same source made a new image: %s then %s", img1.Digest, img2.Digest)
	}
	if err := p.PurgeCache(ctx, "cached"); err != nil {
		t.Fatal(err)
	}
}
