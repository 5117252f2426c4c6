package scheduler

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"paas/internal/output"
	"paas/internal/paas"
)

// RoleRun marks one-off containers.
const RoleRun = "run"

// Labels of one-off containers.
const (
	labelDyno     = "paas.dyno"     // "run.1a2b3c": the name the task's log lines carry
	labelCommand  = "paas.command"  // the command as the user gave it, for run:list
	labelDetached = "paas.detached" // "true" for run:detached tasks
	labelCron     = "paas.cron"     // the cron task a run is of (RunOptions.CronTask)
)

// A finished detached task is kept for run:logs and run:list until it is
// this old, and only the newest keepExited of an app are kept.
const (
	keepExitedFor = 24 * time.Hour
	keepExited    = 20
)

// stopGrace is how long run:stop lets a task exit on SIGTERM before it is killed.
const stopGrace = 10 * time.Second

// cnbLauncher is the CNB lifecycle's launcher, at the same path in every
// buildpacks image whatever its builder.
const cnbLauncher = "/cnb/lifecycle/launcher"

// RunOptions describe a one-off task.
type RunOptions struct {
	// Args is the command. When Args[0] names a process type of the
	// release, that process type's command runs, with Args[1:] added.
	Args   []string
	Env    []string // KEY=VALUE for this task only, over the release's config
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer      // unused with a TTY: a terminal has one output stream
	TTY    *paas.Terminal // non-nil when the task gets a terminal
	// CronTask is the ID of the cron task the task is a run of, if any:
	// a restarted paasd finds its runs still going (OneOff.CronTask).
	CronTask string
}

// OneOff is a one-off task as run:list shows it.
type OneOff struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // Docker's: created, running, exited, ...
	Command   string    `json:"command"`
	CreatedAt time.Time `json:"created_at"`
	Release   int       `json:"release"`
	Detached  bool      `json:"detached"`
	CronTask  string    `json:"cron_task,omitempty"` // the cron task it is a run of
}

// oneOffCommand returns the entrypoint (nil: the image's own) and the
// command a one-off task of rel runs for args.
//
// A buildpacks image starts every command through the CNB launcher, which
// gives it the environment the buildpacks prepared (their layers' env and
// exec.d, PATH with their bin directories). A process type runs as
// /cnb/process/TYPE, as its service does; any other command is passed after
// "--", which makes the launcher exec it directly. Without "--" the launcher
// hands the command to /bin/bash, which a run image need not have (paas's
// busybox one does not: "bash exec: no such file or directory"); the direct
// form works on every CNB image, from any builder.
//
// Any other image runs a process type's Procfile command (the image's own
// command, imageCmd, when the line is empty), and other commands as given,
// after the image's entrypoint, as Docker does.
func oneOffCommand(rel *paas.Release, args, imageCmd []string) (entrypoint, cmd []string, err error) {
	if len(args) == 0 {
		return nil, nil, errors.New("run: no command given")
	}
	extra := args[1:]
	for _, p := range rel.Processes {
		if p.Name != args[0] {
			continue
		}
		if rel.Image.CNB {
			return []string{"/cnb/process/" + p.Name}, slices.Clone(extra), nil
		}
		line, err := SplitCommand(p.Command)
		if err != nil {
			return nil, nil, fmt.Errorf("process type %s: %w", p.Name, err)
		}
		switch {
		case len(line) == 0 && len(extra) == 0:
			return nil, nil, nil // the image's own command
		case len(line) == 0:
			line = slices.Clone(imageCmd)
		}
		return nil, append(line, extra...), nil
	}
	if rel.Image.CNB {
		return []string{cnbLauncher}, append([]string{"--"}, args...), nil
	}
	return nil, slices.Clone(args), nil
}

// mergeEnv returns base with over's entries added, an entry of over replacing
// base's entry of the same key: a process sees each variable once.
func mergeEnv(base, over []string) []string {
	out := slices.Clone(base)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(e string) bool { e, _, _ = strings.Cut(e, "="); return e == k })
		out = append(out, kv)
	}
	return out
}

