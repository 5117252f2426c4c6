package router

// Following Swarm's event stream instead of polling it.
//
// Docker's event stream (GET /events) tells a manager about services, nodes
// and configs (scope swarm) but has no events for tasks: a task that is
// created, starts, becomes healthy (a task with a health check is running
// only once healthy), turns unhealthy or fails changes no service. So a
// DockerSource that watches does this:
//   - A service event (create, update, remove) re-reads that one service and
//     its tasks. Deploys, scales and the routed label all update a service.
//   - A service whose tasks are on their way (desired running but not
//     running yet, not as many running as its replicas, an update in
//     progress) is re-read every 100 to 300 ms until it has converged, for at
//     most convergeFor after its last service event. This targeted poll is
//     what sees a task become running, on any node.
//   - Container events of this node (start, die, health_status, destroy of
//     the installation's web containers) re-read the container's service and
//     follow it as above, so a task that fails or turns unhealthy here leaves
//     the table at once and its replacement comes in. Other nodes' containers
//     send no events to this manager: for a task that fails there, the
//     requests that cannot reach it are the first to know. Every second the
//     router tells the source which backends refused connections (Suspect),
//     and their services are re-read and followed as above.
//   - A node event (down, drained, removed, back) re-reads everything every
//     second for nodeFollow: Swarm moves tasks without touching services.
//   - Config events re-read the route configs (ConfigSource).
//   - Everything is re-read every Options.ResyncInterval (longer when a
//     full read is slow: resyncAfter) and whenever the stream (re)connects:
//     the safety net for what the events missed.
// With nothing happening a router makes no request but the resync, whatever
// the number of apps; Routes answers from what was read.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/internal/paas"
)

const (
	// convergeMin and convergeMax bound the period of the targeted poll of a
	// service whose tasks are on their way: it starts at convergeMin after an
	// event and slows down by half each time up to convergeMax.
	convergeMin = 100 * time.Millisecond
	convergeMax = 300 * time.Millisecond
	// convergeFor is how long after its last service event a service is
	// followed at most (a task that cannot be placed never converges).
	convergeFor = 2 * time.Minute
	// nodeFollow is how long everything is re-read every nodeFollowEvery
	// after a node event.
	nodeFollow      = 30 * time.Second
	nodeFollowEvery = time.Second
	// maxTargeted: with more services to re-read than this, one full read
	// is cheaper.
	maxTargeted = 16
	// resyncShare and maxResyncFactor stretch the resync interval where a
	// full read is slow (resyncAfter).
	resyncShare     = 2000
	maxResyncFactor = 10
	// suspectEvery is how often the router tells a WatchedSource about the
	// backends that refused connections.
	suspectEvery = time.Second
	// minInvalidate: Invalidate asks for a full read at most this often.
	minInvalidate = time.Second
	// reconnectMax bounds the wait between attempts to reopen the stream.
	reconnectMax = 5 * time.Second

	labelSwarmService = "com.docker.swarm.service.id" // on a task's container
)

// errNoEvents: the source cannot watch; the router polls it instead.
var errNoEvents = errors.New("watch routes: no event stream")

