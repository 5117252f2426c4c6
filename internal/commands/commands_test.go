package commands

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/paas"
)

func TestRunCommand(t *testing.T) {
	tests := []struct {
		name     string
		id       paas.Identity
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout
		wantErr  []string // substrings of stderr
		notOut   []string // must not be in stdout
	}{
		{
			name: "unknown command", id: alice, args: []string{"no:such-command"},
			wantCode: ExitError,
			wantErr:  []string{" !     `no:such-command` is not a paas command.", "See `help`"},
		},
		{
			name: "unknown command name is sanitized", id: alice, args: []string{"\x1b[2Jx"},
			wantCode: ExitError,
			wantErr:  []string{"`\\x1b[2Jx` is not a paas command"},
		},
		{
			name: "no args shows help", id: alice, args: nil,
			wantOut: []string{"Usage: ssh paas COMMAND", "apps:list", "config:set"},
			notOut:  []string{"ssh-keys:add"},
		},
		{
			name: "help shows admin commands to admins", id: root, args: []string{"help"},
			wantOut: []string{"ssh-keys:add", "apps:list"},
		},
		{
			name: "--help alone is help", id: alice, args: []string{"--help"},
			wantOut: []string{"Usage: ssh paas COMMAND"},
		},
		{
			name: "help of one command", id: alice, args: []string{"help", "config:get"},
			wantOut: []string{"Usage: config:get (APP|--global) KEY", "--quoted"},
		},
		{
			name: "help of unknown command", id: alice, args: []string{"help", "nope"},
			wantCode: ExitError, wantErr: []string{"`nope` is not a paas command"},
		},
		{
			name: "version", id: alice, args: []string{"--version"},
			wantOut: []string{"paas 1.2.3\n"},
		},
		{
			name: "--help on a command prints usage", id: alice, args: []string{"config:set", "--help"},
			wantOut: []string{"Usage: config:set [--no-restart] [--encoded] (APP|--global) KEY=VALUE...", "Flags:", "    --encoded\n", "    --no-restart\n"},
		},
		{
			name: "-h on a command prints usage without the app", id: alice, args: []string{"apps:list", "-h"},
			wantOut: []string{"Usage: apps:list", "    --format VALUE\n"},
		},
		{
			name: "missing app argument", id: alice, args: []string{"config:show"},
			wantCode: ExitError, wantErr: []string{" !     please specify an app name", " !     Usage: config:show (APP|--global)"},
		},
		{
			name: "missing positional after app", id: alice, args: []string{"config:get", "alpha"},
			wantCode: ExitError, wantErr: []string{"missing arguments", "Usage: config:get (APP|--global) KEY"},
		},
		{
			name: "missing positional without app", id: alice, args: []string{"apps:create"},
			wantCode: ExitError, wantErr: []string{"missing arguments", "Usage: apps:create APP"},
		},
		{
			name: "invalid app name", id: alice, args: []string{"apps:exists", "../x"},
			wantCode: ExitError, wantErr: []string{`invalid app name "../x"`},
		},
		{
			name: "missing app exits 20", id: alice, args: []string{"config:show", "nope"},
			wantCode: ExitNotFound, wantErr: []string{" !     App nope does not exist"},
		},
		{
			name: "own app", id: alice, args: []string{"apps:exists", "alpha"},
			wantOut: []string{"App alpha exists"},
		},
		{
			name: "someone else's app looks missing", id: alice, args: []string{"apps:exists", "bravo"},
			wantCode: ExitNotFound, wantErr: []string{"App bravo does not exist"},
		},
		{
			name: "someone else's config is not shown", id: bob, args: []string{"config:show", "alpha"},
			wantCode: ExitNotFound, wantErr: []string{"App alpha does not exist"}, notOut: []string{"GREETING"},
		},
		{
			name: "admin uses anyone's app", id: root, args: []string{"config:show", "alpha"},
			wantOut: []string{"=====> alpha env vars", "GREETING:  hi"},
		},
		{
			name: "identity without a name owns nothing", id: paas.Identity{}, args: []string{"apps:exists", "alpha"},
			wantCode: ExitNotFound,
		},
		{
			name: "admin-only command refused", id: alice, args: []string{"ssh-keys:list"},
			wantCode: ExitError, wantErr: []string{"ssh-keys:list is for administrators only"},
		},
		{
			name: "admin-only command refused before reading args", id: alice, args: []string{"ssh-keys:remove", "bob"},
			wantCode: ExitError, wantErr: []string{"for administrators only"},
		},
		{
			name: "unknown flag", id: alice, args: []string{"apps:list", "--bogus"},
			wantCode: ExitError, wantErr: []string{"unknown flag --bogus for apps:list", "Usage: apps:list"},
		},
		{
			name: "a flag with a control character is refused, shown quoted", id: alice, args: []string{"apps:list", "--\x1b]0;x"},
			wantCode: ExitError, wantErr: []string{`argument "--\x1b]0;x" holds a control character (\x1b)`},
		},
		{
			name: "unknown flag", id: alice, args: []string{"apps:list", "--bogus"},
			wantCode: ExitError, wantErr: []string{`unknown flag --bogus`},
		},
		{
			name: "flag without its value", id: alice, args: []string{"apps:list", "--format"},
			wantCode: ExitError, wantErr: []string{"flag --format needs a value"},
		},
		{
			name: "unknown format", id: alice, args: []string{"apps:list", "--format", "yaml"},
			wantCode: ExitError, wantErr: []string{`unknown format "yaml"`},
		},
		{
			name: "flag after the app", id: alice, args: []string{"config:show", "alpha", "--format=json"},
			wantOut: []string{`{"EMPTY":"","GREETING":"hi"}`},
		},
		{
			name: "double dash ends flags", id: alice, args: []string{"apps:create", "--", "-x"},
			wantCode: ExitError, wantErr: []string{`invalid app name "-x"`},
		},
		{
			name: "config:get prints the value", id: alice, args: []string{"config:get", "alpha", "GREETING"},
			wantOut: []string{"hi\n"},
		},
		{
			name: "config:get of an empty value", id: alice, args: []string{"config:get", "alpha", "EMPTY"},
			wantOut: []string{"\n"},
		},
		{
			name: "config:get --quoted", id: alice, args: []string{"config:get", "--quoted", "alpha", "GREETING"},
			wantOut: []string{"'hi'\n"},
		},
		{
			name: "config:get of a missing key exits 1 silently", id: alice, args: []string{"config:get", "alpha", "MISSING"},
			wantCode: ExitError,
		},
		{
			name: "config:get of a bad key", id: alice, args: []string{"config:get", "alpha", "1BAD"},
			wantCode: ExitError, wantErr: []string{`invalid config key "1BAD"`},
		},
		{
			name: "config:keys", id: alice, args: []string{"config:keys", "alpha"},
			wantOut: []string{"EMPTY\nGREETING\n"},
		},
		{
			name: "config:export default format", id: alice, args: []string{"config:export", "alpha"},
			wantOut: []string{"export EMPTY=''\nexport GREETING='hi'\n"},
		},
		{
			name: "config:export unknown format", id: alice, args: []string{"config:export", "--format", "xml", "alpha"},
			wantCode: ExitError, wantErr: []string{`unknown format "xml"`},
		},
		{
			name: "apps:create taken name", id: alice, args: []string{"apps:create", "bravo"},
			wantCode: ExitError, wantErr: []string{"Name is already taken: bravo"},
		},
		{
			name: "apps:destroy needs --force", id: alice, args: []string{"apps:destroy", "alpha"},
			wantCode: ExitError, wantErr: []string{"apps:destroy alpha --force"},
		},
		{
			name: "apps:report", id: alice, args: []string{"apps:report", "alpha"},
			wantOut: []string{"=====> alpha app information", "App owner:", "alice", "App dir:", "/data/repos/alpha.git", "http://alpha.example.test"},
		},
		{
			name: "logs of an undeployed app", id: alice, args: []string{"logs", "alpha"},
			wantCode: ExitError, wantErr: []string{"App alpha has not been deployed"},
		},
		{
			name: "logs with a bad -n", id: bob, args: []string{"logs", "bravo", "-n", "x"},
			wantCode: ExitError, wantErr: []string{`-n wants a number of lines, got "x"`},
		},
		{
			name: "logs", id: bob, args: []string{"logs", "bravo", "-n", "5", "-p", "web"},
			wantOut: []string{"bravo log line\n"},
		},
		{
			name: "ps:report", id: bob, args: []string{"ps:report", "bravo"},
			wantOut: []string{"Status web:", "1/1 running", "Status web 1:", "running on node2\n"},
		},
		{
			name: "report single-value flag", id: alice, args: []string{"apps:report", "alpha", "--app-owner"},
			wantOut: []string{"alice\n"},
		},
		{
			name: "report unknown single-value flag", id: alice, args: []string{"apps:report", "alpha", "--app-colour"},
			wantCode: ExitError, wantErr: []string{"unknown flag --app-colour"},
		},
		{
			name: "global --app", id: alice, args: []string{"--app", "alpha", "config:get", "GREETING"},
			wantOut: []string{"hi\n"},
		},
		{
			name: "global --app=", id: alice, args: []string{"--app=alpha", "apps:report", "--app-deploy-branch"},
			wantOut: []string{"main\n"},
		},
		{
			name: "global --app of an app one may not use", id: alice, args: []string{"--app", "bravo", "apps:report"},
			wantCode: ExitNotFound, wantErr: []string{"App bravo does not exist"},
		},
		{
			name: "global --app on a command without an app", id: alice, args: []string{"--app", "alpha", "apps:list"},
			wantCode: ExitError, wantErr: []string{"apps:list does not take an app"},
		},
		{
			name: "global --app without a name", id: alice, args: []string{"--app"},
			wantCode: ExitError, wantErr: []string{"--app needs an app name"},
		},
		{
			name: "global --quiet drops header lines", id: alice, args: []string{"--quiet", "apps:report", "alpha"},
			wantOut: []string{"App owner:"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code, out, errOut := e.run(t, tc.id, "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q does not contain %q", out, w)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(out, w) {
					t.Errorf("stdout %q contains %q", out, w)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not contain %q", errOut, w)
				}
			}
			if tc.wantCode == ExitOK && errOut != "" {
				t.Errorf("stderr on success: %q", errOut)
			}
			if strings.ContainsRune(errOut, 0x1b) || strings.ContainsRune(out, 0x1b) {
				t.Errorf("raw ESC in output: stdout %q stderr %q", out, errOut)
			}
		})
	}
}

