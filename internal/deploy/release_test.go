package deploy

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/scheduler"
)

// deployedApp is an app with three releases, v3 current.
func deployedApp(t *testing.T) *pipelineEnv {
	t.Helper()
	app := &paas.App{Name: "hello", Owner: "alice", Current: 3, Config: map[string]string{"V": "3"}, ConfigVersion: 3}
	e := newPipelineEnv(t, app)
	e.store.releases["hello"] = map[int]*paas.Release{}
	for v := 1; v <= 3; v++ {
		e.store.releases["hello"][v] = &paas.Release{
			App: "hello", Version: v, Image: paas.Image{Repository: "reg/hello", Digest: "sha256:" + strings.Repeat(string(rune('0'+v)), 3)},
			Config: map[string]string{"V": string(rune('0' + v))}, ConfigVersion: v,
			Processes: []paas.ProcessType{{Name: "web"}, {Name: "worker", Command: "work"}},
			Commit:    commit, Author: "bob",
		}
	}
	return e
}

func TestRollback(t *testing.T) {
	tests := []struct {
		name       string
		target     int
		schedErr   error
		wantErr    string
		wantImage  string // image of the rolled out release
		wantCfg    string // config V of the app afterwards
		wantCur    int
		wantReason string
	}{
		{name: "to the previous release", target: 0, wantImage: "sha256:222", wantCfg: "2", wantCur: 4, wantReason: "rollback to v2"},
		{name: "to a named release", target: 1, wantImage: "sha256:111", wantCfg: "1", wantCur: 4, wantReason: "rollback to v1"},
		{name: "to the current release", target: 3, wantErr: "v3 is the current release already", wantCfg: "3", wantCur: 3},
		{name: "to a missing release", target: 9, wantErr: "release v9 of hello", wantCfg: "3", wantCur: 3},
		{name: "unhealthy: nothing changes", target: 1, schedErr: errors.New("web.1 unhealthy"), wantErr: "release v4 failed, v3 keeps serving: web.1 unhealthy", wantImage: "sha256:111", wantCfg: "3", wantCur: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := deployedApp(t)
			e.scheduler.err = tc.schedErr
			var out syncBuffer
			err := e.p.Rollback(context.Background(), "hello", alice, tc.target, &out)
			if (err != nil) != (tc.wantErr != "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Rollback = %v, want error %q", err, tc.wantErr)
			}
			if tc.wantImage != "" {
				if len(e.scheduler.deployed) != 1 || e.scheduler.deployed[0].Image.Digest != tc.wantImage {
					t.Fatalf("rolled out %+v, want one release of %s", e.scheduler.deployed, tc.wantImage)
				}
			} else if len(e.scheduler.deployed) != 0 {
				t.Fatalf("rolled out %d releases, want none", len(e.scheduler.deployed))
			}
			app, _ := e.store.App("hello")
			if app.Current != tc.wantCur || app.Config["V"] != tc.wantCfg {
				t.Fatalf("app current v%d config %v, want v%d V=%s", app.Current, app.Config, tc.wantCur, tc.wantCfg)
			}
			if tc.wantReason != "" {
				rel := e.store.releases["hello"][4]
				if rel == nil || rel.Reason != tc.wantReason || rel.Author != "alice" || rel.Commit != commit {
					t.Fatalf("release v4 = %+v, want reason %q by alice", rel, tc.wantReason)
				}
			}
		})
	}
}

