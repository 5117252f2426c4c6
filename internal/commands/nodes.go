package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	JoinToken(ctx context.Context, manager, rotate bool) (token, addr string, err error)
}

// JoinRegistry is the registry every node pulls the apps' images from, as
// nodes:join-command hands it to a joining machine.
type JoinRegistry struct {
	Host   string // HOST[:PORT], as the images name it
	CAFile string // the CA the nodes must trust; "" for a registry with a public certificate
}

// Restarter rolls an app's current release out again in a new deployment.
type Restarter interface {
	Restart(ctx context.Context, app string, who paas.Identity, out io.Writer) error
}

// NodeCommands are nodes:list, nodes:join-command, nodes:drain,
// nodes:activate and nodes:remove.
func NodeCommands(nodes NodeManager, apps Restarter, registry JoinRegistry) []*Command {
	n := &nodeCommands{nodes: nodes, apps: apps, registry: registry}
	return []*Command{
		{Name: "nodes:list", Help: "List the machines of the cluster: role, state, availability, address, tasks, CPU and memory", Flags: formatFlag, Run: n.list},
		{Name: "nodes:join-command", Args: "[--manager] [--rotate] [--format json]",
			Help:  "Print the command that joins a new machine to the cluster, as a worker (--manager: a manager, which also runs a router); --rotate first replaces the join token, so commands printed before join nothing more (administrators)",
			Admin: true, Flags: map[string]bool{"--manager": false, "--rotate": false, "--format": true}, Run: n.joinCommand},
		{Name: "nodes:drain", Args: "NODE", Help: "Move every task off a machine, web tasks through a zero-downtime rollout (administrators)", Admin: true, MinArgs: 1, Run: n.drain},
		{Name: "nodes:activate", Args: "NODE", Help: "Let a drained machine run tasks again (administrators)", Admin: true, MinArgs: 1, Run: n.activate},
		{Name: "nodes:remove", Args: "NODE", Help: "Remove a machine that has left the cluster and runs no task (administrators)", Admin: true, MinArgs: 1, Run: n.remove},
	}
}

type nodeCommands struct {
	nodes    NodeManager
	apps     Restarter
	registry JoinRegistry
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
		return output.JSON(c.Out, nodes)
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

// joinInfo is what nodes:join-command --format json prints.
type joinInfo struct {
	Command     string `json:"command"`
	Role        string `json:"role"` // worker, manager
	Token       string `json:"token"`
	ManagerAddr string `json:"manager_addr"`
	Registry    string `json:"registry,omitempty"`
	RegistryCA  string `json:"registry_ca_sha256,omitempty"`
}

// joinCommand prints `scripts/install.sh --join ...` with all a new machine
// needs: the Swarm token and a manager's address, and, for a registry whose
// CA is the installation's own, the registry's address and the SHA-256 of
// its CA certificate. install.sh fetches the CA from the registry's TLS
// handshake and trusts it only when it has that fingerprint (as kubeadm's
// discovery hash does): the command stays one short line, and a CA a
// machine in between substitutes cannot match. (The Swarm token pins the
// swarm's own CA the same way.)
func (n *nodeCommands) joinCommand(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	info := joinInfo{Role: "worker"}
	if c.Has("--manager") {
		info.Role = "manager"
	}
	// The CA first: a command that could not trust the registry is no use,
	// and a rotation should not happen for nothing.
	if n.registry.CAFile != "" {
		pemBytes, err := os.ReadFile(n.registry.CAFile)
		if err != nil {
			return fmt.Errorf("read the registry's CA: %w", err)
		}
		block, _ := pem.Decode(pemBytes)
		if block == nil || block.Type != "CERTIFICATE" {
			return fmt.Errorf("read the registry's CA: %s holds no PEM certificate", n.registry.CAFile)
		}
		sum := sha256.Sum256(block.Bytes)
		info.Registry, info.RegistryCA = n.registry.Host, hex.EncodeToString(sum[:])
	}
	info.Token, info.ManagerAddr, err = n.nodes.JoinToken(ctx, c.Has("--manager"), false)
	if err != nil {
		return err
	}
	if loopback(info.ManagerAddr) {
		return fmt.Errorf("the swarm's manager advertises %s, which no other machine reaches (a swarm made with --advertise-addr 127.0.0.1, as install.sh does without PAAS_ADVERTISE_ADDR): such a swarm cannot take nodes; install the first manager with PAAS_ADVERTISE_ADDR=ADDR scripts/install.sh", info.ManagerAddr)
	}
	if loopback(info.Registry) {
		return fmt.Errorf("the registry is at %s, which no other machine reaches: restart paasd with --registry-addr 0.0.0.0:5000 --registry-advertise-addr ADDR (this machine's address on the nodes' network) first", info.Registry)
	}
	// Rotated only once the command can be printed.
	if c.Has("--rotate") {
		if info.Token, info.ManagerAddr, err = n.nodes.JoinToken(ctx, c.Has("--manager"), true); err != nil {
			return err
		}
	}
	args := []string{"scripts/install.sh", "--join", "--token", info.Token, "--manager-addr", info.ManagerAddr}
	if info.Registry != "" {
		args = append(args, "--registry", info.Registry, "--registry-ca-sha256", info.RegistryCA)
	}
	for i, a := range args {
		args[i] = shellWord(a)
	}
	info.Command = strings.Join(args, " ")
	if asJSON {
		return output.JSON(c.Out, info)
	}
	if c.Has("--rotate") {
		output.Step(c.Err, "The %s join token was replaced: commands printed before join nothing more", info.Role)
	}
	fmt.Fprintln(c.Out, info.Command)
	return nil
}

// loopback reports whether hostport's host is a loopback address or name.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// shellWord is s as one word of a POSIX shell command: bare when it holds
// only characters no shell treats specially, single-quoted otherwise.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/=@") == "" {
		return s
	}
	return shellQuote(s)
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
