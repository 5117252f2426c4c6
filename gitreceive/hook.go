package gitreceive

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"paas/internal/output"
	"paas/internal/paas"
)

// HookName is the name paasd is invoked under as git's pre-receive hook.
const HookName = "pre-receive"

const (
	envHookSocket = "PAAS_HOOK_SOCKET"
	envPushToken  = "PAAS_PUSH_TOKEN"
)

// git sets these in pre-receive; the new objects are only reachable with them
// until the hook accepts the push (quarantine).
var quarantineEnv = []string{"GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH"}

// RefUpdate is one line of pre-receive input.
type RefUpdate struct {
	Old string `json:"old"`
	New string `json:"new"`
	Ref string `json:"ref"`
}

// ZeroSHA is the object name git uses for "no object" (create, delete).
const ZeroSHA = "0000000000000000000000000000000000000000"

// Deletes reports whether the update deletes its ref.
func (u RefUpdate) Deletes() bool { return u.New == ZeroSHA }

// Branch returns the branch name, or "" when the ref is not a branch.
func (u RefUpdate) Branch() string {
	b, ok := strings.CutPrefix(u.Ref, "refs/heads/")
	if !ok {
		return ""
	}
	return b
}

// Push is one git push being received, seen from pre-receive and, once
// git-receive-pack has exited, from PushDone.
type Push struct {
	App      string
	Identity paas.Identity
	Repo     string
	// Updates are the ref updates pre-receive was given; none when the
	// hook did not run (nothing to update, or the pack was refused).
	Updates []RefUpdate
	// ExitCode is git-receive-pack's, once it has exited.
	ExitCode int
	env      []string        // quarantine environment of the hook
	landed   map[string]bool // by ref, once git-receive-pack has exited
}

// Landed reports whether git applied u: its ref now holds u.New (or is gone,
// for a delete). It is false until git-receive-pack has exited.
func (p *Push) Landed(u RefUpdate) bool { return p.landed[u.Ref] }

// readLanded records which updates the repository now shows applied.
func (p *Push) readLanded(ctx context.Context) error {
	p.landed = map[string]bool{}
	if len(p.Updates) == 0 {
		return nil
	}
	cmd := exec.CommandContext(ctx, "git", "--git-dir="+p.Repo, "for-each-ref", "--format=%(objectname) %(refname)")
	cmd.Env = gitEnv()
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git for-each-ref: %w", err)
	}
	refs := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if sha, ref, ok := strings.Cut(line, " "); ok {
			refs[ref] = sha
		}
	}
	for _, u := range p.Updates {
		sha, ok := refs[u.Ref]
		p.landed[u.Ref] = u.Deletes() && !ok || !u.Deletes() && sha == u.New
	}
	return nil
}

// Archive writes the tree of commit as a tar stream to w (git archive).
func (p *Push) Archive(ctx context.Context, commit string, w io.Writer) error {
	var stderr strings.Builder
	cmd := p.git(ctx, "archive", "--format=tar", commit)
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", commit, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func (p *Push) git(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir=" + p.Repo}, args...)...)
	cmd.Env = append(gitEnv(), p.env...)
	return cmd
}

// Frame types of the hook protocol: after one JSON request line from the hook,
// paasd sends frames of [type byte][uint32 length][payload].
const (
	frameOutput = 'o'
	frameExit   = 'x'
)

type hookRequest struct {
	Token   string      `json:"token"`
	Updates []RefUpdate `json:"updates"`
	Env     []string    `json:"env"`
}

type hookServer struct {
	path    string
	handler PushHandler
	log     *slog.Logger
	// base is the context of every push's deploy: the server cancels it
	// when a shutdown's grace runs out.
	base   context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	pending  map[string]*Push
	listener net.Listener
	wg       sync.WaitGroup
}

func newHookServer(path string, h PushHandler, log *slog.Logger) *hookServer {
	base, cancel := context.WithCancel(context.Background())
	return &hookServer{path: path, handler: h, log: log, pending: map[string]*Push{}, base: base, cancel: cancel}
}

