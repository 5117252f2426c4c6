// Command pgbackup is the Postgres plugin's backup benchmark: it times
// `ssh paas postgres:backup DB > file` and `ssh paas postgres:restore DB <
// file` (through paasd's SSH server and the Docker exec API) against, in the
// same run and interleaved, the same pg_dump / pg_restore run with the Docker
// CLI (`docker exec`) on the host, and prints medians and ratios.
//
//	go run ./scripts/bench/pgbackup [-rows 300000] [-reps 5]
//
// It needs root, OpenSSH's client, Docker in swarm mode and the Postgres image
// (scripts/install.sh --deps). It runs its own paasd (its own --name, ports and
// data dir) and removes everything it created at the end, also on errors and
// on SIGINT/SIGTERM.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"paas/internal/loopback"
)

func main() {
	rows := flag.Int("rows", 300000, "rows of about 250 bytes in the benchmark table")
	reps := flag.Int("reps", 5, "repetitions of each timed operation")
	timeout := flag.Duration("timeout", 15*time.Minute, "bound on the whole run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *rows, *reps); err != nil {
		fmt.Fprintln(os.Stderr, "pgbackup:", err)
		os.Exit(1)
	}
}

type bench struct {
	tmp, name, bin   string
	sshPort, regPort int
	httpPort         int
	sshConfig        string
	paasd            *exec.Cmd
}

func run(ctx context.Context, rows, reps int) error {
	tmp, err := os.MkdirTemp("", "paas-pgbackup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{tmp: tmp, name: "pgb" + randomHex(3)}
	defer b.cleanup()
	if err := b.start(ctx); err != nil {
		return err
	}
	note("creating the database and loading %d rows", rows)
	if _, err := b.ssh(ctx, nil, "postgres:create", "benchdb"); err != nil {
		return err
	}
	load := fmt.Sprintf("CREATE TABLE t AS SELECT i, md5(i::text) || repeat('x', 200) AS body, now() AS at FROM generate_series(1, %d) i;\nSELECT pg_size_pretty(pg_database_size('benchdb'));\n", rows)
	size, err := b.ssh(ctx, strings.NewReader(load), "postgres:connect", "benchdb")
	if err != nil {
		return err
	}
	cid, err := output(ctx, "docker", "ps", "-q", "--filter", "label=paas.installation="+b.name, "--filter", "label=paas.postgres=benchdb", "--filter", "label=paas.role=postgres")
	if err != nil || cid == "" {
		return fmt.Errorf("find the database container: %v", err)
	}
	dump := filepath.Join(tmp, "bench.dump")

	type op struct {
		name string
		run  func() error
	}
	backup := []op{
		{"paasd: ssh postgres:backup", func() error { return b.sshTo(ctx, dump, "postgres:backup", "benchdb") }},
		{"docker exec pg_dump", func() error {
			return toFile(ctx, dump, "docker", "exec", "-u", "postgres", cid, "pg_dump", "-Fc", "-U", "postgres", "-d", "benchdb")
		}},
	}
	restore := []op{
		{"paasd: ssh postgres:restore", func() error { return b.sshFrom(ctx, dump, "postgres:restore", "benchdb") }},
		{"docker exec -i pg_restore --clean", func() error {
			return fromFile(ctx, dump, "docker", "exec", "-i", "-u", "postgres", cid, "pg_restore", "--clean", "--if-exists", "--no-owner", "--exit-on-error", "-U", "postgres", "-d", "benchdb")
		}},
	}
	results := map[string][]time.Duration{}
	for _, group := range [][]op{backup, restore} {
		for i := range reps {
			order := group
			if i%2 == 1 {
				order = []op{group[1], group[0]}
			}
			for _, o := range order {
				start := time.Now()
				if err := o.run(); err != nil {
					return fmt.Errorf("%s: %w", o.name, err)
				}
				results[o.name] = append(results[o.name], time.Since(start))
			}
		}
	}
	fi, err := os.Stat(dump)
	if err != nil {
		return err
	}
	fmt.Printf("\nPostgres backup and restore, %d rows (database %s, dump %.1f MB), median of %d, interleaved:\n\n",
		rows, strings.TrimSpace(lastLine(size)), float64(fi.Size())/1e6, reps)
	fmt.Println("| operation | paasd (SSH + Docker exec API) | docker exec on the host | ratio |")
	fmt.Println("|---|---|---|---|")
	for _, g := range [][]op{backup, restore} {
		ours, peer := median(results[g[0].name]), median(results[g[1].name])
		fmt.Printf("| %s vs %s | %s | %s | %.2fx |\n", g[0].name, g[1].name, ms(ours), ms(peer), float64(ours)/float64(peer))
	}
	return nil
}

func (b *bench) start(ctx context.Context) error {
	b.bin = filepath.Join(b.tmp, "paasd")
	build := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/paasd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build paasd: %v\n%s", err, out)
	}
	key := filepath.Join(b.tmp, "admin")
	if _, err := output(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key); err != nil {
		return err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	adminKeys := filepath.Join(b.tmp, "admin_keys")
	if err := os.WriteFile(adminKeys, pub, 0o600); err != nil {
		return err
	}
	for _, p := range []*int{&b.sshPort, &b.regPort, &b.httpPort} {
		if *p, err = loopback.FreePort(); err != nil {
			return err
		}
	}
	b.sshConfig = filepath.Join(b.tmp, "ssh_config")
	cfg := fmt.Sprintf("Host paas\n  HostName 127.0.0.1\n  Port %d\n  User git\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n  BatchMode yes\n",
		b.sshPort, key, filepath.Join(b.tmp, "known_hosts"))
	if err := os.WriteFile(b.sshConfig, []byte(cfg), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(b.tmp, "paasd.log"))
	if err != nil {
		return err
	}
	b.paasd = exec.Command(b.bin, "serve", "--data-dir", filepath.Join(b.tmp, "data"),
		"--ssh-addr", fmt.Sprintf("127.0.0.1:%d", b.sshPort), "--http-port", fmt.Sprint(b.httpPort), "--https-port", "0",
		"--registry-addr", fmt.Sprintf("127.0.0.1:%d", b.regPort), "--domain", "paas.bench",
		"--docker-certs-dir", "", // 127.0.0.1 needs no CA for the local daemon
		"--admin-keys", adminKeys, "--name", b.name)
	b.paasd.Stdout, b.paasd.Stderr = logf, logf
	b.paasd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	note("starting paasd --name %s", b.name)
	if err := b.paasd.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := b.ssh(ctx, nil, "version"); err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			data, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("paasd did not answer in 60s:\n%s", data)
		}
	}
}

