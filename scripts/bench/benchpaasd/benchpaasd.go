// Package benchpaasd starts a real paasd with many apps in its store for
// the benchmarks of its doors (scripts/bench/api, scripts/bench/dashboard):
// an admin key, an SSH connection kept open, an API token and an HTTPS
// client of paas.DOMAIN through the router; and the figures they print.
package benchpaasd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/loopback"
	"paas/internal/paas"
	"paas/internal/store"
)

// Domain is the installation's domain: the API and the dashboard are at
// paas.Domain.
const Domain = "paas.bench"

// Installation is a running paasd with apps apps in its store.
type Installation struct {
	Tmp, DataDir, Name, LogPath string
	HTTPSPort                   int
	SSH                         *gossh.Client // as the administrator
	Token                       string        // an API token of the administrator
	Client                      *http.Client  // HTTPS to paas.Domain through the router

	cmd  *exec.Cmd
	logf *os.File
}

// Start builds paasd, fills a new store with apps apps (app-000, ...) and
// starts paasd on it, then waits until its API answers through the router.
// Close stops it and removes everything it made.
func Start(ctx context.Context, prefix string, apps int) (in *Installation, err error) {
	tmp, err := os.MkdirTemp("", "paas-bench-"+prefix)
	if err != nil {
		return nil, err
	}
	in = &Installation{Tmp: tmp, DataDir: filepath.Join(tmp, "data"), LogPath: filepath.Join(tmp, "paasd.log")}
	defer func() {
		if err != nil {
			in.Close()
		}
	}()
	bin := filepath.Join(tmp, "paasd")
	fmt.Println("-----> Building paasd")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/paasd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return in, fmt.Errorf("go build: %v\n%s", err, out)
	}
	key := filepath.Join(tmp, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key).CombinedOutput(); err != nil {
		return in, fmt.Errorf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return in, err
	}
	adminKeys := filepath.Join(tmp, "admin_keys")
	if err := os.WriteFile(adminKeys, pub, 0o600); err != nil {
		return in, err
	}
	fmt.Printf("-----> Putting %d apps in the store\n", apps)
	if err := fillStore(in.DataDir, apps); err != nil {
		return in, err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = loopback.FreePort(); err != nil {
			return in, err
		}
	}
	sshPort, httpPort, regPort := ports[0], ports[1], ports[3]
	in.HTTPSPort = ports[2]
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	in.Name = prefix + "bench-" + hex.EncodeToString(b)
	if in.logf, err = os.Create(in.LogPath); err != nil {
		return in, err
	}
	in.cmd = exec.Command(bin, "serve", "--data-dir", in.DataDir, "--ssh-addr", fmt.Sprintf("127.0.0.1:%d", sshPort),
		"--http-port", fmt.Sprint(httpPort), "--https-port", fmt.Sprint(in.HTTPSPort),
		"--registry-addr", fmt.Sprintf("127.0.0.1:%d", regPort), "--docker-certs-dir", "",
		"--domain", Domain, "--admin-keys", adminKeys, "--name", in.Name)
	in.cmd.Stdout, in.cmd.Stderr = in.logf, in.logf
	fmt.Printf("-----> Starting paasd %s (router on 127.0.0.1:%d and :%d)\n", in.Name, httpPort, in.HTTPSPort)
	if err := in.cmd.Start(); err != nil {
		in.cmd = nil
		return in, err
	}
	signer, err := loadSigner(key)
	if err != nil {
		return in, err
	}
	if in.SSH, err = dialSSH(ctx, fmt.Sprintf("127.0.0.1:%d", sshPort), signer); err != nil {
		return in, fmt.Errorf("%w (log %s)", err, in.LogPath)
	}
	out, err := in.Run("tokens:create bench")
	if err != nil {
		return in, err
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "paas_") {
			in.Token = l
		}
	}
	if in.Token == "" {
		return in, fmt.Errorf("no token in %q", out)
	}
	if in.Client, err = in.NewClient(); err != nil {
		return in, err
	}
	fmt.Println("-----> Waiting for the API through the router")
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		if _, err = in.Get(ctx, in.Client, "/api/v1/apps", in.Token); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			logData, _ := os.ReadFile(in.LogPath)
			return in, fmt.Errorf("the API did not answer: %v; paasd's log:\n%s", err, logData)
		}
	}
	return in, nil
}

// Get fetches https://paas.Domain+path with c (a bearer token when token
// is not ""); a status other than 200 is an error.
func (in *Installation) Get(ctx context.Context, c *http.Client, path, token string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://paas."+Domain+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, body)
	}
	return body, err
}

// Run runs `ssh paas COMMAND` as the administrator, a new session on the
// kept connection.
func (in *Installation) Run(command string) (string, error) {
	s, err := in.SSH.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var stderr bytes.Buffer
	s.Stderr = &stderr
	out, err := s.Output(command)
	if err != nil {
		return "", fmt.Errorf("ssh %s: %v: %s", command, err, stderr.String())
	}
	return string(out), nil
}

// Close stops paasd and removes what it made: its Swarm objects and its
// temporary directory.
func (in *Installation) Close() {
	if in.SSH != nil {
		in.SSH.Close()
	}
	if in.cmd != nil {
		cleanup(in.cmd, in.Name)
	}
	if in.logf != nil {
		in.logf.Close()
	}
	os.RemoveAll(in.Tmp)
}