func (h *hookServer) listen() error {
	os.Remove(h.path) // a socket left by a killed paasd
	l, err := net.Listen("unix", h.path)
	if err != nil {
		return fmt.Errorf("listen hook socket: %w", err)
	}
	if err := os.Chmod(h.path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("chmod hook socket: %w", err)
	}
	h.listener = l
	return nil
}

// expect registers a push about to start and returns the token its hook must present.
func (h *hookServer) expect(p *Push) (string, func()) {
	b := make([]byte, 24)
	rand.Read(b)
	token := hex.EncodeToString(b)
	h.mu.Lock()
	h.pending[token] = p
	h.mu.Unlock()
	return token, func() {
		h.mu.Lock()
		delete(h.pending, token)
		h.mu.Unlock()
	}
}

func (h *hookServer) serve() error {
	for {
		conn, err := h.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept hook: %w", err)
		}
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.handle(conn)
		}()
	}
}

func (h *hookServer) close() {
	if h.listener != nil {
		h.listener.Close()
	}
	h.wg.Wait()
}

type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (f *frameWriter) frame(t byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var hdr [5]byte
	hdr[0] = t
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := f.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := f.w.Write(p)
	return err
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if err := f.frame(frameOutput, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *hookServer) handle(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return
	}
	var req hookRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return
	}
	out := &frameWriter{w: conn}
	// The push's fields are set under h.mu, which serveGit takes (done)
	// before it reads them once git-receive-pack has exited.
	h.mu.Lock()
	p, ok := h.pending[req.Token]
	if ok {
		p.Updates = req.Updates
		p.env = nil
		for _, kv := range req.Env {
			for _, name := range quarantineEnv {
				if strings.HasPrefix(kv, name+"=") {
					p.env = append(p.env, kv)
				}
			}
		}
	}
	h.mu.Unlock()
	if !ok {
		output.Warn(out, "push not recognised by paasd")
		out.frame(frameExit, []byte{1})
		return
	}
	// The hook sends nothing more: a read that returns means it went away
	// (the pusher hung up), and the deploy is cancelled.
	ctx, cancel := context.WithCancel(h.base)
	defer cancel()
	go func() {
		io.Copy(io.Discard, r)
		cancel()
	}()
	code := byte(0)
	if err := h.handler.HandlePush(ctx, p, out); err != nil {
		output.Warn(out, "%s", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "\n !     "))
		code = 1
	}
	out.frame(frameExit, []byte{code})
}

// installHook makes hooksDir/pre-receive a link to this executable, which runs
// RunHook when invoked under that name. No shell script: nothing to quote.
func installHook(hooksDir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if err := os.MkdirAll(hooksDir, 0o755); err != nil {
		return fmt.Errorf("create hooks dir: %w", err)
	}
	link := filepath.Join(hooksDir, HookName)
	if cur, err := os.Readlink(link); err == nil && cur == exe {
		return nil
	}
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(exe, tmp); err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	return os.Rename(tmp, link)
}

// RunHook is git's pre-receive hook: it forwards the ref updates to paasd over
// the hook socket, relays paasd's output and exits with its verdict.
func RunHook(stdin io.Reader, stdout io.Writer) int {
	var updates []RefUpdate
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 {
			updates = append(updates, RefUpdate{Old: f[0], New: f[1], Ref: f[2]})
		}
	}
	var env []string
	for _, name := range quarantineEnv {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	conn, err := net.Dial("unix", os.Getenv(envHookSocket))
	if err != nil {
		output.Warn(stdout, "paasd is not reachable; push rejected")
		return 1
	}
	defer conn.Close()
	req, _ := json.Marshal(hookRequest{Token: os.Getenv(envPushToken), Updates: updates, Env: env})
	if _, err := conn.Write(append(req, '\n')); err != nil {
		output.Warn(stdout, "paasd is not reachable; push rejected")
		return 1
	}
	r := bufio.NewReader(conn)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			output.Warn(stdout, "paasd stopped during the push; push rejected")
			return 1
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			output.Warn(stdout, "paasd stopped during the push; push rejected")
			return 1
		}
		switch hdr[0] {
		case frameOutput:
			stdout.Write(payload)
		case frameExit:
			if len(payload) == 1 {
				return int(payload[0])
			}
			return 1
		}
	}
}