// EventsAPI is the part of the Docker client a DockerSource watches with.
type EventsAPI interface {
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

var _ EventsAPI = (*client.Client)(nil)

// A WatchedSource learns changes itself: while Watch runs, Routes answers
// from what it read and re-reads only what changed.
type WatchedSource interface {
	Source
	// Watch runs until ctx is done, calling changed (which must not block)
	// whenever Routes may answer something new. It returns an error at once
	// when the source cannot watch.
	Watch(ctx context.Context, changed func()) error
	// Invalidate makes the next Routes read everything again.
	Invalidate()
}

var (
	_ WatchedSource = (*DockerSource)(nil)
	_ WatchedSource = (*ConfigSource)(nil)
	_ suspecter     = (*DockerSource)(nil)
	_ suspecter     = (*ConfigSource)(nil)
)

// watchState is what events tell a watching DockerSource to re-read;
// guarded by DockerSource.mu.
type watchState struct {
	on           bool
	all          bool            // everything
	dirty        map[string]bool // these services, by ID
	pending      map[string]*converging
	followUntil  time.Time // after a node event
	followNext   time.Time
	retryAt      time.Time             // a read failed: try again then
	lastFull     time.Time             // when everything was last read
	lastFullTook time.Duration         // how long that read took
	byAddr       map[netip.Addr]string // service ID by task address, as last read
	onConfig     func()                // the route configs changed (ConfigSource)
}

// converging is the targeted poll of one service.
type converging struct {
	until time.Time
	next  time.Time
	step  time.Duration
}

// routeCache is what a watching DockerSource read last; guarded by
// DockerSource.readMu.
type routeCache struct {
	valid    bool
	services map[string]swarm.Service // by ID
	tasks    map[string][]swarm.Task  // by service ID
}

// Watch follows the Docker event stream until ctx is done; see the top of
// this file.
func (s *DockerSource) Watch(ctx context.Context, changed func()) error {
	return s.watch(ctx, changed, nil)
}

// Invalidate makes the next Routes read every service and task again, at
// most once per minInvalidate: the control plane asks (POST /refresh) after
// each change it makes and in loops while it waits for the router, and the
// change's own event follows within milliseconds anyway.
func (s *DockerSource) Invalidate() {
	s.mu.Lock()
	if time.Since(s.w.lastFull) >= minInvalidate {
		s.w.all = true
	}
	s.mu.Unlock()
}

func (s *DockerSource) watch(ctx context.Context, changed, onConfig func()) error {
	ev, ok := s.api.(EventsAPI)
	if !ok {
		return errNoEvents
	}
	s.mu.Lock()
	if s.w.on {
		s.mu.Unlock()
		return errors.New("watch routes: already watching")
	}
	s.w = watchState{on: true, all: true, dirty: map[string]bool{}, pending: map[string]*converging{}, onConfig: onConfig}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		// A read under way may still mark things: into maps nobody reads.
		s.w = watchState{dirty: map[string]bool{}, pending: map[string]*converging{}}
		s.mu.Unlock()
	}()

	resync := time.NewTimer(s.resyncAfter())
	defer resync.Stop()
	wait := convergeMax
	for {
		opened := time.Now()
		err := s.follow(ctx, ev, changed, resync)
		if ctx.Err() != nil {
			return nil
		}
		// A stream that worked for a while is reopened soon and its
		// failure logged; one that keeps failing is retried more slowly and
		// logged once.
		if time.Since(opened) > time.Minute {
			wait = convergeMax
		}
		if wait == convergeMax {
			s.log.Warn("docker event stream broke; reopening it, routes are re-read meanwhile", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, reconnectMax)
	}
}

// follow opens the event streams and handles their events until one of
// them fails or ctx is done. Everything is re-read once they are open (and
// events from a second before are asked for, so that nothing between the
// two falls through), after every resync tick, and whenever it fails.
func (s *DockerSource) follow(ctx context.Context, ev EventsAPI, changed func(), resync *time.Timer) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() { s.markAll(); changed() }()
	t := time.Now().Add(-time.Second)
	since := fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
	// Two streams: label filters apply to every event, and service, node
	// and config events carry no labels.
	swarmEvents, swarmErrs := ev.Events(sctx, events.ListOptions{Since: since, Filters: filters.NewArgs(
		filters.Arg("type", string(events.ServiceEventType)),
		filters.Arg("type", string(events.NodeEventType)),
		filters.Arg("type", string(events.ConfigEventType)),
	)})
	containerEvents, containerErrs := ev.Events(sctx, events.ListOptions{Since: since, Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", paas.LabelInstallation+"="+s.opts.Installation),
		filters.Arg("label", paas.LabelProcess+"="+paas.WebProcess),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionHealthStatus)), // matches health_status: *
		filters.Arg("event", string(events.ActionDestroy)),
	)})
	s.markAll()
	changed()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var tick <-chan time.Time
		if next := s.nextCheck(); !next.IsZero() {
			timer.Reset(time.Until(next))
			tick = timer.C
		}
		var m events.Message
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-swarmErrs:
			return fmt.Errorf("swarm events: %w", err)
		case err := <-containerErrs:
			return fmt.Errorf("container events: %w", err)
		case m = <-swarmEvents:
		case m = <-containerEvents:
		case <-resync.C:
			s.markAll()
			changed()
			resync.Reset(s.resyncAfter())
			continue
		case now := <-tick:
			if s.due(now) {
				changed()
			}
			continue
		}
		if s.handle(m, time.Now()) {
			changed()
		}
	}
}

