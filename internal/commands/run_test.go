package commands

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"paas/internal/paas"
)

// ttyInput is a session's stdin when the client asked for a terminal (ssh -t).
type ttyInput struct{ io.Reader }

func (ttyInput) Terminal() (*paas.Terminal, bool) {
	return &paas.Terminal{Term: "xterm", Width: 80, Height: 24}, true
}

func TestRunArguments(t *testing.T) {
	tests := []struct {
		name      string
		id        paas.Identity
		args      []string
		tty       bool
		wantCode  int
		wantOut   string
		wantErr   string
		wantCalls []string
		wantEnv   []string
		wantTTY   bool
	}{
		{name: "flags of the command are the command's", args: []string{"run", "bravo", "sh", "-c", "exit 3"},
			wantCalls: []string{`run bravo v3 ["sh" "-c" "exit 3"]`}},
		{name: "a command's --help is the command's", args: []string{"run", "bravo", "ls", "--help"},
			wantCalls: []string{`run bravo v3 ["ls" "--help"]`}},
		{name: "-- then the command", args: []string{"run", "bravo", "--", "/bin/migrate", "--all"},
			wantCalls: []string{`run bravo v3 ["/bin/migrate" "--all"]`}},
		{name: "-- inside the command stays", args: []string{"run", "bravo", "echo", "--", "-e"},
			wantCalls: []string{`run bravo v3 ["echo" "--" "-e"]`}},
		{name: "-e and --env after the app", args: []string{"run", "bravo", "-e", "A=1", "--env", "B=x=y", "--env=C=", "env"},
			wantCalls: []string{`run bravo v3 ["env"]`}, wantEnv: []string{"A=1", "B=x=y", "C="}},
		{name: "-e before the app, as Dokku writes it", args: []string{"run", "-e", "A=1", "bravo", "env", "-e", "B=2"},
			wantCalls: []string{`run bravo v3 ["env" "-e" "B=2"]`}, wantEnv: []string{"A=1"}},
		{name: "a terminal when the client has one", args: []string{"run", "bravo", "sh"}, tty: true,
			wantCalls: []string{`run bravo v3 ["sh"]`}, wantTTY: true},
		{name: "--no-tty even with a terminal", args: []string{"run", "bravo", "--no-tty", "sh"}, tty: true,
			wantCalls: []string{`run bravo v3 ["sh"]`}},
		{name: "--help of run", args: []string{"run", "bravo", "--help"},
			wantOut: "Usage: run APP [-e K=V]... [--no-tty] [--detach] [--] CMD [ARGS...]"},
		{name: "unknown flag before the command", args: []string{"run", "bravo", "--bogus", "ls"},
			wantCode: ExitError, wantErr: "unknown flag --bogus for run"},
		{name: "-e without a value", args: []string{"run", "bravo", "ls", "-e"},
			wantCalls: []string{`run bravo v3 ["ls" "-e"]`}},
		{name: "-e at the end before a command", args: []string{"run", "bravo", "-e"},
			wantCode: ExitError, wantErr: "flag -e needs a value"},
		{name: "-e without =", args: []string{"run", "bravo", "-e", "NOVALUE", "ls"},
			wantCode: ExitError, wantErr: "-e wants KEY=VALUE"},
		{name: "-e with a bad key", args: []string{"run", "bravo", "-e", "1X=2", "ls"},
			wantCode: ExitError, wantErr: "invalid config key"},
		{name: "no command", args: []string{"run", "bravo"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "only flags", args: []string{"run", "bravo", "-e", "A=1"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "unknown app", args: []string{"run", "nosuch", "ls"}, wantCode: ExitNotFound, wantErr: "App nosuch does not exist"},
		{name: "another user's app", id: alice, args: []string{"run", "bravo", "ls"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
		{name: "not deployed", id: alice, args: []string{"run", "alpha", "ls"}, wantCode: ExitError, wantErr: "has not been deployed"},
		{name: "run --detach", args: []string{"run", "bravo", "--detach", "--", "/bin/x", "-q"},
			wantOut: "-----> Started paas-bravo-run-abc123 (v3): /bin/x -q", wantCalls: []string{`detach bravo v3 ["/bin/x" "-q"]`}},
		{name: "run:detached prints the name", args: []string{"run:detached", "bravo", "-e", "A=1", "sleep", "60"},
			wantOut: "paas-bravo-run-abc123\n", wantCalls: []string{`detach bravo v3 ["sleep" "60"]`}, wantEnv: []string{"A=1"}},
		{name: "run:detached --force-tty", args: []string{"run:detached", "bravo", "--force-tty", "top"},
			wantOut: "paas-bravo-run-abc123\n", wantCalls: []string{`detach bravo v3 ["top"]`}, wantTTY: true},
		{name: "run:detached both tty flags", args: []string{"run:detached", "bravo", "--force-tty", "--no-tty", "top"},
			wantCode: ExitError, wantErr: "exclude each other"},
		{name: "run:detached unknown flag", args: []string{"run:detached", "bravo", "-x", "top"},
			wantCode: ExitError, wantErr: "unknown flag -x for run:detached"},
		{name: "run:list", args: []string{"run:list", "bravo"},
			wantOut: "=====> bravo run containers\nNAME", wantCalls: []string{"list bravo"}},
		{name: "run:list json", args: []string{"run:list", "bravo", "--format", "json"},
			wantOut:   `[{"name":"paas-bravo-run-abc123","state":"running","command":"sleep 60","created_at":"2023-11-14T22:13:20Z","release":3,"detached":true}]`,
			wantCalls: []string{"list bravo"}},
		{name: "run:list bad format", args: []string{"run:list", "bravo", "--format", "yaml"}, wantCode: ExitError, wantErr: `unknown format "yaml"`},
		{name: "run:list unknown app", args: []string{"run:list", "nosuch"}, wantCode: ExitNotFound, wantErr: "App nosuch does not exist"},
		{name: "run:logs of one task", args: []string{"run:logs", "bravo", "paas-bravo-run-abc123", "-t", "-n", "5", "-q"},
			wantCalls: []string{"logs bravo {Name:paas-bravo-run-abc123 Follow:true Tail:5 Raw:true}"}},
		{name: "run:logs --container", args: []string{"run:logs", "bravo", "--container", "paas-bravo-run-abc123"},
			wantCalls: []string{"logs bravo {Name:paas-bravo-run-abc123 Follow:false Tail:100 Raw:false}"}},
		{name: "run:logs of all", args: []string{"run:logs", "bravo"},
			wantCalls: []string{"logs bravo {Name: Follow:false Tail:100 Raw:false}"}},
		{name: "run:logs unknown task", args: []string{"run:logs", "bravo", "nope"}, wantCode: ExitError, wantErr: "bravo has no one-off task nope"},
		{name: "run:logs two names", args: []string{"run:logs", "bravo", "a", "--container", "b"}, wantCode: ExitError, wantErr: "name one task"},
		{name: "run:logs bad -n", args: []string{"run:logs", "bravo", "-n", "x"}, wantCode: ExitError, wantErr: "-n wants a number"},
		{name: "run:stop one", args: []string{"run:stop", "bravo", "paas-bravo-run-abc123"},
			wantOut: "-----> Stopped paas-bravo-run-abc123\n", wantCalls: []string{`stop-run bravo "paas-bravo-run-abc123"`}},
		{name: "run:stop all", args: []string{"run:stop", "bravo"},
			wantOut: "-----> Stopped paas-bravo-run-abc123\n-----> Stopped paas-bravo-run-def456\n", wantCalls: []string{`stop-run bravo ""`}},
		{name: "run:stop unknown task", args: []string{"run:stop", "bravo", "nope"}, wantCode: ExitError, wantErr: "bravo has no one-off task nope"},
		{name: "run:stop unknown app", args: []string{"run:stop", "nosuch", "x"}, wantCode: ExitNotFound, wantErr: "App nosuch does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			withReleases(e)
			id := tc.id
			if id.Name == "" {
				id = bob
			}
			var stdin io.Reader = strings.NewReader("")
			if tc.tty {
				stdin = ttyInput{stdin}
			}
			var out, errb strings.Builder
			code := e.d.RunCommand(context.Background(), id, tc.args, stdin, &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, out.String())
			}
			if !strings.Contains(errb.String(), tc.wantErr) || tc.wantErr == "" && errb.Len() > 0 {
				t.Errorf("stderr %q, want %q", errb.String(), tc.wantErr)
			}
			if !slices.Equal(e.releases.calls, tc.wantCalls) {
				t.Errorf("calls %q, want %q", e.releases.calls, tc.wantCalls)
			}
			if !slices.Equal(e.releases.run.Env, tc.wantEnv) {
				t.Errorf("env %q, want %q", e.releases.run.Env, tc.wantEnv)
			}
			if got := e.releases.run.TTY != nil; got != tc.wantTTY {
				t.Errorf("tty %v, want %v", got, tc.wantTTY)
			}
		})
	}
}