// cleanup stops paasd and removes the Swarm services, secrets, volumes,
// networks and images of this run's installation.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b.paasd != nil && b.paasd.Process != nil {
		b.paasd.Process.Signal(syscall.SIGTERM)
		b.paasd.Wait()
	}
	label := "label=paas.installation=" + b.name
	svcs, _ := output(ctx, "docker", "service", "ls", "-q", "--filter", label)
	if ids := strings.Fields(svcs); len(ids) > 0 {
		output(ctx, "docker", append([]string{"service", "rm"}, ids...)...)
	}
	for ctx.Err() == nil {
		if cs, _ := output(ctx, "docker", "ps", "-aq", "--filter", label); cs == "" {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if secrets, _ := output(ctx, "docker", "secret", "ls", "-q", "--filter", label); secrets != "" {
		output(ctx, "docker", append([]string{"secret", "rm"}, strings.Fields(secrets)...)...)
	}
	if vols, _ := output(ctx, "docker", "volume", "ls", "-q", "--filter", label); vols != "" {
		output(ctx, "docker", append([]string{"volume", "rm", "-f"}, strings.Fields(vols)...)...)
	}
	for ctx.Err() == nil {
		nets, _ := output(ctx, "docker", "network", "ls", "-q", "--filter", label)
		if nets == "" {
			break
		}
		output(ctx, "docker", append([]string{"network", "rm"}, strings.Fields(nets)...)...)
		time.Sleep(500 * time.Millisecond)
	}
	imgs, _ := output(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", fmt.Sprintf("reference=127.0.0.1:%d/%s/*", b.regPort, b.name))
	for _, ref := range strings.Fields(imgs) {
		output(ctx, "docker", "rmi", "-f", ref)
	}
}

func (b *bench) sshCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ssh", append([]string{"-F", b.sshConfig, "paas"}, args...)...)
}

func (b *bench) ssh(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := b.sshCmd(ctx, args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ssh %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (b *bench) sshTo(ctx context.Context, path string, args ...string) error {
	return redirect(b.sshCmd(ctx, args...), path, true)
}

func (b *bench) sshFrom(ctx context.Context, path string, args ...string) error {
	return redirect(b.sshCmd(ctx, args...), path, false)
}

func toFile(ctx context.Context, path, name string, args ...string) error {
	return redirect(exec.CommandContext(ctx, name, args...), path, true)
}

func fromFile(ctx context.Context, path, name string, args ...string) error {
	return redirect(exec.CommandContext(ctx, name, args...), path, false)
}

// redirect runs cmd with its stdout to path (out) or its stdin from path.
func redirect(cmd *exec.Cmd, path string, out bool) error {
	var f *os.File
	var err error
	if out {
		f, err = os.Create(path)
		cmd.Stdout = f
	} else {
		f, err = os.Open(path)
		cmd.Stdin, cmd.Stdout = f, io.Discard
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, ee.Stderr)
	}
	return strings.TrimSpace(string(out)), err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "(") {
			return l
		}
	}
	return ""
}

func note(format string, args ...any) { fmt.Fprintf(os.Stderr, "-- "+format+"\n", args...) }