// resyncAfter is when to read everything again: Options.ResyncInterval, or
// longer where a full read is slow (many apps), so that full reads take at
// most 1/resyncShare of the time, up to maxResyncFactor times the interval.
// This keeps the idle cost flat as apps are added; the events and the
// targeted polls carry the changes.
func (s *DockerSource) resyncAfter() time.Duration {
	s.mu.Lock()
	d := s.w.lastFullTook
	s.mu.Unlock()
	return min(max(s.opts.ResyncInterval, resyncShare*d), maxResyncFactor*s.opts.ResyncInterval)
}

// handle marks what event m asks to re-read and reports whether it did.
func (s *DockerSource) handle(m events.Message, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m.Type {
	case events.ServiceEventType:
		if m.Actor.ID == "" {
			return false
		}
		s.follow1(m.Actor.ID, now, true)
	case events.ContainerEventType:
		id := m.Actor.Attributes[labelSwarmService]
		if id == "" {
			return false
		}
		// A crash loop sends an event per restart: it speeds the poll up
		// again but does not make it last longer.
		s.follow1(id, now, false)
	case events.NodeEventType:
		s.w.all = true
		s.w.followUntil = now.Add(nodeFollow)
		s.w.followNext = now.Add(nodeFollowEvery)
	case events.ConfigEventType:
		if s.w.onConfig == nil {
			return false
		}
		s.w.onConfig()
	default:
		return false
	}
	return true
}

func (s *DockerSource) markAll() {
	s.mu.Lock()
	s.w.all = true
	if s.w.onConfig != nil {
		s.w.onConfig()
	}
	s.mu.Unlock()
}

// nextCheck is when the next targeted re-read is due; zero when none is.
func (s *DockerSource) nextCheck() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	if !s.w.followUntil.IsZero() {
		next = s.w.followNext
	}
	if !s.w.retryAt.IsZero() && (next.IsZero() || s.w.retryAt.Before(next)) {
		next = s.w.retryAt
	}
	for _, c := range s.w.pending {
		if next.IsZero() || c.next.Before(next) {
			next = c.next
		}
	}
	return next
}

// due marks the services whose targeted re-read is due and reports whether
// there were any.
func (s *DockerSource) due(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	marked := false
	if !s.w.retryAt.IsZero() && !now.Before(s.w.retryAt) {
		s.w.retryAt, marked = time.Time{}, true
	}
	if !s.w.followUntil.IsZero() && !now.Before(s.w.followNext) {
		s.w.all, marked = true, true
		s.w.followNext = now.Add(nodeFollowEvery)
		if now.After(s.w.followUntil) {
			s.w.followUntil, s.w.followNext = time.Time{}, time.Time{}
		}
	}
	if len(s.w.pending) > maxTargeted {
		// Many services on their way at once (a mass deploy, a swarm
		// catching up): one full read a second at most, as polling did.
		for id, c := range s.w.pending {
			if now.After(c.until) {
				delete(s.w.pending, id)
				continue
			}
			c.next = now.Add(time.Second)
		}
		if now.Sub(s.w.lastFull) >= time.Second {
			s.w.all, marked = true, true
		}
		return marked
	}
	for id, c := range s.w.pending {
		if now.Before(c.next) {
			continue
		}
		if now.After(c.until) {
			delete(s.w.pending, id)
			continue
		}
		s.w.dirty[id], marked = true, true
		c.step = min(c.step*3/2, convergeMax)
		c.next = now.Add(c.step)
	}
	return marked
}