// displayCommand is args as a shell would take them back, for run:list.
func displayCommand(args []string) string {
	words := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) {
			words[i] = a
			continue
		}
		words[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	s := strings.Join(words, " ")
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return s
}

// oneOff is a created, not yet started, one-off container.
type oneOff struct {
	id, name string
	cfg      *container.Config
}

// create makes the container of a one-off task of rel on this node,
// attached to the app's networks with the app's config.
func (s *Swarm) create(ctx context.Context, rel *paas.Release, opts RunOptions, detached bool) (*oneOff, error) {
	if len(opts.Args) == 0 {
		return nil, errors.New("run: no command given")
	}
	ref := rel.Image.Ref()
	rc, err := s.cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: s.registryAuth()})
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := s.cli.ImageInspect(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", ref, err)
	}
	var imageCmd []string
	var imageUser string
	if img.Config != nil {
		imageCmd, imageUser = img.Config.Cmd, img.Config.User
	}
	entrypoint, cmd, err := oneOffCommand(rel, opts.Args, imageCmd)
	if err != nil {
		return nil, err
	}

	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	name := objectName(s.name, rel.App, "run", id)
	dyno := "run." + id
	env := mergeEnv(rel.Env(), append([]string{"DYNO=" + dyno}, opts.Env...))
	if opts.TTY != nil && opts.TTY.Term != "" {
		env = mergeEnv(env, []string{"TERM=" + opts.TTY.Term})
	}
	var copied []string
	if rel.Image.EnvExec {
		// The config goes in a file the wrapper reads (copyEnv), not in
		// the container's environment, which docker inspect shows.
		copied, env = env, nil
		if len(entrypoint) > 0 {
			entrypoint = append(paas.EnvExecCommand(), entrypoint...)
		}
	}
	attach := !detached
	cfg := &container.Config{
		Image:      ref,
		Entrypoint: entrypoint,
		Cmd:        cmd,
		Env:        env,
		Labels: map[string]string{
			paas.LabelInstallation: s.name,
			paas.LabelRole:         RoleRun,
			paas.LabelApp:          rel.App,
			paas.LabelRelease:      strconv.Itoa(rel.Version),
			labelDyno:              dyno,
			labelCommand:           displayCommand(opts.Args),
			labelDetached:          strconv.FormatBool(detached),
		},
		Tty:          opts.TTY != nil,
		OpenStdin:    attach,
		StdinOnce:    attach,
		AttachStdin:  attach,
		AttachStdout: attach,
		AttachStderr: attach,
	}
	if opts.CronTask != "" {
		cfg.Labels[labelCron] = opts.CronTask
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return nil, err
	}
	// The app's networks: created on the first, connected to the others
	// before it starts (API 1.41 takes one network at create).
	nets := s.networksOf(rel)
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{nets[0]: {}}}
	created, err := s.cli.ContainerCreate(ctx, cfg, &container.HostConfig{Resources: oneOffResources(rel, opts.Args), Mounts: dockerMounts(s.name, rel.Mounts)}, netCfg, nil, name)
	if err != nil {
		return nil, fmt.Errorf("create one-off container: %w", err)
	}
	for _, n := range nets[1:] {
		if err := s.cli.NetworkConnect(ctx, n, created.ID, nil); err != nil {
			s.removeContainer(created.ID)
			return nil, fmt.Errorf("connect one-off container to network %s: %w", n, err)
		}
	}
	if copied != nil {
		if err := s.copyEnv(ctx, created.ID, imageUser, copied); err != nil {
			s.removeContainer(created.ID)
			return nil, err
		}
	}
	return &oneOff{id: created.ID, name: name, cfg: cfg}, nil
}

