// Command cluster is the multi-node benchmark of issue 16. It brings up a
// 3-node Swarm of real Docker daemons on this machine (scripts/cluster.sh: a
// network namespace and a dockerd per node, one private /24), starts the
// real paasd against it (DOCKER_HOST = the manager's socket, the embedded
// registry on the host's address on the cluster's bridge, its CA in every
// node's certs.d: the nodes verify its TLS), deploys an app
// with web=3 spread over the nodes through the real git and ssh clients, and
// sends steady keep-alive GETs through the router on the manager's address
// while it:
//
//	drains a worker (ssh nodes:drain) and activates it again,
//	deploys (which spreads the tasks over the 3 nodes again),
//	cuts a worker's network (ip link down in its namespace) and, once the
//	app is back at full scale and every request sent meanwhile has been
//	answered or has timed out (-request-timeout), restores it,
//	deploys again,
//	drains a worker by hand (docker node update --availability drain) and
//	activates it again.
//
// For each event it prints the requests sent, failed, their p99 latency and
// the fewest backends the router routed, and for the cut the seconds until
// the app runs 3 healthy tasks again (3 running tasks off the lost node, each
// routed by the router and answering its check). A request counts for the
// event under way when it was sent; an event's window is its operation, then
// as long as it takes to hold -min-requests requests. Target: 0 failed of at
// least -min-requests requests in every event, and full scale back within
// 30 s of the cut. The app exits at once on SIGTERM (-app exit, the hard
// case of DESIGN.md's zero downtime) or finishes its requests (-app drain).
//
//	go run ./scripts/bench/cluster [-app exit|drain] [-min-requests 20000] [-workers 8] [-timeout 20m]
//
// It needs root (network namespaces, dockerd), git, OpenSSH's client, Go and
// the cluster's tools (scripts/install.sh --deps). Traffic goes only to the
// cluster's own namespace addresses and to 127.0.0.1 (paasd's SSH).
// Everything it starts is stopped and removed at the end, also on errors and
// on SIGINT/SIGTERM.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/internal/loopback"
	"paas/internal/paas"
	"paas/router/contract"
)

type options struct {
	minRequests int64
	maxRequests int64
	workers     int
	fullScale   time.Duration
	timeout     time.Duration
	handDrain   bool
	app         string
	reqTimeout  time.Duration
}

func main() {
	var o options
	flag.Int64Var(&o.minRequests, "min-requests", 20000, "each event's window lasts until at least this many requests were sent in it")
	flag.Int64Var(&o.maxRequests, "max-requests", 3_000_000, "bound on the requests of the whole run")
	flag.IntVar(&o.workers, "workers", 8, "concurrent load connections (keep-alive)")
	flag.DurationVar(&o.fullScale, "full-scale", 30*time.Second, "target: the app runs 3 healthy tasks again this soon after a node is cut off")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole run")
	flag.BoolVar(&o.handDrain, "hand-drain", true, "also drain a worker with docker node update --availability drain, behind paas's back")
	flag.DurationVar(&o.reqTimeout, "request-timeout", 30*time.Second, "a request not answered this long after it was sent counts as failed")
	flag.StringVar(&o.app, "app", "exit", "the app: exit (exits at once on SIGTERM, the hard case) or drain (finishes its requests on SIGTERM)")
	flag.Parse()
	if o.app != "exit" && o.app != "drain" {
		fmt.Fprintln(os.Stderr, "bench: -app is exit or drain")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("the cluster needs root (network namespaces, dockerd)")
	}
	for _, tool := range []string{"git", "ssh", "ssh-keygen", "go", "docker", "dockerd", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required: run scripts/install.sh --deps", tool)
		}
	}
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "paas-cluster-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	id := make([]byte, 4)
	_, _ = rand.Read(id)
	c, err := clusterUp(ctx, repo, "cb-"+hex.EncodeToString(id))
	if c != nil {
		defer c.down()
	}
	if err != nil {
		return err
	}
	in, err := startPaasd(ctx, repo, tmp, c)
	if in != nil {
		defer in.stop()
	}
	if err != nil {
		return err
	}
	b := &bench{o: o, c: c, in: in, tmp: tmp, app: "web3"}
	if b.docker, err = client.NewClientWithOpts(client.WithHost(c.DockerHost), client.WithAPIVersionNegotiation()); err != nil {
		return err
	}
	defer b.docker.Close()
	return b.run(ctx)
}

