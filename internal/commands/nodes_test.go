package commands

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"paas/internal/paas"
	"paas/scheduler"
)

// fakeNodes is a Swarm of named nodes; it records availability changes,
// restarts and removals in order.
type fakeNodes struct {
	nodes []scheduler.Node
	log   []string
	fail  map[string]error // app -> Restart error
}

func (f *fakeNodes) List(context.Context) ([]scheduler.Node, error) { return f.nodes, nil }

func (f *fakeNodes) Find(_ context.Context, name string) (scheduler.Node, error) {
	for _, n := range f.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return scheduler.Node{}, scheduler.ErrNodeNotFound
}

func (f *fakeNodes) SetAvailability(_ context.Context, id, a string) error {
	f.log = append(f.log, id+"="+a)
	return nil
}

func (f *fakeNodes) Remove(_ context.Context, n scheduler.Node) error {
	f.log = append(f.log, "remove "+n.ID)
	return nil
}

func (f *fakeNodes) JoinToken(_ context.Context, manager bool) (string, string, error) {
	return fmt.Sprintf("TOKEN-manager=%v", manager), "10.9.8.1:2377", nil
}

func (f *fakeNodes) Restart(_ context.Context, app string, _ paas.Identity, _ io.Writer) error {
	f.log = append(f.log, "restart "+app)
	return f.fail[app]
}

func TestNodeCommands(t *testing.T) {
	swarmOf := func() *fakeNodes {
		return &fakeNodes{nodes: []scheduler.Node{
			{ID: "m1", Name: "manager1", Role: "manager", State: "ready", Availability: "active", Tasks: map[string]int{"(paas)": 1}},
			{ID: "w1", Name: "worker1", Role: "worker", State: "ready", Availability: "active", Tasks: map[string]int{"bravo": 2, "alpha": 1, "(paas)": 1}},
			{ID: "w2", Name: "worker2", Role: "worker", State: "down", Availability: "active", Tasks: map[string]int{}},
		}}
	}
	tests := []struct {
		name     string
		id       paas.Identity
		args     []string
		fail     map[string]error
		wantCode int
		wantOut  string
		wantErr  string
		wantLog  string
	}{
		{name: "list", id: alice, args: []string{"nodes:list"}, wantOut: "worker1"},
		{name: "list json", id: alice, args: []string{"nodes:list", "--format", "json"}, wantOut: `"availability":"active"`},
		{name: "join command", id: root, args: []string{"nodes:join-command"}, wantOut: "scripts/install.sh --join TOKEN-manager=false 10.9.8.1:2377"},
		{name: "join command for a manager", id: root, args: []string{"nodes:join-command", "--manager"}, wantOut: "TOKEN-manager=true"},
		{name: "join command is for admins", id: alice, args: []string{"nodes:join-command"}, wantCode: ExitError, wantErr: "administrators only"},
		{name: "drain moves each app, then drains", id: root, args: []string{"nodes:drain", "worker1"},
			wantOut: "worker1 drained", wantLog: "w1=pause,restart alpha,restart bravo,w1=drain"},
		{name: "drain stops paused when an app cannot move", id: root, args: []string{"nodes:drain", "worker1"}, fail: map[string]error{"alpha": errBoom},
			wantCode: ExitError, wantErr: "worker1 is paused, not drained: alpha could not be moved", wantLog: "w1=pause,restart alpha,restart bravo"},
		{name: "drain of the last manager is refused", id: root, args: []string{"nodes:drain", "manager1"}, wantCode: ExitError, wantErr: "last active manager"},
		{name: "drain of an unknown node", id: root, args: []string{"nodes:drain", "nope"}, wantCode: ExitError, wantErr: "Node nope does not exist"},
		{name: "drain is for admins", id: bob, args: []string{"nodes:drain", "worker1"}, wantCode: ExitError, wantErr: "administrators only"},
		{name: "activate", id: root, args: []string{"nodes:activate", "worker1"}, wantOut: "worker1 is active", wantLog: "w1=active"},
		{name: "remove", id: root, args: []string{"nodes:remove", "worker2"}, wantOut: "Removed worker2", wantLog: "remove w2"},
		{name: "remove needs a node name", id: root, args: []string{"nodes:remove"}, wantCode: ExitError, wantErr: "missing arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := swarmOf()
			f.fail = tc.fail
			d := NewDispatcher(newFakeStore(), "1", NodeCommands(f, f))
			var out, errb strings.Builder
			code := d.RunCommand(context.Background(), tc.id, tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if got := strings.Join(f.log, ","); got != tc.wantLog {
				t.Fatalf("actions %q, want %q", got, tc.wantLog)
			}
		})
	}
}
