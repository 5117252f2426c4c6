package router

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"paas/builder/buildertest"
	"paas/internal/paas"
)

// TestDockerSourceSwarm reads routes from the real daemon: an attachable
// overlay network, a web service with one task (endpoint mode dnsrr, no VIP)
// and services that must not be routed. The task's overlay address cannot be
// reached from the host, so only the table is checked.
func TestDockerSourceSwarm(t *testing.T) {
	cli := swarmClient(t)
	ctx := t.Context()
	prefix := "rtest-" + strings.ToLower(rand.Text()[:10])
	domain := prefix + ".test"
	img := buildServerImage(t, cli, prefix)

	netName := prefix + "-net"
	nw, err := cli.NetworkCreate(ctx, netName, network.CreateOptions{
		Driver:     "overlay",
		Attachable: true,
		Labels:     map[string]string{paas.LabelInstallation: prefix},
	})
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	t.Cleanup(func() { removeNetwork(t, cli, nw.ID) })

	labels := func(app, process, installation string, extra ...string) map[string]string {
		l := map[string]string{
			paas.LabelInstallation: installation,
			paas.LabelApp:          app,
			paas.LabelProcess:      process,
			paas.LabelPort:         "5000",
			paas.LabelRelease:      "1",
			paas.LabelRouted:       "true",
		}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	web := createService(t, cli, prefix+"-hello-web", img, nw.ID, 1, labels("hello", "web", prefix, paas.LabelHosts, "www.hello.test, API.Hello.Test"))
	createService(t, cli, prefix+"-idle-web", img, nw.ID, 0, labels("idle", "web", prefix))
	createService(t, cli, prefix+"-jobs-worker", img, nw.ID, 0, labels("jobs", "worker", prefix))
	createService(t, cli, prefix+"-other-web", img, nw.ID, 0, labels("other", "web", prefix+"-other"))

	src := NewDockerSource(cli, Options{Installation: prefix, Domain: domain, Network: netName, Log: discardLog()})
	waitFor := func(what string, done func(Table) bool) Table {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var last Table
		var lastErr error
		for time.Now().Before(deadline) {
			last, lastErr = src.Routes(ctx)
			if lastErr == nil && done(last) {
				return last
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("%s: not within 60s; last table %+v, last error %v", what, last.Routes, lastErr)
		return Table{}
	}
	helloBackends := func(tb Table) []Backend {
		for _, r := range tb.Routes {
			if r.App == "hello" {
				return r.Backends
			}
		}
		return nil
	}

	got := waitFor("the web task runs", func(tb Table) bool { return len(helloBackends(tb)) == 1 })
	if len(got.Routes) != 2 {
		t.Fatalf("routes = %+v, want hello and idle only", got.Routes)
	}
	hello, idle := got.Routes[0], got.Routes[1]
	if hello.App != "hello" || idle.App != "idle" {
		t.Fatalf("routes = %+v, want hello and idle", got.Routes)
	}
	wantHosts := []string{"api.hello.test", "hello." + domain, "www.hello.test"}
	if strings.Join(hello.Hosts, ",") != strings.Join(wantHosts, ",") {
		t.Errorf("hello hosts = %q, want %q", hello.Hosts, wantHosts)
	}
	subnet := networkSubnet(t, cli, nw.ID) // allocated once a task uses the network
	ap, err := netip.ParseAddrPort(hello.Backends[0].Addr)
	if err != nil {
		t.Fatalf("backend address %q: %v", hello.Backends[0].Addr, err)
	}
	if ap.Port() != 5000 || !subnet.Contains(ap.Addr()) {
		t.Errorf("backend = %s, want an address in %s, port 5000", ap, subnet)
	}
	if len(idle.Hosts) != 1 || idle.Hosts[0] != "idle."+domain || len(idle.Backends) != 0 {
		t.Errorf("idle route = %+v, want its host and no backends", idle)
	}

	// Scaled to zero, the app keeps its route (503) and loses its backend.
	scaleService(t, cli, web, 0)
	waitFor("the web task is gone", func(tb Table) bool {
		return len(tb.Routes) == 2 && tb.Routes[0].App == "hello" && len(helloBackends(tb)) == 0
	})
}

// swarmClient connects to the Docker daemon, which must be a Swarm manager.
// Without one the test is skipped, except in CI where it fails.
func swarmClient(t *testing.T) *client.Client {
	t.Helper()
	return buildertest.SwarmManager(t)
}

const serverMain = `package main

import (
	"net/http"
	"os"
)

func main() {
	// "/server sick" makes "/server health", the health check, fail.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "sick":
			if os.WriteFile("/sick", nil, 0o644) != nil {
				os.Exit(1)
			}
		case "health":
			if _, err := os.Stat("/sick"); err == nil {
				os.Exit(1)
			}
		}
		return
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello\n")) })
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		os.Exit(1)
	}
}
`

// buildServerImage compiles a static HTTP server and builds a FROM scratch
// image of it, tagged NAME:latest; nothing is pulled.
func buildServerImage(t *testing.T, cli *client.Client, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the test image: %v", err)
	}
	dir := t.TempDir()
	for file, content := range map[string]string{"main.go": serverMain, "go.mod": "module server\n\ngo 1.26\n"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", "server", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test server: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "server"))
	if err != nil {
		t.Fatal(err)
	}

	var buildCtx bytes.Buffer
	tw := tar.NewWriter(&buildCtx)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")},
		{"server", 0o755, bin},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	tag := name + ":latest"
	resp, err := cli.ImageBuild(t.Context(), &buildCtx, build.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{paas.LabelInstallation: name},
	})
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cli.ImageRemove(ctx, tag, image.RemoveOptions{Force: true}); err != nil { // no parent pruned: other tests build on them
			t.Errorf("remove image %s: %v", tag, err)
		}
	})
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil); err != nil {
		t.Fatalf("build image: %v", err)
	}
	return tag
}