// cluster is what scripts/cluster.sh up --format json prints.
type cluster struct {
	Name       string `json:"name"`
	Subnet     string `json:"subnet"`
	HostAddr   string `json:"host_addr"`
	DockerHost string `json:"docker_host"`
	Nodes      []struct {
		Name     string `json:"name"`
		Role     string `json:"role"`
		Addr     string `json:"addr"`
		CertsDir string `json:"certs_dir"` // what its dockerd reads as /etc/docker/certs.d
	} `json:"nodes"`

	script string
}

func clusterUp(ctx context.Context, repo, name string) (*cluster, error) {
	c := &cluster{Name: name, script: filepath.Join(repo, "scripts", "cluster.sh")}
	fmt.Printf("-----> Starting a 3-node cluster %s\n", name)
	// --tls-registry: the nodes take no registry without verified TLS, and
	// each reads registry CAs from a certs.d of its own, as machines do.
	cmd := exec.CommandContext(ctx, c.script, "up", "3", "--name", name, "--tls-registry", "--format", "json")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return c, fmt.Errorf("cluster.sh up: %w", err)
	}
	if err := json.Unmarshal(out, c); err != nil {
		return c, fmt.Errorf("cluster.sh up: read %q: %w", out, err)
	}
	if len(c.Nodes) != 3 || c.Nodes[0].Role != "manager" {
		return c, fmt.Errorf("cluster.sh up: want a manager and 2 workers, got %+v", c.Nodes)
	}
	return c, nil
}

// link runs cluster.sh cut or restore for node k (1-based).
func (c *cluster) link(ctx context.Context, verb string, k int) error {
	_, err := runCmd(ctx, "", nil, c.script, verb, fmt.Sprintf("node%d", k), "--name", c.Name)
	return err
}

func (c *cluster) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.script, "down", "--name", c.Name)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, " !     cluster.sh down --name %s: %v\n", c.Name, err)
	}
}

