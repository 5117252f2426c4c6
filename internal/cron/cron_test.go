package cron

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/plugins"
	"paas/scheduler"
)

func TestParseAppJSON(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		seconds bool
		want    int
		wantErr string
	}{
		{name: "none", json: `{}`, want: 0},
		{name: "cron syntax and descriptors", json: `{"cron":[{"command":"a","schedule":"0 3 * * *"},{"command":"b","schedule":"@daily"},{"command":"c","schedule":"@every 10m"}]}`, want: 3},
		{name: "maintenance and forbid", json: `{"cron":[{"command":"a","schedule":"@hourly","maintenance":true,"concurrency_policy":"forbid"}]}`, want: 1},
		{name: "bad schedule names the entry", json: `{"cron":[{"command":"ok","schedule":"@daily"},{"command":"job --now","schedule":"61 * * * *"}]}`, wantErr: `app.json cron[1] ("job --now"): schedule "61 * * * *"`},
		{name: "unknown descriptor", json: `{"cron":[{"command":"a","schedule":"@sometimes"}]}`, wantErr: `schedule "@sometimes"`},
		{name: "no schedule", json: `{"cron":[{"command":"a"}]}`, wantErr: "cron[0] (\"a\"): schedule is required"},
		{name: "no command", json: `{"cron":[{"schedule":"@daily"}]}`, wantErr: "cron[0]: command is required"},
		{name: "unbalanced quote", json: `{"cron":[{"command":"sh -c 'x","schedule":"@daily"}]}`, wantErr: "cron[0]"},
		{name: "twice", json: `{"cron":[{"command":"a","schedule":"@daily"},{"command":"a","schedule":"@daily"}]}`, wantErr: "the same command and schedule as cron[0]"},
		{name: "allow refused", json: `{"cron":[{"command":"a","schedule":"@daily","concurrency_policy":"allow"}]}`, wantErr: `concurrency_policy "allow"`},
		{name: "seconds without the flag", json: `{"cron":[{"command":"a","schedule":"*/5 * * * * *"}]}`, wantErr: "schedule"},
		{name: "seconds with the flag", json: `{"cron":[{"command":"a","schedule":"*/5 * * * * *"}]}`, seconds: true, want: 1},
		{name: "time zone", json: `{"cron":[{"command":"a","schedule":"CRON_TZ=Europe/Paris 0 3 * * *"}]}`, wantErr: "UTC"},
		{name: "not JSON", json: `{"cron":`, wantErr: "app.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tasks, err := ParseAppJSON([]byte(tt.json), tt.seconds)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tasks) != tt.want {
				t.Fatalf("%d tasks, want %d", len(tasks), tt.want)
			}
			for _, task := range tasks {
				if task.ID != TaskID(task.Command, task.Schedule) || len(task.ID) != 10 {
					t.Errorf("task %+v: bad ID", task)
				}
			}
		})
	}
}

// fakeStore holds one app and its current release.
type fakeStore struct {
	mu    sync.Mutex
	app   *paas.App
	rel   *paas.Release
	reads int // of the whole release
}

func (f *fakeStore) AppList() ([]paas.AppEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.app
	return []paas.AppEntry{{Name: a.Name, Owner: a.Owner, Current: a.Current, Stopped: a.Stopped}}, nil
}

func (f *fakeStore) ServedSince(apps []paas.AppEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range apps {
		if apps[i].Name == f.app.Name && apps[i].Current == f.rel.Version {
			apps[i].DeployedAt = f.rel.CreatedAt
		}
	}
	return nil
}

func (f *fakeStore) Apps() ([]*paas.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := *f.app
	return []*paas.App{&a}, nil
}

func (f *fakeStore) App(name string) (*paas.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != f.app.Name {
		return nil, paas.ErrAppNotFound
	}
	a := *f.app
	return &a, nil
}

func (f *fakeStore) Release(app string, v int) (*paas.Release, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	r := *f.rel
	return &r, nil
}

