// Command rollout is the zero-downtime benchmark of issue 4. It starts a
// real paasd (its router, registry and Swarm services), deploys a test app,
// and sends steady traffic through the router on 127.0.0.1 while it runs
// 20 deploys, 5 rollbacks, 5 config changes, a scale 1->3->1 and 2 failing
// deploys, all through the real ssh and git clients; it replaces the router
// and its ports process (docker service update --force), and kills paasd
// with SIGKILL in the middle of a deploy and starts it again. It prints requests
// sent and failed, and p50/p99 latency during and outside rollouts, once for
// an app that drains on SIGTERM and once for one that exits at once.
//
//	go run ./scripts/bench/rollout [-deploys 20] [-min-requests 50000] [-timeout 30m]
//
// It needs git, OpenSSH's client, Go and Docker in swarm mode
// (scripts/install.sh --deps). Everything it starts is stopped and removed
// at the end, also on errors and on SIGINT/SIGTERM.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"paas/internal/loopback"
)

type options struct {
	deploys, rollbacks, configs, failing int
	minRequests                          int64
	workers                              int
	timeout                              time.Duration
	apps                                 string
}

func main() {
	var o options
	flag.IntVar(&o.deploys, "deploys", 20, "git pushes that deploy a new release")
	flag.IntVar(&o.rollbacks, "rollbacks", 5, "rollbacks")
	flag.IntVar(&o.configs, "configs", 5, "config changes")
	flag.IntVar(&o.failing, "failing", 2, "pushes whose release fails its health check")
	flag.Int64Var(&o.minRequests, "min-requests", 50000, "keep the load running until at least this many requests were sent")
	flag.IntVar(&o.workers, "workers", 4, "concurrent load connections (keep-alive)")
	flag.DurationVar(&o.timeout, "timeout", 40*time.Minute, "bound on the whole run")
	flag.StringVar(&o.apps, "apps", "drain,exit", "apps to run: drain (graceful on SIGTERM), exit (exits at once)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	for _, tool := range []string{"git", "ssh", "ssh-keygen", "go", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required: run scripts/install.sh --deps", tool)
		}
	}
	tmp, err := os.MkdirTemp("", "paas-rollout-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	inst, err := startInstallation(ctx, tmp)
	if err != nil {
		return err
	}
	defer inst.close()

	fmt.Printf("Zero-downtime benchmark: %d deploys, %d rollbacks, %d config changes, scale web 1->3->1, %d failing deploys, a router and a ports process replacement per app; %d keep-alive connections through the router on 127.0.0.1\n\n",
		o.deploys, o.rollbacks, o.configs, o.failing, o.workers)
	var results []result
	for _, kind := range strings.Split(o.apps, ",") {
		r, err := benchApp(ctx, inst, tmp, kind, o)
		if err != nil {
			return fmt.Errorf("app %s: %w", kind, err)
		}
		results = append(results, r)
	}
	fmt.Println()
	fmt.Printf("%-40s %9s %7s %12s %12s %12s %12s %10s\n", "app", "requests", "failed", "p50 outside", "p99 outside", "p50 during", "p99 during", "p99 ratio")
	ok := true
	for _, r := range results {
		po50, po99 := percentile(r.outside, 50), percentile(r.outside, 99)
		pd50, pd99 := percentile(r.during, 50), percentile(r.during, 99)
		fmt.Printf("%-40s %9d %7d %12s %12s %12s %12s %9.2fx\n", r.name, r.sent, r.failed, ms(po50), ms(po99), ms(pd50), ms(pd99), float64(pd99)/float64(max(po99, 1)))
		ok = ok && r.failed == 0 && r.sent >= o.minRequests
		for _, f := range r.firstFailures {
			fmt.Println("   failure:", f)
		}
	}
	fmt.Printf("\ntarget: 0 failed of at least %d requests per app; p99 during rollouts at most 2x p99 outside them\n", o.minRequests)
	if !ok {
		return errors.New("target missed: requests failed or too few were sent")
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

type result struct {
	name            string
	sent, failed    int64
	during, outside []time.Duration
	firstFailures   []string
}

// installation is a paasd started for the benchmark.
type installation struct {
	name     string
	httpPort int
	sshArgs  []string
	gitSSH   string
	cmd      *exec.Cmd
	args     []string // paasd's, to start it again
	log      string
}

func runCmd(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func startInstallation(ctx context.Context, tmp string) (*installation, error) {
	repo, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(tmp, "paasd")
	fmt.Println("-----> Building paasd")
	if _, err := runCmd(ctx, repo, []string{"CGO_ENABLED=0"}, "go", "build", "-o", bin, "./cmd/paasd"); err != nil {
		return nil, err
	}
	key := filepath.Join(tmp, "id_ed25519")
	if _, err := runCmd(ctx, tmp, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return nil, err
	}
	adminKeys := filepath.Join(tmp, "admin_keys")
	if err := os.WriteFile(adminKeys, pub, 0o600); err != nil {
		return nil, err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = loopback.FreePort(); err != nil {
			return nil, err
		}
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	inst := &installation{name: "rbench-" + hex.EncodeToString(b), httpPort: ports[1], log: filepath.Join(tmp, "paasd.log")}
	inst.args = []string{bin, "serve", "--data-dir", filepath.Join(tmp, "data"),
		"--ssh-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--http-port", fmt.Sprint(ports[1]), "--https-port", "0",
		"--registry-addr", fmt.Sprintf("127.0.0.1:%d", ports[2]), "--domain", "paas.bench",
		"--docker-certs-dir", "", // 127.0.0.1 needs no CA for the local daemon
		"--admin-keys", adminKeys, "--name", inst.name}
	opts := []string{"-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", fmt.Sprint(ports[0])}
	inst.sshArgs = append(opts, "git@127.0.0.1")
	inst.gitSSH = "ssh " + strings.Join(opts, " ")
	fmt.Printf("-----> Starting paasd %s (router on 127.0.0.1:%d)\n", inst.name, inst.httpPort)
	if err := inst.start(ctx); err != nil {
		inst.close()
		return nil, err
	}
	return inst, nil
}

// start starts paasd and waits until the router and SSH answer.
func (in *installation) start(ctx context.Context) error {
	logf, err := os.OpenFile(in.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	in.cmd = exec.Command(in.args[0], in.args[1:]...)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	if err := in.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", in.httpPort))
		if err == nil {
			resp.Body.Close()
			if _, err := in.ssh(ctx, "version"); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("paasd did not come up; log %s", in.log)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// killDuring runs cmd and kills paasd with SIGKILL once a line of cmd's
// output contains mark; it returns cmd's error and whether it killed.
func (in *installation) killDuring(cmd *exec.Cmd, mark string) (bool, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return false, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		w.Close()
		return false, err
	}
	w.Close()
	killed := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if !killed && strings.Contains(sc.Text(), mark) {
			killed = true
			_ = in.cmd.Process.Kill()
			_ = in.cmd.Wait()
		}
	}
	return killed, cmd.Wait()
}

// settled waits until no build of app is running (a restart settles the
// ones a killed paasd left open).
func (in *installation) settled(ctx context.Context, app string) error {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, err := in.ssh(ctx, "builds:list", app, "--format", "json")
		if err == nil && !strings.Contains(out, `"status":"running"`) {
			return nil
		}
	}
	return fmt.Errorf("a build of %s is still running 2 minutes after the restart", app)
}

func (in *installation) ssh(ctx context.Context, args ...string) (string, error) {
	return runCmd(ctx, "", nil, "ssh", append(slices.Clone(in.sshArgs), args...)...)
}

func (in *installation) close() {
	if in.cmd != nil && in.cmd.Process != nil {
		_ = in.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = in.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = in.cmd.Process.Kill()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	filter := "label=paas.installation=" + in.name
	if out, err := runCmd(ctx, "", nil, "docker", "service", "ls", "-q", "--filter", filter); err == nil && strings.TrimSpace(out) != "" {
		_, _ = runCmd(ctx, "", nil, "docker", append([]string{"service", "rm"}, strings.Fields(out)...)...)
	}
	for range 60 {
		out, _ := runCmd(ctx, "", nil, "docker", "ps", "-aq", "--filter", filter)
		if strings.TrimSpace(out) == "" {
			break
		}
		time.Sleep(time.Second)
	}
	if out, err := runCmd(ctx, "", nil, "docker", "network", "ls", "-q", "--filter", filter); err == nil && strings.TrimSpace(out) != "" {
		_, _ = runCmd(ctx, "", nil, "docker", append([]string{"network", "rm"}, strings.Fields(out)...)...)
	}
	if out, err := runCmd(ctx, "", nil, "docker", "volume", "ls", "-q", "--filter", filter); err == nil && strings.TrimSpace(out) != "" {
		_, _ = runCmd(ctx, "", nil, "docker", append([]string{"volume", "rm"}, strings.Fields(out)...)...)
	}
	if out, err := runCmd(ctx, "", nil, "docker", "images", "-q", "--filter", "reference=*/"+in.name+"/*"); err == nil && strings.TrimSpace(out) != "" {
		_, _ = runCmd(ctx, "", nil, "docker", append([]string{"rmi", "-f"}, strings.Fields(out)...)...)
	}
}

// load is steady GET traffic through the router.
type load struct {
	sent, failed atomic.Int64
	rolling      atomic.Bool // an operation is running

	mu              sync.Mutex
	during, outside []time.Duration
	first           []string
}

func (l *load) run(ctx context.Context, port int, host string, workers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				req.Host = host
				rolling := l.rolling.Load()
				start := time.Now()
				resp, err := c.Do(req)
				status := 0
				if err == nil {
					status = resp.StatusCode
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				d := time.Since(start)
				if ctx.Err() != nil {
					return // cut by the end of the run, not by the platform
				}
				rolling = rolling || l.rolling.Load()
				l.sent.Add(1)
				l.mu.Lock()
				if rolling {
					l.during = append(l.during, d)
				} else {
					l.outside = append(l.outside, d)
				}
				if err != nil || status != http.StatusOK {
					l.failed.Add(1)
					if len(l.first) < 10 {
						l.first = append(l.first, fmt.Sprintf("%s status %d err %v", time.Now().Format("15:04:05.000"), status, err))
					}
				}
				l.mu.Unlock()
			}
		})
	}
	return &wg
}

const appSource = `package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	version, _ := os.ReadFile("/version")
	broken := len(os.Getenv("BROKEN")) > 0
	if _, err := os.Stat("/broken"); err == nil {
		broken = true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if broken {
			io.WriteString(w, "broken")
			return
		}
		io.WriteString(w, "ready")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "v=%s n=%s\n", version, os.Getenv("N"))
	})
	srv := &http.Server{Addr: ":" + os.Getenv("PORT"), Handler: mux}
	if os.Getenv("DRAIN") == "1" {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		go func() {
			<-stop
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		}()
	}
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		panic(err)
	}
}
`

func benchApp(ctx context.Context, in *installation, tmp, kind string, o options) (result, error) {
	drain := kind == "drain"
	if kind != "drain" && kind != "exit" {
		return result{}, fmt.Errorf("unknown app kind %q", kind)
	}
	app := "bench-" + kind
	name := map[bool]string{true: "drains on SIGTERM", false: "exits at once on SIGTERM"}[drain]
	fmt.Printf("-----> %s: an app that %s\n", app, name)
	dir := filepath.Join(tmp, app)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	files := map[string]string{
		"main.go":    appSource,
		"go.mod":     "module app\n\ngo 1.22\n",
		"Dockerfile": "FROM scratch\nCOPY server /server\nCOPY version /version\nCOPY extra/ /\nCMD [\"/server\"]\n",
		"app.json":   `{"healthchecks":{"web":[{"path":"/ready","content":"ready","attempts":3,"wait":1}]}}`,
		"version":    "1",
		"extra/keep": "",
	}
	for f, content := range files {
		p := filepath.Join(dir, f)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return result{}, err
		}
	}
	if _, err := runCmd(ctx, dir, []string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off"}, "go", "build", "-o", "server", "."); err != nil {
		return result{}, err
	}
	gitEnv := []string{"GIT_SSH_COMMAND=" + in.gitSSH, "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=b@example.com"}
	git := func(args ...string) error {
		_, err := runCmd(ctx, dir, gitEnv, "git", args...)
		return err
	}
	if _, err := in.ssh(ctx, "apps:create", app); err != nil {
		return result{}, err
	}
	cfg := "DRAIN=0"
	if drain {
		cfg = "DRAIN=1"
	}
	if _, err := in.ssh(ctx, "config:set", "--no-restart", app, cfg); err != nil {
		return result{}, err
	}
	if err := git("init", "-q", "-b", "main"); err != nil {
		return result{}, err
	}
	if err := git("add", "-A"); err != nil {
		return result{}, err
	}
	if err := git("commit", "-q", "-m", "v1"); err != nil {
		return result{}, err
	}
	if err := git("remote", "add", "paas", fmt.Sprintf("ssh://git@127.0.0.1:%s/%s", in.sshArgs[len(in.sshArgs)-2], app)); err != nil {
		return result{}, err
	}
	if err := git("push", "-q", "paas", "main"); err != nil {
		return result{}, err
	}

	l := &load{}
	lctx, stopLoad := context.WithCancel(ctx)
	wg := l.run(lctx, in.httpPort, app+".paas.bench", o.workers)
	defer func() { stopLoad(); wg.Wait() }()

	type op struct {
		name    string
		fn      func() error
		wantErr bool
	}
	var ops []op
	push := func(i int, broken bool) func() error {
		return func() error {
			if err := os.WriteFile(filepath.Join(dir, "version"), []byte(fmt.Sprint(i)), 0o644); err != nil {
				return err
			}
			brokenFile := filepath.Join(dir, "extra", "broken")
			if broken {
				_ = os.WriteFile(brokenFile, nil, 0o644)
			} else {
				_ = os.Remove(brokenFile)
			}
			if err := git("add", "-A"); err != nil {
				return err
			}
			if err := git("commit", "-q", "-m", fmt.Sprint("change ", i)); err != nil {
				return err
			}
			err := git("push", "-q", "paas", "main")
			if broken && err != nil {
				_ = git("reset", "-q", "--hard", "HEAD~1")
			}
			return err
		}
	}
	ssh := func(args ...string) func() error {
		return func() error { _, err := in.ssh(ctx, args...); return err }
	}
	// paasd killed with SIGKILL right after a push's release received
	// traffic, then started again: the restart rolls the release back (git
	// never moved the branch), while the router keeps serving throughout.
	killMidDeploy := func() error {
		if err := os.WriteFile(filepath.Join(dir, "version"), []byte("killed"), 0o644); err != nil {
			return err
		}
		if err := git("commit", "-q", "-am", "killed mid-deploy"); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "git", "push", "--progress", "paas", "main")
		cmd.Dir, cmd.Env = dir, append(os.Environ(), gitEnv...)
		killed, pushErr := in.killDuring(cmd, "receives traffic")
		if err := in.start(ctx); err != nil {
			return err
		}
		if !killed {
			return fmt.Errorf("the push never reached its switch: %v", pushErr)
		}
		if err := in.settled(ctx, app); err != nil {
			return err
		}
		return pushErr
	}
	replace := func(service string) func() error {
		return func() error {
			_, err := runCmd(ctx, "", nil, "docker", "service", "update", "--quiet", "--force", service)
			return err
		}
	}
	version := 2
	rollbacks, configs, failing := 0, 0, 0
	for i := range o.deploys {
		ops = append(ops, op{name: fmt.Sprintf("deploy %d", i+1), fn: push(version, false)})
		version++
		if i%4 == 3 && rollbacks < o.rollbacks {
			ops = append(ops, op{name: "rollback", fn: ssh("rollback", app)})
			rollbacks++
		}
		if i%4 == 1 && configs < o.configs {
			ops = append(ops, op{name: "config change", fn: ssh("config:set", app, fmt.Sprintf("N=%d", i))})
			configs++
		}
		if i%10 == 5 && failing < o.failing {
			ops = append(ops, op{name: "failing deploy", fn: push(version, true), wantErr: true})
			version++
			failing++
		}
		if i == o.deploys/2 {
			ops = append(ops, op{name: "scale web=3", fn: ssh("ps:scale", app, "web=3")}, op{name: "scale web=1", fn: ssh("ps:scale", app, "web=1")})
			ops = append(ops, op{name: "paasd kill -9", fn: killMidDeploy, wantErr: true})
		}
		if i == o.deploys/4 {
			// The router itself replaced (as by an upgrade of paas or a
			// change of its spec), then its ports process.
			ops = append(ops,
				op{name: "router replacement", fn: replace(in.name + "-router")},
				op{name: "ports replacement", fn: replace(in.name + "-router-ports")})
		}
	}
	for ; rollbacks < o.rollbacks; rollbacks++ {
		ops = append(ops, op{name: "rollback", fn: ssh("rollback", app)})
	}
	for ; configs < o.configs; configs++ {
		ops = append(ops, op{name: "config change", fn: ssh("config:set", app, fmt.Sprintf("N=c%d", configs))})
	}
	for ; failing < o.failing; failing++ {
		ops = append(ops, op{name: "failing deploy", fn: push(version, true), wantErr: true})
		version++
	}

	time.Sleep(2 * time.Second) // a quiet baseline first
	opStart := time.Now()
	for i, op := range ops {
		l.rolling.Store(true)
		start := time.Now()
		err := op.fn()
		l.rolling.Store(false)
		if (err != nil) != op.wantErr {
			return result{}, fmt.Errorf("%s: got error %v, want error %v", op.name, err, op.wantErr)
		}
		fmt.Printf("       %2d/%d %-18s %6.1fs  requests so far %d, failed %d\n", i+1, len(ops), op.name, time.Since(start).Seconds(), l.sent.Load(), l.failed.Load())
		time.Sleep(time.Second)
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
	}
	for l.sent.Load() < o.minRequests && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	fmt.Printf("       %d operations in %.0fs\n", len(ops), time.Since(opStart).Seconds())
	_, _ = in.ssh(ctx, "apps:destroy", app, "--force")
	l.mu.Lock()
	defer l.mu.Unlock()
	return result{name: app + " (" + name + ")", sent: l.sent.Load(), failed: l.failed.Load(), during: l.during, outside: l.outside, firstFailures: l.first}, nil
}
