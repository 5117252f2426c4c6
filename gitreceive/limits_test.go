package gitreceive

import (
	"bufio"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/paas"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		want    []string
		wantErr string
	}{
		{name: "words", raw: "apps:create hello", want: []string{"apps:create", "hello"}},
		{name: "empty", raw: "", want: []string{}},
		{name: "quoted value keeps its spaces", raw: `config:set app 'A=it is; $(id)'`, want: []string{"config:set", "app", "A=it is; $(id)"}},
		{name: "quoted newline stays in its word", raw: "config:set app 'CERT=line1\nline2'", want: []string{"config:set", "app", "CERT=line1\nline2"}},
		{name: "double-quoted newline stays", raw: "config:set app \"K=a\nb\"", want: []string{"config:set", "app", "K=a\nb"}},
		{name: "escape inside a word stays", raw: "config:set app K=\x1b[2J", want: []string{"config:set", "app", "K=\x1b[2J"}},
		{name: "newline between words", raw: "apps:create foo\nbar", wantErr: `control character (\n)`},
		{name: "newline ends the line", raw: "apps:create foo\n", wantErr: `control character (\n)`},
		{name: "tab between words", raw: "apps:create\tfoo", wantErr: `control character (\t)`},
		{name: "carriage return", raw: "apps:destroy foo\r", wantErr: `control character (\r)`},
		{name: "vertical tab", raw: "apps:create a\vb", wantErr: `control character (\v)`},
		{name: "C1 next line as a separator", raw: "apps:create a\u0085b", wantErr: `control character (\u0085)`},
		{name: "escaped newline stays in its word (for the command to refuse)", raw: "apps:create a\\\nb", want: []string{"apps:create", "a\nb"}},
		{name: "unterminated quote", raw: "config:set app 'A=b", wantErr: "a quote is not closed"},
		{name: "lone backslash", raw: `apps:create a\`, wantErr: "lone backslash"},
		{name: "invalid UTF-8", raw: "apps:create \xff", wantErr: "not UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SplitCommand(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrCommandLine) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("SplitCommand(%q) = %q, %v; want an error with %q", tc.raw, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("SplitCommand(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
			}
		})
	}
}

type refusal struct{ user, action, app, detail string }

type fakeRefusals struct {
	mu  sync.Mutex
	got []refusal
}

func (f *fakeRefusals) Refused(id paas.Identity, action, app, detail string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, refusal{id.Name, action, app, detail})
}

func (f *fakeRefusals) all() []refusal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// limitedServer runs a server with the given limits, for alice.
func limitedServer(t *testing.T, lim Limits) (*testServer, testKey, *fakeRefusals) {
	t.Helper()
	alice := newTestKey(t)
	auth := &fakeAuth{ids: map[string]paas.Identity{alice.fingerprint(): {Name: "alice"}}}
	refusals := &fakeRefusals{}
	ts := startServer(t, filepath.Join(t.TempDir(), "host_key"), auth, nil, func(o *Options) {
		o.Limits, o.Refusals = lim, refusals
	})
	return ts, alice, refusals
}

func TestServerRefusesBadCommandLines(t *testing.T) {
	ts, alice, refusals := limitedServer(t, Limits{})
	c, err := dial(ts.addr, nil, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, raw := range []string{"apps:create foo\nbar", "apps:destroy\tfoo --force", "config:set app 'A=b", "git-receive-pack hello\nbar"} {
		code, out, errOut := run(t, c, raw, "")
		if code != 1 || out != "" || !strings.Contains(errOut, " !     the command line cannot be read") {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q; want exit 1 and the reason", raw, code, out, errOut)
		}
	}
	if calls := len(ts.commands.calls); calls != 0 {
		t.Fatalf("%d commands ran, want none", calls)
	}
	got := refusals.all()
	if len(got) != 4 || got[0].user != "alice" || got[0].action != "ssh" || !strings.Contains(got[0].detail, "control character") {
		t.Fatalf("refusals recorded: %+v", got)
	}
	// A newline inside a quoted config value arrives whole.
	if code, _, errOut := run(t, c, "config:set hello 'CERT=a\nb'", ""); code != 0 {
		t.Fatalf("quoted multi-line value: exit %d, stderr %q", code, errOut)
	}
	if got := ts.commands.last().args; !slices.Equal(got, []string{"config:set", "hello", "CERT=a\nb"}) {
		t.Fatalf("args %q", got)
	}
}

func TestServerConnectionsPerAddress(t *testing.T) {
	ts, alice, _ := limitedServer(t, Limits{MaxConnsPerAddr: 2})
	var open []*gossh.Client
	for range 2 {
		c, err := dial(ts.addr, nil, alice)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if c, err := dial(ts.addr, nil, alice); err == nil {
		c.Close()
		t.Fatal("a third connection from one address was accepted, limit 2")
	}
	// What the refused client reads before the connection closes.
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(raw).ReadString('\n')
	raw.Close()
	if !strings.Contains(line, "too many connections from 127.0.0.1 (at most 2 at once)") {
		t.Fatalf("refused client read %q", line)
	}
	open[0].Close()
	// The slot is given back once the server saw the close.
	var c *gossh.Client
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err = dial(ts.addr, nil, alice); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no connection after one was closed: %v", err)
	}
	if code, _, _ := run(t, c, "whoami", ""); code != 0 {
		t.Fatalf("exit %d", code)
	}
	c.Close()
	open[1].Close()
}

func TestServerAuthTimeout(t *testing.T) {
	ts, alice, _ := limitedServer(t, Limits{AuthTimeout: 300 * time.Millisecond})
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	start := time.Now()
	raw.SetDeadline(start.Add(10 * time.Second))
	// Read the server's version and whatever follows, sending nothing back.
	buf := make([]byte, 4096)
	for {
		if _, err = raw.Read(buf); err != nil {
			break
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept an unauthenticated connection open for 10s")
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
		t.Fatalf("closed after %s, want about 300ms", took)
	}
	// An authenticated connection outlives the timeout.
	c, err := dial(ts.addr, nil, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(600 * time.Millisecond)
	if code, _, _ := run(t, c, "whoami", ""); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestServerIdleTimeout(t *testing.T) {
	ts, alice, _ := limitedServer(t, Limits{IdleTimeout: 300 * time.Millisecond})
	c, err := dial(ts.addr, nil, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A session that prints nothing for longer than the idle timeout (a
	// silent build) is not idle: it runs to its end.
	if code, out, _ := run(t, c, "sleep=1s", ""); code != 0 || out != "out:sleep=1s\n" {
		t.Fatalf("silent session: exit %d, stdout %q", code, out)
	}
	// Without a session, the connection is closed after the timeout.
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection without a session stayed open 5s, idle timeout 300ms")
	}
	if _, err := c.NewSession(); err == nil {
		t.Fatal("a session opened on a closed connection")
	}
}

func TestServerSessionsPerConnection(t *testing.T) {
	ts, alice, _ := limitedServer(t, Limits{})
	c, err := dial(ts.addr, nil, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sessions []*gossh.Session
	for range maxSessions {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	if _, err := c.NewSession(); err == nil || !strings.Contains(err.Error(), "at most 10 sessions") {
		t.Fatalf("session %d: %v, want a refusal", maxSessions+1, err)
	}
	sessions[0].Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s, err := c.NewSession()
		if err == nil {
			s.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after one closed: %v", err)
		}
	}
	for _, s := range sessions[1:] {
		s.Close()
	}
}

func TestWatchWriter(t *testing.T) {
	for _, chunks := range [][]string{
		{"remote: fatal: pack exceeds maximum allowed size\n"},
		{"\x02fatal: pack exceeds max", "imum allowed size"},
		{"p", "ack exceeds maximum allowed siz", "e"},
	} {
		var out strings.Builder
		w := &watchWriter{w: &out, needle: []byte(gitPackTooLarge)}
		for _, c := range chunks {
			if n, err := w.Write([]byte(c)); n != len(c) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", c, n, err)
			}
		}
		if !w.seen || out.String() != strings.Join(chunks, "") {
			t.Fatalf("%q: seen %v, passed on %q", chunks, w.seen, out.String())
		}
	}
	w := &watchWriter{w: io.Discard, needle: []byte(gitPackTooLarge)}
	w.Write([]byte("000eunpack ok\n0019ok refs/heads/main\n"))
	if w.seen {
		t.Fatal("seen in a normal report")
	}
}

func TestGitConfigEnv(t *testing.T) {
	got := gitConfigEnv("core.hooksPath", "/h", "receive.maxInputSize", "1024")
	want := []string{"GIT_CONFIG_COUNT=2", "GIT_CONFIG_KEY_0=core.hooksPath", "GIT_CONFIG_VALUE_0=/h", "GIT_CONFIG_KEY_1=receive.maxInputSize", "GIT_CONFIG_VALUE_1=1024"}
	if !slices.Equal(got, want) {
		t.Fatalf("gitConfigEnv = %q, want %q", got, want)
	}
}
