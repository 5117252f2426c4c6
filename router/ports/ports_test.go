package ports

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"paas/internal/loopback"
	"paas/router/handover"
)

// fakeDocker answers /_ping on a unix socket.
func fakeDocker(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

type logBuffer struct {
	ch chan string
}

func (b *logBuffer) Write(p []byte) (int, error) {
	select {
	case b.ch <- string(p):
	default:
	}
	return len(p), nil
}

// run starts a ports process on dir and returns its log lines and a stop
// function that waits for it.
func run(t *testing.T, dir, docker string, ports ...handover.Port) (<-chan string, func()) {
	t.Helper()
	logs := &logBuffer{ch: make(chan string, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Dir: dir, Ports: ports, Docker: docker, InstallLabel: "paas.installation=x",
			BindTimeout: 500 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs, nil))})
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return logs.ch, stop
}

// waitLog waits for a log line containing want.
func waitLog(t *testing.T, logs <-chan string, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-logs:
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line with %q", want)
		}
	}
}

// inode identifies a socket: descriptors of one socket share it.
func inode(t *testing.T, f *os.File) uint64 {
	t.Helper()
	var st unix.Stat_t
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return st.Ino
}

func fetch(t *testing.T, dir string) handover.Socket {
	t.Helper()
	socks, err := handover.Fetch(t.Context(), filepath.Join(dir, handover.PortsSocket))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(socks) != 1 {
		t.Fatalf("got %d sockets", len(socks))
	}
	t.Cleanup(func() { socks[0].File.Close() })
	return socks[0]
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := loopback.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRun goes through the lives of ports processes on one directory: the
// first binds, the next ones take the socket over from the one running or
// from a router, so that it is never closed; a changed port is bound anew.
func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sockets")
	docker := fakeDocker(t)
	port := freePort(t)
	want := handover.Port{Name: "http", Port: port}

	logsA, stopA := run(t, dir, docker, want)
	waitLog(t, logsA, "bound a listening socket")
	waitLog(t, logsA, "ports ready")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, %v; want 0700", fi.Mode(), err)
	}
	first := fetch(t, dir)
	if p, _ := handover.BoundPort(first.File); p != port {
		t.Errorf("bound to %d, want %d", p, port)
	}
	if err := handover.Healthy(t.Context(), filepath.Join(dir, handover.PortsSocket)); err != nil {
		t.Errorf("Healthy: %v", err)
	}

	// An upgrade: B starts while A runs, takes A's socket, and takes over
	// the directory's sockets; then A stops.
	logsB, stopB := run(t, dir, docker, want)
	waitLog(t, logsB, "took over a listening socket")
	waitLog(t, logsB, "ports ready")
	stopA()
	second := fetch(t, dir)
	if inode(t, first.File) != inode(t, second.File) {
		t.Error("B handed over another socket than A's")
	}
	if err := handover.Healthy(t.Context(), filepath.Join(dir, handover.PortsSocket)); err != nil {
		t.Errorf("Healthy after A stopped: %v", err)
	}
	// The read-only Docker API is served by B now.
	c := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) {
		return net.Dial("unix", filepath.Join(dir, DockerSocket))
	}}}
	resp, err := c.Get("http://docker/_ping")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ping through the proxy: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = c.Post("http://docker/v1.41/containers/create", "application/json", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a create through the proxy: %v %v", resp, err)
	}
	resp.Body.Close()

	// The port changes: C gets B's socket, which is on the old port, and
	// binds the new one.
	newPort := freePort(t)
	logsC, stopC := run(t, dir, docker, handover.Port{Name: "http", Port: newPort})
	waitLog(t, logsC, "bound a listening socket")
	waitLog(t, logsC, "ports ready")
	third := fetch(t, dir)
	if p, _ := handover.BoundPort(third.File); p != newPort {
		t.Errorf("C handed over port %d, want %d", p, newPort)
	}
	stopC()
	stopB()

	// The ports process is gone (crashed), a router holds the socket: the
	// next one takes it from the router instead of failing to bind a port
	// still taken.
	ep, err := handover.Listen(filepath.Join(dir, handover.RouterSocket("r1")))
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	rs := handover.NewServer([]handover.Socket{second}, nil)
	rctx, stopRouter := context.WithCancel(t.Context())
	defer stopRouter()
	go rs.Serve(rctx, ep.UnixListener)
	logsD, _ := run(t, dir, docker, want)
	line := waitLog(t, logsD, "took over a listening socket")
	if !strings.Contains(line, "router-r1.sock") {
		t.Errorf("took it over from elsewhere: %s", line)
	}
	waitLog(t, logsD, "ports ready")
	if inode(t, fetch(t, dir).File) != inode(t, first.File) {
		t.Error("D handed over another socket than the first")
	}
}

// TestRunPortTaken: a port another process holds is tried until
// BindTimeout, then Run fails with the reason.
func TestRunPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	err = Run(t.Context(), Options{Dir: filepath.Join(t.TempDir(), "s"), Ports: []handover.Port{{Name: "http", Port: port}},
		Docker: fakeDocker(t), BindTimeout: 300 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Run on a taken port = %v", err)
	}
}
