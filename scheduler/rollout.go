package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"

	"paas/internal/paas"
)

// RolloutError says why new tasks did not come up. Deploy and EnsureRouter
// return it (wrapped) after rolling back; errors.As finds it.
type RolloutError struct {
	Process string   // process type, or "router"
	Task    string   // the failing task as process.slot, e.g. "web.1"; empty on a timeout with no task to blame
	State   string   // the task's state: failed, rejected, complete, pending...
	Reason  string   // the task's error as Swarm reports it, e.g. "task: non-zero exit (1)"
	Logs    []string // the last lines the failing task wrote
}

func (e *RolloutError) Error() string {
	var b strings.Builder
	if e.Task != "" {
		fmt.Fprintf(&b, "%s %s: %s", e.Task, e.State, e.Reason)
	} else {
		fmt.Fprintf(&b, "%s: %s", e.Process, e.Reason)
	}
	if len(e.Logs) > 0 {
		b.WriteString("; last log lines:")
		for _, l := range e.Logs {
			b.WriteString("\n    " + l)
		}
	}
	return b.String()
}

// rollout is one service being moved to a new spec.
type rollout struct {
	process string // process type, or "router"
	label   string // what progress lines call it
	id      string
	created bool               // the service did not exist before
	prev    *swarm.ServiceSpec // the spec before the update; nil when created
	hash    string             // spec hash of the new tasks
	want    int                // running tasks wanted; -1 for a global service
	before  map[string]bool    // tasks that existed before the update
	// noSettle makes wait return as soon as the tasks run (the settle time
	// is then waited for separately).
	noSettle bool
	// waitStopped makes wait also wait for the older tasks to stop, not
	// only to be meant to.
	waitStopped bool
	// timeout bounds wait; the scheduler's rollout timeout when zero.
	timeout time.Duration
}

func (r *rollout) timeoutOr(d time.Duration) time.Duration {
	if r.timeout > 0 {
		return r.timeout
	}
	return d
}

func (r *rollout) settleFor(d time.Duration) time.Duration {
	if r.noSettle {
		return 0
	}
	return d
}

// apply creates the service of spec, or updates svc to spec when it exists.
func (s *Swarm) apply(ctx context.Context, svc *swarm.Service, spec swarm.ServiceSpec, process string) (*rollout, error) {
	r := &rollout{process: process, label: process, hash: specHash(&spec), want: -1}
	if spec.Mode.Replicated != nil && spec.Mode.Replicated.Replicas != nil {
		r.want = int(*spec.Mode.Replicated.Replicas)
	}
	if svc == nil {
		resp, err := s.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{EncodedRegistryAuth: s.registryAuth()})
		if err != nil {
			return nil, fmt.Errorf("create service %s: %w", spec.Name, err)
		}
		for _, w := range resp.Warnings {
			s.log.Warn("service create", "service", spec.Name, "warning", w)
		}
		r.id, r.created = resp.ID, true
		return r, nil
	}
	r.id = svc.ID
	tasks, err := s.tasks(ctx, svc.ID)
	if err != nil {
		return nil, err
	}
	r.before = map[string]bool{}
	for _, t := range tasks {
		r.before[t.ID] = true
	}
	prev := svc.Spec
	r.prev = &prev
	spec.Name = svc.Spec.Name
	resp, err := s.cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{EncodedRegistryAuth: s.registryAuth()})
	if err != nil {
		return nil, fmt.Errorf("update service %s: %w", spec.Name, err)
	}
	for _, w := range resp.Warnings {
		s.log.Warn("service update", "service", spec.Name, "warning", w)
	}
	return r, nil
}

// revert undoes r: removes the service it created or puts back the spec it
// replaced, then waits for the old tasks to run again. It runs to the end
// even when ctx is cancelled, within the rollout timeout.
func (s *Swarm) revert(ctx context.Context, r *rollout, p *progress) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if r.created {
		if err := s.cli.ServiceRemove(ctx, r.id); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove service %s: %w", r.id, err)
		}
		return nil
	}
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, r.id, swarm.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect service %s: %w", r.id, err)
	}
	back, err := s.apply(ctx, &svc, *r.prev, r.process)
	if err != nil {
		return err
	}
	if back.hash == "" {
		return nil // not a spec of ours: nothing to recognise its tasks by
	}
	return s.wait(ctx, back, p)
}

