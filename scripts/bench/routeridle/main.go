// Command routeridle measures what an idle router costs as the number of
// apps grows (issue 16, "Routes at scale"): the CPU time of a router process
// (paasd router) and of the dockerd it reads, with 10 and with 1,000 web
// services of an installation, while nothing changes.
//
//	go run ./scripts/bench/routeridle [-counts 10,1000] [-modes events,poll,none] [-duration 60s]
//
// It brings up a one-node swarm of its own (scripts/cluster.sh up 1 --name
// routeridle), so that the dockerd measured serves nothing else; the
// machine's daemon and other swarms are not touched. The services are made
// straight through the Docker API, one replica each: the first 10 run a
// task of a tiny image built here; the others' tasks stay pending under a
// placement constraint no node meets (a thousand containers do not fit a
// small machine), so every service still has a task meant to run for the
// router to list. Modes: events, the
// router following Docker's event stream (the default); poll, the router
// re-reading every route each second (paasd router --routes-from poll, as
// before); none, no router (dockerd's own idle cost). It prints CPU seconds
// per minute of each process, and the ratio 1000/10 for each mode. Every
// service it made is removed and the swarm taken down at the end, also on
// errors and on SIGINT/SIGTERM.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"paas/internal/paas"
)

const (
	clusterName  = "routeridle"
	installation = "idlebench"
	running      = 10 // services that run a task
)

type options struct {
	counts   []int
	modes    []string
	duration time.Duration
	warmup   time.Duration
	timeout  time.Duration
}

