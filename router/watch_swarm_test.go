package router

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/internal/paas"
	"paas/router/dockerproxy"
)

// The tests here run a Router that follows the real daemon's events, with
// its resync and poll intervals at 10 minutes: within a test, only events
// and the targeted polls they start can change its table.

// routedLag is how long after Swarm reports its task running a new backend
// must be routed (typically 50-250 ms, logged by each test; the targeted
// poll runs every 100-300 ms). The bound leaves room for a loaded machine:
// with the resync at 10 minutes, anything near it shows the change came
// through the events.
const routedLag = 2 * time.Second

type watchFixture struct {
	cli    *client.Client
	prefix string
	img    string
	netID  string
	opts   Options
}

func newWatchFixture(t *testing.T) *watchFixture {
	cli := swarmClient(t)
	prefix := "rwatch-" + strings.ToLower(rand.Text()[:10])
	img := buildServerImage(t, cli, prefix)
	netName := prefix + "-net"
	nw, err := cli.NetworkCreate(t.Context(), netName, network.CreateOptions{
		Driver: "overlay", Attachable: true, Labels: map[string]string{paas.LabelInstallation: prefix},
	})
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	t.Cleanup(func() { removeNetwork(t, cli, nw.ID) })
	return &watchFixture{cli: cli, prefix: prefix, img: img, netID: nw.ID, opts: Options{
		Installation: prefix, Domain: prefix + ".test", Network: netName, Log: discardLog(),
		ResyncInterval: 10 * time.Minute, PollInterval: 10 * time.Minute,
	}}
}

func (f *watchFixture) labels(app string) map[string]string {
	return map[string]string{
		paas.LabelInstallation: f.prefix, paas.LabelApp: app, paas.LabelProcess: paas.WebProcess,
		paas.LabelPort: "5000", paas.LabelRelease: "1", paas.LabelRouted: "true",
	}
}

// serve runs a Router over the daemon behind api until the test ends.
func (f *watchFixture) serve(t *testing.T, api *client.Client) *Router {
	t.Helper()
	r := newTestRouter(NewConfigSource(NewDockerSource(api, f.opts), api, f.opts), f.opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	})
	return r
}

// route is the router's route of app, if it has one.
func routeOf(r *Router, app string) (Route, bool) {
	for _, rt := range r.table.Load().src.Routes {
		if rt.App == app {
			return rt, true
		}
	}
	return Route{}, false
}

// waitUntil checks cond every 5 ms and returns when it first held.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// taskRun is a task seen running, and when.
type taskRun struct {
	id   string
	addr string // on the fixture's network, without port
	at   time.Time
}

