package gitreceive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"paas/internal/paas"
)

type fakeAuth struct {
	ids map[string]paas.Identity // fingerprint -> identity
	err error
}

func (f *fakeAuth) Identify(key gossh.PublicKey) (paas.Identity, bool, error) {
	if f.err != nil {
		return paas.Identity{}, false, f.err
	}
	id, ok := f.ids[gossh.FingerprintSHA256(key)]
	return id, ok, nil
}

// fakeRepos serves the repositories of apps owned by their owner.
type fakeRepos struct {
	dir    string
	owners map[string]string // app -> owner

	mu    sync.Mutex
	calls []string
}

func (f *fakeRepos) RepoFor(_ context.Context, id paas.Identity, app string, write bool, _ io.Writer) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s %v", id.Name, app, write))
	f.mu.Unlock()
	owner, ok := f.owners[app]
	if !ok || (owner != id.Name && !id.Admin) {
		return "", paas.ErrAppNotFound
	}
	dir := filepath.Join(f.dir, app+".git")
	if err := InitRepo(dir, "main"); err != nil {
		return "", err
	}
	return dir, nil
}

type commandCall struct {
	id    paas.Identity
	args  []string
	stdin string
}

// fakeCommands echoes its arguments and returns the exit code named by the
// first argument "exit=N".
type fakeCommands struct {
	mu    sync.Mutex
	calls []commandCall
}

func (f *fakeCommands) RunCommand(_ context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	code := 0
	var in []byte
	if len(args) > 0 && args[0] == "stdin" {
		in, _ = io.ReadAll(stdin)
	}
	if len(args) > 0 {
		fmt.Sscanf(args[0], "exit=%d", &code)
		if d, ok := strings.CutPrefix(args[0], "sleep="); ok { // a command silent for a while
			pause, _ := time.ParseDuration(d)
			time.Sleep(pause)
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, commandCall{id, slices.Clone(args), string(in)})
	f.mu.Unlock()
	fmt.Fprintf(stdout, "out:%s\n", strings.Join(args, "|"))
	fmt.Fprintf(stderr, "err:%s\n", id.Name)
	return code
}

func (f *fakeCommands) last() commandCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return commandCall{}
	}
	return f.calls[len(f.calls)-1]
}

type testKey struct {
	signer gossh.Signer
	priv   ed25519.PrivateKey
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{s, priv}
}

func (k testKey) fingerprint() string { return gossh.FingerprintSHA256(k.signer.PublicKey()) }

type testServer struct {
	shutdown func() // stops the server, waiting for Run to return
	srv      *Server
	addr     string
	hostKey  string // path
	dataDir  string
	commands *fakeCommands
	pushes   *fakePushes
	repos    *fakeRepos
}

// startServer runs a Server on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, hostKeyPath string, auth Authenticator, pushes *fakePushes, more ...func(*Options)) *testServer {
	t.Helper()
	// The hook socket lives in the data dir: keep its path short.
	dataDir, err := os.MkdirTemp("", "paas")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	if pushes == nil {
		pushes = &fakePushes{}
	}
	ts := &testServer{
		hostKey: hostKeyPath, dataDir: dataDir, commands: &fakeCommands{}, pushes: pushes,
		repos: &fakeRepos{dir: filepath.Join(dataDir, "repos"), owners: map[string]string{"hello": "alice"}},
	}
	opts := Options{
		Addr: "127.0.0.1:0", HostKeyPath: hostKeyPath, DataDir: dataDir,
		Auth: auth, Repos: ts.repos, Pushes: ts.pushes, Commands: ts.commands, Log: discardLog(),
	}
	for _, f := range more {
		f(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx, shutdownGrace) }()
	var once sync.Once
	ts.shutdown = func() {
		once.Do(func() {
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(ts.shutdown)
	ts.srv, ts.addr = srv, srv.Addr().String()
	return ts
}

// shutdownGrace is the test servers' (tests are not parallel here).
var shutdownGrace = 5 * time.Second

// dial connects with the given keys and records the host key the server showed.
func dial(addr string, hostKey *gossh.PublicKey, keys ...testKey) (*gossh.Client, error) {
	var signers []gossh.Signer
	for _, k := range keys {
		signers = append(signers, k.signer)
	}
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "paas",
		Auth: []gossh.AuthMethod{gossh.PublicKeys(signers...)},
		HostKeyCallback: func(_ string, _ net.Addr, key gossh.PublicKey) error {
			if hostKey != nil {
				*hostKey = key
			}
			return nil
		},
		Timeout: 10 * time.Second,
	})
}