func runCmd(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// paasd is the real paasd serving the cluster from this machine.
type paasd struct {
	name       string
	routerAddr string // the manager's address and the router's HTTP port
	token      string // the router's control token
	sshArgs    []string
	gitSSH     string
	sshPort    int
	cmd        *exec.Cmd
	log        string
}

func startPaasd(ctx context.Context, repo, tmp string, c *cluster) (*paasd, error) {
	bin := filepath.Join(tmp, "paasd")
	fmt.Println("-----> Building paasd")
	if _, err := runCmd(ctx, repo, []string{"CGO_ENABLED=0"}, "go", "build", "-o", bin, "./cmd/paasd"); err != nil {
		return nil, err
	}
	key := filepath.Join(tmp, "id_ed25519")
	if _, err := runCmd(ctx, tmp, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return nil, err
	}
	adminKeys := filepath.Join(tmp, "admin_keys")
	if err := os.WriteFile(adminKeys, pub, 0o600); err != nil {
		return nil, err
	}
	sshPort, err := loopback.FreePort()
	if err != nil {
		return nil, err
	}
	// The router binds its port in the manager's namespace, which is new
	// and runs nothing but its dockerd: a port free on this machine is.
	httpPort, err := loopback.FreePort()
	if err != nil {
		return nil, err
	}
	// The registry listens on this machine's address on the cluster's
	// bridge, which every node reaches.
	l, err := net.Listen("tcp", net.JoinHostPort(c.HostAddr, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen on the host's cluster address: %w", err)
	}
	regAddr := l.Addr().String()
	l.Close()

	dataDir := filepath.Join(tmp, "data")
	in := &paasd{name: "cb", routerAddr: net.JoinHostPort(c.Nodes[0].Addr, fmt.Sprint(httpPort)), sshPort: sshPort, log: filepath.Join(tmp, "paasd.log")}
	opts := []string{"-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", fmt.Sprint(sshPort)}
	in.sshArgs = append(opts, "git@127.0.0.1")
	in.gitSSH = "ssh " + strings.Join(opts, " ")
	args := []string{"serve", "--data-dir", dataDir,
		"--ssh-addr", fmt.Sprintf("127.0.0.1:%d", sshPort), "--http-port", fmt.Sprint(httpPort), "--https-port", "0",
		"--registry-addr", regAddr, "--domain", "paas.bench",
		// The manager's daemon is paasd's local one: paasd writes the
		// registry's CA where it looks; the workers get it below, as
		// install.sh --join gives it to a machine that joins.
		"--docker-certs-dir", c.Nodes[0].CertsDir,
		// Only node 1 is a manager, so only its socket is mounted.
		"--node-docker-socket", strings.TrimPrefix(c.DockerHost, "unix://"),
		"--admin-keys", adminKeys, "--name", in.name}
	logf, err := os.Create(in.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	in.cmd = exec.Command(bin, args...)
	in.cmd.Env = append(os.Environ(), "DOCKER_HOST="+c.DockerHost)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	fmt.Printf("-----> Starting paasd (DOCKER_HOST %s, registry %s, router at %s)\n", c.DockerHost, regAddr, in.routerAddr)
	if err := in.cmd.Start(); err != nil {
		return nil, err
	}
	start := time.Now()
	for {
		resp, err := http.Get("http://" + in.routerAddr + "/")
		if err == nil {
			resp.Body.Close()
			if _, err := in.ssh(ctx, "version"); err == nil {
				break
			}
		}
		if time.Since(start) > 3*time.Minute || ctx.Err() != nil {
			return in, fmt.Errorf("paasd's router did not answer at %s in 3 minutes; log %s:\n%s", in.routerAddr, in.log, tail(in.log, 20))
		}
		time.Sleep(500 * time.Millisecond)
	}
	ca, err := os.ReadFile(filepath.Join(c.Nodes[0].CertsDir, regAddr, "ca.crt"))
	if err != nil {
		return in, fmt.Errorf("paasd wrote no registry CA for the manager's daemon: %w", err)
	}
	for _, n := range c.Nodes[1:] {
		if err := os.MkdirAll(filepath.Join(n.CertsDir, regAddr), 0o755); err != nil {
			return in, err
		}
		if err := os.WriteFile(filepath.Join(n.CertsDir, regAddr, "ca.crt"), ca, 0o644); err != nil {
			return in, err
		}
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "router_token"))
	if err != nil {
		return in, err
	}
	in.token = strings.TrimSpace(string(tok))
	fmt.Printf("       router answers %.1fs after paasd started\n", time.Since(start).Seconds())
	return in, nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (in *paasd) ssh(ctx context.Context, args ...string) (string, error) {
	return runCmd(ctx, "", nil, "ssh", append(slices.Clone(in.sshArgs), args...)...)
}

func (in *paasd) stop() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = in.cmd.Process.Kill()
		<-done
	}
}

// event is one operation of the harness and the requests sent while it ran.
type event struct {
	name     string
	op, span time.Duration // the operation; the whole window
	note     string

	inflight atomic.Int64 // requests sent in the window and not answered yet

	mu           sync.Mutex
	minRouted    int // fewest backends of the app the router routed during the window; -1 not sampled
	sent, failed int64
	slow         int64 // answered or failed after more than a second
	lat          []time.Duration
	first        []string
}

func newEvent(name string) *event { return &event{name: name, minRouted: -1} }

func (e *event) routed(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.minRouted < 0 || n < e.minRouted {
		e.minRouted = n
	}
}

func (e *event) count() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sent
}

func (e *event) record(d time.Duration, failure string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sent++
	e.lat = append(e.lat, d)
	if d > time.Second {
		e.slow++
	}
	if failure != "" {
		e.failed++
		if len(e.first) < 5 {
			e.first = append(e.first, failure)
		}
	}
}

func (e *event) percentile(p float64) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.percentileLocked(p)
}

// load is steady keep-alive GET traffic through the router; each request
// counts for the event under way when it was sent.
type load struct {
	cur   atomic.Pointer[event]
	total atomic.Int64
}

