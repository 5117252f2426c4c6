package clustertest_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/builder"
	"paas/builder/buildertest"
	"paas/internal/clustertest"
	"paas/internal/registry"
)

// echoSource serves its hostname on :8080 ("serve"; it exits at once on
// SIGTERM), or, run as
// "get NAME PORT", resolves NAME and prints "ADDR ANSWER" for a GET to every
// address it resolves to.
const echoSource = `package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "get" {
		addrs, err := net.LookupHost(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sort.Strings(addrs)
		c := &http.Client{Timeout: 5 * time.Second}
		for _, a := range addrs {
			resp, err := c.Get("http://" + net.JoinHostPort(a, os.Args[3]) + "/")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Printf("%s %s", a, body)
		}
		return
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		os.Exit(0)
	}()
	host, _ := os.Hostname()
	http.ListenAndServe(":8080", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, host)
	}))
}
`

// overlaySubnet is inside the cluster's default overlay pool (198.19.0.0/16),
// which the nodes' 198.18.K.0/24 never overlaps.
const overlaySubnet = "198.19.254.0/24"

// TestCluster runs a 3-node cluster: an image built here reaches every node
// (loaded, and pulled from a registry on the host's cluster address), a 3-replica dnsrr service with a host-mode port spreads over the nodes and
// answers on each node's address, tasks on different nodes talk over an
// attachable overlay, and a worker cut off the network is noticed and its task
// rescheduled.
func TestCluster(t *testing.T) {
	main := buildertest.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The machine's own daemon and swarm are the same after the cluster is gone.
	before, err := main.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		after, err := main.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if after.Swarm.Cluster.ID != before.Swarm.Cluster.ID || after.Swarm.Nodes != before.Swarm.Nodes || after.Swarm.NodeAddr != before.Swarm.NodeAddr {
			t.Errorf("the machine's swarm changed: %+v, was %+v", after.Swarm, before.Swarm)
		}
	})
	c := clustertest.Up(t, 3)

	_, subnet, _ := net.ParseCIDR(c.Subnet)
	overlayIP, overlay, _ := net.ParseCIDR(overlaySubnet)
	if subnet == nil || subnet.Contains(overlayIP) || overlay.Contains(subnet.IP) {
		t.Fatalf("overlay %s and the nodes' %s overlap", overlaySubnet, c.Subnet)
	}

	// The image: built on the machine's daemon, copied to every node.
	ref := c.Name + "/echo:test"
	buildertest.RemoveImages(t, main, c.Name+"/echo")
	if _, err := builder.BuildSelfImage(ctx, main, buildertest.GoBinary(t, "echo", echoSource), ref, []string{"serve"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Load(t, ref)
	t.Logf("image loaded into 3 nodes in %.2fs", time.Since(start).Seconds())

	// A registry on the host's address on the cluster's bridge serves every
	// node: node 1 pushes the image, the others pull it for their tasks.
	// Plain HTTP and anonymous: the nodes run with --insecure-registry for
	// the host's address (scripts/cluster.sh).
	reg, err := registry.New(registry.Options{Dir: t.TempDir(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	l, err := net.Listen("tcp", net.JoinHostPort(c.HostAddr, "0"))
	if err != nil {
		t.Fatalf("listen on the host's cluster address: %v", err)
	}
	srv := &http.Server{Handler: reg}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	pushed := l.Addr().String() + "/" + ref
	for _, args := range [][]string{{"tag", ref, pushed}, {"push", pushed}} {
		if out, err := exec.CommandContext(ctx, "docker", append([]string{"-H", c.Nodes[0].DockerHost}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("docker %s on node 1: %v\n%s", args[0], err, out)
		}
	}

	cli := c.Client(t, "")
	netName := c.Name + "-net"
	if _, err := cli.NetworkCreate(ctx, netName, network.CreateOptions{
		Driver:     "overlay",
		Attachable: true,
		IPAM:       &network.IPAM{Config: []network.IPAMConfig{{Subnet: overlaySubnet}}},
	}); err != nil {
		t.Fatalf("create overlay: %v", err)
	}
	svcName := c.Name + "-echo"
	replicas := uint64(3)
	start = time.Now()
	created, err := cli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: svcName},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: pushed, Args: []string{"serve"}, Hostname: "{{.Node.Hostname}}"},
			Placement: &swarm.Placement{Preferences: []swarm.PlacementPreference{
				{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.id"}},
			}},
			Networks: []swarm.NetworkAttachmentConfig{{Target: netName}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{
			Mode: swarm.ResolutionModeDNSRR,
			// No published port: each task gets one of its node's ports, so a
			// rescheduled task can share a node with another.
			Ports: []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}},
		},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	tasks := waitRunning(ctx, t, cli, created.ID, 3, "", 60*time.Second)
	t.Logf("3 tasks running %.2fs after the service was created", time.Since(start).Seconds())

	nodes := nodesByID(ctx, t, cli)
	var on []string
	for _, task := range tasks {
		n := nodes[task.NodeID]
		if slices.Contains(on, n.Description.Hostname) {
			t.Errorf("two tasks on %s: the spread preference did not spread", n.Description.Hostname)
		}
		on = append(on, n.Description.Hostname)
		// From the host to the node's own address, on the task's host port.
		// (One entry per address family, both the same port.)
		if len(task.Status.PortStatus.Ports) == 0 {
			t.Fatalf("task on %s publishes no port", n.Description.Hostname)
		}
		url := fmt.Sprintf("http://%s/", net.JoinHostPort(n.Status.Addr, fmt.Sprint(task.Status.PortStatus.Ports[0].PublishedPort)))
		if got := get(t, url); got != n.Description.Hostname {
			t.Errorf("GET %s = %q, want the task on %s", url, got, n.Description.Hostname)
		}
	}
	slices.Sort(on)
	if want := []string{c.Nodes[0].Name, c.Nodes[1].Name, c.Nodes[2].Name}; !slices.Equal(on, want) {
		t.Errorf("tasks on %v, want one on each of %v", on, want)
	}

	// A container on node 1 reaches every task, on whatever node, by the
	// service's name on the overlay.
	out, err := exec.CommandContext(ctx, "docker", "-H", c.Nodes[0].DockerHost, "run", "--rm",
		"--network", netName, ref, "get", svcName, "8080").CombinedOutput()
	if err != nil {
		t.Fatalf("GET %s from a container on node 1: %v\n%s", svcName, err, out)
	}
	var answers []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		addr, host, _ := strings.Cut(line, " ")
		if ip := net.ParseIP(addr); ip == nil || !overlay.Contains(ip) {
			t.Errorf("%s resolved to %q, not an address of the overlay %s", svcName, addr, overlaySubnet)
		}
		answers = append(answers, host)
	}
	slices.Sort(answers)
	if !slices.Equal(answers, on) {
		t.Errorf("over the overlay, from node 1: answers from %v, want from %v\n%s", answers, on, out)
	}

	// Node loss: worker 3 drops off the network.
	lost := c.Nodes[2]
	var lostID string
	for id, n := range nodes {
		if n.Description.Hostname == lost.Name {
			lostID = id
		}
	}
	cut := time.Now()
	c.Cut(t, lost.Name)
	waitNode(ctx, t, cli, lostID, swarm.NodeStateDown, 60*time.Second)
	down := time.Since(cut)
	waitRunning(ctx, t, cli, created.ID, 3, lostID, 60*time.Second-down)
	back := time.Since(cut)
	t.Logf("node loss: %s marked down %.1fs after its link went down; 3 tasks running on the other nodes %.1fs after it (%.1fs after the cut)",
		lost.Name, down.Seconds(), (back - down).Seconds(), back.Seconds())

	restored := time.Now()
	c.Restore(t, lost.Name)
	waitNode(ctx, t, cli, lostID, swarm.NodeStateReady, 60*time.Second)
	t.Logf("%s ready again %.1fs after its link came back", lost.Name, time.Since(restored).Seconds())
}

// waitRunning waits until the service has want running tasks on nodes other
// than avoid, and returns them.
func waitRunning(ctx context.Context, t *testing.T, cli *client.Client, service string, want int, avoid string, limit time.Duration) []swarm.Task {
	t.Helper()
	deadline := time.Now().Add(limit)
	var running []swarm.Task
	for {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
			filters.Arg("service", service), filters.Arg("desired-state", "running"))})
		if err != nil {
			t.Fatalf("list tasks: %v", err)
		}
		running = running[:0]
		for _, task := range tasks {
			if task.Status.State == swarm.TaskStateRunning && task.NodeID != avoid {
				running = append(running, task)
			}
		}
		if len(running) == want {
			return running
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks running after %s, want %d: %+v", len(running), limit, want, tasks)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitNode(ctx context.Context, t *testing.T, cli *client.Client, id string, want swarm.NodeState, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		n, _, err := cli.NodeInspectWithRaw(ctx, id)
		if err != nil {
			t.Fatalf("inspect node %s: %v", id, err)
		}
		if n.Status.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s is %s after %s, want %s", n.Description.Hostname, n.Status.State, limit, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func nodesByID(ctx context.Context, t *testing.T, cli *client.Client) map[string]swarm.Node {
	t.Helper()
	list, err := cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	nodes := make(map[string]swarm.Node, len(list))
	for _, n := range list {
		nodes[n.ID] = n
	}
	return nodes
}

// get returns the trimmed body of a GET to url, retrying for up to 10 s while
// the connection fails.
func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return strings.TrimSpace(string(body))
			}
			t.Fatalf("GET %s: %s %q %v", url, resp.Status, body, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
