package commands

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"paas/internal/cron"
	"paas/internal/paas"
)

// fakeCron has one task, "abc", of app "app".
type fakeCron struct {
	calls []string
}

func (f *fakeCron) List(app string) ([]cron.Status, error) {
	return []cron.Status{{ID: "abc", App: app, Command: "report", Schedule: "@daily"}}, nil
}

func (f *fakeCron) task(id string) error {
	if id != "abc" {
		return fmt.Errorf("%w %q in app v1 (see cron:list app)", cron.ErrNoTask, id)
	}
	return nil
}

func (f *fakeCron) Start(_ context.Context, app, id string) (string, <-chan cron.Run, error) {
	if err := f.task(id); err != nil {
		return "", nil, err
	}
	f.calls = append(f.calls, "start "+id)
	done := make(chan cron.Run, 1)
	done <- cron.Run{Task: id, ExitCode: 3, Output: "ran\n"}
	return "app-run-1", done, nil
}

func (f *fakeCron) Runs(app, id string) ([]cron.Run, error) {
	return nil, f.task(id)
}

func (f *fakeCron) SetMaintenance(app, id string, on bool) error {
	if err := f.task(id); err != nil {
		return err
	}
	f.calls = append(f.calls, fmt.Sprintf("maintenance %s %v", id, on))
	return nil
}

func TestCronCommands(t *testing.T) {
	alice := paas.Identity{Name: "alice"}
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantOut   string
		wantErr   string
		wantCalls string
	}{
		{name: "list", args: []string{"cron:list", "app"}, wantOut: "abc  @daily    report"},
		{name: "list json", args: []string{"cron:list", "app", "--format", "json"}, wantOut: `[{"id":"abc","app":"app","command":"report","schedule":"@daily","maintenance":false,"running":false}]`},
		{name: "run attached: output and exit code", args: []string{"cron:run", "app", "abc"}, wantCode: 3, wantOut: "ran\n", wantCalls: "start abc"},
		{name: "run detached", args: []string{"cron:run", "app", "abc", "--detach"}, wantOut: "Started cron task abc as app-run-1", wantCalls: "start abc"},
		{name: "run unknown", args: []string{"cron:run", "app", "nope"}, wantCode: ExitError, wantErr: `no such cron task "nope"`},
		{name: "set maintenance", args: []string{"cron:set", "app", "abc", "maintenance", "true"}, wantOut: "Suspended cron task abc", wantCalls: "maintenance abc true"},
		{name: "set back", args: []string{"cron:set", "app", "abc", "maintenance", "false"}, wantOut: "Resumed cron task abc", wantCalls: "maintenance abc false"},
		{name: "not a boolean", args: []string{"cron:set", "app", "abc", "maintenance", "yes"}, wantCode: ExitError, wantErr: `maintenance wants true or false, got "yes"`},
		{name: "1 is not a boolean here", args: []string{"cron:set", "app", "abc", "maintenance", "1"}, wantCode: ExitError, wantErr: "wants true or false"},
		{name: "unknown property", args: []string{"cron:set", "app", "abc", "mailto", "x"}, wantCode: ExitError, wantErr: `unknown cron property "mailto"`},
		{name: "too few", args: []string{"cron:set", "app", "abc"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "suspend", args: []string{"cron:suspend", "app", "abc"}, wantOut: "Suspended", wantCalls: "maintenance abc true"},
		{name: "resume unknown", args: []string{"cron:resume", "app", "nope"}, wantCode: ExitError, wantErr: "no such cron task"},
		{name: "too many", args: []string{"cron:resume", "app", "abc", "def"}, wantCode: ExitError, wantErr: "too many arguments: 2 after the app, want 1"},
		{name: "logs none", args: []string{"cron:logs", "app", "abc"}, wantOut: "has not run yet"},
		{name: "another's app", args: []string{"cron:list", "bobs"}, wantCode: ExitNotFound, wantErr: "App bobs does not exist"},
		{name: "help", args: []string{"cron:set", "--help"}, wantOut: "Usage: cron:set APP CRON_ID maintenance true|false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore(&paas.App{Name: "app", Owner: "alice", Current: 1}, &paas.App{Name: "bobs", Owner: "bob"})
			f := &fakeCron{}
			d := NewDispatcher(st, "1", CronCommands(f))
			var out, errb strings.Builder
			code := d.RunCommand(context.Background(), alice, tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if got := strings.Join(f.calls, ","); got != tc.wantCalls {
				t.Fatalf("calls %q, want %q", got, tc.wantCalls)
			}
		})
	}
}
