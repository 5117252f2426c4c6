package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/internal/paas"
)

// NodeAPI is the part of the Docker client the node commands use.
type NodeAPI interface {
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
	NodeInspectWithRaw(ctx context.Context, nodeID string) (swarm.Node, []byte, error)
	NodeUpdate(ctx context.Context, nodeID string, version swarm.Version, node swarm.NodeSpec) error
	NodeRemove(ctx context.Context, nodeID string, options swarm.NodeRemoveOptions) error
	SwarmInspect(ctx context.Context) (swarm.Swarm, error)
	SwarmUpdate(ctx context.Context, version swarm.Version, spec swarm.Spec, flags swarm.UpdateFlags) error
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
}

var _ NodeAPI = (*client.Client)(nil)

// Nodes manages the Swarm's machines for an installation.
type Nodes struct {
	cli  NodeAPI
	name string // the installation, whose tasks are counted
}

// NewNodes returns the node manager of installation name.
func NewNodes(cli NodeAPI, name string) *Nodes { return &Nodes{cli: cli, name: name} }

// Node is one machine of the Swarm.
type Node struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Role         string `json:"role"`         // manager, worker
	Leader       bool   `json:"leader"`       // the managers' leader
	State        string `json:"state"`        // ready, down, unknown, disconnected
	Availability string `json:"availability"` // active, pause, drain
	Addr         string `json:"address"`
	// Tasks counts this installation's running tasks on the node, by app.
	Tasks       map[string]int `json:"tasks"`
	NanoCPUs    int64          `json:"nano_cpus"`
	MemoryBytes int64          `json:"memory_bytes"`
}

// ErrNodeNotFound is a node name or ID the Swarm does not have.
var ErrNodeNotFound = errors.New("node not found")

