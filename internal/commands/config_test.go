package commands

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"

	"paas/internal/paas"
)

func TestConfigGlobalAndMerged(t *testing.T) {
	tests := []struct {
		name       string
		id         paas.Identity
		global     map[string]string // before
		args       []string
		stdin      string
		wantCode   int
		wantOut    string // exact stdout, when not ""
		wantIn     []string
		wantErr    string
		wantGlobal map[string]string // after; nil: unchanged
		wantApp    map[string]string // alpha's config after; nil: unchanged
		wantCalls  []setConfigCall
	}{
		{
			name: "bare config is config:show", id: alice, args: []string{"config", "alpha"},
			wantOut: "=====> alpha env vars\nEMPTY:     \nGREETING:  hi\n",
		},
		{
			name: "--merged shows the global vars under the app's", id: alice, global: map[string]string{"GREETING": "global", "SMTP": "mail"},
			args:    []string{"config:show", "--merged", "alpha"},
			wantOut: "=====> alpha env vars\nEMPTY:     \nGREETING:  hi\nSMTP:      mail\n",
		},
		{
			name: "--global shows the global vars", id: alice, global: map[string]string{"SMTP": "mail"},
			args: []string{"config:show", "--global"}, wantOut: "=====> global env vars\nSMTP:  mail\n",
		},
		{
			name: "config:get --global", id: alice, global: map[string]string{"SMTP": "mail"},
			args: []string{"config:get", "--global", "SMTP"}, wantOut: "mail\n",
		},
		{
			name: "config:get --merged takes the global value the app lacks", id: alice, global: map[string]string{"SMTP": "mail"},
			args: []string{"config:get", "--merged", "alpha", "SMTP"}, wantOut: "mail\n",
		},
		{
			name: "config:get without --merged does not", id: alice, global: map[string]string{"SMTP": "mail"},
			args: []string{"config:get", "alpha", "SMTP"}, wantCode: ExitError,
		},
		{
			name: "config:get with two keys", id: alice, args: []string{"config:get", "alpha", "GREETING", "EMPTY"},
			wantCode: ExitError, wantErr: "Unexpected argument(s): EMPTY",
		},
		{
			name: "config:keys --merged", id: alice, global: map[string]string{"SMTP": "mail"},
			args: []string{"config:keys", "--merged", "alpha"}, wantOut: "EMPTY\nGREETING\nSMTP\n",
		},
		{
			name: "config:export --merged", id: alice, global: map[string]string{"SMTP": "mail", "GREETING": "global"},
			args: []string{"config:export", "--merged", "--format", "shell", "alpha"}, wantOut: "EMPTY='' GREETING='hi' SMTP='mail' ",
		},
		{
			name: "config:set --global by an administrator: stored, nothing rolled out", id: root, global: map[string]string{"A": "1"},
			args: []string{"config:set", "--global", "B=2"}, wantIn: []string{"-----> Setting config vars", "B:  2", "next release"},
			wantGlobal: map[string]string{"A": "1", "B": "2"},
		},
		{
			name: "config:set --global by a user is refused", id: alice,
			args: []string{"config:set", "--global", "B=2"}, wantCode: ExitError, wantErr: "--global config is for administrators only",
		},
		{
			name: "config:set --global with a bad key changes nothing", id: root, global: map[string]string{"A": "1"},
			args: []string{"config:set", "--global", "B=2", "1X=3"}, wantCode: ExitError, wantErr: `invalid config key "1X"`,
		},
		{
			name: "config:unset --global", id: root, global: map[string]string{"A": "1", "B": "2"},
			args: []string{"config:unset", "--global", "A", "NOPE"}, wantIn: []string{"Unsetting A", "Skipping NOPE, it is not set in the environment"},
			wantGlobal: map[string]string{"B": "2"},
		},
		{
			name: "config:unset --global by a user is refused", id: alice, global: map[string]string{"A": "1"},
			args: []string{"config:unset", "--global", "A"}, wantCode: ExitError, wantErr: "administrators only",
		},
		{
			name: "config:unset of keys that are not set rolls nothing out", id: alice,
			args:   []string{"config:unset", "alpha", "NOPE"},
			wantIn: []string{"-----> Skipping NOPE, it is not set in the environment"},
		},
		{
			name: "config:unset names a key once", id: alice,
			args: []string{"config:unset", "alpha", "GREETING", "GREETING"}, wantOut: "-----> Unsetting GREETING\n",
			wantApp: map[string]string{"EMPTY": ""}, wantCalls: []setConfigCall{{"alpha", "alice", "config:unset GREETING", true}},
		},
		{
			name: "config:clear", id: alice, args: []string{"config:clear", "--no-restart", "alpha"},
			wantOut: "-----> Unsetting EMPTY\n-----> Unsetting GREETING\n",
			wantApp: map[string]string{}, wantCalls: []setConfigCall{{"alpha", "alice", "config:clear", false}},
		},
		{
			name: "config:clear --global", id: root, global: map[string]string{"A": "1"},
			args: []string{"config:clear", "--global"}, wantGlobal: map[string]string{},
		},
		{
			name: "config:clear takes no key", id: alice, args: []string{"config:clear", "alpha", "GREETING"},
			wantCode: ExitError, wantErr: "Unexpected argument(s): GREETING",
		},
		{
			name: "config:import of an env file", id: alice, args: []string{"config:import", "alpha", "-"},
			stdin:     "# comment\nexport A=1\nB='single $X'\nC=\"multi\\nline \\\"q\\\"\"\nGREETING=hello # trailing comment\n",
			wantIn:    []string{"-----> Reading config vars from stdin", "-----> Setting config vars"},
			wantApp:   map[string]string{"EMPTY": "", "GREETING": "hello", "A": "1", "B": "single $X", "C": "multi\nline \"q\""},
			wantCalls: []setConfigCall{{"alpha", "alice", "config:import A B C GREETING", true}},
		},
		{
			name: "config:import --replace", id: alice, args: []string{"config:import", "--replace", "alpha", "-"}, stdin: "A=1\n",
			wantApp:   map[string]string{"A": "1"},
			wantCalls: []setConfigCall{{"alpha", "alice", "config:import --replace A", true}},
		},
		{
			name: "config:import --format json", id: alice, args: []string{"config:import", "--format", "json", "alpha", "-"}, stdin: `{"A":"x y","B":"2"}`,
			wantApp:   map[string]string{"EMPTY": "", "GREETING": "hi", "A": "x y", "B": "2"},
			wantCalls: []setConfigCall{{"alpha", "alice", "config:import A B", true}},
		},
		{
			name: "config:import --global", id: root, global: map[string]string{"A": "0", "Z": "z"}, args: []string{"config:import", "--global", "-"}, stdin: "A=1\n",
			wantGlobal: map[string]string{"A": "1", "Z": "z"},
		},
		{
			name: "config:import with a bad key changes nothing", id: alice, args: []string{"config:import", "alpha", "-"}, stdin: "A=1\nBAD-KEY=2\n",
			wantCode: ExitError, wantErr: `invalid config key "BAD-KEY"`,
		},
		{
			name: "config:import of nothing", id: alice, args: []string{"config:import", "alpha", "-"}, stdin: "# nothing\n",
			wantCode: ExitError, wantErr: "No config vars to set",
		},
		{
			name: "config:import reads stdin only", id: alice, args: []string{"config:import", "alpha", "/etc/passwd"},
			wantCode: ExitError, wantErr: "config:import reads stdin only",
		},
		{
			name: "config:import of bad JSON", id: alice, args: []string{"config:import", "--format", "json", "alpha", "-"}, stdin: `{"A":1}`,
			wantCode: ExitError, wantErr: "want an object of string values",
		},
		{
			name: "config:import of an unknown format", id: alice, args: []string{"config:import", "--format", "yaml", "alpha", "-"}, stdin: "A=1",
			wantCode: ExitError, wantErr: `unknown format "yaml"`,
		},
		{
			name: "config:import of too much", id: alice, args: []string{"config:import", "alpha", "-"}, stdin: "A=" + strings.Repeat("x", maxImport),
			wantCode: ExitError, wantErr: "more than 1048576 bytes",
		},
		{
			name: "config:set without a pair", id: alice, args: []string{"config:set", "alpha", "NOEQUALS"},
			wantCode: ExitError, wantErr: "Invalid env pair: NOEQUALS",
		},
		{
			name: "--global on a command that has no global form", id: alice, args: []string{"apps:destroy", "--global"},
			wantCode: ExitError, wantErr: "unknown flag --global",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.store.global = maps.Clone(tc.global)
			code, out, errOut := e.run(t, tc.id, tc.stdin, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			if tc.wantOut != "" && out != tc.wantOut {
				t.Errorf("stdout\n%q\nwant\n%q", out, tc.wantOut)
			}
			for _, w := range tc.wantIn {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q lacks %q", out, w)
				}
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tc.wantErr)
			}
			wantGlobal := tc.wantGlobal
			if wantGlobal == nil {
				wantGlobal = nonNil(tc.global)
			}
			if got, _ := e.store.GlobalConfig(); !maps.Equal(got, wantGlobal) {
				t.Errorf("global config %q, want %q", got, wantGlobal)
			}
			wantApp := tc.wantApp
			if wantApp == nil {
				wantApp = map[string]string{"GREETING": "hi", "EMPTY": ""}
			}
			if a, _ := e.store.App("alpha"); !maps.Equal(a.Config, wantApp) {
				t.Errorf("alpha's config %q, want %q", a.Config, wantApp)
			}
			if !slices.Equal(e.pipeline.calls, tc.wantCalls) {
				t.Errorf("SetConfig calls %+v, want %+v", e.pipeline.calls, tc.wantCalls)
			}
		})
	}
}

