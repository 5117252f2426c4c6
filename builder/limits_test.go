package builder

import (
	"context"
	"testing"

	packclient "github.com/buildpacks/pack/pkg/client"
	"github.com/moby/moby/api/types/container"
	mobyclient "github.com/moby/moby/client"

	"paas/internal/paas"
)

// createRecorder is pack's Docker client with only ContainerCreate.
type createRecorder struct {
	packclient.DockerClient
	got    *container.HostConfig
	labels map[string]string
}

func (r *createRecorder) ContainerCreate(_ context.Context, opts mobyclient.ContainerCreateOptions) (mobyclient.ContainerCreateResult, error) {
	r.got = opts.HostConfig
	if opts.Config != nil {
		r.labels = opts.Config.Labels
	}
	return mobyclient.ContainerCreateResult{ID: "c1"}, nil
}

func TestPackBuildContainersGetTheLimits(t *testing.T) {
	rec := &createRecorder{}
	p := NewPack(nil, rec, nil, paas.ImageRegistry{}, "inst", nil).WithLimits(BuildLimits{MemoryBytes: 1 << 30, NanoCPUs: 15e8})
	binds := []string{"vol:/cache"}
	packLabels := map[string]string{"author": "pack"}
	if _, err := p.mobyDocker.ContainerCreate(context.Background(), mobyclient.ContainerCreateOptions{Config: &container.Config{Labels: packLabels}, HostConfig: &container.HostConfig{Binds: binds, NetworkMode: "host"}}); err != nil {
		t.Fatal(err)
	}
	if rec.got == nil || rec.got.Memory != 1<<30 || rec.got.NanoCPUs != 15e8 || rec.got.NetworkMode != "host" || len(rec.got.Binds) != 1 {
		t.Fatalf("host config %+v: want the limits on top of pack's own settings", rec.got)
	}
	if rec.labels[LabelBuild] != "inst" || rec.labels["author"] != "pack" || len(packLabels) != 1 {
		t.Fatalf("labels %v (pack's own %v): want pack's and the installation's, pack's map untouched", rec.labels, packLabels)
	}
	// no limits: labelled, nothing limited
	q := NewPack(nil, rec, nil, paas.ImageRegistry{}, "inst", nil).WithLimits(BuildLimits{})
	if _, err := q.mobyDocker.ContainerCreate(context.Background(), mobyclient.ContainerCreateOptions{Config: &container.Config{}}); err != nil {
		t.Fatal(err)
	}
	if rec.got.Memory != 0 || rec.got.NanoCPUs != 0 || rec.labels[LabelBuild] != "inst" {
		t.Fatalf("no limits: host config %+v, labels %v", rec.got, rec.labels)
	}
	if l := (BuildLimits{NanoCPUs: 15e8}); l.quota() != 150_000 || l.period() != 100_000 {
		t.Fatalf("1.5 CPUs: quota %d over %d", l.quota(), l.period())
	}
}