func TestConfigGetMissingKeyPrintsNothing(t *testing.T) {
	e := newEnv(t)
	code, out, errOut := e.run(t, alice, "", "config:get", "alpha", "MISSING")
	if code != ExitError || out != "" || errOut != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and no output", code, out, errOut)
	}
}

func TestAppsList(t *testing.T) {
	tests := []struct {
		name string
		id   paas.Identity
		want []string
	}{
		{"owner sees own apps", alice, []string{"alpha"}},
		{"other owner", bob, []string{"bravo"}},
		{"user without apps", paas.Identity{Name: "carol"}, nil},
		{"admin sees all", root, []string{"alpha", "bravo"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code, out, errOut := e.run(t, tc.id, "", "apps:list")
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if lines[0] != "=====> My Apps" {
				t.Fatalf("header %q", lines[0])
			}
			if got := lines[1:]; !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("apps %q, want %q", got, tc.want)
			}

			code, out, errOut = e.run(t, tc.id, "", "apps:list", "--format", "json")
			if code != ExitOK {
				t.Fatalf("json: exit %d: %s", code, errOut)
			}
			// Dokku's shape: a list of names, [] when there is none
			var names []string
			if err := json.Unmarshal([]byte(out), &names); err != nil {
				t.Fatalf("apps:list --format json is not a JSON list of names: %v\n%s", err, out)
			}
			if names == nil {
				t.Fatalf("json list is null, want [] at least: %s", out)
			}
			if len(names) == 0 {
				names = nil
			}
			if !slices.Equal(names, tc.want) {
				t.Fatalf("json apps %q, want %q", names, tc.want)
			}
		})
	}
}

