package plugins_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/plugins"
)

// script writes an executable (mode 0755 unless given) at dir/plugin/trigger.
func script(t *testing.T, dir, plugin, trigger, body string, mode os.FileMode) {
	t.Helper()
	if mode == 0 {
		mode = 0o755
	}
	p := filepath.Join(dir, plugin, trigger)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), mode); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is safe for the two pipes of a trigger writing at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newDir(path string, timeout time.Duration) *plugins.Dir {
	return plugins.NewDir(path, timeout, slog.New(slog.DiscardHandler))
}

func TestTrigger(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sh is required in CI")
		}
		t.Skip("no /bin/sh")
	}
	// Each script prints "<plugin>:<trigger> <args>" and the cwd's base name.
	echo := `printf '%s:%s' "$(basename "$PWD")" "$(basename "$0")"; for a do printf ' [%s]' "$a"; done; echo`
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		trigger string
		args    []string
		wantOut string
		wantErr []string // substrings of the error; nil for no error
	}{
		{
			name: "runs in plugin name order with args",
			setup: func(t *testing.T, dir string) {
				script(t, dir, "20-second", "post-deploy", echo, 0)
				script(t, dir, "10-first", "post-deploy", echo, 0)
				script(t, dir, "30-third", "post-deploy", echo, 0)
				script(t, dir, "15-other-trigger", "pre-build", echo, 0)
			},
			trigger: "post-deploy", args: []string{"hello", "v3"},
			wantOut: "10-first:post-deploy [hello] [v3]\n20-second:post-deploy [hello] [v3]\n30-third:post-deploy [hello] [v3]\n",
		},
		{
			name: "stderr goes to the output too",
			setup: func(t *testing.T, dir string) {
				script(t, dir, "a", "post-deploy", "echo to-stderr >&2", 0)
			},
			trigger: "post-deploy", wantOut: "to-stderr\n",
		},
		{
			name: "failing pre trigger stops at once",
			setup: func(t *testing.T, dir string) {
				script(t, dir, "a", "pre-build", "echo a ran", 0)
				script(t, dir, "b", "pre-build", "echo 'b says no'; exit 3", 0)
				script(t, dir, "c", "pre-build", "echo c ran", 0)
			},
			trigger: "pre-build", args: []string{"hello"},
			wantOut: "a ran\nb says no\n",
			wantErr: []string{"plugin b: pre-build failed", "exit status 3"},
		},
		{
			name: "failing post triggers run the rest and join",
			setup: func(t *testing.T, dir string) {
				script(t, dir, "a", "post-deploy", "exit 1", 0)
				script(t, dir, "b", "post-deploy", "echo b ran", 0)
				script(t, dir, "c", "post-deploy", "exit 2", 0)
				script(t, dir, "d", "post-deploy", "echo d ran", 0)
			},
			trigger: "post-deploy",
			wantOut: "b ran\nd ran\n",
			wantErr: []string{"plugin a: post-deploy failed: exit status 1", "plugin c: post-deploy failed: exit status 2"},
		},
		{
			name: "non-executable files, dirs and loose files ignored",
			setup: func(t *testing.T, dir string) {
				script(t, dir, "a", "post-deploy", "echo not executable; exit 1", 0o644)
				if err := os.MkdirAll(filepath.Join(dir, "b", "post-deploy"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "post-deploy"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				script(t, dir, "c", "post-deploy", "echo c ran", 0)
			},
			trigger: "post-deploy",
			wantOut: "c ran\n",
		},
		{
			name:    "no plugin has the trigger",
			setup:   func(t *testing.T, dir string) { script(t, dir, "a", "post-deploy", "exit 1", 0) },
			trigger: "pre-build",
		},
		{
			name: "arguments are not interpolated by a shell",
			setup: func(t *testing.T, dir string) {
				script(t, dir, "a", "post-deploy", `for a do printf '<%s>' "$a"; done; echo`, 0)
			},
			trigger: "post-deploy",
			args:    []string{"$(touch pwned)", "`id`", "a;b", "it's", `"dq"`, "*", "$HOME", "two words", "", "line\nbreak"},
			wantOut: "<$(touch pwned)><`id`><a;b><it's><\"dq\"><*><$HOME><two words><><line\nbreak>\n",
		},
		{
			name: "runs in its plugin dir",
			setup: func(t *testing.T, dir string) {
				script(t, dir, "withdata", "post-deploy", "cat data.txt", 0)
				if err := os.WriteFile(filepath.Join(dir, "withdata", "data.txt"), []byte("local data\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			trigger: "post-deploy", wantOut: "local data\n",
		},
		{
			name: "missing interpreter",
			setup: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "a", "post-deploy")
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			trigger: "post-deploy",
			wantErr: []string{"plugin a: post-deploy failed"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			var out syncBuffer
			err := newDir(dir, 10*time.Second).Trigger(context.Background(), tc.trigger, tc.args, &out)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Trigger = %v\noutput: %s", err, out.String())
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Trigger = %v, want error containing %q", err, w)
				}
			}
			if got := out.String(); got != tc.wantOut {
				t.Fatalf("output %q, want %q", got, tc.wantOut)
			}
			if _, err := os.Stat(filepath.Join(dir, "a", "pwned")); err == nil {
				t.Fatal("an argument was run by a shell")
			}
		})
	}
}

func TestTriggerTimeout(t *testing.T) {
	tests := []struct {
		name    string
		trigger string
		wantRan bool // whether the plugin after the slow one runs
	}{
		{"pre trigger stops", "pre-build", false},
		{"post trigger goes on", "post-deploy", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// exec: the shell becomes sleep, so the kill ends the whole trigger.
			script(t, dir, "a-slow", tc.trigger, "echo started; exec sleep 30", 0)
			script(t, dir, "b-next", tc.trigger, "echo next ran", 0)
			var out syncBuffer
			start := time.Now()
			err := newDir(dir, time.Second).Trigger(context.Background(), tc.trigger, nil, &out)
			if err == nil || !strings.Contains(err.Error(), "plugin a-slow: "+tc.trigger+" timed out after 1s") {
				t.Fatalf("Trigger = %v, want a timeout of a-slow", err)
			}
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Fatalf("Trigger took %v", elapsed)
			}
			if ran := strings.Contains(out.String(), "next ran"); ran != tc.wantRan {
				t.Fatalf("output %q: next plugin ran %v, want %v", out.String(), ran, tc.wantRan)
			}
			if !strings.HasPrefix(out.String(), "started\n") {
				t.Fatalf("output %q", out.String())
			}
		})
	}
}

func TestTriggerCancelled(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "a", "post-deploy", "echo ran", 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out syncBuffer
	err := newDir(dir, time.Minute).Trigger(ctx, "post-deploy", nil, &out)
	if err == nil {
		t.Fatalf("Trigger with a cancelled context succeeded, output %q", out.String())
	}
	if !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "plugin a") {
		t.Fatalf("Trigger = %v", err)
	}
}

func TestTriggerNoPlugins(t *testing.T) {
	tests := []struct {
		name string
		path func(t *testing.T) string
	}{
		{"missing dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }},
		{"empty path", func(*testing.T) string { return "" }},
		{"empty dir", func(t *testing.T) string { return t.TempDir() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			if err := newDir(tc.path(t), 0).Trigger(context.Background(), "pre-build", []string{"x"}, &out); err != nil {
				t.Fatalf("Trigger = %v", err)
			}
			if out.String() != "" {
				t.Fatalf("output %q", out.String())
			}
		})
	}
	t.Run("path is a file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := newDir(p, 0).Trigger(context.Background(), "pre-build", nil, &syncBuffer{}); err == nil {
			t.Fatal("Trigger over a file succeeded")
		}
	})
}
