package commands

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
)

func withReleases(e *env) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	e.store.rels = map[string][]*paas.Release{"bravo": {
		{App: "bravo", Version: 3, Image: paas.Image{Repository: "reg/bravo", Digest: "sha256:3333333333333333aaaa"}, Config: map[string]string{"B": "1"}, Processes: []paas.ProcessType{{Name: "web"}, {Name: "worker", Command: "w"}}, Scale: map[string]int{"web": 1, "worker": 0}, Commit: "cccccccccccccccc", Author: "bob", Reason: "rollback to v1", CreatedAt: at},
		{App: "bravo", Version: 2, Image: paas.Image{Repository: "reg/bravo", Digest: "sha256:2222222222222222"}, Author: "bob", Reason: "config:set \x1b[31mX", CreatedAt: at},
		{App: "bravo", Version: 1, Image: paas.Image{Repository: "reg/bravo", Digest: "sha256:1111111111111111"}, Author: "bob", Reason: "push abc", CreatedAt: at},
	}}
}

func TestReleaseCommands(t *testing.T) {
	tests := []struct {
		name      string
		id        paas.Identity
		args      []string
		stdin     string
		wantCode  int
		wantOut   []string
		wantErr   string
		wantCalls []string
	}{
		{name: "releases newest first", id: bob, args: []string{"releases", "bravo"}, wantOut: []string{"=====> bravo releases\n", "v3*", "333333333333", "rollback to v1", "v2 ", `config:set \x1b[31mX`, "v1 "}},
		{name: "releases json", id: bob, args: []string{"releases", "bravo", "--format", "json"}, wantOut: []string{`[{"version":3,"current":true,"image":"reg/bravo@sha256:3333333333333333aaaa","config_version":0,"config_keys":["B"]`}},
		{name: "releases of another user's app", id: alice, args: []string{"releases", "bravo"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
		{name: "releases:info", id: bob, args: []string{"releases:info", "bravo", "v3"}, wantOut: []string{"=====> bravo v3\n", "Formation:", "web=1 worker=0", "Config keys:", "B"}},
		{name: "releases:info missing", id: bob, args: []string{"releases:info", "bravo", "v9"}, wantCode: ExitError, wantErr: "release v9 of bravo does not exist"},
		{name: "rollback default", id: bob, args: []string{"rollback", "bravo"}, wantCalls: []string{"rollback bravo 0 by bob"}},
		{name: "rollback to v1", id: bob, args: []string{"rollback", "bravo", "v1"}, wantCalls: []string{"rollback bravo 1 by bob"}},
		{name: "rollback bad version", id: bob, args: []string{"rollback", "bravo", "v1;id"}, wantCode: ExitError, wantErr: `invalid release "v1;id"`},
		{name: "rollback two versions", id: bob, args: []string{"rollback", "bravo", "1", "2"}, wantCode: ExitError, wantErr: "at most one version"},
		{name: "scale", id: bob, args: []string{"ps:scale", "bravo", "web=3", "worker=2"}, wantCalls: []string{"scale bravo map[web:3 worker:2]"}},
		{name: "scale show", id: bob, args: []string{"ps:scale", "bravo"}, wantOut: []string{"web: 1", "worker: 0"}},
		{name: "scale bad", id: bob, args: []string{"ps:scale", "bravo", "web=-1"}, wantCode: ExitError, wantErr: "invalid formation"},
		{name: "scale twice", id: bob, args: []string{"ps:scale", "bravo", "web=1", "web=2"}, wantCode: ExitError, wantErr: "given twice"},
		{name: "scale show not deployed", id: alice, args: []string{"ps:scale", "alpha"}, wantOut: []string{"-----> Scaling for alpha\nproctype: qty\n--------: ---\nweb: 1\n"}},
		{name: "scale show json", id: bob, args: []string{"ps:scale", "bravo", "--format", "json"}, wantOut: []string{`[{"process_type":"web","quantity":1},{"process_type":"worker","quantity":0}]`}},
		{name: "scale --skip-deploy", id: bob, args: []string{"ps:scale", "--skip-deploy", "bravo", "worker=2"}, wantOut: []string{"Scaling bravo processes: worker=2 (applied at the next deploy)"}, wantCalls: []string{"formation bravo map[worker:2]"}},
		{name: "scale --skip-deploy before the first deploy", id: alice, args: []string{"ps:scale", "alpha", "--skip-deploy", "web=2"}, wantCalls: []string{"formation alpha map[web:2]"}},
		{name: "scale --skip-deploy without a formation", id: bob, args: []string{"ps:scale", "--skip-deploy", "bravo"}, wantCode: ExitError, wantErr: "--skip-deploy records a formation"},
		{name: "scale --skip-deploy refused", id: bob, args: []string{"ps:scale", "--skip-deploy", "bravo", "web=x"}, wantCode: ExitError, wantErr: "invalid formation"},
		{name: "restart", id: bob, args: []string{"ps:restart", "bravo"}, wantCalls: []string{"restart bravo"}},
		{name: "stop", id: bob, args: []string{"ps:stop", "bravo"}, wantCalls: []string{"stop bravo"}},
		{name: "start of a running app", id: bob, args: []string{"ps:start", "bravo"}, wantOut: []string{"is not stopped"}},
		{name: "rebuild", id: root, args: []string{"ps:rebuild", "bravo"}, wantCalls: []string{"rebuild bravo"}},
		{name: "restart one process type", id: bob, args: []string{"ps:restart", "bravo", "worker"}, wantCalls: []string{"restart bravo worker"}},
		{name: "restart two process types", id: bob, args: []string{"ps:restart", "bravo", "web", "worker"}, wantCode: ExitError, wantErr: "at most one process type"},
		{name: "restart a task", id: bob, args: []string{"ps:restart", "bravo", "web.1"}, wantCode: ExitError, wantErr: `invalid process type "web.1"`},
		{name: "stop extra args", id: bob, args: []string{"ps:stop", "bravo", "web"}, wantCode: ExitError, wantErr: "takes only the app name"},
		{name: "run", id: bob, args: []string{"run", "bravo", "--", "/bin/migrate", "--all"}, wantCalls: []string{`run bravo v3 ["/bin/migrate" "--all"]`}},
		{name: "run without command", id: bob, args: []string{"run", "bravo"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "run not deployed", id: alice, args: []string{"run", "alpha", "ls"}, wantCode: ExitError, wantErr: "has not been deployed"},
		{name: "checks:set", id: bob, args: []string{"checks:set", "bravo", "wait", "5"}, wantOut: []string{"Set checks wait to 5"}},
		{name: "checks:set unknown", id: bob, args: []string{"checks:set", "bravo", "speed", "5"}, wantCode: ExitError, wantErr: "unknown property"},
		{name: "checks:set too big", id: bob, args: []string{"checks:set", "bravo", "attempts", "101"}, wantCode: ExitError, wantErr: "attempts wants a whole number from 0 to 100"},
		{name: "checks:disable", id: bob, args: []string{"checks:disable", "bravo"}, wantOut: []string{"Checks disabled for every process type of bravo"}},
		{name: "checks:disable process types", id: bob, args: []string{"checks:disable", "bravo", "worker,clock"}, wantOut: []string{"Checks disabled for worker,clock of bravo"}},
		{name: "checks:skip bad list", id: bob, args: []string{"checks:skip", "bravo", "web,"}, wantCode: ExitError, wantErr: `invalid process type ""`},
		{name: "checks:enable two lists", id: bob, args: []string{"checks:enable", "bravo", "web", "worker"}, wantCode: ExitError, wantErr: "one comma-separated list"},
		{name: "checks:run", id: bob, args: []string{"checks:run", "bravo"}, wantOut: []string{"Running checks"}, wantCalls: []string{`checks bravo ""`}},
		{name: "checks:run one task", id: bob, args: []string{"checks:run", "bravo", "web.2"}, wantCalls: []string{`checks bravo "web.2"`}},
		{name: "checks:run bad task", id: bob, args: []string{"checks:run", "bravo", "web.x"}, wantCode: ExitError, wantErr: `invalid process "web.x"`},
		{name: "checks:run of another user's app", id: alice, args: []string{"checks:run", "bravo"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			withReleases(e)
			code, out, errOut := e.run(t, tc.id, tc.stdin, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errOut)
			}
			if strings.Join(e.releases.calls, "|") != strings.Join(tc.wantCalls, "|") {
				t.Errorf("calls %q, want %q", e.releases.calls, tc.wantCalls)
			}
		})
	}
}

func TestChecksSettingsPersist(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{"checks:set", "bravo", "wait", "5"}, {"checks:set", "bravo", "attempts", "7"}, {"checks:set", "bravo", "attempts"}, {"checks:skip", "bravo"}} {
		if code, out, errOut := e.run(t, bob, "", args...); code != 0 {
			t.Fatalf("%q: %d %s %s", args, code, out, errOut)
		}
	}
	_, out, _ := e.run(t, bob, "", "checks:report", "bravo", "--format", "json")
	for _, w := range []string{`"checks":"skipped (default check only)"`, `"checks-wait":"5"`, `"checks-attempts":"(default)"`} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %s: %s", w, out)
		}
	}
}