func TestAppsCreateAndDestroy(t *testing.T) {
	t.Run("create", func(t *testing.T) {
		e := newEnv(t)
		code, out, errOut := e.run(t, bob, "", "apps:create", "charlie")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "Creating charlie") {
			t.Fatalf("stdout %q", out)
		}
		a, err := e.store.App("charlie")
		if err != nil || a.Owner != "bob" || a.CreatedAt.IsZero() {
			t.Fatalf("created app %+v, %v", a, err)
		}
		if !slices.Equal(e.repos.created, []string{"charlie"}) {
			t.Fatalf("repos created %q", e.repos.created)
		}
	})
	t.Run("create undone when the repository fails", func(t *testing.T) {
		e := newEnv(t)
		e.repos.createErr = errBoom
		code, _, errOut := e.run(t, bob, "", "apps:create", "charlie")
		if code != ExitError || !strings.Contains(errOut, "create repository: boom") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		if _, err := e.store.App("charlie"); err == nil {
			t.Fatal("app left behind after the repository failed")
		}
	})
	t.Run("destroy", func(t *testing.T) {
		e := newEnv(t)
		code, out, errOut := e.run(t, alice, "", "apps:destroy", "alpha", "--force")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "Destroying alpha") {
			t.Fatalf("stdout %q", out)
		}
		for what, got := range map[string][]string{
			"locked": e.pipeline.locked, "services": e.runtime.removed, "store": e.store.deleted,
			"repos": e.repos.removed, "images": e.images.deleted,
		} {
			if !slices.Equal(got, []string{"alpha"}) {
				t.Errorf("%s removed %q, want [alpha]", what, got)
			}
		}
	})
	t.Run("destroy someone else's app", func(t *testing.T) {
		e := newEnv(t)
		code, _, _ := e.run(t, alice, "", "apps:destroy", "bravo", "--force")
		if code != ExitNotFound {
			t.Fatalf("exit %d, want 20", code)
		}
		if len(e.runtime.removed) != 0 || len(e.store.deleted) != 0 {
			t.Fatalf("removed %q / %q", e.runtime.removed, e.store.deleted)
		}
	})
}

