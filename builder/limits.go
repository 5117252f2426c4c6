package builder

import (
	"context"
	"maps"

	packclient "github.com/buildpacks/pack/pkg/client"
	"github.com/moby/moby/api/types/container"
	mobyclient "github.com/moby/moby/client"
)

// BuildLimits bound what one build may use, so that a build cannot starve
// the apps of its node (`paasd serve --build-memory`, `--build-cpus`).
// Zero fields are no limit.
type BuildLimits struct {
	MemoryBytes int64
	NanoCPUs    int64 // 1e9 is one CPU
}

// cpuPeriod is the CFS period the classic builder's CPU quota is over.
const cpuPeriod = 100_000 // µs

// quota is the CFS quota of NanoCPUs over period (0: none).
func (l BuildLimits) quota() int64 { return l.NanoCPUs * cpuPeriod / 1e9 }

// period is the CFS period of quota (0 without a CPU limit).
func (l BuildLimits) period() int64 {
	if l.NanoCPUs == 0 {
		return 0
	}
	return cpuPeriod
}

// WithLimits makes every build of b run its steps under l.
func (b *Dockerfile) WithLimits(l BuildLimits) *Dockerfile {
	b.limits = l
	return b
}

// WithLimits makes every container of p's builds (the CNB lifecycle's)
// run under l.
func (p *Pack) WithLimits(l BuildLimits) *Pack {
	d, ok := p.mobyDocker.(buildDocker)
	if !ok {
		d = buildDocker{DockerClient: p.mobyDocker, installation: p.name}
	}
	d.limits = l
	p.mobyDocker = d
	return p
}

// LabelBuild labels the containers of an installation's buildpacks builds
// (the CNB lifecycle's) with the installation's name, so that an operator
// (and a test) can tell them from another installation's.
const LabelBuild = "paas.build"

// buildDocker is pack's Docker client, with every container it creates
// labelled with the installation and given the build limits (pack has no
// option of its own for either).
type buildDocker struct {
	packclient.DockerClient
	installation string
	limits       BuildLimits
}

func (d buildDocker) ContainerCreate(ctx context.Context, opts mobyclient.ContainerCreateOptions) (mobyclient.ContainerCreateResult, error) {
	if opts.HostConfig == nil {
		opts.HostConfig = &container.HostConfig{}
	}
	hc := *opts.HostConfig
	if d.limits.MemoryBytes > 0 {
		hc.Memory = d.limits.MemoryBytes
	}
	if d.limits.NanoCPUs > 0 {
		hc.NanoCPUs = d.limits.NanoCPUs
	}
	opts.HostConfig = &hc
	if opts.Config != nil && d.installation != "" {
		cfg := *opts.Config
		cfg.Labels = maps.Clone(cfg.Labels)
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[LabelBuild] = d.installation
		opts.Config = &cfg
	}
	return d.DockerClient.ContainerCreate(ctx, opts)
}
