package scheduler_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"paas/builder/buildertest"
	"paas/scheduler"
)

// The node manager against this machine's real swarm: it lists this node,
// finds it by name and ID, and hands out join tokens. (Draining and losing
// nodes are exercised on a cluster of several daemons.)
func TestNodesOfThisSwarm(t *testing.T) {
	cli := buildertest.SwarmManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := scheduler.NewNodes(cli, buildertest.Unique("ntest"))
	nodes, err := n.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var self *scheduler.Node
	for i := range nodes {
		if nodes[i].Leader {
			self = &nodes[i]
		}
	}
	if self == nil || self.Role != "manager" || self.State != "ready" || self.Name == "" || self.NanoCPUs == 0 || self.MemoryBytes == 0 {
		t.Fatalf("nodes %+v: want this machine as a ready manager leader with its resources", nodes)
	}
	for _, name := range []string{self.Name, self.ID, self.ID[:8]} {
		if got, err := n.Find(ctx, name); err != nil || got.ID != self.ID {
			t.Fatalf("Find(%q) = %+v, %v", name, got, err)
		}
	}
	if _, err := n.Find(ctx, "no-such-node"); !errors.Is(err, scheduler.ErrNodeNotFound) {
		t.Fatalf("Find of a missing node: %v", err)
	}
	for _, manager := range []bool{false, true} {
		token, addr, err := n.JoinToken(ctx, manager)
		if err != nil || !strings.HasPrefix(token, "SWMTKN-") || !strings.Contains(addr, ":") {
			t.Fatalf("JoinToken(%v) = %q, %q, %v", manager, token, addr, err)
		}
	}
	// Setting what it already is changes nothing; a manager with tasks is
	// never removed.
	if err := n.SetAvailability(ctx, self.ID, self.Availability); err != nil {
		t.Fatal(err)
	}
	if err := n.Remove(ctx, *self); err == nil || !strings.Contains(err.Error(), "is a manager") {
		t.Fatalf("Remove of the manager: %v", err)
	}
}
