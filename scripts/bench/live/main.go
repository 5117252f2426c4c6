// Command live is the push-to-live benchmark of issue 3: from `git push`
// starting to the new version answering through the router, for a Procfile
// app and a Go app (no Dockerfile: Cloud Native Buildpacks with the
// air-gapped builder), first push and cached re-push of a one-line change.
// In the same run it times the raw steps by hand on the same app: `git push`
// to a bare repo, `git archive` of the commit, the same pack build (pack as a
// library, same builder, same registry, its own cache) and `docker service
// create/update`, until the new version answers on the service's port.
//
//	go run ./scripts/bench/live [-reps 3] [-timeout 20m]
//
// Needs a Docker daemon in swarm mode and the air-gapped builder
// (scripts/install.sh --deps). Everything it starts is removed at the end.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"paas/builder"
	"paas/internal/loopback"
	"paas/internal/paas"
	"paas/internal/registry"
)

func main() {
	reps := flag.Int("reps", 3, "cached re-pushes per app and side")
	timeout := flag.Duration("timeout", 20*time.Minute, "bound on the whole run")
	keep := flag.Bool("keep", false, "keep the temporary directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	b := &bench{reps: max(*reps, 1)}
	err := b.run(ctx)
	b.cleanup()
	if !*keep && b.tmp != "" {
		os.RemoveAll(b.tmp)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

type bench struct {
	reps     int
	tmp      string
	instance string
	sshPort  int
	httpPort int
	regPort  int
	paasd    *exec.Cmd
	env      []string
	cleanups []func()
}

func step(format string, args ...any) { fmt.Fprintf(os.Stderr, "-- "+format+"\n", args...) }

func freePort() int {
	port, err := loopback.FreePort()
	if err != nil {
		panic(err)
	}
	return port
}

func (b *bench) cmd(ctx context.Context, dir, name string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir, c.Env = dir, b.env
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (b *bench) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
}

// app is one benchmarked app: its files and how to change one line.
type app struct {
	name   string
	files  map[string]string
	change func(v int) map[string]string
}

var apps = []app{
	{name: "procfile",
		files: map[string]string{"Procfile": "web: httpd -f -p $PORT -h www\n", "www/index.html": "version 0\n"},
		change: func(v int) map[string]string {
			return map[string]string{"www/index.html": fmt.Sprintf("version %d\n", v)}
		}},
	{name: "goapp",
		files:  map[string]string{"go.mod": "module example.com/goapp\n\ngo 1.22\n", "main.go": goMain(0)},
		change: func(v int) map[string]string { return map[string]string{"main.go": goMain(v)} }},
}

func goMain(v int) string {
	return fmt.Sprintf(`package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "version %d") })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
`, v)
}

func writeFiles(dir string, files map[string]string) error {
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

type timing struct {
	app, kind string
	paasd     []time.Duration
	raw       []time.Duration
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func (b *bench) run(ctx context.Context) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "paas-bench-live"); err != nil {
		return err
	}
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", builder.DefaultCNBBuilder).Run(); err != nil {
		return fmt.Errorf("the air-gapped builder %s is missing: run scripts/builder/build.sh", builder.DefaultCNBBuilder)
	}
	if err := b.startPaasd(ctx); err != nil {
		return err
	}
	raw, err := newRawSide(ctx, b)
	if err != nil {
		return err
	}
	var results []*timing
	for _, a := range apps {
		first := &timing{app: a.name, kind: "first push"}
		cached := &timing{app: a.name, kind: "cached re-push, one-line change"}
		results = append(results, first, cached)
		pd := filepath.Join(b.tmp, "paasd-"+a.name)
		rd := filepath.Join(b.tmp, "raw-"+a.name)
		for _, d := range []string{pd, rd} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if err := writeFiles(d, a.files); err != nil {
				return err
			}
			if _, err := b.cmd(ctx, d, "git", "init", "-q", "-b", "main"); err != nil {
				return err
			}
			if _, err := b.cmd(ctx, d, "git", "add", "-A"); err != nil {
				return err
			}
			if _, err := b.cmd(ctx, d, "git", "commit", "-q", "-m", "v0"); err != nil {
				return err
			}
		}
		if _, err := b.ssh(ctx, "apps:create", a.name); err != nil {
			return err
		}
		step("%s: first push to paasd", a.name)
		d, err := b.pushPaasd(ctx, pd, a.name, "version 0")
		if err != nil {
			return err
		}
		first.paasd = append(first.paasd, d)
		step("%s: first push, raw steps", a.name)
		if d, err = raw.push(ctx, rd, a.name, "version 0"); err != nil {
			return err
		}
		first.raw = append(first.raw, d)
		for i := 1; i <= b.reps; i++ {
			// Interleaved, alternating which side goes first.
			sides := []func() error{
				func() error {
					if err := b.commitChange(ctx, pd, a.change(i)); err != nil {
						return err
					}
					d, err := b.pushPaasd(ctx, pd, a.name, fmt.Sprintf("version %d", i))
					cached.paasd = append(cached.paasd, d)
					return err
				},
				func() error {
					if err := b.commitChange(ctx, rd, a.change(i)); err != nil {
						return err
					}
					d, err := raw.push(ctx, rd, a.name, fmt.Sprintf("version %d", i))
					cached.raw = append(cached.raw, d)
					return err
				},
			}
			if i%2 == 0 {
				sides[0], sides[1] = sides[1], sides[0]
			}
			step("%s: cached re-push %d/%d", a.name, i, b.reps)
			for _, s := range sides {
				if err := s(); err != nil {
					return err
				}
			}
		}
	}
	fmt.Printf("\npush-to-live, Cloud Native Buildpacks (air-gapped builder), median of the runs\n\n")
	fmt.Printf("| app | case | N | paasd (git push -> live via router) | raw steps (push + pack + service update) | ratio |\n|---|---|---|---|---|---|\n")
	met := true
	for _, r := range results {
		p, w := median(r.paasd), median(r.raw)
		ratio := float64(p) / float64(w)
		fmt.Printf("| %s | %s | %d | %.1f s | %.1f s | %.2fx |\n", r.app, r.kind, len(r.paasd), p.Seconds(), w.Seconds(), ratio)
		if strings.HasPrefix(r.kind, "cached") && (ratio > 1.0 || p > 10*time.Second) {
			met = false
		}
	}
	verdict := "met"
	if !met {
		verdict = "NOT met"
	}
	fmt.Printf("\ntarget: cached re-push <= 1.0x the raw steps and < 10 s: %s\n", verdict)
	return nil
}

func (b *bench) commitChange(ctx context.Context, dir string, files map[string]string) error {
	if err := writeFiles(dir, files); err != nil {
		return err
	}
	_, err := b.cmd(ctx, dir, "git", "commit", "-q", "-am", "change")
	return err
}

func (b *bench) sshArgs(args ...string) []string {
	return append([]string{"-F", "none", "-i", filepath.Join(b.tmp, "key"), "-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "BatchMode=yes", "-p", fmt.Sprint(b.sshPort), "git@127.0.0.1"}, args...)
}

func (b *bench) ssh(ctx context.Context, args ...string) (string, error) {
	return b.cmd(ctx, "", "ssh", b.sshArgs(args...)...)
}

// pushPaasd times git push until host answers want through the router.
func (b *bench) pushPaasd(ctx context.Context, dir, app, want string) (time.Duration, error) {
	start := time.Now()
	url := fmt.Sprintf("ssh://git@127.0.0.1:%d/%s", b.sshPort, app)
	if _, err := b.cmd(ctx, dir, "git", "push", "-q", url, "main"); err != nil {
		return 0, err
	}
	if err := waitHTTP(ctx, b.httpPort, app+".paas.bench", want); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// waitHTTP polls 127.0.0.1:port with Host host until the body holds want.
func waitHTTP(ctx context.Context, port int, host, want string) error {
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = host
		if resp, err := httpClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), want) {
				return nil
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s on port %d never answered %q (last: %s)", host, port, want, last)
}

func (b *bench) startPaasd(ctx context.Context) error {
	rb := make([]byte, 3)
	rand.Read(rb)
	b.instance = "blive" + hex.EncodeToString(rb)
	b.sshPort, b.httpPort, b.regPort = freePort(), freePort(), freePort()
	home := filepath.Join(b.tmp, "home")
	os.MkdirAll(home, 0o700)
	b.env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=b@paas.bench", "GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=b@paas.bench")
	key := filepath.Join(b.tmp, "key")
	if _, err := b.cmd(ctx, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key); err != nil {
		return err
	}
	gitSSH := "ssh " + strings.Join(b.sshArgs()[:len(b.sshArgs())-3], " ")
	b.env = append(b.env, "GIT_SSH_COMMAND="+gitSSH)
	bin := filepath.Join(b.tmp, "paasd")
	step("building paasd")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/paasd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build paasd: %w\n%s", err, out)
	}
	log, err := os.Create(filepath.Join(b.tmp, "paasd.log"))
	if err != nil {
		return err
	}
	b.paasd = exec.Command(bin, "serve", "--data-dir", filepath.Join(b.tmp, "data"),
		"--ssh-addr", fmt.Sprintf("127.0.0.1:%d", b.sshPort), "--http-port", fmt.Sprint(b.httpPort), "--https-port", "0",
		"--registry-addr", fmt.Sprintf("127.0.0.1:%d", b.regPort), "--domain", "paas.bench",
		"--docker-certs-dir", "", // 127.0.0.1 needs no CA for the local daemon
		"--admin-keys", key+".pub", "--name", b.instance)
	b.paasd.Stdout, b.paasd.Stderr = log, log
	b.paasd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.paasd.Start(); err != nil {
		return err
	}
	b.cleanups = append(b.cleanups, func() {
		step("stopping paasd and removing what the run created")
		b.paasd.Process.Signal(syscall.SIGTERM)
		b.paasd.Wait()
		removeObjects(b.instance, b.regPort)
	})
	step("waiting for paasd and its router")
	if err := waitHTTPStatus(ctx, b.httpPort, 404, 120*time.Second); err != nil {
		data, _ := os.ReadFile(log.Name())
		return fmt.Errorf("paasd did not come up: %w\n%s", err, data)
	}
	return nil
}

func waitHTTPStatus(ctx context.Context, port, code int, limit time.Duration) error {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = "unknown.invalid"
		if resp, err := httpClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == code {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return errors.New("timed out")
}

// removeObjects removes the services, networks, volumes and images whose
// names start with instance.
func removeObjects(instance string, regPort int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list := func(args ...string) []string {
		out, _ := exec.CommandContext(ctx, "docker", args...).Output()
		var names []string
		for _, n := range strings.Fields(string(out)) {
			if strings.HasPrefix(n, instance) {
				names = append(names, n)
			}
		}
		return names
	}
	services := list("service", "ls", "--format", "{{.Name}}")
	for _, s := range services {
		exec.CommandContext(ctx, "docker", "service", "rm", s).Run()
	}
	for _, s := range services {
		for ctx.Err() == nil {
			out, _ := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+s).Output()
			if strings.TrimSpace(string(out)) == "" {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	for _, n := range list("network", "ls", "--format", "{{.Name}}") {
		for i := 0; i < 20 && exec.CommandContext(ctx, "docker", "network", "rm", n).Run() != nil; i++ {
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, v := range list("volume", "ls", "-q") {
		exec.CommandContext(ctx, "docker", "volume", "rm", "-f", v).Run()
	}
	out, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
		"--filter", fmt.Sprintf("reference=127.0.0.1:%d/*/*", regPort)).Output()
	for _, ref := range strings.Fields(string(out)) {
		exec.CommandContext(ctx, "docker", "rmi", "-f", ref).Run()
	}
}

// rawSide does by hand what a push does: bare repo, export, pack build,
// docker service create/update.
type rawSide struct {
	b    *bench
	pack *builder.Pack
}

func newRawSide(ctx context.Context, b *bench) (*rawSide, error) {
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	moby, err := builder.NewPackDocker(ctx)
	if err != nil {
		return nil, err
	}
	b.cleanups = append(b.cleanups, func() { moby.Close(); docker.Close() })
	name := b.instance + "-raw"
	// paasd's registry, with its login and CA, as a push uses them; the
	// Docker CLI logs in with a configuration of its own.
	data := filepath.Join(b.tmp, "data")
	password, err := os.ReadFile(filepath.Join(data, "registry-auth", registry.PasswordFileName))
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(data, "registry-tls", registry.CAFileName))
	if err != nil {
		return nil, err
	}
	if err := registry.TrustCA(ca); err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", b.regPort)
	reg := paas.ImageRegistry{Prefix: host + "/" + name, Username: registry.LoginUser, Password: strings.TrimSpace(string(password)),
		CAFile: filepath.Join(data, "registry-tls", registry.CAFileName)}
	b.env = append(b.env, "DOCKER_CONFIG="+filepath.Join(b.tmp, "docker-config"))
	login := exec.CommandContext(ctx, "docker", "login", "-u", reg.Username, "--password-stdin", host)
	login.Env, login.Stdin = b.env, strings.NewReader(reg.Password)
	if out, err := login.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker login: %w\n%s", err, out)
	}
	p := builder.NewPack(docker, moby, nil, reg, name, slog.New(slog.DiscardHandler))
	return &rawSide{b: b, pack: p}, nil
}

func (r *rawSide) push(ctx context.Context, dir, app, want string) (time.Duration, error) {
	b := r.b
	bare := filepath.Join(b.tmp, "bare-"+app+".git")
	if _, err := os.Stat(bare); err != nil {
		if _, err := b.cmd(ctx, "", "git", "init", "-q", "--bare", bare); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if _, err := b.cmd(ctx, dir, "git", "push", "-q", bare, "main"); err != nil {
		return 0, err
	}
	commit, err := b.cmd(ctx, "", "git", "--git-dir", bare, "rev-parse", "main")
	if err != nil {
		return 0, err
	}
	commit = strings.TrimSpace(commit)
	build := filepath.Join(b.tmp, "rawbuild-"+app)
	os.RemoveAll(build)
	os.MkdirAll(build, 0o755)
	if _, err := b.cmd(ctx, "", "sh", "-c", `git --git-dir "$1" archive main | tar -x -C "$2"`, "sh", bare, build); err != nil {
		return 0, err
	}
	img, err := r.pack.Build(ctx, builder.Input{App: app, Dir: build, Tag: commit[:12], Out: io.Discard})
	if err != nil {
		return 0, err
	}
	svc := b.instance + "-raw-" + app
	port := r.port(app)
	if out, _ := b.cmd(ctx, "", "docker", "service", "inspect", svc); strings.HasPrefix(strings.TrimSpace(out), "[]") || out == "" || strings.Contains(out, "No such") {
		_, err = b.cmd(ctx, "", "docker", "service", "create", "-d", "-q", "--with-registry-auth", "--name", svc,
			"--publish", fmt.Sprintf("mode=host,target=5000,published=%d", port), "--env", "PORT=5000",
			// Stop-first (a host port cannot be shared), but without the
			// 10 s grace an app that ignores SIGTERM as PID 1 would add.
			"--stop-grace-period", "100ms", img.Ref())
	} else {
		_, err = b.cmd(ctx, "", "docker", "service", "update", "-d", "-q", "--with-registry-auth", "--image", img.Ref(), svc)
	}
	if err != nil {
		return 0, err
	}
	if err := waitHTTP(ctx, port, "raw", want); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

var rawPorts = map[string]int{}

func (r *rawSide) port(app string) int {
	if p, ok := rawPorts[app]; ok {
		return p
	}
	rawPorts[app] = freePort()
	return rawPorts[app]
}