// fakeRunner starts tasks that run until finish is called with their exit code.
type fakeRunner struct {
	mu      sync.Mutex
	started chan string              // names, as tasks start
	exits   map[string]chan struct{} // closed when the task ends
	codes   map[string]int
	args    [][]string
	tasks   []scheduler.OneOff
	n       int
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{started: make(chan string, 10), exits: map[string]chan struct{}{}, codes: map[string]int{}}
}

func (f *fakeRunner) Detach(_ context.Context, rel *paas.Release, opts scheduler.RunOptions) (string, error) {
	f.mu.Lock()
	f.n++
	name := fmt.Sprintf("%s-run-%d", rel.App, f.n)
	f.exits[name] = make(chan struct{})
	f.args = append(f.args, opts.Args)
	f.tasks = append(f.tasks, scheduler.OneOff{Name: name, State: "running", CronTask: opts.CronTask, Release: rel.Version, Detached: true})
	f.mu.Unlock()
	f.started <- name
	return name, nil
}

func (f *fakeRunner) WaitOneOff(ctx context.Context, _, name string) (int, error) {
	f.mu.Lock()
	c := f.exits[name]
	f.mu.Unlock()
	select {
	case <-c:
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.codes[name], nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (f *fakeRunner) OneOffLogs(_ context.Context, _ string, opts scheduler.OneOffLogOptions, w io.Writer) error {
	_, err := fmt.Fprintf(w, "output of %s\n", opts.Name)
	return err
}

func (f *fakeRunner) OneOffs(_ context.Context, app string) ([]scheduler.OneOff, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tasks), nil
}

func (f *fakeRunner) finish(name string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.tasks {
		if f.tasks[i].Name == name {
			f.tasks[i].State = "exited"
		}
	}
	f.codes[name] = code
	close(f.exits[name])
}

type fakeEvents struct {
	mu  sync.Mutex
	evs []*paas.Event
}

func (f *fakeEvents) Record(e *paas.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evs = append(f.evs, e)
}

func (f *fakeEvents) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.evs {
		out = append(out, e.Action+" "+strings.Join(e.Args, " ")+" "+e.Detail)
	}
	return out
}

// fakeClock is a time the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func at(s string) time.Time {
	t, err := time.Parse(time.DateTime, "2026-12-02 "+s)
	if err != nil {
		panic(err)
	}
	return t
}

func setup(t *testing.T, start time.Time, tasks ...paas.CronTask) (*Service, *fakeRunner, *fakeEvents, *fakeClock, *fakeStore) {
	t.Helper()
	st := &fakeStore{app: &paas.App{Name: "web", Current: 4}, rel: &paas.Release{App: "web", Version: 4, Cron: tasks}}
	r, ev, clock := newFakeRunner(), &fakeEvents{}, &fakeClock{t: start}
	s := New(st, r, ev, Options{Dir: t.TempDir(), Now: clock.Now})
	return s, r, ev, clock, st
}

func task(command, schedule string) paas.CronTask {
	return paas.CronTask{ID: TaskID(command, schedule), Command: command, Schedule: schedule}
}

// started waits for the next task start.
func started(t *testing.T, r *fakeRunner) string {
	t.Helper()
	select {
	case n := <-r.started:
		return n
	case <-time.After(5 * time.Second):
		t.Fatal("no task started")
		return ""
	}
}

func noStart(t *testing.T, r *fakeRunner) {
	t.Helper()
	select {
	case n := <-r.started:
		t.Fatalf("task %s started, want none", n)
	case <-time.After(50 * time.Millisecond):
	}
}

// waitRuns waits until id has n recorded runs.
func waitRuns(t *testing.T, s *Service, id string, n int) []Run {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		runs, err := s.Runs("web", id)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == n {
			return runs
		}
	}
	t.Fatalf("task %s never had %d runs", id, n)
	return nil
}