// List returns every node, managers first, then by name.
func (n *Nodes) List(ctx context.Context) ([]Node, error) {
	nodes, err := n.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	tasks, err := n.tasksByNode(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(nodes))
	for _, sn := range nodes {
		node := Node{
			ID: sn.ID, Name: sn.Description.Hostname, Role: string(sn.Spec.Role),
			State: string(sn.Status.State), Availability: string(sn.Spec.Availability), Addr: sn.Status.Addr,
			Tasks:    tasks[sn.ID],
			NanoCPUs: sn.Description.Resources.NanoCPUs, MemoryBytes: sn.Description.Resources.MemoryBytes,
		}
		if node.Tasks == nil {
			node.Tasks = map[string]int{}
		}
		if sn.ManagerStatus != nil {
			node.Leader = sn.ManagerStatus.Leader
			if node.Addr == "" || node.Addr == "0.0.0.0" {
				node.Addr, _, _ = strings.Cut(sn.ManagerStatus.Addr, ":")
			}
		}
		out = append(out, node)
	}
	slices.SortFunc(out, func(a, b Node) int {
		if a.Role != b.Role {
			return strings.Compare(a.Role, b.Role) // manager < worker
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// tasksByNode counts the installation's running tasks per node and app.
func (n *Nodes) tasksByNode(ctx context.Context) (map[string]map[string]int, error) {
	svcs, err := n.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", paas.LabelInstallation+"="+n.name))})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	app := map[string]string{} // service ID -> app ("" for the router and databases)
	for _, s := range svcs {
		app[s.ID] = s.Spec.Labels[paas.LabelApp]
	}
	tasks, err := n.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := map[string]map[string]int{}
	for _, t := range tasks {
		a, ours := app[t.ServiceID]
		if !ours || t.NodeID == "" || t.Status.State != swarm.TaskStateRunning {
			continue
		}
		if out[t.NodeID] == nil {
			out[t.NodeID] = map[string]int{}
		}
		if a == "" {
			a = "(paas)"
		}
		out[t.NodeID][a]++
	}
	return out, nil
}

// Find returns the node named name (its hostname, or its ID or an ID prefix).
func (n *Nodes) Find(ctx context.Context, name string) (Node, error) {
	nodes, err := n.List(ctx)
	if err != nil {
		return Node{}, err
	}
	var found []Node
	for _, node := range nodes {
		if node.Name == name || node.ID == name {
			return node, nil
		}
		if len(name) >= 6 && strings.HasPrefix(node.ID, name) {
			found = append(found, node)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return Node{}, fmt.Errorf("%w: %s", ErrNodeNotFound, name)
}

// SetAvailability sets a node's availability: active, pause or drain.
func (n *Nodes) SetAvailability(ctx context.Context, id, availability string) error {
	sn, _, err := n.cli.NodeInspectWithRaw(ctx, id)
	if err != nil {
		return fmt.Errorf("inspect node: %w", err)
	}
	if sn.Spec.Availability == swarm.NodeAvailability(availability) {
		return nil
	}
	sn.Spec.Availability = swarm.NodeAvailability(availability)
	if err := n.cli.NodeUpdate(ctx, sn.ID, sn.Version, sn.Spec); err != nil {
		return fmt.Errorf("update node: %w", err)
	}
	return nil
}

// Remove takes a node out of the Swarm. The node must have left it (down)
// and run none of the installation's tasks.
func (n *Nodes) Remove(ctx context.Context, node Node) error {
	if node.Role == string(swarm.NodeRoleManager) {
		return fmt.Errorf("%s is a manager: demote it first (docker node demote %s)", node.Name, node.Name)
	}
	if len(node.Tasks) > 0 {
		return fmt.Errorf("%s still runs tasks of %s: nodes:drain %s first", node.Name, strings.Join(slices.Sorted(maps.Keys(node.Tasks)), ", "), node.Name)
	}
	if node.State != string(swarm.NodeStateDown) {
		return fmt.Errorf("%s is %s: run `docker swarm leave` on it first (or nodes:drain it and stop its Docker daemon)", node.Name, node.State)
	}
	if err := n.cli.NodeRemove(ctx, node.ID, swarm.NodeRemoveOptions{}); err != nil {
		return fmt.Errorf("remove node: %w", err)
	}
	return nil
}

// JoinToken returns the token that joins a machine as a worker or manager,
// and the address of a manager to join (the leader's). With rotate, the
// token is replaced first: the ones handed out before join nothing more
// (nodes that joined with them stay).
func (n *Nodes) JoinToken(ctx context.Context, manager, rotate bool) (token, addr string, err error) {
	sw, err := n.cli.SwarmInspect(ctx)
	if err != nil {
		return "", "", fmt.Errorf("inspect swarm: %w", err)
	}
	if rotate {
		flags := swarm.UpdateFlags{RotateWorkerToken: !manager, RotateManagerToken: manager}
		if err := n.cli.SwarmUpdate(ctx, sw.Version, sw.Spec, flags); err != nil {
			return "", "", fmt.Errorf("rotate the join token: %w", err)
		}
		if sw, err = n.cli.SwarmInspect(ctx); err != nil {
			return "", "", fmt.Errorf("inspect swarm: %w", err)
		}
	}
	token = sw.JoinTokens.Worker
	if manager {
		token = sw.JoinTokens.Manager
	}
	nodes, err := n.cli.NodeList(ctx, swarm.NodeListOptions{Filters: filters.NewArgs(filters.Arg("role", "manager"))})
	if err != nil {
		return "", "", fmt.Errorf("list managers: %w", err)
	}
	for _, sn := range nodes {
		if sn.ManagerStatus != nil && sn.ManagerStatus.Leader {
			addr = sn.ManagerStatus.Addr
		}
	}
	if addr == "" {
		return "", "", errors.New("the swarm has no leader")
	}
	return token, addr, nil
}

// RouterHosts returns the addresses of the ready managers: a router runs on
// each of them, on the installation's HTTP port.
func (n *Nodes) RouterHosts(ctx context.Context) ([]string, error) {
	nodes, err := n.cli.NodeList(ctx, swarm.NodeListOptions{Filters: filters.NewArgs(filters.Arg("role", "manager"))})
	if err != nil {
		return nil, fmt.Errorf("list managers: %w", err)
	}
	var hosts []string
	for _, sn := range nodes {
		if sn.Status.State != swarm.NodeStateReady || sn.Spec.Availability == swarm.NodeAvailabilityDrain {
			continue
		}
		addr := sn.Status.Addr
		if (addr == "" || addr == "0.0.0.0") && sn.ManagerStatus != nil {
			addr, _, _ = strings.Cut(sn.ManagerStatus.Addr, ":")
		}
		if addr != "" {
			hosts = append(hosts, addr)
		}
	}
	return hosts, nil
}
