// Command router benchmarks the paas router against Debian's nginx as a
// reverse proxy to the same backend, with the same load generator (wrk,
// keep-alive, 127.0.0.1 only, bounded duration): requests per second and
// p50/p99 latency for a small and a 100 KB response, over HTTP and HTTPS,
// printed with the ratios router/nginx. It also prints the cost of a route
// lookup with 10, 1,000 and 10,000 apps routed. For information, outside
// the targets, it also prints small requests over HTTP/2 (h2load).
//
//	go run ./scripts/bench/router [-d 3s] [-c 32] [-rounds 7] [-v]
//
// nginx, wrk and h2load come from scripts/install.sh --bench-deps.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"paas/internal/loopback"
	"paas/router"
)

const (
	plainHost = "plain.bench.test" // no certificate: served over HTTP
	tlsHost   = "app.bench.test"   // has a certificate: HTTPS (HTTP redirects)
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backend":
			backend(os.Args[2])
			return
		case "router":
			runRouter(os.Args[2:])
			return
		}
	}
	dur := flag.Duration("d", 3*time.Second, "duration of one wrk run")
	conns := flag.Int("c", 32, "wrk connections (keep-alive)")
	rounds := flag.Int("rounds", 7, "runs per side and workload, interleaved; the median is reported")
	only := flag.String("only", "", "run only the workloads whose name contains this, e.g. \"small, HTTP\"")
	flag.BoolVar(&verbose, "v", false, "print every run, not only the medians")
	flag.Parse()
	if err := run(*dur, *conns, *rounds, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench router:", err)
		os.Exit(1)
	}
}

