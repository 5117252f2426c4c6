package commands

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// terminalSafe reports whether s can go to a terminal: valid UTF-8, no ESC,
// no C1 control, no other control but newline.
func terminalSafe(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r < 0xa0) || r == 0x202e {
			return false
		}
	}
	return true
}

// FuzzRunCommand drives the command-line parser and dispatcher with arbitrary
// argument vectors (NUL-separated): no panic, a Dokku exit code, and error
// output that is always " !     "-prefixed and safe for a terminal.
// Seeds: f.Add below and testdata/fuzz/FuzzRunCommand.
func FuzzRunCommand(f *testing.F) {
	for _, s := range []string{
		"apps:list", "apps:list\x00--format\x00json", "config:set\x00alpha\x00A=1", "config:get\x00alpha\x00GREETING\x00--quoted",
		"config:show\x00../../etc", "apps:create\x00a;id", "logs\x00alpha\x00-n", "help\x00\x1b[2J", "--help", "config:set\x00--encoded\x00alpha\x00K=!!",
		"apps:destroy\x00bravo\x00--force", "\u009b31m", "config:export\x00--format=\x00alpha", "ssh-keys:add\x00x", "apps:report\x00alpha\x00--format\x00yaml",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		e := newEnv(t)
		code, _, errOut := e.run(t, alice, "", args...)
		if code != ExitOK && code != ExitError && code != ExitNotFound {
			t.Fatalf("exit code %d", code)
		}
		if !terminalSafe(errOut) {
			t.Fatalf("stderr is not terminal-safe: %q", errOut)
		}
		for _, l := range strings.Split(strings.TrimRight(errOut, "\n"), "\n") {
			if l != "" && !strings.HasPrefix(l, " !     ") {
				t.Fatalf("stderr line without the error prefix: %q", l)
			}
		}
		// alice never reaches bob's app, whatever the arguments.
		if a, err := e.store.App("bravo"); err != nil || a.Owner != "bob" || len(a.Config) != 0 {
			t.Fatalf("bravo changed by alice: %+v %v", a, err)
		}
	})
}

// FuzzConfigSet drives config parsing (KEY=VALUE, --encoded base64): a value
// that is accepted reads back byte for byte, through config:get and the JSON
// export, and config:show never replays it raw.
func FuzzConfigSet(f *testing.F) {
	for _, s := range []struct {
		k, v    string
		encoded bool
	}{
		{"A", "1", false}, {"URL", "postgres://u:p@h/db?x=1&y=2", false}, {"E", "", false}, {"Q", `it's "q" $HOME ` + "`id`", false},
		{"ANSI", "\x1b[31mred", false}, {"C1", "\u009b2J", false}, {"NL", "a\nb", false}, {"B", base64.StdEncoding.EncodeToString([]byte("\x00\xff")), true},
		{"1BAD", "x", false}, {"A=B", "c", false}, {"", "x", false}, {"K", "!!", true},
	} {
		f.Add(s.k, s.v, s.encoded)
	}
	f.Fuzz(func(t *testing.T, key, value string, encoded bool) {
		e := newEnv(t)
		args := []string{"config:set"}
		if encoded {
			args = append(args, "--encoded")
		}
		args = append(args, "alpha", key+"="+value)
		code, out, errOut := e.run(t, alice, "", args...)
		if !terminalSafe(out) || !terminalSafe(errOut) {
			t.Fatalf("config:set output is not terminal-safe: %q %q", out, errOut)
		}
		// The argument is cut at its first "=".
		key, value, _ = strings.Cut(key+"="+value, "=")
		want := value
		if encoded {
			dec, err := base64.StdEncoding.DecodeString(value)
			if err != nil {
				if code == ExitOK {
					t.Fatalf("bad base64 %q accepted", value)
				}
				return
			}
			want = string(dec)
		}
		if code != ExitOK {
			if code != ExitError {
				t.Fatalf("exit %d", code)
			}
			return
		}
		a, _ := e.store.App("alpha")
		if got, ok := a.Config[key]; !ok || got != want {
			t.Fatalf("stored %q=%q, want %q", key, got, want)
		}
		_, got, _ := e.run(t, alice, "", "config:get", "alpha", key)
		if got != want+"\n" {
			t.Fatalf("config:get = %q, want %q", got, want+"\n")
		}
		_, js, _ := e.run(t, alice, "", "config:export", "--format", "json", "alpha")
		var m map[string]string
		if err := json.Unmarshal([]byte(js), &m); err != nil || (utf8.ValidString(want) && m[key] != want) {
			t.Fatalf("json export %q: %v", js, err)
		}
		_, show, _ := e.run(t, alice, "", "config:show", "alpha")
		if !terminalSafe(show) {
			t.Fatalf("config:show is not terminal-safe: %q", show)
		}
	})
}
