package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"paas/internal/loopback"
)

const sshdPath = "/usr/sbin/sshd"

func tmpPath(tmp string, parts ...string) string {
	return filepath.Join(append([]string{tmp}, parts...)...)
}

// command is exec.CommandContext in its own process group, so that a cancel
// (timeout, signal) kills the command and everything it started.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runOut runs a command and returns its stdout, or an error with its output.
func runOut(cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()+"\n"+stdout.String()))
	}
	return stdout.String(), nil
}

func checkTools(ctx context.Context) error {
	const deps = "run scripts/install.sh --deps"
	if os.Geteuid() != 0 {
		return errors.New("run the benchmark as root: the sshd it compares against needs root to start sessions")
	}
	for _, tool := range []string{"git", "ssh", "ssh-keygen", "go", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required: %s", tool, deps)
		}
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return fmt.Errorf("the OpenSSH server (%s) is required as the comparison peer: %s (it installs openssh-server)", sshdPath, deps)
	}
	if _, err := exec.LookPath("git-receive-pack"); err != nil {
		if _, err := os.Stat("/usr/lib/git-core/git-receive-pack"); err != nil {
			return fmt.Errorf("git-receive-pack is required: %s", deps)
		}
	}
	out, err := command(ctx, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}").Output()
	if err != nil || strings.TrimSpace(string(out)) != "active" {
		return fmt.Errorf("a Docker daemon in swarm mode is required (got %q): %s", strings.TrimSpace(string(out)), deps)
	}
	return nil
}

// waitPort waits until 127.0.0.1:port accepts connections or the process ends.
func waitPort(ctx context.Context, port int, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("the process exited")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("port %d did not accept connections within %s", port, limit)
}

// daemonProc is a long-running server process started by the benchmark.
type daemonProc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func startDaemon(name string, args []string, logPath string, deathSig syscall.Signal) (*daemonProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group; and should the benchmark be killed outright,
	// the kernel still signals the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemonProc{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(d.exited)
	}()
	return d, nil
}

// stop sends SIGTERM, then kills the process group after grace.
func (d *daemonProc) stop(grace time.Duration) {
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(grace):
		fmt.Fprintf(os.Stderr, "bench: %s did not stop in %s; killing it\n", d.cmd.Path, grace)
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}

func (d *daemonProc) logTail() string {
	data, _ := os.ReadFile(d.logPath)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// gitEnv is the client side: one key, one set of ssh options, one clean git
// environment, the same for every side.
type gitEnv struct {
	key     string
	pub     []byte
	sshOpts []string
	env     []string
}

func newGitEnv(ctx context.Context, tmp string, extra []string) (*gitEnv, error) {
	home := tmpPath(tmp, "client-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	key := tmpPath(tmp, "client-key")
	if _, err := runOut(command(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key)); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return nil, err
	}
	g := &gitEnv{key: key, pub: pub}
	g.sshOpts = []string{"-F", "none", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
	for _, o := range extra {
		if strings.ContainsAny(o, "'\n") {
			return nil, fmt.Errorf("ssh option %q: no quotes or newlines", o)
		}
		g.sshOpts = append(g.sshOpts, "-o", o)
	}
	quoted := []string{"ssh"}
	for _, o := range g.sshOpts {
		quoted = append(quoted, "'"+o+"'") // temp paths and options without quotes
	}
	const date = "2024-01-01T00:00:00Z"
	g.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@paas.bench", "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@paas.bench", "GIT_COMMITTER_DATE=" + date,
		"GIT_SSH_COMMAND=" + strings.Join(quoted, " "),
	}
	return g, nil
}

func (g *gitEnv) git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := command(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = g.env
	return runOut(cmd)
}

// push runs one git push and returns its wall time, start to exit.
func (g *gitEnv) push(ctx context.Context, dir, url, ref string) (time.Duration, error) {
	cmd := command(ctx, "git", "-C", dir, "push", url, "HEAD:"+ref)
	cmd.Env = g.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("git push %s: %w: %s", url, err, strings.TrimSpace(out.String()))
	}
	return d, nil
}