// run runs one command on a new session and returns its exit status.
func run(t *testing.T, c *gossh.Client, cmd, stdin string) (int, string, string) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var out, errb bytes.Buffer
	sess.Stdout, sess.Stderr, sess.Stdin = &out, &errb, strings.NewReader(stdin)
	err = sess.Run(cmd)
	code := 0
	var ee *gossh.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitStatus()
	case err != nil:
		t.Fatalf("run %q: %v", cmd, err)
	}
	return code, out.String(), errb.String()
}

func TestServerCommands(t *testing.T) {
	alice, root, stranger := newTestKey(t), newTestKey(t), newTestKey(t)
	auth := &fakeAuth{ids: map[string]paas.Identity{
		alice.fingerprint(): {Name: "alice"},
		root.fingerprint():  {Name: "root", Admin: true},
	}}
	ts := startServer(t, filepath.Join(t.TempDir(), "host_key"), auth, nil)

	tests := []struct {
		name     string
		keys     []testKey
		cmd      string
		stdin    string
		wantID   paas.Identity
		wantArgs []string
		wantIn   string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{
			name: "user command", keys: []testKey{alice}, cmd: "apps:list --format json",
			wantID: paas.Identity{Name: "alice"}, wantArgs: []string{"apps:list", "--format", "json"},
			wantOut: "out:apps:list|--format|json\n", wantErr: "err:alice\n",
		},
		{
			name: "admin command", keys: []testKey{root}, cmd: "ssh-keys:list",
			wantID: paas.Identity{Name: "root", Admin: true}, wantArgs: []string{"ssh-keys:list"},
			wantOut: "out:ssh-keys:list\n", wantErr: "err:root\n",
		},
		{
			name: "exit status propagates", keys: []testKey{alice}, cmd: "exit=20 x",
			wantID: paas.Identity{Name: "alice"}, wantArgs: []string{"exit=20", "x"}, wantCode: 20,
			wantOut: "out:exit=20|x\n",
		},
		{
			name: "quoted arguments arrive whole", keys: []testKey{alice}, cmd: `config:set hello 'A=it is; $(id)'`,
			wantID: paas.Identity{Name: "alice"}, wantArgs: []string{"config:set", "hello", "A=it is; $(id)"},
			wantOut: "out:config:set|hello|A=it is; $(id)\n",
		},
		{
			name: "stdin reaches the command", keys: []testKey{root}, cmd: "stdin ssh-keys:add bob", stdin: "ssh-ed25519 AAAA bob\n",
			wantID: paas.Identity{Name: "root", Admin: true}, wantArgs: []string{"stdin", "ssh-keys:add", "bob"}, wantIn: "ssh-ed25519 AAAA bob\n",
		},
		{
			name: "unknown key offered first, known key authenticates", keys: []testKey{stranger, alice}, cmd: "whoami",
			wantID: paas.Identity{Name: "alice"}, wantArgs: []string{"whoami"}, wantOut: "out:whoami\n",
		},
		{
			name: "session key is identified, not the first offered", keys: []testKey{alice, root}, cmd: "whoami",
			wantID: paas.Identity{Name: "alice"}, wantArgs: []string{"whoami"}, wantOut: "out:whoami\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(ts.addr, nil, tc.keys...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			code, out, errOut := run(t, c, tc.cmd, tc.stdin)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.wantCode, errOut)
			}
			if tc.wantOut != "" && out != tc.wantOut {
				t.Fatalf("stdout %q, want %q", out, tc.wantOut)
			}
			if tc.wantErr != "" && errOut != tc.wantErr {
				t.Fatalf("stderr %q, want %q", errOut, tc.wantErr)
			}
			got := ts.commands.last()
			if !reflect.DeepEqual(got.id, tc.wantID) || !slices.Equal(got.args, tc.wantArgs) || got.stdin != tc.wantIn {
				t.Fatalf("command got %+v, want id %+v args %q stdin %q", got, tc.wantID, tc.wantArgs, tc.wantIn)
			}
		})
	}
}