func TestConfigSet(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tricky := "it's \"x\" a=b\nline2 é $HOME `id`"
	tests := []struct {
		name        string
		args        []string
		wantCode    int
		wantErr     string
		wantCfg     map[string]string // config of alpha afterwards
		wantReason  string
		wantRestart bool
	}{
		{
			name:    "equals in the value",
			args:    []string{"config:set", "alpha", "URL=postgres://u:p@h/db?sslmode=require&x=y"},
			wantCfg: map[string]string{"GREETING": "hi", "EMPTY": "", "URL": "postgres://u:p@h/db?sslmode=require&x=y"}, wantReason: "config:set URL", wantRestart: true,
		},
		{
			name:    "empty value",
			args:    []string{"config:set", "alpha", "GREETING="},
			wantCfg: map[string]string{"GREETING": "", "EMPTY": ""}, wantReason: "config:set GREETING", wantRestart: true,
		},
		{
			name:    "several keys and --no-restart",
			args:    []string{"config:set", "--no-restart", "alpha", "B=2", "A=1"},
			wantCfg: map[string]string{"GREETING": "hi", "EMPTY": "", "A": "1", "B": "2"}, wantReason: "config:set B A", wantRestart: false,
		},
		{
			name:    "duplicate key keeps the last value, named once",
			args:    []string{"config:set", "alpha", "A=1", "A=2"},
			wantCfg: map[string]string{"GREETING": "hi", "EMPTY": "", "A": "2"}, wantReason: "config:set A", wantRestart: true,
		},
		{
			name:    "encoded values",
			args:    []string{"config:set", "--encoded", "alpha", "TRICKY=" + b64(tricky), "PLAIN=" + b64("abc")},
			wantCfg: map[string]string{"GREETING": "hi", "EMPTY": "", "TRICKY": tricky, "PLAIN": "abc"}, wantReason: "config:set TRICKY PLAIN", wantRestart: true,
		},
		{
			name:     "encoded value not base64",
			args:     []string{"config:set", "--encoded", "alpha", "A=***"},
			wantCode: ExitError, wantErr: "value of A is not base64",
		},
		{
			name:     "encoded value not UTF-8 changes nothing",
			args:     []string{"config:set", "--encoded", "alpha", "GOOD=" + b64("ok"), "BIN=" + b64("\xff\xfe")},
			wantCode: ExitError, wantErr: "the value of BIN is not UTF-8 text",
		},
		{
			name:     "encoded value with a NUL byte",
			args:     []string{"config:set", "--encoded", "alpha", "NUL=" + b64("a\x00b")},
			wantCode: ExitError, wantErr: "the value of NUL contains a NUL byte",
		},
		{
			name:     "plain value not UTF-8",
			args:     []string{"config:set", "alpha", "BIN=\xff"},
			wantCode: ExitError, wantErr: "the value of BIN is not UTF-8 text",
		},
		{
			name:     "bad key",
			args:     []string{"config:set", "alpha", "1BAD=x"},
			wantCode: ExitError, wantErr: `invalid config key "1BAD"`,
		},
		{
			name:     "bad key after a good one changes nothing",
			args:     []string{"config:set", "alpha", "GOOD=1", "BAD-KEY=x"},
			wantCode: ExitError, wantErr: `invalid config key "BAD-KEY"`,
		},
		{
			name:     "empty key",
			args:     []string{"config:set", "alpha", "=x"},
			wantCode: ExitError, wantErr: `invalid config key ""`,
		},
		{
			name:     "no equals sign",
			args:     []string{"config:set", "alpha", "NOEQUALS"},
			wantCode: ExitError, wantErr: "Invalid env pair: NOEQUALS",
		},
		{
			name:     "no pairs",
			args:     []string{"config:set", "alpha"},
			wantCode: ExitError, wantErr: "missing arguments",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code, out, errOut := e.run(t, alice, "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("stderr %q does not contain %q", errOut, tc.wantErr)
			}
			a, err := e.store.App("alpha")
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantCode != ExitOK {
				if len(e.pipeline.calls) != 0 {
					t.Fatalf("SetConfig called on error: %+v", e.pipeline.calls)
				}
				if want := map[string]string{"GREETING": "hi", "EMPTY": ""}; !maps.Equal(a.Config, want) {
					t.Fatalf("config changed on error: %q", a.Config)
				}
				return
			}
			if !maps.Equal(a.Config, tc.wantCfg) {
				t.Fatalf("config %q, want %q", a.Config, tc.wantCfg)
			}
			want := []setConfigCall{{app: "alpha", who: "alice", reason: tc.wantReason, restart: tc.wantRestart}}
			if !slices.Equal(e.pipeline.calls, want) {
				t.Fatalf("SetConfig calls %+v, want %+v", e.pipeline.calls, want)
			}
			if !strings.Contains(out, "-----> Setting config vars") {
				t.Fatalf("stdout %q", out)
			}
			if strings.Contains(out, "\n"+"line2") {
				t.Fatalf("a value's newline reached the terminal raw: %q", out)
			}
		})
	}
}

