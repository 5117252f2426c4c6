package scheduler

import (
	"testing"

	"github.com/docker/docker/api/types/container"
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
