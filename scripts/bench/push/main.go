// Command push is the push-throughput benchmark of issue 2: it times real
// `git push`es to paasd against pushes over Debian's OpenSSH sshd to the plain
// system git-receive-pack, in the same run, interleaved, and prints the ratios
// and the servers' memory.
//
//	go run ./scripts/bench/push [-quick] [-timeout 10m] [-keep]
//
// It needs root, git, OpenSSH (client and /usr/sbin/sshd) and a Docker daemon
// in swarm mode (scripts/install.sh --deps installs and starts them). Every
// byte goes over 127.0.0.1; everything it starts is stopped and removed at the
// end, also on errors and on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick      bool
	timeout    time.Duration
	keep       bool
	repsSmall  int
	repsLarge  int
	repsIncr   int
	largeFiles int
	fileKB     int
	local      bool
	verbose    bool
	kex        string
	sshOptions []string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "fewer repetitions (3 small, 1 large, 3 incremental)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run (cleanup gets 2 more minutes)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (repos, logs) for inspection")
	flag.IntVar(&o.repsSmall, "reps-small", 9, "repetitions of the small first push")
	flag.IntVar(&o.repsLarge, "reps-large", 5, "repetitions of the large first push")
	flag.IntVar(&o.repsIncr, "reps-incr", 9, "repetitions of the incremental push")
	flag.IntVar(&o.largeFiles, "large-files", 5000, "files in the large repository")
	flag.IntVar(&o.fileKB, "large-file-kb", 10, "size of each file of the large repository, KB")
	flag.BoolVar(&o.local, "local", true, "also time a push to a local bare repo (no SSH at all) as a reference")
	flag.BoolVar(&o.verbose, "v", false, "print every push as it is timed")
	flag.StringVar(&o.kex, "kex", "curve25519-sha256", "key exchange for both sides, the one paasd negotiates by default (\"default\": the client's preference, which makes OpenSSH pick sntrup761x25519, a slower post-quantum hybrid paasd lacks)")
	var sshOpts listFlag
	flag.Var(&sshOpts, "o", "extra ssh client option for both sides, e.g. -o Ciphers=aes128-gcm@openssh.com (repeatable)")
	flag.Parse()
	if o.kex != "default" {
		o.sshOptions = append(o.sshOptions, "KexAlgorithms="+o.kex)
	}
	o.sshOptions = append(o.sshOptions, sshOpts...)
	if o.quick {
		o.repsSmall, o.repsLarge, o.repsIncr = 3, 1, 3
	}
	if o.repsSmall < 1 || o.repsLarge < 1 || o.repsIncr < 1 || o.largeFiles < 1 || o.fileKB < 1 {
		fmt.Fprintln(os.Stderr, "bench: repetitions and sizes must be at least 1")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	code := 0
	func() {
		var cl cleanups
		defer func() {
			if r := recover(); r != nil {
				fmt.Fprintf(os.Stderr, "bench: panic: %v\n%s", r, debug.Stack())
				code = 2
			}
		}()
		defer cl.run()
		if err := run(ctx, o, &cl); err != nil {
			switch {
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				fmt.Fprintf(os.Stderr, "bench: timed out (-timeout %s); cleaning up. Last error: %v\n", o.timeout, err)
			case ctx.Err() != nil:
				fmt.Fprintln(os.Stderr, "bench: interrupted; cleaning up")
			default:
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			}
			code = 1
		}
	}()
	os.Exit(code)
}

// cleanups runs, last first, what undoes each step of the setup.
type cleanups struct{ fns []func() }

func (c *cleanups) add(f func()) { c.fns = append(c.fns, f) }

func (c *cleanups) run() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "bench: cleanup panicked: %v\n", r)
				}
			}()
			c.fns[i]()
		}()
	}
	c.fns = nil
}

// target is one receiving side of the comparison.
type target interface {
	name() string
	// fresh returns the push URL of a new, empty repository.
	fresh(ctx context.Context, id string) (string, error)
	// serverPID is the process whose tree receives the push (0: none to sample).
	serverPID() int
}

// result is what one workload gave on one side.
type result struct {
	times []time.Duration
	cpu   []time.Duration // server CPU time of each push
	mem   memPeak
}

func (r *result) median() time.Duration { return median(r.times) }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (r *result) min() time.Duration {
	m := r.times[0]
	for _, t := range r.times[1:] {
		m = min(m, t)
	}
	return m
}

type workloadResult struct {
	label string
	reps  int
	by    map[string]*result // by target name
}