// oneOffResources are the limits of a one-off task: those of the process
// type it runs (run APP worker), else the app's default ones.
func oneOffResources(rel *paas.Release, args []string) container.Resources {
	process := paas.ResourceDefault
	if slices.ContainsFunc(rel.Processes, func(pt paas.ProcessType) bool { return pt.Name == args[0] }) {
		process = args[0]
	}
	res := rel.ResourcesOf(process)
	return container.Resources{
		NanoCPUs: res.Limit.NanoCPUs, Memory: res.Limit.MemoryBytes,
		MemoryReservation: res.Reserve.MemoryBytes,
	}
}

// Detach starts a one-off task of rel that runs on its own, and returns its
// name. Its output is kept for OneOffLogs; it stays listed once it exits,
// until StopOneOffs removes it or it is a day old.
func (s *Swarm) Detach(ctx context.Context, rel *paas.Release, opts RunOptions) (string, error) {
	s.pruneOneOffs(ctx, rel.App)
	o, err := s.create(ctx, rel, opts, true)
	if err != nil {
		return "", err
	}
	if err := s.cli.ContainerStart(ctx, o.id, container.StartOptions{}); err != nil {
		s.removeContainer(o.id)
		return "", fmt.Errorf("start one-off container: %w", err)
	}
	return o.name, nil
}

// Run starts a one-off container of rel on this node (a Swarm manager),
// attached to the app's networks with the app's config, and connects
// it to the caller's streams. It returns the command's exit code once it
// exits; when ctx ends first (the SSH client hung up) the container is
// removed, as it is when the command exits.
func (s *Swarm) Run(ctx context.Context, rel *paas.Release, opts RunOptions) (int, error) {
	o, err := s.create(ctx, rel, opts, false)
	if err != nil {
		return 0, err
	}
	id, cfg := o.id, o.cfg
	defer s.removeContainer(id)

	att, err := s.cli.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return 0, fmt.Errorf("attach one-off container: %w", err)
	}
	defer att.Close()
	waitC, errC := s.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := s.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return 0, fmt.Errorf("start one-off container: %w", err)
	}
	if t := opts.TTY; t != nil {
		s.resize(ctx, id, t.Width, t.Height)
		go func() {
			for size := range t.Resize {
				s.resize(ctx, id, size[0], size[1])
			}
		}()
	}
	go func() {
		if opts.Stdin != nil {
			_, _ = io.Copy(att.Conn, opts.Stdin)
		}
		if !cfg.Tty {
			_ = att.CloseWrite() // end of input reaches the command
		}
		// A terminal's input does not end: closing it would hang up the
		// command. The container ends with the command, or when the
		// session does (ctx).
	}()
	outDone := make(chan error, 1)
	go func() {
		var err error
		if cfg.Tty {
			_, err = io.Copy(opts.Stdout, att.Reader)
		} else {
			_, err = stdcopy.StdCopy(opts.Stdout, opts.Stderr, att.Reader)
		}
		outDone <- err
	}()
	select {
	case res := <-waitC:
		// Let the last output through before answering.
		select {
		case <-outDone:
		case <-time.After(2 * time.Second):
		}
		if res.Error != nil {
			return 0, fmt.Errorf("one-off container: %s", res.Error.Message)
		}
		if k, ok := s.runKill(context.WithoutCancel(ctx), id, cfg, int(res.StatusCode)); ok {
			w := opts.Stderr
			if cfg.Tty || w == nil {
				w = opts.Stdout
			}
			output.Warn(w, "%s", k.String())
			if s.onKill != nil {
				s.onKill(k)
			}
		}
		return int(res.StatusCode), nil
	case err := <-errC:
		return 0, fmt.Errorf("wait for one-off container: %w", err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *Swarm) resize(ctx context.Context, id string, w, h int) {
	if w <= 0 || h <= 0 {
		return
	}
	if err := s.cli.ContainerResize(ctx, id, container.ResizeOptions{Width: uint(w), Height: uint(h)}); err != nil {
		s.log.Debug("resize one-off terminal", "err", err)
	}
}

// removeContainer removes a one-off container, even after ctx ended.
func (s *Swarm) removeContainer(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		s.log.Warn("remove one-off container", "container", id, "err", err)
	}
}

// ErrNoOneOff is returned for a one-off task name the app does not have.
var ErrNoOneOff = errors.New("no such one-off task")