func TestConfigSetPipelineError(t *testing.T) {
	e := newEnv(t)
	e.pipeline.err = errBoom
	code, _, errOut := e.run(t, alice, "", "config:set", "alpha", "A=1")
	if code != ExitError || !strings.Contains(errOut, " !     boom") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if a, _ := e.store.App("alpha"); a.Config["A"] != "" {
		t.Fatalf("config stored despite the error: %q", a.Config)
	}
}

func TestConfigUnset(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantCfg  map[string]string
	}{
		{"one key", []string{"config:unset", "alpha", "GREETING"}, ExitOK, map[string]string{"EMPTY": ""}},
		{"missing key is fine", []string{"config:unset", "--no-restart", "alpha", "NOPE"}, ExitOK, map[string]string{"GREETING": "hi", "EMPTY": ""}},
		{"bad key changes nothing", []string{"config:unset", "alpha", "GREETING", "1BAD"}, ExitError, map[string]string{"GREETING": "hi", "EMPTY": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code, _, errOut := e.run(t, alice, "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %s", code, tc.wantCode, errOut)
			}
			a, _ := e.store.App("alpha")
			if !maps.Equal(a.Config, tc.wantCfg) {
				t.Fatalf("config %q, want %q", a.Config, tc.wantCfg)
			}
		})
	}
}

// trickyConfig has a value with every character a quoting mistake would break.
var trickyConfig = map[string]string{
	"TRICKY": "it's \"double\" a=b\nline2 ünï ☃ $HOME ${X} `id` \\ back\\slash \t tab 'end",
	"PLAIN":  "abc",
	"EMPTY":  "",
	"NL_END": "ends with newlines\n\n",
}

// sh evaluates script in sh, feeding input on stdin, and returns stdout.
func sh(t *testing.T, script, input string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdin = strings.NewReader(input)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "X=expanded"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v\n%s\ninput:\n%s", script, err, stderr.String(), input)
	}
	return string(out)
}