func main() {
	var o options
	var counts, modes string
	flag.StringVar(&counts, "counts", "10,1000", "numbers of web services to measure with, ascending")
	flag.StringVar(&modes, "modes", "events,poll,none", "what reads the routes: events, poll (each second), none (no router)")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long each measurement lasts")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "how long a router runs before it is measured")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound on the whole run")
	flag.Parse()
	for c := range strings.SplitSeq(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || len(o.counts) > 0 && n <= o.counts[len(o.counts)-1] {
			fmt.Fprintf(os.Stderr, "routeridle: -counts %q: positive numbers, ascending\n", counts)
			os.Exit(2)
		}
		o.counts = append(o.counts, n)
	}
	for m := range strings.SplitSeq(modes, ",") {
		if m != "events" && m != "poll" && m != "none" {
			fmt.Fprintf(os.Stderr, "routeridle: -modes: %q is not events, poll or none\n", m)
			os.Exit(2)
		}
		o.modes = append(o.modes, m)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "routeridle:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) (err error) {
	script, err := filepath.Abs("scripts/cluster.sh")
	if err != nil {
		return err
	}
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("run from the repository's top directory: %w", err)
	}
	tmp, err := os.MkdirTemp("", "paas-routeridle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	step("building paasd")
	paasd := filepath.Join(tmp, "paasd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", paasd, "./cmd/paasd").CombinedOutput(); err != nil {
		return fmt.Errorf("build paasd: %w\n%s", err, out)
	}

	step("bringing up a one-node swarm: " + script + " up 1 --name " + clusterName)
	_ = exec.Command(script, "down", "--name", clusterName).Run() // a previous run's leftovers
	up := exec.CommandContext(ctx, script, "up", "1", "--name", clusterName, "--format", "json")
	up.Stderr = os.Stderr
	if _, err := up.Output(); err != nil {
		return fmt.Errorf("cluster up: %w", err)
	}
	defer func() {
		step("taking the swarm down")
		down := exec.Command(script, "down", "--name", clusterName)
		down.Stderr = os.Stderr
		if derr := down.Run(); derr != nil && err == nil {
			err = fmt.Errorf("cluster down: %w", derr)
		}
	}()
	nodeDir := filepath.Join("/run/paas-cluster", clusterName, "node1")
	dockerHost := "unix://" + filepath.Join(nodeDir, "docker.sock")
	dockerdPID, err := readPID(filepath.Join(nodeDir, "dockerd.pid"))
	if err != nil {
		return err
	}
	cli, err := client.NewClientWithOpts(client.WithHost(dockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()

	step("building a tiny image on the node")
	img, err := buildImage(ctx, cli, tmp)
	if err != nil {
		return err
	}
	var made []string
	defer func() {
		if len(made) == 0 {
			return
		}
		step(fmt.Sprintf("removing the %d services", len(made)))
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for _, id := range made {
			if rerr := cli.ServiceRemove(rctx, id); rerr != nil && err == nil {
				err = fmt.Errorf("remove service: %w", rerr)
			}
		}
	}()

	type result struct{ router, dockerd float64 }
	results := map[string]map[int]result{}
	for _, n := range o.counts {
		step(fmt.Sprintf("creating services up to %d", n))
		for len(made) < n {
			id, err := createService(ctx, cli, img, len(made))
			if err != nil {
				return err
			}
			made = append(made, id)
		}
		if err := waitRunning(ctx, cli, min(n, running)); err != nil {
			return err
		}
		if err := settle(ctx, cli); err != nil {
			return err
		}
		for _, mode := range o.modes {
			step(fmt.Sprintf("%d services, %s: measuring for %s", n, mode, o.duration))
			r, d, err := measure(ctx, o, paasd, dockerHost, dockerdPID, mode)
			if err != nil {
				return err
			}
			if results[mode] == nil {
				results[mode] = map[int]result{}
			}
			results[mode][n] = result{r, d}
			fmt.Printf("%6d services  %-6s  router %7.3f CPU s/min  dockerd %7.3f CPU s/min\n", n, mode, r, d)
		}
	}

	fmt.Printf("\nidle CPU, seconds per minute (%s each; services: %d running one task, the rest one pending task)\n", o.duration, running)
	fmt.Printf("%-8s %8s %10s %10s\n", "mode", "services", "router", "dockerd")
	for _, mode := range o.modes {
		for _, n := range o.counts {
			r := results[mode][n]
			fmt.Printf("%-8s %8d %10.3f %10.3f\n", mode, n, r.router, r.dockerd)
		}
	}
	lo, hi := o.counts[0], o.counts[len(o.counts)-1]
	if lo != hi {
		fmt.Printf("\nratio %d/%d (target within 1.5x for events)\n", hi, lo)
		for _, mode := range o.modes {
			a, b := results[mode][lo], results[mode][hi]
			fmt.Printf("%-8s router %s  dockerd %s\n", mode, ratio(b.router, a.router), ratio(b.dockerd, a.dockerd))
		}
	}
	return nil
}

func ratio(hi, lo float64) string {
	if lo <= 0 {
		return "   n/a"
	}
	return fmt.Sprintf("%5.2fx", hi/lo)
}

func step(s string) { fmt.Fprintln(os.Stderr, "-----> "+s) }

// measure runs a router in the given mode (none: no router) and returns the
// CPU seconds per minute of it and of dockerd over o.duration.
func measure(ctx context.Context, o options, paasd, dockerHost string, dockerdPID int, mode string) (float64, float64, error) {
	var router *exec.Cmd
	if mode != "none" {
		port, err := freePort()
		if err != nil {
			return 0, 0, err
		}
		router = exec.Command(paasd, "router", "--name", installation, "--domain", "idle.test", "--network", installation+"-net",
			"--http-port", strconv.Itoa(port), "--access-log", "off", "--routes-from", mode)
		router.Env = append(os.Environ(), "DOCKER_HOST="+dockerHost)
		var log bytes.Buffer
		router.Stdout, router.Stderr = &log, &log
		if err := router.Start(); err != nil {
			return 0, 0, fmt.Errorf("start the router: %w", err)
		}
		defer func() {
			_ = router.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = router.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = router.Process.Kill()
				<-done
			}
			if strings.Contains(log.String(), `"level":"ERROR"`) || strings.Contains(log.String(), `"level":"WARN"`) {
				fmt.Fprintf(os.Stderr, "router log:\n%s", log.String())
			}
		}()
	}
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(o.warmup):
	}
	if router != nil && router.Process.Signal(syscall.Signal(0)) != nil {
		return 0, 0, errors.New("the router exited")
	}
	var r0, r1 float64
	var err error
	if router != nil {
		if r0, err = cpuSeconds(router.Process.Pid); err != nil {
			return 0, 0, err
		}
	}
	d0, err := cpuSeconds(dockerdPID)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(o.duration):
	}
	if router != nil {
		if r1, err = cpuSeconds(router.Process.Pid); err != nil {
			return 0, 0, fmt.Errorf("the router: %w", err)
		}
	}
	d1, err := cpuSeconds(dockerdPID)
	if err != nil {
		return 0, 0, err
	}
	perMin := time.Minute.Seconds() / time.Since(start).Seconds()
	return (r1 - r0) * perMin, (d1 - d0) * perMin, nil
}