func TestServerRejectsUnknownKeys(t *testing.T) {
	alice, stranger := newTestKey(t), newTestKey(t)
	tests := []struct {
		name string
		auth *fakeAuth
		keys []testKey
	}{
		{"unknown key", &fakeAuth{ids: map[string]paas.Identity{alice.fingerprint(): {Name: "alice"}}}, []testKey{stranger}},
		{"no key", &fakeAuth{ids: map[string]paas.Identity{alice.fingerprint(): {Name: "alice"}}}, nil},
		{"authenticator error", &fakeAuth{err: errors.New("store down")}, []testKey{alice}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, filepath.Join(t.TempDir(), "host_key"), tc.auth, nil)
			c, err := dial(ts.addr, nil, tc.keys...)
			if err == nil {
				c.Close()
				t.Fatal("authenticated")
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("dial error %v, want an authentication failure", err)
			}
			if n := len(ts.commands.calls); n != 0 {
				t.Fatalf("%d commands ran", n)
			}
		})
	}
}

func TestServerGitErrors(t *testing.T) {
	alice := newTestKey(t)
	auth := &fakeAuth{ids: map[string]paas.Identity{alice.fingerprint(): {Name: "alice"}}}
	ts := startServer(t, filepath.Join(t.TempDir(), "host_key"), auth, nil)
	c, err := dial(ts.addr, nil, alice)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tests := []struct {
		name    string
		cmd     string
		wantErr string
	}{
		{"invalid app name", "git-receive-pack '../etc'", ` !     invalid app name "../etc"`},
		{"shell metachar", "git-receive-pack 'a;id'", "invalid app name"},
		{"missing app", "git-receive-pack '/missing.git'", " !     App missing does not exist"},
		{"someone else's app", "git-upload-pack 'other'", "App other does not exist"},
		{"no repo argument", "git-receive-pack", "usage: git-receive-pack REPO"},
		{"extra arguments", "git-upload-pack hello --strict", "usage: git-receive-pack REPO"},
	}
	ts.repos.owners["other"] = "bob"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, c, tc.cmd, "")
			if code != 1 || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.wantErr)
			}
			if n := len(ts.commands.calls); n != 0 {
				t.Fatalf("a git command reached the CommandRunner")
			}
		})
	}
}

func readHostKey(t *testing.T, path string) gossh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

func TestServerHostKeyPersists(t *testing.T) {
	alice := newTestKey(t)
	auth := &fakeAuth{ids: map[string]paas.Identity{alice.fingerprint(): {Name: "alice"}}}
	path := filepath.Join(t.TempDir(), "keys", "ssh_host_ed25519_key")

	fingerprints := make([]string, 2)
	for i := range fingerprints {
		ts := startServer(t, path, auth, nil)
		var shown gossh.PublicKey
		c, err := dial(ts.addr, &shown, alice)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Fatalf("host key mode %v, want 0600", perm)
		}
		if shown.Type() != gossh.KeyAlgoED25519 {
			t.Fatalf("host key type %s", shown.Type())
		}
		if got, want := gossh.FingerprintSHA256(shown), gossh.FingerprintSHA256(readHostKey(t, path)); got != want {
			t.Fatalf("server shows %s, the file holds %s", got, want)
		}
		fingerprints[i] = gossh.FingerprintSHA256(shown)
	}
	if fingerprints[0] != fingerprints[1] {
		t.Fatalf("host key changed across restarts: %s then %s", fingerprints[0], fingerprints[1])
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary host key file left: %v", err)
	}
}

func TestNewHostKeyErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string
	}{
		{"corrupt key", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "host_key")
			os.WriteFile(p, []byte("not a key"), 0o600)
			return p
		}},
		{"encrypted key", func(t *testing.T) string {
			block := &pem.Block{
				Type:    "RSA PRIVATE KEY",
				Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00000000000000000000000000000000"},
				Bytes:   make([]byte, 64),
			}
			p := filepath.Join(t.TempDir(), "host_key")
			os.WriteFile(p, pem.EncodeToMemory(block), 0o600)
			return p
		}},
		{"key path is a directory", func(t *testing.T) string { return t.TempDir() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Addr: "127.0.0.1:0", HostKeyPath: tc.setup(t), DataDir: t.TempDir(), Log: discardLog()})
			if err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestNewInstallsHook(t *testing.T) {
	dataDir := t.TempDir()
	for range 2 { // the second New finds the link in place
		if _, err := New(Options{Addr: "127.0.0.1:0", HostKeyPath: filepath.Join(dataDir, "hk"), DataDir: dataDir, Log: discardLog()}); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(filepath.Join(dataDir, "hooks", HookName))
	if err != nil || target != exe {
		t.Fatalf("hook link -> %q, %v; want %q", target, err, exe)
	}
}

// TestServerPush pushes with the real git and ssh clients: the pre-receive hook
// (this test binary, see TestMain) calls back into the server, whose handler
// reads the pushed commit from the quarantine and decides the push's fate.
// pushClient is a real git client set up to push over ssh to a test server
// as alice.
type pushClient struct {
	ts     *testServer
	env    []string
	home   string
	remote string
}

func requireGit(t *testing.T) {
	for _, bin := range []string{"git", "ssh", "git-receive-pack"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI: run scripts/install.sh --deps", bin)
			}
			t.Skipf("%s not installed", bin)
		}
	}
}

func newPushClient(t *testing.T, pushes *fakePushes) *pushClient {
	requireGit(t)
	alice := newTestKey(t)
	auth := &fakeAuth{ids: map[string]paas.Identity{alice.fingerprint(): {Name: "alice"}}}
	hostKeyPath := filepath.Join(t.TempDir(), "host_key")
	ts := startServer(t, hostKeyPath, auth, pushes)

	home := t.TempDir()
	keyFile := filepath.Join(home, "id_ed25519")
	block, err := gossh.MarshalPrivateKey(alice.priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(ts.addr)
	knownHosts := filepath.Join(home, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(ts.addr)}, readHostKey(t, hostKeyPath))
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gitEnv := append(os.Environ(),
		"HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_SSH_COMMAND=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i "+keyFile+
			" -o UserKnownHostsFile="+knownHosts+" -o StrictHostKeyChecking=yes -p "+port,
	)
	return &pushClient{ts: ts, env: gitEnv, home: home, remote: "paas@" + host + ":hello"}
}

// git runs git in dir (under the client's home) and returns its output.
func (c *pushClient) git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = filepath.Join(c.home, dir), c.env
	if err := os.MkdirAll(cmd.Dir, 0o755); err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// commit writes file.txt in dir and commits it.
