// Package gitreceive is the SSH front door: it authenticates keys, serves git
// pushes through the system git-receive-pack with a pre-receive hook that calls
// back into paasd, and hands every other command to a CommandRunner. It knows
// nothing of builds or Swarm: a push goes to a PushHandler whose error rejects it.
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
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/docker/go-units"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"paas/internal/applock"
	"paas/internal/connlimit"
	"paas/internal/output"
	"paas/internal/paas"
)

// Authenticator maps a public key to an identity.
type Authenticator interface {
	Identify(key gossh.PublicKey) (paas.Identity, bool, error)
}

// Repos resolves the bare repository of an app for an identity. It returns
// paas.ErrAppNotFound both for a missing app and for one the identity may not
// use, so that nothing is learnt about apps one cannot touch. A push (write)
// to a missing app may create it, saying so on out.
type Repos interface {
	RepoFor(ctx context.Context, id paas.Identity, app string, write bool, out io.Writer) (dir string, err error)
}

// PushHandler decides on pushes. HandlePush runs inside pre-receive: a
// returned error rejects the whole push. PushDone runs once git-receive-pack
// has exited, for every push, with p.Landed telling which updates git
// applied: only then is a push's outcome known.
type PushHandler interface {
	HandlePush(ctx context.Context, p *Push, out io.Writer) error
	PushDone(ctx context.Context, p *Push, out io.Writer)
}

// CommandRunner runs a non-git command and returns its exit code.
type CommandRunner interface {
	RunCommand(ctx context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// Options configures a Server.
type Options struct {
	Addr        string // host:port to listen on
	HostKeyPath string // ed25519 host key, generated on first start
	DataDir     string // the hook socket and hooks dir live here
	Auth        Authenticator
	Repos       Repos
	Pushes      PushHandler
	Commands    CommandRunner
	Limits      Limits
	Refusals    Refusals // optional: where refused input is recorded
	Log         *slog.Logger
	// PushLocks, when set, is the per-app push lock the server takes for
	// a push, shared with whatever else writes an app's repository
	// (git:sync, git:from-archive, apps:rename).
	PushLocks *applock.Set
}

// Server is the SSH server.
type Server struct {
	opts     Options
	ssh      *ssh.Server
	hooks    *hookServer
	hooksDir string
	listener net.Listener
	pushes   *applock.Set
	conns    *connlimit.Limiter
}

// New prepares a Server: host key, hooks dir and hook socket path.
func New(opts Options) (*Server, error) {
	signer, err := loadOrCreateHostKey(opts.HostKeyPath)
	if err != nil {
		return nil, err
	}
	hooksDir := filepath.Join(opts.DataDir, "hooks")
	if err := installHook(hooksDir); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, hooksDir: hooksDir, pushes: opts.PushLocks, conns: &connlimit.Limiter{Max: opts.Limits.MaxConnsPerAddr}}
	if s.pushes == nil {
		s.pushes = &applock.Set{}
	}
	s.hooks = newHookServer(filepath.Join(opts.DataDir, "hook.sock"), opts.Pushes, opts.Log)
	s.ssh = &ssh.Server{
		Addr:             opts.Addr,
		Handler:          s.handleSession,
		PublicKeyHandler: s.checkKey,
		HostSigners:      []ssh.Signer{signer},
		Version:          "paas",
		// Not IdleTimeout: it counts bytes on the wire, so it would cut a
		// push whose build prints nothing for a while; admit's idle timer
		// counts open sessions instead.
		ConnCallback:    s.admit,
		ChannelHandlers: map[string]ssh.ChannelHandler{"session": s.sessionChannel},
	}
	return s, nil
}

// Listen binds the SSH port; Addr returns the bound address.
func (s *Server) Listen() error {
	l, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen ssh: %w", err)
	}
	s.listener = l
	return s.hooks.listen()
}

// Addr is the address the SSH server listens on.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Run serves SSH and the hook socket until ctx is done, then shuts down, waiting
// up to the shutdown deadline for running sessions (a deploy) to finish.
func (s *Server) Run(ctx context.Context, shutdownGrace time.Duration) error {
	if s.listener == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, 2)
	go func() { errc <- s.ssh.Serve(s.listener) }()
	go func() { errc <- s.hooks.serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	// Running pushes get the grace to finish their deploys; past it their
	// deploys are cancelled (the previous release keeps serving) and the
	// sessions closed.
	err := s.ssh.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.hooks.cancel()
		s.ssh.Close()
	}
	s.hooks.close()
	return nil
}