// sshArgs is the argv of an ssh command to a side, with the client options.
func (g *gitEnv) sshArgs(userName string, port int, remote ...string) []string {
	args := append([]string{"ssh"}, g.sshOpts...)
	args = append(args, "-p", fmt.Sprint(port), userName+"@127.0.0.1", "--")
	return append(args, remote...)
}

func (g *gitEnv) ssh(ctx context.Context, argv []string) (string, error) {
	cmd := command(ctx, argv[0], argv[1:]...)
	cmd.Env = g.env
	return runOut(cmd)
}

// negotiated reports the key exchange and cipher an ssh command ends up with.
func (g *gitEnv) negotiated(ctx context.Context, argv []string) string {
	argv = slices.Clone(argv)
	for i, a := range argv {
		if a == "LogLevel=ERROR" {
			argv[i] = "LogLevel=DEBUG1"
		}
	}
	cmd := command(ctx, argv[0], argv[1:]...)
	cmd.Env = g.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	var kex, cipher string
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "debug1: kex: algorithm: "); ok {
			kex = v
		}
		if v, ok := strings.CutPrefix(line, "debug1: kex: server->client cipher: "); ok {
			cipher, _, _ = strings.Cut(v, " ")
		}
	}
	if kex == "" {
		return "unknown"
	}
	return kex + " + " + cipher
}

// handshake is the time of an ssh session that runs no git, on both sides.
type handshake struct {
	label               string
	n                   int
	paasd, sshd         time.Duration
	paasdAlgo, sshdAlgo string
}

// withoutKex drops the benchmark's KexAlgorithms option from an ssh argv.
func withoutKex(argv []string) []string {
	var out []string
	for i := 0; i < len(argv); i++ {
		if argv[i] == "-o" && i+1 < len(argv) && strings.HasPrefix(argv[i+1], "KexAlgorithms=") {
			i++
			continue
		}
		out = append(out, argv[i])
	}
	return out
}

// handshakes times n ssh sessions that run no git on each side, interleaved;
// with defaultKex, the client offers its default key exchanges.
func handshakes(ctx context.Context, pd *paasd, sd *sshd, g *gitEnv, n int, defaultKex bool) (handshake, error) {
	h := handshake{label: "ssh session, no git", n: n}
	pa, sa := pd.sshArgs("version"), sd.sshArgs("true")
	if defaultKex {
		h.label = "ssh session, default kex"
		pa, sa = withoutKex(pa), withoutKex(sa)
	}
	var pr, sr result
	for i := range n {
		for j := range 2 {
			argv, r := pa, &pr
			if (i+j)%2 == 1 {
				argv, r = sa, &sr
			}
			start := time.Now()
			if _, err := g.ssh(ctx, argv); err != nil {
				return h, err
			}
			r.times = append(r.times, time.Since(start))
		}
	}
	h.paasd, h.sshd = pr.median(), sr.median()
	h.paasdAlgo, h.sshdAlgo = g.negotiated(ctx, pa), g.negotiated(ctx, sa)
	return h, nil
}

// buildPaasd builds paasd from this module, as the install script does.
func buildPaasd(ctx context.Context, tmp string) (string, error) {
	gomod, err := runOut(command(ctx, "go", "env", "GOMOD"))
	if err != nil {
		return "", err
	}
	gomod = strings.TrimSpace(gomod)
	data, err := os.ReadFile(gomod)
	if err != nil || !bytes.HasPrefix(data, []byte("module paas\n")) {
		return "", fmt.Errorf("run the benchmark from the paas module (go run ./scripts/bench/push); go.mod here is %q", gomod)
	}
	bin := tmpPath(tmp, "bin", "paasd")
	cmd := command(ctx, "go", "build", "-o", bin, "./cmd/paasd")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if _, err := runOut(cmd); err != nil {
		return "", err
	}
	return bin, nil
}

// paasd is the side under test.
type paasd struct {
	proc                       *daemonProc
	g                          *gitEnv
	instance                   string
	sshPort, httpPort, regPort int
}

