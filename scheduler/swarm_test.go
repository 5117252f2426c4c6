package scheduler_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/builder"
	"paas/builder/buildertest"
	"paas/internal/loopback"
	"paas/internal/paas"
	"paas/router"
	"paas/scheduler"
)

// testEnv is a scheduler of a throwaway installation and the test app's
// image in a throwaway registry.
type testEnv struct {
	cli     *client.Client
	s       *scheduler.Swarm
	name    string
	img     paas.Image
	traffic *simTraffic
	reg     paas.ImageRegistry
}

func setup(t *testing.T) *testEnv {
	t.Helper()
	cli := buildertest.SwarmManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := buildertest.Registry(t)
	name := buildertest.Unique("stest")
	reg.Prefix += "/" + name
	b := builder.NewDockerfile(cli, reg, nil)
	buildertest.RemoveImages(t, cli, b.Repository("hello"))
	img, err := b.Build(ctx, builder.Input{App: "hello", Dir: buildertest.HelloApp(t), Tag: "v1", Out: io.Discard})
	if err != nil {
		t.Fatalf("build test image: %v", err)
	}
	traffic := &simTraffic{src: router.NewDockerSource(cli, router.Options{Installation: name, Domain: "example.test", Network: name + "-network", Log: slog.New(slog.DiscardHandler)})}
	s := scheduler.New(cli, scheduler.Options{
		Traffic:      traffic,
		Name:         name,
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Timeout:      45 * time.Second,
		Settle:       time.Second,
		RegistryAuth: func() string { return builder.DockerAuth(reg) },
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.RemoveAll(ctx); err != nil {
			t.Errorf("RemoveAll: %v", err)
		}
		assertNothingLeft(t, cli, name)
	})
	if err := s.EnsureNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		t.Fatalf("second EnsureNetwork: %v", err)
	}
	return &testEnv{cli: cli, s: s, name: name, img: img, traffic: traffic, reg: reg}
}

// assertNothingLeft checks no object of the installation remains.
func assertNothingLeft(t *testing.T, cli *client.Client, name string) {
	ctx := context.Background()
	f := filters.NewArgs(filters.Arg("label", paas.LabelInstallation+"="+name))
	if svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f}); err != nil || len(svcs) > 0 {
		t.Errorf("services left: %d, %v", len(svcs), err)
	}
	if cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f}); err != nil || len(cs) > 0 {
		t.Errorf("containers left: %d, %v", len(cs), err)
	}
	if ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: f}); err != nil || len(ns) > 0 {
		t.Errorf("networks left: %d, %v", len(ns), err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *testEnv) release(version int, config map[string]string, procs ...paas.ProcessType) *paas.Release {
	return &paas.Release{
		App:       "hello",
		Version:   version,
		Image:     e.img,
		Config:    config,
		Processes: procs,
		CreatedAt: time.Now(),
	}
}

// inspect returns the service of process in the app's routed deployment.
func (e *testEnv) inspect(t *testing.T, app, process string) swarm.Service {
	t.Helper()
	svcs, err := e.cli.ServiceList(context.Background(), swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+e.name),
		filters.Arg("label", paas.LabelApp+"="+app),
		filters.Arg("label", paas.LabelProcess+"="+process),
	)})
	if err != nil {
		t.Fatal(err)
	}
	var routed []swarm.Service
	for _, svc := range svcs {
		if svc.Spec.Labels[paas.LabelRouted] == "true" {
			routed = append(routed, svc)
		}
	}
	if len(routed) != 1 {
		t.Fatalf("%d routed %s services of %s (of %d), want 1", len(routed), process, app, len(svcs))
	}
	return routed[0]
}

// services counts the app's services.
func (e *testEnv) services(t *testing.T, app string) int {
	t.Helper()
	svcs, err := e.cli.ServiceList(context.Background(), swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+e.name),
		filters.Arg("label", paas.LabelApp+"="+app),
	)})
	if err != nil {
		t.Fatal(err)
	}
	return len(svcs)
}

// simTraffic stands in for the router, which a test on the host cannot run
// inside the app network: it reads the routes from Swarm with the router's
// own DockerSource, and probes answer 200 unless unhealthy says otherwise.
type simTraffic struct {
	src *router.DockerSource

	mu        sync.Mutex
	unhealthy bool
	probed    []string
}

