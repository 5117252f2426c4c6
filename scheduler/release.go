package scheduler

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// Traffic is the router as a rollout needs it. The scheduler runs on the
// host and cannot reach the app network; the router can, so health checks
// go through it, and it tells which tasks it sends requests to.
type Traffic interface {
	// Probe sends one GET to addr (a task on the app network) and returns
	// the status and the start of the body, or why nothing came back.
	Probe(ctx context.Context, addr, path, host string, timeout time.Duration) (status int, body string, err error)
	// Backends returns the backends the router routes or still has
	// requests in flight to; with refresh it re-reads its routes first.
	Backends(ctx context.Context, refresh bool) ([]Backend, error)
}

// Backend is one task address as the router sees it.
type Backend struct {
	Addr     string
	Routed   bool  // every router may send it new requests
	Routing  bool  // some router may still send it new requests
	Inflight int64 // requests sent to it and not answered in full yet
}

// DeployOptions tune one rollout.
type DeployOptions struct {
	// Checks gate the web tasks before they get traffic; nil means the
	// default check, an empty non-nil slice no check at all.
	Checks []paas.HealthCheck
	// Host is the Host header the checks send (the app's own host name).
	Host string
	// DrainTimeout bounds how long the old tasks are given to finish the
	// requests they have before they are stopped (30s when zero).
	DrainTimeout time.Duration
	// Force makes a new deployment even when the running one already runs
	// this release at this formation (ps:restart).
	Force bool
	// Gates say how long the rollout waits for each process type's new
	// tasks; a process type not in it gets GateSettle.
	Gates map[string]Gate
	// Only, when set, restarts that one process type (ps:restart APP
	// PROCESS): it alone gets a new service, gated, checked and routed as in
	// any rollout, then its old service is drained and removed; the other
	// process types keep their tasks.
	Only string
	// Routed, when set, is called once the new release receives traffic
	// and before anything older is retired: the caller records the release
	// there, so a crash during the drain leaves the serving release on
	// record. An error takes the new release out of the router again and
	// fails the deploy.
	Routed func() error
}

// Gate is how a rollout waits for the new tasks of a process type
// (checks:enable, checks:skip, checks:disable).
type Gate string

// Gates.
const (
	// GateSettle: every task running, and still running after the settle
	// time (the web tasks also pass their health checks meanwhile).
	GateSettle Gate = ""
	// GateRunning: running is enough.
	GateRunning Gate = "running"
	// GateNone: the rollout does not wait for the tasks at all (a worker
	// that keeps failing does not fail the deploy).
	GateNone Gate = "none"
)

func (o DeployOptions) gate(process string) Gate { return o.Gates[process] }

func (o DeployOptions) routed() error {
	if o.Routed == nil {
		return nil
	}
	return o.Routed()
}

// deployment is the set of services one rollout created: every process type
// of one release at one formation.
type deployment struct {
	id       string
	release  int
	routed   bool
	created  time.Time
	services []swarm.Service
}

func (d *deployment) service(process string) *swarm.Service {
	for i := range d.services {
		if d.services[i].Spec.Labels[paas.LabelProcess] == process {
			return &d.services[i]
		}
	}
	return nil
}

// deployments returns the app's deployments, oldest first.
func (s *Swarm) deployments(ctx context.Context, app string) ([]*deployment, error) {
	svcs, err := s.appServices(ctx, app)
	if err != nil {
		return nil, err
	}
	byID := map[string]*deployment{}
	var out []*deployment
	for _, svc := range svcs {
		id := svc.Spec.Labels[paas.LabelDeployment]
		d := byID[id]
		if d == nil {
			d = &deployment{id: id, created: svc.CreatedAt}
			d.release, _ = strconv.Atoi(svc.Spec.Labels[paas.LabelRelease])
			byID[id] = d
			out = append(out, d)
		}
		d.routed = d.routed || svc.Spec.Labels[paas.LabelRouted] == "true"
		if svc.CreatedAt.Before(d.created) {
			d.created = svc.CreatedAt
		}
		d.services = append(d.services, svc)
	}
	slices.SortFunc(out, func(a, b *deployment) int { return a.created.Compare(b.created) })
	return out, nil
}