func TestExportConfigShellFormats(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sh is required in CI")
		}
		t.Skip("no sh")
	}
	// printenv-free: print each variable NUL-terminated so any byte survives.
	printVars := `; for k in EMPTY NL_END PLAIN TRICKY; do eval "printf '%s\0' \"\$$k\""; done`
	tests := []struct {
		name   string
		format string
		script string
	}{
		{"exports", "exports", `eval "$(cat)"` + printVars},
		{"shell", "shell", `eval "$(cat)"` + printVars},
		{"shell via env", "shell", `eval "export $(cat)"; sh -c '` + strings.ReplaceAll(strings.TrimPrefix(printVars, "; "), "'", `'\''`) + `'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := exportConfig(&buf, tc.format, trickyConfig); err != nil {
				t.Fatal(err)
			}
			got := strings.Split(sh(t, tc.script, buf.String()), "\x00")
			want := []string{trickyConfig["EMPTY"], trickyConfig["NL_END"], trickyConfig["PLAIN"], trickyConfig["TRICKY"], ""}
			if !slices.Equal(got, want) {
				t.Fatalf("evaluated %q\nfrom %s\nwant %q", got, buf.String(), want)
			}
		})
	}
}

func TestExportConfigDockerArgs(t *testing.T) {
	var buf bytes.Buffer
	if err := exportConfig(&buf, "docker-args", trickyConfig); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") < 1 || !strings.HasSuffix(buf.String(), "\n") {
		t.Fatalf("docker-args output %q", buf.String())
	}
	// The words a shell splits the line into are the --env=K=V arguments.
	got := strings.Split(sh(t, `eval "set -- $(cat)"; for a do printf '%s\0' "$a"; done`, buf.String()), "\x00")
	var want []string
	for _, k := range paas.SortedKeys(trickyConfig) {
		want = append(want, "--env="+k+"="+trickyConfig[k])
	}
	want = append(want, "")
	if !slices.Equal(got, want) {
		t.Fatalf("arguments %q\nwant %q", got, want)
	}
}

func TestExportConfigFormats(t *testing.T) {
	tests := []struct {
		name   string
		format string
		check  func(t *testing.T, out string)
	}{
		{"json", "json", func(t *testing.T, out string) {
			var got map[string]string
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if !maps.Equal(got, trickyConfig) {
				t.Fatalf("json %q, want %q", got, trickyConfig)
			}
			if strings.Contains(out, `\u003c`) || strings.Count(out, "\n") != 1 {
				t.Fatalf("json should be one unescaped line: %q", out)
			}
		}},
		{"json-list", "json-list", func(t *testing.T, out string) {
			var got []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			keys := paas.SortedKeys(trickyConfig)
			if len(got) != len(keys) {
				t.Fatalf("json-list has %d entries, want %d", len(got), len(keys))
			}
			for i, k := range keys {
				if got[i].Name != k || got[i].Value != trickyConfig[k] {
					t.Fatalf("entry %d = %+v, want %s=%q", i, got[i], k, trickyConfig[k])
				}
			}
		}},
		{"envfile", "envfile", func(t *testing.T, out string) {
			want := `EMPTY=""` + "\n" +
				`NL_END="ends with newlines\n\n"` + "\n" +
				`PLAIN="abc"` + "\n" +
				`TRICKY="it's \"double\" a=b\nline2 ünï ☃ \$HOME \${X} \` + "`id\\` \\\\ back\\\\slash \t tab 'end\"\n"
			if out != want {
				t.Fatalf("envfile\n%q\nwant\n%q", out, want)
			}
			if strings.Count(out, "\n") != len(trickyConfig) {
				t.Fatalf("envfile has a raw newline inside a value: %q", out)
			}
		}},
		{"exports is one line per key", "exports", func(t *testing.T, out string) {
			if !strings.HasPrefix(out, "export EMPTY=''\nexport NL_END=") {
				t.Fatalf("exports %q", out)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := exportConfig(&buf, tc.format, trickyConfig); err != nil {
				t.Fatal(err)
			}
			tc.check(t, buf.String())
		})
	}
	t.Run("empty config", func(t *testing.T) {
		for _, f := range exportFormats {
			var buf bytes.Buffer
			if err := exportConfig(&buf, f, map[string]string{}); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if strings.HasPrefix(f, "json") && !json.Valid(buf.Bytes()) {
				t.Fatalf("%s of empty config is not JSON: %q", f, buf.String())
			}
		}
	})
	t.Run("unknown format", func(t *testing.T) {
		var buf bytes.Buffer
		err := exportConfig(&buf, "yaml\x1b", trickyConfig)
		if err == nil || !strings.Contains(err.Error(), "unknown format") || strings.ContainsRune(err.Error(), 0x1b) {
			t.Fatalf("err = %v, want a sanitized unknown format error", err)
		}
		if buf.Len() != 0 {
			t.Fatalf("wrote %q for an unknown format", buf.String())
		}
	})
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "hello world", "hello world"},
		{"unicode kept", "ünï ☃ 日本", "ünï ☃ 日本"},
		{"quotes kept as they are", `it's "x"`, `it's "x"`},
		{"ANSI colour", "\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"title escape", "\x1b]0;pwned\x07", `\x1b]0;pwned\a`},
		{"newline", "a\nb", `a\nb`},
		{"carriage return", "a\rb", `a\rb`},
		{"tab", "a\tb", `a\tb`},
		{"NUL", "a\x00b", `a\x00b`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"control char with quotes around", "\"\x1b\"", `\"\x1b\"`},
		{"C1 CSI", "\u009b31mred", `\u009b31mred`},
		{"C1 OSC", "\u009d0;pwned\u009c", `\u009d0;pwned\u009c`},
		{"raw C1 byte, invalid UTF-8", "\x9b31m", `\x9b31m`},
		{"invalid UTF-8", "a\xffb", `a\xffb`},
		{"bidi override", "abc\u202edcba", `abc\u202edcba`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sanitize(tc.in)
			if got != tc.want {
				t.Fatalf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("sanitize(%q) = %q is not valid UTF-8", tc.in, got)
			}
			for _, r := range got {
				if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x202e {
					t.Fatalf("sanitize(%q) = %q still has control char %U", tc.in, got, r)
				}
			}
		})
	}
}