func TestScale(t *testing.T) {
	tests := []struct {
		name      string
		scale     map[string]int
		schedErr  error
		wantErr   string
		wantScale map[string]int // of the rollout; nil for none
		wantForm  map[string]int // stored afterwards
	}{
		{name: "web and worker", scale: map[string]int{"web": 3, "worker": 2}, wantScale: map[string]int{"web": 3, "worker": 2}, wantForm: map[string]int{"web": 3, "worker": 2}},
		{name: "one process keeps the others", scale: map[string]int{"worker": 1}, wantScale: map[string]int{"web": 1, "worker": 1}, wantForm: map[string]int{"worker": 1}},
		{name: "unknown process type", scale: map[string]int{"clock": 1}, wantErr: "process type clock is not in the Procfile of v3"},
		{name: "too many", scale: map[string]int{"web": 101}, wantErr: "scale to 0 to 100 tasks"},
		{name: "failed rollout keeps the formation", scale: map[string]int{"web": 2}, schedErr: errors.New("boom"), wantErr: "ps:scale failed, v3 keeps running as it was: boom", wantScale: map[string]int{"web": 2, "worker": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := deployedApp(t)
			e.scheduler.err = tc.schedErr
			var out syncBuffer
			err := e.p.Scale(context.Background(), "hello", alice, tc.scale, &out)
			if (err != nil) != (tc.wantErr != "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Scale = %v, want error %q", err, tc.wantErr)
			}
			if tc.wantScale == nil {
				if len(e.scheduler.deployed) != 0 {
					t.Fatalf("rolled out %d times, want none", len(e.scheduler.deployed))
				}
			} else if len(e.scheduler.deployed) != 1 || !reflect.DeepEqual(e.scheduler.deployed[0].Scale, tc.wantScale) || e.scheduler.deployed[0].Version != 3 {
				t.Fatalf("rolled out %+v, want v3 at %v", e.scheduler.deployed, tc.wantScale)
			}
			app, _ := e.store.App("hello")
			if !reflect.DeepEqual(app.Formation, tc.wantForm) || app.Current != 3 {
				t.Fatalf("formation %v current v%d, want %v v3 (no new release)", app.Formation, app.Current, tc.wantForm)
			}
		})
	}
}

func TestRestartStopStart(t *testing.T) {
	e := deployedApp(t)
	var out syncBuffer
	ctx := context.Background()
	if err := e.p.Restart(ctx, "hello", alice, &out); err != nil {
		t.Fatal(err)
	}
	if len(e.scheduler.opts) != 1 || !e.scheduler.opts[0].Force {
		t.Fatalf("restart rolled out %+v, want one forced deployment", e.scheduler.opts)
	}
	if err := e.p.Stop(ctx, "hello", alice, &out); err != nil {
		t.Fatal(err)
	}
	if app, _ := e.store.App("hello"); !app.Stopped || len(e.scheduler.stopped) != 1 {
		t.Fatalf("after stop: stopped=%v, scheduler stops %v", app.Stopped, e.scheduler.stopped)
	}
	if err := e.p.Start(ctx, "hello", alice, &out); err != nil {
		t.Fatal(err)
	}
	if app, _ := e.store.App("hello"); app.Stopped || app.Current != 3 {
		t.Fatalf("after start: stopped=%v current=%d", app.Stopped, app.Current)
	}
	fresh := newPipelineEnv(t, &paas.App{Name: "new"})
	for name, fn := range map[string]func() error{
		"restart": func() error { return fresh.p.Restart(ctx, "new", alice, &out) },
		"stop":    func() error { return fresh.p.Stop(ctx, "new", alice, &out) },
		"start":   func() error { return fresh.p.Start(ctx, "new", alice, &out) },
	} {
		if err := fn(); err == nil || !strings.Contains(err.Error(), "has not been deployed") {
			t.Errorf("%s of an app never deployed = %v", name, err)
		}
	}
}