func (c *pushClient) commit(t *testing.T, dir, content, subject string) string {
	t.Helper()
	os.WriteFile(filepath.Join(c.home, dir, "file.txt"), []byte(content), 0o644)
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", subject}} {
		if out, err := c.git(dir, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	out, _ := c.git(dir, "rev-parse", "HEAD")
	return strings.TrimSpace(out)
}

func (c *pushClient) serverHead(t *testing.T) string {
	t.Helper()
	head, err := BranchCommit(filepath.Join(c.ts.repos.dir, "hello.git"), "main")
	if err != nil {
		t.Fatal(err)
	}
	return head
}

func TestServerPush(t *testing.T) {
	pushes := &fakePushes{}
	pushes.handle = func(ctx context.Context, p *Push, out io.Writer) error {
		var tarball bytes.Buffer
		if err := p.Archive(ctx, p.Updates[0].New, &tarball); err != nil {
			return err
		}
		msg, err := p.git(ctx, "log", "-1", "--format=%s", p.Updates[0].New).Output()
		if err != nil {
			return err
		}
		subject := strings.TrimSpace(string(msg))
		fmt.Fprintf(out, "-----> got %q, archive has file.txt: %v\n", subject, bytes.Contains(tarball.Bytes(), []byte("file.txt")))
		if strings.Contains(subject, "reject") {
			return errors.New("rejected by the test")
		}
		return nil
	}
	c := newPushClient(t, pushes)
	git := func(args ...string) (string, error) { return c.git("work", args...) }
	work := filepath.Join(c.home, "work")
	ts, remote := c.ts, c.remote
	steps := []struct {
		name    string
		subject string
		wantOK  bool
		wantOut []string
	}{
		{"accepted push", "first", true, []string{`-----> got "first", archive has file.txt: true`}},
		{"rejected push", "please reject", false, []string{`-----> got "please reject"`, " !     rejected by the test", "pre-receive hook declined"}},
	}
	if out, err := git("init", "-q", "-b", "main"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			os.WriteFile(filepath.Join(work, "file.txt"), []byte(fmt.Sprint(i)), 0o644)
			if out, err := git("add", "-A"); err != nil {
				t.Fatalf("git add: %v\n%s", err, out)
			}
			if out, err := git("commit", "-q", "-m", st.subject); err != nil {
				t.Fatalf("git commit: %v\n%s", err, out)
			}
			out, err := git("push", remote, "main")
			if (err == nil) != st.wantOK {
				t.Fatalf("git push err = %v, want ok=%v\n%s", err, st.wantOK, out)
			}
			for _, w := range st.wantOut {
				if !strings.Contains(out, w) {
					t.Fatalf("push output does not contain %q:\n%s", w, out)
				}
			}
			head, err := BranchCommit(filepath.Join(ts.repos.dir, "hello.git"), "main")
			if err != nil {
				t.Fatal(err)
			}
			local, _ := git("rev-parse", "HEAD")
			if st.wantOK != (head == strings.TrimSpace(local)) {
				t.Fatalf("server main at %q, local HEAD %q, push ok=%v", head, local, st.wantOK)
			}
		})
	}
	got := pushes.received()
	if len(got) != 2 {
		t.Fatalf("%d pushes handled, want 2", len(got))
	}
	for _, p := range got {
		if p.App != "hello" || p.Identity.Name != "alice" || len(p.Updates) != 1 || p.Updates[0].Branch() != "main" {
			t.Fatalf("push %+v", p)
		}
	}
}