// cachedRoutes re-reads what the events marked and builds the table from
// what was read. s.readMu is held.
func (s *DockerSource) cachedRoutes(ctx context.Context) (Table, error) {
	s.mu.Lock()
	all, dirty := s.w.all || !s.cache.valid || len(s.w.dirty) > maxTargeted, s.w.dirty
	s.w.all, s.w.dirty = false, map[string]bool{}
	s.mu.Unlock()
	if all {
		start := time.Now()
		services, tasks, err := s.list(ctx, "")
		if err != nil {
			s.mu.Lock()
			s.w.all = true
			s.retryLater()
			s.mu.Unlock()
			return Table{}, err
		}
		c := routeCache{valid: true, services: make(map[string]swarm.Service, len(services)), tasks: map[string][]swarm.Task{}}
		for _, svc := range services {
			c.services[svc.ID] = svc
		}
		for _, t := range tasks {
			c.tasks[t.ServiceID] = append(c.tasks[t.ServiceID], t)
		}
		s.cache = c
		s.mu.Lock()
		s.w.lastFull = time.Now()
		s.w.lastFullTook = s.w.lastFull.Sub(start)
		for id := range s.w.pending {
			if svc, ok := c.services[id]; !ok || !isConverging(svc, c.tasks[id]) {
				delete(s.w.pending, id)
			}
		}
		s.mu.Unlock()
	} else {
		for id := range dirty {
			services, tasks, err := s.list(ctx, id)
			if err != nil {
				s.mu.Lock()
				maps.Copy(s.w.dirty, dirty)
				s.retryLater()
				s.mu.Unlock()
				return Table{}, err
			}
			delete(dirty, id)
			i := slices.IndexFunc(services, func(svc swarm.Service) bool { return svc.ID == id })
			s.mu.Lock()
			if i < 0 {
				delete(s.cache.services, id)
				delete(s.cache.tasks, id)
				delete(s.w.pending, id)
			} else {
				s.cache.services[id] = services[i]
				s.cache.tasks[id] = tasks
				if !isConverging(services[i], tasks) {
					delete(s.w.pending, id)
				}
			}
			s.mu.Unlock()
		}
	}
	services := make([]swarm.Service, 0, len(s.cache.services))
	var tasks []swarm.Task
	byAddr := map[netip.Addr]string{}
	for id, svc := range s.cache.services {
		services = append(services, svc)
		tasks = append(tasks, s.cache.tasks[id]...)
		for _, t := range s.cache.tasks[id] {
			if ip, ok := s.taskAddr(t); ok {
				byAddr[ip] = id
			}
		}
	}
	s.mu.Lock()
	s.w.byAddr = byAddr
	s.mu.Unlock()
	return s.table(services, tasks), nil
}

// Suspect tells the source that connections to these backends (host:port)
// failed: their services are re-read and followed as after an event. A
// task that fails on another node sends this manager no event; the
// requests that cannot reach it are the first to know. It reports whether
// any backend was one of the source's.
func (s *DockerSource) Suspect(addrs []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.w.on {
		return false
	}
	now := time.Now()
	marked := false
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			continue
		}
		if id, ok := s.w.byAddr[ap.Addr()]; ok {
			s.follow1(id, now, false)
			marked = true
		}
	}
	return marked
}

// follow1 marks service id to be re-read and followed until it converges;
// extend restarts the time it is followed for. s.mu is held.
func (s *DockerSource) follow1(id string, now time.Time, extend bool) {
	s.w.dirty[id] = true
	if c := s.w.pending[id]; c != nil {
		c.next, c.step = now.Add(convergeMin), convergeMin
		if extend {
			c.until = now.Add(convergeFor)
		}
		return
	}
	s.w.pending[id] = &converging{until: now.Add(convergeFor), next: now.Add(convergeMin), step: convergeMin}
}

