package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"paas/internal/paas"
	"paas/plugins"
)

// demoPlugin is a Go plugin as a third party would write one: commands that
// go through the dispatcher's checks, and hooks on the command triggers.
type demoPlugin struct {
	apps plugins.Apps

	mu    sync.Mutex
	fired []string
}

func (d *demoPlugin) Name() string        { return "demo" }
func (d *demoPlugin) Description() string { return "a demo plugin" }

func (d *demoPlugin) Commands() []plugins.Command {
	return []plugins.Command{
		{Name: "demo:whoami", Help: "Print the caller", Run: func(_ context.Context, c *plugins.Call) error {
			fmt.Fprintln(c.Out, c.ID.Name)
			return nil
		}},
		{Name: "demo:app", Args: "APP", Help: "Print an app", App: true, Run: func(_ context.Context, c *plugins.Call) error {
			fmt.Fprintln(c.Out, "app", c.App.Name, c.Args)
			return nil
		}},
		{Name: "demo:admin", Help: "Administrators only", Admin: true, Run: func(_ context.Context, c *plugins.Call) error {
			fmt.Fprintln(c.Out, "admin ok")
			return nil
		}},
		{Name: "demo:attach", Args: "THING APP", Help: "Set THING_ATTACHED on an app", MinArgs: 2, Run: func(ctx context.Context, c *plugins.Call) error {
			app, err := d.apps.App(c.ID, c.Args[1])
			if err != nil {
				return err
			}
			return d.apps.SetConfig(ctx, app.Name, c.ID, "demo:attach", func(cfg map[string]string) error {
				cfg["THING_ATTACHED"] = c.Args[0]
				return nil
			}, c.Out)
		}},
		{Name: "demo:missing", Args: "THING", Help: "A thing that does not exist", MinArgs: 1, Run: func(_ context.Context, c *plugins.Call) error {
			return plugins.NotFound("Thing", c.Args[0])
		}},
	}
}

func (d *demoPlugin) Hooks() map[string]plugins.HookFunc {
	record := func(_ context.Context, ev plugins.Event) error {
		d.mu.Lock()
		d.fired = append(d.fired, ev.Trigger+" "+strings.Join(ev.Args, " ")+" by "+ev.User.Name)
		d.mu.Unlock()
		return nil
	}
	return map[string]plugins.HookFunc{
		plugins.TriggerPreDelete: func(ctx context.Context, ev plugins.Event) error {
			record(ctx, ev)
			if ev.Args[0] == "alpha" {
				return errors.New("alpha is still attached")
			}
			return nil
		},
		plugins.TriggerPostDelete:       record,
		plugins.TriggerPostConfigUpdate: record,
		plugins.TriggerPostAppRename:    record,
		plugins.TriggerPostAppClone:     record,
		plugins.TriggerUserAuth: func(ctx context.Context, ev plugins.Event) error {
			if ev.Args[0] == "bob" && len(ev.Args) > 1 && ev.Args[1] == "demo:whoami" {
				return errors.New("bob may not ask")
			}
			return nil
		},
	}
}

func (d *demoPlugin) events() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.fired...)
}

// newPluginEnv is newEnv's dispatcher wired as paasd wires it, with the demo plugin.
func newPluginEnv(t *testing.T) (*env, *demoPlugin, CommandRunner) {
	t.Helper()
	e := newEnv(t)
	reg := plugins.NewRegistry(nil, plugins.NewMemData(), nil)
	demo := &demoPlugin{apps: &PluginApps{Store: e.store, Pipeline: e.pipeline}}
	if err := reg.Register(demo); err != nil {
		t.Fatal(err)
	}
	p := &Platform{
		Store: e.store, Pipeline: e.pipeline, Runtime: e.runtime, Repos: e.repos, Images: e.images,
		AppURL: func(app string) string { return "http://" + app + ".example.test" },
	}
	e.d = NewDispatcher(e.store, "1.2.3", WithTriggers(p.Builtins(), reg), PluginCommands(reg), FromPlugins(reg.Commands()))
	return e, demo, &UserAuth{Next: e.d, Triggers: reg}
}

