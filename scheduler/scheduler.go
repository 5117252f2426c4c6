// Package scheduler turns releases into running Swarm services: one service
// per process type, rolled out start-first and rolled back when the new tasks
// do not stay up.
package scheduler

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"paas/internal/output"
	"paas/internal/paas"
)

// DockerAPI is the part of the Docker client the scheduler uses.
// *client.Client satisfies it.
type DockerAPI interface {
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkInspect(ctx context.Context, network string, options network.InspectOptions) (network.Inspect, error)
	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	NetworkRemove(ctx context.Context, network string) error
	NetworkConnect(ctx context.Context, network, container string, config *network.EndpointSettings) error

	ServiceCreate(ctx context.Context, service swarm.ServiceSpec, options swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceInspectWithRaw(ctx context.Context, serviceID string, options swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceRemove(ctx context.Context, serviceID string) error
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, service swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error)

	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
	TaskLogs(ctx context.Context, taskID string, options container.LogsOptions) (io.ReadCloser, error)
	// Which node each task is on (ps:report).
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)

	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
	ContainerInspectWithRaw(ctx context.Context, container string, getSize bool) (container.InspectResponse, []byte, error)

	// One-off tasks (run) are containers on this node.
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
	ImageInspect(ctx context.Context, imageID string, inspectOpts ...client.ImageInspectOption) (image.InspectResponse, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerAttach(ctx context.Context, container string, options container.AttachOptions) (types.HijackedResponse, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerWait(ctx context.Context, container string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerResize(ctx context.Context, container string, options container.ResizeOptions) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
	ContainerStop(ctx context.Context, container string, options container.StopOptions) error
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
	ContainerLogs(ctx context.Context, container string, options container.LogsOptions) (io.ReadCloser, error)
	CopyToContainer(ctx context.Context, container, path string, content io.Reader, options container.CopyToContainerOptions) error
	CopyFromContainer(ctx context.Context, container, srcPath string) (io.ReadCloser, container.PathStat, error)

	// A release's config reaches its tasks as a secret.
	SecretCreate(ctx context.Context, secret swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	SecretList(ctx context.Context, options swarm.SecretListOptions) ([]swarm.Secret, error)
	SecretRemove(ctx context.Context, id string) error
}

var _ DockerAPI = (*client.Client)(nil)

// Options configures a Swarm scheduler.
type Options struct {
	// Name is the installation prefix: every Swarm object is named Name+"-..."
	// and labelled paas.installation=Name.
	Name string
	// Network is the attachable overlay network every service joins
	// (Name+"-network" when empty). EnsureNetwork creates it.
	Network string
	// AppNetworkBatch is how many app networks are made at a time
	// (AppNetworkBatch when zero).
	AppNetworkBatch int
	Log             *slog.Logger
	// Timeout bounds one rollout (90s when zero).
	Timeout time.Duration
	// Settle is how long new tasks must stay running before a rollout counts
	// as done (1s when zero); the health checks run during that time.
	Settle time.Duration
	// Traffic is the router. Without it there are no health checks (a
	// rollout with checks fails) and no draining.
	Traffic Traffic
	// RegistryAuth returns the login of the installation's registry as the
	// Docker API takes it (X-Registry-Auth). Services are created and
	// updated with it, so every node pulls their image with it, as
	// `docker service create --with-registry-auth` does; one-off tasks pull
	// with it. Nil for an anonymous registry.
	RegistryAuth func() string
}

// Swarm runs releases as Docker Swarm services.
type Swarm struct {
	cli     DockerAPI
	name    string
	network string
	log     *slog.Logger
	timeout time.Duration
	settle  time.Duration
	poll    time.Duration
	traffic Traffic
	auth    func() string
	// onKill is told of an attached one-off task killed for memory (OnKill).
	onKill func(Kill)

	netMu sync.Mutex
	// routerMu serializes changes of the router service; lastRouter is
	// what EnsureRouter last ran, for attachRouter.
	routerMu   sync.Mutex
	lastRouter *RouterSpec
	netBatch   int

	counts counts // Counts' last answer
}

// New returns a scheduler for the installation opts.Name.
func New(cli DockerAPI, opts Options) *Swarm {
	s := &Swarm{
		cli:      cli,
		name:     opts.Name,
		network:  opts.Network,
		log:      opts.Log,
		timeout:  opts.Timeout,
		settle:   opts.Settle,
		poll:     300 * time.Millisecond,
		traffic:  opts.Traffic,
		auth:     opts.RegistryAuth,
		netBatch: cmp.Or(max(opts.AppNetworkBatch, 0), AppNetworkBatch),
	}
	if s.network == "" {
		s.network = opts.Name + "-network"
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "scheduler")
	if s.timeout <= 0 {
		s.timeout = 90 * time.Second
	}
	if s.settle <= 0 {
		s.settle = time.Second
	}
	return s
}

// registryAuth is the registry login to create, update and pull with ("":
// none).
func (s *Swarm) registryAuth() string {
	if s.auth == nil {
		return ""
	}
	return s.auth()
}

// Labels put on containers only.
const (
	// labelSpec holds a hash of the task template a container was made from,
	// so a rollout can tell its own tasks from older ones.
	labelSpec = "paas.spec"
)

// RoleApp and RoleRouter are the values of paas.role.
const (
	RoleApp    = "app"
	RoleRouter = "router"
)

// maxNameLen is the longest Swarm object name (a DNS label).
const maxNameLen = 63

// ServiceName returns the name of the service running process of app in
// one deployment.
func (s *Swarm) ServiceName(app, process, deployment string) string {
	return objectName(s.name, app, process, deployment)
}

// NetworkName returns the name of the installation's overlay network.
func (s *Swarm) NetworkName() string { return s.network }

// objectName joins parts with "-" into a valid Swarm object name. Characters
// Swarm refuses become "-"; a name that had to be changed or is too long is
// cut and ends with a short hash of the original, so it stays unique and
// the same on every call.
func objectName(parts ...string) string {
	orig := strings.Join(parts, "-")
	b := []byte(orig)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	name := strings.Trim(string(b), "-_")
	if name == orig && len(name) <= maxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(orig))
	suffix := hex.EncodeToString(sum[:])[:8]
	if len(name) > maxNameLen-len(suffix)-1 {
		name = name[:maxNameLen-len(suffix)-1]
	}
	name = strings.TrimRight(name, "-_")
	if name == "" {
		return "paas-" + suffix
	}
	return name + "-" + suffix
}

// EnsureNetwork creates the installation's attachable overlay network if it
// does not exist yet.
func (s *Swarm) EnsureNetwork(ctx context.Context) error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	n, err := s.cli.NetworkInspect(ctx, s.network, network.InspectOptions{})
	switch {
	case err == nil:
		// A network just created may not show its driver yet.
		if n.Scope != "swarm" || n.Driver != "overlay" && n.Driver != "" {
			return fmt.Errorf("ensure network %s: it exists with driver %s and scope %s, want an overlay network", s.network, n.Driver, n.Scope)
		}
		return nil
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("ensure network %s: %w", s.network, err)
	}
	_, err = s.cli.NetworkCreate(ctx, s.network, network.CreateOptions{
		Driver:     "overlay",
		Scope:      "swarm",
		Attachable: true,
		Labels:     map[string]string{paas.LabelInstallation: s.name},
	})
	if err != nil {
		return fmt.Errorf("create network %s: %w", s.network, err)
	}
	s.log.Info("created network", "network", s.network)
	return nil
}

func attachments(names []string) []swarm.NetworkAttachmentConfig {
	nets := make([]swarm.NetworkAttachmentConfig, len(names))
	for i, n := range names {
		nets[i] = swarm.NetworkAttachmentConfig{Target: n}
	}
	return nets
}

// appServices lists the services of app (of every app when app is ""),
// keyed by process type.
func (s *Swarm) appServices(ctx context.Context, app string) ([]swarm.Service, error) {
	f := filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+RoleApp),
	)
	if app != "" {
		f.Add("label", paas.LabelApp+"="+app)
	}
	svcs, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	slices.SortFunc(svcs, func(a, b swarm.Service) int {
		return compareProcess(a.Spec.Labels[paas.LabelProcess], b.Spec.Labels[paas.LabelProcess])
	})
	return svcs, nil
}