func (p *paasd) name() string   { return "paasd" }
func (p *paasd) serverPID() int { return p.proc.cmd.Process.Pid }
func (p *paasd) pid() int       { return p.proc.cmd.Process.Pid }

func (p *paasd) sshArgs(remote ...string) []string {
	return p.g.sshArgs("git", p.sshPort, remote...)
}

func (p *paasd) fresh(ctx context.Context, id string) (string, error) {
	app := "bench-" + id
	if _, err := p.g.ssh(ctx, p.sshArgs("apps:create", app)); err != nil {
		return "", fmt.Errorf("paasd: %w", err)
	}
	return fmt.Sprintf("ssh://git@127.0.0.1:%d/%s", p.sshPort, app), nil
}

func startPaasd(ctx context.Context, tmp, bin string, g *gitEnv, cl *cleanups) (*paasd, error) {
	b := make([]byte, 3)
	rand.Read(b)
	p := &paasd{g: g, instance: "bench" + hex.EncodeToString(b)}
	var err error
	for _, port := range []*int{&p.sshPort, &p.httpPort, &p.regPort} {
		if *port, err = loopback.FreePort(); err != nil {
			return nil, err
		}
	}
	adminKeys := tmpPath(tmp, "admin_keys")
	if err := os.WriteFile(adminKeys, g.pub, 0o600); err != nil {
		return nil, err
	}
	args := []string{"serve",
		"--data-dir", tmpPath(tmp, "paasd-data"),
		"--ssh-addr", fmt.Sprintf("127.0.0.1:%d", p.sshPort),
		"--http-port", fmt.Sprint(p.httpPort), "--https-port", "0",
		"--registry-addr", fmt.Sprintf("127.0.0.1:%d", p.regPort),
		"--docker-certs-dir", "", // 127.0.0.1 needs no CA for the local daemon
		"--domain", "paas.bench",
		"--admin-keys", adminKeys,
		"--name", p.instance,
	}
	p.proc, err = startDaemon(bin, args, tmpPath(tmp, "paasd.log"), syscall.SIGTERM)
	if err != nil {
		return nil, err
	}
	// Registered before anything can fail: the Swarm objects go whatever happens.
	cl.add(func() {
		step("stopping paasd and removing its Swarm objects")
		p.proc.stop(30 * time.Second)
		removeSwarmObjects(p.instance, p.regPort)
	})
	if err := waitPort(ctx, p.sshPort, p.proc.exited, 60*time.Second); err != nil {
		return nil, fmt.Errorf("paasd: %w; log:\n%s", err, p.proc.logTail())
	}
	// Wait for the router too, so that its startup (an image build and a
	// service rollout) does not run during the timed pushes.
	if err := waitRouter(ctx, p.httpPort, p.proc.exited, 90*time.Second); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "bench: warning: paasd's router is not serving (%v); timing anyway\n", err)
	}
	return p, nil
}

func waitRouter(ctx context.Context, port int, exited <-chan struct{}, limit time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = "unknown.invalid"
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("paasd exited")
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("no answer on port %d within %s", port, limit)
}

