package scheduler

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
	"paas/router/contract"
)

// DockerSocket is where the router's ports process finds the Docker API, on
// the host and in its container.
const DockerSocket = "/var/run/docker.sock"

// RouterSocketsDir is where the router's two services share their sockets
// (paasd router-ports, package router/ports): a local volume per node,
// mounted in both.
const RouterSocketsDir = "/run/paas-router"

// RolePorts is the paas.role of the router's ports service.
const RolePorts = "router-ports"

// Timings of the router's services.
const (
	// routerStopGrace is how long Swarm lets a router that is replaced
	// finish its requests before it kills it; the router itself gives
	// them routerShutdown. (A router that failed its health check is
	// stopped the same way: the grace delays its replacement.)
	routerStopGrace = 20 * time.Second
	routerShutdown  = 15 * time.Second
	// A router that fails routerHealthRetries checks in a row, one every
	// routerHealthEvery, is replaced, routerRestartDelay after it stopped.
	// A new task counts as running only once a check passed, so a new
	// router takes traffic from an old one only once it serves. A check
	// answers in milliseconds, but each is a process started in the
	// container, which takes seconds on a loaded machine.
	routerHealthEvery   = 5 * time.Second
	routerHealthTimeout = 10 * time.Second
	routerHealthRetries = 3
	routerHealthStart   = 60 * time.Second
	routerRestartDelay  = time.Second
	// A router's rollout waits at least as long as its health checks may
	// fail before the task counts as unhealthy.
	routerRolloutMin = routerHealthStart + routerHealthEvery*routerHealthRetries
)

// RouterSpec is what the router's services run: the paasd image, the path
// of paasd in it, and the arguments of `paasd router` and `paasd
// router-ports` (the sockets directory, the shutdown timeout and the
// Docker API are set here).
type RouterSpec struct {
	Image      string
	Binary     string
	RouterArgs []string
	RouterEnv  []string
	PortsArgs  []string
	// NodeDockerSocket is where each manager's Docker socket is on that
	// machine, mounted into its ports process (DockerSocket when empty). It
	// may use Swarm's templates ({{.Node.Hostname}}) when the nodes keep it
	// in different places, as the nodes of a cluster on one machine do.
	NodeDockerSocket string
	// CertKeySecret is the text the router derives the key of sealed
	// certificate keys from (contract.CertKey); it reaches the router as a
	// Swarm secret at contract.CertKeySecretPath. None when empty.
	CertKeySecret string
	certKeyRef    *swarm.SecretReference
	// RelaySecret is the control relay's bundle (contract.RelayBundle): it
	// reaches the ports processes as a Swarm secret at
	// contract.ControlRelaySecretPath. None when empty.
	RelaySecret string
	relayRef    *swarm.SecretReference
}

// RouterServiceName returns the name of the router service.
func (s *Swarm) RouterServiceName() string { return objectName(s.name, "router") }

// PortsServiceName returns the name of the router's ports service.
func (s *Swarm) PortsServiceName() string { return objectName(s.name, "router-ports") }

// RouterVolumeName returns the name of the local volume, one per node, that
// the router's services share.
func (s *Swarm) RouterVolumeName() string { return objectName(s.name, "router-sockets") }

// EnsureRouter creates or updates the router's two services, each global on
// the manager nodes (the router reads services from the Swarm API, which
// only managers serve):
//
//   - NAME-router-ports runs `paasd router-ports` in the host's network
//     namespace: it binds the HTTP and HTTPS ports there, hands the listening
//     sockets to the routers, and serves them a read-only Docker API;
//   - NAME-router runs `paasd router` on the installation's overlay network:
//     it takes the sockets from the ports process and accepts on them, so
//     clients reach it without a userland proxy, with their own addresses.
//
// Both are health-checked (paasd router-health) and updated start-first: the
// new task takes the same sockets while the old one still serves, and the old
// one drains once the new one is healthy. No connection is refused or lost
// on a replacement; a router that stops serving is replaced.
//
// EnsureRouter returns once both run, the replaced routers included having
// stopped; a service whose new tasks fail is rolled back like an app and
// the error carries their last log lines.
func (s *Swarm) EnsureRouter(ctx context.Context, rs RouterSpec) error {
	if rs.Image == "" || rs.Binary == "" {
		return fmt.Errorf("ensure router: no image or binary")
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return err
	}
	if err := s.ensureAppNetworkPool(ctx); err != nil {
		return fmt.Errorf("ensure router: %w", err)
	}
	s.routerMu.Lock()
	defer s.routerMu.Unlock()
	if err := s.retirePublishingRouter(ctx); err != nil {
		return fmt.Errorf("ensure router: %w", err)
	}
	if rs.RelaySecret != "" {
		ref, err := s.ensureRouterSecret(ctx, RoleRelaySecret, rs.RelaySecret, contract.ControlRelaySecretPath)
		if err != nil {
			return fmt.Errorf("ensure router: %w", err)
		}
		rs.relayRef = ref
	}
	if err := s.ensureRouterService(ctx, s.portsSpec(rs), RolePorts); err != nil {
		return err
	}
	if rs.CertKeySecret != "" {
		ref, err := s.ensureRouterSecret(ctx, RoleRouterSecret, rs.CertKeySecret, contract.CertKeySecretPath)
		if err != nil {
			return fmt.Errorf("ensure router: %w", err)
		}
		rs.certKeyRef = ref
	}
	spec, err := s.routerSpec(ctx, rs)
	if err != nil {
		return fmt.Errorf("ensure router: %w", err)
	}
	if err := s.ensureRouterService(ctx, spec, RoleRouter); err != nil {
		return err
	}
	s.lastRouter = &rs
	s.log.Info("router running", "image", rs.Image)
	return nil
}