// compareProcess orders process types web first, then by name.
func compareProcess(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == paas.WebProcess:
		return -1
	case b == paas.WebProcess:
		return 1
	}
	return strings.Compare(a, b)
}

// processes returns the process types of rel, the image's own command as
// "web" when it declares none.
func processes(rel *paas.Release) ([]paas.ProcessType, error) {
	procs := rel.Processes
	if len(procs) == 0 {
		procs = []paas.ProcessType{{Name: paas.WebProcess}}
	}
	seen := map[string]bool{}
	for _, p := range procs {
		if p.Name == "" {
			return nil, errors.New("a process type has no name")
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("process type %q is declared twice", p.Name)
		}
		seen[p.Name] = true
	}
	procs = slices.Clone(procs)
	slices.SortFunc(procs, func(a, b paas.ProcessType) int { return compareProcess(a.Name, b.Name) })
	return procs, nil
}

// replicas returns how many tasks of proc rel asks for: its scale, else 1
// for web and 0 for the others.
func replicas(rel *paas.Release, proc string) uint64 {
	if n, ok := rel.Scale[proc]; ok {
		return uint64(max(n, 0))
	}
	if proc == paas.WebProcess {
		return 1
	}
	return 0
}

// appSpec returns the service spec of one process type of rel in deployment
// dep. The spec hash leaves the deployment out: two deployments of the same
// release run the same task template.
func (s *Swarm) appSpec(rel *paas.Release, proc paas.ProcessType, dep string) (swarm.ServiceSpec, error) {
	return s.appSpecEnv(rel, proc, dep, nil)
}