// serving returns the services that run the app now, as one deployment:
// for each process type, the routed service of the newest deployment that
// has one. After a full rollout that is the newest routed deployment; a
// process restart (DeployOptions.Only) leaves the app's process types
// spread over more than one deployment. nil when nothing is routed (a
// stopped app, or none deployed).
func serving(deps []*deployment) *deployment {
	var out *deployment
	seen := map[string]bool{}
	for _, d := range slices.Backward(deps) {
		for _, svc := range d.services {
			proc := svc.Spec.Labels[paas.LabelProcess]
			if seen[proc] || svc.Spec.Labels[paas.LabelRouted] != "true" {
				continue
			}
			seen[proc] = true
			if out == nil {
				out = &deployment{id: d.id, release: d.release, routed: true, created: d.created}
			}
			out.services = append(out.services, svc)
		}
	}
	return out
}

// serviceIDs returns the IDs of d's services; none for a nil d.
func serviceIDs(d *deployment) map[string]bool {
	ids := map[string]bool{}
	if d != nil {
		for _, svc := range d.services {
			ids[svc.ID] = true
		}
	}
	return ids
}

func newDeploymentID(version int) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("v%d-%s", version, hex.EncodeToString(b))
}

// Deploy runs rel with zero downtime. Every process type of rel gets a new
// service next to the running ones (a new deployment). Once its tasks run
// and the web tasks pass their health checks, the router is told to send
// them traffic; then the old deployment is taken out of the router, its
// requests in flight are let finish, and only then are its services
// removed. Nothing of the old deployment is touched before the new one is
// healthy: when anything fails, or ctx is cancelled, the new services are
// removed and the old ones keep serving. The error, a wrapped
// *RolloutError for a failed task or check, says why and carries the task's
// last log lines.
//
// When the running deployment already runs rel's task templates with as
// many web tasks, only the other process types are scaled, in place.
func (s *Swarm) Deploy(ctx context.Context, rel *paas.Release, opts DeployOptions, out io.Writer) error {
	defer s.changing()()
	if out == nil {
		out = io.Discard
	}
	if rel == nil || rel.App == "" || rel.Image.Repository == "" || rel.Image.Digest == "" {
		return errors.New("deploy: release has no app or image")
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	procs, err := processes(rel)
	if err != nil {
		return fmt.Errorf("deploy %s v%d: %w", rel.App, rel.Version, err)
	}
	if opts.Only != "" {
		procs = slices.DeleteFunc(procs, func(p paas.ProcessType) bool { return p.Name != opts.Only })
		if len(procs) == 0 {
			return fmt.Errorf("deploy %s v%d: process type %s is not in the release", rel.App, rel.Version, opts.Only)
		}
	}
	env, err := s.ensureEnvSecret(ctx, rel)
	if err != nil {
		return err
	}
	// Whatever happens, a config secret no service uses is not kept.
	defer func() {
		if err := s.pruneEnvSecrets(context.WithoutCancel(ctx), rel.App); err != nil {
			s.log.Warn("prune config secrets", "app", rel.App, "err", err)
		}
	}()
	dep := newDeploymentID(rel.Version)
	specs := make([]swarm.ServiceSpec, len(procs))
	for i, proc := range procs {
		if specs[i], err = s.appSpecEnv(rel, proc, dep, env); err != nil {
			return fmt.Errorf("deploy %s v%d: %w", rel.App, rel.Version, err)
		}
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return err
	}
	deps, err := s.deployments(ctx, rel.App)
	if err != nil {
		return err
	}
	log := s.log.With("app", rel.App, "release", rel.Version)
	p := &progress{out: out}
	if cur := serving(deps); opts.Only == "" && !opts.Force && cur != nil && sameTemplates(cur, specs) {
		if err := s.scaleInPlace(ctx, cur, specs, opts, p); err != nil {
			return err
		}
		return opts.routed()
	}

	if opts.Only != "" {
		p.step("Restarting %s of %s v%d", opts.Only, rel.App, rel.Version)
	} else {
		p.step("Releasing %s v%d", rel.App, rel.Version)
	}
	log.Info("deploying", "deployment", dep)
	var started []*rollout
	abandon := func(cause error) error {
		log.Info("rollout failed, removing the new tasks", "err", cause)
		p.step("Rolling back: the previous release keeps serving")
		if rmErr := s.removeRollouts(ctx, started); rmErr != nil {
			log.Error("remove new services", "err", rmErr)
		}
		return fmt.Errorf("deploy %s v%d: %w", rel.App, rel.Version, cause)
	}

	// 1. start the new deployment next to the old one
	for i, proc := range procs {
		r, err := s.apply(ctx, nil, specs[i], proc.Name)
		if err != nil {
			return abandon(err)
		}
		started = append(started, r)
	}
	// Every new task must run, except those of a process type whose
	// checks are disabled (GateNone); web's must, to be routed.
	var waited, settling []*rollout
	for _, r := range started {
		r.noSettle = true
		gate := opts.gate(r.process)
		if gate != GateNone || r.process == paas.WebProcess {
			waited = append(waited, r)
		}
		if gate == GateSettle {
			settling = append(settling, r)
		}
	}
	if err := s.waitAll(ctx, waited, p); err != nil {
		return abandon(err)
	}
	// 2. health-check the web tasks while every new task must stay up for
	// the settle time
	web := started[0] // processes sorts web first
	if web.process != paas.WebProcess || web.want == 0 {
		web = nil
	}
	var addrs []string
	if web != nil {
		if addrs, err = s.taskAddrs(ctx, web.id); err != nil {
			return abandon(err)
		}
	}
	if err := s.checkWhileSettling(ctx, rel, web, addrs, settling, opts, p); err != nil {
		return abandon(err)
	}
	// 3. route to it
	if err := s.setRouted(ctx, started, true); err != nil {
		return abandon(err)
	}
	if web != nil {
		if err := s.waitRouted(ctx, addrs); err != nil {
			// Take it out of the router again before removing it.
			_ = s.setRouted(context.WithoutCancel(ctx), started, false)
			_ = s.waitDrained(context.WithoutCancel(ctx), addrs, opts.DrainTimeout)
			return abandon(err)
		}
		p.header("%s v%d receives traffic", rel.App, rel.Version)
	}
	if err := opts.routed(); err != nil {
		_ = s.setRouted(context.WithoutCancel(ctx), started, false)
		_ = s.waitDrained(context.WithoutCancel(ctx), addrs, opts.DrainTimeout)
		return abandon(err)
	}
	// 4. retire everything older (only the restarted process type's
	// services for a process restart): out of the router, drained, stopped
	var match func(*swarm.Service) bool
	if opts.Only != "" {
		match = func(svc *swarm.Service) bool { return svc.Spec.Labels[paas.LabelProcess] == opts.Only }
	}
	for _, d := range deps {
		if err := s.retire(context.WithoutCancel(ctx), d, opts.DrainTimeout, p, match); err != nil {
			// The new release serves; a leftover is retired by the next
			// rollout or at the next start.
			log.Warn("retire deployment", "deployment", d.id, "err", err)
		}
	}
	log.Info("deployed", "deployment", dep)
	return nil
}

// checkWhileSettling runs the web checks and, at the same time, waits for
// the new tasks of started (those gated by GateSettle) to stay up for the
// settle time; the first failure of either stops both.
func (s *Swarm) checkWhileSettling(ctx context.Context, rel *paas.Release, web *rollout, addrs []string, started []*rollout, opts DeployOptions, p *progress) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	settled := make(chan error, 1)
	go func() {
		held := make([]*rollout, len(started))
		for i, r := range started {
			c := *r
			c.noSettle = false
			c.label = "" // already reported as running
			held[i] = &c
		}
		err := s.waitAll(ctx, held, &progress{out: io.Discard})
		if err != nil {
			cancel()
		}
		settled <- err
	}()
	var checkErr error
	if web != nil {
		checkErr = s.checkAll(ctx, rel, web, addrs, opts, p)
		if checkErr != nil {
			cancel()
		}
	}
	settleErr := <-settled
	switch {
	case settleErr != nil && !errors.Is(settleErr, context.Canceled):
		return settleErr // a task died: that says more than a failed check
	case checkErr != nil:
		return checkErr
	}
	return settleErr
}

