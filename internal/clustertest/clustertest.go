// Package clustertest gives tests a Docker Swarm of several real nodes on this
// one machine (scripts/cluster.sh): a network namespace and a dockerd per
// node, one private /24, torn down when the test ends.
package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"paas/builder/buildertest"
)

// Node is one node of a cluster.
type Node struct {
	Name       string `json:"name"`        // its hostname and network namespace, e.g. "ct-1a2b3c4d-node2"
	Role       string `json:"role"`        // "manager" or "worker"; "none" for a node left out of the swarm (Options.Unjoined)
	Addr       string `json:"addr"`        // its address in the cluster's /24
	DockerHost string `json:"docker_host"` // its dockerd, e.g. "unix:///run/paas-cluster/NAME/node2/docker.sock"
	NetNS      string `json:"netns"`
	// CertsDir is the directory its dockerd reads as /etc/docker/certs.d: its
	// own with Options.TLSRegistry, the machine's otherwise.
	CertsDir string `json:"certs_dir"`
}

// Options shape a cluster beyond its node count.
type Options struct {
	// Unjoined is how many of the last nodes run their dockerd but stay out
	// of the swarm, as new machines to join (scripts/cluster.sh --unjoined).
	Unjoined int
	// TLSRegistry: the nodes trust no registry without verified TLS, and
	// each reads registry CAs from a certs.d of its own (Node.CertsDir), as
	// separate machines do (scripts/cluster.sh --tls-registry).
	TLSRegistry bool
	// Managers is how many of the first nodes are managers (at least 1,
	// the default: node 1 only; scripts/cluster.sh --managers).
	Managers int
}

// Cluster is a running cluster, as scripts/cluster.sh up describes it.
type Cluster struct {
	Name       string `json:"name"`
	Subnet     string `json:"subnet"`      // the nodes' /24
	HostAddr   string `json:"host_addr"`   // this machine's address on the cluster's bridge
	Registry   string `json:"registry"`    // the registry address the nodes trust (HostAddr:5000)
	DockerHost string `json:"docker_host"` // node 1's dockerd, a manager
	Nodes      []Node `json:"nodes"`

	script string
}

// Up starts a cluster of n nodes (node 1 the manager, the others workers) for
// the test and removes it, checking that nothing is left, when the test ends.
// Without root or the tools the script needs, the test fails under CI=true and
// is skipped elsewhere (buildertest.Missing).
func Up(t testing.TB, n int) *Cluster {
	t.Helper()
	return UpWith(t, n, Options{})
}

// UpWith is Up with options.
func UpWith(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	script, err := Script()
	if err != nil {
		buildertest.Missing(t, err.Error())
	}
	if os.Geteuid() != 0 {
		buildertest.Missing(t, "a cluster needs root (network namespaces, dockerd)")
	}
	for _, tool := range []string{"ip", "nsenter", "unshare", "dockerd", "containerd", "docker", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			buildertest.Missing(t, fmt.Sprintf("a cluster needs %s: scripts/install.sh --deps installs it", tool))
		}
	}
	// "ct-" and 8 hex digits: the 12 characters the script allows at most.
	name := buildertest.Unique("ct")
	c := &Cluster{Name: name, script: script}
	t.Cleanup(func() { c.down(t) })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	args := []string{"up", fmt.Sprint(n), "--name", name, "--format", "json"}
	if opts.Unjoined > 0 {
		args = append(args, "--unjoined", fmt.Sprint(opts.Unjoined))
	}
	if opts.TLSRegistry {
		args = append(args, "--tls-registry")
	}
	if opts.Managers > 1 {
		args = append(args, "--managers", fmt.Sprint(opts.Managers))
	}
	out, err := c.run(ctx, t, args...)
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}
	if err := json.Unmarshal(out, c); err != nil {
		t.Fatalf("cluster up: read its JSON %q: %v", out, err)
	}
	if len(c.Nodes) != n {
		t.Fatalf("cluster up: %d nodes, want %d", len(c.Nodes), n)
	}
	t.Logf("cluster %s: %d nodes on %s, up in %.2fs", name, n, c.Subnet, time.Since(start).Seconds())
	return c
}

