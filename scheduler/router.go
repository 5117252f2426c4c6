package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// DockerSocket is where the router finds the Docker API, on the host and in
// its container.
const DockerSocket = "/var/run/docker.sock"

// EnsureRouter creates or updates the router service (RouterServiceName):
// image run with args and env, the Docker socket bind-mounted, attached to the
// network, httpPort published in host mode on every manager node (the router
// reads services from the Swarm API, which only managers serve). It returns
// once the router runs; a router that fails to start is rolled back like an
// app and the error carries its last log lines.
//
// A host port can only be bound once per node, so the router is updated
// stop-first: requests that arrive during a router upgrade are refused.
func (s *Swarm) EnsureRouter(ctx context.Context, image string, args, env []string, httpPort int) error {
	if image == "" || httpPort <= 0 || httpPort > 65535 {
		return fmt.Errorf("ensure router: invalid image %q or port %d", image, httpPort)
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return err
	}
	labels := map[string]string{
		paas.LabelInstallation: s.name,
		paas.LabelRole:         RoleRouter,
	}
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.RouterServiceName(), Labels: clone(labels)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:  image,
				Labels: clone(labels),
				Args:   args,
				Env:    env,
				Mounts: []mount.Mount{{Type: mount.TypeBind, Source: DockerSocket, Target: DockerSocket}},
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
			Placement:     &swarm.Placement{Constraints: []string{"node.role==manager"}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.network}},
		},
		Mode:           swarm.ServiceMode{Global: &swarm.GlobalService{}},
		UpdateConfig:   s.updateConfig(swarm.UpdateOrderStopFirst),
		RollbackConfig: s.updateConfig(swarm.UpdateOrderStopFirst),
		EndpointSpec: &swarm.EndpointSpec{
			Mode: swarm.ResolutionModeDNSRR,
			Ports: []swarm.PortConfig{{
				Protocol:      swarm.PortConfigProtocolTCP,
				TargetPort:    uint32(httpPort),
				PublishedPort: uint32(httpPort),
				PublishMode:   swarm.PortConfigPublishModeHost,
			}},
		},
	}
	spec = withSpecHash(spec)

	svcs, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+RoleRouter),
	)})
	if err != nil {
		return fmt.Errorf("ensure router: list services: %w", err)
	}
	var existing *swarm.Service
	if len(svcs) > 0 {
		existing = &svcs[0]
	}
	p := &progress{out: logWriter{s.log.With("service", spec.Name)}}
	r, err := s.apply(ctx, existing, spec, RoleRouter)
	if err != nil {
		return fmt.Errorf("ensure router: %w", err)
	}
	if err := s.wait(ctx, r, p); err != nil {
		s.log.Info("router rollout failed, rolling back", "err", err)
		if rbErr := s.revert(ctx, r, p); rbErr != nil {
			return fmt.Errorf("ensure router: %w (rollback failed too: %v)", err, rbErr)
		}
		return fmt.Errorf("ensure router: %w", err)
	}
	s.log.Info("router running", "image", image, "port", httpPort)
	return nil
}

// logWriter writes progress lines to a logger at debug level.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
