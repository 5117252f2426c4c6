package router

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/swarm"
)

// eventsDocker is a Swarm of fixtures that honours the id and service
// filters, records every call and hands the test each event stream opened.
type eventsDocker struct {
	mu       sync.Mutex
	services []swarm.Service
	tasks    []swarm.Task
	calls    []string
	streams  chan stream
}

type stream struct {
	opts events.ListOptions
	msgs chan events.Message
	errs chan error
}

func (f *eventsDocker) ServiceList(_ context.Context, o swarm.ServiceListOptions) ([]swarm.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := o.Filters.Get("id")
	f.calls = append(f.calls, strings.TrimSpace("services "+strings.Join(ids, ",")))
	var out []swarm.Service
	for _, s := range f.services {
		if len(ids) == 0 || slices.Contains(ids, s.ID) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *eventsDocker) TaskList(_ context.Context, o swarm.TaskListOptions) ([]swarm.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := o.Filters.Get("service")
	f.calls = append(f.calls, strings.TrimSpace("tasks "+strings.Join(ids, ",")))
	var out []swarm.Task
	for _, t := range f.tasks {
		if len(ids) == 0 || slices.Contains(ids, t.ServiceID) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (f *eventsDocker) Events(_ context.Context, o events.ListOptions) (<-chan events.Message, <-chan error) {
	s := stream{opts: o, msgs: make(chan events.Message, 8), errs: make(chan error, 1)}
	f.streams <- s
	return s.msgs, s.errs
}

// takeCalls returns the calls made since the last take.
func (f *eventsDocker) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *eventsDocker) set(services []swarm.Service, tasks []swarm.Task) {
	f.mu.Lock()
	f.services, f.tasks = services, tasks
	f.mu.Unlock()
}

func replicated(s swarm.Service, n uint64) swarm.Service {
	s.Spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
	return s
}

// TestWatchReadsWhatChanged: while it watches, a DockerSource reads
// everything once, then only the service an event names, follows it until
// its task runs, and makes no call at all while nothing happens.
func TestWatchReadsWhatChanged(t *testing.T) {
	a := replicated(service("a", webLabels("a")), 1)
	b := replicated(service("b", webLabels("b")), 1)
	taskA := task("a", running, running, attach("net", "10.0.1.5/24"))
	taskB := task("b", running, running, attach("net", "10.0.1.6/24"))
	api := &eventsDocker{streams: make(chan stream, 4)}
	api.set([]swarm.Service{a}, []swarm.Task{taskA})
	src := NewDockerSource(api, Options{Installation: "inst", Domain: "example.com", Network: "net", ResyncInterval: time.Hour, Log: discardLog()})

	ctx, cancel := context.WithCancel(t.Context())
	changes := make(chan struct{}, 64)
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func() { changes <- struct{}{} }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	var swarmStream stream
	for range 2 {
		s := <-api.streams
		if slices.Contains(s.opts.Filters.Get("type"), "service") {
			swarmStream = s
		}
	}
	if swarmStream.msgs == nil {
		t.Fatal("no stream of service events was opened")
	}
	waitChange := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no change reported", what)
		}
	}
	drain := func() {
		for len(changes) > 0 {
			<-changes
		}
	}
	backends := func(tb Table, app string) []Backend {
		for _, r := range tb.Routes {
			if r.App == app {
				return r.Backends
			}
		}
		return nil
	}
	read := func() Table {
		t.Helper()
		tb, err := src.Routes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}

	waitChange("the stream opened")
	tb := read()
	if got := api.takeCalls(); !slices.Equal(got, []string{"services", "tasks"}) {
		t.Fatalf("first read: calls %q, want one full read", got)
	}
	if len(backends(tb, "a")) != 1 {
		t.Fatalf("table %+v, want a with its task", tb.Routes)
	}

	// Idle: no change reported, and a read makes no call.
	drain()
	time.Sleep(4 * convergeMax)
	if len(changes) != 0 {
		t.Errorf("%d changes reported with nothing happening", len(changes))
	}
	read()
	if got := api.takeCalls(); len(got) != 0 {
		t.Errorf("idle read made calls %q", got)
	}

	// A new service: only it is read, and followed until its task runs.
	api.set([]swarm.Service{a, b}, []swarm.Task{taskA})
	swarmStream.msgs <- events.Message{Type: events.ServiceEventType, Action: "create", Actor: events.Actor{ID: "b"}}
	waitChange("service b created")
	tb = read()
	if got := api.takeCalls(); !slices.Equal(got, []string{"services b", "tasks b"}) {
		t.Errorf("after the event of b: calls %q, want b's service and tasks only", got)
	}
	if len(tb.Routes) != 2 || len(backends(tb, "b")) != 0 {
		t.Errorf("table %+v, want b without backends", tb.Routes)
	}
	drain()
	waitChange("b followed while its task is on its way")
	api.set([]swarm.Service{a, b}, []swarm.Task{taskA, taskB})
	deadline := time.Now().Add(5 * time.Second)
	for len(backends(tb, "b")) == 0 && time.Now().Before(deadline) {
		waitChange("b followed")
		tb = read()
	}
	if len(backends(tb, "b")) != 1 {
		t.Fatalf("table %+v, want b with its task", tb.Routes)
	}
	// b converged: the targeted poll stops.
	time.Sleep(2 * convergeMax)
	drain()
	api.takeCalls()
	time.Sleep(4 * convergeMax)
	if len(changes) != 0 {
		t.Errorf("%d changes reported after b converged", len(changes))
	}

	// A backend that refuses connections: its service is re-read.
	if src.Suspect([]string{"10.9.9.9:5000", "not an address"}) {
		t.Error("Suspect of addresses of no task reported a change")
	}
	if !src.Suspect([]string{"10.0.1.5:5000"}) {
		t.Error("Suspect of a's task reported nothing")
	}
	read()
	if got := api.takeCalls(); !slices.Equal(got, []string{"services a", "tasks a"}) {
		t.Errorf("after a's task was suspected: calls %q, want a's service and tasks only", got)
	}

	// Removed: gone from the table at once.
	api.set([]swarm.Service{a}, []swarm.Task{taskA})
	swarmStream.msgs <- events.Message{Type: events.ServiceEventType, Action: "remove", Actor: events.Actor{ID: "b"}}
	waitChange("service b removed")
	if tb = read(); len(tb.Routes) != 1 {
		t.Errorf("table %+v after b was removed, want a only", tb.Routes)
	}

	// The stream breaks: it is opened again and everything is read.
	swarmStream.errs <- context.DeadlineExceeded
	for range 2 {
		select {
		case <-api.streams:
		case <-time.After(5 * time.Second):
			t.Fatal("the broken stream was not opened again")
		}
	}
	api.takeCalls()
	read()
	if got := api.takeCalls(); !slices.Equal(got, []string{"services", "tasks"}) {
		t.Errorf("after the stream broke: calls %q, want a full read", got)
	}
}

