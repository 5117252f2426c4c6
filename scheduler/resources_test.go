package scheduler

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

func TestAppSpecResources(t *testing.T) {
	s := New(nil, Options{Name: "paas"})
	rel := &paas.Release{
		App: "hello", Version: 2, Image: paas.Image{Repository: "r/hello", Digest: "sha256:1"},
		Processes: []paas.ProcessType{{Name: "web"}, {Name: "worker"}},
		Resources: paas.ResourceSettings{
			Limits:       map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 512 << 20}, "web": {NanoCPUs: 1e9}},
			Reservations: map[string]paas.Resources{"web": {MemoryBytes: 256 << 20}},
		},
		GlobalResources: paas.ResourceSettings{Limits: map[string]paas.Resources{paas.ResourceDefault: {NanoCPUs: 2e9}}},
	}
	tests := []struct {
		process string
		want    swarm.ResourceRequirements
	}{
		{"web", swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: 1e9, MemoryBytes: 512 << 20}, Reservations: &swarm.Resources{MemoryBytes: 256 << 20}}},
		{"worker", swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: 2e9, MemoryBytes: 512 << 20}}},
	}
	for _, tt := range tests {
		spec, err := s.appSpec(rel, paas.ProcessType{Name: tt.process}, "v2-aaaaaa")
		if err != nil {
			t.Fatal(err)
		}
		got := spec.TaskTemplate.Resources
		if got == nil || *got.Limits != *tt.want.Limits || (tt.want.Reservations == nil) != (got.Reservations == nil) ||
			(got.Reservations != nil && (got.Reservations.MemoryBytes != tt.want.Reservations.MemoryBytes || got.Reservations.NanoCPUs != tt.want.Reservations.NanoCPUs)) {
			t.Fatalf("%s resources %+v, want limits %+v reservations %+v", tt.process, got, tt.want.Limits, tt.want.Reservations)
		}
	}

	// no setting: no resources in the spec (and the task hash of releases
	// made before limits existed stays the same)
	plain := *rel
	plain.Resources, plain.GlobalResources = paas.ResourceSettings{}, paas.ResourceSettings{}
	base, _ := s.appSpec(&plain, paas.ProcessType{Name: "web"}, "v2-aaaaaa")
	if base.TaskTemplate.Resources != nil {
		t.Fatalf("no limits set, spec has %+v", base.TaskTemplate.Resources)
	}
	limited, _ := s.appSpec(rel, paas.ProcessType{Name: "web"}, "v2-aaaaaa")
	if specHash(&limited) == specHash(&base) {
		t.Fatal("a limit change kept the task hash: the rollout would keep the old tasks")
	}
}

func TestOneOffResources(t *testing.T) {
	rel := &paas.Release{
		Processes: []paas.ProcessType{{Name: "web"}, {Name: "worker"}},
		Resources: paas.ResourceSettings{
			Limits:       map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 64 << 20, NanoCPUs: 5e8}, "worker": {MemoryBytes: 1 << 30}},
			Reservations: map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 32 << 20}},
		},
	}
	if got, want := oneOffResources(rel, []string{"sh", "-c", "true"}), (container.Resources{NanoCPUs: 5e8, Memory: 64 << 20, MemoryReservation: 32 << 20}); got.NanoCPUs != want.NanoCPUs || got.Memory != want.Memory || got.MemoryReservation != want.MemoryReservation {
		t.Fatalf("run sh: %+v, want the app's default limits %+v", got, want)
	}
	if got := oneOffResources(rel, []string{"worker"}); got.Memory != 1<<30 || got.NanoCPUs != 5e8 {
		t.Fatalf("run worker: %+v, want the worker's limits", got)
	}
}

// inspectOnly is a Docker API that knows only its containers' states.
type inspectOnly struct {
	DockerAPI
	containers map[string]container.InspectResponse
}

func (f inspectOnly) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	c, ok := f.containers[id]
	if !ok {
		return container.InspectResponse{}, errors.New("No such container: " + id)
	}
	return c, nil
}

