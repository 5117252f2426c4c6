package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"paas/internal/paas"
)

// The fakes' methods of the ps, checks, ports, certs and domains commands.

func (r *fakeRuntime) Inspect(_ context.Context, app string) ([]json.RawMessage, error) {
	return []json.RawMessage{
		json.RawMessage(`{"Id":"c1","Config":{"Env":["SECRET=hunter2","PORT=5000","PATH=/bin","EMPTY="],"Image":"img"},"Name":"/` + app + `.web.1","Size":12345678901234567890}`),
		json.RawMessage(`{"ID":"t2","Spec":{"ContainerSpec":{"Env":["TOKEN=abc","PORT=5000"]}},"Slot":2}`),
	}, nil
}

func (f *fakeReleases) RestartProcess(_ context.Context, app string, _ paas.Identity, process string, _ io.Writer) error {
	return f.record("restart %s %s", app, process)
}

func (f *fakeReleases) SetFormation(_ context.Context, app string, _ paas.Identity, scale map[string]int, _ io.Writer) error {
	if err := f.record("formation %s %v", app, scale); err != nil {
		return err
	}
	_, err := f.store.UpdateApp(app, func(a *paas.App) error {
		if a.Formation == nil {
			a.Formation = map[string]int{}
		}
		for k, v := range scale {
			a.Formation[k] = v
		}
		return nil
	})
	return err
}

func (f *fakeReleases) RunChecks(_ context.Context, app, target string, out io.Writer) error {
	fmt.Fprintf(out, "-----> Running checks for %s.%s\n", app, target)
	return f.record("checks %s %q", app, target)
}

func (f *fakeReleases) Retire(_ context.Context, app string, _ io.Writer) (int, error) {
	return 1, f.record("retire %s", app)
}

// runIn runs one command with the given stdin on e and checks its exit
// code, returning stdout and stderr.
func (e *env) runIn(t *testing.T, id paas.Identity, stdin string, want int, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := e.run(t, id, stdin, args...)
	if code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out, errOut
}