func TestChecksPerProcess(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{"checks:disable", "bravo"}, {"checks:enable", "bravo", "web"}, {"checks:skip", "bravo", "clock"}} {
		e.runIn(t, bob, "", ExitOK, args...)
	}
	out, _ := e.runIn(t, bob, "", ExitOK, "checks:report", "bravo")
	for _, w := range []string{`Checks disabled list: +_all_\n`, `Checks skipped list: +clock\n`, `Checks computed wait to retire: +30\n`} {
		if !regexp.MustCompile(w).MatchString(out) {
			t.Errorf("report lacks %q:\n%s", w, out)
		}
	}
	if out, _ := e.runIn(t, bob, "", ExitOK, "checks:report", "bravo", "--checks-skipped-list"); out != "clock\n" {
		t.Errorf("--checks-skipped-list = %q", out)
	}
	a, _ := e.store.App("bravo")
	if a.Checks.State("web") != paas.CheckEnabled || a.Checks.State("worker") != paas.CheckDisabled || a.Checks.State("clock") != paas.CheckSkipped {
		t.Errorf("stored settings %+v", a.Checks)
	}
	// A refused change changes nothing.
	e.runIn(t, bob, "", ExitError, "checks:skip", "bravo", "Web")
	if b, _ := e.store.App("bravo"); b.Checks.State("web") != paas.CheckEnabled {
		t.Errorf("refused command changed the settings: %+v", b.Checks)
	}
}

func TestRunExitCode(t *testing.T) {
	e := newEnv(t)
	withReleases(e)
	e.releases.code = 3
	code, _, errOut := e.run(t, bob, "input", "run", "bravo", "false")
	if code != 3 || errOut != "" {
		t.Fatalf("exit %d stderr %q, want the command's 3 and nothing printed", code, errOut)
	}
	if e.releases.run.Stdin == nil || e.releases.run.TTY != nil {
		t.Errorf("run options %+v: want stdin passed, no TTY", e.releases.run)
	}
}