func (s *Swarm) routerLabels(role string) map[string]string {
	return map[string]string{paas.LabelInstallation: s.name, paas.LabelRole: role}
}

func (s *Swarm) socketsMount() mount.Mount {
	return mount.Mount{
		Type:          mount.TypeVolume,
		Source:        s.RouterVolumeName(),
		Target:        RouterSocketsDir,
		VolumeOptions: &mount.VolumeOptions{Labels: map[string]string{paas.LabelInstallation: s.name}},
	}
}

func routerHealth(binary string, args ...string) *container.HealthConfig {
	return &container.HealthConfig{
		Test:        append([]string{"CMD", binary, "router-health", "--sockets-dir", RouterSocketsDir}, args...),
		Interval:    routerHealthEvery,
		Timeout:     routerHealthTimeout,
		Retries:     routerHealthRetries,
		StartPeriod: routerHealthStart,
	}
}

// routerServiceSpec is what the two services have in common.
func (s *Swarm) routerServiceSpec(name, role string, cs *swarm.ContainerSpec, networks []swarm.NetworkAttachmentConfig) swarm.ServiceSpec {
	labels := s.routerLabels(role)
	cs.Labels = clone(labels)
	delay := routerRestartDelay
	return withSpecHash(swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: clone(labels)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
			Placement:     &swarm.Placement{Constraints: []string{"node.role==manager"}},
			Networks:      networks,
		},
		Mode:           swarm.ServiceMode{Global: &swarm.GlobalService{}},
		UpdateConfig:   s.updateConfig(swarm.UpdateOrderStartFirst),
		RollbackConfig: s.updateConfig(swarm.UpdateOrderStartFirst),
		EndpointSpec:   &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	})
}

// portsSpec is the ports service: in the host's network namespace (a
// service joins it through the network named "host"), with the Docker
// socket, which only it holds.
func (s *Swarm) portsSpec(rs RouterSpec) swarm.ServiceSpec {
	grace := 10 * time.Second
	return s.routerServiceSpec(s.PortsServiceName(), RolePorts, &swarm.ContainerSpec{
		Image: rs.Image,
		Args:  append(append([]string{}, rs.PortsArgs...), "--sockets-dir", RouterSocketsDir, "--docker-socket", DockerSocket),
		Mounts: []mount.Mount{
			s.socketsMount(),
			{Type: mount.TypeBind, Source: cmp.Or(rs.NodeDockerSocket, DockerSocket), Target: DockerSocket},
		},
		Healthcheck:     routerHealth(rs.Binary, "--ports"),
		StopGracePeriod: &grace,
		Secrets:         secretRefs(rs.relayRef),
	}, []swarm.NetworkAttachmentConfig{{Target: "host"}})
}

// routerSpec is the router service, on the installation's network and every
// app network, with the sockets directory and no Docker socket: it reads
// the Docker API through the ports process's read-only proxy.
func (s *Swarm) routerSpec(ctx context.Context, rs RouterSpec) (swarm.ServiceSpec, error) {
	nets, err := s.routerNetworks(ctx)
	if err != nil {
		return swarm.ServiceSpec{}, err
	}
	grace := routerStopGrace
	env := append(append([]string{}, rs.RouterEnv...), "DOCKER_HOST=unix://"+RouterSocketsDir+"/docker.sock")
	return s.routerServiceSpec(s.RouterServiceName(), RoleRouter, &swarm.ContainerSpec{
		Image:           rs.Image,
		Args:            append(append([]string{}, rs.RouterArgs...), "--sockets-dir", RouterSocketsDir, "--shutdown-timeout", routerShutdown.String()),
		Env:             env,
		Mounts:          []mount.Mount{s.socketsMount()},
		Healthcheck:     routerHealth(rs.Binary),
		StopGracePeriod: &grace,
		Secrets:         secretRefs(rs.certKeyRef),
	}, nets), nil
}

