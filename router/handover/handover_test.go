package handover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen returns a listening socket on a loopback port as a file, the way
// the ports process holds it.
func listen(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the socket lives on in f
	t.Cleanup(func() { f.Close() })
	return f, addr
}

func serve(t *testing.T, dir, name string, socks []Socket, health func(context.Context) error) *Endpoint {
	t.Helper()
	ep, err := Listen(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(socks, nil)
	s.Health = health
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ep.UnixListener) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		ep.Close()
	})
	return ep
}

func nonBlocking(t *testing.T, f *os.File) bool {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	var ferr error
	if err := rc.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ferr != nil {
		t.Fatal(err, ferr)
	}
	return flags&unix.O_NONBLOCK != 0
}

func TestFetch(t *testing.T) {
	dir := t.TempDir()
	httpF, httpAddr := listen(t)
	httpsF, httpsAddr := listen(t)
	serve(t, dir, PortsSocket, []Socket{{"http", httpF}, {"https", httpsF}}, nil)
	if fi, err := os.Stat(filepath.Join(dir, PortsSocket)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}

	got, err := Fetch(t.Context(), filepath.Join(dir, PortsSocket))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(got) != 2 || got[0].Name != "http" || got[1].Name != "https" {
		t.Fatalf("got %v", got)
	}
	for i, addr := range []string{httpAddr, httpsAddr} {
		_, portStr, _ := net.SplitHostPort(addr)
		port, err := BoundPort(got[i].File)
		if err != nil || fmt.Sprint(port) != portStr {
			t.Errorf("%s: port %d, %v; want %s", got[i].Name, port, err, portStr)
		}
	}
	// The handed-over socket is the same socket: a connection made to the
	// address is accepted on it, also once the server's copy is closed.
	ln, err := net.FileListener(got[0].File)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	httpF.Close()
	if !nonBlocking(t, got[1].File) {
		t.Error("handing over put the socket in blocking mode: accepts sharing it would hang")
	}
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ac, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if ac.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("accepted %s, want the client's own address %s", ac.RemoteAddr(), c.LocalAddr())
	}
	for _, s := range got {
		s.File.Close()
	}
}

func TestTake(t *testing.T) {
	dir := t.TempDir()
	httpF, httpAddr := listen(t)
	_, portStr, _ := net.SplitHostPort(httpAddr)
	var port int
	fmt.Sscan(portStr, &port)
	want := []Port{{"http", port}}

	// Nothing answers yet: Take waits, until its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := Take(ctx, dir, "", want, 50*time.Millisecond, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Take with no holder = %v, want the deadline", err)
	}

	// A socket of a router that is gone is skipped, and removed.
	stale := filepath.Join(dir, RouterSocket("0gone")) // tried before "a"
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	// A router holds the socket (the ports process restarts): it hands it.
	serve(t, dir, RouterSocket("a"), []Socket{{"http", httpF}}, nil)
	got, err := Take(t.Context(), dir, RouterSocket("self"), want, 50*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("Take from a router: %v", err)
	}
	got[0].File.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale socket is still there: %v", err)
	}

	// A socket on another port (the port was changed) is not taken. Take
	// retries until its context ends: each of these ends it once an attempt
	// has failed, which Take logs at once, so that a slow answer under load
	// is still waited for (up to a few seconds) and a fast one is not.
	wrong := []Port{{"http", port + 1}}
	ctx, log := untilFirstFailure(t, 5*time.Second)
	if _, err := Take(ctx, dir, "", wrong, 50*time.Millisecond, log); err == nil || !strings.Contains(err.Error(), "bound to port") {
		t.Errorf("Take of another port = %v", err)
	}
	// Nor is a socket that was not handed over.
	ctx, log = untilFirstFailure(t, 5*time.Second)
	if _, err := Take(ctx, dir, "", []Port{{"https", port}}, 50*time.Millisecond, log); err == nil || !strings.Contains(err.Error(), "no https socket") {
		t.Errorf("Take of a missing socket = %v", err)
	}
}

// untilFirstFailure returns a context for Take that ends when Take logs its
// first failed attempt, or after limit, and the logger to give Take.
func untilFirstFailure(t *testing.T, limit time.Duration) (context.Context, *slog.Logger) {
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	t.Cleanup(cancel)
	return ctx, slog.New(cancelOnLog{cancel})
}

// cancelOnLog is a slog.Handler that cancels a context at the first record.
type cancelOnLog struct{ cancel context.CancelFunc }

func (h cancelOnLog) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOnLog) Handle(context.Context, slog.Record) error {
	h.cancel()
	return nil
}
func (h cancelOnLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h cancelOnLog) WithGroup(string) slog.Handler      { return h }

func TestHealthy(t *testing.T) {
	dir := t.TempDir()
	f, _ := listen(t)
	failing := errors.New("loop 1 stuck\nfor good")
	var fail atomic.Bool
	serve(t, dir, PortsSocket, []Socket{{"http", f}}, func(context.Context) error {
		if fail.Load() {
			return failing
		}
		return nil
	})
	path := filepath.Join(dir, PortsSocket)
	if err := Healthy(t.Context(), path); err != nil {
		t.Errorf("Healthy: %v", err)
	}
	fail.Store(true)
	if err := Healthy(t.Context(), path); err == nil || err.Error() != "loop 1 stuck for good" {
		t.Errorf("Healthy = %v, want the failure", err)
	}
	if err := Healthy(t.Context(), filepath.Join(dir, "none.sock")); err == nil {
		t.Error("Healthy with nothing listening = nil")
	}
}

// TestListenTakeOver: a second process listening at the same path takes it
// over at once; the first one's connections keep working, and its Close
// leaves the new socket alone.
func TestListenTakeOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sock")
	old, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	oldConn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer oldConn.Close()
	accepted, err := old.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()

	cur, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	old.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the old listener's Close removed the new socket: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	defer c.Close()
	go func() {
		if a, err := cur.Accept(); err == nil {
			a.Write([]byte("new"))
			a.Close()
		}
	}()
	b, _ := io.ReadAll(c)
	if string(b) != "new" {
		t.Errorf("read %q from the new socket", b)
	}
	// The connection the old listener accepted is still up.
	go accepted.Write([]byte("old"))
	buf := make([]byte, 3)
	if _, err := io.ReadFull(oldConn, buf); err != nil || string(buf) != "old" {
		t.Errorf("old connection: %q, %v", buf, err)
	}
	cur.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Close left its socket: %v", err)
	}
}

func TestFetchRefusesOtherDescriptors(t *testing.T) {
	dir := t.TempDir()
	// A server that hands over something that is not a listening socket.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	serve(t, dir, PortsSocket, []Socket{{"http", r}}, nil)
	if _, err := Fetch(t.Context(), filepath.Join(dir, PortsSocket)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Fetch of a pipe = %v, want refused", err)
	}
}
