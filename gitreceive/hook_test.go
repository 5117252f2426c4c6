package gitreceive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
)

// TestMain lets the test binary serve as git's pre-receive hook, as paasd does:
// New links DATA/hooks/pre-receive to os.Executable().
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == HookName {
		os.Exit(RunHook(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func TestParseRepoPath(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr bool
	}{
		{"leading slash", "/hello", "hello", false},
		{"dot git", "hello.git", "hello", false},
		{"slash and dot git", "/hello.git", "hello", false},
		{"trailing slash", "/hello/", "hello", false},
		{"plain", "hello", "hello", false},
		{"dashes and digits", "my-app-2", "my-app-2", false},
		{"parent", "../x", "", true},
		{"parent with slash", "/../x", "", true},
		{"nested", "a/b", "", true},
		{"absolute nested", "/srv/git/hello.git", "", true},
		{"empty", "", "", true},
		{"only slash", "/", "", true},
		{"only dot git", ".git", "", true},
		{"uppercase", "HELLO", "", true},
		{"double slash", "//hello", "", true},
		{"double dot git", "hello.git.git", "", true},
		{"shell metachar", "a;id", "", true},
		{"quoted", "'hello'", "", true},
		{"tilde", "~/hello", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRepoPath(tc.path)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseRepoPath(%q) = %q, want error", tc.path, got)
				}
				if !errors.Is(err, paas.ErrInvalidName) {
					t.Fatalf("ParseRepoPath(%q) error %v, want ErrInvalidName", tc.path, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseRepoPath(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}

func TestRefUpdate(t *testing.T) {
	const sha = "1111111111111111111111111111111111111111"
	tests := []struct {
		name       string
		u          RefUpdate
		wantBranch string
		wantDelete bool
	}{
		{"branch update", RefUpdate{Old: sha, New: sha, Ref: "refs/heads/main"}, "main", false},
		{"branch create", RefUpdate{Old: ZeroSHA, New: sha, Ref: "refs/heads/feature/x"}, "feature/x", false},
		{"branch delete", RefUpdate{Old: sha, New: ZeroSHA, Ref: "refs/heads/old"}, "old", true},
		{"tag", RefUpdate{Old: ZeroSHA, New: sha, Ref: "refs/tags/v1"}, "", false},
		{"tag delete", RefUpdate{Old: sha, New: ZeroSHA, Ref: "refs/tags/v1"}, "", true},
		{"bare name", RefUpdate{New: sha, Ref: "main"}, "", false},
		{"heads prefix elsewhere", RefUpdate{New: sha, Ref: "refs/remotes/refs/heads/main"}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.u.Branch(); got != tc.wantBranch {
				t.Fatalf("Branch() = %q, want %q", got, tc.wantBranch)
			}
			if got := tc.u.Deletes(); got != tc.wantDelete {
				t.Fatalf("Deletes() = %v, want %v", got, tc.wantDelete)
			}
		})
	}
}

// fakePushes records the pushes it handles; with wait set it blocks until its
// context ends.
type fakePushes struct {
	output string
	err    error
	wait   bool
	// handle, when set, runs instead of the above.
	handle func(ctx context.Context, p *Push, out io.Writer) error

	stop chan struct{} // ends a waiting handler whose context never ends

	mu     sync.Mutex
	pushes []Push
	ended  []*Push // as PushDone saw them
	ctxErr error
	done   chan struct{}
}

func (f *fakePushes) PushDone(_ context.Context, p *Push, _ io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = append(f.ended, p)
}

func (f *fakePushes) finished() []*Push {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ended)
}

var _ PushHandler = (*fakePushes)(nil)

func (f *fakePushes) HandlePush(ctx context.Context, p *Push, out io.Writer) error {
	f.mu.Lock()
	f.pushes = append(f.pushes, *p)
	f.mu.Unlock()
	if f.handle != nil {
		return f.handle(ctx, p, out)
	}
	io.WriteString(out, f.output)
	if f.wait {
		select {
		case <-ctx.Done():
		case <-f.stop:
		}
		f.mu.Lock()
		f.ctxErr = ctx.Err()
		f.mu.Unlock()
		close(f.done)
		return ctx.Err()
	}
	return f.err
}

func (f *fakePushes) received() []Push {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pushes)
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startHookServer serves a hook socket in a fresh temp dir.
func startHookServer(t *testing.T, h PushHandler) *hookServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "hook")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	hs := newHookServer(filepath.Join(dir, "hook.sock"), h, discardLog())
	if err := hs.listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- hs.serve() }()
	t.Cleanup(func() {
		hs.close()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return hs
}

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestHookProtocol(t *testing.T) {
	id := paas.Identity{Name: "alice"}
	stdin := ZeroSHA + " " + shaA + " refs/heads/main\n" +
		"not an update line\n" +
		shaA + " " + ZeroSHA + " refs/tags/v1\n" +
		"\n"
	wantUpdates := []RefUpdate{{Old: ZeroSHA, New: shaA, Ref: "refs/heads/main"}, {Old: shaA, New: ZeroSHA, Ref: "refs/tags/v1"}}
	tests := []struct {
		name        string
		handler     *fakePushes
		token       func(good string) string
		expire      bool // the push is over before the hook runs
		wantCode    int
		wantOut     string
		wantHandled bool
	}{
		{
			name:    "accepted",
			handler: &fakePushes{output: "-----> Deploying hello\n=====> done\n"},
			token:   func(good string) string { return good }, wantCode: 0,
			wantOut: "-----> Deploying hello\n=====> done\n", wantHandled: true,
		},
		{
			name:    "rejected with a multi-line error",
			handler: &fakePushes{output: "-----> Building\n", err: errors.New("build failed:\nstep 3 exited 1\n")},
			token:   func(good string) string { return good }, wantCode: 1,
			wantOut: "-----> Building\n !     build failed:\n !     step 3 exited 1\n", wantHandled: true,
		},
		{
			name:    "wrong token",
			handler: &fakePushes{output: "never"},
			token:   func(good string) string { return strings.Repeat("0", len(good)) }, wantCode: 1,
			wantOut: " !     push not recognised by paasd\n",
		},
		{
			name:    "no token",
			handler: &fakePushes{output: "never"},
			token:   func(string) string { return "" }, wantCode: 1,
			wantOut: " !     push not recognised by paasd\n",
		},
		{
			name:    "token of a finished push",
			handler: &fakePushes{output: "never"},
			token:   func(good string) string { return good }, expire: true, wantCode: 1,
			wantOut: " !     push not recognised by paasd\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := startHookServer(t, tc.handler)
			token, done := hs.expect(&Push{App: "hello", Identity: id, Repo: "/data/repos/hello.git"})
			if tc.expire {
				done()
			} else {
				t.Cleanup(done)
			}
			t.Setenv(envHookSocket, hs.path)
			t.Setenv(envPushToken, tc.token(token))
			t.Setenv("GIT_QUARANTINE_PATH", "/data/repos/hello.git/objects/tmp_objdir-incoming-x")
			t.Setenv("GIT_OBJECT_DIRECTORY", "/data/repos/hello.git/objects/tmp_objdir-incoming-x")
			t.Setenv("GIT_DIR", "/must/not/be/forwarded")

			var out bytes.Buffer
			code := RunHook(strings.NewReader(stdin), &out)
			if code != tc.wantCode || out.String() != tc.wantOut {
				t.Fatalf("RunHook = %d, %q; want %d, %q", code, out.String(), tc.wantCode, tc.wantOut)
			}
			got := tc.handler.received()
			if !tc.wantHandled {
				if len(got) != 0 {
					t.Fatalf("handler called: %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("handler got %d pushes, want 1", len(got))
			}
			p := got[0]
			if p.App != "hello" || !reflect.DeepEqual(p.Identity, id) || p.Repo != "/data/repos/hello.git" {
				t.Fatalf("push %+v", p)
			}
			if !slices.Equal(p.Updates, wantUpdates) {
				t.Fatalf("updates %+v, want %+v", p.Updates, wantUpdates)
			}
			wantEnv := []string{
				"GIT_QUARANTINE_PATH=/data/repos/hello.git/objects/tmp_objdir-incoming-x",
				"GIT_OBJECT_DIRECTORY=/data/repos/hello.git/objects/tmp_objdir-incoming-x",
			}
			if !sameSet(p.env, wantEnv) {
				t.Fatalf("forwarded env %q, want %q", p.env, wantEnv)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestHookUnreachable(t *testing.T) {
	tests := []struct {
		name   string
		socket func(t *testing.T) string
	}{
		{"no socket file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing.sock") }},
		{"empty path", func(*testing.T) string { return "" }},
		{"not a socket", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			os.WriteFile(p, nil, 0o600)
			return p
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envHookSocket, tc.socket(t))
			t.Setenv(envPushToken, "x")
			var out bytes.Buffer
			if code := RunHook(strings.NewReader(ZeroSHA+" "+shaA+" refs/heads/main\n"), &out); code != 1 {
				t.Fatalf("RunHook = %d, want 1", code)
			}
			if !strings.Contains(out.String(), "paasd is not reachable; push rejected") {
				t.Fatalf("output %q", out.String())
			}
		})
	}
}

// serveOnce runs a fake paasd on a socket that answers one hook with raw bytes.
func serveOnce(t *testing.T, reply []byte) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hook")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write(reply)
	}()
	return path
}

func TestHookFrames(t *testing.T) {
	frame := func(typ byte, payload string) []byte {
		var b bytes.Buffer
		fw := &frameWriter{w: &b}
		fw.frame(typ, []byte(payload))
		return b.Bytes()
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name     string
		reply    []byte
		wantCode int
		wantOut  string
	}{
		{"output then exit 0", cat(frame('o', "a"), frame('o', "b\n"), frame('x', "\x00")), 0, "ab\n"},
		{"exit code passed through", cat(frame('x', "\x07")), 7, ""},
		{"empty output frame", cat(frame('o', ""), frame('x', "\x00")), 0, ""},
		{"unknown frame skipped", cat(frame('?', "zzz"), frame('x', "\x00")), 0, ""},
		{"bad exit frame", cat(frame('x', "")), 1, ""},
		{"connection closed mid-push", cat(frame('o', "half")), 1, "half !     paasd stopped during the push; push rejected\n"},
		{"truncated frame", cat(frame('o', "whole"))[:7], 1, " !     paasd stopped during the push; push rejected\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envHookSocket, serveOnce(t, tc.reply))
			t.Setenv(envPushToken, "x")
			var out bytes.Buffer
			code := RunHook(strings.NewReader(""), &out)
			if code != tc.wantCode || out.String() != tc.wantOut {
				t.Fatalf("RunHook = %d, %q; want %d, %q", code, out.String(), tc.wantCode, tc.wantOut)
			}
		})
	}
}

// TestHookHangUpCancels checks that a hook going away (the pusher hung up)
// cancels the push's context.
func TestHookHangUpCancels(t *testing.T) {
	h := &fakePushes{output: "started\n", wait: true, done: make(chan struct{}), stop: make(chan struct{})}
	hs := startHookServer(t, h)
	// Runs before the server's cleanup, which waits for the handler.
	t.Cleanup(func() { close(h.stop) })
	token, done := hs.expect(&Push{App: "hello"})
	t.Cleanup(done)

	conn, err := net.Dial("unix", hs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := json.Marshal(hookRequest{Token: token, Updates: []RefUpdate{{Old: ZeroSHA, New: shaA, Ref: "refs/heads/main"}}})
	if _, err := conn.Write(append(req, '\n')); err != nil {
		t.Fatal(err)
	}
	// Wait for the first output frame: the handler is running.
	hdr := make([]byte, 5+len("started\n"))
	if _, err := io.ReadFull(conn, hdr); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != frameOutput || string(hdr[5:]) != "started\n" {
		t.Fatalf("first frame %q", hdr)
	}
	if err := conn.(*net.UnixConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled when the hook hung up")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !errors.Is(h.ctxErr, context.Canceled) {
		t.Fatalf("ctx err %v", h.ctxErr)
	}
}

func TestHookConcurrentPushes(t *testing.T) {
	h := &fakePushes{}
	h.handle = func(_ context.Context, p *Push, out io.Writer) error {
		fmt.Fprintf(out, "app %s\n", p.App)
		if p.App == "bad" {
			return errors.New("nope")
		}
		return nil
	}
	hs := startHookServer(t, h)
	apps := []string{"one", "two", "bad", "three"}
	tokens := map[string]string{}
	for _, app := range apps {
		tok, done := hs.expect(&Push{App: app})
		t.Cleanup(done)
		tokens[app] = tok
	}
	// RunHook reads the environment, so the hooks talk the protocol directly here.
	type result struct {
		app  string
		code byte
		out  string
	}
	results := make(chan result, len(apps))
	for _, app := range apps {
		go func() {
			conn, err := net.Dial("unix", hs.path)
			if err != nil {
				results <- result{app: app, code: 255, out: err.Error()}
				return
			}
			defer conn.Close()
			req, _ := json.Marshal(hookRequest{Token: tokens[app]})
			conn.Write(append(req, '\n'))
			var out strings.Builder
			for {
				var hdr [5]byte
				if _, err := io.ReadFull(conn, hdr[:]); err != nil {
					results <- result{app: app, code: 254, out: out.String()}
					return
				}
				payload := make([]byte, int(hdr[1])<<24|int(hdr[2])<<16|int(hdr[3])<<8|int(hdr[4]))
				io.ReadFull(conn, payload)
				if hdr[0] == frameExit {
					results <- result{app: app, code: payload[0], out: out.String()}
					return
				}
				out.Write(payload)
			}
		}()
	}
	for range apps {
		r := <-results
		wantCode, wantOut := byte(0), "app "+r.app+"\n"
		if r.app == "bad" {
			wantCode, wantOut = 1, "app bad\n !     nope\n"
		}
		if r.code != wantCode || r.out != wantOut {
			t.Errorf("%s: code %d out %q; want %d %q", r.app, r.code, r.out, wantCode, wantOut)
		}
	}
}

func TestHookSocketMode(t *testing.T) {
	hs := startHookServer(t, &fakePushes{})
	fi, err := os.Stat(hs.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("hook socket mode %v, want a 0600 socket", fi.Mode())
	}
}

func TestHookListenReplacesStaleSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "hook")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "hook.sock")
	if err := os.WriteFile(path, []byte("left by a killed paasd"), 0o600); err != nil {
		t.Fatal(err)
	}
	hs := newHookServer(path, &fakePushes{}, discardLog())
	if err := hs.listen(); err != nil {
		t.Fatalf("listen over a stale file: %v", err)
	}
	hs.close()
}
