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

	registrytypes "github.com/docker/docker/api/types/registry"
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

// dockerCLI runs the docker CLI with its own client configuration (logins)
// and returns its standard output.
type dockerCLI struct{ config string }

func (d dockerCLI) run(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := d.try(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (d dockerCLI) try(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	// The classic builder needs neither buildx nor any image but scratch.
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0", "DOCKER_CONFIG="+d.config)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New("docker " + strings.Join(args, " ") + ": " + err.Error() + ": " + stderr.String() + stdout.String())
	}
	return stdout.String(), nil
}

// TestDockerPushPull pushes an image built by the local Docker daemon to the
// registry over TLS, which refuses it until the client logs in, pulls it back
// by digest, resolves its digest the way `docker service create` does for
// Swarm, and pins a service to it with the registry login.
func TestDockerPushPull(t *testing.T) {
	requireDocker(t)
	base := t.TempDir()
	certs, err := LoadCertificates(filepath.Join(base, "tls"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	login, err := LoadLogin(filepath.Join(base, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := New(Options{Dir: filepath.Join(base, "storage"), HTPasswd: login.HTPasswd(), Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second, TLSConfig: certs.TLSConfig()}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	host := ln.Addr().String()
	docker := dockerCLI{config: t.TempDir()}

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
	id := strings.TrimSpace(docker.run(t, "", "build", "-q", "-t", img, buildDir))
	if !regexp.MustCompile(`^sha256:[a-f0-9]{64}$`).MatchString(id) {
		t.Fatalf("docker build printed %q, want an image id", id)
	}
	t.Cleanup(func() {
		if _, err := docker.try("", "image", "inspect", id); err == nil {
			if _, err := docker.try("", "rmi", "-f", id); err != nil {
				t.Errorf("clean up: %v", err)
			}
		}
	})

	// Without a login, and with a wrong one, the registry refuses.
	if out, err := docker.try("", "push", img); err == nil || !strings.Contains(err.Error(), "no basic auth credentials") {
		t.Fatalf("push without login: %v\n%s", err, out)
	}
	if _, err := docker.try("wrong-password", "login", "-u", login.User, "--password-stdin", host); err == nil {
		t.Fatal("docker login with a wrong password succeeded")
	}
	docker.run(t, login.Password, "login", "-u", login.User, "--password-stdin", host)

	pushed := regexp.MustCompile(`1: digest: (sha256:[a-f0-9]{64}) size: \d+`)
	out := docker.run(t, "", "push", img)
	t.Logf("docker push %s:\n%s", img, out)
	m := pushed.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("docker push did not report a digest:\n%s", out)
	}
	digest := m[1]

	// A second repository gets the layer by cross-repository mount.
	docker.run(t, "", "tag", id, other)
	out = docker.run(t, "", "push", other)
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
	if _, err := cli.DistributionInspect(ctx, img, ""); err == nil {
		t.Error("distribution inspect without credentials succeeded")
	}
	auth, err := registrytypes.EncodeAuthConfig(registrytypes.AuthConfig{Username: login.User, Password: login.Password, ServerAddress: host})
	if err != nil {
		t.Fatal(err)
	}
	dist, err := cli.DistributionInspect(ctx, img, auth)
	if err != nil {
		t.Fatalf("distribution inspect: %v", err)
	}
	if got := dist.Descriptor.Digest.String(); got != digest {
		t.Errorf("distribution inspect: digest %s, want %s", got, digest)
	}
	// And for real: a service without replicas runs nothing but has its image
	// pinned to the digest the registry reported.
	service := "paas-registry-test-" + hex.EncodeToString(nonce[:4])
	docker.run(t, "", "service", "create", "--detach", "--with-registry-auth", "--replicas", "0", "--name", service, img)
	t.Cleanup(func() {
		if _, err := docker.try("", "service", "rm", service); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	spec := strings.TrimSpace(docker.run(t, "", "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", service))
	if spec != img+"@"+digest {
		t.Errorf("service image %q, want %q", spec, img+"@"+digest)
	}

	docker.run(t, "", "rmi", img, other)
	if _, err := docker.try("", "image", "inspect", id); err == nil {
		t.Fatalf("image %s still present after docker rmi", id)
	}

	byDigest := host + "/test/img@" + digest
	t.Logf("docker pull %s:\n%s", byDigest, docker.run(t, "", "pull", byDigest))
	if got := strings.TrimSpace(docker.run(t, "", "image", "inspect", "--format", "{{.Id}}", byDigest)); got != id {
		t.Errorf("pulled image id %s, want %s", got, id)
	}
	docker.run(t, "", "rmi", byDigest)
	docker.run(t, "", "logout", host)
	if out, err := docker.try("", "pull", byDigest); err == nil {
		t.Errorf("pull after logout succeeded:\n%s", out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
