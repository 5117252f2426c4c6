package commands

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/scheduler"
)

func TestProcessCommands(t *testing.T) {
	tests := []struct {
		name      string
		id        paas.Identity
		args      []string
		wantCode  int
		wantOut   []string
		notOut    []string
		wantErr   string
		wantCalls []string
		wantPath  string // alpha's procfile-path after
	}{
		{name: "ps:set procfile-path", id: alice, args: []string{"ps:set", "alpha", "procfile-path", "./.paas/Procfile"}, wantOut: []string{"Setting procfile-path to .paas/Procfile for alpha"}, wantPath: ".paas/Procfile"},
		{name: "ps:set procfile-path Procfile is the default", id: alice, args: []string{"ps:set", "alpha", "procfile-path", "Procfile"}, wantOut: []string{"Unsetting procfile-path"}},
		{name: "ps:set procfile-path outside the repository", id: alice, args: []string{"ps:set", "alpha", "procfile-path", "../../etc/passwd"}, wantCode: ExitError, wantErr: "invalid procfile-path"},
		{name: "ps:set absolute procfile-path", id: alice, args: []string{"ps:set", "alpha", "procfile-path", "/etc/passwd"}, wantCode: ExitError, wantErr: "relative to the root of the repository"},
		{name: "ps:set procfile-path with a control character", id: alice, args: []string{"ps:set", "alpha", "procfile-path", "a\x1b[2Jb/../../x"}, wantCode: ExitError, wantErr: `\x1b[2Jb`},
		{name: "ps:set unknown property", id: alice, args: []string{"ps:set", "alpha", "colour", "red"}, wantCode: ExitError, wantErr: `unknown property "colour"`},
		{name: "ps:set a Dokku property paas has not", id: alice, args: []string{"ps:set", "alpha", "restart-policy", "always"}, wantCode: ExitError, wantErr: "no ps property restart-policy"},
		{name: "ps:set --global", id: root, args: []string{"ps:set", "--global", "procfile-path", "x"}, wantCode: ExitError, wantErr: "unknown flag --global for ps:set"},
		{name: "ps:set too many", id: alice, args: []string{"ps:set", "alpha", "procfile-path", "a", "b"}, wantCode: ExitError, wantErr: "at most one value"},
		{name: "ps:set of another user's app", id: bob, args: []string{"ps:set", "alpha", "procfile-path", "x"}, wantCode: ExitNotFound, wantErr: "App alpha does not exist"},
		{name: "ps:set without property", id: alice, args: []string{"ps:set", "alpha"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "ps:report procfile path", id: alice, args: []string{"ps:report", "alpha", "--ps-computed-procfile-path"}, wantOut: []string{"Procfile\n"}},
		{name: "ps:report deployed flag", id: bob, args: []string{"ps:report", "bravo", "--deployed"}, wantOut: []string{"true\n"}, notOut: []string{"Release"}},
		{name: "ps:report status flag", id: bob, args: []string{"ps:report", "bravo", "--status-web"}, wantOut: []string{"1/1 running\n"}},
		{name: "ps:report unknown flag", id: bob, args: []string{"ps:report", "bravo", "--colour"}, wantCode: ExitError, wantErr: "unknown flag --colour"},
		{name: "ps:report json", id: bob, args: []string{"ps:report", "bravo", "--format", "json"}, wantOut: []string{`"computed-procfile-path":"Procfile"`, `"processes":[{"process":"web"`}},
		{name: "ps:inspect masks config values", id: bob, args: []string{"ps:inspect", "bravo"}, wantOut: []string{`"SECRET=XXXXXX"`, `"PORT=5000"`, `"PATH=/bin"`, `"EMPTY=XXXXXX"`, `"TOKEN=XXXXXX"`, `"Size": 12345678901234567890`, "\n    {\n        \"Config\": {"}, notOut: []string{"hunter2", "abc"}},
		{name: "ps:inspect not deployed", id: alice, args: []string{"ps:inspect", "alpha"}, wantCode: ExitError, wantErr: "has not been deployed"},
		{name: "ps:inspect of another user's app", id: alice, args: []string{"ps:inspect", "bravo"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
		{name: "ps:retire one app", id: bob, args: []string{"ps:retire", "bravo"}, wantOut: []string{"Retiring old containers", "bravo: 1 leftover service(s) removed"}, wantCalls: []string{"retire bravo"}},
		{name: "ps:retire every app one may use", id: bob, args: []string{"ps:retire"}, wantCalls: []string{"retire bravo"}},
		{name: "ps:retire as an administrator", id: root, args: []string{"ps:retire"}, wantCalls: []string{"retire alpha", "retire bravo"}},
		{name: "ps:retire with global --app", id: bob, args: []string{"--app", "bravo", "ps:retire"}, wantCalls: []string{"retire bravo"}},
		{name: "ps:retire of another user's app", id: alice, args: []string{"ps:retire", "bravo"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
		{name: "ps:retire of a bad name", id: alice, args: []string{"ps:retire", "../x"}, wantCode: ExitError, wantErr: "invalid app name"},
		{name: "ps:retire two apps", id: root, args: []string{"ps:retire", "alpha", "bravo"}, wantCode: ExitError, wantErr: "at most one app"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			withReleases(e)
			code, out, errOut := e.run(t, tc.id, "", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(out, w) {
					t.Errorf("stdout has %q:\n%s", w, out)
				}
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errOut)
			}
			if strings.ContainsRune(errOut+out, 0x1b) {
				t.Errorf("raw ESC in output")
			}
			if strings.Join(e.releases.calls, "|") != strings.Join(tc.wantCalls, "|") {
				t.Errorf("calls %q, want %q", e.releases.calls, tc.wantCalls)
			}
			if a, _ := e.store.App("alpha"); a.ProcfilePath != tc.wantPath {
				t.Errorf("procfile-path %q, want %q", a.ProcfilePath, tc.wantPath)
			}
		})
	}
}

func TestMaskedInspect(t *testing.T) {
	out, err := maskedInspect([]json.RawMessage{
		json.RawMessage(`{"Config":{"Env":["A=1","PORT=5000","NOEQUALS","CNB_TOKEN=s3cret","HOME=/app"],"Cmd":["A=1"]},"Env":"not a list","Labels":{"Env":"x"}}`),
		json.RawMessage(`{"Spec":{"ContainerSpec":{"Env":["CNB_PLATFORM_API=0.13","DB=postgres://u:p@h/d"]}}}`),
	}, map[string]string{"CNB_TOKEN": "s3cret", "PORT": "5000", "DB": "x"})
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	s := string(out)
	for _, w := range []string{`"A=XXXXXX"`, `"PORT=5000"`, `"XXXXXX"`, `"CNB_PLATFORM_API=0.13"`, `"DB=XXXXXX"`, `"CNB_TOKEN=XXXXXX"`, `"HOME=/app"`, `"Cmd": [` + "\n" + `                "A=1"`, `"Env": "not a list"`} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %s:\n%s", w, s)
		}
	}
	if strings.Contains(s, "postgres://") || strings.Contains(s, "NOEQUALS") || strings.Contains(s, "s3cret") {
		t.Errorf("a config value leaked:\n%s", s)
	}
	if _, err := maskedInspect([]json.RawMessage{json.RawMessage(`{`)}, nil); err == nil {
		t.Error("bad JSON accepted")
	}
}

// syncBuilder is a strings.Builder that a command writes to while the test
// reads it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watch is a --watch command running until its context ends.
type watch struct {
	out, errOut syncBuilder
	done        chan int // its exit code
}

// startWatch runs the command args as id until ctx ends.
func startWatch(t *testing.T, ctx context.Context, d *Dispatcher, id paas.Identity, args ...string) *watch {
	w := &watch{done: make(chan int, 1)}
	go func() { w.done <- d.RunCommand(ctx, id, args, strings.NewReader(""), &w.out, &w.errOut) }()
	return w
}

// lines are the lines the command printed so far.
func (w *watch) lines() []string { return strings.Split(strings.TrimSpace(w.out.String()), "\n") }

// waitFor waits until the command printed n lines.
func (w *watch) waitFor(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if w.out.String() != "" && len(w.lines()) >= n {
			return
		}
	}
	t.Fatalf("want %d lines, got %q (stderr %q)", n, w.out.String(), w.errOut.String())
}