// oneOffContainers lists app's one-off containers on this node, oldest
// first; with name, only that one (by name or container ID), and
// ErrNoOneOff when the app has no such task.
// With app "", those of every app.
func (s *Swarm) oneOffContainers(ctx context.Context, app, name string) ([]container.Summary, error) {
	f := filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+RoleRun),
	)
	if app != "" {
		f.Add("label", paas.LabelApp+"="+app)
	}
	cs, err := s.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list one-off containers: %w", err)
	}
	slices.SortFunc(cs, func(a, b container.Summary) int { return cmp.Compare(a.Created, b.Created) })
	if name == "" {
		return cs, nil
	}
	for _, c := range cs {
		if containerName(c) == name || c.ID == name || len(name) >= 12 && strings.HasPrefix(c.ID, name) {
			return []container.Summary{c}, nil
		}
	}
	return nil, fmt.Errorf("%w %q of %s", ErrNoOneOff, name, app)
}

func containerName(c container.Summary) string {
	if len(c.Names) == 0 {
		return c.ID[:min(len(c.ID), 12)]
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

// OneOffs lists app's one-off tasks, running and finished, oldest first.
func (s *Swarm) OneOffs(ctx context.Context, app string) ([]OneOff, error) {
	s.pruneOneOffs(ctx, app)
	cs, err := s.oneOffContainers(ctx, app, "")
	if err != nil {
		return nil, err
	}
	out := make([]OneOff, 0, len(cs))
	for _, c := range cs {
		rel, _ := strconv.Atoi(c.Labels[paas.LabelRelease])
		out = append(out, OneOff{
			Name: containerName(c), State: c.State, Command: c.Labels[labelCommand],
			CreatedAt: time.Unix(c.Created, 0).UTC(), Release: rel, Detached: c.Labels[labelDetached] == "true",
			CronTask: c.Labels[labelCron],
		})
	}
	return out, nil
}

// pruneOneOffs removes app's finished detached tasks that are older than a
// day, or beyond the newest keepExited, and finished attached ones (their
// session removes them; one is left only when paasd stopped meanwhile).
func (s *Swarm) pruneOneOffs(ctx context.Context, app string) {
	cs, err := s.oneOffContainers(ctx, app, "")
	if err != nil {
		s.log.Warn("prune one-off containers", "app", app, "err", err)
		return
	}
	var exited []container.Summary
	for _, c := range cs {
		switch {
		case c.State != "exited" && c.State != "dead":
		case c.Labels[labelDetached] == "true":
			exited = append(exited, c)
		default:
			s.removeContainer(c.ID)
		}
	}
	for i, c := range exited { // oldest first
		if len(exited)-i > keepExited || time.Since(time.Unix(c.Created, 0)) > keepExitedFor {
			s.removeContainer(c.ID)
		}
	}
}

// StopOneOffs stops app's one-off task name (every one of them when name is
// ""), giving each stopGrace to exit on SIGTERM, and removes it. It returns
// the names it stopped.
func (s *Swarm) StopOneOffs(ctx context.Context, app, name string) ([]string, error) {
	cs, err := s.oneOffContainers(ctx, app, name)
	if err != nil {
		return nil, err
	}
	var stopped []string
	for _, c := range cs {
		grace := int(stopGrace / time.Second)
		if err := s.cli.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &grace}); err != nil && !isNotFound(err) {
			return stopped, fmt.Errorf("stop %s: %w", containerName(c), err)
		}
		if err := s.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return stopped, fmt.Errorf("remove %s: %w", containerName(c), err)
		}
		stopped = append(stopped, containerName(c))
	}
	return stopped, nil
}

// removeOneOffs removes every one-off container of app at once (apps:destroy),
// of every app when app is "".
func (s *Swarm) removeOneOffs(ctx context.Context, app string) error {
	cs, err := s.oneOffContainers(ctx, app, "")
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := s.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove one-off container %s: %w", containerName(c), err)
		}
	}
	return nil
}