func (f *simTraffic) Probe(_ context.Context, addr, path, host string, _ time.Duration) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed = append(f.probed, addr+path+" "+host)
	if f.unhealthy {
		return 503, "not yet", nil
	}
	return 200, "ok", nil
}

func (f *simTraffic) Backends(ctx context.Context, _ bool) ([]scheduler.Backend, error) {
	t, err := f.src.Routes(ctx)
	if err != nil {
		return nil, err
	}
	var out []scheduler.Backend
	for _, r := range t.Routes {
		for _, b := range r.Backends {
			out = append(out, scheduler.Backend{Addr: b.Addr, Routed: true, Routing: true})
		}
	}
	return out, nil
}

func (f *simTraffic) set(unhealthy bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	probed := f.probed
	f.unhealthy, f.probed = unhealthy, nil
	return probed
}

func (e *testEnv) status(t *testing.T, app string) map[string]scheduler.ProcessStatus {
	t.Helper()
	st, err := e.s.Status(context.Background(), app)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	m := map[string]scheduler.ProcessStatus{}
	for _, p := range st {
		m[p.Process] = p
		// A running task was placed: its node is named (ps:report).
		for _, task := range p.Tasks {
			if task.State == "running" && task.Node == "" {
				t.Errorf("Status: %s task %d runs on no named node: %+v", p.Process, task.Slot, task)
			}
		}
	}
	return m
}

