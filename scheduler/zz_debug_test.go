package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"paas/builder/buildertest"
	"paas/scheduler"
)

func TestZZNetwork(t *testing.T) {
	cli := buildertest.Docker(t)
	name := buildertest.Unique("stest")
	s := scheduler.New(cli, scheduler.Options{Name: name})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := s.EnsureNetwork(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f := filters.NewArgs(filters.Arg("label", "paas.installation="+name))
	ns, _ := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	t.Logf("after create: %d", len(ns))
	err := s.RemoveAll(ctx)
	t.Logf("removeall: %v", err)
	for i := 0; i < 10; i++ {
		ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
		t.Logf("list: %d %v", len(ns), err)
		for _, n := range ns {
			t.Logf("  %s %s %s", n.ID, n.Name, n.Scope)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
