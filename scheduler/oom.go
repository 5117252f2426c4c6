package scheduler

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// What tells that a task was killed for memory, as measured on Docker 20.10
// with cgroup v1: the container's State.OOMKilled (set by the daemon that
// ran it, so readable on that node only, and only while the container
// exists: Swarm keeps a failed task's container until its task history is
// pruned); the daemon's "oom" event (emitted once per OOM notification,
// possibly several per kill) followed by "die" with exitCode 137. Swarm's
// task status says only "task: non-zero exit (137)", which any SIGKILL
// gives too. So a kill is certain where the container can be inspected,
// and only likely (exit 137 under a memory limit) for a task of another node.

// exitKilled is the exit code of a process killed by SIGKILL, as the OOM
// killer does.
const exitKilled = 137

// Kill is a task killed for going past its memory limit.
type Kill struct {
	App     string    `json:"app"`
	Process string    `json:"process"`
	Task    string    `json:"task"` // "web.1", "run.1a2b3c"
	Limit   int64     `json:"limit_bytes"`
	At      time.Time `json:"at"`
	// Certain: the container's state says the kernel killed it for memory.
	// When false, its container is on another node: Swarm says it exited
	// with 137 (SIGKILL) while under a memory limit.
	Certain bool `json:"certain"`
}

// String is the line users read: "web.1 was killed: out of memory, limit 512 MB".
func (k Kill) String() string {
	limit := "no memory limit: its node ran out"
	if k.Limit > 0 {
		limit = "limit " + paas.FormatMemory(k.Limit)
	}
	if !k.Certain {
		return fmt.Sprintf("%s was killed (exit 137) on another node, most likely out of memory, %s", k.Task, limit)
	}
	return fmt.Sprintf("%s was killed: out of memory, %s", k.Task, limit)
}

// oomKilled inspects a container of this node: whether the kernel killed
// it for memory, its memory limit and when it ended. ok is false when the
// container is not here.
func (s *Swarm) oomKilled(ctx context.Context, id string) (killed bool, limit int64, at time.Time, ok bool) {
	c, err := s.cli.ContainerInspect(ctx, id)
	if err != nil || c.ContainerJSONBase == nil || c.State == nil {
		return false, 0, time.Time{}, false
	}
	if c.HostConfig != nil {
		limit = c.HostConfig.Memory
	}
	at, _ = time.Parse(time.RFC3339Nano, c.State.FinishedAt)
	return c.State.OOMKilled, limit, at, true
}

// kills returns the tasks of svc (of its task history, which Swarm keeps
// for a few tasks per slot) killed for memory.
func (s *Swarm) kills(ctx context.Context, svc swarm.Service, tasks []swarm.Task) []Kill {
	process := svc.Spec.Labels[paas.LabelProcess]
	var out []Kill
	for _, t := range tasks {
		cs := t.Status.ContainerStatus
		if t.Status.State != swarm.TaskStateFailed || cs == nil || cs.ExitCode != exitKilled {
			continue
		}
		k := Kill{App: svc.Spec.Labels[paas.LabelApp], Process: process, Task: fmt.Sprintf("%s.%d", process, t.Slot), At: t.Status.Timestamp}
		if r := t.Spec.Resources; r != nil && r.Limits != nil {
			k.Limit = r.Limits.MemoryBytes
		}
		killed, limit, at, here := s.oomKilled(ctx, cs.ContainerID)
		switch {
		case here && !killed:
			continue // a SIGKILL from elsewhere
		case here:
			k.Certain, k.Limit = true, limit
			if !at.IsZero() {
				k.At = at
			}
		case k.Limit == 0:
			continue // no limit, no way to tell
		}
		out = append(out, k)
	}
	return out
}

