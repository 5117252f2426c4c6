//go:build linux

package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"paas/router/engine"
)

// node is a network namespace the test creates, linked to the test's own by
// a veth pair with a private /30: a server listening in it is reached as a
// task on another Swarm node is, and cutting its link (ip link set down in
// the namespace, as scripts/cluster.sh cut does) loses it as a node that
// goes away is lost: packets are dropped, nothing is refused or reset.
type node struct {
	ns, hostLink string
	hostAddr     netip.Addr // this end of the link
	addr         netip.Addr // the namespace's end
}

var (
	nodeMu   sync.Mutex
	nodeSeq  int
	nodeBase = netip.MustParseAddr("198.18.254.0") // 198.18.0.0/15 is set aside for network tests; scripts/cluster.sh counts up from 198.18.1.0/24
)

// newNode creates a namespace, removed at the end of the test. Addresses
// are taken under a lock file shared with other test processes, among the
// /30s of nodeBase's /24 that no interface of this machine uses.
func newNode(t *testing.T) *node {
	t.Helper()
	lock, err := os.OpenFile("/run/lock/paas-router-nodes.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	nodeMu.Lock()
	nodeSeq++
	seq := nodeSeq
	nodeMu.Unlock()
	n := &node{ns: fmt.Sprintf("paas-rt%d-%d", os.Getpid(), seq), hostLink: fmt.Sprintf("rt%d-%d", os.Getpid(), seq)}
	used := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			used[p.Addr()] = true
		}
	}
	base := nodeBase.As4()
	for i := 0; i < 64 && !n.addr.IsValid(); i++ {
		b := base
		b[3] = byte(4*i + 1)
		if host := netip.AddrFrom4(b); !used[host] {
			n.hostAddr, n.addr = host, host.Next()
		}
	}
	if !n.addr.IsValid() {
		t.Fatalf("no free /30 in %s/24", nodeBase)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", n.ns).Run()
		_ = exec.Command("ip", "link", "del", n.hostLink).Run() // gone with the namespace's end, normally
	})
	for _, args := range [][]string{
		{"netns", "add", n.ns},
		{"-n", n.ns, "link", "set", "lo", "up"},
		{"link", "add", n.hostLink, "type", "veth", "peer", "name", "eth0", "netns", n.ns},
		{"addr", "add", n.hostAddr.String() + "/30", "dev", n.hostLink},
		{"link", "set", n.hostLink, "up"},
		{"-n", n.ns, "addr", "add", n.addr.String() + "/30", "dev", "eth0"},
		{"-n", n.ns, "link", "set", "eth0", "up"},
	} {
		n.ip(t, args...)
	}
	n.waitUp(t)
	return n
}

// waitUp waits until both ends of the link are up: the kernel lets packets
// through a link that was set up only once it noticed (linkwatch), which
// may take a moment; until then they are dropped.
func (n *node) waitUp(t *testing.T) {
	t.Helper()
	waitFor(t, 10*time.Second, "the link is up", func() bool {
		host, _ := os.ReadFile("/sys/class/net/" + n.hostLink + "/operstate")
		ns, _ := exec.Command("ip", "-n", n.ns, "-o", "link", "show", "eth0").Output()
		return strings.TrimSpace(string(host)) == "up" && strings.Contains(string(ns), " state UP ")
	})
}

func (n *node) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// cut takes the node off the network; restore brings it back.
func (n *node) cut(t *testing.T) { n.ip(t, "-n", n.ns, "link", "set", "eth0", "down") }
func (n *node) restore(t *testing.T) {
	n.ip(t, "-n", n.ns, "link", "set", "eth0", "up")
	n.waitUp(t)
}

// serve serves h on a port of the node's address and returns host:port.
func (n *node) serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := n.listen()
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return ln.Addr().String()
}

