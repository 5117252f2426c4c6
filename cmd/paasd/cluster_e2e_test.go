package main

// End-to-end scenarios on a cluster: each testdata/cluster/*.txtar runs
// against the real paasd pointed at a 3-node Swarm of real Docker daemons on
// this machine (scripts/cluster.sh: two managers and a worker, each in a
// network namespace of its own; paasd talks to node 1), with the real ssh
// and git clients.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/docker/docker/client"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/builder"
	"paas/builder/buildertest"
	"paas/internal/clustertest"
	"paas/internal/daemon"
	"paas/internal/registry"
	"paas/router/contract"
	"paas/router/relay"
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
	// Node 2 is a manager too: it runs a router, which reaches paasd on
	// node 1 through its ports process's relay.
	c := clustertest.UpWith(t, 3, clustertest.Options{TLSRegistry: true, Managers: 2})
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
				// The relay listener on the machine's address on the
				// cluster's bridge, where the managers reach paasd.
				in.extraArgs = append(in.extraArgs, "--node-docker-socket", c.ManagerSocket(),
					"--docker-certs-dir", c.Manager().CertsDir, "--control-addr", net.JoinHostPort(c.HostAddr, "0"))
				env.Setenv("DOCKER_HOST", c.DockerHost)
				env.Setenv("CLUSTER_HOST_ADDR", c.HostAddr)
				for i, n := range c.Nodes {
					env.Setenv(fmt.Sprintf("NODE%d", i+1), n.Name)
					env.Setenv(fmt.Sprintf("NODE%d_ADDR", i+1), n.Addr)
				}
				// The second manager pulls the router's image as paasd
				// starts: it trusts the registry's CA (made here, kept by
				// paasd) from the start, as a manager joined with
				// scripts/install.sh --join does.
				certs, err := registry.LoadCertificates(filepath.Join(in.dataDir, "registry-tls"), []string{c.HostAddr})
				if err == nil {
					err = registry.WriteDockerCA(c.Nodes[1].CertsDir, in.registryHostPort(), certs.CA)
				}
				if err != nil {
					env.T().Fatal(err)
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
	cmds["control-via"] = cmdControlVia
	cmds["relay-refuses"] = cmdRelayRefuses
	return cmds
}

// cmdControlVia: "control-via ADDR PATH" GETs https://paas.paas.test/PATH
// through the router at ADDR (a node's address, the HTTPS port), with
// $TOKEN as the API token, and prints the status and the body. It waits
// (up to 60s) for the router to accept connections, not for any answer.
func cmdControlVia(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: control-via ADDR PATH")
	}
	ca, err := os.ReadFile(filepath.Join(ts.Getenv("DATA_DIR"), daemon.WebTLSDir, "ca.crt"))
	ts.Check(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	addr := net.JoinHostPort(args[0], ts.Getenv("HTTPS_PORT"))
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "paas.paas.test"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	defer c.CloseIdleConnections()
	for deadline := time.Now().Add(60 * time.Second); ; {
		req, err := http.NewRequest("GET", "https://paas.paas.test"+args[1], nil)
		ts.Check(err)
		req.Header.Set("Authorization", "Bearer "+ts.Getenv("TOKEN"))
		resp, err := c.Do(req)
		if err != nil {
			if time.Now().Before(deadline) {
				time.Sleep(500 * time.Millisecond)
				continue
			}
			ts.Fatalf("GET %s through %s: %v", args[1], addr, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		fmt.Fprintf(ts.Stdout(), "status %d\n%s\n", resp.StatusCode, body)
		return
	}
}

// cmdRelayRefuses: "relay-refuses" connects to the relay address paasd
// published in the Swarm as a client without the relay's certificate (TLS
// trusting paasd's, then plain HTTP) and fails unless both get no page.
func cmdRelayRefuses(ts *testscript.TestScript, neg bool, args []string) {
	cli, err := client.NewClientWithOpts(client.WithHost(ts.Getenv("DOCKER_HOST")), client.WithAPIVersionNegotiation())
	ts.Check(err)
	defer cli.Close()
	addr, err := relay.Lookup(context.Background(), cli, ts.Getenv("PAAS_NAME"))
	ts.Check(err)
	ca, err := os.ReadFile(filepath.Join(ts.Getenv("DATA_DIR"), daemon.RelayTLSDir, registry.CAFileName))
	ts.Check(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	req := "GET /api/v1/whoami HTTP/1.1\r\nHost: paas.paas.test\r\nAuthorization: Bearer " + ts.Getenv("TOKEN") + "\r\n\r\n"
	for _, withTLS := range []bool{true, false} {
		var conn net.Conn
		if withTLS {
			conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: contract.RelayServerName})
		} else {
			conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		}
		if err != nil {
			fmt.Fprintf(ts.Stdout(), "tls=%v: refused: %v\n", withTLS, err)
			continue
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, werr := io.WriteString(conn, req)
		got, rerr := io.ReadAll(conn)
		conn.Close()
		if strings.Contains(string(got), "200 OK") || strings.Contains(string(got), `"name"`) {
			ts.Fatalf("tls=%v: %s answered without the relay's certificate: %q", withTLS, addr, got)
		}
		fmt.Fprintf(ts.Stdout(), "tls=%v: refused: %q %v %v\n", withTLS, strings.SplitN(string(got), "\r\n", 2)[0], werr, rerr)
	}
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