func TestPsReportWatch(t *testing.T) {
	e := newEnv(t)
	if code, _, errOut := e.run(t, bob, "", "ps:report", "bravo", "--watch"); code != ExitError || !strings.Contains(errOut, "add --format json") {
		t.Fatalf("--watch without --format json: exit %d %q", code, errOut)
	}
	if code, _, _ := e.run(t, alice, "", "ps:report", "bravo", "--watch", "--format", "json"); code != ExitNotFound {
		t.Fatalf("another user's app watched: exit %d", code)
	}

	// a document at once, another when the tasks change, none while they
	// do not; the watch ends without error when the caller hangs up
	ctx, cancel := context.WithCancel(context.Background())
	w := startWatch(t, ctx, e.d, bob, "ps:report", "bravo", "--watch", "--format", "json")
	w.waitFor(t, 1)
	if !strings.Contains(w.lines()[0], `"running":1`) || !strings.Contains(w.lines()[0], `"release":3`) {
		t.Fatalf("first document %s", w.lines()[0])
	}
	time.Sleep(psWatchEvery + psWatchEvery/2)
	if n := len(w.lines()); n != 1 {
		t.Fatalf("%d documents while nothing changed", n)
	}
	e.runtime.mu.Lock()
	e.runtime.status = []scheduler.ProcessStatus{{Process: "web", Desired: 2, Running: 2, Tasks: []scheduler.TaskStatus{
		{ID: "t1", Slot: 1, State: "running", Node: "node2"}, {ID: "t2", Slot: 2, State: "running", Node: "node3"}}}}
	e.runtime.mu.Unlock()
	w.waitFor(t, 2)
	if !strings.Contains(w.lines()[1], `"running":2`) || !strings.Contains(w.lines()[1], `"node3"`) {
		t.Fatalf("second document %s", w.lines()[1])
	}
	cancel()
	if code := <-w.done; code != ExitOK {
		t.Fatalf("hung up: exit %d", code)
	}
}
