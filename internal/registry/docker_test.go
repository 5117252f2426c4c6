package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// requireDocker skips the test when no Docker daemon answers, except in CI,
// where a missing daemon is a failure.
func requireDocker(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("docker")
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out []byte
		out, err = exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
		if err != nil {
			err = errors.New(strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker daemon not available in CI: %v", err)
		}
		t.Skipf("docker daemon not available: %v", err)
	}
}

// docker runs the docker CLI and returns its standard output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryDocker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryDocker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	// The classic builder needs neither buildx nor any image but scratch.
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New("docker " + strings.Join(args, " ") + ": " + err.Error() + ": " + stderr.String() + stdout.String())
	}
	return stdout.String(), nil
}

// TestDockerPushPull pushes an image built by the local Docker daemon to the
// registry, removes it, pulls it back by digest, and resolves its digest the
// way `docker service create` does for Swarm.
func TestDockerPushPull(t *testing.T) {
	requireDocker(t)
	reg, err := New(t.TempDir(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	host := ln.Addr().String()

	// A unique file makes a unique image, so the test never meets an image
	// left by another run.
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	buildDir := t.TempDir()
	// Two layers, one of them large enough to take more than one read.
	writeFile(t, filepath.Join(buildDir, "Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY data.bin /data.bin\n")
	writeFile(t, filepath.Join(buildDir, "hello.txt"), "hello "+hex.EncodeToString(nonce)+"\n")
	data := make([]byte, 4<<20)
	_, _ = rand.Read(data)
	writeFile(t, filepath.Join(buildDir, "data.bin"), string(data))

	img, other := host+"/test/img:1", host+"/test/other:1"
	id := strings.TrimSpace(docker(t, "build", "-q", "-t", img, buildDir))
	if !digestRe.MatchString(id) {
		t.Fatalf("docker build printed %q, want an image id", id)
	}
	t.Cleanup(func() {
		if _, err := tryDocker("image", "inspect", id); err == nil {
			if _, err := tryDocker("rmi", "-f", id); err != nil {
				t.Errorf("clean up: %v", err)
			}
		}
	})

	pushed := regexp.MustCompile(`1: digest: (sha256:[a-f0-9]{64}) size: \d+`)
	out := docker(t, "push", img)
	t.Logf("docker push %s:\n%s", img, out)
	m := pushed.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("docker push did not report a digest:\n%s", out)
	}
	digest := m[1]
	resp, err := http.Head("http://" + host + "/v2/test/img/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != http.StatusOK || got != digest {
		t.Errorf("HEAD manifest: status %d, digest %q, want %q", resp.StatusCode, got, digest)
	}

	// A second repository gets the layer by cross-repository mount.
	docker(t, "tag", id, other)
	out = docker(t, "push", other)
	t.Logf("docker push %s:\n%s", other, out)
	if m := pushed.FindStringSubmatch(out); m == nil || m[1] != digest {
		t.Errorf("push to second repository: want digest %s:\n%s", digest, out)
	}
	if strings.Count(out, "Mounted from test/img") != 2 {
		t.Errorf("push to second repository did not mount the layer:\n%s", out)
	}

	// Swarm resolves a service's image to a digest through the daemon's
	// distribution endpoint before it creates the service.
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dist, err := cli.DistributionInspect(ctx, img, "")
	if err != nil {
		t.Fatalf("distribution inspect: %v", err)
	}
	if got := dist.Descriptor.Digest.String(); got != digest {
		t.Errorf("distribution inspect: digest %s, want %s", got, digest)
	}
	// And for real: a service without replicas runs nothing but has its image
	// pinned to the digest the registry reported.
	service := "paas-registry-test-" + hex.EncodeToString(nonce[:4])
	docker(t, "service", "create", "--detach", "--replicas", "0", "--name", service, img)
	t.Cleanup(func() {
		if _, err := tryDocker("service", "rm", service); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	spec := strings.TrimSpace(docker(t, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", service))
	if spec != img+"@"+digest {
		t.Errorf("service image %q, want %q", spec, img+"@"+digest)
	}

	docker(t, "rmi", img, other)
	if _, err := tryDocker("image", "inspect", id); err == nil {
		t.Fatalf("image %s still present after docker rmi", id)
	}

	byDigest := host + "/test/img@" + digest
	t.Logf("docker pull %s:\n%s", byDigest, docker(t, "pull", byDigest))
	if got := strings.TrimSpace(docker(t, "image", "inspect", "--format", "{{.Id}}", byDigest)); got != id {
		t.Errorf("pulled image id %s, want %s", got, id)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
