package main

// End-to-end scenarios: each testdata/script/*.txtar runs against the real
// paasd binary, the real ssh and git clients, the real Docker daemon in swarm
// mode and the embedded registry. Every scenario gets its own installation
// (--name), ports and data dir, and everything it started is removed at its end.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/daemon"
	"paas/internal/loopback"
	"paas/scheduler"
)

var paasdBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if os.Getenv("PAAS_E2E") == "0" {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "paasd-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		paasdBin = filepath.Join(dir, "paasd")
		build := exec.Command("go", "build", "-o", paasdBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build paasd:", err)
			return 1
		}
		return m.Run()
	}())
}

// requireTools fails (never skips) when a real part is missing: a skipped
// end-to-end test is an untested feature.
func requireTools(t *testing.T) {
	for _, tool := range []string{"git", "ssh", "ssh-keygen", "docker", "go", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required for the end-to-end tests: run scripts/install.sh --deps", tool)
		}
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "active" {
		t.Fatalf("a Docker daemon in swarm mode is required (got %q, %v): run scripts/install.sh --deps", out, err)
	}
}

func TestScripts(t *testing.T) {
	if paasdBin == "" {
		t.Fatal("PAAS_E2E=0: end-to-end tests disabled")
	}
	requireTools(t)
	t.Parallel() // beside TestCluster
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		Setup:               setupInstallation,
		Cmds:                scriptCmds,
		RequireExplicitExec: true,
	})
}