// sameTemplates reports whether d runs exactly the process types of specs,
// with the same task templates and as many web tasks.
func sameTemplates(d *deployment, specs []swarm.ServiceSpec) bool {
	if len(d.services) != len(specs) {
		return false
	}
	for _, spec := range specs {
		svc := d.service(spec.Labels[paas.LabelProcess])
		if svc == nil || specHash(&svc.Spec) != specHash(&spec) {
			return false
		}
		if spec.Labels[paas.LabelProcess] == paas.WebProcess && replicasOf(&svc.Spec) != replicasOf(&spec) {
			return false
		}
	}
	return true
}

func replicasOf(spec *swarm.ServiceSpec) uint64 {
	if spec.Mode.Replicated == nil || spec.Mode.Replicated.Replicas == nil {
		return 0
	}
	return *spec.Mode.Replicated.Replicas
}

// scaleInPlace sets the replica counts of d's services that are not routed
// (workers take no requests, so scaling them drops none), and waits for
// their tasks as their gates say.
func (s *Swarm) scaleInPlace(ctx context.Context, d *deployment, specs []swarm.ServiceSpec, opts DeployOptions, p *progress) error {
	var rs []*rollout
	changed := 0
	for _, spec := range specs {
		svc := d.service(spec.Labels[paas.LabelProcess])
		want := replicasOf(&spec)
		if replicasOf(&svc.Spec) == want {
			continue
		}
		process := spec.Labels[paas.LabelProcess]
		p.step("Scaling %s to %d", process, want)
		upd := svc.Spec
		upd.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &want}}
		if _, err := s.cli.ServiceUpdate(ctx, svc.ID, svc.Version, upd, swarm.ServiceUpdateOptions{EncodedRegistryAuth: s.registryAuth()}); err != nil {
			return fmt.Errorf("scale %s: %w", process, err)
		}
		changed++
		if gate := opts.gate(process); gate != GateNone {
			rs = append(rs, &rollout{process: process, label: process, id: svc.ID, hash: specHash(&upd), want: int(want), noSettle: gate == GateRunning})
		}
	}
	if changed == 0 {
		p.step("Nothing to change")
		return nil
	}
	return s.waitAll(ctx, rs, p)
}

