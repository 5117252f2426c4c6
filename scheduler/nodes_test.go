package scheduler_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"paas/builder/buildertest"
	"paas/internal/paas"
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
		token, addr, err := n.JoinToken(ctx, manager, false)
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

// fakeNodeAPI is a swarm of a manager and a worker that has gone down but
// still has a task of app "web" recorded as running, and one that has none.
type fakeNodeAPI struct {
	scheduler.NodeAPI
	removed []string
}

func (f *fakeNodeAPI) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return []swarm.Node{
		{ID: "m1", Description: swarm.NodeDescription{Hostname: "manager1"}, Spec: swarm.NodeSpec{Role: swarm.NodeRoleManager, Availability: swarm.NodeAvailabilityActive},
			Status: swarm.NodeStatus{State: swarm.NodeStateReady, Addr: "10.0.0.1"}, ManagerStatus: &swarm.ManagerStatus{Leader: true, Addr: "10.0.0.1:2377"}},
		{ID: "w1", Description: swarm.NodeDescription{Hostname: "worker1"}, Spec: swarm.NodeSpec{Role: swarm.NodeRoleWorker, Availability: swarm.NodeAvailabilityActive},
			Status: swarm.NodeStatus{State: swarm.NodeStateDown, Addr: "10.0.0.2"}},
		{ID: "w2", Description: swarm.NodeDescription{Hostname: "worker2"}, Spec: swarm.NodeSpec{Role: swarm.NodeRoleWorker, Availability: swarm.NodeAvailabilityActive},
			Status: swarm.NodeStatus{State: swarm.NodeStateReady, Addr: "10.0.0.3"}},
	}, nil
}

func (f *fakeNodeAPI) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	return []swarm.Service{{ID: "s1", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Labels: map[string]string{paas.LabelApp: "web"}}}}}, nil
}

func (f *fakeNodeAPI) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	return []swarm.Task{{ServiceID: "s1", NodeID: "w1", Status: swarm.TaskStatus{State: swarm.TaskStateRunning}}}, nil
}

func (f *fakeNodeAPI) NodeRemove(_ context.Context, id string, _ swarm.NodeRemoveOptions) error {
	f.removed = append(f.removed, id)
	return nil
}

// Remove refuses a manager, a node that runs tasks of the installation and a
// node that has not left, and removes nothing then.
func TestRemoveRefuses(t *testing.T) {
	ctx := context.Background()
	f := &fakeNodeAPI{}
	n := scheduler.NewNodes(f, "inst")
	for name, want := range map[string]string{
		"manager1": "manager1 is a manager",
		"worker1":  "worker1 still runs tasks of web: nodes:drain worker1 first",
		"worker2":  "worker2 is ready: run `docker swarm leave` on it first",
	} {
		node, err := n.Find(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Remove(ctx, node); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Remove(%s) = %v, want %q", name, err, want)
		}
	}
	if len(f.removed) != 0 {
		t.Fatalf("removed %v, want nothing", f.removed)
	}
}