func (l *load) run(ctx context.Context, addr, host string, workers int, limit int64, timeout time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			c := &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			url := "http://" + addr + "/"
			for ctx.Err() == nil && l.total.Add(1) <= limit {
				ev := l.cur.Load()
				ev.inflight.Add(1)
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				req.Host = host
				start := time.Now()
				resp, err := c.Do(req)
				status := 0
				if err == nil {
					status = resp.StatusCode
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := time.Since(start)
				ev.inflight.Add(-1)
				if ctx.Err() != nil {
					return // cut by the end of the run, not by the platform
				}
				failure := ""
				if err != nil || status != http.StatusOK {
					failure = fmt.Sprintf("%s after %.0f ms: status %d, %v", start.Format("15:04:05.000"), float64(d.Microseconds())/1000, status, err)
				}
				ev.record(d, failure)
			}
		})
	}
	return &wg
}

const appSource = `package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	version, _ := os.ReadFile("/version")
	host, _ := os.Hostname()
	srv := &http.Server{Addr: ":" + os.Getenv("PORT"), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "v=%s task=%s\n", version, host)
	})}
	if os.Getenv("DRAIN") == "1" {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		go func() {
			<-stop
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		}()
	}
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		panic(err)
	}
}
`

// step is one event the harness causes.
type step struct {
	name string
	fn   func(ev *event) error
}

type bench struct {
	o      options
	c      *cluster
	in     *paasd
	docker *client.Client
	tmp    string
	app    string
	dir    string // the app's git checkout
	load   load
	events []*event
}