// backend serves the two responses on addr.
func backend(addr string) {
	small := []byte("hello from the backend\n")
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { w.Write(small) })
	mux.HandleFunc("/100k", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	srv := &http.Server{Addr: addr, Handler: mux}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// static is a router.Source with a fixed table.
type static struct{ table router.Table }

func (s static) Routes(context.Context) (router.Table, error) { return s.table, nil }

// runRouter serves HTTP and HTTPS with the paas router (the same code as
// `paasd router`, with a fixed route table instead of the Docker API), one
// JSON access log line per request, as in production.
func runRouter(args []string) {
	httpAddr, httpsAddr, backendAddr, certFile, keyFile, logFile := args[0], args[1], args[2], args[3], args[4], args[5]
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		panic(err)
	}
	lf, err := os.Create(logFile)
	if err != nil {
		panic(err)
	}
	logOut := router.NewBufferedLog(lf, 100*time.Millisecond) // as paasd router does
	defer logOut.Close()
	log := slog.New(slog.NewJSONHandler(logOut, nil))
	tbl := router.Table{Routes: []router.Route{{
		App: "bench", Hosts: []string{plainHost, tlsHost, "127.0.0.1"},
		Backends: []router.Backend{{Addr: backendAddr}},
		Edge:     &router.Edge{Key: "bench", Certs: []*tls.Certificate{&cert}},
	}}}
	_, port, _ := net.SplitHostPort(httpsAddr)
	p, _ := strconv.Atoi(port)
	opts := router.Options{Installation: "bench", HTTPAddr: httpAddr, HTTPSAddr: httpsAddr, HTTPSPort: p, AccessLog: true, AccessLogOut: logOut, Log: log, PollInterval: time.Hour}
	router.TuneGC() // as paasd router does
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if f := os.Getenv("BENCH_ROUTER_CPUPROFILE"); f != "" { // where the router's time goes
		pf, err := os.Create(f)
		if err != nil {
			panic(err)
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	if err := router.New(static{tbl}, opts).Run(ctx); err != nil {
		panic(err)
	}
}

// verbose prints every run (-v).
var verbose bool

type result struct {
	cpuPerReq time.Duration // CPU time (user+system) the proxy spent per request
	rps       float64
	p50, p99  time.Duration
}

func run(dur time.Duration, conns, rounds int, only string) error {
	for _, tool := range []string{"nginx", "wrk", "h2load"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: run scripts/install.sh --bench-deps", tool)
		}
	}
	dir, err := os.MkdirTemp("", "paas-bench-router")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // nginx's workers (nobody) read nothing here, but traverse for temp paths
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeCert(certFile, keyFile); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports := make([]int, 5)
	for i := range ports {
		if ports[i], err = loopback.FreePort(); err != nil {
			return err
		}
	}
	backendAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	routerHTTP, routerHTTPS := fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	nginxHTTP, nginxHTTPS := fmt.Sprintf("127.0.0.1:%d", ports[3]), fmt.Sprintf("127.0.0.1:%d", ports[4])

	var procs []*exec.Cmd
	defer func() {
		for _, p := range slices.Backward(procs) {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	start := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		procs = append(procs, cmd)
		return nil
	}
	if err := start(self, "backend", backendAddr); err != nil {
		return err
	}
	if err := start(self, "router", routerHTTP, routerHTTPS, backendAddr, certFile, keyFile, filepath.Join(dir, "router-access.log")); err != nil {
		return err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, backendAddr, nginxHTTP, nginxHTTPS, certFile, keyFile)), 0o644); err != nil {
		return err
	}
	if err := start("nginx", "-p", dir, "-c", conf, "-g", "daemon off;"); err != nil {
		return err
	}
	for _, u := range []struct{ addr, host string }{{routerHTTP, plainHost}, {nginxHTTP, plainHost}} {
		if err := waitOK("http://"+u.addr+"/small", u.host); err != nil {
			return err
		}
	}

	// Warm both up (connection pools, TLS session state, the Go runtime's
	// heap and threads) with an unmeasured run of each workload.
	for _, addr := range []string{routerHTTP, nginxHTTP} {
		for _, path := range []string{"/small", "/100k"} {
			if _, err := wrk("http://"+addr+path, plainHost, conns, time.Second); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	for _, addr := range []string{routerHTTPS, nginxHTTPS} {
		if _, err := wrk("https://"+addr+"/small", tlsHost, conns, time.Second); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}

	nginxVersion, _ := exec.Command("nginx", "-v").CombinedOutput()
	fmt.Printf("router vs %s, wrk -t1 -c%d -d%s, %d interleaved rounds after a warm-up, GOMAXPROCS=%d, %d CPUs\n",
		strings.TrimSpace(strings.TrimPrefix(string(nginxVersion), "nginx version: ")), conns, dur, rounds, runtimeProcs(), numCPU())
	fmt.Printf("figures: medians over the rounds; ratios: the median of each round's ratio (the two runs of a round are back to back, so a drift of the machine's speed cancels out)\n\n")
	type workload struct{ name, scheme, path string }
	workloads := []workload{{"small, HTTP", "http", "/small"}, {"100 KB, HTTP", "http", "/100k"}, {"small, HTTPS", "https", "/small"}, {"100 KB, HTTPS", "https", "/100k"}}
	fmt.Printf("| workload | router rps | nginx rps | rps ratio | router p50 / p99 | nginx p50 / p99 | p99 ratio | CPU per request router / nginx |\n|---|---|---|---|---|---|---|---|\n")
	worstRPS, worstP99 := 1e9, 0.0
	for _, w := range workloads {
		if !strings.Contains(w.name, only) {
			continue
		}
		var rs, ns []result
		for i := range rounds {
			for _, side := range []string{"router", "nginx"} {
				if i%2 == 1 { // alternate who goes first
					side = map[string]string{"router": "nginx", "nginx": "router"}[side]
				}
				addr, host := routerHTTP, plainHost
				if side == "nginx" {
					addr = nginxHTTP
				}
				if w.scheme == "https" {
					addr, host = routerHTTPS, tlsHost
					if side == "nginx" {
						addr = nginxHTTPS
					}
				}
				pid := procs[1].Process.Pid // the router
				if side == "nginx" {
					pid = procs[2].Process.Pid
				}
				cpu0 := cpuTime(pid)
				r, err := wrk(w.scheme+"://"+addr+w.path, host, conns, dur)
				if err == nil {
					r.cpuPerReq = (cpuTime(pid) - cpu0) / time.Duration(max(1, r.rps*dur.Seconds()))
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", side, w.name, err)
				}
				if verbose {
					fmt.Fprintf(os.Stderr, "  %s, %s, run %d: %.0f rps, p99 %s, %d µs CPU per request\n", w.name, side, i+1, r.rps, fmtDur(r.p99), r.cpuPerReq.Microseconds())
				}
				if side == "router" {
					rs = append(rs, r)
				} else {
					ns = append(ns, r)
				}
			}
		}
		r, n := median(rs), median(ns)
		rpsRatio := pairedRatio(rs, ns, func(x result) float64 { return x.rps })
		p99Ratio := pairedRatio(rs, ns, func(x result) float64 { return float64(x.p99) })
		cpuRatio := pairedRatio(rs, ns, func(x result) float64 { return float64(x.cpuPerReq) })
		worstRPS, worstP99 = min(worstRPS, rpsRatio), max(worstP99, p99Ratio)
		fmt.Printf("| %s | %.0f | %.0f | %.2fx | %s / %s | %s / %s | %.2fx | %d / %d µs (%.2fx) |\n", w.name, r.rps, n.rps, rpsRatio, fmtDur(r.p50), fmtDur(r.p99), fmtDur(n.p50), fmtDur(n.p99), p99Ratio,
			r.cpuPerReq.Microseconds(), n.cpuPerReq.Microseconds(), cpuRatio)
	}
	if worstP99 > 0 { // a workload ran
		fmt.Printf("\nthroughput target >= 1.0x: %s (worst %.2fx); p99 target <= 1.0x: %s (worst %.2fx)\n",
			verdict(worstRPS >= 1.0), worstRPS, verdict(worstP99 <= 1.0), worstP99)
	}

	if strings.Contains("small, HTTP/2", only) {
		if err := runH2(routerHTTPS, nginxHTTPS, conns, dur, rounds); err != nil {
			return err
		}
	}

	fmt.Printf("\nroute lookup (Host header -> app), exact and wildcard names:\n")
	var base float64
	for _, n := range []int{10, 1000, 10000} {
		ns := lookupCost(n)
		if base == 0 {
			base = ns
		}
		fmt.Printf("  %6d apps: %6.1f ns/lookup (%.2fx the 10-app cost)\n", n, ns, ns/base)
	}
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func nginxConf(dir, backend, httpAddr, httpsAddr, cert, key string) string {
	return fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log %[1]s/nginx-access.log combined buffer=64k flush=100ms; # as the router batches its lines
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream app {
		server %[2]s;
		keepalive 64;
	}
	server {
		listen %[3]s;
		listen %[4]s ssl http2;
		server_name %[7]s %[8]s;
		ssl_certificate %[5]s;
		ssl_certificate_key %[6]s;
		keepalive_requests 100000;
		location / {
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto $scheme;
			proxy_set_header X-Forwarded-Host $host;
			proxy_set_header X-Request-Id $request_id;
		}
	}
}
`, dir, backend, httpAddr, httpsAddr, cert, key, plainHost, tlsHost)
}

var (
	reqsRe = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	latRe  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	errRe  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

// wrk runs the load generator once against url with Host host.
func wrk(url, host string, conns int, dur time.Duration) (result, error) {
	// wrk has no --resolve: it connects to the URL's host, 127.0.0.1, which
	// is also its TLS server name; the certificate names 127.0.0.1 too.
	out, err := exec.Command("wrk", "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%s", dur), "--latency", "-H", "Host: "+host, url).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	s := string(out)
	if m := errRe.FindString(s); m != "" {
		return result{}, fmt.Errorf("wrk saw errors (%s):\n%s", m, s)
	}
	m := reqsRe.FindStringSubmatch(s)
	if m == nil {
		return result{}, fmt.Errorf("no Requests/sec in wrk's output:\n%s", s)
	}
	var r result
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, l := range latRe.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(l[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[l[3]]
		d := time.Duration(v * float64(unit))
		if l[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return result{}, fmt.Errorf("no latency distribution in wrk's output:\n%s", s)
	}
	return r, nil
}

// runH2 prints, for information, small requests over HTTP/2 (h2load, one
// stream at a time per connection, then ten), in paired rounds as the
// other workloads; h2load prints no percentiles, so the mean latency.
func runH2(routerAddr, nginxAddr string, conns int, dur time.Duration, rounds int) error {
	fmt.Printf("\nfor information (no target): small responses over HTTP/2, h2load -c%d -D %s, paired medians\n", conns, dur)
	for _, streams := range []int{1, 10} {
		var rs, ns []result
		for i := range rounds {
			for j, addr := range []string{routerAddr, nginxAddr} {
				if i%2 == 1 {
					addr = []string{nginxAddr, routerAddr}[j]
				}
				r, err := h2load(addr, conns, streams, dur)
				if err != nil {
					return err
				}
				if addr == routerAddr {
					rs = append(rs, r)
				} else {
					ns = append(ns, r)
				}
			}
		}
		r, n := median(rs), median(ns)
		fmt.Printf("  %2d stream(s) per connection: router %.0f rps (mean %s), nginx %.0f rps (mean %s): %.2fx\n", streams,
			r.rps, fmtDur(r.p50), n.rps, fmtDur(n.p50), pairedRatio(rs, ns, func(x result) float64 { return x.rps }))
	}
	return nil
}

var (
	h2RPSRe  = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)
	h2DoneRe = regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded`)
	h2MeanRe = regexp.MustCompile(`(?m)^time for request:\s+\S+\s+\S+\s+([0-9.]+)(us|ms|s)\s`)
)

// h2load runs the HTTP/2 load generator once against addr (TLS, server
// name tlsHost). The mean latency is returned in p50.
func h2load(addr string, conns, streams int, dur time.Duration) (result, error) {
	out, err := exec.Command("h2load", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-m%d", streams), "-D", strconv.Itoa(int(dur.Seconds())),
		"--connect-to="+addr, "https://"+tlsHost+"/small").CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("h2load: %v\n%s", err, out)
	}
	s := string(out)
	m, d, l := h2RPSRe.FindStringSubmatch(s), h2DoneRe.FindStringSubmatch(s), h2MeanRe.FindStringSubmatch(s)
	if m == nil || d == nil || l == nil || d[1] != d[2] || d[1] == "0" {
		return result{}, fmt.Errorf("h2load did not succeed on every request:\n%s", s)
	}
	var r result
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	v, _ := strconv.ParseFloat(l[1], 64)
	r.p50 = time.Duration(v * float64(map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[l[2]]))
	return r, nil
}

