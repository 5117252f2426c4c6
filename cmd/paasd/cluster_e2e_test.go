package main

// End-to-end scenarios on a cluster: each testdata/cluster/*.txtar runs
// against the real paasd pointed at a 3-node Swarm of real Docker daemons on
// this machine (scripts/cluster.sh: a manager and two workers, each in a
// network namespace of its own), with the real ssh and git clients.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"paas/builder"
	"paas/builder/buildertest"
	"paas/internal/clustertest"
	"paas/internal/registry"
	"paas/scheduler"
)

// TestCluster runs testdata/cluster on one cluster, each scenario with an
// installation of its own; it runs beside TestScripts.
func TestCluster(t *testing.T) {
	if paasdBin == "" {
		t.Fatal("PAAS_E2E=0: end-to-end tests disabled")
	}
	requireTools(t)
	t.Parallel()
	start := time.Now()
	// The nodes trust no registry as insecure, and each reads registry CAs
	// from a certs.d of its own, as separate machines do: they pull the
	// apps' images from paasd's embedded registry over TLS they verify.
	c := clustertest.UpWith(t, 3, clustertest.Options{TLSRegistry: true})
	hostIP := net.ParseIP(c.HostAddr)
	for _, n := range c.Nodes {
		info, err := c.Client(t, n.Name).Info(context.Background())
		if err != nil {
			t.Fatalf("docker info of %s: %v", n.Name, err)
		}
		for _, cidr := range info.RegistryConfig.InsecureRegistryCIDRs {
			if (*net.IPNet)(cidr).Contains(hostIP) {
				t.Fatalf("%s treats registries on %s as insecure (%v): its pulls would not verify TLS", n.Name, c.HostAddr, (*net.IPNet)(cidr))
			}
		}
	}
	// Builds run on the manager: the air-gapped builder and its run image
	// must be there (paasd pushes the run image to its registry).
	c.LoadInto(t, c.Manager().Name, builder.DefaultCNBBuilder, cnbRunImage(t))
	t.Logf("cluster ready for paasd in %.1fs", time.Since(start).Seconds())
	testscript.Run(t, testscript.Params{
		Dir: "testdata/cluster",
		Setup: func(env *testscript.Env) error {
			err := setup(env, func(in *installation, env *testscript.Env) {
				in.dockerHost = c.DockerHost
				in.routerHost = c.Manager().Addr
				in.regHost = c.HostAddr
				// paasd writes its registry's CA where the manager's
				// dockerd, which builds and pushes, reads it.
				in.extraArgs = append(in.extraArgs, "--node-docker-socket", c.ManagerSocket(),
					"--docker-certs-dir", c.Manager().CertsDir)
				env.Setenv("DOCKER_HOST", c.DockerHost)
				env.Setenv("CLUSTER_HOST_ADDR", c.HostAddr)
				for i, n := range c.Nodes {
					env.Setenv(fmt.Sprintf("NODE%d", i+1), n.Name)
				}
			})
			if err != nil {
				return err
			}
			// The workers trust the CA as scripts/install.sh --join
			// makes a new machine trust it.
			in := installations.get(env.WorkDir)
			ca, err := os.ReadFile(filepath.Join(in.dataDir, "registry-tls", registry.CAFileName))
			if err != nil {
				return err
			}
			for _, n := range c.Nodes[1:] {
				if err := registry.WriteDockerCA(n.CertsDir, in.registryHostPort(), ca); err != nil {
					return err
				}
			}
			return nil
		},
		Cmds:                clusterCmds(),
		RequireExplicitExec: true,
	})
}

// cnbRunImage is the run image of the air-gapped builder, as its metadata
// label names it.
func cnbRunImage(t *testing.T) string {
	t.Helper()
	cli := buildertest.Docker(t)
	bi, err := cli.ImageInspect(context.Background(), builder.DefaultCNBBuilder)
	if err != nil {
		t.Fatalf("the air-gapped CNB builder %s is missing (%v): run scripts/builder/build.sh (scripts/install.sh --deps does)", builder.DefaultCNBBuilder, err)
	}
	var run string
	if bi.Config != nil {
		run, err = builder.RunImage(bi.Config.Labels)
	}
	if run == "" || err != nil {
		t.Fatalf("%s names no run image (%v)", builder.DefaultCNBBuilder, err)
	}
	return run
}