// Three clients push diverging commits to one app at once. Pushes of an app
// are serialized from the ref advertisement on, so the first one's deploy
// is the only one that runs: the others see the branch it left, and git
// refuses them as non-fast-forwards before anything reaches pre-receive.
func TestServerConcurrentPushesAreSerialized(t *testing.T) {
	var running, overlapped atomic.Int32
	pushes := &fakePushes{}
	pushes.handle = func(ctx context.Context, p *Push, out io.Writer) error {
		if running.Add(1) > 1 {
			overlapped.Add(1)
		}
		defer running.Add(-1)
		time.Sleep(500 * time.Millisecond) // a deploy that takes a while
		return nil
	}
	c := newPushClient(t, pushes)
	if out, err := c.git("base", "init", "-q", "-b", "main"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	c.commit(t, "base", "base", "base")
	if out, err := c.git("base", "push", c.remote, "main"); err != nil {
		t.Fatalf("first push: %v\n%s", err, out)
	}
	clients := []string{"a", "b", "c"}
	commits := map[string]string{}
	for _, name := range clients {
		if out, err := c.git("", "clone", "-q", filepath.Join(c.home, "base"), name); err != nil {
			t.Fatalf("clone: %v\n%s", err, out)
		}
		commits[name] = c.commit(t, name, name, "from "+name)
	}
	type result struct {
		name string
		out  string
		err  error
	}
	results := make(chan result, len(clients))
	for _, name := range clients {
		go func() {
			out, err := c.git(name, "push", c.remote, "main")
			results <- result{name, out, err}
		}()
	}
	var won []string
	for range clients {
		r := <-results
		if r.err == nil {
			won = append(won, r.name)
			continue
		}
		if !strings.Contains(r.out, "rejected") || strings.Contains(r.out, "pre-receive") {
			t.Errorf("push from %s: want git's own non-fast-forward refusal, got:\n%s", r.name, r.out)
		}
	}
	if len(won) != 1 {
		t.Fatalf("pushes that succeeded: %v, want exactly one", won)
	}
	if overlapped.Load() != 0 {
		t.Fatal("two deploys of one app ran at once")
	}
	if got := c.serverHead(t); got != commits[won[0]] {
		t.Fatalf("server main at %s, want the winner %s's %s", got, won[0], commits[won[0]])
	}
	if n := len(pushes.received()); n != 2 { // the base push and the winner
		t.Fatalf("%d pushes reached pre-receive, want 2", n)
	}
	for _, p := range pushes.finished() {
		for _, u := range p.Updates {
			if !p.Landed(u) {
				t.Errorf("PushDone of %+v: update to %s not landed", p.Updates, u.Ref)
			}
		}
	}
}

// A push that pre-receive accepted but git then fails to apply reaches
// PushDone with its update not landed, so the handler can take the deploy
// back.
func TestServerPushDoneSeesRefNotUpdated(t *testing.T) {
	pushes := &fakePushes{}
	var repo string
	pushes.handle = func(ctx context.Context, p *Push, out io.Writer) error {
		repo = p.Repo
		// Another writer holds the ref's lock: git cannot update it.
		return os.WriteFile(filepath.Join(p.Repo, "refs", "heads", "main.lock"), nil, 0o644)
	}
	c := newPushClient(t, pushes)
	if out, err := c.git("work", "init", "-q", "-b", "main"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	commit := c.commit(t, "work", "x", "x")
	out, err := c.git("work", "push", c.remote, "main")
	if err == nil {
		t.Fatalf("push succeeded although the ref was locked:\n%s", out)
	}
	os.Remove(filepath.Join(repo, "refs", "heads", "main.lock"))
	ended := pushes.finished()
	if len(ended) != 1 || len(ended[0].Updates) != 1 {
		t.Fatalf("PushDone calls %+v, want one with one update", ended)
	}
	p := ended[0]
	if p.Landed(p.Updates[0]) || p.Updates[0].New != commit {
		t.Fatalf("PushDone saw landed=%v new=%s; want not landed, %s", p.Landed(p.Updates[0]), p.Updates[0].New, commit)
	}
}

// A stopping server gives running pushes its grace to finish; past it,
// their deploys are cancelled (so they roll back) and Run returns.
func TestShutdownCancelsDeploysPastGrace(t *testing.T) {
	defer func(g time.Duration) { shutdownGrace = g }(shutdownGrace)
	shutdownGrace = 300 * time.Millisecond
	started := make(chan struct{})
	deployErr := make(chan error, 1)
	pushes := &fakePushes{handle: func(ctx context.Context, p *Push, out io.Writer) error {
		close(started)
		<-ctx.Done() // a deploy that would outlast the grace
		deployErr <- ctx.Err()
		return ctx.Err()
	}}
	c := newPushClient(t, pushes)
	if out, err := c.git("work", "init", "-q", "-b", "main"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	c.commit(t, "work", "x", "x")
	pushed := make(chan error, 1)
	go func() {
		_, err := c.git("work", "push", c.remote, "main")
		pushed <- err
	}()
	<-started
	stopped := make(chan struct{})
	go func() { c.ts.shutdown(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the shutdown grace")
	}
	if err := <-deployErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the deploy's context ended with %v, want canceled", err)
	}
	if err := <-pushed; err == nil {
		t.Fatal("the push succeeded although its deploy was cancelled")
	}
}