// removeRollouts removes the services rs created, even when ctx is cancelled.
func (s *Swarm) removeRollouts(ctx context.Context, rs []*rollout) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	var errs []error
	for _, r := range rs {
		if err := s.cli.ServiceRemove(ctx, r.id); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove service %s: %w", r.id, err))
		}
	}
	return errors.Join(errs...)
}

// setRouted sets the routed label of the services of rs.
func (s *Swarm) setRouted(ctx context.Context, rs []*rollout, routed bool) error {
	for _, r := range rs {
		if err := s.label(ctx, r.id, paas.LabelRouted, strconv.FormatBool(routed)); err != nil {
			return err
		}
	}
	return nil
}

// label sets one label of a service. Only the service's own labels change,
// not its task template, so Swarm leaves its tasks alone.
func (s *Swarm) label(ctx context.Context, serviceID, key, value string) error {
	for attempt := 0; ; attempt++ {
		svc, _, err := s.cli.ServiceInspectWithRaw(ctx, serviceID, swarm.ServiceInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect service %s: %w", serviceID, err)
		}
		if svc.Spec.Labels[key] == value {
			return nil
		}
		spec := svc.Spec
		spec.Labels = clone(spec.Labels)
		spec.Labels[key] = value
		_, err = s.cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
		if err == nil {
			return nil
		}
		// Swarm refuses an update made from an outdated version: read again.
		if attempt < 3 && strings.Contains(err.Error(), "update out of sequence") {
			continue
		}
		return fmt.Errorf("label service %s: %w", svc.Spec.Name, err)
	}
}

// taskAddrs returns the addresses (ip:port) of a service's running tasks on
// the app's network.
func (s *Swarm) taskAddrs(ctx context.Context, serviceID string) ([]string, error) {
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, serviceID, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect service %s: %w", serviceID, err)
	}
	port := svc.Spec.Labels[paas.LabelPort]
	tasks, err := s.tasks(ctx, serviceID)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, t := range tasks {
		if t.DesiredState != swarm.TaskStateRunning || t.Status.State != swarm.TaskStateRunning {
			continue
		}
		if ip, ok := s.taskIP(t); ok {
			addrs = append(addrs, netip.AddrPortFrom(ip, mustPort(port)).String())
		}
	}
	slices.Sort(addrs)
	return addrs, nil
}

func mustPort(p string) uint16 {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return paas.DefaultPort
	}
	return uint16(n)
}