// listen opens a listener inside the namespace: the socket stays in the
// namespace it was made in, whatever thread accepts on it.
func (n *node) listen() (net.Listener, error) {
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer own.Close()
	target, err := os.Open("/run/netns/" + n.ns)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns %s: %w", n.ns, err)
	}
	ln, lerr := net.Listen("tcp", netip.AddrPortFrom(n.addr, 0).String())
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the wrong namespace: keep it locked, so
		// that it ends with this goroutine instead of serving others.
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ln, lerr
}

// backendOf returns r's backend for addr.
func backendOf(r *Router, addr string) *engine.Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pool[addr]
}

// counted answers with its name after delay, and counts what it answered.
func counted(name string, delay time.Duration, served *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		served.Add(1)
		io.WriteString(w, name)
	})
}

// load sends steady keep-alive GETs from a few clients until stopped or
// limit requests were sent, pacing each client so as not to take the CPU.
type load struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
	slowest      time.Duration
	stop         context.CancelFunc
	done         sync.WaitGroup
}

func startLoad(url, host string, clients int, limit int64) *load {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	l := &load{stop: cancel}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	var started atomic.Int64
	for range clients {
		l.done.Go(func() {
			for ctx.Err() == nil && started.Add(1) <= limit {
				start := time.Now()
				err := l.get(ctx, c, url, host)
				took := time.Since(start)
				if ctx.Err() != nil {
					return // stopped: the request was cut short
				}
				l.sent.Add(1)
				l.mu.Lock()
				l.slowest = max(l.slowest, took)
				if err != nil {
					l.failed.Add(1)
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
				}
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	l.done.Go(func() { <-ctx.Done(); tr.CloseIdleConnections() })
	return l
}

func (l *load) get(ctx context.Context, c *http.Client, url, host string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return nil
}

// finish stops the load and returns the requests answered, those that
// failed, a few of their errors and the slowest answer.
func (l *load) finish() (sent, failed int64, errs []string, slowest time.Duration) {
	l.stop()
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent.Load(), l.failed.Load(), l.errs, l.slowest
}

// waitFor polls cond every 5 ms until it holds or within has passed, and
// returns how long that took.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// routerURL serves r for path, one of the router's two ways to proxy a
// request: "front" (its event loops, or a goroutine per connection on the
// second pass of TestMain) and "net/http" (ReverseProxy, through
// ServeHTTP). It returns the engine's full name and the URL to send to.
func routerURL(t *testing.T, r *Router, front *testServer, path string) (string, string) {
	if path == "net/http" {
		viaNetHTTP := httptest.NewServer(r)
		t.Cleanup(viaNetHTTP.Close)
		return path, viaNetHTTP.URL
	}
	if testEngine == engine.EventLoops {
		return "front (event loops)", front.URL
	}
	return "front (goroutines)", front.URL
}

// Steady GETs see no failure when the node of one of an app's tasks is
// lost: the task is ejected within 2 s (its pooled connections fail when
// what they carry goes unacknowledged, new ones when they time out), the
// requests it had are sent to the other task, and once the node is back
// the task serves again.
func TestNodeLoss(t *testing.T) {
	for _, engine := range []string{"front", "net/http"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			n := newNode(t)
			var nearServed, farServed atomic.Int64
			near := startBackend(t, counted("near", 0, &nearServed))
			// Slow enough that requests are in flight when the node goes.
			far := n.serve(t, counted("far", 20*time.Millisecond, &farServed))
			src := alphaRoute(near)
			src.table.Routes[0].Backends = backends(near, far)
			r, front := startRouter(t, src, Options{})
			engine, url := routerURL(t, r, front, engine)

			l := startLoad(url, "alpha.example.test", 4, 20000)
			waitFor(t, 10*time.Second, "the far task serves", func() bool { return farServed.Load() >= 20 })
			n.cut(t)
			cutAt := time.Now()
			be := backendOf(r, far)
			ejectedIn := waitFor(t, 10*time.Second, "the far task is ejected", be.Ejected)
			// Traffic goes on through the near task meanwhile.
			before := nearServed.Load()
			waitFor(t, 10*time.Second, "requests go on", func() bool { return nearServed.Load() >= before+100 })
			// What the router sent the far task before it was ejected has
			// failed by now, or it would be answered once the link is back.
			waitFor(t, 10*time.Second, "the requests sent to the far task end", func() bool { return be.InFlight() == 0 })
			n.restore(t)
			restoredAt := time.Now()
			backIn := waitFor(t, 15*time.Second, "the far task is back in rotation", func() bool { return !be.Ejected() })
			farBefore := farServed.Load()
			waitFor(t, 5*time.Second, "the far task serves again", func() bool { return farServed.Load() > farBefore })
			sent, failed, errs, slowest := l.finish()
			t.Logf("%s: %d GETs, %d failed, slowest %s; ejected %s after the cut; back in rotation %s after the link came back (cut for %s)",
				engine, sent, failed, slowest.Round(time.Millisecond), ejectedIn.Round(time.Millisecond), backIn.Round(time.Millisecond), restoredAt.Sub(cutAt).Round(time.Millisecond))
			if failed != 0 {
				t.Errorf("%d of %d GETs failed, e.g. %q", failed, sent, errs)
			}
			if ejectedIn > 2*time.Second {
				t.Errorf("the lost task was ejected %s after the cut, want within 2s", ejectedIn)
			}
		})
	}
}

// A POST sent to a task whose node is then lost gets a 502 and is not sent
// to another task: the app may have acted on it.
func TestNodeLossPOSTNotRetried(t *testing.T) {
	for _, engine := range []string{"front", "net/http"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			n := newNode(t)
			var farServed atomic.Int64
			var nearMu sync.Mutex
			nearSaw := map[string]int{}
			near := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				nearMu.Lock()
				nearSaw[r.Method+" "+r.Header.Get("X-Test-Id")]++
				nearMu.Unlock()
				io.WriteString(w, "near")
			}))
			far := n.serve(t, counted("far", 0, &farServed))
			src := alphaRoute(near)
			src.table.Routes[0].Backends = backends(near, far)
			r, front := startRouter(t, src, Options{})
			_, url := routerURL(t, r, front, engine)
			// One client connection, which the front serves from one event
			// loop: the router's connection to the far task is in its pool.
			c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 15 * time.Second}
			t.Cleanup(c.CloseIdleConnections)
			send := func(method, id string) (int, string) {
				req := newRequest(t, method, url, "alpha.example.test", nil)
				req.Header.Set("X-Test-Id", id)
				got := do(t, c, req)
				return got.status, got.body
			}
			nearServed := func() bool { nearMu.Lock(); defer nearMu.Unlock(); return len(nearSaw) > 0 }
			warm := time.Now()
			for i := 0; farServed.Load() == 0 || !nearServed(); i++ {
				if time.Since(warm) > 10*time.Second {
					t.Fatal("the warm-up GETs did not reach both tasks")
				}
				send("GET", fmt.Sprint("warm-up ", i))
			}
			n.cut(t)
			lost := ""
			for i := 0; i < 4 && lost == ""; i++ {
				id := fmt.Sprint("post ", i)
				status, body := send("POST", id)
				switch {
				case status == http.StatusBadGateway:
					lost = id
				case status != 200 || body != "near":
					t.Fatalf("POST %d: %d %q, want 200 from the near task or 502", i, status, body)
				}
			}
			nearMu.Lock()
			defer nearMu.Unlock()
			if lost == "" {
				t.Fatalf("no POST was sent to the lost task (the near one saw %v)", nearSaw)
			}
			if nearSaw["POST "+lost] != 0 {
				t.Errorf("the POST that was lost with its task was sent to the other task too")
			}
			for id, k := range nearSaw {
				if k != 1 {
					t.Errorf("the near task got %q %d times", id, k)
				}
			}
			if !backendOf(r, far).Ejected() {
				t.Errorf("the lost task was not ejected")
			}
		})
	}
}