// Script returns the path of scripts/cluster.sh in the repository the test
// runs in.
func Script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find scripts/cluster.sh: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "scripts", "cluster.sh")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("find scripts/cluster.sh: %w", err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find scripts/cluster.sh: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// run runs the script with args; its step lines go to the test log.
func (c *Cluster) run(ctx context.Context, t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.script, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("cluster.sh %s:\n%s", args[0], s)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster.sh %s: %w", strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

// Node returns the node named name, or node k for "node<k>".
func (c *Cluster) Node(t testing.TB, name string) Node {
	t.Helper()
	for i, n := range c.Nodes {
		if n.Name == name || name == fmt.Sprintf("node%d", i+1) {
			return n
		}
	}
	t.Fatalf("cluster %s has no node %q", c.Name, name)
	return Node{}
}

// Client returns a Docker client of the named node's dockerd (see Node), or of
// node 1, the manager, when name is "".
func (c *Cluster) Client(t testing.TB, name string) *client.Client {
	t.Helper()
	host := c.DockerHost
	if name != "" {
		host = c.Node(t, name).DockerHost
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client of %s: %v", host, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Load copies images from the machine's own Docker daemon to every node.
func (c *Cluster) Load(t testing.TB, images ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.run(ctx, t, append([]string{"load", "--name", c.Name}, images...)...); err != nil {
		t.Fatal(err)
	}
}

// Cut takes the named node's link down, as if its machine dropped off the
// network; Restore brings it back.
func (c *Cluster) Cut(t testing.TB, name string) { c.link(t, name, "down") }

// Restore brings back a node Cut took off the network.
func (c *Cluster) Restore(t testing.TB, name string) { c.link(t, name, "up") }

func (c *Cluster) link(t testing.TB, name, state string) {
	t.Helper()
	n := c.Node(t, name)
	if out, err := exec.Command("ip", "-n", n.NetNS, "link", "set", "eth0", state).CombinedOutput(); err != nil {
		t.Fatalf("set %s's link %s: %v: %s", n.Name, state, err, out)
	}
}

// down removes the cluster and fails the test if anything of it is left.
func (c *Cluster) down(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.run(ctx, t, "down", "--name", c.Name); err != nil {
		t.Errorf("cluster down: %v", err)
	}
	for _, l := range Leftovers(c.Name) {
		t.Errorf("cluster %s: left after down: %s", c.Name, l)
	}
}

// Leftovers lists what of cluster name exists on this machine: network
// namespaces, links, processes, mounts, cgroups, directories.
func Leftovers(name string) []string {
	var left []string
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if ns, _, _ := strings.Cut(line, " "); strings.HasPrefix(ns, name+"-") {
				left = append(left, "network namespace "+ns)
			}
		}
	}
	if _, err := os.Stat("/sys/class/net/" + name + "-br"); err == nil {
		left = append(left, "link "+name+"-br")
	}
	dirs := []string{"/run/paas-cluster/" + name, "/var/lib/paas-cluster/" + name}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if bytes.Contains(cmdline, []byte(d+"/")) {
				left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 {
				continue
			}
			for _, d := range dirs {
				if f[4] == d || strings.HasPrefix(f[4], d+"/") {
					left = append(left, "mount "+f[4])
				}
			}
		}
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/paas-cluster/" + name + "-node*")
	more, _ := filepath.Glob("/sys/fs/cgroup/paas-cluster/" + name + "-node*")
	for _, g := range append(cgroups, more...) {
		left = append(left, "cgroup "+g)
	}
	// The cgroup all clusters share goes with the last of them.
	if others, _ := filepath.Glob("/run/paas-cluster/*/subnet"); len(others) == 0 {
		parents, _ := filepath.Glob("/sys/fs/cgroup/*/paas-cluster")
		more, _ := filepath.Glob("/sys/fs/cgroup/paas-cluster")
		for _, g := range append(parents, more...) {
			left = append(left, "cgroup "+g)
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			left = append(left, "directory "+d)
		}
	}
	return left
}

// Manager returns node 1, the first manager: paasd's DOCKER_HOST, and where
// the router serves.
func (c *Cluster) Manager() Node { return c.Nodes[0] }

// ManagerSocket is the path of the first manager's Docker socket, for
// paasd's --node-docker-socket: the router's ports process mounts it, not
// the machine's /var/run/docker.sock (the nodes share its filesystem). Each
// manager's socket is at a path of its own, so this serves one manager.
func (c *Cluster) ManagerSocket() string {
	return strings.TrimPrefix(c.Manager().DockerHost, "unix://")
}

// LoadInto copies images from the machine's own Docker daemon to the named
// node only (see Node), e.g. a builder image to the manager, which runs the
// builds.
func (c *Cluster) LoadInto(t testing.TB, name string, images ...string) {
	t.Helper()
	n := c.Node(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	save := exec.CommandContext(ctx, "docker", append([]string{"-H", "unix:///var/run/docker.sock", "save"}, images...)...)
	load := exec.CommandContext(ctx, "docker", "-H", n.DockerHost, "load", "-q")
	pipe, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	load.Stdin = pipe
	var saveErr, loadOut bytes.Buffer
	save.Stderr = &saveErr
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := save.Start(); err != nil {
		t.Fatalf("docker save %s: %v", strings.Join(images, " "), err)
	}
	lerr := load.Run()
	serr := save.Wait()
	if serr != nil || lerr != nil {
		t.Fatalf("copy %s to %s: save: %v %s; load: %v %s", strings.Join(images, " "), n.Name, serr, saveErr.String(), lerr, loadOut.String())
	}
	t.Logf("loaded %s into %s in %.1fs", strings.Join(images, " "), n.Name, time.Since(start).Seconds())
}