// fillStore records apps apps in a new store as a real installation holds
// them: each created by apps:create and deployed 5 times, with 12 config
// variables, so a listing reads what it would read there (the serving
// release of every app, config that the app records carry). No service
// runs: the apps' task counts come from Docker's service list, which
// paasd still asks at every detailed list, and they read as down.
func fillStore(dataDir string, apps int) error {
	st, err := store.Open(dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg := map[string]string{}
	for i := range 12 {
		cfg[fmt.Sprintf("SETTING_%02d", i)] = strings.Repeat("x", 40)
	}
	now := time.Now().UTC()
	for i := range apps {
		name := fmt.Sprintf("app-%03d", i)
		if err := st.CreateApp(&paas.App{Name: name, Owner: "bench", CreatedAt: now}); err != nil {
			return err
		}
		for v := 1; v <= 5; v++ {
			rel := &paas.Release{App: name, Version: v, Config: cfg, ConfigVersion: v, Author: "bench", Reason: "push",
				Image:     paas.Image{Repository: "127.0.0.1:5000/bench/" + name, Digest: "sha256:" + strings.Repeat("0", 64)},
				Processes: []paas.ProcessType{{Name: "web", Command: "./server"}, {Name: "worker", Command: "./worker"}},
				Scale:     map[string]int{"web": 2, "worker": 1}, Commit: strings.Repeat("c", 40), CreatedAt: now.Add(time.Duration(v) * time.Minute)}
			if err := st.AddRelease(rel); err != nil {
				return err
			}
		}
	}
	return nil
}

func loadSigner(path string) (gossh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return gossh.ParsePrivateKey(data)
}

// dialSSH connects once paasd's SSH server answers.
func dialSSH(ctx context.Context, addr string, signer gossh.Signer) (*gossh.Client, error) {
	cfg := &gossh.ClientConfig{User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	var last error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(300 * time.Millisecond) {
		c, err := gossh.Dial("tcp", addr, cfg)
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, fmt.Errorf("paasd's SSH did not answer: %v", last)
}

// NewClient returns a client of its own (one kept connection) that speaks
// HTTPS to paas.Domain on the router's port on 127.0.0.1, trusting the
// installation's CA.
func (in *Installation) NewClient() (*http.Client, error) {
	var ca []byte
	var err error
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		if ca, err = os.ReadFile(filepath.Join(in.DataDir, "web-tls", "ca.crt")); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no CA in web-tls/ca.crt")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", in.HTTPSPort)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "paas." + Domain},
		MaxIdleConnsPerHost: 1,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}, nil
}

func cleanup(cmd *exec.Cmd, name string) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
	}
	filter := "label=paas.installation=" + name
	docker := func(args ...string) string {
		out, _ := exec.Command("docker", args...).Output()
		return strings.TrimSpace(string(out))
	}
	if ids := docker("service", "ls", "-q", "--filter", filter); ids != "" {
		docker(append([]string{"service", "rm"}, strings.Fields(ids)...)...)
	}
	for range 60 {
		if docker("ps", "-aq", "--filter", filter) == "" {
			break
		}
		time.Sleep(time.Second)
	}
	for _, kind := range []string{"network", "volume", "config"} {
		if ids := docker(kind, "ls", "-q", "--filter", filter); ids != "" {
			docker(append([]string{kind, "rm"}, strings.Fields(ids)...)...)
		}
	}
	if ids := docker("images", "-q", "--filter", "reference=*/"+name+"/*"); ids != "" {
		docker(append([]string{"rmi", "-f"}, strings.Fields(ids)...)...)
	}
}

// Side is one thing a benchmark times: a call and its durations.
type Side struct {
	Name  string
	Call  func() ([]byte, error)
	Times []time.Duration
}

// Interleave warms each side up (20 calls), then calls each n times,
// round-robin, a different side first each round.
func Interleave(ctx context.Context, n int, sides []*Side) error {
	for range 20 {
		for _, sd := range sides {
			if _, err := sd.Call(); err != nil {
				return fmt.Errorf("%s: %w", sd.Name, err)
			}
		}
	}
	fmt.Printf("-----> %d requests each, interleaved\n", n)
	for i := range n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for j := range sides {
			sd := sides[(i+j)%len(sides)]
			start := time.Now()
			if _, err := sd.Call(); err != nil {
				return fmt.Errorf("%s: %w", sd.Name, err)
			}
			sd.Times = append(sd.Times, time.Since(start))
		}
	}
	return nil
}

// Pct is the p-th percentile of ds.
func Pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// Ratio is a/b.
func Ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// Ms prints d in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// LoadAverage is the machine's load average over 1, 5 and 15 minutes, as
// /proc/loadavg says ("?" when it cannot be read): the figures of a shared
// machine are read next to it.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// Main is the main of a benchmark of an installation with many apps: flags
// -n (requests per side), -apps and -timeout (the whole run, setup
// included), run until done, interrupted or out of time; an error is
// printed and exits 1.
func Main(run func(ctx context.Context, n, apps int) error) {
	n := flag.Int("n", 1000, "requests per side")
	apps := flag.Int("apps", 500, "apps in the store")
	timeout := flag.Duration("timeout", 10*time.Minute, "the longest the whole run may take")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *n, *apps); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
