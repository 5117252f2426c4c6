package deploy

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"paas/internal/paas"
)

var dataMount = paas.Mount{Volume: "data", ContainerPath: "/data"}

func mountData(a *paas.App) error {
	a.Mounts = append(slices.Clone(a.Mounts), dataMount)
	a.StorageNode = "node1"
	return nil
}

// A mount change on a deployed app rolls the current release out again
// with it, forced (a new deployment), and is stored only once it serves; a
// failed rollout stores nothing.
func TestSetStorageRollsOut(t *testing.T) {
	e := deployedApp(t)
	e.scheduler.err = errors.New("web.1 unhealthy")
	if err := e.p.SetStorage(context.Background(), "hello", alice, "storage:mount data:/data", mountData, io.Discard); err == nil {
		t.Fatal("SetStorage with a failing rollout = nil")
	}
	if a, _ := e.store.App("hello"); len(a.Mounts) != 0 {
		t.Fatalf("a failed rollout stored the mounts: %+v", a.Mounts)
	}
	e.scheduler.err = nil
	if err := e.p.SetStorage(context.Background(), "hello", alice, "storage:mount data:/data", mountData, io.Discard); err != nil {
		t.Fatal(err)
	}
	a, _ := e.store.App("hello")
	if !slices.Equal(a.Mounts, []paas.Mount{dataMount}) || a.StorageNode != "node1" {
		t.Fatalf("stored app: %+v on %q", a.Mounts, a.StorageNode)
	}
	last := e.scheduler.deployed[len(e.scheduler.deployed)-1]
	if !slices.Equal(last.Mounts, []paas.Mount{dataMount}) || last.Node != "node1" || !e.scheduler.opts[len(e.scheduler.opts)-1].Force {
		t.Errorf("rolled out %+v on %q (force %v)", last.Mounts, last.Node, e.scheduler.opts[len(e.scheduler.opts)-1].Force)
	}

	// A rollback to a release made before the mount keeps the app's mounts;
	// so do a restart and a scale.
	if err := e.p.Rollback(context.Background(), "hello", alice, 1, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Restart(context.Background(), "hello", alice, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Scale(context.Background(), "hello", alice, map[string]int{"web": 2}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, rel := range e.scheduler.deployed[len(e.scheduler.deployed)-3:] {
		if !slices.Equal(rel.Mounts, []paas.Mount{dataMount}) || rel.Node != "node1" {
			t.Errorf("v%d (%s) rolled out with mounts %+v on %q", rel.Version, rel.Reason, rel.Mounts, rel.Node)
		}
	}
}

// An app not deployed yet gets its mounts stored, nothing rolled out.
func TestSetStorageUndeployed(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "hello", Owner: "alice"})
	if err := e.p.SetStorage(context.Background(), "hello", alice, "storage:mount", mountData, io.Discard); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.store.App("hello"); !slices.Equal(a.Mounts, []paas.Mount{dataMount}) {
		t.Errorf("stored mounts %+v", a.Mounts)
	}
	if len(e.scheduler.deployed) != 0 {
		t.Errorf("an undeployed app was rolled out: %d", len(e.scheduler.deployed))
	}
	refuse := func(*paas.App) error { return errors.New("no") }
	if err := e.p.SetStorage(context.Background(), "hello", alice, "x", refuse, io.Discard); err == nil {
		t.Error("a refused change = nil")
	}
}
