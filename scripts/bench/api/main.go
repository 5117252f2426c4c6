// Command api is the HTTP API benchmark of issue 19: with 500 apps in the
// store, GET /api/v1/apps through the router (HTTPS, paas.DOMAIN, an API
// token) against its peer in the same run, the same listing over SSH
// (`apps:list --format json`, a new session on one kept connection, as the
// API's client keeps its HTTPS connection), interleaved, p50 and p99 of N
// requests each, and the ratio. Both run the same command of the same
// dispatcher, as the same user; the difference is the door.
//
//	go run ./scripts/bench/api [-n 1000] [-apps 500]
//
// It starts a real paasd (its router in Swarm) and needs Go, OpenSSH's
// ssh-keygen and Docker in swarm mode (scripts/install.sh --deps).
// Everything it starts is stopped and removed at the end.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
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

const domain = "paas.bench"

func main() {
	n := flag.Int("n", 1000, "requests per side")
	apps := flag.Int("apps", 500, "apps in the store")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n, *apps); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n, apps int) error {
	tmp, err := os.MkdirTemp("", "paas-bench-api")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "paasd")
	fmt.Println("-----> Building paasd")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/paasd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	key := filepath.Join(tmp, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key).CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	adminKeys := filepath.Join(tmp, "admin_keys")
	if err := os.WriteFile(adminKeys, pub, 0o600); err != nil {
		return err
	}
	dataDir := filepath.Join(tmp, "data")
	fmt.Printf("-----> Putting %d apps in the store\n", apps)
	if err := fillStore(dataDir, apps); err != nil {
		return err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = loopback.FreePort(); err != nil {
			return err
		}
	}
	sshPort, httpPort, httpsPort, regPort := ports[0], ports[1], ports[2], ports[3]
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := "abench-" + hex.EncodeToString(b)
	logPath := filepath.Join(tmp, "paasd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--ssh-addr", fmt.Sprintf("127.0.0.1:%d", sshPort),
		"--http-port", fmt.Sprint(httpPort), "--https-port", fmt.Sprint(httpsPort),
		"--registry-addr", fmt.Sprintf("127.0.0.1:%d", regPort), "--docker-certs-dir", "",
		"--domain", domain, "--admin-keys", adminKeys, "--name", name)
	cmd.Stdout, cmd.Stderr = logf, logf
	fmt.Printf("-----> Starting paasd %s (router on 127.0.0.1:%d and :%d)\n", name, httpPort, httpsPort)
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cleanup(cmd, name)

	signer, err := loadSigner(key)
	if err != nil {
		return err
	}
	sshc, err := dialSSH(ctx, fmt.Sprintf("127.0.0.1:%d", sshPort), signer)
	if err != nil {
		return fmt.Errorf("%w (log %s)", err, logPath)
	}
	defer sshc.Close()
	out, err := sshRun(sshc, "tokens:create bench")
	if err != nil {
		return err
	}
	token := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "paas_") {
			token = l
		}
	}
	if token == "" {
		return fmt.Errorf("no token in %q", out)
	}
	client, err := apiClient(dataDir, httpsPort)
	if err != nil {
		return err
	}
	get := func() ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://paas."+domain+"/api/v1/apps", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return body, err
	}
	fmt.Println("-----> Waiting for the API through the router")
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		if _, err = get(); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			logData, _ := os.ReadFile(logPath)
			return fmt.Errorf("the API did not answer: %v; paasd's log:\n%s", err, logData)
		}
	}
	viaSSH := func() ([]byte, error) {
		out, err := sshRun(sshc, "apps:list --format json")
		return []byte(out), err
	}
	for side, f := range map[string]func() ([]byte, error){"api": get, "ssh": viaSSH} {
		body, err := f()
		if err != nil {
			return err
		}
		var names []string
		if err := json.Unmarshal(body, &names); err != nil || len(names) != apps {
			return fmt.Errorf("%s listed %d apps (%v), want %d", side, len(names), err, apps)
		}
	}
	// Warm both up, then interleave.
	for range 20 {
		if _, err := get(); err != nil {
			return err
		}
		if _, err := viaSSH(); err != nil {
			return err
		}
	}
	fmt.Printf("-----> %d requests each, interleaved\n", n)
	var api, ssh []time.Duration
	type side struct {
		call  func() ([]byte, error)
		times *[]time.Duration
	}
	sides := []side{{get, &api}, {viaSSH, &ssh}}
	for i := range n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for j := range sides {
			sd := sides[(i+j)%2] // each side first every other round
			start := time.Now()
			if _, err := sd.call(); err != nil {
				return err
			}
			*sd.times = append(*sd.times, time.Since(start))
		}
	}
	fmt.Printf("\n| %d apps, N=%d | p50 | p99 |\n|---|---|---|\n", apps, n)
	fmt.Printf("| GET /api/v1/apps (HTTPS through the router, token) | %s | %s |\n", ms(pct(api, 50)), ms(pct(api, 99)))
	fmt.Printf("| ssh apps:list --format json (session on a kept connection) | %s | %s |\n", ms(pct(ssh, 50)), ms(pct(ssh, 99)))
	fmt.Printf("ratio API/SSH: p50 %.2fx, p99 %.2fx\n", ratio(pct(api, 50), pct(ssh, 50)), ratio(pct(api, 99), pct(ssh, 99)))
	verdict := "met"
	if pct(api, 99) >= 50*time.Millisecond {
		verdict = "MISSED"
	}
	fmt.Printf("target GET /api/v1/apps p99 < 50 ms: %s\n", verdict)
	return nil
}

// fillStore records apps apps in a new store, as apps:create would.
func fillStore(dataDir string, apps int) error {
	st, err := store.Open(dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := range apps {
		if err := st.CreateApp(&paas.App{Name: fmt.Sprintf("app-%03d", i), Owner: "bench", CreatedAt: time.Now().UTC()}); err != nil {
			return err
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

func sshRun(c *gossh.Client, command string) (string, error) {
	s, err := c.NewSession()
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

// apiClient speaks HTTPS to paas.DOMAIN on the router's port on 127.0.0.1,
// trusting the installation's CA.
func apiClient(dataDir string, httpsPort int) (*http.Client, error) {
	var ca []byte
	var err error
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		if ca, err = os.ReadFile(filepath.Join(dataDir, "web-tls", "ca.crt")); err == nil || time.Now().After(deadline) {
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
	addr := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "paas." + domain},
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

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
