package builder

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"paas/builder/buildertest"
	"paas/internal/paas"
)

func TestChoose(t *testing.T) {
	withDockerfile := t.TempDir()
	mustWrite(t, filepath.Join(withDockerfile, "Dockerfile"), "FROM scratch\n")
	plain := t.TempDir()
	tests := []struct {
		name     string
		selected string
		dir      string
		want     string
		wantErr  bool
	}{
		{"a Dockerfile wins", "", withDockerfile, "dockerfile", false},
		{"no Dockerfile: buildpacks", "", plain, "pack", false},
		{"selected pack beats the Dockerfile", "pack", withDockerfile, "pack", false},
		{"selected dockerfile", "dockerfile", plain, "dockerfile", false},
		{"unknown", "herokuish", plain, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Choose(paas.BuildSettings{Selected: tt.selected}, tt.dir)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Choose = %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

type recordingBuilder struct {
	name string
	in   *Input
}

func (r *recordingBuilder) Build(_ context.Context, in Input) (paas.Image, error) {
	*r.in = in
	return paas.Image{Builder: r.name}, nil
}

type staticSettings paas.BuildSettings

func (s staticSettings) BuildSettings(string) (paas.BuildSettings, error) {
	return paas.BuildSettings(s), nil
}

func TestSelectPassesSettings(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name        string
		set         paas.BuildSettings
		wantBuilder string
		wantEnv     bool
		wantReport  string
	}{
		{"defaults", paas.BuildSettings{}, "", false, "pack default"},
		{"stack and build env", paas.BuildSettings{Stack: "heroku/builder:24", BuildEnv: "true"}, "heroku/builder:24", true, "pack heroku/builder:24"},
		{"build env off", paas.BuildSettings{BuildEnv: "false"}, "", false, "pack default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Input
			var report string
			s := NewSelect(staticSettings(tt.set), &recordingBuilder{"dockerfile", &got}, &recordingBuilder{"pack", &got})
			var out bytes.Buffer
			_, err := s.Build(context.Background(), Input{App: "a", Dir: dir, Tag: "v1", Out: &out,
				Config: map[string]string{"K": "v"}, Report: func(b string) { report = b }})
			if err != nil {
				t.Fatal(err)
			}
			if got.Builder != tt.wantBuilder || (got.Env != nil) != tt.wantEnv || report != tt.wantReport {
				t.Fatalf("builder %q env %v report %q; want %q %v %q", got.Builder, got.Env, report, tt.wantBuilder, tt.wantEnv, tt.wantReport)
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "creds.json")
	c := NewCredentials(path)
	if err := c.Login("https://Registry.Example.com/", "team", "pw"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v", err, fi.Mode())
	}
	reg, _ := name.NewRegistry("registry.example.com")
	a, err := c.Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil || cfg.Username != "team" || cfg.Password != "pw" {
		t.Fatalf("resolved %+v, %v", cfg, err)
	}
	other, _ := name.NewRegistry("ghcr.io")
	if a, _ := c.Resolve(other); a != authn.Anonymous {
		t.Fatalf("another registry resolved to %v", a)
	}
	for _, bad := range [][3]string{{"", "u", "p"}, {"a b", "u", "p"}, {"r.io", "", "p"}, {"r.io", "u", ""}} {
		if err := c.Login(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("Login(%q) accepted", bad)
		}
	}
}

// Import copies an image between two real registries and reads a CNB
// image's process types from its label.
func TestImport(t *testing.T) {
	src, dst := buildertest.Registry(t), buildertest.Registry(t)
	plain, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cnb, err := mutate.AppendLayers(empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := cnb.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.Config.Labels = map[string]string{labelBuildMetadata: `{"processes":[{"type":"web"},{"type":"worker"}]}`}
	if cnb, err = mutate.ConfigFile(cnb, cfg); err != nil {
		t.Fatal(err)
	}
	for ref, img := range map[string]v1.Image{src.Prefix + "/team/plain:1": plain, src.Prefix + "/team/cnb:1": cnb} {
		r, _ := name.ParseReference(ref)
		if err := remote.Write(r, img, remote.WithAuthFromKeychain(registryKeychain{src})); err != nil {
			t.Fatal(err)
		}
	}
	// The source registry's login comes from registry:login; the
	// installation's own is the importer's.
	logins := NewCredentials(filepath.Join(t.TempDir(), "logins.json"))
	if err := logins.Login(src.Host(), src.Username, src.Password); err != nil {
		t.Fatal(err)
	}
	dst.Prefix += "/inst"
	imp := NewImporter(logins, dst)
	tests := []struct {
		source, procs string
		cnb           bool
		wantErr       string
	}{
		{source: src.Prefix + "/team/plain:1", procs: "web"},
		{source: src.Prefix + "/team/cnb:1", procs: "web,worker", cnb: true},
		{source: src.Prefix + "/team/missing:1", wantErr: "fetch image"},
		{source: "127.0.0.1:1/team/api:1", wantErr: "connection refused"},
		{source: "Not A Ref", wantErr: "image reference"},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			img, procs, err := imp.Import(context.Background(), "app", tt.source, "v1", nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range procs {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != tt.procs || img.CNB != tt.cnb || img.Repository != dst.Prefix+"/app" {
				t.Fatalf("image %+v procs %q", img, names)
			}
			// The copy is in the installation's registry under the same digest.
			r, _ := name.ParseReference(img.Ref())
			if _, err := remote.Head(r, remote.WithAuthFromKeychain(registryKeychain{dst})); err != nil {
				t.Fatalf("copied image not found: %v", err)
			}
		})
	}
}