// EventSource is the Docker events stream (*client.Client).
type EventSource interface {
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// WatchKills reports every task and detached one-off task of this
// installation that the kernel kills for memory on this node, as it
// happens, until ctx ends. (An attached one-off task is reported by Run,
// which removes its container when it ends.) Other nodes' kills show in
// Status and Logs.
//
// The daemon's "die" event and its "oom" event come in either order, and
// State.OOMKilled read right after "die" can still be false: a die with
// exit 137 is a kill when the container's state says so, or when an "oom"
// event of that container comes before or within killGrace of it (the state
// is read once more then). When the stream breaks, it is read again from the
// last event seen, so a kill in between is not lost.
func (s *Swarm) WatchKills(ctx context.Context, src EventSource, report func(Kill)) error {
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionOOM)),
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
	)
	w := &killWatch{s: s, report: report, oom: map[string]time.Time{}, died: map[string]diedTask{}, reported: map[string]time.Time{}}
	tick := time.NewTicker(killGrace / 2)
	defer tick.Stop()
	var since string
	for {
		msgs, errs := src.Events(ctx, events.ListOptions{Filters: f, Since: since})
	read:
		for {
			select {
			case <-ctx.Done():
				return nil
			case err := <-errs:
				if ctx.Err() != nil {
					return nil
				}
				s.log.Warn("docker events ended; watching again", "err", err)
				break read
			case m := <-msgs:
				if m.TimeNano != 0 {
					since = fmt.Sprintf("%d.%09d", m.TimeNano/1e9, m.TimeNano%1e9)
				}
				w.event(ctx, m, time.Now())
			case now := <-tick.C:
				w.expire(ctx, now)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// killGrace is how long a die with exit 137 waits for its container's "oom"
// event or state.
const killGrace = 3 * time.Second

// killWatch is WatchKills' memory of recent events, by container ID.
type killWatch struct {
	s        *Swarm
	report   func(Kill)
	oom      map[string]time.Time // "oom" events seen
	died     map[string]diedTask  // dies with exit 137 not yet known to be kills
	reported map[string]time.Time // kills reported (a replayed event is not reported twice)
}

type diedTask struct {
	kill Kill
	at   time.Time
}

func (w *killWatch) event(ctx context.Context, m events.Message, now time.Time) {
	id := m.Actor.ID
	if _, done := w.reported[id]; done {
		return
	}
	if m.Action == events.ActionOOM {
		w.oom[id] = now
		if d, ok := w.died[id]; ok {
			delete(w.died, id)
			w.confirm(ctx, id, d.kill, true)
		}
		return
	}
	k, ok := killCandidate(m)
	if !ok {
		return
	}
	if _, seen := w.oom[id]; w.confirm(ctx, id, k, seen) {
		return
	}
	w.died[id] = diedTask{kill: k, at: now}
}

// confirm reports k when its container's state says the kernel killed it
// for memory, or, with oom, because an "oom" event said so.
func (w *killWatch) confirm(ctx context.Context, id string, k Kill, oom bool) bool {
	killed, limit, at, ok := w.s.oomKilled(ctx, id)
	if !ok || !(killed || oom) {
		return false
	}
	k.Limit, k.At, k.Certain = limit, at, true
	if k.At.IsZero() {
		k.At = time.Now()
	}
	w.reported[id] = time.Now()
	w.report(k)
	return true
}

// expire reads once more the state of the dies older than killGrace, and
// forgets what is older than a minute.
func (w *killWatch) expire(ctx context.Context, now time.Time) {
	for id, d := range w.died {
		if now.Sub(d.at) >= killGrace {
			delete(w.died, id)
			w.confirm(ctx, id, d.kill, false)
		}
	}
	for _, m := range []map[string]time.Time{w.oom, w.reported} {
		for id, at := range m {
			if now.Sub(at) > time.Minute {
				delete(m, id)
			}
		}
	}
}

// killCandidate reads a container's die event: the Kill it would be (task,
// process, app) when it exited with 137 and is reported here.
func killCandidate(m events.Message) (Kill, bool) {
	attrs := m.Actor.Attributes
	if m.Action != events.ActionDie || attrs["exitCode"] != strconv.Itoa(exitKilled) || attrs[paas.LabelApp] == "" {
		return Kill{}, false
	}
	if attrs[paas.LabelRole] == RoleRun && attrs[labelDetached] != "true" {
		return Kill{}, false // Run reports it
	}
	k := Kill{App: attrs[paas.LabelApp], Process: attrs[paas.LabelProcess]}
	switch {
	case attrs[labelDyno] != "":
		k.Task, k.Process = attrs[labelDyno], RoleRun
	default:
		// Swarm names a task's container SERVICE.SLOT.TASKID.
		parts := strings.Split(attrs["com.docker.swarm.task.name"], ".")
		k.Task = k.Process
		if len(parts) >= 3 {
			k.Task += "." + parts[len(parts)-2]
		}
	}
	return k, true
}

// runKill tells whether an attached one-off container that exited with
// code was killed for memory, before Run removes it.
func (s *Swarm) runKill(ctx context.Context, id string, cfg *container.Config, code int) (Kill, bool) {
	if code != exitKilled {
		return Kill{}, false
	}
	killed, limit, at, ok := s.oomKilled(ctx, id)
	if !ok || !killed {
		return Kill{}, false
	}
	return Kill{App: cfg.Labels[paas.LabelApp], Process: RoleRun, Task: cfg.Labels[labelDyno], Limit: limit, At: at, Certain: true}, true
}

// OnKill sets what is told of an attached one-off task that the kernel
// killed for memory (WatchKills reports the others).
func (s *Swarm) OnKill(fn func(Kill)) { s.onKill = fn }

// killLines are the kills of svcs' tasks as log lines (of slot alone when
// not 0).
func (s *Swarm) killLines(ctx context.Context, svcs []swarm.Service, slot int) []logLine {
	var out []logLine
	for _, svc := range svcs {
		tasks, err := s.tasks(ctx, svc.ID)
		if err != nil {
			continue // the app's own lines still show
		}
		for _, t := range tasks {
			if slot != 0 && t.Slot != slot {
				continue
			}
			for _, k := range s.kills(ctx, svc, []swarm.Task{t}) {
				out = append(out, logLine{at: k.At, task: k.Task, text: k.String()})
			}
		}
	}
	return out
}