func secretRefs(ref *swarm.SecretReference) []*swarm.SecretReference {
	if ref == nil {
		return nil
	}
	return []*swarm.SecretReference{ref}
}

// The roles of the router's secrets: the router's cert key, the control
// relay's certificate for the ports processes.
const (
	RoleRouterSecret = "router-cert-key"
	RoleRelaySecret  = "control-relay"
)

// ensureRouterSecret returns a reference, as the file target, to the
// secret of role holding text (named after its content), creating it when
// missing, and removes the installation's other secrets of role that no
// service uses.
func (s *Swarm) ensureRouterSecret(ctx context.Context, role, text, target string) (*swarm.SecretReference, error) {
	sum := sha256.Sum256([]byte(text))
	name := objectName(s.name, role, hex.EncodeToString(sum[:])[:12])
	list, err := s.cli.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+role),
	)})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	id := ""
	for _, sec := range list {
		if sec.Spec.Name == name {
			id = sec.ID
			continue
		}
		// Another key's secret: gone once no router uses it.
		_ = s.cli.SecretRemove(ctx, sec.ID)
	}
	if id == "" {
		resp, err := s.cli.SecretCreate(ctx, swarm.SecretSpec{
			Annotations: swarm.Annotations{Name: name, Labels: s.routerLabels(role)},
			Data:        []byte(text),
		})
		if err != nil {
			return nil, fmt.Errorf("create the router's %s secret: %w", role, err)
		}
		id = resp.ID
	}
	return &swarm.SecretReference{
		SecretID: id, SecretName: name,
		File: &swarm.SecretReferenceFileTarget{Name: path.Base(target), UID: "0", GID: "0", Mode: 0o400},
	}, nil
}

// ensureRouterService creates or updates one of the router's services and
// waits for it, rolling it back when its new tasks fail.
func (s *Swarm) ensureRouterService(ctx context.Context, spec swarm.ServiceSpec, role string) error {
	existing, err := s.routerService(ctx, role)
	if err != nil {
		return fmt.Errorf("ensure %s: %w", role, err)
	}
	p := &progress{out: logWriter{s.log.With("service", spec.Name)}}
	r, err := s.apply(ctx, existing, spec, role)
	if err != nil {
		return fmt.Errorf("ensure %s: %w", role, err)
	}
	// The replaced tasks must have drained and stopped too: until then
	// they serve requests the control plane cannot see in the new one.
	r.waitStopped = true
	r.timeout = max(s.timeout, routerRolloutMin)
	if err := s.wait(ctx, r, p); err != nil {
		s.log.Info("rollout failed, rolling back", "service", spec.Name, "err", err)
		if rbErr := s.revert(ctx, r, p); rbErr != nil {
			return fmt.Errorf("ensure %s: %w (rollback failed too: %v)", role, err, rbErr)
		}
		return fmt.Errorf("ensure %s: %w", role, err)
	}
	return nil
}

func (s *Swarm) routerService(ctx context.Context, role string) (*swarm.Service, error) {
	svcs, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+role),
	)})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	if len(svcs) == 0 {
		return nil, nil
	}
	return &svcs[0], nil
}

// retirePublishingRouter removes a router service of the kind that
// published its ports through Docker (before the ports process): it holds
// the ports, so the ports process could not bind them. Requests are refused
// until the ports process has them, once, on that upgrade.
func (s *Swarm) retirePublishingRouter(ctx context.Context) error {
	svc, err := s.routerService(ctx, RoleRouter)
	if err != nil || svc == nil || svc.Spec.EndpointSpec == nil || len(svc.Spec.EndpointSpec.Ports) == 0 {
		return err
	}
	s.log.Warn("replacing a router that publishes its ports through Docker; requests are refused until the new one serves", "service", svc.Spec.Name)
	if err := s.cli.ServiceRemove(ctx, svc.ID); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove service %s: %w", svc.Spec.Name, err)
	}
	// Task label filters match their service's labels; the containers
	// carry the same ones.
	return s.waitContainersGone(ctx, filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+RoleRouter),
	))
}

// logWriter writes progress lines to a logger at debug level.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