func createService(t *testing.T, cli *client.Client, name, img, networkID string, replicas uint64, labels map[string]string) string {
	t.Helper()
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: img, Env: []string{"PORT=5000"}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: networkID}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
	return createServiceSpec(t, cli, spec)
}

// createServiceSpec creates a service and removes it when the test ends,
// waiting until its containers are gone.
func createServiceSpec(t *testing.T, cli *client.Client, spec swarm.ServiceSpec) string {
	t.Helper()
	name := spec.Name
	resp, err := cli.ServiceCreate(t.Context(), spec, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := cli.ServiceRemove(ctx, resp.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove service %s: %v", name, err)
			return
		}
		// Wait for its containers to go, so that the image and the network
		// can be removed after it.
		f := filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+resp.ID))
		for {
			cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
			if err == nil && len(cs) == 0 {
				return
			}
			select {
			case <-ctx.Done():
				t.Errorf("containers of service %s still there: %d, %v", name, len(cs), err)
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	return resp.ID
}

func scaleService(t *testing.T, cli *client.Client, id string, replicas uint64) {
	t.Helper()
	svc, _, err := cli.ServiceInspectWithRaw(t.Context(), id, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatalf("inspect service: %v", err)
	}
	svc.Spec.Mode.Replicated.Replicas = &replicas
	if _, err := cli.ServiceUpdate(t.Context(), id, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatalf("scale service: %v", err)
	}
}

func networkSubnet(t *testing.T, cli *client.Client, id string) netip.Prefix {
	t.Helper()
	nw, err := cli.NetworkInspect(t.Context(), id, network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspect network: %v", err)
	}
	for _, c := range nw.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil {
			return p
		}
	}
	t.Fatalf("network %s has no subnet: %+v", id, nw.IPAM)
	return netip.Prefix{}
}

// removeNetwork removes the network once the removed services' containers
// have left it.
func removeNetwork(t *testing.T, cli *client.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := cli.NetworkRemove(ctx, id)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("remove network %s: %v", id, err)
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