func TestConfigShowSanitizesValues(t *testing.T) {
	e := newEnv(t)
	e.store.apps["alpha"].Config["EVIL"] = "\x1b[2J\x1b]0;owned\x07"
	code, out, errOut := e.run(t, alice, "", "config:show", "alpha")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.ContainsRune(out, 0x1b) || !strings.Contains(out, `\x1b[2J`) {
		t.Fatalf("config:show printed %q", out)
	}
}

func newPublicKey(t *testing.T, comment string) (gossh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(key)))
	if comment != "" {
		line += " " + comment
	}
	return key, line
}

func TestSSHKeysAdd(t *testing.T) {
	key, line := newPublicKey(t, "alice@laptop")
	_, other := newPublicKey(t, "")
	normalized := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(key)))
	tests := []struct {
		name     string
		id       paas.Identity
		keyName  string
		stdin    string
		wantCode int
		wantErr  string
		wantKey  bool
	}{
		{name: "real key", id: root, keyName: "alice", stdin: line + "\n", wantKey: true},
		{name: "CRLF and blank lines around", id: root, keyName: "alice", stdin: "\r\n" + line + "\r\n\r\n", wantKey: true},
		{name: "with options", id: root, keyName: "alice", stdin: `no-pty,command="echo hi" ` + line, wantKey: true},
		{name: "garbage", id: root, keyName: "alice", stdin: "not a key at all\n", wantCode: ExitError, wantErr: "invalid public key"},
		{name: "truncated base64", id: root, keyName: "alice", stdin: line[:40] + "\n", wantCode: ExitError, wantErr: "invalid public key"},
		{name: "two lines", id: root, keyName: "alice", stdin: line + "\n" + other + "\n", wantCode: ExitError, wantErr: "expected exactly one public key"},
		{name: "empty stdin", id: root, keyName: "alice", stdin: "", wantCode: ExitError, wantErr: "expected exactly one public key"},
		{name: "private key material", id: root, keyName: "alice", stdin: "-----BEGIN OPENSSH PRIVATE KEY-----\n", wantCode: ExitError, wantErr: "invalid public key"},
		{name: "bad name", id: root, keyName: "../alice", stdin: line, wantCode: ExitError, wantErr: `invalid key name "../alice"`},
		{name: "not an admin", id: alice, keyName: "alice", stdin: line, wantCode: ExitError, wantErr: "for administrators only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code, out, errOut := e.run(t, tc.id, tc.stdin, "ssh-keys:add", tc.keyName)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("stderr %q does not contain %q", errOut, tc.wantErr)
			}
			keys, _ := e.store.Keys()
			if !tc.wantKey {
				if len(keys) != 0 {
					t.Fatalf("key stored on error: %+v", keys)
				}
				return
			}
			fp := gossh.FingerprintSHA256(key)
			if out != fp+"\n" {
				t.Fatalf("stdout %q, want the fingerprint %q", out, fp)
			}
			if len(keys) != 1 {
				t.Fatalf("keys %+v", keys)
			}
			k := keys[0]
			if k.Name != tc.keyName || k.Fingerprint != fp || k.Key != normalized || k.AddedBy != "root" || k.AddedAt.IsZero() {
				t.Fatalf("stored key %+v, want name %s fingerprint %s key %q added by root", k, tc.keyName, fp, normalized)
			}
		})
	}
}