// clusterCmds are the script commands of the single-node scenarios and the
// cluster's own.
func clusterCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	cmds := maps.Clone(scriptCmds)
	cmds["spread"] = cmdSpread
	cmds["hits"] = cmdHits
	return cmds
}

// cmdSpread: "spread APP PROCESS N" reads ps:report APP --format json and
// nodes:list --format json through the real ssh client and checks that PROCESS has N running tasks spread over the active
// nodes: none on a drained or paused one, and the counts per active node
// differ by at most one (so with N at least the number of active nodes,
// every one has a task). nodes:list must count the same tasks. Prints a
// "PROCESS.SLOT NODE" line per task.
func cmdSpread(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: spread APP PROCESS N")
	}
	app, process := args[0], args[1]
	want, err := strconv.Atoi(args[2])
	ts.Check(err)
	var report struct {
		Processes []scheduler.ProcessStatus `json:"processes"`
	}
	sshJSON(ts, &report, "ps:report", app, "--format", "json")
	var nodes []scheduler.Node
	sshJSON(ts, &nodes, "nodes:list", "--format", "json")
	perNode := map[string]int{}
	total := 0
	for _, p := range report.Processes {
		if p.Process != process {
			continue
		}
		for _, task := range p.Tasks {
			if task.State != "running" {
				ts.Fatalf("%s task %d is %s, not running", p.Process, task.Slot, task.State)
			}
			if task.Node == "" {
				ts.Fatalf("ps:report names no node for %s task %d", p.Process, task.Slot)
			}
			fmt.Fprintf(ts.Stdout(), "%s.%d %s\n", p.Process, task.Slot, task.Node)
			perNode[task.Node]++
			total++
		}
	}
	if total != want {
		ts.Fatalf("%d %s tasks, want %d", total, process, want)
	}
	lo, hi := want, 0
	for _, n := range nodes {
		got := perNode[n.Name]
		delete(perNode, n.Name)
		if n.Tasks[app] < got {
			ts.Fatalf("nodes:list counts %d tasks of %s on %s, ps:report %d %s tasks", n.Tasks[app], app, n.Name, got, process)
		}
		if n.Availability != "active" || n.State != "ready" {
			if got > 0 {
				ts.Fatalf("%d %s tasks on %s, which is %s and %s", got, process, n.Name, n.State, n.Availability)
			}
			continue
		}
		lo, hi = min(lo, got), max(hi, got)
	}
	if len(perNode) > 0 {
		ts.Fatalf("%s tasks on nodes nodes:list does not show: %v", process, perNode)
	}
	if hi-lo > 1 {
		ts.Fatalf("%s tasks not spread over the active nodes: from %d to %d on one node", process, lo, hi)
	}
}

// sshJSON runs a paas command as the administrator through the ssh client
// and decodes its JSON output into v.
func sshJSON(ts *testscript.TestScript, v any, args ...string) {
	cmd := exec.Command("ssh", append([]string{"-F", ts.Getenv("SSHCONFIG"), "paas"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		ts.Fatalf("ssh paas %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if err := json.Unmarshal(out, v); err != nil {
		ts.Fatalf("ssh paas %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cmdHits: "hits HOST N WANT" sends N GETs of / for HOST through the router,
// each on a new connection, and checks that WANT different bodies came back
// (each task answers with its own name) and that every request got a 200.
func cmdHits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: hits HOST N WANT")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	want, err := strconv.Atoi(args[2])
	ts.Check(err)
	in := installations.get(ts.Getenv("WORK"))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var (
		mu     sync.Mutex
		bodies = map[string]int{}
		failed []string
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, 4)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req, _ := http.NewRequest("GET", "http://"+in.routerAddr()+"/", nil)
			req.Host = args[0]
			resp, err := c.Do(req)
			var body []byte
			if err == nil {
				body, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err.Error())
				return
			}
			bodies[strings.TrimSpace(string(body))]++
		})
	}
	wg.Wait()
	for _, b := range slices.Sorted(maps.Keys(bodies)) {
		fmt.Fprintf(ts.Stdout(), "%d %s\n", bodies[b], b)
	}
	if len(failed) > 0 {
		ts.Fatalf("%d of %d requests failed: %q", len(failed), n, failed[:min(len(failed), 5)])
	}
	if len(bodies) != want {
		ts.Fatalf("%d different answers, want %d", len(bodies), want)
	}
}
