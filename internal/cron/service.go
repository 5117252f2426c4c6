package cron

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"paas/internal/paas"
	"paas/scheduler"
)

// Store is the state the cron service reads.
type Store interface {
	Apps() ([]*paas.App, error)
	// AppList and ServedSince are the cheap reads of every app's entry
	// and its serving release's date (store.AppList): what Tick looks at
	// every 5 s.
	AppList() ([]paas.AppEntry, error)
	ServedSince(apps []paas.AppEntry) error
	App(name string) (*paas.App, error)
	Release(app string, v int) (*paas.Release, error)
}

// Runner runs one-off tasks: the same detached path as run:detached, so a
// cron task gets what every one-off task gets (config, network, limits).
type Runner interface {
	Detach(ctx context.Context, rel *paas.Release, opts scheduler.RunOptions) (string, error)
	// WaitOneOff waits until the app's one-off task name exits and returns
	// its exit code.
	WaitOneOff(ctx context.Context, app, name string) (int, error)
	OneOffLogs(ctx context.Context, app string, opts scheduler.OneOffLogOptions, w io.Writer) error
	OneOffs(ctx context.Context, app string) ([]scheduler.OneOff, error)
}

// Events records what the user must learn of in `events` (the audit log).
type Events interface {
	Record(e *paas.Event)
}

// Errors of the cron commands.
var (
	ErrNoTask  = errors.New("no such cron task")
	ErrRunning = errors.New("cron task is running")
)

// Bounds of what is kept of a task's runs.
const (
	keepRuns  = 5
	maxOutput = 64 << 10
)