// waitLogs polls Logs until its output contains want.
func (e *testEnv) waitLogs(t *testing.T, app string, opts scheduler.LogOptions, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var buf bytes.Buffer
		if err := e.s.Logs(context.Background(), app, opts, &buf); err != nil {
			t.Fatalf("Logs: %v", err)
		}
		if strings.Contains(buf.String(), want) {
			return buf.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs lack %q:\n%s", want, buf.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// greeting2 is v2's GREETING as the service spec holds it: escaped from
// Swarm's template expansion.
const greeting2 = `GREETING=two {{"{{"}}.Task.Slot}}`

func TestDeployLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	var out bytes.Buffer
	step := func(name string) time.Time {
		t.Logf("--- %s", name)
		out.Reset()
		return time.Now()
	}
	opts := scheduler.DeployOptions{Host: "hello.example.test", DrainTimeout: 5 * time.Second}
	deploy := func(rel *paas.Release) error {
		start := time.Now()
		err := e.s.Deploy(ctx, rel, opts, &out)
		t.Logf("deploy v%d took %s: %v\n%s", rel.Version, time.Since(start), err, out.String())
		return err
	}
	wantOut := func(lines ...string) {
		t.Helper()
		for _, want := range lines {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q", want)
			}
		}
	}

	// v1: a new app gets its web service, checked, then routed.
	step("deploy v1")
	if err := deploy(e.release(1, map[string]string{"GREETING": "one"})); err != nil {
		t.Fatalf("Deploy v1: %v", err)
	}
	wantOut("-----> Releasing hello v1\n", "=====> web: 1/1 running\n", "-----> Checking web: answers on /\n", "=====> hello v1 receives traffic\n")
	web := e.inspect(t, "hello", "web")
	wantLabels := map[string]string{
		paas.LabelInstallation: e.name,
		paas.LabelApp:          "hello",
		paas.LabelProcess:      "web",
		paas.LabelRelease:      "1",
		paas.LabelPort:         "5000",
		paas.LabelRole:         "app",
		paas.LabelRouted:       "true",
	}
	for k, v := range wantLabels {
		if got := web.Spec.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	if dep := web.Spec.Labels[paas.LabelDeployment]; !strings.HasPrefix(dep, "v1-") || web.Spec.Name != e.name+"-hello-web-"+dep {
		t.Errorf("service name %q, deployment %q", web.Spec.Name, dep)
	}
	if web.Spec.EndpointSpec == nil || web.Spec.EndpointSpec.Mode != swarm.ResolutionModeDNSRR {
		t.Errorf("endpoint spec %+v, want dnsrr", web.Spec.EndpointSpec)
	}
	cs := web.Spec.TaskTemplate.ContainerSpec
	if !slices.Contains(cs.Env, "GREETING=one") || !slices.Contains(cs.Env, "PORT=5000") {
		t.Errorf("env %q", cs.Env)
	}
	if cs.Image != e.img.Ref() {
		t.Errorf("image %q, want %q", cs.Image, e.img.Ref())
	}
	if probed := e.traffic.set(false); len(probed) != 1 || !strings.HasSuffix(probed[0], ":5000/ hello.example.test") {
		t.Errorf("probes %q, want one of the web task on port 5000", probed)
	}
	st := e.status(t, "hello")["web"]
	if st.Release != 1 || st.Desired != 1 || st.Running != 1 || len(st.Tasks) != 1 || st.Tasks[0].State != "running" || st.Tasks[0].Slot != 1 {
		t.Errorf("status %+v", st)
	}

	// Logs carry the start line, prefixed like Dokku's.
	step("logs")
	logs := e.waitLogs(t, "hello", scheduler.LogOptions{}, `app[web.1]: hello-app starting on port 5000 greeting="one"`)
	line := strings.SplitN(logs, "\n", 2)[0]
	if ts, _, _ := strings.Cut(line, " "); len(ts) != len("2006-01-02T15:04:05.000000000Z") || !strings.HasSuffix(ts, "Z") {
		t.Errorf("line does not start with a UTC timestamp: %q", line)
	}

	// v2: a new deployment with a worker replaces v1's.
	step("deploy v2")
	rel2 := e.release(2, map[string]string{"GREETING": "two {{.Task.Slot}}"},
		paas.ProcessType{Name: "web"},
		paas.ProcessType{Name: "worker", Command: `-port 6000 "two words"`})
	rel2.Scale = map[string]int{"web": 1, "worker": 1}
	if err := deploy(rel2); err != nil {
		t.Fatalf("Deploy v2: %v", err)
	}
	wantOut("-----> Stopped v1 (")
	web2 := e.inspect(t, "hello", "web")
	if web2.ID == web.ID || !slices.Contains(web2.Spec.TaskTemplate.ContainerSpec.Env, greeting2) || web2.Spec.Labels[paas.LabelRelease] != "2" {
		t.Errorf("web not replaced: env %q labels %v", web2.Spec.TaskTemplate.ContainerSpec.Env, web2.Spec.Labels)
	}
	worker := e.inspect(t, "hello", "worker")
	if got := worker.Spec.TaskTemplate.ContainerSpec.Args; !slices.Equal(got, []string{"-port", "6000", "two words"}) {
		t.Errorf("worker args %q", got)
	}
	if n := e.services(t, "hello"); n != 2 {
		t.Errorf("%d services after v2, want web and worker", n)
	}
	sts := e.status(t, "hello")
	if sts["web"].Running != 1 || sts["web"].Release != 2 || sts["worker"].Running != 1 {
		t.Errorf("status %+v", sts)
	}
	// Swarm expands templates in env values; config values are kept as is.
	e.waitLogs(t, "hello", scheduler.LogOptions{Process: "worker"}, `app[worker.1]: hello-app starting on port 6000 greeting="two {{.Task.Slot}}" args=["two words"]`)

	// Scaling the worker alone is done in place: web keeps its task.
	step("scale worker to 2")
	webTask := sts["web"].Tasks[0].ID
	rel2.Scale = map[string]int{"web": 1, "worker": 2}
	if err := deploy(rel2); err != nil {
		t.Fatalf("scale worker: %v", err)
	}
	wantOut("-----> Scaling worker to 2\n")
	sts = e.status(t, "hello")
	if st := sts["web"]; st.Running != 1 || st.Tasks[0].ID != webTask || sts["worker"].Running != 2 {
		t.Errorf("after scaling the worker %+v, want web task %s kept", sts, webTask)
	}

	// Scaling web is a new deployment, checked like a release.
	step("scale web to 2")
	e.traffic.set(false)
	rel2.Scale = map[string]int{"web": 2, "worker": 2}
	if err := deploy(rel2); err != nil {
		t.Fatalf("scale web: %v", err)
	}
	if probed := e.traffic.set(false); len(probed) != 2 {
		t.Errorf("probes %q, want both new web tasks", probed)
	}
	sts = e.status(t, "hello")
	if st := sts["web"]; st.Running != 2 || st.Desired != 2 || len(st.Tasks) != 2 || sts["worker"].Running != 2 {
		t.Errorf("web after scale %+v", sts)
	}
	live := map[string]string{"web": e.inspect(t, "hello", "web").ID, "worker": e.inspect(t, "hello", "worker").ID}
	assertV2 := func() {
		t.Helper()
		for proc, id := range live {
			if svc := e.inspect(t, "hello", proc); svc.ID != id || svc.Spec.Labels[paas.LabelRelease] != "2" {
				t.Errorf("%s is now service %s of v%s, want %s untouched", proc, svc.ID, svc.Spec.Labels[paas.LabelRelease], id)
			}
		}
		if n := e.services(t, "hello"); n != 2 {
			t.Errorf("%d services, want v2's two", n)
		}
		sts := e.status(t, "hello")
		if sts["web"].Running != 2 || sts["worker"].Running != 2 {
			t.Errorf("status %+v, want v2 running", sts)
		}
	}

	// v3's worker crashes at start: v3 is removed, v2 was never touched.
	step("deploy v3 (worker crashes)")
	rel3 := e.release(3, map[string]string{"GREETING": "three"},
		paas.ProcessType{Name: "web"},
		paas.ProcessType{Name: "worker", Command: "-crash"})
	rel3.Scale = rel2.Scale
	err := deploy(rel3)
	var rerr *scheduler.RolloutError
	if !errors.As(err, &rerr) {
		t.Fatalf("Deploy v3 = %v, want a RolloutError", err)
	}
	if rerr.Process != "worker" || !strings.HasPrefix(rerr.Task, "worker.") {
		t.Errorf("failure blamed on %s %s, want a worker task", rerr.Process, rerr.Task)
	}
	for _, want := range []string{"hello-app: crashing on purpose (CRASH=1)", "non-zero exit (1)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	wantOut("-----> Rolling back: the previous release keeps serving\n")
	assertV2()

	// v4's web tasks run but fail their health check: never routed.
	step("deploy v4 (unhealthy)")
	e.traffic.set(true)
	rel4 := e.release(4, map[string]string{"GREETING": "four"}, rel2.Processes...)
	rel4.Scale = rel2.Scale
	opts.Checks = []paas.HealthCheck{{Name: "ready", Path: "/ready", Content: "ok", Attempts: 2, Wait: 1}}
	err = deploy(rel4)
	opts.Checks = nil
	if !errors.As(err, &rerr) || rerr.State != "unhealthy" || !strings.Contains(err.Error(), "check ready failed: status 503 (after 2 attempts)") {
		t.Fatalf("Deploy v4 = %v, want the failed check", err)
	}
	if !strings.Contains(err.Error(), "hello-app starting") {
		t.Errorf("the error lacks the task's log lines: %v", err)
	}
	if probed := e.traffic.set(false); len(probed) != 2 || !strings.Contains(probed[0], ":5000/ready ") {
		t.Errorf("probes %q, want 2 attempts at /ready", probed)
	}
	assertV2()

	// Following logs streams until the context ends, and follows the tasks
	// of a new deployment too. A release without the worker removes it.
	step("logs -t across a deploy")
	fctx, cancel := context.WithCancel(ctx)
	lw := &signalWriter{want: `greeting="five"`, seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- e.s.Logs(fctx, "hello", scheduler.LogOptions{Follow: true, Tail: 1, Process: "web"}, lw)
	}()
	time.Sleep(time.Second)
	if err := deploy(e.release(5, map[string]string{"GREETING": "five"})); err != nil {
		t.Fatalf("Deploy v5: %v", err)
	}
	select {
	case <-lw.seen:
	case <-time.After(15 * time.Second):
		t.Errorf("following logs did not show %q:\n%s", lw.want, lw.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Logs with Follow returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Logs with Follow did not return after cancel")
	}
	if sts := e.status(t, "hello"); len(sts) != 1 || sts["web"].Desired != 1 || sts["web"].Release != 5 {
		t.Errorf("status after v5 %+v", sts)
	}

	// A deployment left behind by a killed paasd: reconciled away.
	step("reconcile")
	web5 := e.inspect(t, "hello", "web")
	orphan := web5.Spec
	orphan.Name += "-orphan"
	orphan.Labels = maps.Clone(orphan.Labels)
	orphan.Labels[paas.LabelDeployment] = "v6-orphan"
	orphan.Labels[paas.LabelRelease] = "6"
	if _, err := e.cli.ServiceCreate(ctx, orphan, swarm.ServiceCreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Reconcile(ctx, "hello", 5, &out); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if svc := e.inspect(t, "hello", "web"); svc.ID != web5.ID || e.services(t, "hello") != 1 {
		t.Errorf("after Reconcile: routed web %s (want %s), %d services", svc.ID, web5.ID, e.services(t, "hello"))
	}
	// Killed after the old deployment was drained, before the new release
	// was recorded: the recorded one is routed again, the other removed.
	orphan.Name += "2"
	orphan.Labels[paas.LabelDeployment] = "v7-orphan"
	orphan.Labels[paas.LabelRelease] = "7"
	if _, err := e.cli.ServiceCreate(ctx, orphan, swarm.ServiceCreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, _, err := e.cli.ServiceInspectWithRaw(ctx, web5.ID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	demoted := cur.Spec
	demoted.Labels = maps.Clone(demoted.Labels)
	demoted.Labels[paas.LabelRouted] = "false"
	if _, err := e.cli.ServiceUpdate(ctx, cur.ID, cur.Version, demoted, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Reconcile(ctx, "hello", 5, &out); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if svc := e.inspect(t, "hello", "web"); svc.ID != web5.ID || e.services(t, "hello") != 1 {
		t.Errorf("after the second Reconcile: routed web %s (want %s), %d services", svc.ID, web5.ID, e.services(t, "hello"))
	}

	// Stop drains and scales to zero; the app stays known.
	step("stop")
	if err := e.s.Stop(ctx, "hello", 5*time.Second, &out); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if sts := e.status(t, "hello"); sts["web"].Desired != 0 || e.services(t, "hello") != 1 {
		t.Errorf("after Stop: %+v", sts)
	}
	if err := e.s.Reconcile(ctx, "hello", 5, &out); err != nil || e.services(t, "hello") != 1 {
		t.Errorf("Reconcile of a stopped app = %v, %d services, want it kept", err, e.services(t, "hello"))
	}

	step("remove")
	if err := e.s.Remove(ctx, "hello"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if sts := e.status(t, "hello"); len(sts) != 0 {
		t.Errorf("status after Remove %+v", sts)
	}
	cs2, err := e.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", paas.LabelApp+"=hello"), filters.Arg("label", paas.LabelInstallation+"="+e.name))})
	if err != nil || len(cs2) != 0 {
		t.Errorf("containers after Remove: %d %v", len(cs2), err)
	}
	if err := e.s.Logs(ctx, "hello", scheduler.LogOptions{}, io.Discard); !errors.Is(err, paas.ErrNoRelease) {
		t.Errorf("Logs after Remove = %v, want ErrNoRelease", err)
	}
}

// signalWriter closes seen once the text written contains want.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestDeployFirstReleaseCrashes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	var out bytes.Buffer
	start := time.Now()
	err := e.s.Deploy(ctx, e.release(1, map[string]string{"CRASH": "1"}), scheduler.DeployOptions{}, &out)
	t.Logf("failed deploy took %s: %v\n%s", time.Since(start), err, out.String())
	if err == nil || !strings.Contains(err.Error(), "crashing on purpose") {
		t.Fatalf("Deploy = %v, want the crash line", err)
	}
	if sts := e.status(t, "hello"); len(sts) != 0 {
		t.Errorf("a service of a failed first release remains: %+v", sts)
	}
}

func TestDeployMissingImage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	rel := e.release(1, nil)
	rel.Image.Digest = "sha256:" + strings.Repeat("0", 64)
	err := e.s.Deploy(context.Background(), rel, scheduler.DeployOptions{}, io.Discard)
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "No such image") {
		t.Fatalf("Deploy of a missing image = %v, want No such image", err)
	}
	if sts := e.status(t, "hello"); len(sts) != 0 {
		t.Errorf("services remain: %+v", sts)
	}
}

// TestDeployPullsWithRegistryAuth: a node that lacks the image pulls it
// from the registry with the login the service was created with; without
// the login it cannot.
func TestDeployPullsWithRegistryAuth(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	// An image of its own, which no other test uses, removed from the
	// daemon once pushed: the node must pull it.
	dir := buildertest.HelloApp(t)
	nonce := buildertest.Unique("nonce")
	if err := os.WriteFile(filepath.Join(dir, "nonce"), []byte(nonce), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(buildertest.HelloDockerfile+"COPY nonce /nonce\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := builder.NewDockerfile(e.cli, e.reg, nil)
	buildertest.RemoveImages(t, e.cli, b.Repository("pulled"))
	img, err := b.Build(ctx, builder.Input{App: "pulled", Dir: dir, Tag: "v1", Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	removeLocal := func() {
		t.Helper()
		if _, err := e.cli.ImageRemove(ctx, img.Ref(), image.RemoveOptions{Force: true}); err != nil { // no parent pruned: other tests build on them
			t.Fatalf("remove the local image: %v", err)
		}
		if _, err := e.cli.ImageInspect(ctx, img.Ref()); err == nil {
			t.Fatal("the image is still on the daemon")
		}
	}
	removeLocal()
	rel := e.release(1, nil)
	rel.App, rel.Image = "pulled", img

	anonymous := scheduler.New(e.cli, scheduler.Options{Name: e.name, Traffic: e.traffic, Timeout: 45 * time.Second})
	err = anonymous.Deploy(ctx, rel, scheduler.DeployOptions{}, io.Discard)
	t.Logf("without the login: %v", err)
	if err == nil {
		t.Fatal("a node pulled the image without the registry login")
	}
	if sts := e.status(t, "pulled"); len(sts) != 0 {
		t.Errorf("services of the failed deploy remain: %+v", sts)
	}

	var out bytes.Buffer
	if err := e.s.Deploy(ctx, rel, scheduler.DeployOptions{}, &out); err != nil {
		t.Fatalf("Deploy with the registry login: %v\n%s", err, out.String())
	}
	if st := e.status(t, "pulled"); st["web"].Running != 1 {
		t.Errorf("status %+v, want web running", st)
	}
	if _, err := e.cli.ImageInspect(ctx, img.Ref()); err != nil {
		t.Errorf("the node did not pull the image: %v", err)
	}
	if err := e.s.Remove(ctx, "pulled"); err != nil {
		t.Fatal(err)
	}
}

func TestDeployTimesOut(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// Tasks never stay up for the settle time within the timeout.
	s := scheduler.New(e.cli, scheduler.Options{Name: e.name, Timeout: 500 * time.Millisecond, Settle: 5 * time.Second})
	err := s.Deploy(context.Background(), e.release(1, nil), scheduler.DeployOptions{}, io.Discard)
	t.Logf("error: %v", err)
	var rerr *scheduler.RolloutError
	if !errors.As(err, &rerr) || !strings.Contains(err.Error(), "after 500ms") {
		t.Fatalf("Deploy = %v, want a timeout", err)
	}
	if sts := e.status(t, "hello"); len(sts) != 0 {
		t.Errorf("services remain: %+v", sts)
	}
}

// TestDeployHealthCheckNeverPasses: an image whose own HEALTHCHECK never
// passes keeps its task "starting"; the rollout's timeout says how the
// container's last health check ended.
func TestDeployHealthCheckNeverPasses(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	dir := buildertest.HelloApp(t)
	dockerfile := buildertest.HelloDockerfile + "HEALTHCHECK --interval=1s --start-period=5m CMD [\"/not-here\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := builder.NewDockerfile(e.cli, e.reg, nil).Build(ctx, builder.Input{App: "hello", Dir: dir, Tag: "unhealthy", Out: io.Discard})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	s := scheduler.New(e.cli, scheduler.Options{
		Name: e.name, Traffic: e.traffic, Timeout: 20 * time.Second, Settle: time.Second,
		RegistryAuth: func() string { return builder.DockerAuth(e.reg) },
	})
	rel := e.release(1, nil)
	rel.Image = img
	err = s.Deploy(ctx, rel, scheduler.DeployOptions{}, io.Discard)
	t.Logf("error: %v", err)
	var rerr *scheduler.RolloutError
	if !errors.As(err, &rerr) || rerr.State != "starting" || !strings.Contains(err.Error(), "last health check: exit ") || !strings.Contains(err.Error(), "not-here") {
		t.Fatalf("Deploy = %v, want a task still starting and its last health check", err)
	}
	if sts := e.status(t, "hello"); len(sts) != 0 {
		t.Errorf("services remain: %+v", sts)
	}
}

// routerImage builds paasd and the router image from it, as paasd serve does.
func routerImage(t *testing.T, e *testEnv) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "paasd")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/paasd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build paasd: %v\n%s", err, out)
	}
	reg := e.reg
	ref := reg.Repository("router") + ":test"
	buildertest.RemoveImages(t, e.cli, reg.Repository("router"))
	img, err := builder.BuildSelfImage(t.Context(), e.cli, bin, ref, nil, &reg, io.Discard)
	if err != nil {
		t.Fatalf("build router image: %v", err)
	}
	// Before the image is removed (cleanups run last registered first).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.s.RemoveAll(ctx); err != nil {
			t.Errorf("RemoveAll: %v", err)
		}
	})
	return img
}

// routerLoad sends GETs for an unknown host through the router until
// stopped, counting answers other than the router's 404.
type routerLoad struct {
	stop         context.CancelFunc
	done         chan struct{}
	sent, failed atomic.Int64
	first        atomic.Value
}

func startRouterLoad(url string) *routerLoad {
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	l := &routerLoad{stop: stop, done: make(chan struct{})}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				method := map[bool]string{true: "GET", false: "POST"}[i%2 == 0]
				req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(""))
				req.Host = "nobody.example.test"
				resp, err := c.Do(req)
				if ctx.Err() != nil {
					return
				}
				l.sent.Add(1)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusNotFound {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	go func() { wg.Wait(); close(l.done) }()
	return l
}

func (l *routerLoad) finish(t *testing.T, what string) {
	t.Helper()
	l.stop()
	<-l.done
	t.Logf("%s: sent %d failed %d", what, l.sent.Load(), l.failed.Load())
	if l.sent.Load() == 0 || l.failed.Load() > 0 {
		t.Errorf("%s: %d of %d requests failed; first: %v", what, l.failed.Load(), l.sent.Load(), l.first.Load())
	}
}

func TestEnsureRouter(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	port := freePort(t)
	rs := scheduler.RouterSpec{
		Image:      routerImage(t, e),
		Binary:     builder.SelfBinaryPath,
		RouterArgs: []string{"router", "--name", e.name, "--domain", "example.test", "--network", e.name + "-network", "--http-port", fmt.Sprint(port)},
		PortsArgs:  []string{"router-ports", "--name", e.name, "--http-port", fmt.Sprint(port)},
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	// A router of the kind that published its port through Docker (before
	// the ports process) holds the port: it is replaced.
	labels := map[string]string{paas.LabelInstallation: e.name, paas.LabelRole: scheduler.RoleRouter}
	_, err := e.cli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: e.s.RouterServiceName(), Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: e.img.Ref(), Args: []string{"-port", fmt.Sprint(port)}, Labels: labels},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: e.name + "-network"}},
		},
		Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: []swarm.PortConfig{{
			Protocol: swarm.PortConfigProtocolTCP, TargetPort: uint32(port), PublishedPort: uint32(port), PublishMode: swarm.PortConfigPublishModeHost,
		}}},
	}, swarm.ServiceCreateOptions{EncodedRegistryAuth: builder.DockerAuth(e.reg)}) // the registry wants its login
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old router did not come up")
		}
	}

	start := time.Now()
	if err := e.s.EnsureRouter(ctx, rs); err != nil {
		t.Fatalf("EnsureRouter: %v", err)
	}
	t.Logf("router up in %s", time.Since(start))
	inspect := func(name string) swarm.Service {
		t.Helper()
		svc, _, err := e.cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	rsvc, psvc := inspect(e.s.RouterServiceName()), inspect(e.s.PortsServiceName())
	if rsvc.Spec.Labels[paas.LabelRole] != "router" || psvc.Spec.Labels[paas.LabelRole] != "router-ports" || rsvc.Spec.Labels[paas.LabelInstallation] != e.name {
		t.Errorf("labels %v, %v", rsvc.Spec.Labels, psvc.Spec.Labels)
	}
	// Only the ports process holds the Docker socket; the router publishes
	// nothing; both are health-checked and replaced start-first.
	for _, m := range rsvc.Spec.TaskTemplate.ContainerSpec.Mounts {
		if m.Source == scheduler.DockerSocket || m.Target == scheduler.DockerSocket {
			t.Errorf("the router mounts the Docker socket: %+v", m)
		}
	}
	if m := psvc.Spec.TaskTemplate.ContainerSpec.Mounts; len(m) != 2 || m[1].Source != scheduler.DockerSocket {
		t.Errorf("ports mounts %+v", m)
	}
	if ep := rsvc.Spec.EndpointSpec; ep != nil && len(ep.Ports) > 0 {
		t.Errorf("the router publishes %+v", ep.Ports)
	}
	for _, svc := range []swarm.Service{rsvc, psvc} {
		if svc.Spec.TaskTemplate.ContainerSpec.Healthcheck == nil || svc.Spec.UpdateConfig.Order != swarm.UpdateOrderStartFirst {
			t.Errorf("%s: healthcheck %+v, update order %s", svc.Spec.Name, svc.Spec.TaskTemplate.ContainerSpec.Healthcheck, svc.Spec.UpdateConfig.Order)
		}
	}
	// The router answers on the host's port; an unknown host gets its 404.
	if code, body := getStatus(t, url, "nobody.example.test"); code != 404 || !strings.Contains(body, "No app is served") {
		t.Errorf("router answered %d %q", code, body)
	}
	// It reads the routes through the read-only Docker API: an app deployed
	// now is served.
	if err := e.s.Deploy(ctx, e.release(1, map[string]string{"GREETING": "routed"}), scheduler.DeployOptions{Host: "hello.example.test", DrainTimeout: 5 * time.Second}, io.Discard); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := getStatus(t, url, "hello.example.test")
		if code == 200 && body == "hello routed\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app deployed is not served: %d %q", code, body)
		}
		time.Sleep(300 * time.Millisecond)
	}

	tasks := func(name string) []string {
		ts, err := e.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", name), filters.Arg("desired-state", "running"))})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, t := range ts {
			ids = append(ids, t.ID)
		}
		return ids
	}
	// Ensuring the same router again changes nothing.
	beforeR, beforeP := tasks(rsvc.ID), tasks(psvc.ID)
	if err := e.s.EnsureRouter(ctx, rs); err != nil {
		t.Fatalf("second EnsureRouter: %v", err)
	}
	if afterR, afterP := tasks(rsvc.ID), tasks(psvc.ID); !slices.Equal(beforeR, afterR) || !slices.Equal(beforeP, afterP) {
		t.Errorf("router tasks %v %v became %v %v", beforeR, beforeP, afterR, afterP)
	}

	// A changed router, then a changed ports process, under load: the new
	// ones take over the same listening socket, nothing fails.
	load := startRouterLoad(url)
	time.Sleep(time.Second)
	rs.RouterEnv = []string{"CHANGED=1"}
	if err := e.s.EnsureRouter(ctx, rs); err != nil {
		t.Fatalf("EnsureRouter with a changed router: %v", err)
	}
	rs.PortsArgs = append(rs.PortsArgs, "--docker-socket", scheduler.DockerSocket)
	if err := e.s.EnsureRouter(ctx, rs); err != nil {
		t.Fatalf("EnsureRouter with a changed ports process: %v", err)
	}
	if slices.Equal(beforeR, tasks(rsvc.ID)) || slices.Equal(beforeP, tasks(psvc.ID)) {
		t.Error("the services' tasks were not replaced")
	}
	time.Sleep(time.Second)
	load.finish(t, "replacements")

	// A router that cannot start is rolled back to the running one.
	bad := rs
	bad.RouterArgs = append(slices.Clone(rs.RouterArgs), "-no-such-flag")
	err = e.s.EnsureRouter(ctx, bad)
	var rerr *scheduler.RolloutError
	if !errors.As(err, &rerr) || rerr.Process != "router" || !strings.Contains(err.Error(), "non-zero exit (2)") {
		t.Fatalf("EnsureRouter with a bad flag = %v, want the router's exit", err)
	}
	t.Logf("error: %v", err)
	if code, body := getStatus(t, url, "hello.example.test"); code != 200 || body != "hello routed\n" {
		t.Errorf("router after rollback answered %d %q", code, body)
	}
}

// getStatus sends one GET through the router.
func getStatus(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freePort(t *testing.T) int {
	port, err := loopback.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