// pairedRatio is the median over the rounds of router/nginx for f.
func pairedRatio(rs, ns []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i := range rs {
		v[i] = f(rs[i]) / f(ns[i])
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func median(rs []result) result {
	by := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{
		rps:       by(func(r result) float64 { return r.rps }),
		p50:       time.Duration(by(func(r result) float64 { return float64(r.p50) })),
		cpuPerReq: time.Duration(by(func(r result) float64 { return float64(r.cpuPerReq) })),
		p99:       time.Duration(by(func(r result) float64 { return float64(r.p99) })),
	}
}

// cpuTime is the user and system CPU time of process pid and its children
// still running (nginx's workers), from /proc.
func cpuTime(pid int) time.Duration {
	var total time.Duration
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) in ")".
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if p != pid && ppid != pid {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return total
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// lookupCost is the time of one route lookup with n apps, each with an
// exact name and a wildcard, half the lookups on each.
func lookupCost(n int) float64 {
	var tbl router.Table
	hosts := make([]string, 0, 2*n)
	for i := range n {
		app := fmt.Sprintf("app-%d", i)
		tbl.Routes = append(tbl.Routes, router.Route{App: app, Hosts: []string{app + ".paas.example.com"},
			Backends: []router.Backend{{Addr: fmt.Sprintf("10.%d.%d.%d:5000", i>>16&255, i>>8&255, i&255)}},
			Edge:     &router.Edge{Key: app, Wildcards: []string{"*." + app + ".example.com"}}})
		hosts = append(hosts, app+".paas.example.com", "pr-1."+app+".example.com")
	}
	r := router.New(static{tbl}, router.Options{Installation: "bench", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := r.Refresh(context.Background()); err != nil {
		panic(err)
	}
	res := testing.Benchmark(func(b *testing.B) {
		for i := range b.N {
			if _, ok := r.AppFor(hosts[i%len(hosts)]); !ok {
				panic("lookup failed")
			}
		}
	})
	return float64(res.T.Nanoseconds()) / float64(res.N)
}

func writeCert(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: tlsHost}, DNSNames: []string{tlsHost}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
}

func waitOK(url, host string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (Host %s) not ready: %v", url, host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func numCPU() int { return runtime.NumCPU() }
