package scheduler

import (
	"slices"
	"testing"

	"github.com/docker/docker/api/types/mount"

	"paas/internal/paas"
)

func TestSpecMountsAndPin(t *testing.T) {
	s := New(nil, Options{Name: "inst"})
	rel := &paas.Release{App: "hello", Version: 1, Image: paas.Image{Repository: "r/hello", Digest: "sha256:1"}}
	web := paas.ProcessType{Name: "web"}
	plain, err := s.appSpec(rel, web, "v1-aaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	if plain.TaskTemplate.ContainerSpec.Mounts != nil || len(plain.TaskTemplate.Placement.Constraints) != 0 {
		t.Fatalf("an app without mounts got mounts %v or constraints %v", plain.TaskTemplate.ContainerSpec.Mounts, plain.TaskTemplate.Placement.Constraints)
	}
	rel.Mounts = []paas.Mount{{Volume: "uploads", ContainerPath: "/app/uploads"}, {HostPath: "/srv/x", ContainerPath: "/x"}}
	rel.Node = "node1"
	spec, err := s.appSpec(rel, web, "v1-aaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	want := []mount.Mount{
		{Type: mount.TypeVolume, Source: "inst-storage-uploads", Target: "/app/uploads"},
		{Type: mount.TypeBind, Source: "/srv/x", Target: "/x"},
	}
	if got := spec.TaskTemplate.ContainerSpec.Mounts; !slices.Equal(got, want) {
		t.Errorf("mounts = %+v, want %+v", got, want)
	}
	if got := spec.TaskTemplate.Placement.Constraints; !slices.Equal(got, []string{"node.id==node1"}) {
		t.Errorf("constraints = %q, want node.id==node1", got)
	}
	if len(spec.TaskTemplate.Placement.Preferences) != 1 {
		t.Errorf("the spread preference was lost: %+v", spec.TaskTemplate.Placement)
	}
	if len(plain.TaskTemplate.Placement.Constraints) != 0 {
		t.Error("pinning one spec changed another's placement")
	}
	if specHash(&spec) == specHash(&plain) {
		t.Error("a mount change kept the task hash: a scale would keep the old mounts")
	}
}

func TestVolumeName(t *testing.T) {
	if got := VolumeName("inst", "uploads"); got != "inst-storage-uploads" {
		t.Errorf("VolumeName = %q", got)
	}
	if a, b := VolumeName("inst", "x"), VolumeName("other", "x"); a == b {
		t.Errorf("two installations share volume %s", a)
	}
}