// TestSchedule: a task runs once per time its schedule has, from the
// service's start; missed times (paasd stopped) are not made up.
func TestSchedule(t *testing.T) {
	job := task("report --daily", "* * * * *")
	s, r, _, clock, _ := setup(t, at("10:00:30"), job)

	s.Tick(at("10:00:59"))
	noStart(t, r)
	s.Tick(at("10:01:00"))
	name := started(t, r)
	if got := strings.Join(r.args[0], " "); got != "report --daily" {
		t.Errorf("task ran %q", got)
	}
	s.Tick(at("10:01:00"))
	s.Tick(at("10:01:59"))
	noStart(t, r)
	clock.Set(at("10:01:05"))
	r.finish(name, 0)
	runs := waitRuns(t, s, job.ID, 1)
	if runs[0].Result() != "succeeded" || runs[0].Release != 4 || runs[0].Output != "output of "+name+"\n" || runs[0].Trigger != "schedule" {
		t.Errorf("run = %+v", runs[0])
	}

	list, err := s.List("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Next == nil || !list[0].Next.Equal(at("10:02:00")) || list[0].LastResult != "succeeded" {
		t.Errorf("list = %+v", list)
	}

	// a restart at 10:05:30: the next run is at 10:06, 10:02 to 10:05 are not made up
	s2 := New(s.store, r, s.events, Options{Dir: s.dir, Now: clock.Now})
	s2.started = at("10:05:30")
	s2.Tick(at("10:05:40"))
	noStart(t, r)
	s2.Tick(at("10:06:01"))
	r.finish(started(t, r), 0)
	waitRuns(t, s2, job.ID, 2) // the runs kept before the restart are still there
}

// TestNoOverlap: a run still going when the next one is due is skipped and
// said in events; the run after it starts once the first one ended.
func TestNoOverlap(t *testing.T) {
	job := task("sleep 90", "* * * * *")
	s, r, ev, _, _ := setup(t, at("10:00:30"), job)
	s.Tick(at("10:01:00"))
	first := started(t, r)
	s.Tick(at("10:02:00"))
	noStart(t, r)
	if got := ev.actions(); len(got) != 1 || !strings.Contains(got[0], "cron:skip "+job.ID) || !strings.Contains(got[0], "still going") {
		t.Fatalf("events = %q, want one skip", got)
	}
	if _, _, err := s.Start(t.Context(), "web", job.ID); !errors.Is(err, ErrRunning) {
		t.Fatalf("cron:run while it runs: %v, want ErrRunning", err)
	}
	r.finish(first, 0)
	waitRuns(t, s, job.ID, 1)
	s.Tick(at("10:03:00"))
	r.finish(started(t, r), 0)
	waitRuns(t, s, job.ID, 2)
}

// TestFailureAndManualRun: cron:run runs a suspended task too; a failed run
// is in events; only the last keepRuns runs are kept.
func TestFailureAndManualRun(t *testing.T) {
	job := task("migrate", "@daily")
	s, r, ev, _, _ := setup(t, at("10:00:30"), job)
	if err := s.SetMaintenance("web", job.ID, true); err != nil {
		t.Fatal(err)
	}
	s.Tick(at("23:59:59"))
	s.Tick(at("00:00:00").Add(24 * time.Hour))
	noStart(t, r)
	list, _ := s.List("web")
	if !list[0].Maintenance || list[0].Next != nil {
		t.Errorf("suspended task listed as %+v", list[0])
	}

	for i := range keepRuns + 2 {
		code := 0
		if i == keepRuns+1 {
			code = 3
		}
		go func() { r.finish(started(t, r), code) }()
		name, done, err := s.Start(t.Context(), "web", job.ID)
		if err != nil {
			t.Fatal(err)
		}
		run := <-done
		if run.Name != name || run.ExitCode != code || run.Trigger != "cron:run" {
			t.Fatalf("run %d = %+v", i, run)
		}
	}
	runs := waitRuns(t, s, job.ID, keepRuns)
	if runs[len(runs)-1].Result() != "failed (exit 3)" {
		t.Errorf("last run %+v", runs[len(runs)-1])
	}
	got := ev.actions()
	if len(got) != 1 || !strings.Contains(got[0], "cron "+job.ID+" task "+job.ID+" (cron:run, v4) failed (exit 3)") {
		t.Errorf("events = %q, want the failure", got)
	}

	if _, _, err := s.Start(t.Context(), "web", "nosuchid"); !errors.Is(err, ErrNoTask) {
		t.Errorf("unknown ID: %v", err)
	}
	if err := s.SetMaintenance("web", "nosuchid", true); !errors.Is(err, ErrNoTask) {
		t.Errorf("unknown ID: %v", err)
	}
}