func freePort(t testing.TB) int {
	port, err := loopback.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func runQuiet(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// installation is one paasd under test.
type installation struct {
	name, dataDir, work string
	sshPort, httpPort   int
	httpsPort           int
	extraArgs           []string // more flags for paasd serve (e2e_tls_test.go)
	regPort             int
	adminKeys           string
	bin                 string // the paasd binary; paasdBin when empty
	cmd                 *exec.Cmd
	logFile             *os.File

	// Where it runs: the machine's Docker daemon when dockerHost is "",
	// else a cluster's manager (cluster_e2e_test.go). routerHost is where
	// the router's ports answer (the manager's address on a cluster),
	// regHost where the embedded registry listens and every node pulls.
	dockerHost string
	routerHost string
	regHost    string
	env        []string // more environment of paasd serve
}

// routerAddr is HOST:PORT of the router's HTTP port.
func (in *installation) routerAddr() string {
	return net.JoinHostPort(cmp.Or(in.routerHost, "127.0.0.1"), fmt.Sprint(in.httpPort))
}

// registryHostPort is where the embedded registry listens.
func (in *installation) registryHostPort() string {
	return net.JoinHostPort(cmp.Or(in.regHost, "127.0.0.1"), fmt.Sprint(in.regPort))
}

// dockerEnv is the environment of a docker command of this installation's
// Docker daemon.
func dockerEnv(dockerHost string) []string {
	if dockerHost == "" {
		return os.Environ()
	}
	return append(os.Environ(), "DOCKER_HOST="+dockerHost)
}

// docker runs the docker CLI against the installation's Docker daemon (that
// of the script's $DOCKER_HOST, the machine's when unset).
func docker(ts *testscript.TestScript, args ...string) *exec.Cmd {
	cmd := exec.Command("docker", args...)
	cmd.Env = dockerEnv(ts.Getenv("DOCKER_HOST"))
	return cmd
}

func (in *installation) args() []string {
	return append([]string{"serve",
		"--data-dir", in.dataDir,
		"--ssh-addr", fmt.Sprintf("127.0.0.1:%d", in.sshPort),
		"--http-port", fmt.Sprint(in.httpPort),
		"--https-port", fmt.Sprint(in.httpsPort),
		"--registry-addr", in.registryHostPort(),
		"--domain", "paas.test",
		"--admin-keys", in.adminKeys,
		"--name", in.name,
		// The relay listener of the routers of other managers: a port
		// of its own for each installation.
		"--control-addr", "127.0.0.1:0",
	}, in.extraArgs...)
}

func (in *installation) start() error {
	if in.cmd != nil {
		return fmt.Errorf("paasd already running")
	}
	bin := paasdBin
	if in.bin != "" {
		bin = in.bin
	}
	cmd := exec.Command(bin, in.args()...)
	cmd.Env = append(dockerEnv(in.dockerHost), in.env...)
	cmd.Stdout, cmd.Stderr = in.logFile, in.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	in.cmd = cmd
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", in.sshPort)); err == nil {
			c.Close()
			// The router is up when an unknown host gets its 404.
			if code, _, err := in.get("unknown.invalid", "/"); err == nil && code == 404 {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("paasd did not come up in 90s; log:\n%s", in.log())
}

func (in *installation) stop() {
	if in.cmd == nil {
		return
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	in.cmd = nil
}

func (in *installation) log() string {
	data, _ := os.ReadFile(in.logFile.Name())
	return string(data)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func (in *installation) get(host, path string) (int, string, error) {
	req, err := http.NewRequest("GET", "http://"+in.routerAddr()+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), nil
}

func (in *installation) cleanup() {
	if l := loads.get(in.work); l != nil {
		l.cancel()
		l.wg.Wait()
		loads.delete(in.work)
	}
	closeIdleConns(in.work)
	in.stop()
	in.removeFromDocker()
	in.logFile.Close()
}

// removeFromDocker removes everything the installation made in Docker:
// services, secrets, networks, configs, volumes, images, build caches, and
// the registry CA it gave the daemon.
func (in *installation) removeFromDocker() {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if in.dockerHost != "" {
		opts = append(opts, client.WithHost(in.dockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return
	}
	defer cli.Close()
	dockerCmd := func(args ...string) *exec.Cmd {
		cmd := exec.Command("docker", args...)
		cmd.Env = dockerEnv(in.dockerHost)
		return cmd
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	scheduler.New(cli, scheduler.Options{Name: in.name, Network: in.name + "-net"}).RemoveAll(ctx)
	// Volumes of this installation (Postgres databases).
	vols, _ := dockerCmd("volume", "ls", "-q", "--filter", "label=paas.installation="+in.name).Output()
	for _, v := range strings.Fields(string(vols)) {
		dockerCmd("volume", "rm", "-f", v).Run()
	}
	removeConfigs(ctx, cli, in.name)
	// Images of this installation: everything tagged under its registry prefix.
	out, _ := dockerCmd("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+in.registryHostPort()+"/"+in.name+"/*").Output()
	for _, ref := range strings.Fields(string(out)) {
		dockerCmd("rmi", "-f", ref).Run()
	}
	// The registry's CA paasd wrote for the local daemon (and a cluster's
	// nodes, which share the machine's /etc).
	os.RemoveAll(filepath.Join(daemon.DefaultDockerCertsDir, in.registryHostPort()))
	// Build cache volumes of this installation's apps.
	vols, _ = dockerCmd("volume", "ls", "-q", "--filter", "name="+in.name+"-cache-").Output()
	for _, v := range strings.Fields(string(vols)) {
		dockerCmd("volume", "rm", "-f", v).Run()
	}
}

var installations byWork[*installation]

// byWork is per-script state keyed by the script's $WORK: testscript runs
// the scripts in parallel.
type byWork[T any] struct {
	mu sync.Mutex
	m  map[string]T
}

func (b *byWork[T]) get(work string) T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[work]
}

func (b *byWork[T]) set(work string, v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]T{}
	}
	b.m[work] = v
}

func (b *byWork[T]) delete(work string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, work)
}

func setupInstallation(env *testscript.Env) error {
	return setup(env, nil)
}

// setup makes a scenario's installation and starts its paasd; target, when
// set, points it at somewhere else than the machine's Docker daemon (a
// cluster) before it starts.
func setup(env *testscript.Env, target func(in *installation, env *testscript.Env)) error {
	b := make([]byte, 3)
	rand.Read(b)
	in := &installation{
		name:      "t" + hex.EncodeToString(b),
		work:      env.WorkDir,
		dataDir:   filepath.Join(env.WorkDir, ".paas-data"),
		sshPort:   freePort(env.T().(testing.TB)),
		httpPort:  freePort(env.T().(testing.TB)),
		httpsPort: freePort(env.T().(testing.TB)),
		regPort:   freePort(env.T().(testing.TB)),
	}
	if target != nil {
		target(in, env)
	}
	// A scenario's own paasd serve flags: a file .paasd-flags in its archive.
	if flags, err := os.ReadFile(filepath.Join(env.WorkDir, ".paasd-flags")); err == nil {
		in.extraArgs = strings.Fields(string(flags))
	}
	home := filepath.Join(env.WorkDir, ".home")
	sshDir := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	for _, k := range []string{"admin", "alice", "stranger"} {
		if err := runQuiet("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k, "-f", filepath.Join(sshDir, k)); err != nil {
			return err
		}
	}
	adminPub, err := os.ReadFile(filepath.Join(sshDir, "admin.pub"))
	if err != nil {
		return err
	}
	in.adminKeys = filepath.Join(env.WorkDir, ".admin_keys")
	if err := os.WriteFile(in.adminKeys, adminPub, 0o600); err != nil {
		return err
	}
	// One Host entry per key, as a user would write in ~/.ssh/config.
	var cfg bytes.Buffer
	for _, k := range []string{"admin", "alice", "stranger"} {
		host := "paas"
		if k != "admin" {
			host = "paas-" + k
		}
		fmt.Fprintf(&cfg, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  User git\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n  BatchMode yes\n\n",
			host, in.sshPort, filepath.Join(sshDir, k), filepath.Join(sshDir, "known_hosts"))
	}
	sshConfig := filepath.Join(sshDir, "config")
	if err := os.WriteFile(sshConfig, cfg.Bytes(), 0o600); err != nil {
		return err
	}
	in.logFile, err = os.Create(filepath.Join(env.WorkDir, ".paasd.log"))
	if err != nil {
		return err
	}
	env.Setenv("HOME", home)
	env.Setenv("PATH", filepath.Dir(paasdBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	env.Setenv("GIT_SSH_COMMAND", "ssh -F "+sshConfig)
	env.Setenv("GIT_AUTHOR_NAME", "Test")
	env.Setenv("GIT_AUTHOR_EMAIL", "test@example.com")
	env.Setenv("GIT_COMMITTER_NAME", "Test")
	env.Setenv("GIT_COMMITTER_EMAIL", "test@example.com")
	env.Setenv("SSHCONFIG", sshConfig)
	env.Setenv("SSHDIR", sshDir)
	env.Setenv("HTTP_PORT", fmt.Sprint(in.httpPort))
	env.Setenv("HTTPS_PORT", fmt.Sprint(in.httpsPort))
	env.Setenv("SSH_PORT", fmt.Sprint(in.sshPort))
	env.Setenv("REG_PORT", fmt.Sprint(in.regPort))
	env.Setenv("REGISTRY", in.registryHostPort()+"/"+in.name)
	env.Setenv("ROUTER_ADDR", in.routerAddr())
	env.Setenv("PAAS_NAME", in.name)
	env.Setenv("DATA_DIR", in.dataDir)
	env.Setenv("GOCACHE", goEnv("GOCACHE"))
	env.Setenv("GOPATH", goEnv("GOPATH"))
	env.Setenv("GOFLAGS", "-mod=mod")
	env.Setenv("CGO_ENABLED", "0")
	installations.set(env.WorkDir, in)
	env.Defer(func() {
		if env.T().(testing.TB).Failed() {
			env.T().Log("paasd log:\n" + in.log())
		}
		in.cleanup()
		installations.delete(env.WorkDir)
	})
	return in.start()
}

func goEnv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"load": cmdLoad,
	// paasd-stop / paasd-start: stop and restart the control plane.
	"paasd-stop": func(ts *testscript.TestScript, neg bool, args []string) {
		installations.get(ts.Getenv("WORK")).stop()
	},
	// paasd-kill: kill the control plane (SIGKILL), as a crash would.
	"paasd-kill": func(ts *testscript.TestScript, neg bool, args []string) {
		in := installations.get(ts.Getenv("WORK"))
		if in.cmd == nil {
			ts.Fatalf("paasd is not running")
		}
		syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		in.cmd.Wait()
		in.cmd = nil
	},
	// wait-web-services N: wait up to 60s until the app has N web services.
	"wait-web-services": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: wait-web-services APP N")
		}
		var last string
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			out, err := docker(ts, "service", "ls", "-q", "--filter", "label=paas.installation="+ts.Getenv("PAAS_NAME"),
				"--filter", "label=paas.app="+args[0], "--filter", "label=paas.process=web").CombinedOutput()
			ts.Check(err)
			last = strings.TrimSpace(string(out))
			if fmt.Sprint(len(strings.Fields(last))) == args[1] {
				return
			}
		}
		ts.Fatalf("%s has web services %q, want %s", args[0], last, args[1])
	},
	// paasd-lose: the machine is lost: paasd stops, and what it made in
	// Docker and its data dir are gone.
	"paasd-lose": func(ts *testscript.TestScript, neg bool, args []string) {
		in := installations.get(ts.Getenv("WORK"))
		in.stop()
		in.removeFromDocker()
		ts.Check(os.RemoveAll(in.dataDir))
	},
	// registry-moves: the embedded registry of the next start listens on
	// another port (a restore on a machine at another address).
	"registry-moves": func(ts *testscript.TestScript, neg bool, args []string) {
		in := installations.get(ts.Getenv("WORK"))
		port, err := loopback.FreePort()
		ts.Check(err)
		in.regPort = port
		ts.Setenv("REG_PORT", fmt.Sprint(port))
		ts.Setenv("REGISTRY", in.registryHostPort()+"/"+in.name)
	},
	"paasd-start": func(ts *testscript.TestScript, neg bool, args []string) {
		ts.Check(installations.get(ts.Getenv("WORK")).start())
	},
	// http HOST PATH: GET through the router on 127.0.0.1; prints the body,
	// fails on a status other than 200 (or succeeds only on one with !).
	"http": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: http HOST PATH")
		}
		code, body, err := installations.get(ts.Getenv("WORK")).get(args[0], args[1])
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "%d\n%s", code, body)
		if (code != 200) != neg {
			ts.Fatalf("GET %s%s: %d %s", args[0], args[1], code, body)
		}
	},
	// wait-http HOST PATH TEXT: retry for up to 30s until the body contains TEXT.
	"wait-http": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: wait-http HOST PATH TEXT")
		}
		in := installations.get(ts.Getenv("WORK"))
		var last string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			code, body, err := in.get(args[0], args[1])
			last = fmt.Sprintf("%d %s %v", code, body, err)
			if err == nil && code == 200 && strings.Contains(body, args[2]) {
				return
			}
		}
		ts.Fatalf("GET %s%s never answered %q; last: %s", args[0], args[1], args[2], last)
	},
	// build-app DIR: compile DIR's Go server statically into DIR/server.
	"build-app": func(ts *testscript.TestScript, neg bool, args []string) {
		dir := ts.MkAbs(args[0])
		cmd := exec.Command("go", "build", "-o", "server", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GO111MODULE=on", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			ts.Fatalf("build app: %v\n%s", err, out)
		}
	},
	// wait-ssh PATTERN ARGS...: run `ssh paas ARGS...` every half second,
	// for up to 60s, until its output matches the regular expression
	// PATTERN; prints the last output (for stdout checks that follow).
	"wait-ssh": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: wait-ssh PATTERN ARGS...")
		}
		re, err := regexp.Compile("(?m)" + args[0])
		ts.Check(err)
		var last []byte
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			last, _ = exec.Command("ssh", append([]string{"-F", ts.Getenv("SSHCONFIG"), "paas"}, args[1:]...)...).CombinedOutput()
			if re.Match(last) {
				ts.Stdout().Write(last)
				return
			}
		}
		ts.Fatalf("ssh paas %s never printed a match for %s; last:\n%s", strings.Join(args[1:], " "), args[0], last)
	},
	// sleep SECONDS
	"sleep": func(ts *testscript.TestScript, neg bool, args []string) {
		d, err := time.ParseDuration(args[0] + "s")
		ts.Check(err)
		time.Sleep(d)
	},
	// wait-file GLOB SECONDS: wait until a file matches GLOB.
	"wait-file": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: wait-file GLOB SECONDS")
		}
		secs, err := time.ParseDuration(args[1] + "s")
		ts.Check(err)
		for deadline := time.Now().Add(secs); time.Now().Before(deadline); time.Sleep(time.Second) {
			if m, _ := filepath.Glob(ts.MkAbs(args[0])); len(m) > 0 {
				return
			}
		}
		ts.Fatalf("no file matched %s in %s", args[0], secs)
	},
	// docker-services: list this installation's Swarm services (names).
	"docker-services": func(ts *testscript.TestScript, neg bool, args []string) {
		out, err := docker(ts, "service", "ls", "--format", "{{.Name}}", "--filter", "label=paas.installation="+ts.Getenv("PAAS_NAME")).CombinedOutput()
		ts.Check(err)
		ts.Stdout().Write(out)
	},
}