func TestDeployOptions(t *testing.T) {
	declared := []paas.HealthCheck{{Name: "ready", Path: "/ready", Content: "ok", Attempts: 3}}
	procs := []paas.ProcessType{{Name: "web"}, {Name: "worker"}, {Name: "clock"}}
	tests := []struct {
		name      string
		set       paas.CheckSettings
		declared  []paas.HealthCheck
		want      []paas.HealthCheck
		wantGates map[string]scheduler.Gate
		wantDrain time.Duration
	}{
		{name: "default check", want: []paas.HealthCheck{paas.DefaultCheck()}, wantDrain: 30 * time.Second},
		{name: "app.json checks", declared: declared, want: declared, wantDrain: 30 * time.Second},
		{name: "disabled", set: paas.CheckSettings{Disabled: true}, declared: declared, want: []paas.HealthCheck{}, wantDrain: 30 * time.Second,
			wantGates: map[string]scheduler.Gate{"web": scheduler.GateRunning, "worker": scheduler.GateNone, "clock": scheduler.GateNone}},
		{name: "skipped keeps the default", set: paas.CheckSettings{Skipped: true}, declared: declared, want: []paas.HealthCheck{paas.DefaultCheck()}, wantDrain: 30 * time.Second,
			wantGates: map[string]scheduler.Gate{"worker": scheduler.GateRunning, "clock": scheduler.GateRunning}},
		{name: "worker disabled alone", set: paas.CheckSettings{}.WithState(paas.CheckDisabled, []string{"worker"}), declared: declared, want: declared, wantDrain: 30 * time.Second,
			wantGates: map[string]scheduler.Gate{"worker": scheduler.GateNone}},
		{name: "web skipped alone", set: paas.CheckSettings{}.WithState(paas.CheckSkipped, []string{"web"}), declared: declared, want: []paas.HealthCheck{paas.DefaultCheck()}, wantDrain: 30 * time.Second},
		{name: "all disabled but web enabled", set: paas.CheckSettings{Disabled: true}.WithState(paas.CheckEnabled, []string{"web"}), declared: declared, want: declared, wantDrain: 30 * time.Second,
			wantGates: map[string]scheduler.Gate{"worker": scheduler.GateNone, "clock": scheduler.GateNone}},
		{
			name: "properties override", declared: declared,
			set:       paas.CheckSettings{Props: map[string]string{"attempts": "7", "wait": "2", "timeout": "9", "initial-delay": "1", "wait-to-retire": "5"}},
			want:      []paas.HealthCheck{{Name: "ready", Path: "/ready", Content: "ok", Attempts: 7, Wait: 2, Timeout: 9, InitialDelay: 1}},
			wantDrain: 5 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newPipelineEnv(t)
			e.p.appHost = func(app string) string { return app + ".example.test" }
			app := &paas.App{Name: "hello", Checks: tc.set}
			got := e.p.deployOptions(app, &paas.Release{Processes: procs, Checks: map[string][]paas.HealthCheck{"web": tc.declared}}, false)
			want := scheduler.DeployOptions{Checks: tc.want, Host: "hello.example.test", DrainTimeout: tc.wantDrain, Gates: tc.wantGates}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
			if len(tc.declared) > 0 && tc.declared[0].Attempts != 3 {
				t.Fatal("the release's checks were changed in place")
			}
		})
	}
}

func TestRestartProcessAndFormation(t *testing.T) {
	ctx := context.Background()
	var out strings.Builder
	e := newPipelineEnv(t, &paas.App{Name: "hello", Current: 1}, &paas.App{Name: "new"})
	e.store.releases["hello"] = map[int]*paas.Release{1: {App: "hello", Version: 1, Processes: []paas.ProcessType{{Name: "web"}, {Name: "worker", Command: "w"}}}}

	if err := e.p.RestartProcess(ctx, "hello", alice, "worker", &out); err != nil {
		t.Fatalf("RestartProcess: %v", err)
	}
	if got := e.scheduler.opts[len(e.scheduler.opts)-1]; got.Only != "worker" || !got.Force {
		t.Errorf("restart options %+v, want Only worker, Force", got)
	}
	if err := e.p.RestartProcess(ctx, "hello", alice, "clock", &out); err == nil || !strings.Contains(err.Error(), "process type clock is not in the Procfile of v1") {
		t.Errorf("restart of a missing process type = %v", err)
	}
	e.store.apps["hello"].Stopped = true
	if err := e.p.RestartProcess(ctx, "hello", alice, "worker", &out); err == nil || !strings.Contains(err.Error(), "App hello is stopped") {
		t.Errorf("restart of a process type of a stopped app = %v", err)
	}
	e.store.apps["hello"].Stopped = false
	deployed := len(e.scheduler.deployed)
	if err := e.p.SetFormation(ctx, "hello", alice, map[string]int{"worker": 3}, &out); err != nil {
		t.Fatalf("SetFormation: %v", err)
	}
	if len(e.scheduler.deployed) != deployed {
		t.Error("SetFormation rolled something out")
	}
	if a, _ := e.store.App("hello"); a.Formation["worker"] != 3 {
		t.Errorf("formation %v, want worker=3", a.Formation)
	}
	for _, bad := range []map[string]int{{"clock": 1}, {"worker": 101}} {
		if err := e.p.SetFormation(ctx, "hello", alice, bad, &out); err == nil {
			t.Errorf("SetFormation(%v) accepted", bad)
		}
	}
	if a, _ := e.store.App("hello"); a.Formation["worker"] != 3 || len(a.Formation) != 1 {
		t.Errorf("a refused formation changed it: %v", a.Formation)
	}
	// The next rollout runs the recorded formation.
	if err := e.p.Restart(ctx, "hello", alice, &out); err != nil {
		t.Fatal(err)
	}
	if got := e.scheduler.deployed[len(e.scheduler.deployed)-1].Scale; got["worker"] != 3 || got["web"] != 1 {
		t.Errorf("restart scale %v, want web=1 worker=3", got)
	}
	// Before the first deploy any process type may be recorded.
	if err := e.p.SetFormation(ctx, "new", alice, map[string]int{"worker": 2}, &out); err != nil {
		t.Errorf("SetFormation before the first deploy: %v", err)
	}
	if err := e.p.RunChecks(ctx, "hello", "web.1", &out); err != nil || !strings.Contains(out.String(), `checking v1 "web.1"`) {
		t.Errorf("RunChecks = %v, output %q", err, out.String())
	}
}

func TestParseAppJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string][]paas.HealthCheck
		wantErr string
	}{
		{name: "no checks", in: `{"name":"x"}`},
		{name: "dokku fields", in: `{"healthchecks":{"web":[{"type":"startup","name":"up","path":"/health","content":"ok","port":8080,"attempts":5,"timeout":3,"wait":2,"initialDelay":1}]}}`,
			want: map[string][]paas.HealthCheck{"web": {{Type: "startup", Name: "up", Path: "/health", Content: "ok", Port: 8080, Attempts: 5, Timeout: 3, Wait: 2, InitialDelay: 1}}}},
		{name: "not json", in: `{`, wantErr: "app.json: unexpected end of JSON input"},
		{name: "bad type", in: `{"healthchecks":{"web":[{"type":"sometimes"}]}}`, wantErr: `unknown type "sometimes"`},
		{name: "bad path", in: `{"healthchecks":{"web":[{"path":"health"}]}}`, wantErr: "path must start with /"},
		{name: "bad port", in: `{"healthchecks":{"web":[{"port":70000}]}}`, wantErr: "port 70000 out of range"},
		{name: "too many attempts", in: `{"healthchecks":{"web":[{"attempts":1000}]}}`, wantErr: "attempts must be 0 to 100"},
		{name: "negative wait", in: `{"healthchecks":{"web":[{"wait":-1}]}}`, wantErr: "wait must be 0 to 600 seconds"},
		{name: "worker check", in: `{"healthchecks":{"worker":[{"path":"/"}]}}`, wantErr: "only the web process can be checked"},
		{name: "bad process name", in: `{"healthchecks":{"../x":[{"path":"/"}]}}`, wantErr: "invalid process type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAppJSON([]byte(tc.in))
			if (err != nil) != (tc.wantErr != "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseAppJSON = %v, want error %q", err, tc.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

type fakeImages struct {
	kept [][]string
	err  error
}

func (f *fakeImages) Prune(app string, keep []string) error {
	f.kept = append(f.kept, keep)
	return f.err
}

func TestPruneImages(t *testing.T) {
	e := deployedApp(t) // v1..v3
	images := &fakeImages{}
	e.p.images, e.p.keep = images, 2
	var out syncBuffer
	if err := e.p.SetConfig(context.Background(), "hello", alice, "config:set", true, func(cfg map[string]string) error { cfg["X"] = "1"; return nil }, &out); err != nil {
		t.Fatal(err)
	}
	// v4 reuses v3's image: the last two releases are v4 and v3.
	if len(images.kept) != 1 || !reflect.DeepEqual(images.kept[0], []string{"sha256:333", "sha256:333"}) {
		t.Fatalf("kept %v, want v4's and v3's images", images.kept)
	}
	images.err = errors.New("disk on fire")
	if err := e.p.Rollback(context.Background(), "hello", alice, 1, &out); err != nil {
		t.Fatalf("a failed prune failed the release: %v", err)
	}
	if !strings.Contains(out.String(), "could not drop the images of old releases: disk on fire") {
		t.Errorf("output lacks the prune failure:\n%s", out.String())
	}
	if !reflect.DeepEqual(images.kept[1], []string{"sha256:111", "sha256:333"}) {
		t.Fatalf("kept %v, want v5's and v4's images", images.kept[1])
	}
	few := deployedApp(t)
	few.p.images, few.p.keep = images, 10
	if err := few.p.Restart(context.Background(), "hello", alice, &out); err != nil || len(images.kept) != 2 {
		t.Fatalf("a restart (no new release) or few releases pruned: %v %v", err, images.kept)
	}
}

// Every rollout fires pre-deploy and post-deploy, as a push does; a
// pre-deploy failure refuses it before anything starts, a post-deploy one is
// only reported.
func TestDeployTriggersOnChanges(t *testing.T) {
	changes := []struct {
		name string
		run  func(*Pipeline, *syncBuffer) error
	}{
		{"rollback", func(p *Pipeline, out *syncBuffer) error {
			return p.Rollback(context.Background(), "hello", alice, 0, out)
		}},
		{"ps:restart", func(p *Pipeline, out *syncBuffer) error { return p.Restart(context.Background(), "hello", alice, out) }},
		{"ps:scale", func(p *Pipeline, out *syncBuffer) error {
			return p.Scale(context.Background(), "hello", alice, map[string]int{"worker": 2}, out)
		}},
	}
	for _, c := range changes {
		for _, failing := range []string{"", "pre-deploy", "post-deploy"} {
			t.Run(c.name+" "+failing, func(t *testing.T) {
				e := deployedApp(t)
				if failing != "" {
					e.triggers.errs[failing] = errors.New(failing + " says no")
				}
				var out syncBuffer
				err := c.run(e.p, &out)
				want := []string{"pre-deploy hello", "post-deploy hello"}
				switch failing {
				case "pre-deploy":
					want = want[:1]
					if err == nil || !strings.Contains(err.Error(), "pre-deploy says no") {
						t.Fatalf("error %v, want the pre-deploy refusal", err)
					}
					if len(e.scheduler.deployed) != 0 {
						t.Fatalf("rolled out %d releases after a refusal", len(e.scheduler.deployed))
					}
					if app, _ := e.store.App("hello"); app.Current != 3 {
						t.Fatalf("current v%d after a refusal, want v3", app.Current)
					}
				case "post-deploy":
					if err != nil || !strings.Contains(out.String(), "post-deploy says no") {
						t.Fatalf("error %v, output %q: want success with the post-deploy failure reported", err, out.String())
					}
				default:
					if err != nil {
						t.Fatal(err)
					}
				}
				if !reflect.DeepEqual(e.triggers.calls, want) {
					t.Fatalf("triggers %q, want %q", e.triggers.calls, want)
				}
			})
		}
	}
}

// While a deploy runs, its output so far can be read (builds:output); once
// it is recorded, it is gone from there.
func TestRunningLog(t *testing.T) {
	e := deployedApp(t)
	var during, after string
	var found bool
	var grown <-chan struct{}
	e.scheduler.during = func() {
		during, _, found = e.p.RunningLogFrom("hello", 1, 0)
		after, grown, _ = e.p.RunningLogFrom("hello", 1, len(during))
	}
	var out syncBuffer
	if err := e.p.Restart(context.Background(), "hello", alice, &out); err != nil {
		t.Fatal(err)
	}
	if !found || !strings.Contains(during, "rolling out v3") {
		t.Errorf("RunningLogFrom during the deploy = %q, %v; want its output so far", during, found)
	}
	if _, _, ok := e.p.RunningLogFrom("hello", 1, 0); ok {
		t.Error("RunningLogFrom still has the deploy after it finished")
	}
	// a follower at the end of the log so far reads nothing more then, and
	// is woken by what comes next or by the end
	if after != "" || grown == nil {
		t.Fatalf("RunningLogFrom at the end = %q, %v", after, grown)
	}
	select {
	case <-grown:
	default:
		t.Error("a follower was not woken when the deploy wrote more and ended")
	}
}