// Dokku's exact bytes for the quoting formats (plugins/config's Export).
func TestExportConfigDokkuQuoting(t *testing.T) {
	cfg := map[string]string{"A": "it's", "B": "two words $X `id`", "C": "line1\nline2", "N": "42", "Z": "007"}
	tests := []struct{ format, want string }{
		{"exports", "export A='it'\\''s'\nexport B='two words $X `id`'\nexport C='line1\nline2'\nexport N='42'\nexport Z='007'\n"},
		{"docker-args", "--env=A='it'\\''s' --env=B='two words $X `id`' --env=C='line1\nline2' --env=N='42' --env=Z='007'\n"},
		{"shell", "A='it'\\''s' B='two words $X `id`' C='line1\nline2' N='42' Z='007' "},
		{"envfile", "A=\"it's\"\nB=\"two words \\$X \\`id\\`\"\nC=\"line1\\nline2\"\nN=42\nZ=\"007\"\n"},
		{"docker-args-keys", "--env=A --env=B --env=C --env=N --env=Z\n"},
		{"pack-keys", "--env A --env B --env C --env N --env Z\n"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := exportConfig(&buf, tc.format, cfg); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", buf.String(), tc.want)
			}
		})
	}
}

// What config:export --format envfile writes, config:import reads back
// byte for byte.
func TestConfigEnvfileRoundTrip(t *testing.T) {
	cfg := maps.Clone(trickyConfig)
	cfg["BANG"] = "wow! $$ \\n literal"
	cfg["LEADING_ZERO"] = "007"
	cfg["SPACES"] = "  padded  "
	cfg["CRLF"] = "a\r\nb"
	cfg["QUOTES"] = `"quoted at both ends"`
	cfg["BACKSLASH_END"] = `ends with \`
	cfg["SINGLE"] = `'single'`
	var buf bytes.Buffer
	if err := exportConfig(&buf, "envfile", cfg); err != nil {
		t.Fatal(err)
	}
	got, err := parseImport("envfile", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, cfg) {
		t.Fatalf("read back\n%q\nwant\n%q\nfrom\n%s", got, cfg, buf.String())
	}
}

func TestParseEnvfile(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
		wantErr  string
	}{
		{"bare values", "A=1\nB = two words  \nC=\n", map[string]string{"A": "1", "B": "two words", "C": ""}, ""},
		{"comments and blank lines", "# top\n\n  # indented\nA=1 # trailing\nB=x#not-a-comment\n", map[string]string{"A": "1", "B": "x#not-a-comment"}, ""},
		{"export prefix", "export A=1\n", map[string]string{"A": "1"}, ""},
		{"single quotes are literal", `A='$X \n "q"'` + "\n", map[string]string{"A": `$X \n "q"`}, ""},
		{"double quotes with escapes", `A="l1\nl2\t\"q\" \$X \! \\"`, map[string]string{"A": "l1\nl2\t\"q\" $X ! \\"}, ""},
		{"no variable expansion", `A="$HOME ${X}"`, map[string]string{"A": "$HOME ${X}"}, ""},
		{"multi-line double quotes", "A=\"l1\nl2\"\nB=2", map[string]string{"A": "l1\nl2", "B": "2"}, ""},
		{"CRLF lines", "A=1\r\nB=\"x\"\r\n", map[string]string{"A": "1", "B": "x"}, ""},
		{"last one wins", "A=1\nA=2\n", map[string]string{"A": "2"}, ""},
		{"no equals", "A=1\nJUNK\n", nil, `env file line 2: want KEY=value, got "JUNK"`},
		{"bad key", "1A=1\n", nil, `env file line 1: invalid config key "1A"`},
		{"unterminated double quote", "A=1\nB=\"open\n", nil, "env file line 2: unterminated double-quoted value of B"},
		{"unterminated single quote", "B='open", nil, "unterminated single-quoted value of B"},
		{"text after a quoted value", `A="x" y`, nil, `unexpected "y" after the value of A`},
		{"line numbers count multi-line values", "A=\"1\n2\"\nB", nil, "env file line 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnvfile(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