// appSpecEnv is appSpec with the tasks' config in the secret env (when not
// nil) rather than in the spec.
func (s *Swarm) appSpecEnv(rel *paas.Release, proc paas.ProcessType, dep string, env *swarm.SecretReference) (swarm.ServiceSpec, error) {
	args, err := SplitCommand(proc.Command)
	if err != nil {
		return swarm.ServiceSpec{}, fmt.Errorf("process type %s: %w", proc.Name, err)
	}
	n := replicas(rel, proc.Name)
	common := map[string]string{
		paas.LabelInstallation: s.name,
		paas.LabelRole:         RoleApp,
		paas.LabelApp:          rel.App,
		paas.LabelProcess:      proc.Name,
		paas.LabelRelease:      strconv.Itoa(rel.Version),
		paas.LabelPort:         rel.Port(),
	}
	svcLabels := clone(common)
	svcLabels[paas.LabelDeployment] = dep
	svcLabels[paas.LabelRouted] = "false"
	restartDelay := 2 * time.Second
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: s.ServiceName(rel.App, proc.Name, dep), Labels: svcLabels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:  rel.Image.Ref(),
				Labels: clone(common),
				Args:   args,
				Env:    escapeTemplates(rel.Env()),
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &restartDelay},
			Networks:      attachments(s.networksOf(rel)),
			// The tasks of a process type spread over the nodes, so losing
			// one never takes all of an app's web tasks.
			Placement: &swarm.Placement{Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.id"}}}},
		},
		Mode:           swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}},
		UpdateConfig:   s.updateConfig(swarm.UpdateOrderStartFirst),
		RollbackConfig: s.updateConfig(swarm.UpdateOrderStartFirst),
		EndpointSpec:   &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
	if res := rel.ResourcesOf(proc.Name); !res.IsZero() {
		spec.TaskTemplate.Resources = taskResources(res)
	}
	if rel.Image.CNB {
		// A buildpacks image: its launcher runs the process type as the image defines it.
		spec.TaskTemplate.ContainerSpec.Command = []string{"/cnb/process/" + proc.Name}
		spec.TaskTemplate.ContainerSpec.Args = nil
	}
	s.withStorage(&spec, rel)
	if env != nil {
		withEnvSecret(&spec, env)
	}
	spec = withSpecHash(spec)
	spec.TaskTemplate.ContainerSpec.Labels[paas.LabelDeployment] = dep
	return spec, nil
}

