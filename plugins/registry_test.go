package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/plugins"
)

// goPlugin is a Go plugin whose hooks record their calls into a shared log.
type goPlugin struct {
	name  string
	log   *callLog
	fail  map[string]error // by trigger
	panic string           // trigger that panics
	cmds  []plugins.Command
}

type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(s string) { l.mu.Lock(); l.calls = append(l.calls, s); l.mu.Unlock() }
func (l *callLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (p *goPlugin) Name() string        { return p.name }
func (p *goPlugin) Description() string { return "test plugin " + p.name }
func (p *goPlugin) Commands() []plugins.Command {
	return p.cmds
}
func (p *goPlugin) Hooks() map[string]plugins.HookFunc {
	hook := func(ctx context.Context, ev plugins.Event) error {
		if ev.Trigger == p.panic {
			panic("boom in " + p.name)
		}
		p.log.add(fmt.Sprintf("%s:%s %s by %s", p.name, ev.Trigger, strings.Join(ev.Args, " "), ev.User.Name))
		fmt.Fprintf(ev.Out, "%s ran\n", p.name)
		return p.fail[ev.Trigger]
	}
	return map[string]plugins.HookFunc{"pre-build": hook, "post-deploy": hook}
}

var (
	_ plugins.Hooker    = (*goPlugin)(nil)
	_ plugins.Commander = (*goPlugin)(nil)
)

func TestRegistryFire(t *testing.T) {
	boom := errors.New("boom")
	alice := paas.Identity{Name: "alice"}
	tests := []struct {
		name      string
		plugins   func(l *callLog) []plugins.Plugin
		exec      map[string]string // executable plugin -> script body, for both triggers
		disabled  []string
		trigger   string
		wantCalls []string
		wantOut   []string
		wantErr   []string
	}{
		{
			name: "Go plugins first in registration order, then executables by name",
			plugins: func(l *callLog) []plugins.Plugin {
				return []plugins.Plugin{&goPlugin{name: "zeta", log: l}, &goPlugin{name: "alpha", log: l}}
			},
			exec:      map[string]string{"b-exec": `echo "b-exec $PAAS_TRIGGER $* by $PAAS_USER"`, "a-exec": `echo "a-exec $PAAS_TRIGGER $* by $PAAS_USER"`},
			trigger:   "post-deploy",
			wantCalls: []string{"zeta:post-deploy app 3 by alice", "alpha:post-deploy app 3 by alice"},
			wantOut:   []string{"zeta ran\nalpha ran\na-exec post-deploy app 3 by alice\nb-exec post-deploy app 3 by alice\n"},
		},
		{
			name: "a failing Go plugin stops a pre trigger before the executables",
			plugins: func(l *callLog) []plugins.Plugin {
				return []plugins.Plugin{&goPlugin{name: "gate", log: l, fail: map[string]error{"pre-build": boom}}, &goPlugin{name: "later", log: l}}
			},
			exec:      map[string]string{"x": "echo x ran"},
			trigger:   "pre-build",
			wantCalls: []string{"gate:pre-build app 3 by alice"},
			wantOut:   []string{"gate ran\n"},
			wantErr:   []string{"plugin gate: pre-build: boom"},
		},
		{
			name: "post trigger failures are joined and every plugin runs",
			plugins: func(l *callLog) []plugins.Plugin {
				return []plugins.Plugin{&goPlugin{name: "one", log: l, fail: map[string]error{"post-deploy": boom}}, &goPlugin{name: "two", log: l}}
			},
			exec:      map[string]string{"x": "echo x ran; exit 4"},
			trigger:   "post-deploy",
			wantCalls: []string{"one:post-deploy app 3 by alice", "two:post-deploy app 3 by alice"},
			wantOut:   []string{"one ran\ntwo ran\nx ran\n"},
			wantErr:   []string{"plugin one: post-deploy: boom", "plugin x: post-deploy failed: exit status 4"},
		},
		{
			name: "a panicking Go plugin is a failure, not a crash",
			plugins: func(l *callLog) []plugins.Plugin {
				return []plugins.Plugin{&goPlugin{name: "bad", log: l, panic: "post-deploy"}, &goPlugin{name: "good", log: l}}
			},
			trigger:   "post-deploy",
			wantCalls: []string{"good:post-deploy app 3 by alice"},
			wantErr:   []string{"plugin bad: post-deploy failed: internal error"},
		},
		{
			name: "disabled plugins of both kinds are skipped",
			plugins: func(l *callLog) []plugins.Plugin {
				return []plugins.Plugin{&goPlugin{name: "off", log: l, fail: map[string]error{"pre-build": boom}}, &goPlugin{name: "on", log: l}}
			},
			exec:      map[string]string{"off-exec": "exit 1", "on-exec": "echo on-exec ran"},
			disabled:  []string{"off", "off-exec"},
			trigger:   "pre-build",
			wantCalls: []string{"on:pre-build app 3 by alice"},
			wantOut:   []string{"on ran\non-exec ran\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tc.exec {
				script(t, dir, name, tc.trigger, body, 0)
			}
			l := &callLog{}
			reg := plugins.NewRegistry(newDir(dir, 10*time.Second), plugins.NewMemData(), nil)
			if err := reg.Register(tc.plugins(l)...); err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.disabled {
				if err := reg.SetEnabled(name, false); err != nil {
					t.Fatal(err)
				}
			}
			var out syncBuffer
			err := reg.Trigger(plugins.WithUser(context.Background(), alice), tc.trigger, []string{"app", "3"}, &out)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Trigger = %v", err)
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Trigger = %v, want error containing %q", err, w)
				}
			}
			if got := l.get(); !slices.Equal(got, tc.wantCalls) {
				t.Fatalf("calls %q, want %q", got, tc.wantCalls)
			}
			for _, w := range tc.wantOut {
				if out.String() != w {
					t.Fatalf("output %q, want %q", out.String(), w)
				}
			}
		})
	}
}

