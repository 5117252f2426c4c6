package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"paas/internal/deploy"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/router"
	"paas/scheduler"
)

// traffic adapts the router's control endpoint to what a rollout needs.
type traffic struct{ c *router.Client }

var _ scheduler.Traffic = (*traffic)(nil)

func (t *traffic) Probe(ctx context.Context, addr, path, host string, timeout time.Duration) (int, string, error) {
	res, err := t.c.Check(ctx, router.CheckRequest{Addr: addr, Path: path, Host: host, Timeout: int(timeout / time.Millisecond)})
	if err != nil {
		return 0, "", err
	}
	if res.Error != "" {
		return res.Status, res.Body, errors.New(res.Error)
	}
	return res.Status, res.Body, nil
}

func (t *traffic) Backends(ctx context.Context, refresh bool) ([]scheduler.Backend, error) {
	get := t.c.Status
	if refresh {
		get = t.c.Refresh
	}
	st, err := get(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]scheduler.Backend, len(st.Backends))
	for i, b := range st.Backends {
		out[i] = scheduler.Backend{Addr: b.Addr, Routed: b.Routed, Inflight: b.Inflight}
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