// removeSwarmObjects removes what `paasd serve --name instance` created: its
// services (the router; apps, should any have deployed), then, once their
// containers are gone, its networks, then its images.
func removeSwarmObjects(instance string, regPort int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := instance + "-"
	list := func(args ...string) []string {
		out, _ := command(ctx, "docker", args...).Output()
		var names []string
		for _, n := range strings.Fields(string(out)) {
			if strings.HasPrefix(n, prefix) {
				names = append(names, n)
			}
		}
		return names
	}
	services := list("service", "ls", "--format", "{{.Name}}")
	for _, s := range services {
		if _, err := runOut(command(ctx, "docker", "service", "rm", s)); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
	for _, s := range services {
		for ctx.Err() == nil {
			out, _ := command(ctx, "docker", "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+s).Output()
			if strings.TrimSpace(string(out)) == "" {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	for _, n := range list("network", "ls", "--format", "{{.Name}}") {
		var err error
		for ctx.Err() == nil {
			if _, err = runOut(command(ctx, "docker", "network", "rm", n)); err == nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
	out, _ := command(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
		"--filter", fmt.Sprintf("reference=127.0.0.1:%d/%s/*", regPort, instance)).Output()
	for _, ref := range strings.Fields(string(out)) {
		if _, err := runOut(command(ctx, "docker", "rmi", "-f", ref)); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
	if left := list("service", "ls", "--format", "{{.Name}}"); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "bench: services left behind: %s\n", strings.Join(left, " "))
	}
}

// sshd is the peer: Debian's OpenSSH server running the system git-receive-pack.
type sshd struct {
	proc  *daemonProc
	g     *gitEnv
	port  int
	user  string
	repos string
}

func (s *sshd) name() string   { return "sshd+git-receive-pack" }
func (s *sshd) serverPID() int { return s.proc.cmd.Process.Pid }

func (s *sshd) sshArgs(remote ...string) []string {
	return s.g.sshArgs(s.user, s.port, remote...)
}

func (s *sshd) fresh(ctx context.Context, id string) (string, error) {
	dir := filepath.Join(s.repos, id+".git")
	if _, err := runOut(command(ctx, "git", "init", "-q", "--bare", "--initial-branch=main", dir)); err != nil {
		return "", err
	}
	return fmt.Sprintf("ssh://%s@127.0.0.1:%d%s", s.user, s.port, dir), nil
}

func startSSHD(ctx context.Context, tmp string, g *gitEnv, cl *cleanups) (*sshd, error) {
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	s := &sshd{g: g, user: u.Username, repos: tmpPath(tmp, "sshd-repos")}
	if s.port, err = loopback.FreePort(); err != nil {
		return nil, err
	}
	dir := tmpPath(tmp, "sshd")
	// The sessions' HOME: an empty directory, as paasd gives git a HOME with
	// nothing in it. Otherwise the login shell sources the real ~/.bashrc on
	// every push, whatever it does (on a developer machine: pyenv, 180 ms).
	home := tmpPath(tmp, "sshd-home")
	for _, d := range []string{dir, home, s.repos, "/run/sshd"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if _, err := runOut(command(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)); err != nil {
		return nil, err
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, g.pub, 0o600); err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
SetEnv HOME=%s
`, s.port, hostKey, filepath.Join(dir, "sshd.pid"), authKeys, home)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if _, err := runOut(command(ctx, sshdPath, "-t", "-f", config)); err != nil {
		return nil, fmt.Errorf("sshd config: %w", err)
	}
	s.proc, err = startDaemon(sshdPath, []string{"-D", "-e", "-f", config}, filepath.Join(dir, "sshd.log"), syscall.SIGKILL)
	if err != nil {
		return nil, err
	}
	cl.add(func() {
		step("stopping sshd")
		s.proc.stop(10 * time.Second)
	})
	if err := waitPort(ctx, s.port, s.proc.exited, 20*time.Second); err != nil {
		return nil, fmt.Errorf("sshd: %w; log:\n%s", err, s.proc.logTail())
	}
	got, err := g.ssh(ctx, s.sshArgs("echo", "$HOME"))
	if err != nil {
		return nil, fmt.Errorf("sshd: %w; log:\n%s", err, s.proc.logTail())
	}
	if strings.TrimSpace(got) != home {
		return nil, fmt.Errorf("sshd: sessions got HOME=%q, not the empty %s (SetEnv not honoured?)", strings.TrimSpace(got), home)
	}
	return s, nil
}

// localTarget pushes to a bare repository on the local filesystem: git runs
// git-receive-pack itself, no SSH at all. A floor, not a side of the ratio.
type localTarget struct{ dir string }

func (l *localTarget) name() string   { return "local" }
func (l *localTarget) serverPID() int { return 0 }

func (l *localTarget) fresh(ctx context.Context, id string) (string, error) {
	dir := filepath.Join(l.dir, id+".git")
	if _, err := runOut(command(ctx, "git", "init", "-q", "--bare", "--initial-branch=main", dir)); err != nil {
		return "", err
	}
	return dir, nil
}