func run(ctx context.Context, o options, cl *cleanups) error {
	if err := checkTools(ctx); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "paas-bench-push-")
	if err != nil {
		return err
	}
	cl.add(func() {
		if o.keep {
			fmt.Printf("kept %s\n", tmp)
			return
		}
		os.RemoveAll(tmp)
	})
	env, err := newGitEnv(ctx, tmp, o.sshOptions)
	if err != nil {
		return err
	}

	step("building paasd")
	paasdBin, err := buildPaasd(ctx, tmp)
	if err != nil {
		return err
	}
	step("starting sshd")
	sd, err := startSSHD(ctx, tmp, env, cl)
	if err != nil {
		return err
	}
	step("starting paasd (it starts its router as a Swarm service)")
	pd, err := startPaasd(ctx, tmp, paasdBin, env, cl)
	if err != nil {
		return err
	}
	targets := []target{pd, sd}
	if o.local {
		targets = append(targets, &localTarget{dir: tmpPath(tmp, "local")})
	}

	step("generating workloads")
	small, err := makeSmall(ctx, env, tmpPath(tmp, "work-small"))
	if err != nil {
		return err
	}
	large, err := makeLarge(ctx, env, tmpPath(tmp, "work-large"), o.largeFiles, o.fileKB)
	if err != nil {
		return err
	}

	step("warming up (untimed pushes and handshakes on every side)")
	for _, t := range targets {
		url, err := t.fresh(ctx, "warm")
		if err != nil {
			return err
		}
		if _, err := env.push(ctx, small.dir, url, "refs/heads/bench-warm"); err != nil {
			return fmt.Errorf("%s: warm-up push: %w", t.name(), err)
		}
	}
	var hs []handshake
	for _, defaultKex := range []bool{false, true} {
		if defaultKex && o.kex == "default" {
			break
		}
		h, err := handshakes(ctx, pd, sd, env, 10, defaultKex)
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}

	// Peak RSS from here on is what the pushes cost paasd, not its startup
	// (which builds the router image).
	startupHWM := readStatusKB(pd.pid(), "VmHWM")
	idleRSS := readStatusKB(pd.pid(), "VmRSS")
	resetHWM(pd.pid())

	var results []*workloadResult
	// first times first pushes of w to fresh repositories; it returns, by
	// side, the URL of the last repository pushed to.
	first := func(label, id string, w *workload, reps int) (map[string]string, error) {
		step(fmt.Sprintf("timing %s, %d repetition(s) per side", label, reps))
		wr := &workloadResult{label: label, reps: reps, by: map[string]*result{}}
		last := map[string]string{}
		for i := range reps {
			for _, t := range rotate(targets, i) {
				url, err := t.fresh(ctx, fmt.Sprintf("%s-%d", id, i+1))
				if err != nil {
					return nil, err
				}
				if err := timedPush(ctx, env, o, wr, t, w.dir, url, "refs/heads/bench-"+id); err != nil {
					return nil, err
				}
				last[t.name()] = url
			}
		}
		results = append(results, wr)
		return last, nil
	}
	if _, err := first(fmt.Sprintf("small (%s, %d files)", human(small.bytes), small.files), "small", small, o.repsSmall); err != nil {
		return err
	}
	// The last large repository of each side is the base of the incremental pushes.
	bases, err := first(fmt.Sprintf("%s / %d files", human(large.bytes), large.files), "large", large, o.repsLarge)
	if err != nil {
		return err
	}
	step(fmt.Sprintf("timing incremental, %d repetition(s) per side", o.repsIncr))
	incr := &workloadResult{label: "incremental (1 file)", reps: o.repsIncr, by: map[string]*result{}}
	for i := range o.repsIncr {
		if err := large.commitChange(ctx, env, i); err != nil {
			return err
		}
		for _, t := range rotate(targets, i) {
			if err := timedPush(ctx, env, o, incr, t, large.dir, bases[t.name()], "refs/heads/bench-incr"); err != nil {
				return err
			}
		}
	}
	results = append(results, incr)

	pushHWM := readStatusKB(pd.pid(), "VmHWM")
	report(o, results, hs, setup(ctx, o), startupHWM, idleRSS, pushHWM)
	return nil
}

// timedPush pushes once, timing git push from start to exit and sampling the
// memory of the receiving server's process tree meanwhile.
func timedPush(ctx context.Context, env *gitEnv, o options, wr *workloadResult, t target, dir, url, ref string) error {
	root := t.serverPID()
	var cpu0, cpu1 time.Duration
	if root != 0 {
		cpu0 = settle(root, 2*time.Second)
	}
	s := startSampler(root)
	d, err := env.push(ctx, dir, url, ref)
	peak := s.stop()
	if err != nil {
		return fmt.Errorf("%s: %w", t.name(), err)
	}
	if root != 0 {
		cpu1 = settle(root, 2*time.Second)
	}
	r := wr.by[t.name()]
	if r == nil {
		r = &result{}
		wr.by[t.name()] = r
	}
	r.times = append(r.times, d)
	r.cpu = append(r.cpu, cpu1-cpu0)
	r.mem.merge(peak)
	if o.verbose {
		fmt.Printf("    %-22s %-10s %s\n", wr.label, t.name(), ms(d))
	}
	return nil
}

