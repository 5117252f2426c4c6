package builder_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"paas/builder"
	"paas/builder/buildertest"
)

func TestBuildPushesToRegistry(t *testing.T) {
	cli := buildertest.Docker(t)
	reg := buildertest.Registry(t)
	host := reg.Prefix
	reg.Prefix += "/" + buildertest.Unique("btest")
	prefix := reg.Prefix
	b := builder.NewDockerfile(cli, reg, nil)
	buildertest.RemoveImages(t, cli, b.Repository("hello"))

	dir := buildertest.HelloApp(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	img, err := b.Build(ctx, builder.Input{App: "hello", Dir: dir, Tag: "v1-abc1234", Out: &out})
	if err != nil {
		t.Fatalf("Build: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("build and push took %s", time.Since(start))
	t.Logf("output:\n%s", out.String())

	if want := prefix + "/hello"; img.Repository != want {
		t.Errorf("Repository = %q, want %q", img.Repository, want)
	}
	if !strings.HasPrefix(img.Digest, "sha256:") || len(img.Digest) != len("sha256:")+64 {
		t.Errorf("Digest = %q, want sha256:<64 hex>", img.Digest)
	}
	for _, want := range []string{
		"-----> Building hello from Dockerfile\n",
		"       Step 1/4 : FROM scratch\n",
		"-----> Pushing image " + prefix + "/hello:v1-abc1234\n",
		"v1-abc1234: digest: " + img.Digest,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// The registry serves the manifest by the returned digest, to its
	// login only.
	name := strings.TrimPrefix(img.Repository, host+"/")
	for _, login := range []bool{false, true} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, fmt.Sprintf("https://%s/v2/%s/manifests/%s", host, name, img.Digest), nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		want := http.StatusUnauthorized
		if login {
			req.SetBasicAuth(reg.Username, reg.Password)
			want = http.StatusOK
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("HEAD manifest by digest (login %v): %s, want %d", login, resp.Status, want)
		}
	}
	inspect, err := cli.ImageInspect(ctx, img.Ref())
	if err != nil {
		t.Fatalf("inspect %s: %v", img.Ref(), err)
	}
	if !slices.Contains(inspect.RepoDigests, img.Ref()) {
		t.Errorf("RepoDigests = %v, want %s", inspect.RepoDigests, img.Ref())
	}
	if got := inspect.Config.Labels["paas.app"]; got != "hello" {
		t.Errorf("label paas.app = %q", got)
	}

	// A rebuild of the same commit is served from the build cache and
	// pushes to the same digest.
	again, err := b.Build(ctx, builder.Input{App: "hello", Dir: dir, Tag: "v2-abc1234", Out: &out})
	if err != nil {
		t.Fatalf("second Build: %v", err)
	}
	if again.Digest != img.Digest {
		t.Errorf("rebuild digest = %s, want %s", again.Digest, img.Digest)
	}
}

func TestBuildFailures(t *testing.T) {
	cli := buildertest.Docker(t)
	reg := buildertest.Registry(t)
	reg.Prefix += "/" + buildertest.Unique("btest")
	b := builder.NewDockerfile(cli, reg, nil)
	buildertest.RemoveImages(t, cli, b.Repository("broken"))

	tests := []struct {
		name       string
		dockerfile string // "" for none
		want       string // in the error: the daemon's own words
	}{
		{
			name:       "run of a missing command",
			dockerfile: "FROM scratch\nCOPY hello /hello\nRUN /no-such-command --now\n",
			want:       "no such file or directory",
		},
		{
			name:       "unknown instruction",
			dockerfile: "FROM scratch\nFROBNICATE everything\n",
			want:       "unknown instruction: FROBNICATE",
		},
		{
			name:       "copy of a missing file",
			dockerfile: "FROM scratch\nCOPY missing.txt /missing.txt\n",
			want:       "missing.txt",
		},
		{
			name: "no Dockerfile",
			want: "no Dockerfile",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("not a binary"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.dockerfile != "" {
				if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(tt.dockerfile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			img, err := b.Build(ctx, builder.Input{App: "broken", Dir: dir, Tag: "v1", Out: &out})
			if err == nil {
				t.Fatalf("Build succeeded with %+v, want an error\noutput:\n%s", img, out.String())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			t.Logf("error: %v", err)
			if strings.Contains(out.String(), "Pushing") {
				t.Errorf("a failed build was pushed:\n%s", out.String())
			}
		})
	}
}

func TestBuildSelfImage(t *testing.T) {
	cli := buildertest.Docker(t)
	reg := buildertest.Registry(t)
	repo := reg.Prefix + "/" + buildertest.Unique("btest") + "/router"
	buildertest.RemoveImages(t, cli, repo)
	bin := buildertest.HelloBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out bytes.Buffer
	ref, err := builder.BuildSelfImage(ctx, cli, bin, repo+":v1", []string{"router", "--port", "8080"}, &reg, &out)
	if err != nil {
		t.Fatalf("BuildSelfImage: %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(ref, repo+"@sha256:") {
		t.Fatalf("ref = %q, want %s@sha256:...", ref, repo)
	}
	inspect, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := inspect.Config.Entrypoint; !slices.Equal(got, []string{"/paasd"}) {
		t.Errorf("Entrypoint = %q", got)
	}
	if got := inspect.Config.Cmd; !slices.Equal(got, []string{"router", "--port", "8080"}) {
		t.Errorf("Cmd = %q", got)
	}

	// Without push the tag is all there is.
	local, err := builder.BuildSelfImage(ctx, cli, bin, repo+":local", nil, nil, &out)
	if err != nil || local != repo+":local" {
		t.Fatalf("BuildSelfImage without push = %q, %v", local, err)
	}

	// A dynamically linked binary cannot run in a scratch image.
	if _, err := builder.BuildSelfImage(ctx, cli, "/bin/sh", repo+":dyn", nil, nil, &out); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("BuildSelfImage(/bin/sh) error = %v, want dynamically linked", err)
	}
}