// tasks lists the tasks of a service.
func (s *Swarm) tasks(ctx context.Context, serviceID string) ([]swarm.Task, error) {
	tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s: %w", serviceID, err)
	}
	return tasks, nil
}

// wait returns once the tasks of r's new spec are all running, no older task
// is still meant to run, and that has held for the settle time. It returns a
// *RolloutError as soon as a new task fails, or when the timeout passes.
func (s *Swarm) wait(ctx context.Context, r *rollout, p *progress) error {
	timeout := r.timeoutOr(s.timeout)
	deadline := time.Now().Add(timeout)
	var (
		stableKey   string
		stableSince time.Time
		reported    = -1
	)
	for {
		tasks, err := s.tasks(ctx, r.id)
		if err != nil {
			return err
		}
		var (
			running []string
			waiting *swarm.Task // a new task meant to run that does not yet
			old     int         // older tasks still meant to run
		)
		for i := range tasks {
			t := &tasks[i]
			wanted := t.DesiredState == swarm.TaskStateRunning || t.DesiredState == swarm.TaskStateReady
			if taskHash(t) != r.hash {
				if (wanted || r.waitStopped) && !terminal(t.Status.State) {
					old++
				}
				continue
			}
			if r.failedTask(t) {
				return s.failure(ctx, r, t)
			}
			if !wanted {
				continue
			}
			if t.Status.State == swarm.TaskStateRunning {
				running = append(running, t.ID)
			} else if !terminal(t.Status.State) {
				waiting = t
			}
		}
		if len(running) != reported && len(running) != r.want {
			reported = len(running)
			p.printf("       %s: %s running", r.label, s.count(len(running), r.want))
		}
		done := waiting == nil && old == 0 && (r.want < 0 && len(running) > 0 || len(running) == r.want)
		if done {
			slices.Sort(running)
			key := strings.Join(running, ",")
			if key != stableKey {
				stableKey, stableSince = key, time.Now()
			} else if time.Since(stableSince) >= r.settleFor(s.settle) {
				p.header("%s: %s running", r.label, s.count(len(running), r.want))
				return nil
			}
		} else {
			stableKey = ""
		}
		if time.Now().After(deadline) {
			e := &RolloutError{Process: r.process, State: "timeout"}
			e.Reason = fmt.Sprintf("%s running after %s", s.count(len(running), r.want), timeout)
			if waiting != nil {
				e.Task = r.taskName(waiting)
				e.State = string(waiting.Status.State)
				e.Reason = fmt.Sprintf("not running after %s: %s", timeout, taskMessage(waiting))
				if h := s.lastHealthCheck(ctx, waiting); h != "" {
					e.Reason += "; " + h
				}
				e.Logs = s.taskLogs(ctx, waiting.ID, 10)
			} else if old > 0 {
				e.Reason += fmt.Sprintf("; %d task(s) of the previous version still running", old)
			}
			return e
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.poll):
		}
	}
}

func (s *Swarm) count(running, want int) string {
	if want < 0 {
		return fmt.Sprint(running)
	}
	return fmt.Sprintf("%d/%d", running, want)
}

// failedTask reports whether t is a task of r's new spec that stopped on
// its own.
func (r *rollout) failedTask(t *swarm.Task) bool {
	return taskHash(t) == r.hash && !r.before[t.ID] && failed(t.Status.State)
}

// newFailure is the error of a task of r's new spec that stopped on its
// own, nil when none did (or the tasks cannot be listed).
func (s *Swarm) newFailure(ctx context.Context, r *rollout) error {
	tasks, err := s.tasks(ctx, r.id)
	if err != nil {
		return nil
	}
	for i := range tasks {
		if r.failedTask(&tasks[i]) {
			return s.failure(ctx, r, &tasks[i])
		}
	}
	return nil
}

// failure builds the error for a failed task, with its last log lines.
func (s *Swarm) failure(ctx context.Context, r *rollout, t *swarm.Task) error {
	return &RolloutError{
		Process: r.process,
		Task:    r.taskName(t),
		State:   string(t.Status.State),
		Reason:  taskMessage(t),
		Logs:    s.taskLogs(ctx, t.ID, 10),
	}
}

