package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"paas/internal/paas"
)

// DockerAPI is the part of the Docker client the plugin uses. It talks to
// the daemon of the Swarm manager paasd runs on; a database may run on any
// node, and is reached from this node (see exec).
type DockerAPI interface {
	Info(ctx context.Context) (system.Info, error)
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
	NodeInspectWithRaw(ctx context.Context, nodeID string) (swarm.Node, []byte, error)
	SecretCreate(ctx context.Context, secret swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	SecretList(ctx context.Context, options swarm.SecretListOptions) ([]swarm.Secret, error)
	SecretRemove(ctx context.Context, id string) error
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkInspect(ctx context.Context, network string, options network.InspectOptions) (network.Inspect, error)
	NetworkRemove(ctx context.Context, network string) error
	ServiceCreate(ctx context.Context, service swarm.ServiceSpec, options swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceInspectWithRaw(ctx context.Context, serviceID string, options swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceRemove(ctx context.Context, serviceID string) error
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerAttach(ctx context.Context, container string, options container.AttachOptions) (types.HijackedResponse, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerWait(ctx context.Context, container string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerResize(ctx context.Context, container string, options container.ResizeOptions) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
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
	// roleClient marks the one-off containers that reach a database on
	// another node.
	roleClient = "postgres-client"
	dataDir    = "/var/lib/postgresql/data"
	// passwordFile is where the server's container finds its Swarm secret,
	// the password initdb gives the postgres role (the image's entrypoint
	// reads POSTGRES_PASSWORD_FILE).
	passwordFile = "/run/secrets/postgres-password"
)

func (p *Postgres) labels(db string) map[string]string {
	return map[string]string{
		paas.LabelInstallation: p.opts.Name,
		paas.LabelRole:         rolePostgres,
		labelDatabase:          db,
	}
}

// volumeOf is db's data volume: named at creation, or, for a database
// created before volumes had a per-creation name, by the database's name.
func (p *Postgres) volumeOf(db *Database) string {
	if db.Volume != "" {
		return db.Volume
	}
	return p.volumeName(db.Name)
}

// spec is the database's service: one replica of the image, its volume on
// the data dir, on the overlay network with a DNS round-robin name (no
// IPVS needed), kept on the node that holds the volume (a named volume is
// local to its node), with its password as a Swarm secret.
func (p *Postgres) spec(db *Database, nodeID string, secret *swarm.SecretReference) swarm.ServiceSpec {
	one := uint64(1)
	grace := 30 * time.Second
	var constraints []string
	if nodeID != "" {
		constraints = []string{nodeConstraint + nodeID}
	}
	cs := &swarm.ContainerSpec{
		Image:           p.opts.Image,
		Labels:          p.labels(db.Name),
		Hostname:        p.serviceName(db.Name),
		StopGracePeriod: &grace,
		Mounts: []mount.Mount{{
			Type:   mount.TypeVolume,
			Source: p.volumeOf(db),
			Target: dataDir,
			// The node creates the volume with the task: labelled, so
			// the installation's clean-up finds it.
			VolumeOptions: &mount.VolumeOptions{Labels: p.labels(db.Name)},
		}},
	}
	if secret != nil {
		cs.Secrets = []*swarm.SecretReference{secret}
		cs.Env = []string{"POSTGRES_PASSWORD_FILE=" + passwordFile}
	}
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: p.serviceName(db.Name), Labels: p.labels(db.Name)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
			Placement:     &swarm.Placement{Constraints: constraints},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: p.networkOf(db)}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
}

const nodeConstraint = "node.id=="

// localNode is the Swarm ID of the node paasd's daemon runs, asked once.
func (p *Postgres) localNode(ctx context.Context) (string, error) {
	p.mu.Lock()
	id := p.nodeID
	p.mu.Unlock()
	if id != "" {
		return id, nil
	}
	info, err := p.opts.Docker.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("docker info: %w", err)
	}
	if info.Swarm.NodeID == "" {
		return "", errors.New("this Docker daemon is not a Swarm node")
	}
	p.mu.Lock()
	p.nodeID = info.Swarm.NodeID
	p.mu.Unlock()
	return info.Swarm.NodeID, nil
}

// ErrNoNode is returned when a database cannot be placed on the node asked for.
var ErrNoNode = errors.New("no such node")

// placement picks the node a new database is pinned to: the node named
// want (a hostname or an ID), or, when want is "", this node, or when this
// node takes no new tasks, the first ready and active node by name. The
// node must be ready and active (not paused or drained).
func (p *Postgres) placement(ctx context.Context, want string) (swarm.Node, error) {
	nodes, err := p.opts.Docker.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return swarm.Node{}, fmt.Errorf("list nodes: %w", err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Description.Hostname < nodes[j].Description.Hostname })
	usable := func(n swarm.Node) error {
		if n.Status.State != swarm.NodeStateReady {
			return fmt.Errorf("node %s is %s: choose a ready node", n.Description.Hostname, n.Status.State)
		}
		if n.Spec.Availability != swarm.NodeAvailabilityActive {
			return fmt.Errorf("node %s's availability is %s: choose an active node", n.Description.Hostname, n.Spec.Availability)
		}
		return nil
	}
	if want != "" {
		for _, n := range nodes {
			if n.ID == want || n.Description.Hostname == want {
				return n, usable(n)
			}
		}
		return swarm.Node{}, fmt.Errorf("%w %q in the swarm", ErrNoNode, want)
	}
	local, err := p.localNode(ctx)
	if err != nil {
		return swarm.Node{}, err
	}
	for _, n := range nodes {
		if n.ID == local && usable(n) == nil {
			return n, nil
		}
	}
	for _, n := range nodes {
		if usable(n) == nil {
			return n, nil
		}
	}
	return swarm.Node{}, fmt.Errorf("%w: no node of the swarm is ready and active", ErrNoNode)
}

// pinnedNode is the ID of the node db's service is constrained to ("" when
// the service is missing or has no such constraint).
func (p *Postgres) pinnedNode(ctx context.Context, db string) (string, error) {
	svc, _, err := p.opts.Docker.ServiceInspectWithRaw(ctx, p.serviceName(db), swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect service: %w", err)
	}
	if pl := svc.Spec.TaskTemplate.Placement; pl != nil {
		for _, c := range pl.Constraints {
			if id, ok := strings.CutPrefix(strings.ReplaceAll(c, " ", ""), nodeConstraint); ok {
				return id, nil
			}
		}
	}
	return "", nil
}

// nodeName is the hostname of node id (the ID when it cannot be read: a
// node that was removed from the swarm).
func (p *Postgres) nodeName(ctx context.Context, id string) string {
	n, _, err := p.opts.Docker.NodeInspectWithRaw(ctx, id)
	if err != nil || n.Description.Hostname == "" {
		return id
	}
	return n.Description.Hostname
}

// start creates the secret and the service of db on node and waits until
// the server answers.
func (p *Postgres) start(ctx context.Context, db *Database, node string) error {
	if _, err := p.opts.Docker.ImageInspect(ctx, p.opts.Image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("the Postgres image %s is not on this machine: build it with scripts/postgres/build.sh", p.opts.Image)
		}
		return fmt.Errorf("inspect image %s: %w", p.opts.Image, err)
	}
	secretName := strings.TrimSuffix(db.Volume, "-data")
	if secretName == "" {
		secretName = p.serviceName(db.Name)
	}
	sec, err := p.opts.Docker.SecretCreate(ctx, swarm.SecretSpec{
		Annotations: swarm.Annotations{Name: secretName, Labels: p.labels(db.Name)},
		Data:        []byte(db.Password),
	})
	if err != nil {
		return fmt.Errorf("create secret: %w", err)
	}
	ref := &swarm.SecretReference{
		SecretID: sec.ID, SecretName: secretName,
		File: &swarm.SecretReferenceFileTarget{Name: path.Base(passwordFile), UID: "0", GID: "0", Mode: 0o444},
	}
	if err := p.ensureNetwork(ctx, db); err != nil {
		return err
	}
	if _, err := p.opts.Docker.ServiceCreate(ctx, p.spec(db, node, ref), swarm.ServiceCreateOptions{}); err != nil {
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
		// A task Swarm rejected (no such image on the node, no room) will
		// not start by waiting: say why at once.
		if tasks, terr := p.opts.Docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", p.serviceName(db.Name)))}); terr == nil {
			for _, t := range tasks {
				if t.Status.State == swarm.TaskStateRejected && t.Status.Err != "" {
					hint := ""
					if strings.Contains(t.Status.Err, "No such image") {
						hint = " (build the image there: scripts/postgres/build.sh)"
					}
					return fmt.Errorf("Swarm rejected the task of %s on node %s: %s%s", db.Name, p.nodeName(ctx, t.NodeID), t.Status.Err, hint)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Postgres %s did not become ready in %s: %v", db.Name, p.opts.ReadyTimeout, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stop removes the service, the secret and then the volume of db (backups
// are files in the data dir and stay). A volume on another node cannot be
// removed from here (Swarm has no API for a node's volumes): then kept is
// the node that keeps it, and emptied whether its data was deleted (see
// empty).
func (p *Postgres) stop(ctx context.Context, db *Database) (kept string, emptied bool, err error) {
	f := filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+p.opts.Name),
		filters.Arg("label", labelDatabase+"="+db.Name),
	)
	local, err := p.localNode(ctx)
	if err != nil {
		return "", false, err
	}
	node, err := p.pinnedNode(ctx, db.Name)
	if err != nil {
		return "", false, err
	}
	svcs, err := p.opts.Docker.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		return "", false, fmt.Errorf("list services: %w", err)
	}
	var removed []string
	for _, s := range svcs {
		removed = append(removed, s.ID)
		if err := p.opts.Docker.ServiceRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return "", false, fmt.Errorf("remove service: %w", err)
		}
	}
	secrets, err := p.opts.Docker.SecretList(ctx, swarm.SecretListOptions{Filters: f})
	if err != nil {
		return "", false, fmt.Errorf("list secrets: %w", err)
	}
	for _, s := range secrets {
		if err := p.opts.Docker.SecretRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return "", false, fmt.Errorf("remove secret: %w", err)
		}
	}
	defer p.removeNetwork(ctx, db)
	if node != "" && node != local {
		if err := p.empty(ctx, db, node, removed); err != nil {
			p.log.Warn("empty the volume of a destroyed database", "db", db.Name, "node", node, "err", err)
			return p.nodeName(ctx, node), false, nil
		}
		return p.nodeName(ctx, node), true, nil
	}
	// The volume is busy until the task's container is gone.
	deadline := time.Now().Add(60 * time.Second)
	for {
		cs, err := p.opts.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if err != nil {
			return "", false, fmt.Errorf("list containers: %w", err)
		}
		if len(cs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return "", false, fmt.Errorf("the containers of %s did not stop in 60s", db.Name)
		}
		select {
		case <-ctx.Done():
			return "", false, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	for {
		err := p.opts.Docker.VolumeRemove(ctx, p.volumeOf(db), false)
		if err == nil || cerrdefs.IsNotFound(err) {
			return "", false, nil
		}
		if time.Now().After(deadline) {
			return "", false, fmt.Errorf("remove volume: %w", err)
		}
		select {
		case <-ctx.Done():
			return "", false, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// networkOf is db's network: its own, or the installation's for a
// database made before databases had networks of their own.
func (p *Postgres) networkOf(db *Database) string {
	if db.Network != "" {
		return db.Network
	}
	return p.opts.Network
}

// ensureNetwork creates db's own network: attachable (the one-off client
// containers join it), labelled as the installation's, so that only the
// apps linked to db reach it.
func (p *Postgres) ensureNetwork(ctx context.Context, db *Database) error {
	if db.Network == "" {
		return nil
	}
	n, err := p.opts.Docker.NetworkInspect(ctx, db.Network, network.InspectOptions{})
	switch {
	case err == nil && n.Labels[paas.LabelInstallation] == p.opts.Name:
		return nil
	case err == nil:
		return fmt.Errorf("network %s exists and is not this installation's", db.Network)
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("inspect network %s: %w", db.Network, err)
	}
	labels := p.labels(db.Name)
	labels[paas.LabelNetworkRole] = paas.NetworkRoleService
	if _, err := p.opts.Docker.NetworkCreate(ctx, db.Network, network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: true, Labels: labels}); err != nil {
		return fmt.Errorf("create network %s: %w", db.Network, err)
	}
	return nil
}

// removeNetwork removes db's own network once the tasks on it are gone (a
// few seconds after their service), or says that it stays.
func (p *Postgres) removeNetwork(ctx context.Context, db *Database) {
	if db.Network == "" {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.opts.Docker.NetworkRemove(ctx, db.Network)
		if err == nil || cerrdefs.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.log.Warn("the network of a destroyed database stays", "db", db.Name, "network", db.Network, "err", err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// roleEmpty marks the job that empties a destroyed database's volume on
// another node.
const roleEmpty = "postgres-empty"

// empty deletes the data in db's volume on node, once the tasks of the
// removed services are gone from it, through a one-off Swarm job pinned to
// the node that mounts the volume (paasd has no socket of that node). The
// empty volume stays.
func (p *Postgres) empty(ctx context.Context, db *Database, node string, removed []string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	onNode := filters.NewArgs(filters.Arg("node", node))
	for {
		tasks, err := p.opts.Docker.TaskList(ctx, swarm.TaskListOptions{Filters: onNode})
		if err != nil {
			return fmt.Errorf("list tasks: %w", err)
		}
		if !slices.ContainsFunc(tasks, func(t swarm.Task) bool { return slices.Contains(removed, t.ServiceID) }) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server of %s did not stop: %w", db.Name, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	labels := p.labels(db.Name)
	labels[paas.LabelRole] = roleEmpty
	one := uint64(1)
	job, err := p.opts.Docker.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: p.serviceName(db.Name) + "-empty", Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:   p.opts.Image,
				Labels:  labels,
				Command: []string{"find", dataDir, "-mindepth", "1", "-delete"},
				Mounts:  []mount.Mount{{Type: mount.TypeVolume, Source: p.volumeOf(db), Target: dataDir}},
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: []string{nodeConstraint + node}},
		},
		Mode: swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: &one, TotalCompletions: &one}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		return fmt.Errorf("create the job: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := p.opts.Docker.ServiceRemove(rctx, job.ID); err != nil && !cerrdefs.IsNotFound(err) {
			p.log.Warn("remove the job that emptied a volume", "db", db.Name, "err", err)
		}
	}()
	for {
		tasks, err := p.opts.Docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", job.ID))})
		if err != nil {
			return fmt.Errorf("list the job's tasks: %w", err)
		}
		for _, t := range tasks {
			switch t.Status.State {
			case swarm.TaskStateComplete:
				return nil
			case swarm.TaskStateFailed, swarm.TaskStateRejected:
				return fmt.Errorf("the job %s: %s", t.Status.State, t.Status.Err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the job did not complete: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
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

// server is db's running task: the node it runs on and its container.
func (p *Postgres) server(ctx context.Context, db string) (node, containerID string, err error) {
	tasks, err := p.tasks(ctx, db)
	if err != nil {
		return "", "", fmt.Errorf("list tasks: %w", err)
	}
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning && t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != "" {
			return t.NodeID, t.Status.ContainerStatus.ContainerID, nil
		}
	}
	return "", "", fmt.Errorf("Postgres database %s is not running", db)
}

// exec runs argv (no shell; psql, pg_dump, pg_restore or pg_isready) as
// the postgres user against db's server, on the overlay network where
// paasd itself cannot connect: stdin (when not nil) is copied in, stdout
// and stderr out. A non-zero exit is an error.
func (p *Postgres) exec(ctx context.Context, db *Database, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return p.execIn(ctx, db, argv, stdin, stdout, stderr, nil)
}

// execIn is exec, in a terminal of tty's size when tty is not nil (the
// client asked for one, ssh -t): then the output is the terminal's one
// stream, the input never ends (the command ends the session), and the
// terminal follows the client's window size.
//
// A server on this node is reached in its own container (docker exec, the
// unix socket). One on another node is reached without that node's
// Docker socket: a one-off container of the same image on this node,
// attached to the overlay network, runs the command against the service's
// name with the database's password (see client).
func (p *Postgres) execIn(ctx context.Context, db *Database, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty *paas.Terminal) error {
	node, cid, err := p.server(ctx, db.Name)
	if err != nil {
		return err
	}
	local, err := p.localNode(ctx)
	if err != nil {
		return err
	}
	if node != local {
		return p.client(ctx, db, argv, stdin, stdout, stderr, tty)
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
	resize := func(w, h int) error {
		return p.opts.Docker.ContainerExecResize(ctx, created.ID, container.ResizeOptions{Width: uint(w), Height: uint(h)})
	}
	if err := stream(ctx, hj, stdin, stdout, stderr, tty, resize); err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
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

// stream connects a hijacked exec or attach connection to the caller's
// streams until the output ends (the command exited) or ctx does, and
// closes it.
func stream(ctx context.Context, hj types.HijackedResponse, stdin io.Reader, stdout, stderr io.Writer, tty *paas.Terminal, resize func(w, h int) error) error {
	defer hj.Close()
	stopWatch := context.AfterFunc(ctx, func() { hj.Close() })
	defer stopWatch()
	if tty != nil {
		go func() {
			for size := range tty.Resize {
				if size[0] > 0 && size[1] > 0 {
					_ = resize(size[0], size[1])
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
	var err error
	if tty != nil {
		_, err = io.Copy(stdout, hj.Reader)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, hj.Reader)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// removeClients removes the installation's client containers that exited:
// a paasd that stopped in the middle of a command leaves its one.
func (p *Postgres) removeClients(ctx context.Context) {
	cs, err := p.opts.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+p.opts.Name),
		filters.Arg("label", paas.LabelRole+"="+roleClient),
	)})
	if err != nil {
		p.log.Warn("list client containers", "err", err)
		return
	}
	for _, c := range cs {
		if c.State != "exited" && c.State != "dead" {
			continue
		}
		if err := p.opts.Docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			p.log.Warn("remove client container", "container", c.ID, "err", err)
		}
	}
}

// client runs argv in a one-off container on this node (a Swarm manager)
// from the database's own image, attached to the installation's overlay
// network, connecting to the service's name over TCP with the database's
// password (libpq's PG* environment, so argv is the same as in the server's
// container). The container is removed when the command ends, or when ctx
// does.
func (p *Postgres) client(ctx context.Context, db *Database, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty *paas.Terminal) error {
	labels := p.labels(db.Name)
	labels[paas.LabelRole] = roleClient
	cfg := &container.Config{
		Image:      p.opts.Image,
		User:       "postgres",
		Entrypoint: argv[:1],
		Cmd:        argv[1:],
		Env: []string{
			"PGHOST=" + p.serviceName(db.Name),
			"PGPORT=5432",
			"PGPASSWORD=" + db.Password,
			"PGSSLMODE=disable", // inside the overlay, as apps connect
			"PGCONNECT_TIMEOUT=10",
		},
		Labels:       labels,
		Tty:          tty != nil,
		OpenStdin:    stdin != nil,
		StdinOnce:    stdin != nil,
		AttachStdin:  stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
	}
	if tty != nil && tty.Term != "" {
		cfg.Env = append(cfg.Env, "TERM="+tty.Term)
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{p.networkOf(db): {}}}
	created, err := p.opts.Docker.ContainerCreate(ctx, cfg, &container.HostConfig{}, netCfg, nil, "")
	if err != nil {
		return fmt.Errorf("%s: create a client container: %w", argv[0], err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := p.opts.Docker.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			p.log.Warn("remove client container", "db", db.Name, "container", created.ID, "err", err)
		}
	}()
	hj, err := p.opts.Docker.ContainerAttach(ctx, created.ID, container.AttachOptions{Stream: true, Stdin: stdin != nil, Stdout: true, Stderr: true})
	if err != nil {
		return fmt.Errorf("%s: attach the client container: %w", argv[0], err)
	}
	waitC, errC := p.opts.Docker.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := p.opts.Docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		hj.Close()
		return fmt.Errorf("%s: start the client container: %w", argv[0], err)
	}
	resize := func(w, h int) error {
		return p.opts.Docker.ContainerResize(ctx, created.ID, container.ResizeOptions{Width: uint(w), Height: uint(h)})
	}
	if tty != nil && tty.Width > 0 && tty.Height > 0 {
		_ = resize(tty.Width, tty.Height)
	}
	if err := stream(ctx, hj, stdin, stdout, stderr, tty, resize); err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	select {
	case res := <-waitC:
		if res.Error != nil {
			return fmt.Errorf("%s: client container: %s", argv[0], res.Error.Message)
		}
		if res.StatusCode != 0 {
			return &exitError{cmd: argv[0], code: int(res.StatusCode)}
		}
		return nil
	case err := <-errC:
		return fmt.Errorf("%s: wait for the client container: %w", argv[0], err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

type exitError struct {
	cmd  string
	code int
}

func (e *exitError) Error() string { return fmt.Sprintf("%s exited with status %d", e.cmd, e.code) }

// sql runs statements through psql on the server's unix socket (trusted
// inside the container), passing them on stdin so no secret is in argv.
func (p *Postgres) sql(ctx context.Context, db *Database, database, statements string) error {
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