func TestPluginCommands(t *testing.T) {
	tests := []struct {
		name     string
		id       paas.Identity
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{name: "runs with the caller", id: alice, args: []string{"demo:whoami"}, wantOut: "alice\n"},
		{name: "own app", id: alice, args: []string{"demo:app", "alpha", "x"}, wantOut: "app alpha [x]\n"},
		{name: "another user's app reads as missing", id: alice, args: []string{"demo:app", "bravo"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
		{name: "admin sees every app", id: root, args: []string{"demo:app", "bravo"}, wantOut: "app bravo []\n"},
		{name: "admin only", id: alice, args: []string{"demo:admin"}, wantCode: ExitError, wantErr: "demo:admin is for administrators only"},
		{name: "admin only, as admin", id: root, args: []string{"demo:admin"}, wantOut: "admin ok\n"},
		{name: "unknown flag", id: alice, args: []string{"demo:whoami", "--nope"}, wantCode: ExitError, wantErr: "unknown flag --nope"},
		{name: "missing arguments", id: alice, args: []string{"demo:attach", "x"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "plugin resolves an app with the caller's rights", id: alice, args: []string{"demo:attach", "x", "bravo"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
		{name: "plugin's own not found", id: alice, args: []string{"demo:missing", "t1"}, wantCode: ExitError, wantErr: " !     Thing t1 does not exist\n"},
		{name: "help of a plugin command", id: alice, args: []string{"demo:attach", "--help"}, wantOut: "Usage: demo:attach THING APP"},
		{name: "user-auth refuses", id: bob, args: []string{"demo:whoami"}, wantCode: ExitError, wantErr: "permission denied: plugin demo: user-auth: bob may not ask"},
		{name: "user-auth lets others through", id: bob, args: []string{"demo:app", "bravo"}, wantOut: "app bravo []\n"},
		{name: "plugin:list", id: alice, args: []string{"plugin:list"}, wantOut: "demo  builtin     enabled   a demo plugin (triggers: post-app-clone post-app-rename post-config-update post-delete pre-delete user-auth; 5 commands)"},
		{name: "plugin:list json", id: alice, args: []string{"plugin:list", "--format", "json"}, wantOut: `[{"name":"demo","kind":"builtin","enabled":true`},
		{name: "plugin:disable is for admins", id: alice, args: []string{"plugin:disable", "demo"}, wantCode: ExitError, wantErr: "administrators only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, runner := newPluginEnv(t)
			var out, errb strings.Builder
			code := runner.RunCommand(context.Background(), tc.id, tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("stdout %q, want %q", out.String(), tc.wantOut)
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("stderr %q, want %q", errb.String(), tc.wantErr)
			}
		})
	}
}

func TestPluginCommandsInHelp(t *testing.T) {
	e, _, _ := newPluginEnv(t)
	_, out, _ := e.run(t, alice, "", "help")
	for _, want := range []string{"demo:whoami", "demo:attach THING APP", "plugin:list"} {
		if !strings.Contains(out, want) {
			t.Fatalf("help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "demo:admin") || strings.Contains(out, "plugin:disable") {
		t.Fatalf("help shows admin commands to a user:\n%s", out)
	}
}

func TestPluginDisable(t *testing.T) {
	e, _, _ := newPluginEnv(t)
	if code, out, errOut := e.run(t, root, "", "plugin:disable", "demo"); code != ExitOK || !strings.Contains(out, "Disabled plugin demo") {
		t.Fatalf("plugin:disable = %d %q %q", code, out, errOut)
	}
	if code, _, errOut := e.run(t, alice, "", "demo:whoami"); code != ExitError || !strings.Contains(errOut, "plugin demo is disabled") {
		t.Fatalf("disabled demo:whoami = %d %q", code, errOut)
	}
	if _, out, _ := e.run(t, alice, "", "plugin:list"); !strings.Contains(out, "disabled") {
		t.Fatalf("plugin:list = %q", out)
	}
	if code, _, errOut := e.run(t, root, "", "plugin:enable", "nope"); code != ExitError || !strings.Contains(errOut, "Plugin nope does not exist") {
		t.Fatalf("plugin:enable nope = %d %q", code, errOut)
	}
}

func TestPluginAppsSetConfig(t *testing.T) {
	e, _, _ := newPluginEnv(t)
	if code, _, errOut := e.run(t, alice, "", "demo:attach", "db1", "alpha"); code != ExitOK {
		t.Fatalf("demo:attach = %d %q", code, errOut)
	}
	calls := e.pipeline.calls
	if len(calls) != 1 || calls[0].app != "alpha" || !calls[0].restart || calls[0].reason != "demo:attach" {
		t.Fatalf("SetConfig calls %+v", calls)
	}
	if a, _ := e.store.App("alpha"); a.Config["THING_ATTACHED"] != "db1" {
		t.Fatalf("config %v", a.Config)
	}
}

func TestDestroyTriggers(t *testing.T) {
	e, demo, _ := newPluginEnv(t)
	// pre-delete refuses: nothing is removed
	code, _, errOut := e.run(t, alice, "", "apps:destroy", "alpha", "--force")
	if code != ExitError || !strings.Contains(errOut, "pre-delete refused: plugin demo: pre-delete: alpha is still attached") {
		t.Fatalf("apps:destroy alpha = %d %q", code, errOut)
	}
	if _, err := e.store.App("alpha"); err != nil {
		t.Fatalf("alpha gone after a refused destroy: %v", err)
	}
	// without --force no trigger fires
	e.run(t, bob, "", "apps:destroy", "bravo")
	// with --force: pre-delete, destroy, post-delete
	if code, _, errOut := e.run(t, bob, "", "apps:destroy", "bravo", "--force"); code != ExitOK {
		t.Fatalf("apps:destroy bravo = %d %q", code, errOut)
	}
	if _, err := e.store.App("bravo"); !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("bravo still there: %v", err)
	}
	want := []string{"pre-delete alpha by alice", "pre-delete bravo by bob", "post-delete bravo by bob"}
	if got := demo.events(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestConfigUpdateTrigger(t *testing.T) {
	e, demo, _ := newPluginEnv(t)
	if code, _, errOut := e.run(t, alice, "", "config:set", "alpha", "A=1", "B=2"); code != ExitOK {
		t.Fatalf("config:set = %d %q", code, errOut)
	}
	if code, _, errOut := e.run(t, alice, "", "config:unset", "alpha", "A"); code != ExitOK {
		t.Fatalf("config:unset = %d %q", code, errOut)
	}
	// a failed change fires nothing
	e.run(t, alice, "", "config:set", "alpha", "bad key=1")
	want := []string{"post-config-update alpha set A B by alice", "post-config-update alpha unset A by alice"}
	if got := demo.events(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
}
