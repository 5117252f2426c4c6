package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"paas/internal/deploy"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/router/contract"
	"paas/scheduler"
)

// traffic adapts the routers' control endpoints to what a rollout needs.
// There is a router on every manager; a rollout must see the new tasks
// routed by all of them and the old ones drained by all of them.
type traffic struct {
	port  int
	token string
	// routers returns the hosts of the managers, whose routers serve.
	routers func(ctx context.Context) ([]string, error)
	// ready, when set, is closed once the routers run paasd's own image;
	// rollouts (Backends, Probe) wait for it, Refresh does not.
	ready <-chan struct{}
}

// waitReady waits until the routers are the ones paasd started.
func (t *traffic) waitReady(ctx context.Context) error {
	if t.ready == nil {
		return nil
	}
	select {
	case <-t.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the router to start: %w", ctx.Err())
	}
}

var _ scheduler.Traffic = (*traffic)(nil)

func (t *traffic) clients(ctx context.Context) ([]*contract.Client, error) {
	hosts, err := t.routers(ctx)
	if err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, errors.New("no manager is ready to run a router")
	}
	cs := make([]*contract.Client, len(hosts))
	for i, h := range hosts {
		cs[i] = &contract.Client{Addr: net.JoinHostPort(h, strconv.Itoa(t.port)), Token: t.token}
	}
	return cs, nil
}

// Refresh makes every router re-read its routes now.
func (t *traffic) Refresh(ctx context.Context) error {
	cs, err := t.clients(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if _, err := c.Refresh(ctx); err != nil {
			errs = append(errs, fmt.Errorf("router %s: %w", c.Addr, err))
		}
	}
	return errors.Join(errs...)
}

// Probe sends the check through the first router that answers: every
// router reaches every task.
func (t *traffic) Probe(ctx context.Context, addr, path, host string, timeout time.Duration) (int, string, error) {
	if err := t.waitReady(ctx); err != nil {
		return 0, "", err
	}
	cs, err := t.clients(ctx)
	if err != nil {
		return 0, "", err
	}
	var res contract.CheckResult
	for _, c := range cs {
		if res, err = c.Check(ctx, contract.CheckRequest{Addr: addr, Path: path, Host: host, Timeout: int(timeout / time.Millisecond)}); err == nil {
			break
		}
	}
	if err != nil {
		return 0, "", err
	}
	if res.Error != "" {
		return res.Status, res.Body, errors.New(res.Error)
	}
	return res.Status, res.Body, nil
}

// Backends merges what every router reports: a backend is Routed when all
// of them route it, Routing when any does, and its requests in flight are
// summed.
func (t *traffic) Backends(ctx context.Context, refresh bool) ([]scheduler.Backend, error) {
	if err := t.waitReady(ctx); err != nil {
		return nil, err
	}
	cs, err := t.clients(ctx)
	if err != nil {
		return nil, err
	}
	type seen struct {
		b      scheduler.Backend
		routed int
	}
	by := map[string]*seen{}
	var order []string
	for _, c := range cs {
		get := c.Status
		if refresh {
			get = c.Refresh
		}
		st, err := get(ctx)
		if err != nil {
			return nil, fmt.Errorf("router %s: %w", c.Addr, err)
		}
		for _, b := range st.Backends {
			x, ok := by[b.Addr]
			if !ok {
				x = &seen{b: scheduler.Backend{Addr: b.Addr}}
				by[b.Addr] = x
				order = append(order, b.Addr)
			}
			if b.Routed {
				x.routed++
				x.b.Routing = true
			}
			x.b.Inflight += b.Inflight
		}
	}
	out := make([]scheduler.Backend, 0, len(order))
	for _, a := range order {
		x := by[a]
		x.b.Routed = x.routed == len(cs)
		out = append(out, x.b)
	}
	return out, nil
}

// secretFile returns the token kept in path, creating it (owner-only) on
// first use.
func secretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return tok, nil
}

// reconcile finishes or undoes the rollouts a stopped or killed paasd left
// behind, one app at a time, each under the app's deploy lock so that it
// never mistakes a deploy that has just started for a leftover.
func reconcile(ctx context.Context, st *store.Store, pipeline *deploy.Pipeline, sched *scheduler.Swarm, open []*paas.Deploy, repos *repos, audit *auditLog, log *slog.Logger) error {
	for _, d := range open {
		rec, err := pipeline.Recover(ctx, d, func(app *paas.App) (string, error) { return repos.Head(app.Name, app.Branch()) }, io.Discard)
		if err != nil {
			log.Error("settle an interrupted deploy", "app", d.App, "deploy", d.ID, "err", err)
			continue
		}
		audit.recordRecovered(rec)
	}
	apps, err := st.Apps()
	if err != nil {
		return err
	}
	for _, app := range apps {
		err := pipeline.Locked(ctx, app.Name, io.Discard, func() error {
			cur, err := st.App(app.Name)
			if err != nil {
				return err
			}
			return sched.Reconcile(ctx, cur.Name, cur.Current, io.Discard)
		})
		if err != nil {
			log.Error("reconcile app", "app", app.Name, "err", err)
		}
	}
	return nil
}
