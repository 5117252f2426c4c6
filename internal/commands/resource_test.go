package commands

import (
	"context"
	"io"
	"strings"
	"testing"

	"paas/internal/paas"
)

// resourceStore is fakeStore with the installation's resource settings.
type resourceStore struct {
	*fakeStore
	global paas.ResourceSettings
}

func (s *resourceStore) GlobalResources() (paas.ResourceSettings, error) { return s.global, nil }

func (s *resourceStore) UpdateGlobalResources(fn func(*paas.ResourceSettings) error) error {
	g := s.global.Clone()
	if err := fn(&g); err != nil {
		return err
	}
	s.global = g
	return nil
}

// resourcePipeline applies a change as deploy.Pipeline.SetResources does,
// reservation check included, and records the reasons.
type resourcePipeline struct {
	st      *resourceStore
	reasons []string
}

func (p *resourcePipeline) SetResources(_ context.Context, app string, _ paas.Identity, reason string, fn func(*paas.ResourceSettings) error, _ io.Writer) error {
	a := p.st.apps[app]
	set := a.Resources.Clone()
	if err := fn(&set); err != nil {
		return err
	}
	if err := paas.CheckResources(set, p.st.global); err != nil {
		return err
	}
	a.Resources = set
	p.reasons = append(p.reasons, reason)
	return nil
}

func TestResourceCommands(t *testing.T) {
	tests := []struct {
		name       string
		id         paas.Identity
		args       []string
		wantCode   int
		wantOut    string
		wantErr    string
		wantReason string
		wantMemory int64 // alice's app's default limit afterwards
		wantGlobal int64 // the installation's default limit afterwards
	}{
		{name: "limit", id: alice, args: []string{"resource:limit", "app", "--memory", "512m", "--cpu", "1"},
			wantOut: "memory: 512 MB", wantReason: "resource:limit", wantMemory: 512 << 20, wantGlobal: 1 << 30},
		{name: "limit of one process type", id: alice, args: []string{"resource:limit", "--process-type", "worker", "app", "--memory", "1g"},
			wantOut: "of process type worker for app", wantReason: "resource:limit", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "show without a value", id: alice, args: []string{"resource:limit", "app"}, wantOut: "memory: 256 MB", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "unknown unit", id: alice, args: []string{"resource:limit", "app", "--memory", "1q"}, wantCode: ExitError, wantErr: `unknown unit "q"`, wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "below the minimum", id: alice, args: []string{"resource:limit", "app", "--memory", "1m"}, wantCode: ExitError, wantErr: "less than the 6 MB", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "negative cpu", id: alice, args: []string{"resource:limit", "app", "--cpu", "-2"}, wantCode: ExitError, wantErr: "greater than zero", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "bad process type", id: alice, args: []string{"resource:limit", "app", "--process-type", "../x", "--cpu", "1"}, wantCode: ExitError, wantErr: "invalid process type", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "reservation over the limit", id: alice, args: []string{"resource:reserve", "app", "--memory", "300m"}, wantCode: ExitError,
			wantErr: "every process type would reserve 300 MB of memory, more than its limit of 256 MB; nothing was changed", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "clear", id: alice, args: []string{"resource:limit-clear", "app"}, wantOut: "Clearing resource limits", wantReason: "resource:limit-clear", wantGlobal: 1 << 30},
		{name: "clear what is not set", id: alice, args: []string{"resource:reserve-clear", "app"}, wantOut: "No resource reserves", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "global is for administrators", id: alice, args: []string{"resource:limit", "--global", "--memory", "2g"}, wantCode: ExitError, wantErr: "administrators only", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "global", id: root, args: []string{"resource:limit", "--global", "--memory", "2g"}, wantOut: "at their next release", wantMemory: 256 << 20, wantGlobal: 2 << 30},
		{name: "global under an app's reservation", id: root, args: []string{"resource:limit", "--global", "--memory", "64m"}, wantCode: ExitError,
			wantErr: "app reserved: invalid resource: every process type would reserve 128 MB of memory, more than its limit of 64 MB", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "report", id: alice, args: []string{"resource:report", "app"}, wantOut: "Resource limit memory:", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "report json", id: alice, args: []string{"resource:report", "app", "--format", "json"}, wantOut: `"limits":{"_default_":{"memory_bytes":268435456}}`, wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "report of another's app", id: bob, args: []string{"resource:report", "app"}, wantCode: ExitNotFound, wantErr: "App app does not exist", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "report of the installation", id: alice, args: []string{"resource:report", "--global"}, wantOut: "Resource limit memory:   1 GB", wantMemory: 256 << 20, wantGlobal: 1 << 30},
		{name: "report of every app", id: root, args: []string{"resource:report"}, wantOut: "reserved resource information", wantMemory: 256 << 20, wantGlobal: 1 << 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &resourceStore{
				fakeStore: newFakeStore(
					&paas.App{Name: "app", Owner: "alice", Resources: paas.ResourceSettings{Limits: map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 256 << 20}}}},
					&paas.App{Name: "reserved", Owner: "bob", Resources: paas.ResourceSettings{Reservations: map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 128 << 20}}}},
				),
				global: paas.ResourceSettings{Limits: map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 1 << 30}}},
			}
			pl := &resourcePipeline{st: st}
			d := NewDispatcher(st, "1", ResourceCommands(st, pl))
			var out, errb strings.Builder
			code := d.RunCommand(context.Background(), tc.id, tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if got := strings.Join(pl.reasons, ","); got != tc.wantReason {
				t.Fatalf("rolled out %q, want %q", got, tc.wantReason)
			}
			if m := st.apps["app"].Resources.Limits[paas.ResourceDefault].MemoryBytes; m != tc.wantMemory {
				t.Fatalf("app's limit %d, want %d", m, tc.wantMemory)
			}
			if g := st.global.Limits[paas.ResourceDefault].MemoryBytes; g != tc.wantGlobal {
				t.Fatalf("global limit %d, want %d", g, tc.wantGlobal)
			}
		})
	}
}
