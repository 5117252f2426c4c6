package scheduler_test

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
	"paas/scheduler"
)

// One process type restarted at a time, in a deployment of its own, the
// others untouched; gates per process type; what Reconcile (ps:retire)
// keeps of an app spread over deployments; checks:run and ps:inspect.
func TestProcessRestart(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	var out bytes.Buffer
	opts := scheduler.DeployOptions{Host: "hello.example.test", DrainTimeout: 5 * time.Second}
	deploy := func(rel *paas.Release, o scheduler.DeployOptions) error {
		out.Reset()
		err := e.s.Deploy(ctx, rel, o, &out)
		t.Logf("deploy v%d only %q: %v\n%s", rel.Version, o.Only, err, out.String())
		return err
	}
	ids := func() map[string]string {
		return map[string]string{"web": e.inspect(t, "hello", "web").ID, "worker": e.inspect(t, "hello", "worker").ID}
	}
	rel := e.release(1, map[string]string{"SECRET": "hunter2"}, paas.ProcessType{Name: "web"}, paas.ProcessType{Name: "worker", Command: "-port 6000"})
	rel.Scale = map[string]int{"web": 1, "worker": 1}
	if err := deploy(rel, opts); err != nil {
		t.Fatalf("Deploy v1: %v", err)
	}
	before := ids()

	// The worker alone: a new worker service, web's task untouched.
	webTask := e.status(t, "hello")["web"].Tasks[0].ID
	restart := opts
	restart.Force, restart.Only = true, "worker"
	if err := deploy(rel, restart); err != nil {
		t.Fatalf("restart worker: %v", err)
	}
	if !strings.Contains(out.String(), "Restarting worker of hello v1") || !strings.Contains(out.String(), "Stopped worker of v1 (") {
		t.Errorf("output %q", out.String())
	}
	after := ids()
	if after["web"] != before["web"] || after["worker"] == before["worker"] {
		t.Errorf("services %v after restarting the worker, were %v: want a new worker only", after, before)
	}
	sts := e.status(t, "hello")
	if sts["web"].Tasks[0].ID != webTask || sts["worker"].Running != 1 || e.services(t, "hello") != 2 {
		t.Errorf("status %+v, want web task %s kept, one worker", sts, webTask)
	}

	// Then web alone, checked, with the worker kept.
	e.traffic.set(false)
	restart.Only = "web"
	if err := deploy(rel, restart); err != nil {
		t.Fatalf("restart web: %v", err)
	}
	if probed := e.traffic.set(false); len(probed) != 1 {
		t.Errorf("probes %q, want the new web task checked", probed)
	}
	if !strings.Contains(out.String(), "Stopped web of v1 (") {
		t.Errorf("output %q", out.String())
	}
	web := ids()
	if web["worker"] != after["worker"] || web["web"] == after["web"] || e.services(t, "hello") != 2 {
		t.Errorf("services %v after restarting web, were %v", web, after)
	}
	restart.Only = "clock"
	if err := deploy(rel, restart); err == nil || !strings.Contains(err.Error(), "process type clock is not in the release") {
		t.Errorf("restart of a missing process type = %v", err)
	}

	// The app now runs on two deployments: nothing is a leftover.
	if n, err := e.s.Retire(ctx, "hello", 1, &out); err != nil || n != 0 || e.services(t, "hello") != 2 {
		t.Fatalf("Retire = %d, %v; %d services, want both kept", n, err, e.services(t, "hello"))
	}
	// Killed during a web restart, before routing: the new web goes.
	cur := e.inspect(t, "hello", "web")
	extra := cur.Spec
	extra.Name += "-x"
	extra.Labels = maps.Clone(extra.Labels)
	extra.Labels[paas.LabelDeployment] = "v1-extra"
	extra.Labels[paas.LabelRouted] = "false"
	if _, err := e.cli.ServiceCreate(ctx, extra, swarm.ServiceCreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.s.Retire(ctx, "hello", 1, &out); err != nil || n != 1 {
		t.Fatalf("Retire of an unrouted web = %d, %v", n, err)
	}
	if got := ids(); got["web"] != cur.ID || got["worker"] != web["worker"] || e.services(t, "hello") != 2 {
		t.Errorf("after Retire %v, want %s and %s", got, cur.ID, web["worker"])
	}
	// Killed after routing the new web, before the old one was drained:
	// the newer one stays, the worker too.
	extra.Name += "-y"
	extra.Labels[paas.LabelDeployment] = "v1-newer"
	extra.Labels[paas.LabelRouted] = "true"
	resp, err := e.cli.ServiceCreate(ctx, extra, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.s.Retire(ctx, "hello", 1, &out); err != nil || n != 1 {
		t.Fatalf("Retire of a web restart that was routed = %d, %v", n, err)
	}
	if got := ids(); got["web"] != resp.ID || got["worker"] != web["worker"] || e.services(t, "hello") != 2 {
		t.Errorf("after Retire %v, want web %s and worker %s", got, resp.ID, web["worker"])
	}

	// checks:run, once the new web task runs
	for deadline := time.Now().Add(30 * time.Second); e.status(t, "hello")["web"].Running != 1; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the new web task does not run: %+v", e.status(t, "hello"))
		}
	}
	out.Reset()
	e.traffic.set(false)
	if err := e.s.CheckNow(ctx, rel, opts, "", &out); err != nil {
		t.Fatalf("CheckNow: %v\n%s", err, out.String())
	}
	for _, w := range []string{"Running checks for hello.web.1", "answers on /: ok", "Running checks for hello.worker.1", "running for", "hello: 2 task(s) healthy"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("checks:run output lacks %q:\n%s", w, out.String())
		}
	}
	e.traffic.set(true)
	one := opts
	one.Checks = []paas.HealthCheck{{Name: "quick", Path: "/", Attempts: 1}}
	if err := e.s.CheckNow(ctx, rel, one, "web.1", &out); err == nil || !strings.Contains(err.Error(), "1 of 1 task(s) of hello failed their checks: web.1") {
		t.Errorf("CheckNow of an unhealthy web = %v", err)
	}
	e.traffic.set(false)
	for target, want := range map[string]string{"clock": "hello has no process type clock (it runs web, worker)", "web.9": "hello has no task web.9", "web.x": "invalid process"} {
		if err := e.s.CheckNow(ctx, rel, opts, target, &out); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckNow %s = %v, want %q", target, err, want)
		}
	}

	// ps:inspect: a document per task, the container's.
	docs, err := e.s.Inspect(ctx, "hello")
	if err != nil || len(docs) != 2 {
		t.Fatalf("Inspect = %d documents, %v", len(docs), err)
	}
	for _, d := range docs {
		if !strings.Contains(string(d), `"SECRET=hunter2"`) || !strings.Contains(string(d), `"NetworkSettings"`) {
			t.Errorf("not a container's inspect with its env: %.300s", d)
		}
	}

	// A worker whose checks are disabled is not waited for: its crash does
	// not fail the rollout. With the default gate it does.
	crash := e.release(2, nil, paas.ProcessType{Name: "web"}, paas.ProcessType{Name: "worker", Command: "-crash"})
	crash.Scale = rel.Scale
	if err := deploy(crash, opts); err == nil {
		t.Fatal("a crashing worker was deployed with the default gate")
	}
	lax := opts
	lax.Gates = map[string]scheduler.Gate{"worker": scheduler.GateNone, "web": scheduler.GateRunning}
	lax.Checks = []paas.HealthCheck{}
	if err := deploy(crash, lax); err != nil {
		t.Fatalf("a worker not waited for failed the rollout: %v", err)
	}
	if got := e.inspect(t, "hello", "web"); got.Spec.Labels[paas.LabelRelease] != "2" || e.services(t, "hello") != 2 {
		t.Errorf("v2 not serving: %v, %d services", got.Spec.Labels, e.services(t, "hello"))
	}

	// Stop keeps every serving service, at zero tasks.
	if err := e.s.Stop(ctx, "hello", 5*time.Second, &out); err != nil {
		t.Fatal(err)
	}
	if sts := e.status(t, "hello"); sts["web"].Desired != 0 || sts["worker"].Desired != 0 || e.services(t, "hello") != 2 {
		t.Errorf("after Stop %+v", sts)
	}
}