// checkKey is the public-key callback: it may see keys that are only offered,
// so it grants nothing by itself; the session re-identifies its key.
func (s *Server) checkKey(ctx ssh.Context, key ssh.PublicKey) bool {
	_, ok, err := s.opts.Auth.Identify(key)
	if err != nil {
		s.opts.Log.Error("identify key", "err", err)
		return false
	}
	return ok
}

func (s *Server) handleSession(sess ssh.Session) {
	ctx := sess.Context()
	// Re-check the key that authenticated this connection (CVE-2024-45337 class):
	// x/crypto calls the key callback for the signing key last, so the session's
	// key is the one that signed; look it up again rather than trusting state
	// left by earlier callbacks.
	key := sess.PublicKey()
	if key == nil {
		fmt.Fprintln(sess.Stderr(), "Permission denied (publickey).")
		sess.Exit(255)
		return
	}
	id, ok, err := s.opts.Auth.Identify(key)
	if err != nil || !ok {
		fmt.Fprintln(sess.Stderr(), "Permission denied (publickey).")
		sess.Exit(255)
		return
	}
	log := s.opts.Log.With("user", id.Name, "remote", sess.RemoteAddr().String())
	// Not sess.Command(): it drops what it cannot split without a word.
	args, err := SplitCommand(sess.RawCommand())
	if err != nil {
		output.Warn(sess.Stderr(), "%v", err)
		s.refused(id, "ssh", "", err.Error())
		sess.Exit(1)
		return
	}
	if len(args) > 0 {
		switch args[0] {
		case "git-receive-pack", "git-upload-pack":
			sess.Exit(s.serveGit(ctx, sess, id, args, log))
			return
		}
	}
	code := s.opts.Commands.RunCommand(ctx, id, args, sessionInput{sess}, sess, sess.Stderr())
	sess.Exit(code)
}

// sessionInput is a session's stdin that also tells a command (run) about
// the terminal the client asked for.
type sessionInput struct{ ssh.Session }

func (s sessionInput) Read(p []byte) (int, error) { return s.Session.Read(p) }

// Terminal returns the client's terminal when it asked for one (ssh -t).
func (s sessionInput) Terminal() (*paas.Terminal, bool) {
	pty, winCh, ok := s.Pty()
	if !ok {
		return nil, false
	}
	resize := make(chan [2]int)
	go func() {
		defer close(resize)
		for w := range winCh {
			select {
			case resize <- [2]int{w.Width, w.Height}:
			case <-s.Context().Done():
				return
			}
		}
	}()
	return &paas.Terminal{Term: pty.Term, Width: pty.Window.Width, Height: pty.Window.Height, Resize: resize}, true
}

// ParseRepoPath turns the path git asks for ('/hello', 'hello.git') into an
// app name, or fails when it is not exactly one valid app name.
func ParseRepoPath(p string) (string, error) {
	name := strings.TrimPrefix(p, "/")
	name = strings.TrimSuffix(name, ".git")
	name = strings.TrimSuffix(name, "/")
	if err := paas.ValidateAppName(name); err != nil {
		return "", err
	}
	return name, nil
}

func (s *Server) serveGit(ctx context.Context, sess ssh.Session, id paas.Identity, args []string, log *slog.Logger) int {
	if len(args) != 2 {
		output.Warn(sess.Stderr(), "usage: git-receive-pack REPO")
		return 1
	}
	write := args[0] == "git-receive-pack"
	app, err := ParseRepoPath(args[1])
	if err != nil {
		output.Warn(sess.Stderr(), "%v", err)
		return 1
	}
	dir, err := s.opts.Repos.RepoFor(ctx, id, app, write, sess.Stderr())
	if err != nil {
		if errors.Is(err, paas.ErrAppNotFound) {
			output.Warn(sess.Stderr(), "App %s does not exist", app)
		} else {
			output.Warn(sess.Stderr(), "%v", err)
		}
		return 1
	}
	if !write {
		code, _ := s.runGit(ctx, sess, exec.CommandContext(ctx, args[0], dir), 0, log)
		return code
	}
	// One push of an app at a time, from the ref advertisement to the last
	// ref update: a second pusher waits, then sees the refs the first one
	// left, so git itself refuses a push that is no longer a fast-forward
	// before anything is built, and the deploy inside pre-receive always
	// starts from the branch as it is.
	unlock, err := s.pushes.Lock(ctx, app, func() {
		output.Step(sess.Stderr(), "Waiting for another push to %s to finish", app)
	})
	if err != nil {
		return 1
	}
	defer unlock()
	push := &Push{App: app, Identity: id, Repo: dir}
	token, done := s.hooks.expect(push)
	defer done()
	maxPush := s.opts.Limits.MaxPushSize
	config := []string{"core.hooksPath", s.hooksDir, "receive.advertisePushOptions", "false"}
	if maxPush > 0 {
		// git stops reading a pack past this, and stores none of it.
		config = append(config, "receive.maxInputSize", strconv.FormatInt(maxPush, 10))
	}
	cmd := exec.CommandContext(ctx, args[0], dir)
	cmd.Env = append(gitEnv(), gitConfigEnv(config...)...)
	cmd.Env = append(cmd.Env, envHookSocket+"="+s.hooks.path, envPushToken+"="+token)
	code, tooLarge := s.runGit(ctx, sess, cmd, maxPush, log)
	done() // a late hook of this push is no longer recognised
	if tooLarge {
		// git said "pack exceeds maximum allowed size" (and exits 0 when it
		// could report the refusal); say which limit.
		msg := fmt.Sprintf("push refused: it is larger than %s, the most one push may send here (paasd serve --max-push-size); nothing was stored", units.BytesSize(float64(maxPush)))
		output.Warn(sess.Stderr(), "%s", msg)
		log.Warn("push refused: too large", "app", app, "limit", maxPush)
		s.refused(id, "push", app, msg)
		return 1
	}
	push.ExitCode = code
	if err := push.readLanded(context.WithoutCancel(ctx)); err != nil {
		log.Error("read refs after push", "app", app, "err", err)
	}
	s.opts.Pushes.PushDone(context.WithoutCancel(ctx), push, sess.Stderr())
	return code
}

