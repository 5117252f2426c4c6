package main

// Script commands for the router's edge (router-edge.txtar): connection
// floods, a new paasd binary, and faults of the router's container.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	scriptCmds["idle-conns"] = cmdIdleConns
	scriptCmds["paasd-upgrade"] = cmdPaasdUpgrade
	scriptCmds["router-fault"] = cmdRouterFault
	scriptCmds["router-sockets"] = cmdRouterSockets
}

var idleConns byWork[[]net.Conn]

func closeIdleConns(work string) {
	for _, c := range idleConns.get(work) {
		c.Close()
	}
	idleConns.delete(work)
}

// cmdIdleConns: "idle-conns N [FROM]" opens N TCP connections to the
// router's HTTP port on 127.0.0.1, from the loopback address FROM
// (127.0.0.1 when not given), that send nothing and stay open; "idle-conns
// close" closes them, first counting those the router kept open (it may
// close one idle for two minutes, not sooner) and those it refused with a
// 429 (over --router-max-conns-per-addr): "K of N idle connections were
// still open, R refused with a 429". A connection closed in any other way
// fails the test.
func cmdIdleConns(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.Getenv("WORK")
	if len(args) == 1 && args[0] == "close" {
		conns := idleConns.get(work)
		open, refused := 0, 0
		var other []string
		for _, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
			b := make([]byte, 64)
			n, err := io.ReadFull(c, b[:len("HTTP/1.1 429 ")])
			switch {
			case n == 0 && errors.Is(err, os.ErrDeadlineExceeded):
				open++
			case string(b[:n]) == "HTTP/1.1 429 ":
				refused++
			default:
				other = append(other, fmt.Sprintf("%q %v", b[:n], err))
			}
		}
		closeIdleConns(work)
		fmt.Fprintf(ts.Stdout(), "%d of %d idle connections were still open, %d refused with a 429\n", open, len(conns), refused)
		if len(other) > 0 {
			ts.Fatalf("the router closed %d idle connections without a 429, e.g. %s", len(other), other[0])
		}
		return
	}
	if len(args) != 1 && len(args) != 2 {
		ts.Fatalf("usage: idle-conns N [FROM] | idle-conns close")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	from := net.IPv4(127, 0, 0, 1)
	if len(args) == 2 {
		if from = net.ParseIP(args[1]); from == nil || !from.IsLoopback() {
			ts.Fatalf("idle-conns: %q is not a loopback address", args[1])
		}
	}
	// Each connection is a descriptor here (and one in the router).
	var lim syscall.Rlimit
	ts.Check(syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur < uint64(n)+1024 {
		lim.Cur = min(lim.Max, uint64(n)+4096)
		ts.Check(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	}
	if lim.Cur < uint64(n)+1024 {
		ts.Fatalf("RLIMIT_NOFILE allows %d descriptors, %d connections need more", lim.Cur, n)
	}
	addr := installations.get(work).routerAddr()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 10 * time.Second}
	conns := make([]net.Conn, 0, n)
	defer func() { idleConns.set(work, conns) }()
	start := time.Now()
	for range n {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			ts.Fatalf("connection %d of %d: %v", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}
	fmt.Fprintf(ts.Stdout(), "opened %d idle connections from %s in %s\n", n, from, time.Since(start).Round(time.Millisecond))
}

var (
	upgradeOnce sync.Once
	upgradeBin  string
	upgradeErr  error
)

// cmdPaasdUpgrade stops paasd and starts a different paasd binary (another
// version string, so another image digest), and waits until the router's
// services are replaced by ones of the new image, as on an upgrade of paas.
func cmdPaasdUpgrade(ts *testscript.TestScript, neg bool, args []string) {
	upgradeOnce.Do(func() {
		upgradeBin = filepath.Join(filepath.Dir(paasdBin), "paasd-upgraded")
		build := exec.Command("go", "build", "-ldflags", "-X main.version=e2e-upgraded", "-o", upgradeBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			upgradeErr = fmt.Errorf("build the upgraded paasd: %v\n%s", err, out)
		}
	})
	ts.Check(upgradeErr)
	in := installations.get(ts.Getenv("WORK"))
	// paasd logs this once the router's services run its image.
	const ready = `"msg":"router running","image"`
	before := strings.Count(in.log(), ready)
	in.stop()
	in.bin = upgradeBin
	ts.Check(in.start())
	for deadline := time.Now().Add(3 * time.Minute); strings.Count(in.log(), ready) == before; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			ts.Fatalf("the upgraded paasd did not get its router running in 3 minutes")
		}
	}
}

// cmdRouterSockets sets $ROUTER_SOCKETS to the router's sockets directory
// on this node (its volume's directory).
func cmdRouterSockets(ts *testscript.TestScript, neg bool, args []string) {
	out, err := exec.Command("docker", "volume", "inspect", "--format", "{{.Mountpoint}}", ts.Getenv("PAAS_NAME")+"-router-sockets").CombinedOutput()
	if err != nil {
		ts.Fatalf("docker volume inspect: %v: %s", err, out)
	}
	ts.Setenv("ROUTER_SOCKETS", strings.TrimSpace(string(out)))
}

// cmdRouterFault: "router-fault freeze|kill HOST" stops the router's
// process (SIGSTOP: it still runs, and serves nothing) or kills its
// container, sends a GET for HOST at once, and waits until another router
// container runs and that GET was answered 200: a connection that arrives
// while no router serves waits in the accept queue, which the ports process
// keeps. It prints how the old task ended.
func cmdRouterFault(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || args[0] != "freeze" && args[0] != "kill" {
		ts.Fatalf("usage: router-fault freeze|kill HOST")
	}
	service := ts.Getenv("PAAS_NAME") + "-router"
	old := routerContainer(ts, service)
	if old == "" {
		ts.Fatalf("no router container runs")
	}
	signal := map[string]string{"freeze": "STOP", "kill": "KILL"}[args[0]]
	if out, err := exec.Command("docker", "kill", "--signal", signal, old).CombinedOutput(); err != nil {
		ts.Fatalf("docker kill: %v: %s", err, out)
	}
	start := time.Now()
	in := installations.get(ts.Getenv("WORK"))
	answered := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", in.httpPort), nil)
		req.Host = args[1]
		resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
		if err != nil {
			answered <- err.Error()
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		answered <- fmt.Sprintf("%d after %s", resp.StatusCode, time.Since(start).Round(100*time.Millisecond))
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if c := routerContainer(ts, service); c != "" && c != old {
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("the router was not replaced in 3 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintf(ts.Stdout(), "replaced in %s\n", time.Since(start).Round(time.Second))
	got := <-answered
	fmt.Fprintf(ts.Stdout(), "request sent during the fault: %s\n", got)
	if !strings.HasPrefix(got, "200 ") {
		ts.Fatalf("the request sent during the fault got %s", got)
	}
	out, err := exec.Command("docker", "service", "ps", "--no-trunc", "--format", "{{.CurrentState}} | {{.Error}}", service).CombinedOutput()
	ts.Check(err)
	ts.Stdout().Write(out)
}

// routerContainer returns the ID of the router container that runs and is
// healthy, or "".
func routerContainer(ts *testscript.TestScript, service string) string {
	out, err := exec.Command("docker", "ps", "-q", "--no-trunc", "--filter", "label=com.docker.swarm.service.name="+service, "--filter", "health=healthy").CombinedOutput()
	if err != nil {
		ts.Fatalf("docker ps: %v: %s", err, out)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}
