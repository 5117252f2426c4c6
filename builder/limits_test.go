package builder

import (
	"context"
	"testing"

	packclient "github.com/buildpacks/pack/pkg/client"
	"github.com/moby/moby/api/types/container"
	mobyclient "github.com/moby/moby/client"
)

// createRecorder is pack's Docker client with only ContainerCreate.
type createRecorder struct {
	packclient.DockerClient
	got *container.HostConfig
}

func (r *createRecorder) ContainerCreate(_ context.Context, opts mobyclient.ContainerCreateOptions) (mobyclient.ContainerCreateResult, error) {
	r.got = opts.HostConfig
	return mobyclient.ContainerCreateResult{ID: "c1"}, nil
}

func TestPackBuildContainersGetTheLimits(t *testing.T) {
	rec := &createRecorder{}
	p := (&Pack{mobyDocker: rec}).WithLimits(BuildLimits{MemoryBytes: 1 << 30, NanoCPUs: 15e8})
	binds := []string{"vol:/cache"}
	if _, err := p.mobyDocker.ContainerCreate(context.Background(), mobyclient.ContainerCreateOptions{HostConfig: &container.HostConfig{Binds: binds, NetworkMode: "host"}}); err != nil {
		t.Fatal(err)
	}
	if rec.got == nil || rec.got.Memory != 1<<30 || rec.got.NanoCPUs != 15e8 || rec.got.NetworkMode != "host" || len(rec.got.Binds) != 1 {
		t.Fatalf("host config %+v: want the limits on top of pack's own settings", rec.got)
	}
	// no limits: pack's client is used as it is
	if q := (&Pack{mobyDocker: rec}).WithLimits(BuildLimits{}); q.mobyDocker != packclient.DockerClient(rec) {
		t.Fatal("no limits wrapped the client")
	}
	if l := (BuildLimits{NanoCPUs: 15e8}); l.quota() != 150_000 || l.period() != 100_000 {
		t.Fatalf("1.5 CPUs: quota %d over %d", l.quota(), l.period())
	}
}