func (b *bench) run(ctx context.Context) error {
	if err := b.createApp(ctx); err != nil {
		return err
	}
	idle := newEvent("(between events)")
	b.load.cur.Store(idle)
	lctx, stopLoad := context.WithCancel(ctx)
	wg := b.load.run(lctx, b.in.routerAddr, b.app+".paas.bench", b.o.workers, b.o.maxRequests, b.o.reqTimeout)
	wg.Go(func() { b.sampleRouted(lctx) })
	defer func() { stopLoad(); wg.Wait() }()

	fmt.Printf("\n-----> %d keep-alive connections to the router at %s; each event's window lasts at least %d requests\n", b.o.workers, b.in.routerAddr, b.o.minRequests)
	worker, lost := 2, 3 // node2 is drained, node3 is cut off
	wname, lname := b.c.Nodes[worker-1].Name, b.c.Nodes[lost-1].Name
	var fullScale time.Duration
	steps := []step{
		{"steady (no operation)", func(*event) error { return nil }},
		{"ssh nodes:drain " + wname, func(*event) error {
			if _, err := b.in.ssh(ctx, "nodes:drain", wname); err != nil {
				return err
			}
			return b.waitOff(ctx, wname, time.Minute)
		}},
		{"ssh nodes:activate " + wname, func(*event) error { _, err := b.in.ssh(ctx, "nodes:activate", wname); return err }},
		{"deploy 1 (git push)", func(*event) error { return b.deploy(ctx, 2) }},
		{"node loss: " + lname + " cut off", func(ev *event) error {
			d, err := b.nodeLoss(ctx, ev, lost)
			fullScale = d
			return err
		}},
		{"node back: " + lname + " restored", func(ev *event) error { return b.nodeBack(ctx, ev, lost) }},
		{"deploy 2 (git push)", func(*event) error { return b.deploy(ctx, 3) }},
	}
	if b.o.handDrain {
		steps = append(steps,
			step{"docker node update --availability drain " + wname, func(ev *event) error {
				if _, err := runCmd(ctx, "", nil, "docker", "-H", b.c.DockerHost, "node", "update", "--availability", "drain", wname); err != nil {
					return err
				}
				start := time.Now()
				err := b.waitOff(ctx, wname, 2*time.Minute)
				ev.note = fmt.Sprintf("3 tasks routed off %s %.1fs after the command", wname, time.Since(start).Seconds())
				return err
			}},
			step{"docker node update --availability active " + wname, func(*event) error {
				_, err := runCmd(ctx, "", nil, "docker", "-H", b.c.DockerHost, "node", "update", "--availability", "active", wname)
				return err
			}})
	}
	for _, s := range steps {
		if err := b.placement(ctx, "       tasks:"); err != nil {
			return err
		}
		ev := newEvent(s.name)
		b.events = append(b.events, ev)
		b.load.cur.Store(ev)
		start := time.Now()
		err := s.fn(ev)
		ev.op = time.Since(start)
		// The window goes on until it holds enough requests, bounded.
		for ev.count() < b.o.minRequests && time.Since(start) < ev.op+3*time.Minute && ctx.Err() == nil && b.load.total.Load() < b.o.maxRequests {
			time.Sleep(100 * time.Millisecond)
		}
		ev.span = time.Since(start)
		b.load.cur.Store(idle)
		// The window's last requests get a moment to be answered.
		for wait := time.Now(); ev.inflight.Load() > 0 && time.Since(wait) < 2*time.Second; {
			time.Sleep(20 * time.Millisecond)
		}
		ev.mu.Lock()
		fmt.Printf("       %-56s op %5.1fs  window %5.1fs  requests %7d  failed %5d  p99 %s  routed >= %d\n", ev.name, ev.op.Seconds(), ev.span.Seconds(), ev.sent, ev.failed, ms(ev.percentileLocked(99)), ev.minRouted)
		ev.mu.Unlock()
		if n := ev.inflight.Load(); n > 0 {
			fmt.Printf("          %d request(s) of this window still unanswered 2 s after it (the table at the end counts them)\n", n)
		}
		if ev.note != "" {
			fmt.Println("         ", ev.note)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	stopLoad()
	wg.Wait()
	_ = b.placement(ctx, "       tasks:")
	return b.report(fullScale, idle)
}

func (e *event) percentileLocked(p float64) time.Duration {
	if len(e.lat) == 0 {
		return 0
	}
	s := slices.Clone(e.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func (b *bench) report(fullScale time.Duration, idle *event) error {
	fmt.Println()
	fmt.Printf("app: %s\n", map[string]string{"exit": "exits at once on SIGTERM", "drain": "finishes its requests on SIGTERM"}[b.o.app])
	fmt.Printf("%-58s %9s %7s %10s %10s %11s %5s %7s\n", "event", "requests", "failed", "p50", "p99", "max", ">1s", "routed")
	ok := true
	for _, ev := range b.events {
		fmt.Printf("%-58s %9d %7d %10s %10s %11s %5d %7d\n", ev.name, ev.sent, ev.failed, ms(ev.percentile(50)), ms(ev.percentile(99)), ms(ev.percentile(100)), ev.slow, ev.minRouted)
		ok = ok && ev.failed == 0 && ev.sent >= b.o.minRequests
	}
	fmt.Printf("%-58s %9d %7d %10s %10s %11s %5d\n", idle.name, idle.sent, idle.failed, ms(idle.percentile(50)), ms(idle.percentile(99)), ms(idle.percentile(100)), idle.slow)
	ok = ok && idle.failed == 0
	for _, ev := range append(slices.Clone(b.events), idle) {
		for _, f := range ev.first {
			fmt.Printf("   failure in %q: %s\n", ev.name, f)
		}
	}
	fmt.Println("(>1s: requests answered or failed after more than a second; routed: the fewest backends of the app the router routed during the event, sampled every 250 ms)")
	fmt.Printf("\nfull scale (3 healthy tasks) %.1fs after the cut\n", fullScale.Seconds())
	fmt.Printf("target: 0 failed of at least %d requests in every event; full scale within %.0fs of the cut\n", b.o.minRequests, b.o.fullScale.Seconds())
	if fullScale == 0 || fullScale > b.o.fullScale {
		ok = false
	}
	if !ok {
		return errors.New("target missed")
	}
	fmt.Println("target met")
	return nil
}

// createApp creates the app, deploys it and scales web to 3.
func (b *bench) createApp(ctx context.Context) error {
	kind := map[string]string{"exit": "exits at once on SIGTERM", "drain": "finishes its requests on SIGTERM"}[b.o.app]
	fmt.Printf("-----> App %s: a Dockerfile app that %s, web=3\n", b.app, kind)
	b.dir = filepath.Join(b.tmp, b.app)
	files := map[string]string{
		"main.go":    appSource,
		"go.mod":     "module app\n\ngo 1.22\n",
		"Dockerfile": "FROM scratch\nCOPY server /server\nCOPY version /version\nCMD [\"/server\"]\n",
		"version":    "1",
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(b.dir, f), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if _, err := runCmd(ctx, b.dir, []string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off"}, "go", "build", "-o", "server", "."); err != nil {
		return err
	}
	if _, err := b.in.ssh(ctx, "apps:create", b.app); err != nil {
		return err
	}
	drain := map[string]string{"exit": "DRAIN=0", "drain": "DRAIN=1"}[b.o.app]
	if _, err := b.in.ssh(ctx, "config:set", "--no-restart", b.app, drain); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "v1"},
		{"remote", "add", "paas", fmt.Sprintf("ssh://git@127.0.0.1:%d/%s", b.in.sshPort, b.app)}} {
		if err := b.git(ctx, args...); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := b.git(ctx, "push", "-q", "paas", "main"); err != nil {
		return err
	}
	fmt.Printf("       first push deployed in %.1fs\n", time.Since(start).Seconds())
	start = time.Now()
	if _, err := b.in.ssh(ctx, "ps:scale", b.app, "web=3"); err != nil {
		return err
	}
	fmt.Printf("       ps:scale web=3 in %.1fs\n", time.Since(start).Seconds())
	return nil
}

func (b *bench) git(ctx context.Context, args ...string) error {
	env := []string{"GIT_SSH_COMMAND=" + b.in.gitSSH, "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=b@example.com"}
	_, err := runCmd(ctx, b.dir, env, "git", args...)
	return err
}

func (b *bench) deploy(ctx context.Context, version int) error {
	if err := os.WriteFile(filepath.Join(b.dir, "version"), []byte(fmt.Sprint(version)), 0o644); err != nil {
		return err
	}
	if err := b.git(ctx, "commit", "-q", "-am", fmt.Sprint("v", version)); err != nil {
		return err
	}
	return b.git(ctx, "push", "-q", "paas", "main")
}

// task is a running web task of the app.
type task struct {
	node string // hostname
	ip   string // on the installation's network
}

// webTasks returns the app's running web tasks (desired and observed).
func (b *bench) webTasks(ctx context.Context) ([]task, error) {
	nodes, err := b.docker.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, n := range nodes {
		names[n.ID] = n.Description.Hostname
	}
	// Task label filters match the labels of the task's service.
	ts, err := b.docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+b.in.name),
		filters.Arg("label", paas.LabelApp+"="+b.app),
		filters.Arg("label", paas.LabelProcess+"="+paas.WebProcess),
		filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, err
	}
	var out []task
	for _, t := range ts {
		if t.Status.State != swarm.TaskStateRunning {
			continue
		}
		tk := task{node: names[t.NodeID]}
		for _, na := range t.NetworksAttachments {
			for _, a := range na.Addresses {
				if ip, _, err := net.ParseCIDR(a); err == nil {
					tk.ip = ip.String()
				}
			}
		}
		out = append(out, tk)
	}
	return out, nil
}

// placement prints how many of the app's web tasks run on each node.
func (b *bench) placement(ctx context.Context, prefix string) error {
	ts, err := b.webTasks(ctx)
	if err != nil {
		return err
	}
	per := map[string]int{}
	for _, t := range ts {
		per[t.node]++
	}
	var parts []string
	for _, n := range b.c.Nodes {
		parts = append(parts, fmt.Sprintf("%s %d", n.Name, per[n.Name]))
	}
	fmt.Println(prefix, strings.Join(parts, ", "))
	return nil
}

// healthy returns how many of the app's backends the router routes that
// are not at the addresses in avoid and answer a check with 200.
func (b *bench) healthy(ctx context.Context, avoid map[string]bool) (int, error) {
	rc := &contract.Client{Addr: b.in.routerAddr, Token: b.in.token, HTTP: &http.Client{Timeout: 5 * time.Second}}
	st, err := rc.Status(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, be := range st.Backends {
		host, _, _ := net.SplitHostPort(be.Addr)
		if be.App != b.app || !be.Routed || avoid[host] {
			continue
		}
		res, err := rc.Check(ctx, contract.CheckRequest{Addr: be.Addr, Path: "/", Host: b.app + ".paas.bench", Timeout: 2000})
		if err == nil && res.Status == http.StatusOK {
			n++
		}
	}
	return n, nil
}

// sampleRouted records, for the event under way, how many backends of the
// app the router routes, until ctx ends.
func (b *bench) sampleRouted(ctx context.Context) {
	rc := &contract.Client{Addr: b.in.routerAddr, Token: b.in.token, HTTP: &http.Client{Timeout: 2 * time.Second}}
	for ctx.Err() == nil {
		ev := b.load.cur.Load()
		if st, err := rc.Status(ctx); err == nil {
			n := 0
			for _, be := range st.Backends {
				if be.App == b.app && be.Routed {
					n++
				}
			}
			ev.routed(n)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitOff waits until the app runs 3 tasks, none on node, all routed and
// answering.
func (b *bench) waitOff(ctx context.Context, node string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ts, err := b.webTasks(ctx)
		if err != nil {
			return err
		}
		avoid := map[string]bool{}
		off := 0
		for _, t := range ts {
			if t.node == node {
				avoid[t.ip] = true
			} else {
				off++
			}
		}
		if off == 3 && len(avoid) == 0 {
			if n, err := b.healthy(ctx, avoid); err == nil && n == 3 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the app does not run 3 routed tasks off %s %s later (%d tasks there)", node, limit, len(avoid))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nodeLoss cuts node k off the network and returns how long until the app
// runs 3 healthy tasks again: 3 running tasks elsewhere in Swarm, each
// routed by the router and answering a check through it.
func (b *bench) nodeLoss(ctx context.Context, ev *event, k int) (time.Duration, error) {
	name := b.c.Nodes[k-1].Name
	ts, err := b.webTasks(ctx)
	if err != nil {
		return 0, err
	}
	lostIPs := map[string]bool{}
	for _, t := range ts {
		if t.node == name {
			lostIPs[t.ip] = true
		}
	}
	cut := time.Now()
	if err := b.c.link(ctx, "cut", k); err != nil {
		return 0, err
	}
	var down, running, full time.Duration
	for full == 0 {
		if time.Since(cut) > 2*time.Minute || ctx.Err() != nil {
			ev.note = fmt.Sprintf("%d task(s) on %s lost; NOT back at full scale 2 minutes after the cut (node down after %.1fs, 3 running after %.1fs)", len(lostIPs), name, down.Seconds(), running.Seconds())
			return 0, errors.New("the app did not get back to 3 healthy tasks in 2 minutes")
		}
		if down == 0 {
			if n, _, err := b.docker.NodeInspectWithRaw(ctx, name); err == nil && n.Status.State != swarm.NodeStateReady {
				down = time.Since(cut)
			}
		}
		if ts, err := b.webTasks(ctx); err == nil {
			off := 0
			for _, t := range ts {
				if t.node != name {
					off++
				}
			}
			if off >= 3 && running == 0 {
				running = time.Since(cut)
			}
			if off >= 3 {
				if n, err := b.healthy(ctx, lostIPs); err == nil && n >= 3 {
					full = time.Since(cut)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The node stays off the network until every request sent before full
	// scale has been answered or timed out: a link coming back must not
	// rescue requests a lost machine would have taken down with it.
	for time.Since(cut) < full+b.o.reqTimeout+time.Second && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	ev.note = fmt.Sprintf("%d task(s) on %s lost at %s; Swarm saw the node down after %.1fs, ran 3 tasks elsewhere after %.1fs; 3 routed and healthy after %.1fs; the node stays cut off for %.0fs",
		len(lostIPs), name, cut.Format("15:04:05.000"), down.Seconds(), running.Seconds(), full.Seconds(), time.Since(cut).Seconds())
	return full, nil
}

// nodeBack restores node k's network and waits until Swarm has it ready.
func (b *bench) nodeBack(ctx context.Context, ev *event, k int) error {
	name := b.c.Nodes[k-1].Name
	start := time.Now()
	if err := b.c.link(ctx, "restore", k); err != nil {
		return err
	}
	for {
		if n, _, err := b.docker.NodeInspectWithRaw(ctx, name); err == nil && n.Status.State == swarm.NodeStateReady {
			ev.note = fmt.Sprintf("%s ready again %.1fs after its link came back", name, time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > 2*time.Minute || ctx.Err() != nil {
			return fmt.Errorf("%s not ready 2 minutes after its link came back", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