func TestIsConverging(t *testing.T) {
	svc := replicated(service("a", webLabels("a")), 2)
	up := task("a", running, running)
	starting := task("a", running, swarm.TaskStateStarting)
	old := task("a", swarm.TaskStateShutdown, running)
	updating := svc
	updating.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateUpdating}
	tests := []struct {
		name  string
		svc   swarm.Service
		tasks []swarm.Task
		want  bool
	}{
		{"all running", svc, []swarm.Task{up, up}, false},
		{"one starting", svc, []swarm.Task{up, starting}, true},
		{"one missing", svc, []swarm.Task{up}, true},
		{"one too many (scaling down)", svc, []swarm.Task{up, up, up}, true},
		{"shutting down ones do not count", svc, []swarm.Task{up, up, old}, false},
		{"update in progress", updating, []swarm.Task{up, up}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isConverging(tc.svc, tc.tasks); got != tc.want {
				t.Errorf("isConverging = %v, want %v", got, tc.want)
			}
		})
	}
}

// watchedTable is a WatchedSource of a fixed table that records what the
// router tells it.
type watchedTable struct {
	t         Table
	suspected chan []string
}

func (w *watchedTable) Routes(context.Context) (Table, error) { return w.t, nil }
func (w *watchedTable) Invalidate()                           {}
func (w *watchedTable) Watch(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}
func (w *watchedTable) Suspect(addrs []string) bool {
	w.suspected <- addrs
	return false
}

// TestRouterSuspectsRefusingBackends: a backend that refuses connections is
// reported to the source, which knows no event for it (a task gone on
// another node).
func TestRouterSuspectsRefusingBackends(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := gone.Addr().String()
	gone.Close() // nothing listens there now
	src := &watchedTable{t: Table{Routes: []Route{{App: "a", Hosts: []string{"a.test"}, Backends: []Backend{{Addr: addr}}}}}, suspected: make(chan []string, 4)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRouter(src, Options{Log: discardLog(), PollInterval: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
	req.Host = "a.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502 from a backend that refuses", resp.StatusCode)
	}
	select {
	case got := <-src.suspected:
		if !slices.Equal(got, []string{addr}) {
			t.Errorf("suspected %q, want %q", got, addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the refusing backend was not reported within 5 s")
	}
}

func TestResyncAfter(t *testing.T) {
	src := NewDockerSource(&eventsDocker{}, Options{Installation: "inst", ResyncInterval: 30 * time.Second, Log: discardLog()})
	for _, tc := range []struct{ took, want time.Duration }{
		{0, 30 * time.Second},
		{time.Millisecond, 30 * time.Second},
		{50 * time.Millisecond, 100 * time.Second},
		{time.Second, 300 * time.Second},
	} {
		src.w.lastFullTook = tc.took
		if got := src.resyncAfter(); got != tc.want {
			t.Errorf("a full read of %v: resync after %v, want %v", tc.took, got, tc.want)
		}
	}
}

// TestManyFollowedAtOnce: with more services on their way than targeted
// reads are worth, they cost one full read a second at most.
func TestManyFollowedAtOnce(t *testing.T) {
	src := NewDockerSource(&eventsDocker{}, Options{Installation: "inst", Log: discardLog()})
	src.w = watchState{on: true, dirty: map[string]bool{}, pending: map[string]*converging{}}
	now := time.Now()
	for i := range maxTargeted + 1 {
		src.handle(events.Message{Type: events.ServiceEventType, Actor: events.Actor{ID: string(rune('a' + i))}}, now)
	}
	src.w.all, src.w.dirty, src.w.lastFull = false, map[string]bool{}, now // as after the read of the events
	fulls := 0
	for tick := now; tick.Before(now.Add(3 * time.Second)); tick = tick.Add(convergeMin) {
		if src.due(tick) && src.w.all {
			fulls++
			src.w.all, src.w.lastFull = false, tick
		}
		if len(src.w.dirty) > 0 {
			t.Fatalf("at %v: %d services marked for targeted reads, want none", tick.Sub(now), len(src.w.dirty))
		}
	}
	if fulls < 2 || fulls > 3 {
		t.Errorf("%d full reads in 3 s, want one a second", fulls)
	}
}