// taskResources are a process type's limits and reservations as Swarm
// takes them: a limit the kernel enforces on each task (memory past it is
// an OOM kill), a reservation the scheduler keeps free on the task's node.
func taskResources(res paas.ProcessResources) *swarm.ResourceRequirements {
	rr := &swarm.ResourceRequirements{}
	if !res.Limit.IsZero() {
		rr.Limits = &swarm.Limit{NanoCPUs: res.Limit.NanoCPUs, MemoryBytes: res.Limit.MemoryBytes}
	}
	if !res.Reserve.IsZero() {
		rr.Reservations = &swarm.Resources{NanoCPUs: res.Reserve.NanoCPUs, MemoryBytes: res.Reserve.MemoryBytes}
	}
	return rr
}

// escapeTemplates protects env entries from Swarm, which expands Go
// templates ("{{.Task.Slot}}") in them and refuses a service whose entry is
// not a valid template: config values reach the app byte for byte.
func escapeTemplates(env []string) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = strings.ReplaceAll(e, "{{", `{{"{{"}}`)
	}
	return out
}

func (s *Swarm) updateConfig(order string) *swarm.UpdateConfig {
	return &swarm.UpdateConfig{
		Parallelism:   1,
		FailureAction: swarm.UpdateFailureActionPause,
		Monitor:       s.settle,
		Order:         order,
	}
}

// withSpecHash labels the containers of spec with a hash of its task
// template. The hash changes exactly when Swarm replaces tasks, so tasks
// carrying it belong to this version of the service.
func withSpecHash(spec swarm.ServiceSpec) swarm.ServiceSpec {
	cs := *spec.TaskTemplate.ContainerSpec
	cs.Labels = clone(cs.Labels)
	delete(cs.Labels, labelSpec)
	tt := spec.TaskTemplate
	tt.ContainerSpec = &cs
	b, _ := json.Marshal(tt) // plain data: cannot fail
	sum := sha256.Sum256(b)
	cs.Labels[labelSpec] = hex.EncodeToString(sum[:])[:16]
	spec.TaskTemplate = tt
	return spec
}

func specHash(spec *swarm.ServiceSpec) string {
	if spec == nil || spec.TaskTemplate.ContainerSpec == nil {
		return ""
	}
	return spec.TaskTemplate.ContainerSpec.Labels[labelSpec]
}

func clone(m map[string]string) map[string]string {
	c := make(map[string]string, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	return c
}

// SplitCommand splits a Procfile command into arguments the way a POSIX shell
// would split a simple command: blanks separate words, single quotes keep
// everything literally, double quotes keep everything but \" \\ \$ \`, and a
// backslash outside quotes escapes the next character. No expansion is done,
// because a scratch image has no shell to do it. An empty command gives nil.
func SplitCommand(cmd string) ([]string, error) {
	var (
		args    []string
		word    strings.Builder
		inWord  bool
		quote   byte
		escaped bool
	)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case escaped:
			word.WriteByte(c)
			escaped = false
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				word.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(cmd) && strings.IndexByte("\"\\$`", cmd[i+1]) >= 0:
				i++
				word.WriteByte(cmd[i])
			default:
				word.WriteByte(c)
			}
		case c == '\\':
			escaped, inWord = true, true
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				args = append(args, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in command %q", quote, cmd)
	}
	if escaped {
		return nil, fmt.Errorf("command %q ends with a backslash", cmd)
	}
	if inWord {
		args = append(args, word.String())
	}
	return args, nil
}

// progress writes the lines of a rollout to out, one at a time (the
// rollout of several process types prints from several goroutines).
type progress struct {
	mu  sync.Mutex
	out io.Writer
}

func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format+"\n", args...)
	output.Flush(p.out)
}

func (p *progress) step(format string, args ...any)   { p.locked(output.Step, format, args) }
func (p *progress) header(format string, args ...any) { p.locked(output.Header, format, args) }
func (p *progress) warn(format string, args ...any)   { p.locked(output.Warn, format, args) }

func (p *progress) locked(write func(io.Writer, string, ...any), format string, args []any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	write(p.out, format, args...)
}