// OneOffLogOptions selects what OneOffLogs writes.
type OneOffLogOptions struct {
	Name   string // one task; "" for all of the app's
	Follow bool   // keep writing until the tasks exit or ctx ends
	Tail   int    // only the last Tail lines of each task; 0 for all
	Raw    bool   // the text only, without time and task
}

// OneOffLogs writes what app's one-off tasks wrote to w, one line each,
// prefixed as Logs prefixes an app's ("... app[run.1a2b3c]: ..."), in time
// order; with Follow, as the lines come.
func (s *Swarm) OneOffLogs(ctx context.Context, app string, opts OneOffLogOptions, w io.Writer) error {
	cs, err := s.oneOffContainers(ctx, app, opts.Name)
	if err != nil {
		return err
	}
	var (
		mu        sync.Mutex
		collected []logLine
		firstErr  error
		wg        sync.WaitGroup
	)
	write := func(w io.Writer, l logLine) error {
		line := l.String()
		if opts.Raw {
			line = l.text + "\n"
		}
		_, err := io.WriteString(w, line)
		return err
	}
	emit := func(l logLine) error {
		mu.Lock()
		defer mu.Unlock()
		if !opts.Follow {
			collected = append(collected, l)
			return nil
		}
		if err := write(w, l); err != nil {
			return err
		}
		flushWriter(w)
		return nil
	}
	for _, c := range cs {
		wg.Go(func() {
			err := s.containerLogs(ctx, c, opts, emit)
			if err != nil && !isNotFound(err) && ctx.Err() == nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("logs of %s's one-off tasks: %w", app, firstErr)
	}
	if opts.Follow {
		return nil
	}
	slices.SortStableFunc(collected, func(a, b logLine) int { return a.at.Compare(b.at) })
	bw := bufio.NewWriter(w)
	for _, l := range collected {
		if err := write(bw, l); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	flushWriter(w)
	return nil
}

// containerLogs streams one one-off container's lines into emit.
func (s *Swarm) containerLogs(ctx context.Context, c container.Summary, opts OneOffLogOptions, emit func(logLine) error) error {
	info, err := s.cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", containerName(c), err)
	}
	lo := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: opts.Follow, Tail: "all"}
	if opts.Tail > 0 {
		lo.Tail = strconv.Itoa(opts.Tail)
	}
	rc, err := s.cli.ContainerLogs(ctx, c.ID, lo)
	if err != nil {
		return fmt.Errorf("read logs of %s: %w", containerName(c), err)
	}
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	task := c.Labels[labelDyno]
	lines := func(payload []byte) error {
		for _, raw := range bytes.Split(bytes.TrimRight(payload, "\n"), []byte("\n")) {
			ts, text, _ := strings.Cut(string(raw), " ")
			at, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				continue
			}
			if err := emit(logLine{at: at, task: task, text: strings.TrimRight(text, "\r")}); err != nil {
				return err
			}
		}
		return nil
	}
	if info.Config != nil && info.Config.Tty {
		// A terminal's output is one stream, not framed.
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if err := lines(sc.Bytes()); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		return sc.Err()
	}
	err = readFrames(rc, func(stream byte, payload []byte) error {
		if stream != 1 && stream != 2 {
			return nil
		}
		return lines(payload)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// WaitOneOff waits until app's one-off task name is not running and
// returns its exit code (cron runs a detached task to its end).
func (s *Swarm) WaitOneOff(ctx context.Context, app, name string) (int, error) {
	cs, err := s.oneOffContainers(ctx, app, name)
	if err != nil {
		return 0, err
	}
	waitC, errC := s.cli.ContainerWait(ctx, cs[0].ID, container.WaitConditionNotRunning)
	select {
	case res := <-waitC:
		if res.Error != nil {
			return 0, fmt.Errorf("one-off container %s: %s", name, res.Error.Message)
		}
		return int(res.StatusCode), nil
	case err := <-errC:
		return 0, fmt.Errorf("wait for one-off container %s: %w", name, err)
	}
}