// cpuSeconds is the user and system CPU time of a process so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("read CPU time of %d: malformed stat", pid)
	}
	f := strings.Fields(s[i+1:]) // from field 3 on
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time of %d: malformed stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read CPU time of %d: malformed stat", pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks, nil
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("dockerd of the swarm: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// createService makes web service i of the installation, as the scheduler
// labels one; the first few run a task.
func createService(ctx context.Context, cli *client.Client, img string, i int) (string, error) {
	replicas := uint64(1)
	var placement *swarm.Placement
	if i >= running {
		placement = &swarm.Placement{Constraints: []string{"node.labels.paas-routeridle==never"}}
	}
	app := fmt.Sprintf("app%04d", i)
	labels := map[string]string{
		paas.LabelInstallation: installation, paas.LabelApp: app, paas.LabelProcess: paas.WebProcess,
		paas.LabelPort: "5000", paas.LabelRelease: "1", paas.LabelRouted: "true",
	}
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: installation + "-" + app + "-web", Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: img, Labels: labels, Env: []string{"PORT=5000"}},
			Placement:     placement,
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
	resp, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create service %s: %w", spec.Name, err)
	}
	return resp.ID, nil
}

// settle waits until Swarm has sent no service event for quietFor: after a
// thousand services are created it goes on updating them for a while, and a
// router follows a service it hears of until its tasks run (these never
// will). Idle starts after that.
func settle(ctx context.Context, cli *client.Client) error {
	const quietFor = 10 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	msgs, errs := cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", string(events.ServiceEventType)))})
	start := time.Now()
	seen := 0
	for {
		select {
		case <-msgs:
			seen++
		case err := <-errs:
			return fmt.Errorf("wait for swarm to settle: %w", err)
		case <-time.After(quietFor):
			step(fmt.Sprintf("swarm settled: %d service events in %s, then %s without any", seen, time.Since(start).Round(time.Second), quietFor))
			return nil
		}
	}
}

// waitRunning waits until n tasks of the installation run.
func waitRunning(ctx context.Context, cli *client.Client, n int) error {
	f := filters.NewArgs(filters.Arg("label", paas.LabelInstallation+"="+installation), filters.Arg("desired-state", "running"))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: f})
		if err != nil {
			return fmt.Errorf("list tasks: %w", err)
		}
		up := 0
		for _, t := range tasks {
			if t.Status.State == swarm.TaskStateRunning {
				up++
			}
		}
		if up >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d tasks run after 2 minutes", up, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

const serverMain = `package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello\n")) })
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		os.Exit(1)
	}
}
`

// buildImage compiles a static HTTP server and builds a FROM scratch image
// of it on the node; nothing is pulled.
func buildImage(ctx context.Context, cli *client.Client, tmp string) (string, error) {
	dir := filepath.Join(tmp, "server")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for file, content := range map[string]string{"main.go": serverMain, "go.mod": "module server\n\ngo 1.26\n"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "server", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the server: %w\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "server"))
	if err != nil {
		return "", err
	}
	var buildCtx bytes.Buffer
	tw := tar.NewWriter(&buildCtx)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")},
		{"server", 0o755, bin},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	const tag = installation + "-server:latest"
	resp, err := cli.ImageBuild(ctx, &buildCtx, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil); err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	return tag, nil
}