// rotate starts repetition i with a different side, so that every side is
// first, second, ... equally often and drift cancels out.
func rotate(ts []target, i int) []target {
	k := i % len(ts)
	return append(append([]target(nil), ts[k:]...), ts[:k]...)
}

func step(s string) { fmt.Fprintf(os.Stderr, "-- %s\n", s) }

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func human(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func mb(kb int64) string {
	if kb <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MB", float64(kb)/1024)
}

// setup describes the machine and clients the numbers come from.
func setup(ctx context.Context, o options) string {
	gitV, _ := command(ctx, "git", "--version").Output()
	sshV, _ := command(ctx, "ssh", "-V").CombinedOutput()
	kex := "client default"
	if o.kex != "default" {
		kex = o.kex
	}
	return fmt.Sprintf("%s, %s, %d CPUs; same client key and ssh options for both sides, kex %s",
		strings.TrimSpace(string(gitV)), strings.TrimSpace(string(sshV)), runtime.NumCPU(), kex)
}

func report(o options, results []*workloadResult, hs []handshake, setup string, startupHWM, idleRSS, pushHWM int64) {
	const (
		pn = "paasd"
		sn = "sshd+git-receive-pack"
		ln = "local"
	)
	fmt.Println()
	fmt.Println("push benchmark (median / min of N repetitions; wall time of `git push`, start to exit; sides interleaved)")
	fmt.Println(setup)
	hdr := fmt.Sprintf("%-26s %3s  %-19s  %-23s  %-7s", "workload", "N", pn, sn, "ratio")
	if o.local {
		hdr += "  local git, no SSH"
	}
	fmt.Println(hdr)
	met := true
	var misses []string
	for _, w := range results {
		p, s := w.by[pn], w.by[sn]
		ratio := float64(p.median()) / float64(s.median())
		line := fmt.Sprintf("%-26s %3d  %-19s  %-23s  %-7s", w.label, w.reps,
			ms(p.median())+" / "+ms(p.min()), ms(s.median())+" / "+ms(s.min()), fmt.Sprintf("%.2fx", ratio))
		if l := w.by[ln]; l != nil {
			line += "  " + ms(l.median()) + " / " + ms(l.min())
		}
		fmt.Println(line)
		if ratio > 1.1 {
			met = false
			misses = append(misses, fmt.Sprintf("%s %.2fx", w.label, ratio))
		}
	}
	for _, h := range hs {
		fmt.Printf("%-26s %3d  %-19s  %-23s  %-7s\n", h.label, h.n, ms(h.paasd), ms(h.sshd), fmt.Sprintf("%.2fx", float64(h.paasd)/float64(h.sshd)))
	}
	fmt.Println("ssh sessions are not part of the target: paasd runs `version`, sshd runs `true`; negotiated:")
	for _, h := range hs {
		fmt.Printf("  %-24s paasd %s; sshd %s\n", h.label+":", h.paasdAlgo, h.sshdAlgo)
	}

	fmt.Println()
	fmt.Println("server memory (RSS sampled every 20 ms during each push; max over the repetitions) and CPU")
	fmt.Printf("%-26s  %-28s  %-28s  %s\n", "", "largest git process (HWM)", "server tree (sum of RSS)", "server CPU (median)")
	fmt.Printf("%-26s  %-12s  %-14s  %-12s  %-14s  %-12s  %s\n", "workload", "paasd", "sshd", "paasd", "sshd", "paasd", "sshd")
	for _, w := range results {
		p, s := w.by[pn], w.by[sn]
		fmt.Printf("%-26s  %-12s  %-14s  %-12s  %-14s  %-12s  %s\n", w.label, mb(p.mem.gitHWM), mb(s.mem.gitHWM), mb(p.mem.tree), mb(s.mem.tree),
			ms(median(p.cpu)), ms(median(s.cpu)))
	}
	fmt.Printf("paasd peak RSS during the pushes: %s (VmHWM of the paasd process, reset after startup; idle %s, startup peak %s)\n",
		mb(pushHWM), mb(idleRSS), mb(startupHWM))
	fmt.Println("  largest git process: max VmHWM of any git process (receive-pack, index-pack, unpack-objects) under the server;")
	fmt.Println("  server tree: paasd or the sshd listener plus all its children (sshd sessions, shell, git, hook), RSS summed per sample;")
	fmt.Println("  n/a: the push ended before a sample saw the process;")
	fmt.Println("  server CPU: user+system time of the server process and its reaped children (10 ms ticks) over one push.")
	fmt.Println()
	if met {
		fmt.Println("target <= 1.1x: met")
	} else {
		fmt.Printf("target <= 1.1x: NOT met (%s)\n", strings.Join(misses, ", "))
	}
}
