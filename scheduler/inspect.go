package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// CheckNow runs the checks of rel's process types against the tasks that
// serve the app now (checks:run): a web task must pass opts.Checks (the
// default check when nil), every task of the other process types must run
// and stay up for the settle time; a process type whose gate is GateNone,
// or web without checks, only has to run. target is "" for every process
// type, TYPE for one, or TYPE.SLOT for one task. It writes a line per check
// and returns an error naming the tasks that failed.
func (s *Swarm) CheckNow(ctx context.Context, rel *paas.Release, opts DeployOptions, target string, out io.Writer) error {
	p := &progress{out: out}
	process, slot, err := parseTarget(target)
	if err != nil {
		return err
	}
	deps, err := s.deployments(ctx, rel.App)
	if err != nil {
		return err
	}
	cur := serving(deps)
	if cur == nil {
		return fmt.Errorf("%s is not running: nothing to check", rel.App)
	}
	var svcs []swarm.Service
	var names []string
	for _, svc := range cur.services {
		proc := svc.Spec.Labels[paas.LabelProcess]
		names = append(names, proc)
		if process == "" || proc == process {
			svcs = append(svcs, svc)
		}
	}
	if len(svcs) == 0 {
		return fmt.Errorf("%s has no process type %s (it runs %s)", rel.App, process, strings.Join(names, ", "))
	}
	var failed []string
	checked := 0
	for _, svc := range svcs {
		proc := svc.Spec.Labels[paas.LabelProcess]
		tasks, err := s.currentTasks(ctx, svc)
		if err != nil {
			return err
		}
		if slot > 0 {
			tasks = slices.DeleteFunc(tasks, func(t swarm.Task) bool { return t.Slot != slot })
			if len(tasks) == 0 {
				return fmt.Errorf("%s has no task %s.%d", rel.App, proc, slot)
			}
		}
		if len(tasks) == 0 {
			p.step("%s.%s: scaled to 0, nothing to check", rel.App, proc)
			continue
		}
		for _, t := range tasks {
			checked++
			name := fmt.Sprintf("%s.%d", proc, t.Slot)
			p.step("Running checks for %s.%s", rel.App, name)
			if err := s.checkTask(ctx, svc, t, opts, p); err != nil {
				p.warn("%s: %v", name, err)
				failed = append(failed, name)
				continue
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d task(s) of %s failed their checks: %s", len(failed), checked, rel.App, strings.Join(failed, ", "))
	}
	p.header("%s: %d task(s) healthy", rel.App, checked)
	return nil
}

// parseTarget reads checks:run's "", "TYPE" or "TYPE.SLOT".
func parseTarget(target string) (string, int, error) {
	if target == "" {
		return "", 0, nil
	}
	process, slot, hasSlot := strings.Cut(target, ".")
	if paas.ValidateAppName(process) != nil {
		return "", 0, fmt.Errorf("invalid process %q: want a process type or TYPE.NUMBER, e.g. web or web.2", target)
	}
	if !hasSlot {
		return process, 0, nil
	}
	n, err := strconv.Atoi(slot)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("invalid process %q: want a process type or TYPE.NUMBER, e.g. web or web.2", target)
	}
	return process, n, nil
}

// currentTasks returns the newest task of each slot of svc that is meant to
// run, by slot.
func (s *Swarm) currentTasks(ctx context.Context, svc swarm.Service) ([]swarm.Task, error) {
	tasks, err := s.tasks(ctx, svc.ID)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(tasks, func(a, b swarm.Task) int { return b.CreatedAt.Compare(a.CreatedAt) })
	seen := map[int]bool{}
	var out []swarm.Task
	for _, t := range tasks {
		if seen[t.Slot] || t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		seen[t.Slot] = true
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b swarm.Task) int { return cmp.Compare(a.Slot, b.Slot) })
	return out, nil
}

// checkTask runs one task's checks, writing a line for each.
func (s *Swarm) checkTask(ctx context.Context, svc swarm.Service, t swarm.Task, opts DeployOptions, p *progress) error {
	if t.Status.State != swarm.TaskStateRunning {
		return errors.New(taskMessage(&t))
	}
	proc := svc.Spec.Labels[paas.LabelProcess]
	if proc == paas.WebProcess {
		checks := opts.Checks
		if checks == nil {
			checks = []paas.HealthCheck{paas.DefaultCheck()}
		}
		if len(checks) > 0 {
			if s.traffic == nil {
				return errors.New("health checks need the router, and none is configured")
			}
			ip, ok := s.taskIP(t)
			if !ok {
				return errors.New("no address on the app's network")
			}
			port := mustPort(svc.Spec.Labels[paas.LabelPort])
			for _, c := range checks {
				if c.Port != 0 {
					port = uint16(c.Port)
				}
				if err := s.check(ctx, c, netip.AddrPortFrom(ip, port).String(), opts.Host); err != nil {
					return fmt.Errorf("check %s failed: %w", describeCheck(c), err)
				}
				p.printf("       %s: ok", describeCheck(c))
			}
			return nil
		}
	}
	if opts.gate(proc) != GateSettle || proc == paas.WebProcess {
		p.printf("       running (checks disabled or skipped): ok")
		return nil
	}
	// The uptime check of a rollout: up, and still up after the settle time.
	if wait := s.settle - time.Since(t.Status.Timestamp); wait > 0 {
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		tasks, err := s.tasks(ctx, svc.ID)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(tasks, func(x swarm.Task) bool { return x.ID == t.ID })
		if i < 0 {
			return errors.New("the task went away")
		}
		if t = tasks[i]; t.Status.State != swarm.TaskStateRunning {
			return errors.New(taskMessage(&t))
		}
	}
	p.printf("       running for %s: ok", time.Since(t.Status.Timestamp).Round(time.Second))
	return nil
}

// Inspect returns what Docker knows of each task of app that is meant to
// run (ps:inspect): the container's inspect document when the container is
// on this node, else the Swarm task's. Documents hold the app's environment:
// the caller masks it.
func (s *Swarm) Inspect(ctx context.Context, app string) ([]json.RawMessage, error) {
	svcs, err := s.appServices(ctx, app)
	if err != nil {
		return nil, err
	}
	var out []json.RawMessage
	for _, svc := range svcs {
		tasks, err := s.currentTasks(ctx, svc)
		if err != nil {
			return nil, err
		}
		for _, t := range tasks {
			if cs := t.Status.ContainerStatus; cs != nil && cs.ContainerID != "" {
				_, raw, err := s.cli.ContainerInspectWithRaw(ctx, cs.ContainerID, false)
				if err == nil {
					out = append(out, raw)
					continue
				}
				if !isNotFound(err) {
					return nil, fmt.Errorf("inspect container of %s.%d: %w", svc.Spec.Labels[paas.LabelProcess], t.Slot, err)
				}
			}
			raw, err := json.Marshal(t)
			if err != nil {
				return nil, err
			}
			out = append(out, raw)
		}
	}
	return out, nil
}