// retryLater makes the watch loop ask for another read after a failed
// one, if no event does before. s.mu is held.
func (s *DockerSource) retryLater() {
	if s.w.on && s.w.retryAt.IsZero() {
		s.w.retryAt = time.Now().Add(time.Second)
	}
}

// isConverging reports whether a service's tasks are on their way: one is
// meant to run but does not yet, as many as its replicas do not run, or an
// update or rollback is in progress.
func isConverging(svc swarm.Service, tasks []swarm.Task) bool {
	if u := svc.UpdateStatus; u != nil && (u.State == swarm.UpdateStateUpdating || u.State == swarm.UpdateStateRollbackStarted) {
		return true
	}
	n := 0
	for _, t := range tasks {
		if t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		if t.Status.State != swarm.TaskStateRunning {
			return true
		}
		n++
	}
	if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil && uint64(n) != *r.Replicas {
		return true
	}
	return false
}

// list reads the installation's web services and their tasks meant to run;
// with serviceID, only that service's (none when it is gone).
func (s *DockerSource) list(ctx context.Context, serviceID string) ([]swarm.Service, []swarm.Task, error) {
	f := filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.opts.Installation),
		filters.Arg("label", paas.LabelProcess+"="+paas.WebProcess),
	)
	sf := f
	if serviceID != "" {
		sf = f.Clone()
		sf.Add("id", serviceID) // a prefix match: the caller picks the one
	}
	services, err := s.api.ServiceList(ctx, swarm.ServiceListOptions{Filters: sf})
	if err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	if serviceID != "" && !slices.ContainsFunc(services, func(svc swarm.Service) bool { return svc.ID == serviceID }) {
		return nil, nil, nil // gone, or not a web service of the installation
	}
	// Task label filters match the labels of the task's service.
	tf := f.Clone()
	tf.Add("desired-state", string(swarm.TaskStateRunning))
	if serviceID != "" {
		tf.Add("service", serviceID)
	}
	tasks, err := s.api.TaskList(ctx, swarm.TaskListOptions{Filters: tf})
	if err != nil {
		if serviceID != "" && cerrdefs.IsNotFound(err) {
			return nil, nil, nil // removed since it was listed
		}
		return nil, nil, fmt.Errorf("list tasks: %w", err)
	}
	return services, tasks, nil
}

// follow keeps the router's table current from a watched source: it reads
// the routes whenever the source says they changed. It returns false, at
// once, when the source cannot watch (the caller polls it then).
func (r *Router) follow(ctx context.Context, ws WatchedSource) bool {
	kick := make(chan struct{}, 1)
	changed := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	done := make(chan error, 1)
	go func() { done <- ws.Watch(ctx, changed) }()
	sus, _ := ws.(suspecter)
	check := time.NewTicker(suspectEvery)
	defer check.Stop()
	reported := map[string]int64{}
	for {
		select {
		case <-check.C:
			if sus != nil {
				if addrs := r.newlyDown(reported); len(addrs) > 0 && sus.Suspect(addrs) {
					changed()
				}
			}
		case err := <-done:
			if ctx.Err() != nil {
				return true
			}
			if !errors.Is(err, errNoEvents) {
				r.log.Warn("cannot follow route changes; polling instead", "err", err)
			}
			return false
		case <-kick:
			_ = r.Refresh(ctx) // logged by Refresh
		}
	}
}

// suspecter is a source that re-reads what owns backends that fail.
type suspecter interface {
	Suspect(addrs []string) bool
}

// newlyDown lists the backends ejected since the last call (router/engine):
// those whose connection failed, and, every ejectFor or so while they stay
// out, those whose probe failed again. reported holds what was reported,
// and is pruned.
func (r *Router) newlyDown(reported map[string]int64) []string {
	now := time.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	var addrs []string
	for addr, be := range r.pool {
		until := be.DownUntil()
		if until > now && reported[addr] != until {
			reported[addr] = until
			addrs = append(addrs, addr)
		}
	}
	for addr, until := range reported {
		if until <= now {
			delete(reported, addr)
		}
	}
	return addrs
}
