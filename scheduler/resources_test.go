package scheduler

import (
	"context"
	"errors"
	"slices"
	"testing"

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

	// the die events of the daemon
	die := func(id string, attrs map[string]string) events.Message {
		a := map[string]string{"exitCode": "137", paas.LabelApp: "hello", paas.LabelProcess: "web", "com.docker.swarm.task.name": "paas-hello-web-v1.2.abcdef"}
		for k, v := range attrs {
			a[k] = v
		}
		return events.Message{Actor: events.Actor{ID: id, Attributes: a}}
	}
	k, ok := s.killOf(context.Background(), die("oom", nil))
	if !ok || k.String() != "web.2 was killed: out of memory, limit 48 MB" || k.App != "hello" {
		t.Fatalf("OOM-killed task: %v %q", ok, k)
	}
	if _, ok := s.killOf(context.Background(), die("killed", nil)); ok {
		t.Fatal("a SIGKILL that was not the OOM killer's was reported")
	}
	if _, ok := s.killOf(context.Background(), die("oom", map[string]string{"exitCode": "1"})); ok {
		t.Fatal("exit 1 was reported")
	}
	if _, ok := s.killOf(context.Background(), die("oom", map[string]string{paas.LabelRole: RoleRun, labelDetached: "false", labelDyno: "run.abc"})); ok {
		t.Fatal("an attached one-off task was reported twice (Run reports it)")
	}
	if k, ok := s.killOf(context.Background(), die("oom", map[string]string{paas.LabelRole: RoleRun, labelDetached: "true", labelDyno: "run.abc"})); !ok || k.Task != "run.abc" {
		t.Fatalf("detached one-off task: %v %+v", ok, k)
	}

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