// TestFollowsRelease: the tasks are the current release's: a rollback to a
// release without the task stops it.
func TestFollowsRelease(t *testing.T) {
	job := task("a", "* * * * *")
	s, r, _, _, st := setup(t, at("10:00:30"), job)
	st.mu.Lock()
	st.app.Current, st.rel = 5, &paas.Release{App: "web", Version: 5}
	st.mu.Unlock()
	s.Tick(at("10:01:00"))
	noStart(t, r)
	st.mu.Lock()
	st.app.Current, st.rel = 6, &paas.Release{App: "web", Version: 6, Cron: []paas.CronTask{job}}
	st.mu.Unlock()
	s.Tick(at("10:02:00"))
	r.finish(started(t, r), 0)
	if runs := waitRuns(t, s, job.ID, 1); runs[0].Release != 6 {
		t.Errorf("ran release %d, want 6", runs[0].Release)
	}
}

// TestTickSkipsIdleReleases: a serving release without tasks is read once,
// not at every tick, until the app serves another release, or an app of
// the same name made again serves its own v1.
func TestTickSkipsIdleReleases(t *testing.T) {
	job := task("a", "* * * * *")
	s, r, _, _, st := setup(t, at("10:00:30"))
	// tick returns how many times the ticks read a release.
	tick := func(times ...string) int {
		st.mu.Lock()
		before := st.reads
		st.mu.Unlock()
		for _, when := range times {
			s.Tick(at(when))
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.reads - before
	}
	serve := func(v int, made string, tasks ...paas.CronTask) {
		st.mu.Lock()
		st.app.Current, st.rel = v, &paas.Release{App: "web", Version: v, CreatedAt: at(made), Cron: tasks}
		st.mu.Unlock()
	}
	if n := tick("10:01:00", "10:01:05", "10:01:10"); n != 1 {
		t.Fatalf("3 ticks read the release %d times, want 1", n)
	}
	noStart(t, r)
	serve(5, "10:01:30", job)
	if n := tick("10:02:00"); n != 1 {
		t.Fatalf("a new release read %d times, want 1", n)
	}
	r.finish(started(t, r), 0)
	waitRuns(t, s, job.ID, 1)
	// The app made again: v1 without tasks, then v1 with tasks, told apart
	// by their dates.
	serve(1, "10:02:30")
	if n := tick("10:03:00", "10:03:05"); n != 1 {
		t.Fatalf("the new app's v1 read %d times, want 1", n)
	}
	serve(1, "10:03:30", job)
	if n := tick("10:04:00"); n != 1 {
		t.Fatalf("another v1 read %d times, want 1", n)
	}
	r.finish(started(t, r), 0)
	waitRuns(t, s, job.ID, 2)
}

// TestAdoptAfterRestart: a run a stopped paasd left going still counts as
// running after the restart (the next due run is skipped) and is recorded
// when it ends.
func TestAdoptAfterRestart(t *testing.T) {
	job := task("sleep 90", "* * * * *")
	s, r, ev, clock, _ := setup(t, at("10:00:30"), job)
	s.Tick(at("10:01:00"))
	name := started(t, r)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s2 := New(s.store, r, ev, Options{Dir: s.dir, Now: clock.Now})
	s2.ctx = ctx
	s2.started = at("10:01:30")
	s2.adopt(ctx)
	s2.Tick(at("10:02:00"))
	noStart(t, r)
	if got := ev.actions(); len(got) != 1 || !strings.Contains(got[0], "cron:skip "+job.ID) {
		t.Fatalf("events = %q, want the skip", got)
	}
	r.finish(name, 7)
	runs := waitRuns(t, s2, job.ID, 2) // recorded by both: the old service's goroutine lives on in this test
	var adopted *Run
	for i := range runs {
		if runs[i].Trigger == "before a restart" {
			adopted = &runs[i]
		}
	}
	if adopted == nil || adopted.ExitCode != 7 || adopted.Name != name || adopted.Release != 4 {
		t.Fatalf("runs = %+v, want the adopted one with exit 7", runs)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s2.mu.Lock()
		_, busy := s2.running[key{"web", job.ID}]
		s2.mu.Unlock()
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still running after the run ended")
		}
	}
	s2.Tick(at("10:03:00"))
	r.finish(started(t, r), 0)
	// Both services record into the test's directory: let them end before
	// it is removed.
	s.wg.Wait()
	s2.wg.Wait()
}