// Run is one run of a cron task, as cron:logs shows it.
type Run struct {
	Task     string    `json:"task"`
	Release  int       `json:"release"`
	Trigger  string    `json:"trigger"` // "schedule" or "cron:run"
	Name     string    `json:"name,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	ExitCode int       `json:"exit_code"`
	Error    string    `json:"error,omitempty"` // the task could not run
	Output   string    `json:"output"`
}

// Result is a run's outcome in a word or two.
func (r *Run) Result() string {
	switch {
	case r.Error != "":
		return "error"
	case r.ExitCode != 0:
		return fmt.Sprintf("failed (exit %d)", r.ExitCode)
	}
	return "succeeded"
}

// Status is a task of an app's current release as cron:list shows it.
type Status struct {
	ID          string     `json:"id"`
	App         string     `json:"app"`
	Command     string     `json:"command"`
	Schedule    string     `json:"schedule"`
	Maintenance bool       `json:"maintenance"`
	Running     bool       `json:"running"`
	Next        *time.Time `json:"next_run,omitempty"`
	LastRun     *time.Time `json:"last_run,omitempty"`
	LastResult  string     `json:"last_result,omitempty"`
}

// appState is what is kept of one app's tasks, in DIR/APP.json.
type appState struct {
	// AppCreated tells the app apart from an earlier one of the same
	// name: a destroyed app's runs and suspensions are not a new one's.
	AppCreated time.Time        `json:"app_created"`
	Suspended  map[string]bool  `json:"suspended,omitempty"`
	Runs       map[string][]Run `json:"runs,omitempty"` // by task, newest last
}

type key struct{ app, id string }

// Service runs the cron tasks of every app's current release.
type Service struct {
	store   Store
	runner  Runner
	events  Events
	dir     string
	seconds bool
	log     *slog.Logger
	now     func() time.Time
	tick    time.Duration

	mu      sync.Mutex
	running map[key]string    // task -> its one-off task's name ("" while starting)
	checked map[key]time.Time // the schedule was looked at up to then
	// idle holds, by app, the serving release Tick found without tasks:
	// it is not read again until the app serves another.
	idle    map[string]served
	started time.Time
	ctx     context.Context // Run's: detached and scheduled runs live in it
	wg      sync.WaitGroup
}

// Options configures a Service.
type Options struct {
	Dir     string // where the runs' output and suspensions are kept
	Seconds bool   // schedules may have a seconds field (tests)
	Log     *slog.Logger
	Now     func() time.Time // time.Now when nil
}

// New returns a Service.
func New(st Store, r Runner, ev Events, opts Options) *Service {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := 5 * time.Second // a run starts at most this late
	if opts.Seconds {
		tick = 250 * time.Millisecond
	}
	return &Service{
		store: st, runner: r, events: ev, dir: opts.Dir, seconds: opts.Seconds, log: log, now: now, tick: tick,
		running: map[key]string{}, checked: map[key]time.Time{}, idle: map[string]served{}, started: now(), ctx: context.Background(),
	}
}

// Run looks at every app's schedule every 5 s (4 times a second with
// Options.Seconds) until ctx ends; the one-off tasks running then go on,
// unrecorded. After a restart the next runs follow from the schedule (runs
// missed while paasd was stopped are not made up), and runs still going are
// taken up (adopt).
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.started = s.now()
	s.mu.Unlock()
	s.adopt(ctx)
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.wg.Wait()
			return nil
		case <-t.C:
			s.Tick(s.now())
		}
	}
}

// adopt takes up the runs a stopped paasd left going: each counts as
// running (no second run starts beside it) and is recorded when it ends.
func (s *Service) adopt(ctx context.Context) {
	apps, err := s.store.Apps()
	if err != nil {
		s.log.Error("cron: list apps", "err", err)
		return
	}
	for _, app := range apps {
		tasks, err := s.runner.OneOffs(ctx, app.Name)
		if err != nil {
			s.log.Error("cron: list one-off tasks", "app", app.Name, "err", err)
			continue
		}
		for _, o := range tasks {
			k := key{app.Name, o.CronTask}
			if o.CronTask == "" || o.State != "running" || !s.claim(k) {
				continue
			}
			s.mu.Lock()
			s.running[k] = o.Name
			s.mu.Unlock()
			s.log.Info("cron: a run started before the restart is still going", "app", app.Name, "task", o.CronTask, "name", o.Name)
			r := Run{Task: o.CronTask, Release: o.Release, Trigger: "before a restart", Name: o.Name, Started: o.CreatedAt}
			s.wg.Go(func() {
				defer s.release(k)
				code, err := s.runner.WaitOneOff(ctx, app.Name, o.Name)
				r.ExitCode = code
				s.finish(ctx, app.Name, r, err)
			})
		}
	}
}

func (s *Service) release(k key) {
	s.mu.Lock()
	delete(s.running, k)
	s.mu.Unlock()
}

// Tick starts the tasks due since the last Tick (or the start), up to now.
// A task still running when its next run is due is not started again: the
// skipped run is recorded in events.
//
// Most apps have no cron tasks: Tick reads the list of apps and the dates
// of their serving releases (kept decoded by the store while unchanged),
// and the whole app and release only of the apps whose serving release it
// has not yet seen without tasks. Releases are never changed once added,
// so an app's release, its version and date, has tasks or not for good.
func (s *Service) Tick(now time.Time) {
	apps, err := s.store.AppList()
	if err == nil {
		err = s.store.ServedSince(apps)
	}
	if err != nil {
		s.log.Error("cron: list apps", "err", err)
		return
	}
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	stillIdle := map[string]served{}
	for _, e := range apps {
		if e.Current == 0 || e.Stopped {
			continue
		}
		at := served{e.Current, e.DeployedAt}
		if idle[e.Name] == at {
			stillIdle[e.Name] = at
			continue
		}
		app, err := s.store.App(e.Name)
		if err != nil {
			s.log.Error("cron: read app", "app", e.Name, "err", err)
			continue
		}
		rel, err := s.store.Release(e.Name, e.Current)
		if err != nil {
			s.log.Error("cron: current release", "app", e.Name, "err", err)
			continue
		}
		if len(rel.Cron) == 0 {
			stillIdle[e.Name] = at
			continue
		}
		withNetworks(app, rel)
		st, err := s.load(app.Name)
		if err != nil {
			s.log.Error("cron: read state", "app", app.Name, "err", err)
			continue
		}
		for _, task := range rel.Cron {
			if s.due(key{app.Name, task.ID}, task, now) && !task.Maintenance && !st.Suspended[task.ID] {
				s.startScheduled(rel, task)
			}
		}
	}
	s.mu.Lock()
	s.idle = stillIdle
	s.mu.Unlock()
}

// served names an app's serving release: its version and when it was made
// (an app destroyed and made again starts at v1 again).
type served struct {
	version int
	at      time.Time
}

// due reports whether task's schedule has a time in (last look, now].
func (s *Service) due(k key, task paas.CronTask, now time.Time) bool {
	sched, err := ParseSchedule(task.Schedule, s.seconds)
	if err != nil {
		return false // checked at the push; a paasd without --cron-seconds skips seconds schedules
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	from, ok := s.checked[k]
	if !ok {
		from = s.started
	}
	if !now.After(from) {
		return false
	}
	s.checked[k] = now
	return !sched.Next(from).After(now)
}

func (s *Service) startScheduled(rel *paas.Release, task paas.CronTask) {
	k := key{rel.App, task.ID}
	if !s.claim(k) {
		s.events.Record(&paas.Event{Time: s.now().UTC(), Actor: "cron", Source: "cron", App: rel.App, Action: "cron:skip", Args: []string{task.ID},
			Result: "error", Code: 1, Detail: fmt.Sprintf("task %s not started: its previous run is still going", task.ID)})
		s.log.Warn("cron: run skipped, the previous one is still going", "app", rel.App, "task", task.ID)
		return
	}
	s.wg.Go(func() { s.run(s.runCtx(), rel, task, "schedule", nil) })
}

func (s *Service) runCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

// claim marks task k running; false when it runs already.
func (s *Service) claim(k key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.running[k]; busy {
		return false
	}
	s.running[k] = ""
	return true
}

// run runs task of rel to its end and records the run; started, when set,
// learns the one-off task's name (or the error) once it started.
func (s *Service) run(ctx context.Context, rel *paas.Release, task paas.CronTask, trigger string, started func(string, error)) Run {
	k := key{rel.App, task.ID}
	defer s.release(k)
	r := Run{Task: task.ID, Release: rel.Version, Trigger: trigger, Started: s.now().UTC()}
	name, code, err := s.execute(ctx, rel, task, k, started)
	r.Name, r.ExitCode = name, code
	return s.finish(ctx, rel.App, r, err)
}

// finish reads the output of r's one-off task and records r; a failure
// goes to events too.
func (s *Service) finish(ctx context.Context, app string, r Run, err error) Run {
	r.Finished = s.now().UTC()
	name := r.Name
	if ctx.Err() != nil {
		// paasd is stopping: the one-off task goes on, unrecorded.
		s.log.Warn("cron: paasd stopped while a task ran; its result is not recorded", "app", app, "task", r.Task, "name", name)
		return r
	}
	if err != nil {
		r.Error = err.Error()
	}
	if name != "" {
		var out bytes.Buffer
		lw := &capped{w: &out, n: maxOutput}
		if err := s.runner.OneOffLogs(ctx, app, scheduler.OneOffLogOptions{Name: name, Raw: true}, lw); err != nil {
			fmt.Fprintf(&out, "(output not read: %v)\n", err)
		}
		r.Output = out.String()
	}
	if err := s.record(app, r); err != nil {
		s.log.Error("cron: record run", "app", app, "task", r.Task, "err", err)
	}
	if r.Error != "" || r.ExitCode != 0 {
		detail := fmt.Sprintf("task %s (%s, v%d) %s", r.Task, r.Trigger, r.Release, r.Result())
		if r.Error != "" {
			detail += ": " + r.Error
		}
		s.events.Record(&paas.Event{Time: r.Finished, Actor: "cron", Source: "cron", App: app, Action: "cron", Args: []string{r.Task},
			Result: "error", Code: max(r.ExitCode, 1), Detail: detail})
	}
	s.log.Info("cron: run finished", "app", app, "task", r.Task, "release", r.Release, "result", r.Result())
	return r
}

// execute starts task as a detached one-off task and waits for its end.
func (s *Service) execute(ctx context.Context, rel *paas.Release, task paas.CronTask, k key, started func(string, error)) (string, int, error) {
	tell := func(name string, err error) {
		if started != nil {
			started(name, err)
		}
	}
	args, err := scheduler.SplitCommand(task.Command)
	if err != nil {
		tell("", err)
		return "", 0, err
	}
	name, err := s.runner.Detach(ctx, rel, scheduler.RunOptions{Args: args, Env: []string{"PAAS_CRON_TASK=" + task.ID}, CronTask: task.ID})
	tell(name, err)
	if err != nil {
		return "", 0, err
	}
	s.mu.Lock()
	s.running[k] = name
	s.mu.Unlock()
	code, err := s.runner.WaitOneOff(ctx, rel.App, name)
	return name, code, err
}

// Start runs the task id of app's current release now (cron:run) and
// returns once it started: done receives the finished run. A task that
// runs already is not started again (ErrRunning).
func (s *Service) Start(ctx context.Context, app, id string) (name string, done <-chan Run, err error) {
	rel, task, err := s.task(app, id)
	if err != nil {
		return "", nil, err
	}
	if !s.claim(key{app, id}) {
		return "", nil, fmt.Errorf("%w: %s of %s has a run still going; not started again", ErrRunning, id, app)
	}
	type startResult struct {
		name string
		err  error
	}
	startedC := make(chan startResult, 1)
	doneC := make(chan Run, 1)
	s.wg.Go(func() {
		doneC <- s.run(s.runCtx(), rel, task, "cron:run", func(n string, err error) { startedC <- startResult{n, err} })
	})
	select {
	case st := <-startedC:
		if st.err != nil {
			<-doneC
			return "", nil, st.err
		}
		return st.name, doneC, nil
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
}

// withNetworks gives a run the app's networks of now, as `run` gets them
// (network:set and postgres:link roll out without a new release).
func withNetworks(app *paas.App, rel *paas.Release) {
	if nets := app.Network.All(); len(nets) > 0 {
		rel.Networks = nets
	}
}

// task returns app's current release and its task id.
func (s *Service) task(app, id string) (*paas.Release, paas.CronTask, error) {
	a, err := s.store.App(app)
	if err != nil {
		return nil, paas.CronTask{}, err
	}
	if a.Current == 0 {
		return nil, paas.CronTask{}, fmt.Errorf("%w: %s has not been deployed", ErrNoTask, app)
	}
	rel, err := s.store.Release(app, 0)
	if err != nil {
		return nil, paas.CronTask{}, err
	}
	withNetworks(a, rel)
	for _, t := range rel.Cron {
		if t.ID == id {
			return rel, t, nil
		}
	}
	return nil, paas.CronTask{}, fmt.Errorf("%w %q in %s v%d (see cron:list %s)", ErrNoTask, id, app, rel.Version, app)
}

// List returns the tasks of app's current release.
func (s *Service) List(app string) ([]Status, error) {
	a, err := s.store.App(app)
	if err != nil {
		return nil, err
	}
	out := []Status{}
	if a.Current == 0 {
		return out, nil
	}
	rel, err := s.store.Release(app, 0)
	if err != nil {
		return nil, err
	}
	st, err := s.load(app)
	if err != nil {
		return nil, err
	}
	now := s.now()
	for _, t := range rel.Cron {
		ts := Status{ID: t.ID, App: app, Command: t.Command, Schedule: t.Schedule, Maintenance: t.Maintenance || st.Suspended[t.ID]}
		s.mu.Lock()
		_, ts.Running = s.running[key{app, t.ID}]
		s.mu.Unlock()
		if sched, err := ParseSchedule(t.Schedule, s.seconds); err == nil && !ts.Maintenance && !a.Stopped {
			next := sched.Next(now).UTC()
			ts.Next = &next
		}
		if runs := st.Runs[t.ID]; len(runs) > 0 {
			last := runs[len(runs)-1]
			ts.LastRun, ts.LastResult = &last.Started, last.Result()
		}
		out = append(out, ts)
	}
	return out, nil
}

// Runs returns the kept runs of app's task id, oldest first.
func (s *Service) Runs(app, id string) ([]Run, error) {
	if _, _, err := s.task(app, id); err != nil {
		st, lerr := s.load(app)
		if lerr != nil || len(st.Runs[id]) == 0 {
			return nil, err
		}
	}
	st, err := s.load(app)
	if err != nil {
		return nil, err
	}
	return st.Runs[id], nil
}

// SetMaintenance suspends (on) or resumes task id of app: a suspended task
// is not run on schedule; cron:run still runs it.
func (s *Service) SetMaintenance(app, id string, on bool) error {
	if _, _, err := s.task(app, id); err != nil {
		return err
	}
	return s.update(app, func(st *appState) {
		if st.Suspended == nil {
			st.Suspended = map[string]bool{}
		}
		if on {
			st.Suspended[id] = true
		} else {
			delete(st.Suspended, id)
		}
	})
}

func (s *Service) path(app string) (string, error) {
	if err := paas.ValidateAppName(app); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, app+".json"), nil
}

func (s *Service) load(app string) (*appState, error) {
	p, err := s.path(app)
	if err != nil {
		return nil, err
	}
	a, err := s.store.App(app)
	if err != nil {
		return nil, err
	}
	fresh := &appState{AppCreated: a.CreatedAt}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return fresh, nil
	}
	if err != nil {
		return nil, err
	}
	st := &appState{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if !st.AppCreated.Equal(a.CreatedAt) {
		return fresh, nil // left by a destroyed app of the same name
	}
	return st, nil
}

var fileMu sync.Mutex

func (s *Service) update(app string, fn func(*appState)) error {
	fileMu.Lock()
	defer fileMu.Unlock()
	st, err := s.load(app)
	if err != nil {
		return err
	}
	fn(st)
	p, _ := s.path(app)
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// record keeps r as the newest of its task's runs, and only the last keepRuns.
func (s *Service) record(app string, r Run) error {
	return s.update(app, func(st *appState) {
		if st.Runs == nil {
			st.Runs = map[string][]Run{}
		}
		runs := append(st.Runs[r.Task], r)
		if len(runs) > keepRuns {
			runs = slices.Clone(runs[len(runs)-keepRuns:])
		}
		st.Runs[r.Task] = runs
	})
}

// capped writes the first n bytes to w, and says once that the rest was cut.
type capped struct {
	w   io.Writer
	n   int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	if c.n <= 0 {
		if !c.cut {
			c.cut = true
			io.WriteString(c.w, "\n(output cut: only the first 64 KiB are kept)\n")
		}
		return len(p), nil
	}
	k := min(len(p), c.n)
	c.n -= k
	if _, err := c.w.Write(p[:k]); err != nil {
		return 0, err
	}
	return len(p), nil
}