// watchRunning reports the first task of the service, other than those in
// skip, that Swarm reports running; it asks every 20 ms.
func (f *watchFixture) watchRunning(t *testing.T, serviceID string, skip ...string) <-chan taskRun {
	ch := make(chan taskRun, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			tasks, _ := f.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
			for _, tk := range tasks {
				if tk.Status.State != swarm.TaskStateRunning || tk.DesiredState != swarm.TaskStateRunning || slices.Contains(skip, tk.ID) {
					continue
				}
				run := taskRun{id: tk.ID, at: time.Now()}
				for _, na := range tk.NetworksAttachments {
					if na.Network.ID == f.netID && len(na.Addresses) > 0 {
						run.addr, _, _ = strings.Cut(na.Addresses[0], "/")
					}
				}
				ch <- run
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return ch
}

// watchStopped reports when Swarm first says the task is not running (or
// not meant to), asking every 20 ms.
func (f *watchFixture) watchStopped(t *testing.T, taskID string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			tk, _, err := f.cli.TaskInspectWithRaw(ctx, taskID)
			if err == nil && (tk.Status.State != swarm.TaskStateRunning || tk.DesiredState != swarm.TaskStateRunning) {
				ch <- time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return ch
}

func waitRun(t *testing.T, ch <-chan taskRun) taskRun {
	t.Helper()
	select {
	case run := <-ch:
		return run
	case <-time.After(90 * time.Second):
		t.Fatal("no task ran within 90 s")
		return taskRun{}
	}
}

func routesTo(r *Router, app, addr string) bool {
	rt, _ := routeOf(r, app)
	return slices.Contains(rt.Backends, Backend{Addr: net.JoinHostPort(addr, "5000")})
}

// TestWatchSwarm: a new service's task is routed as soon as it runs, and a
// removed service leaves the table at once, with no resync.
func TestWatchSwarm(t *testing.T) {
	f := newWatchFixture(t)
	r := f.serve(t, f.cli)

	id := createService(t, f.cli, f.prefix+"-hello-web", f.img, f.netID, 1, f.labels("hello"))
	run := waitRun(t, f.watchRunning(t, id))
	routed := waitUntil(t, "the new task is routed", 30*time.Second, func() bool { return routesTo(r, "hello", run.addr) })
	lag := routed.Sub(run.at)
	t.Logf("routed %v after the task was seen running", lag.Round(time.Millisecond))
	if lag > routedLag {
		t.Errorf("routed %v after the task ran, want within %v", lag, routedLag)
	}

	// Scaled up: the second task comes in the same way.
	scaleService(t, f.cli, id, 2)
	run2 := waitRun(t, f.watchRunning(t, id, run.id))
	routed = waitUntil(t, "the second task is routed", 30*time.Second, func() bool { return routesTo(r, "hello", run2.addr) })
	if lag := routed.Sub(run2.at); lag > routedLag {
		t.Errorf("second task routed %v after it ran, want within %v", lag, routedLag)
	}

	removed := time.Now()
	if err := f.cli.ServiceRemove(t.Context(), id); err != nil {
		t.Fatalf("remove service: %v", err)
	}
	gone := waitUntil(t, "the removed service leaves the table", 30*time.Second, func() bool {
		_, ok := routeOf(r, "hello")
		return !ok
	})
	t.Logf("route removed %v after the service", gone.Sub(removed).Round(time.Millisecond))
	if lag := gone.Sub(removed); lag > routedLag {
		t.Errorf("route removed %v after the service, want within %v", lag, routedLag)
	}
}

// TestWatchHealthSwarm: a task with a health check is routed once it is
// healthy (Swarm reports it running then), leaves the table when it turns
// unhealthy, and its replacement comes in; none of these changes a service.
func TestWatchHealthSwarm(t *testing.T) {
	f := newWatchFixture(t)
	r := f.serve(t, f.cli)

	replicas := uint64(1)
	delay := 500 * time.Millisecond
	id := createServiceSpec(t, f.cli, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: f.prefix + "-health-web", Labels: f.labels("health")},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: f.img, Env: []string{"PORT=5000"}, Healthcheck: &container.HealthConfig{
				Test: []string{"CMD", "/server", "health"}, Interval: 250 * time.Millisecond, Timeout: 2 * time.Second, Retries: 1,
			}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: f.netID}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	})
	run := waitRun(t, f.watchRunning(t, id))
	routed := waitUntil(t, "the healthy task is routed", 30*time.Second, func() bool { return routesTo(r, "health", run.addr) })
	t.Logf("healthy task routed %v after it was seen running", routed.Sub(run.at).Round(time.Millisecond))
	if lag := routed.Sub(run.at); lag > routedLag {
		t.Errorf("routed %v after the task ran, want within %v", lag, routedLag)
	}

	// Make it unhealthy: Swarm fails the task and starts another one.
	cs, err := f.cli.ContainerList(t.Context(), container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.task.id="+run.id))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("container of task %s: %v, %d found", run.id, err, len(cs))
	}
	next := f.watchRunning(t, id, run.id)
	exec, err := f.cli.ContainerExecCreate(t.Context(), cs[0].ID, container.ExecOptions{Cmd: []string{"/server", "sick"}})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if err := f.cli.ContainerExecStart(t.Context(), exec.ID, container.ExecStartOptions{}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	sick := time.Now()
	stopped := f.watchStopped(t, run.id)
	gone := waitUntil(t, "the unhealthy task leaves the table", 30*time.Second, func() bool { return !routesTo(r, "health", run.addr) })
	var failed time.Time
	select {
	case failed = <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("Swarm did not stop the unhealthy task within 30 s")
	}
	t.Logf("made sick; Swarm reported the task not running %v later, the router dropped it %v later",
		failed.Sub(sick).Round(time.Millisecond), gone.Sub(sick).Round(time.Millisecond))
	if lag := gone.Sub(failed); lag > routedLag {
		t.Errorf("unhealthy task left the table %v after Swarm stopped it, want within %v", lag, routedLag)
	}
	run2 := waitRun(t, next)
	routed = waitUntil(t, "the replacement is routed", 30*time.Second, func() bool { return routesTo(r, "health", run2.addr) })
	t.Logf("replacement routed %v after it was seen running", routed.Sub(run2.at).Round(time.Millisecond))
	if lag := routed.Sub(run2.at); lag > routedLag {
		t.Errorf("replacement routed %v after it ran, want within %v", lag, routedLag)
	}
}

// TestWatchRecoversSwarm: the router reads Docker through the read-only
// proxy; when the proxy goes away the event stream breaks, and what changed
// meanwhile is read once it is back (the resync on reconnect), after which
// events route changes at once again.
func TestWatchRecoversSwarm(t *testing.T) {
	f := newWatchFixture(t)
	upstream, ok := strings.CutPrefix(f.cli.DaemonHost(), "unix://")
	if !ok {
		t.Fatalf("the daemon is at %s; the proxy needs its unix socket", f.cli.DaemonHost())
	}
	sock := filepath.Join(t.TempDir(), "docker.sock")
	startProxy := func() *http.Server {
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: dockerproxy.New(upstream, paas.LabelInstallation+"="+f.prefix, discardLog())}
		go srv.Serve(ln)
		return srv
	}
	proxy := startProxy()
	t.Cleanup(func() { proxy.Close() })
	api, err := client.NewClientWithOpts(client.WithHost("unix://"+sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	r := f.serve(t, api)
	present := func(app string) func() bool {
		return func() bool { _, ok := routeOf(r, app); return ok }
	}

	// Through the proxy, a new service is routed at once (no task needed:
	// an app with none is served 503).
	created := time.Now()
	createService(t, f.cli, f.prefix+"-one-web", f.img, f.netID, 0, f.labels("one"))
	at := waitUntil(t, "a service created through the proxy is routed", 30*time.Second, present("one"))
	if lag := at.Sub(created); lag > routedLag {
		t.Errorf("routed %v after it was created, want within %v", lag, routedLag)
	}

	// The proxy goes: the stream breaks, and nothing can be read.
	proxy.Close()
	createService(t, f.cli, f.prefix+"-two-web", f.img, f.netID, 0, f.labels("two"))
	time.Sleep(time.Second)
	if present("two")() {
		t.Fatal("a service created while Docker could not be reached is routed: the test does not test the recovery")
	}

	back := time.Now()
	proxy = startProxy()
	at = waitUntil(t, "what changed while the stream was down is routed once it is back", 30*time.Second, present("two"))
	t.Logf("resynced %v after the proxy came back", at.Sub(back).Round(time.Millisecond))

	created = time.Now()
	createService(t, f.cli, f.prefix+"-three-web", f.img, f.netID, 0, f.labels("three"))
	at = waitUntil(t, "events route changes again", 30*time.Second, present("three"))
	if lag := at.Sub(created); lag > routedLag {
		t.Errorf("routed %v after it was created, want within %v", lag, routedLag)
	}
}