// taskIP is a task's address on its app's own network (or, for a task of
// a release made before apps had networks of their own, on the
// installation network): where the router reaches it.
func (s *Swarm) taskIP(t swarm.Task) (netip.Addr, bool) {
	for _, na := range t.NetworksAttachments {
		if !s.routedOn(na.Network) {
			continue
		}
		for _, a := range na.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				return p.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// checkAll runs the health checks against every new web task. The first
// failure is returned as a *RolloutError with the task's last log lines.
func (s *Swarm) checkAll(ctx context.Context, rel *paas.Release, web *rollout, addrs []string, opts DeployOptions, p *progress) error {
	checks := opts.Checks
	if checks == nil {
		checks = []paas.HealthCheck{paas.DefaultCheck()}
	}
	if len(checks) == 0 {
		p.printf("       checks disabled: routing without health checks")
		return nil
	}
	if s.traffic == nil {
		return errors.New("health checks need the router, and none is configured")
	}
	if len(addrs) != web.want {
		// A task that died since it ran has no address: its end says
		// more than the missing address.
		if err := s.newFailure(ctx, web); err != nil {
			return err
		}
		return &RolloutError{Process: web.process, State: "unreachable", Reason: fmt.Sprintf("%d of %d web tasks have an address on the app's network", len(addrs), web.want)}
	}
	tasks, err := s.tasks(ctx, web.id)
	if err != nil {
		return err
	}
	for _, c := range checks {
		name := cmp.Or(c.Name, c.Path, "check")
		p.step("Checking %s: %s", web.process, describeCheck(c))
		for _, addr := range addrs {
			target := addr
			if c.Port != 0 {
				host, _, _ := strings.Cut(addr, ":")
				target = host + ":" + strconv.Itoa(c.Port)
			}
			if err := s.check(ctx, c, target, opts.Host); err != nil {
				e := &RolloutError{Process: web.process, State: "unhealthy", Reason: fmt.Sprintf("check %s failed: %v", name, err)}
				if t := taskAt(tasks, s, addr); t != nil {
					e.Task = fmt.Sprintf("%s.%d", web.process, t.Slot)
					e.Logs = s.taskLogs(ctx, t.ID, 10)
				}
				return e
			}
		}
	}
	p.header("%s: healthy", web.process)
	return nil
}

func describeCheck(c paas.HealthCheck) string {
	path := cmp.Or(c.Path, "/")
	if c.AnyAnswer {
		return "answers on " + path
	}
	if c.Content != "" {
		return fmt.Sprintf("GET %s contains %q", path, c.Content)
	}
	return "GET " + path + " succeeds"
}

func taskAt(tasks []swarm.Task, s *Swarm, addr string) *swarm.Task {
	for i := range tasks {
		if ip, ok := s.taskIP(tasks[i]); ok && strings.HasPrefix(addr, ip.String()+":") {
			return &tasks[i]
		}
	}
	return nil
}

// check runs one health check against one task, with its attempts.
func (s *Swarm) check(ctx context.Context, c paas.HealthCheck, addr, host string) error {
	attempts := max(c.Attempts, 1)
	timeout := time.Duration(cmp.Or(c.Timeout, 5)) * time.Second
	wait := time.Duration(cmp.Or(c.Wait, 1)) * time.Second
	if c.InitialDelay > 0 {
		if err := sleep(ctx, time.Duration(c.InitialDelay)*time.Second); err != nil {
			return err
		}
	}
	var last error
	for i := range attempts {
		if i > 0 {
			if err := sleep(ctx, wait); err != nil {
				return err
			}
		}
		status, body, err := s.traffic.Probe(ctx, addr, cmp.Or(c.Path, "/"), host, timeout)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			last = err
		case c.AnyAnswer && status < 500, !c.AnyAnswer && status >= 200 && status < 400 && strings.Contains(body, c.Content):
			return nil
		case !c.AnyAnswer && status < 400:
			last = fmt.Errorf("the response does not contain %q", c.Content)
		default:
			last = fmt.Errorf("status %d", status)
		}
	}
	return fmt.Errorf("%w (after %d attempts)", last, attempts)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// routerSync bounds how long the router may take to route new tasks.
const routerSync = 15 * time.Second

// waitRouted waits until the router routes every address in addrs.
func (s *Swarm) waitRouted(ctx context.Context, addrs []string) error {
	if s.traffic == nil {
		return nil
	}
	deadline := time.Now().Add(routerSync)
	for {
		bs, err := s.traffic.Backends(ctx, true)
		if err == nil {
			routed := map[string]bool{}
			for _, b := range bs {
				routed[b.Addr] = b.Routed
			}
			all := true
			for _, a := range addrs {
				all = all && routed[a]
			}
			if all {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("the new tasks are not routed")
			}
			return fmt.Errorf("the router did not take the new tasks within %s: %w", routerSync, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitDrained waits until the router routes none of addrs and has no
// request in flight to them, or timeout passes. It reports how many requests
// were still running then.
func (s *Swarm) waitDrained(ctx context.Context, addrs []string, timeout time.Duration) (cut int64) {
	if s.traffic == nil || len(addrs) == 0 {
		return 0
	}
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	deadline := time.Now().Add(timeout)
	refreshed := false
	for {
		// One re-read of the routes takes the drained tasks out; after that
		// only the requests in flight are watched.
		bs, err := s.traffic.Backends(ctx, !refreshed)
		refreshed = refreshed || err == nil
		busy := int64(0)
		if err == nil {
			for _, b := range bs {
				if want[b.Addr] && (b.Routing || b.Inflight > 0) {
					busy += max(b.Inflight, 1)
				}
			}
			if busy == 0 {
				return 0
			}
		}
		if time.Now().After(deadline) {
			return busy
		}
		if sleep(ctx, 50*time.Millisecond) != nil {
			return busy
		}
	}
}

// retire takes the services of deployment d that match (all of them when
// match is nil) out of the router, lets their requests in flight finish (up
// to drain), and removes them.
func (s *Swarm) retire(ctx context.Context, d *deployment, drain time.Duration, p *progress, match func(*swarm.Service) bool) error {
	var procs []string
	for i := range d.services {
		if match == nil || match(&d.services[i]) {
			procs = append(procs, d.services[i].Spec.Labels[paas.LabelProcess])
		}
	}
	if len(procs) == 0 {
		return nil
	}
	if err := s.drain(ctx, d, drain, p, match); err != nil {
		return err
	}
	for i := range d.services {
		svc := &d.services[i]
		if match != nil && !match(svc) {
			continue
		}
		if err := s.cli.ServiceRemove(ctx, svc.ID); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove service %s: %w", svc.Spec.Name, err)
		}
	}
	switch {
	case d.release == 0:
	case match == nil:
		p.step("Stopped v%d (%s)", d.release, d.id)
	default:
		p.step("Stopped %s of v%d (%s)", strings.Join(procs, ", "), d.release, d.id)
	}
	return nil
}

// drain takes d's services that match (all when match is nil) out of the
// router and waits for the requests in flight to a web one.
func (s *Swarm) drain(ctx context.Context, d *deployment, timeout time.Duration, p *progress, match func(*swarm.Service) bool) error {
	var web *swarm.Service
	for i := range d.services {
		svc := &d.services[i]
		if match != nil && !match(svc) {
			continue
		}
		if err := s.label(ctx, svc.ID, paas.LabelRouted, "false"); err != nil && !isNotFound(err) {
			return err
		}
		if svc.Spec.Labels[paas.LabelProcess] == paas.WebProcess && svc.Spec.Labels[paas.LabelRouted] == "true" {
			web = svc
		}
	}
	if web == nil {
		return nil
	}
	addrs, err := s.taskAddrs(ctx, web.ID)
	if err != nil {
		return err
	}
	if cut := s.waitDrained(ctx, addrs, timeout); cut > 0 {
		p.warn("%d request(s) still running on v%d after %s; stopping it anyway", cut, d.release, timeout)
	}
	return nil
}

// Stop takes the app out of the router, lets its requests finish and scales
// every process type to zero. The services stay, so the app stays known to
// the router (503 instead of 404) and ps:start can bring it back.
func (s *Swarm) Stop(ctx context.Context, app string, drain time.Duration, out io.Writer) error {
	defer s.changing()()
	if drain <= 0 {
		drain = 30 * time.Second
	}
	p := &progress{out: out}
	deps, err := s.deployments(ctx, app)
	if err != nil {
		return err
	}
	cur := serving(deps)
	keep := serviceIDs(cur)
	for _, d := range deps {
		if err := s.retire(ctx, d, drain, p, func(svc *swarm.Service) bool { return !keep[svc.ID] }); err != nil {
			return err
		}
	}
	if cur == nil {
		return nil
	}
	if err := s.drain(ctx, cur, drain, p, nil); err != nil {
		return err
	}
	zero := uint64(0)
	for _, svc := range cur.services {
		svc2, _, err := s.cli.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			return fmt.Errorf("inspect service %s: %w", svc.Spec.Name, err)
		}
		spec := svc2.Spec
		spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &zero}}
		if _, err := s.cli.ServiceUpdate(ctx, svc2.ID, svc2.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
			return fmt.Errorf("stop %s: %w", svc.Spec.Labels[paas.LabelProcess], err)
		}
		p.step("Stopped %s", svc.Spec.Labels[paas.LabelProcess])
	}
	return nil
}

// Reconcile finishes or undoes a rollout that paasd did not see to the end
// (it was stopped or killed), and removes whatever else is left over (ps:retire).
// For each process type it keeps one service: the newest of release
// current (the one the store says serves), a routed one before one that is
// not, or without one of current the newest routed one; a kept service the
// rollout had already drained is taken back into the router. Every other
// service is drained and removed: an unrecorded release is rolled back, and
// an interrupted process restart finished or undone. paasd runs it for
// every app when it starts.
func (s *Swarm) Reconcile(ctx context.Context, app string, current int, out io.Writer) error {
	_, err := s.Retire(ctx, app, current, out)
	return err
}

// Retire is Reconcile, reporting how many services it removed.
func (s *Swarm) Retire(ctx context.Context, app string, current int, out io.Writer) (int, error) {
	defer s.changing()()
	deps, err := s.deployments(ctx, app)
	if err != nil || len(deps) < 2 && (len(deps) == 0 || deps[0].routed || deps[0].release == current) {
		return 0, err
	}
	routed := func(svc *swarm.Service) bool { return svc.Spec.Labels[paas.LabelRouted] == "true" }
	type kept struct {
		svc *swarm.Service
		dep *deployment
	}
	keep := map[string]kept{} // by process type
	for _, d := range slices.Backward(deps) {
		for i := range d.services {
			svc := &d.services[i]
			proc := svc.Spec.Labels[paas.LabelProcess]
			k, ok := keep[proc]
			switch {
			case !ok:
				if d.release == current || routed(svc) {
					keep[proc] = kept{svc, d}
				}
			case d.release == current && (k.dep.release != current || routed(svc) && !routed(k.svc)):
				keep[proc] = kept{svc, d}
			}
		}
	}
	ids := map[string]bool{}
	for _, k := range keep {
		ids[k.svc.ID] = true
	}
	p := &progress{out: out}
	var back []*rollout
	var web *swarm.Service
	for _, k := range keep {
		if routed(k.svc) || replicasOf(&k.svc.Spec) == 0 {
			continue
		}
		s.log.Info("routing the current release again", "app", app, "deployment", k.dep.id, "release", k.dep.release, "process", k.svc.Spec.Labels[paas.LabelProcess])
		back = append(back, &rollout{process: k.svc.Spec.Labels[paas.LabelProcess], id: k.svc.ID})
		if k.svc.Spec.Labels[paas.LabelProcess] == paas.WebProcess {
			web = k.svc
		}
	}
	if err := s.setRouted(ctx, back, true); err != nil {
		return 0, err
	}
	if web != nil {
		addrs, err := s.taskAddrs(ctx, web.ID)
		if err != nil {
			return 0, err
		}
		if err := s.waitRouted(ctx, addrs); err != nil {
			return 0, err
		}
	}
	removed := 0
	for _, d := range deps {
		n := 0
		for _, svc := range d.services {
			if !ids[svc.ID] {
				n++
			}
		}
		if n == 0 {
			continue
		}
		removed += n
		s.log.Info("retiring leftover services", "app", app, "deployment", d.id, "release", d.release, "services", n)
		if err := s.retire(ctx, d, 30*time.Second, p, func(svc *swarm.Service) bool { return !ids[svc.ID] }); err != nil {
			return removed, err
		}
	}
	return removed, nil
}