func TestSSHKeysLifecycle(t *testing.T) {
	e := newEnv(t)
	_, line := newPublicKey(t, "")
	if code, _, errOut := e.run(t, root, "", "ssh-keys:list"); code != ExitError || !strings.Contains(errOut, "No public keys found.") {
		t.Fatalf("empty list: exit %d, %q", code, errOut)
	}
	if code, _, errOut := e.run(t, root, line, "ssh-keys:add", "alice"); code != ExitOK {
		t.Fatalf("add: exit %d: %s", code, errOut)
	}
	steps := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"same key under another name", line, []string{"ssh-keys:add", "mallory"}, ExitError, "", "ssh key already exists"},
		{"list", "", []string{"ssh-keys:list"}, ExitOK, `NAME="alice"`, ""},
		{"list json", "", []string{"ssh-keys:list", "--format", "json"}, ExitOK, `"name":"alice"`, ""},
		{"remove", "", []string{"ssh-keys:remove", "alice"}, ExitOK, "Removed key alice", ""},
		{"remove again", "", []string{"ssh-keys:remove", "alice"}, ExitError, "", "no key named alice"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, out, errOut := e.run(t, root, st.stdin, st.args...)
			if code != st.wantCode || !strings.Contains(out, st.wantOut) || !strings.Contains(errOut, st.wantErr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, st.wantCode, out, st.wantOut, errOut, st.wantErr)
			}
		})
	}
}

// TestDispatcherMore checks the commands SetMore adds are read at each use:
// one added later runs and is listed, one removed is unknown again, and a
// registered command keeps its name.
func TestDispatcherMore(t *testing.T) {
	say := func(name, text string) *Command {
		return &Command{Name: name, Help: "says " + text, Run: func(_ context.Context, c *Call) error {
			fmt.Fprintln(c.Out, text)
			return nil
		}}
	}
	var more []*Command
	d := NewDispatcher(nil, "test", []*Command{say("hello:builtin", "registered")})
	d.SetMore(func() []*Command { return more })
	run := func(args ...string) (int, string) {
		var out, errb strings.Builder
		code := d.RunCommand(context.Background(), alice, args, strings.NewReader(""), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("hello:later"); code != ExitError || !strings.Contains(out, "is not a paas command") {
		t.Fatalf("before it exists: exit %d, %q", code, out)
	}
	more = []*Command{say("hello:later", "added"), say("hello:builtin", "shadowed")}
	if code, out := run("hello:later"); code != ExitOK || out != "added\n" {
		t.Fatalf("once added: exit %d, %q", code, out)
	}
	if code, out := run("hello:builtin"); code != ExitOK || out != "registered\n" {
		t.Fatalf("a registered name: exit %d, %q, want the registered command", code, out)
	}
	if _, out := run("help"); !strings.Contains(out, "hello:later") || !strings.Contains(out, "says registered") || strings.Contains(out, "says shadowed") {
		t.Fatalf("help lists:\n%s", out)
	}
	if code, out := run("hello:later", "--help"); code != ExitOK || !strings.Contains(out, "says added") {
		t.Fatalf("hello:later --help: exit %d, %q", code, out)
	}
	more = nil
	if code, _ := run("hello:later"); code != ExitError {
		t.Fatalf("once removed: exit %d, want %d", code, ExitError)
	}
}

func TestQuietLeavesOutHeaders(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{{"apps:report", "alpha"}, {"--quiet", "apps:report", "alpha"}} {
		code, out, errOut := e.run(t, alice, "", args...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		quiet := args[0] == "--quiet"
		if strings.Contains(out, "=====> ") == quiet || !strings.Contains(out, "App owner:") {
			t.Fatalf("%v (quiet %v):\n%s", args, quiet, out)
		}
	}
}