// runGit runs a git transport command over the session and returns its exit
// code, and whether git refused a pack larger than maxPush (0: no limit).
func (s *Server) runGit(ctx context.Context, sess ssh.Session, cmd *exec.Cmd, maxPush int64, log *slog.Logger) (int, bool) {
	if cmd.Env == nil {
		cmd.Env = gitEnv()
	}
	tooLarge := &watchWriter{w: sess, needle: []byte(gitPackTooLarge)}
	cmd.Stdout = tooLarge
	cmd.Stderr = sess.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1, false
	}
	if err := cmd.Start(); err != nil {
		log.Error("start git", "err", err)
		output.Warn(sess.Stderr(), "git is not available on the server")
		return 1, false
	}
	// Copy stdin on our own: the client keeps its side open until it has read
	// the report, so waiting for this copy would deadlock.
	var sent atomic.Int64
	go func() {
		io.Copy(countingWriter{stdin, &sent}, sess)
		stdin.Close()
	}()
	err = cmd.Wait()
	refused := maxPush > 0 && tooLarge.seen && sent.Load() > maxPush
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			return ee.ExitCode(), refused
		}
		return 1, refused
	}
	return 0, refused
}

// gitConfigEnv passes git configuration as GIT_CONFIG_COUNT/KEY/VALUE
// variables: pairs of key and value.
func gitConfigEnv(pairs ...string) []string {
	env := []string{"GIT_CONFIG_COUNT=" + strconv.Itoa(len(pairs)/2)}
	for i := 0; i+1 < len(pairs); i += 2 {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i/2, pairs[i]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i/2, pairs[i+1]))
	}
	return env
}

// gitPackTooLarge is what git's index-pack and unpack-objects say of a pack
// over receive.maxInputSize; git-receive-pack passes it on in its output.
const gitPackTooLarge = "pack exceeds maximum allowed size"

// watchWriter passes writes on to w and notes whether needle went by (also
// across two writes).
type watchWriter struct {
	w      io.Writer
	needle []byte
	tail   []byte
	seen   bool
}

func (ww *watchWriter) Write(p []byte) (int, error) {
	if !ww.seen {
		buf := append(ww.tail, p...)
		ww.seen = bytes.Contains(buf, ww.needle)
		keep := min(len(buf), len(ww.needle)-1)
		ww.tail = append(ww.tail[:0:0], buf[len(buf)-keep:]...)
	}
	return ww.w.Write(p)
}

// countingWriter counts the bytes offered to w, before writing them: once w's
// reader has read past a limit, n is past it too.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.w.Write(p)
}

// gitEnv is the environment git runs with: enough to find itself, nothing of ours.

// gitEnv is the environment git runs with: enough to find itself, nothing of ours.
func gitEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "GIT_TERMINAL_PROMPT=0", "LANG=C"}
	return env
}

func loadOrCreateHostKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		signer, err := gossh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("parse host key %s: %w", path, err)
		}
		return signer, nil
	}
	if !os.IsNotExist(err) {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "paas host key")
	if err != nil {
		return nil, fmt.Errorf("encode host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create host key dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write host key: %w", err)
	}
	return gossh.NewSignerFromKey(priv)
}
