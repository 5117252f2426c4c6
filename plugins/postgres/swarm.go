package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"paas/internal/paas"
)

// DockerAPI is the part of the Docker client the plugin uses.
type DockerAPI interface {
	Info(ctx context.Context) (system.Info, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	VolumeCreate(ctx context.Context, options volume.CreateOptions) (volume.Volume, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
	ServiceCreate(ctx context.Context, service swarm.ServiceSpec, options swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceRemove(ctx context.Context, serviceID string) error
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerExecCreate(ctx context.Context, containerID string, options container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, config container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
	ContainerExecResize(ctx context.Context, execID string, options container.ResizeOptions) error
}

var _ DockerAPI = (*client.Client)(nil)

// Labels of the plugin's Swarm objects.
const (
	labelDatabase = "paas.postgres"
	rolePostgres  = "postgres"
	dataDir       = "/var/lib/postgresql/data"
)

func (p *Postgres) labels(db string) map[string]string {
	return map[string]string{
		paas.LabelInstallation: p.opts.Name,
		paas.LabelRole:         rolePostgres,
		labelDatabase:          db,
	}
}

// spec is the database's service: one replica of the image, its volume on
// the data dir, on the overlay network with a DNS round-robin name (no
// IPVS needed), kept on the node that holds the volume.
func (p *Postgres) spec(db, nodeID string) swarm.ServiceSpec {
	one := uint64(1)
	grace := 30 * time.Second
	var constraints []string
	if nodeID != "" {
		constraints = []string{"node.id==" + nodeID}
	}
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: p.serviceName(db), Labels: p.labels(db)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:           p.opts.Image,
				Labels:          p.labels(db),
				Hostname:        p.serviceName(db),
				StopGracePeriod: &grace,
				Mounts: []mount.Mount{{
					Type:   mount.TypeVolume,
					Source: p.volumeName(db),
					Target: dataDir,
				}},
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
			Placement:     &swarm.Placement{Constraints: constraints},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: p.opts.Network}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
}

// start creates the volume and the service of db and waits until the server
// answers.
func (p *Postgres) start(ctx context.Context, db string) error {
	if _, err := p.opts.Docker.ImageInspect(ctx, p.opts.Image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("the Postgres image %s is not on this machine: build it with scripts/postgres/build.sh", p.opts.Image)
		}
		return fmt.Errorf("inspect image %s: %w", p.opts.Image, err)
	}
	info, err := p.opts.Docker.Info(ctx)
	if err != nil {
		return fmt.Errorf("docker info: %w", err)
	}
	if _, err := p.opts.Docker.VolumeCreate(ctx, volume.CreateOptions{Name: p.volumeName(db), Labels: p.labels(db)}); err != nil {
		return fmt.Errorf("create volume: %w", err)
	}
	if _, err := p.opts.Docker.ServiceCreate(ctx, p.spec(db, info.Swarm.NodeID), swarm.ServiceCreateOptions{}); err != nil {
		return fmt.Errorf("create service: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.ReadyTimeout)
	defer cancel()
	for {
		var out bytes.Buffer
		err := p.exec(ctx, db, []string{"pg_isready", "-q", "-U", "postgres"}, nil, &out, &out)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Postgres %s did not become ready in %s: %v", db, p.opts.ReadyTimeout, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stop removes the service and then the volume of db (backups are files in
// the data dir and stay).
func (p *Postgres) stop(ctx context.Context, db string) error {
	f := filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+p.opts.Name),
		filters.Arg("label", labelDatabase+"="+db),
	)
	svcs, err := p.opts.Docker.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, s := range svcs {
		if err := p.opts.Docker.ServiceRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove service: %w", err)
		}
	}
	// The volume is busy until the task's container is gone.
	deadline := time.Now().Add(60 * time.Second)
	for {
		cs, err := p.opts.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if err != nil {
			return fmt.Errorf("list containers: %w", err)
		}
		if len(cs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the containers of %s did not stop in 60s", db)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	for {
		err := p.opts.Docker.VolumeRemove(ctx, p.volumeName(db), false)
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove volume: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// status is the state of db's task ("running", "starting", "missing").
func (p *Postgres) status(ctx context.Context, db string) string {
	tasks, err := p.tasks(ctx, db)
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning {
			return "running"
		}
	}
	if len(tasks) == 0 {
		return "missing"
	}
	return string(tasks[0].Status.State)
}

func (p *Postgres) tasks(ctx context.Context, db string) ([]swarm.Task, error) {
	return p.opts.Docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", p.serviceName(db)),
		filters.Arg("desired-state", "running"),
	)})
}

// containerID is the container of db's running task.
func (p *Postgres) containerID(ctx context.Context, db string) (string, error) {
	tasks, err := p.tasks(ctx, db)
	if err != nil {
		return "", fmt.Errorf("list tasks: %w", err)
	}
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning && t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != "" {
			return t.Status.ContainerStatus.ContainerID, nil
		}
	}
	return "", fmt.Errorf("Postgres database %s is not running", db)
}

// exec runs argv (no shell) as the postgres user inside db's server
// container, on the overlay network where paasd itself cannot connect:
// stdin (when not nil) is copied in, stdout and stderr out. A non-zero
// exit is an error.
func (p *Postgres) exec(ctx context.Context, db string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return p.execIn(ctx, db, argv, stdin, stdout, stderr, nil)
}

// execIn is exec, in a terminal of tty's size when tty is not nil (the
// client asked for one, ssh -t): then the output is the terminal's one
// stream, the input never ends (the command ends the session), and the
// terminal follows the client's window size.
func (p *Postgres) execIn(ctx context.Context, db string, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty *paas.Terminal) error {
	cid, err := p.containerID(ctx, db)
	if err != nil {
		return err
	}
	opts := container.ExecOptions{
		User:         "postgres",
		AttachStdin:  stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Cmd:          argv,
	}
	if tty != nil {
		opts.Tty = true
		if tty.Width > 0 && tty.Height > 0 {
			opts.ConsoleSize = &[2]uint{uint(tty.Height), uint(tty.Width)}
		}
		if tty.Term != "" {
			opts.Env = []string{"TERM=" + tty.Term}
		}
	}
	created, err := p.opts.Docker.ContainerExecCreate(ctx, cid, opts)
	if err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	hj, err := p.opts.Docker.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{Tty: opts.Tty, ConsoleSize: opts.ConsoleSize})
	if err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	defer hj.Close()
	stopWatch := context.AfterFunc(ctx, func() { hj.Close() })
	defer stopWatch()
	if tty != nil {
		go func() {
			for size := range tty.Resize {
				if size[0] > 0 && size[1] > 0 {
					_ = p.opts.Docker.ContainerExecResize(ctx, created.ID, container.ResizeOptions{Width: uint(size[0]), Height: uint(size[1])})
				}
			}
		}()
	}
	if stdin != nil {
		go func() {
			io.Copy(hj.Conn, stdin)
			if tty == nil {
				hj.CloseWrite()
			}
		}()
	}
	if tty != nil {
		_, err = io.Copy(stdout, hj.Reader)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, hj.Reader)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ins, err := p.opts.Docker.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	if ins.ExitCode != 0 {
		return &exitError{cmd: argv[0], code: ins.ExitCode}
	}
	return nil
}

type exitError struct {
	cmd  string
	code int
}

func (e *exitError) Error() string { return fmt.Sprintf("%s exited with status %d", e.cmd, e.code) }

// sql runs statements through psql on the server's unix socket (trusted
// inside the container), passing them on stdin so no secret is in argv.
func (p *Postgres) sql(ctx context.Context, db, database, statements string) error {
	var out bytes.Buffer
	err := p.exec(ctx, db, []string{"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database}, strings.NewReader(statements), &out, &out)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
		}
		return err
	}
	return nil
}

// ident quotes a validated database name as an SQL identifier.
func ident(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