func TestRegistryRegister(t *testing.T) {
	run := func(context.Context, *plugins.Call) error { return nil }
	tests := []struct {
		name    string
		plugins []plugins.Plugin
		wantErr string
	}{
		{"ok", []plugins.Plugin{&goPlugin{name: "db", cmds: []plugins.Command{{Name: "db:create", Run: run}}}}, ""},
		{"bad name", []plugins.Plugin{&goPlugin{name: "Bad Name"}}, "use lowercase"},
		{"twice", []plugins.Plugin{&goPlugin{name: "db"}, &goPlugin{name: "db"}}, "already registered"},
		{"command outside its namespace", []plugins.Plugin{&goPlugin{name: "db", cmds: []plugins.Command{{Name: "apps:destroy", Run: run}}}}, "must be named db:SUBCOMMAND"},
		{"command without Run", []plugins.Plugin{&goPlugin{name: "db", cmds: []plugins.Command{{Name: "db:x"}}}}, "must be named db:SUBCOMMAND"},
		{"bare namespace", []plugins.Plugin{&goPlugin{name: "db", cmds: []plugins.Command{{Name: "db:", Run: run}}}}, "must be named"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := plugins.NewRegistry(nil, nil, nil).Register(tc.plugins...)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Register = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestRegistryListAndCommands(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "notify", "post-deploy", "true", 0)
	script(t, dir, "notify", "not-a-trigger", "true", 0)
	ran := 0
	p := &goPlugin{name: "db", log: &callLog{}, cmds: []plugins.Command{
		{Name: "db:create", Run: func(context.Context, *plugins.Call) error { ran++; return nil }},
		{Name: "db:crash", Run: func(context.Context, *plugins.Call) error { panic("oops") }},
	}}
	reg := plugins.NewRegistry(newDir(dir, time.Second), plugins.NewMemData(), nil)
	if err := reg.Register(p); err != nil {
		t.Fatal(err)
	}
	list, err := reg.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []plugins.Info{
		{Name: "db", Kind: "builtin", Enabled: true, Description: "test plugin db", Triggers: []string{"post-deploy", "pre-build"}, Commands: []string{"db:create", "db:crash"}},
		{Name: "notify", Kind: "executable", Enabled: true, Description: "executables in " + dir + "/notify", Triggers: []string{"post-deploy"}, Commands: []string{}},
	}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("List = %+v\nwant %+v", list, want)
	}

	cmds := reg.Commands()
	call := &plugins.Call{Out: io.Discard, Err: io.Discard}
	if err := cmds[0].Run(context.Background(), call); err != nil || ran != 1 {
		t.Fatalf("db:create = %v, ran %d", err, ran)
	}
	if err := cmds[1].Run(context.Background(), call); err == nil || !strings.Contains(err.Error(), "db:crash failed: internal error") {
		t.Fatalf("db:crash = %v, want an internal error", err)
	}
	if err := reg.SetEnabled("db", false); err != nil {
		t.Fatal(err)
	}
	if err := cmds[0].Run(context.Background(), call); err == nil || !strings.Contains(err.Error(), "plugin db is disabled") || ran != 1 {
		t.Fatalf("disabled db:create = %v, ran %d", err, ran)
	}
	if err := reg.SetEnabled("nope", false); !errors.Is(err, plugins.ErrNotFound) || err.Error() != "Plugin nope does not exist" {
		t.Fatalf("SetEnabled(nope) = %v", err)
	}
}

func TestExecutableCommands(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "hello", "subcommands/greet", `printf '%s|' "$@"; echo "by $PAAS_USER"; cat`, 0)
	if err := os.WriteFile(filepath.Join(dir, "hello", "subcommands", "greet.help"), []byte("args: APP NAME [--loud] [--times N]\nflags: --loud --times=\nGreet someone\nfrom an app.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script(t, dir, "hello", "subcommands/purge", "echo purging; exit 3", 0)
	script(t, dir, "hello", "subcommands/not-executable", "true", 0o644)
	script(t, dir, "hello", "subcommands/Bad_Name", "true", 0)
	reg := plugins.NewRegistry(newDir(dir, 10*time.Second), plugins.NewMemData(), nil)
	cmds := map[string]plugins.Command{}
	for _, c := range reg.Commands() {
		cmds[c.Name] = c
	}
	if len(cmds) != 2 {
		t.Fatalf("commands %v, want hello:greet and hello:purge", cmds)
	}
	greet, purge := cmds["hello:greet"], cmds["hello:purge"]
	if greet.Args != "APP NAME [--loud] [--times N]" || greet.Help != "Greet someone from an app." || !greet.App || greet.Admin ||
		!greet.Flags["--times"] || greet.Flags["--loud"] || len(greet.Flags) != 2 {
		t.Fatalf("hello:greet = %+v", greet)
	}
	if purge.App || !purge.Admin || purge.Help != "Added by the hello plugin" {
		t.Fatalf("hello:purge = %+v: without APP first it is for administrators", purge)
	}
	var out, errb syncBuffer
	call := &plugins.Call{
		ID: paas.Identity{Name: "alice"}, App: &paas.App{Name: "web"}, Args: []string{"$(id)", "two words"},
		Flags: map[string]string{"--times": "3", "--loud": ""}, Stdin: strings.NewReader("from stdin\n"), Out: &out, Err: &errb,
	}
	if err := greet.Run(context.Background(), call); err != nil {
		t.Fatal(err)
	}
	if want := "web|$(id)|two words|--loud|--times=3|by alice\nfrom stdin\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	err := purge.Run(context.Background(), &plugins.Call{Out: &out, Err: &errb})
	if err == nil || err.Error() != "hello:purge failed: exit status 3" {
		t.Fatalf("hello:purge = %v", err)
	}
	list, _ := reg.List()
	if len(list) != 1 || !slices.Equal(list[0].Commands, []string{"hello:greet", "hello:purge"}) {
		t.Fatalf("List = %+v", list)
	}
}
