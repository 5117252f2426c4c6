package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/scheduler"
)

// NodeManager is what the nodes:* commands need of the Swarm.
type NodeManager interface {
	List(ctx context.Context) ([]scheduler.Node, error)
	Find(ctx context.Context, name string) (scheduler.Node, error)
	SetAvailability(ctx context.Context, id, availability string) error
	Remove(ctx context.Context, node scheduler.Node) error
	JoinToken(ctx context.Context, manager bool) (token, addr string, err error)
}

// Restarter rolls an app's current release out again in a new deployment.
type Restarter interface {
	Restart(ctx context.Context, app string, who paas.Identity, out io.Writer) error
}

// NodeCommands are nodes:list, nodes:join-command, nodes:drain,
// nodes:activate and nodes:remove.
func NodeCommands(nodes NodeManager, apps Restarter) []*Command {
	n := &nodeCommands{nodes: nodes, apps: apps}
	return []*Command{
		{Name: "nodes:list", Help: "List the machines of the cluster: role, state, availability, address, tasks, CPU and memory", Flags: formatFlag, Run: n.list},
		{Name: "nodes:join-command", Args: "[--manager]", Help: "Print the command that joins a new machine to the cluster (administrators)", Admin: true,
			Flags: map[string]bool{"--manager": false}, Run: n.joinCommand},
		{Name: "nodes:drain", Args: "NODE", Help: "Move every task off a machine, web tasks through a zero-downtime rollout (administrators)", Admin: true, MinArgs: 1, Run: n.drain},
		{Name: "nodes:activate", Args: "NODE", Help: "Let a drained machine run tasks again (administrators)", Admin: true, MinArgs: 1, Run: n.activate},
		{Name: "nodes:remove", Args: "NODE", Help: "Remove a machine that has left the cluster and runs no task (administrators)", Admin: true, MinArgs: 1, Run: n.remove},
	}
}

type nodeCommands struct {
	nodes NodeManager
	apps  Restarter
}

func (n *nodeCommands) list(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	nodes, err := n.nodes.List(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(c.Out, nodes)
	}
	fmt.Fprintf(c.Out, "%-20s %-8s %-8s %-12s %-16s %6s %5s %9s\n", "NAME", "ROLE", "STATE", "AVAILABILITY", "ADDRESS", "TASKS", "CPUS", "MEMORY")
	for _, node := range nodes {
		role := node.Role
		if node.Leader {
			role += "*"
		}
		tasks := 0
		for _, k := range node.Tasks {
			tasks += k
		}
		fmt.Fprintf(c.Out, "%-20s %-8s %-8s %-12s %-16s %6d %5.1f %8.1fG\n", sanitize(node.Name), role, node.State, node.Availability, node.Addr,
			tasks, float64(node.NanoCPUs)/1e9, float64(node.MemoryBytes)/(1<<30))
	}
	return nil
}

func (n *nodeCommands) joinCommand(ctx context.Context, c *Call) error {
	token, addr, err := n.nodes.JoinToken(ctx, c.Has("--manager"))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "scripts/install.sh --join %s %s\n", token, addr)
	return nil
}

// drain moves a node's tasks away with a rollout's contract: the node
// takes no new task (pause), each app with tasks on it is rolled out again
// (new tasks elsewhere, healthy, routed, then the old ones drained and
// stopped), and only then is it drained, which moves whatever is left.
func (n *nodeCommands) drain(ctx context.Context, c *Call) error {
	node, err := n.find(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if node.Role == "manager" {
		all, err := n.nodes.List(ctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(all, func(o scheduler.Node) bool {
			return o.ID != node.ID && o.Role == "manager" && o.State == "ready" && o.Availability == "active"
		}) {
			return fmt.Errorf("%s is the last active manager: its router serves every app; add or activate another manager first", node.Name)
		}
	}
	output.Step(c.Out, "Draining %s: no new task goes there", node.Name)
	if err := n.nodes.SetAvailability(ctx, node.ID, "pause"); err != nil {
		return err
	}
	var failed []string
	for _, app := range slices.Sorted(func(yield func(string) bool) {
		for a := range node.Tasks {
			if a != "(paas)" && !yield(a) {
				return
			}
		}
	}) {
		output.Step(c.Out, "Moving %s off %s", app, node.Name)
		if err := n.apps.Restart(ctx, app, c.ID, c.Out); err != nil {
			output.Warn(c.Err, "%s: %v", app, err)
			failed = append(failed, app)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s is paused, not drained: %s could not be moved; fix them and run nodes:drain %s again", node.Name, strings.Join(failed, ", "), node.Name)
	}
	if err := n.nodes.SetAvailability(ctx, node.ID, "drain"); err != nil {
		return err
	}
	output.Header(c.Out, "%s drained", node.Name)
	return nil
}

func (n *nodeCommands) activate(ctx context.Context, c *Call) error {
	node, err := n.find(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if err := n.nodes.SetAvailability(ctx, node.ID, "active"); err != nil {
		return err
	}
	output.Step(c.Out, "%s is active: new tasks may go there", node.Name)
	return nil
}

func (n *nodeCommands) remove(ctx context.Context, c *Call) error {
	node, err := n.find(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if err := n.nodes.Remove(ctx, node); err != nil {
		return err
	}
	output.Step(c.Out, "Removed %s", node.Name)
	return nil
}

func (n *nodeCommands) find(ctx context.Context, name string) (scheduler.Node, error) {
	node, err := n.nodes.Find(ctx, name)
	if errors.Is(err, scheduler.ErrNodeNotFound) {
		return node, fmt.Errorf("Node %s does not exist: see nodes:list", sanitize(name))
	}
	return node, err
}