// lastHealthCheck says how the health check of t's container last ended,
// when the container has one and runs on this node: why a task stays
// "starting". It is "" when that cannot be known.
func (s *Swarm) lastHealthCheck(ctx context.Context, t *swarm.Task) string {
	cs := t.Status.ContainerStatus
	if cs == nil || cs.ContainerID == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c, err := s.cli.ContainerInspect(ctx, cs.ContainerID)
	if err != nil || c.State == nil || c.State.Health == nil {
		return ""
	}
	checks := c.State.Health.Log
	if len(checks) == 0 {
		return "no health check has ended yet"
	}
	last := checks[len(checks)-1]
	return fmt.Sprintf("last health check: exit %d: %s", last.ExitCode, strings.TrimSpace(last.Output))
}

// taskLogs returns the last n lines a task wrote, nil when they cannot be read.
func (s *Swarm) taskLogs(ctx context.Context, taskID string, n int) []string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	rc, err := s.cli.TaskLogs(ctx, taskID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(n)})
	if err != nil {
		s.log.Debug("read task logs", "task", taskID, "err", err)
		return nil
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 1<<20)); err != nil {
		s.log.Debug("read task logs", "task", taskID, "err", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func taskHash(t *swarm.Task) string {
	if t.Spec.ContainerSpec == nil {
		return ""
	}
	return t.Spec.ContainerSpec.Labels[labelSpec]
}

// taskName names a task like Dokku: process.slot.
func (r *rollout) taskName(t *swarm.Task) string {
	switch {
	case t.Slot == 0:
		return r.process // global services have no slots
	}
	return fmt.Sprintf("%s.%d", r.process, t.Slot)
}

func taskMessage(t *swarm.Task) string {
	switch {
	case t.Status.Err != "":
		return t.Status.Err
	case t.Status.State == swarm.TaskStateComplete:
		return "the process exited"
	case t.Status.Message != "" && t.Status.Message != string(t.Status.State):
		return string(t.Status.State) + ": " + t.Status.Message
	}
	return string(t.Status.State)
}

// failed reports whether a task in state st stopped on its own.
func failed(st swarm.TaskState) bool {
	return st == swarm.TaskStateFailed || st == swarm.TaskStateRejected || st == swarm.TaskStateComplete
}

// terminal reports whether a task in state st will never run again.
func terminal(st swarm.TaskState) bool {
	switch st {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed,
		swarm.TaskStateRejected, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// waitAll waits for every rollout at once; the first failure stops the others.
func (s *Swarm) waitAll(ctx context.Context, rs []*rollout, p *progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			if errs[i] = s.wait(ctx, r, p); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	var canceled error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) {
			return err
		}
		canceled = err
	}
	return canceled
}

// Remove removes every service and one-off task of app and waits until
// their containers are gone.
func (s *Swarm) Remove(ctx context.Context, app string) error {
	defer s.changing()()
	if err := s.removeOneOffs(ctx, app); err != nil {
		return err
	}
	svcs, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelApp+"="+app),
	)})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, svc := range svcs {
		if err := s.cli.ServiceRemove(ctx, svc.ID); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove service %s: %w", svc.Spec.Name, err)
		}
	}
	s.log.Info("removed services", "app", app, "count", len(svcs))
	if err := s.waitContainersGone(ctx, filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelApp+"="+app),
	)); err != nil {
		return err
	}
	return s.pruneEnvSecrets(ctx, app)
}

// waitContainersGone waits until no task in the cluster and no container on
// this node matches the label filters f. A task of a removed service may
// still be about to create its container, so both must be gone.
func (s *Swarm) waitContainersGone(ctx context.Context, f filters.Args) error {
	deadline := time.Now().Add(s.timeout)
	for {
		tasks, err := s.cli.TaskList(ctx, swarm.TaskListOptions{Filters: f})
		if err != nil {
			return fmt.Errorf("list tasks: %w", err)
		}
		cs, err := s.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if err != nil {
			return fmt.Errorf("list containers: %w", err)
		}
		if len(tasks) == 0 && len(cs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d task(s) and %d container(s) still there after %s", len(tasks), len(cs), s.timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.poll):
		}
	}
}