// TestNewAppOfTheSameName: the runs and suspensions of a destroyed app are
// not those of a new app of the same name.
func TestNewAppOfTheSameName(t *testing.T) {
	job := task("report", "@daily")
	s, r, _, _, st := setup(t, at("10:00:30"), job)
	st.app.CreatedAt = at("09:00:00")
	go func() { r.finish(started(t, r), 0) }()
	_, done, err := s.Start(t.Context(), "web", job.ID)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if err := s.SetMaintenance("web", job.ID, true); err != nil {
		t.Fatal(err)
	}
	if runs, _ := s.Runs("web", job.ID); len(runs) != 1 {
		t.Fatalf("runs = %+v, want 1", runs)
	}
	st.mu.Lock()
	st.app = &paas.App{Name: "web", Current: 1, CreatedAt: at("11:00:00")}
	st.mu.Unlock()
	runs, err := s.Runs("web", job.ID)
	if err != nil || len(runs) != 0 {
		t.Fatalf("the new app's runs = %+v, %v, want none", runs, err)
	}
	list, err := s.List("web")
	if err != nil || len(list) != 1 || list[0].Maintenance || list[0].LastRun != nil {
		t.Fatalf("the new app's list = %+v, %v", list, err)
	}
}

// TestRenameAndDestroy: an app's runs and suspensions follow apps:rename
// (post-app-rename) and go with apps:destroy (post-delete).
func TestRenameAndDestroy(t *testing.T) {
	job := task("report", "@daily")
	s, r, _, _, st := setup(t, at("10:00:30"), job)
	go func() { r.finish(started(t, r), 0) }()
	_, done, err := s.Start(t.Context(), "web", job.ID)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if err := s.SetMaintenance("web", job.ID, true); err != nil {
		t.Fatal(err)
	}
	hooks := s.Hooks()
	if err := hooks[plugins.TriggerPostAppRename](t.Context(), plugins.Event{Args: []string{"web", "site"}}); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.app.Name, st.rel.App = "site", "site"
	st.mu.Unlock()
	if runs, err := s.Runs("site", job.ID); err != nil || len(runs) != 1 {
		t.Fatalf("runs after the rename = %+v, %v, want the one run", runs, err)
	}
	if list, err := s.List("site"); err != nil || len(list) != 1 || !list[0].Maintenance {
		t.Fatalf("list after the rename = %+v, %v, want it still suspended", list, err)
	}
	if err := hooks[plugins.TriggerPostDelete](t.Context(), plugins.Event{Args: []string{"site"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "site.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the destroyed app's state is still there: %v", err)
	}
	if err := hooks[plugins.TriggerPostAppRename](t.Context(), plugins.Event{Args: []string{"../x", "y"}}); err == nil {
		t.Fatal("an invalid app name reached a file path")
	}
}