func TestKills(t *testing.T) {
	state := func(oom bool, memory int64) container.InspectResponse {
		return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
			State:      &container.State{OOMKilled: oom, ExitCode: 137, FinishedAt: "2026-12-02T09:00:00Z"},
			HostConfig: &container.HostConfig{Resources: container.Resources{Memory: memory}},
		}}
	}
	s := New(inspectOnly{containers: map[string]container.InspectResponse{
		"oom": state(true, 48<<20), "killed": state(false, 48<<20),
	}}, Options{Name: "paas"})

	// the die and oom events of the daemon, through WatchKills' memory
	event := func(action events.Action, id string, attrs map[string]string) events.Message {
		a := map[string]string{"exitCode": "137", paas.LabelApp: "hello", paas.LabelProcess: "web", "com.docker.swarm.task.name": "paas-hello-web-v1.2.abcdef"}
		for k, v := range attrs {
			a[k] = v
		}
		return events.Message{Action: action, Actor: events.Actor{ID: id, Attributes: a}}
	}
	die := func(id string, attrs map[string]string) events.Message { return event(events.ActionDie, id, attrs) }
	oom := func(id string) events.Message { return event(events.ActionOOM, id, nil) }
	t0 := time.Now()
	// watch feeds msgs a second apart, then lets the grace pass
	watch := func(msgs ...events.Message) []string {
		var got []string
		w := &killWatch{s: s, report: func(k Kill) { got = append(got, k.String()) }, oom: map[string]time.Time{}, died: map[string]diedTask{}, reported: map[string]time.Time{}}
		now := t0
		for _, m := range msgs {
			w.event(context.Background(), m, now)
			now = now.Add(time.Second)
		}
		w.expire(context.Background(), now.Add(killGrace))
		return got
	}
	web2 := []string{"web.2 was killed: out of memory, limit 48 MB"}
	for _, c := range []struct {
		name string
		msgs []events.Message
		want []string
	}{
		{"its state says so", []events.Message{die("oom", nil)}, web2},
		{"replayed after the stream broke", []events.Message{die("oom", nil), die("oom", nil)}, web2},
		{"oom before die, state not yet set", []events.Message{oom("killed"), die("killed", nil)}, web2},
		{"die before oom, state not yet set", []events.Message{die("killed", nil), oom("killed")}, web2},
		{"a SIGKILL that was not the OOM killer's", []events.Message{die("killed", nil)}, nil},
		{"an oom event of a process that did not end the task", []events.Message{oom("killed")}, nil},
		{"exit 1", []events.Message{die("oom", map[string]string{"exitCode": "1"})}, nil},
		{"an attached one-off task (Run reports it)", []events.Message{die("oom", map[string]string{paas.LabelRole: RoleRun, labelDetached: "false", labelDyno: "run.abc"})}, nil},
		{"a detached one-off task", []events.Message{die("oom", map[string]string{paas.LabelRole: RoleRun, labelDetached: "true", labelDyno: "run.abc"})}, []string{"run.abc was killed: out of memory, limit 48 MB"}},
		{"a container gone", []events.Message{oom("gone"), die("gone", nil)}, nil},
	} {
		if got := watch(c.msgs...); !slices.Equal(got, c.want) {
			t.Errorf("%s: reported %q, want %q", c.name, got, c.want)
		}
	}

	// the state read again after the grace: set late by the daemon
	late := inspectOnly{containers: map[string]container.InspectResponse{"late": state(false, 48<<20)}}
	s.cli = late
	var lateGot []string
	w := &killWatch{s: s, report: func(k Kill) { lateGot = append(lateGot, k.String()) }, oom: map[string]time.Time{}, died: map[string]diedTask{}, reported: map[string]time.Time{}}
	w.event(context.Background(), die("late", nil), t0)
	w.expire(context.Background(), t0.Add(time.Second))
	if lateGot != nil {
		t.Fatalf("reported before the grace ended: %q", lateGot)
	}
	late.containers["late"] = state(true, 48<<20)
	w.expire(context.Background(), t0.Add(killGrace))
	if !slices.Equal(lateGot, web2) {
		t.Fatalf("state set late: reported %q, want %q", lateGot, web2)
	}
	s.cli = inspectOnly{containers: map[string]container.InspectResponse{"oom": state(true, 48<<20), "killed": state(false, 48<<20)}}

	// Swarm's task history: this node's containers are inspected, another
	// node's task under a memory limit is a likely kill
	limited := swarm.TaskSpec{Resources: &swarm.ResourceRequirements{Limits: &swarm.Limit{MemoryBytes: 48 << 20}}}
	task := func(slot int, id string, spec swarm.TaskSpec) swarm.Task {
		return swarm.Task{Slot: slot, Spec: spec, Status: swarm.TaskStatus{State: swarm.TaskStateFailed, ContainerStatus: &swarm.ContainerStatus{ContainerID: id, ExitCode: 137}}}
	}
	svc := swarm.Service{Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Labels: map[string]string{paas.LabelApp: "hello", paas.LabelProcess: "web"}}}}
	got := s.kills(context.Background(), svc, []swarm.Task{
		task(1, "oom", limited), task(2, "killed", limited), task(3, "elsewhere", limited), task(4, "elsewhere", swarm.TaskSpec{}),
	})
	var lines []string
	for _, k := range got {
		lines = append(lines, k.String())
	}
	want := []string{"web.1 was killed: out of memory, limit 48 MB", "web.3 was killed (exit 137) on another node, most likely out of memory, limit 48 MB"}
	if !slices.Equal(lines, want) {
		t.Fatalf("kills %q, want %q", lines, want)
	}
}
