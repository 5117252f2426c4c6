// Package handover passes listening TCP sockets from one process to another
// over a unix socket (SCM_RIGHTS), so that several processes accept on the
// same socket and a new one takes over from an old one without the socket
// ever being closed: its accept queue, and every connection waiting in it,
// lives as long as one process holds it.
//
// The router's ports process (paasd router-ports) binds the HTTP and HTTPS
// ports in the host's network namespace and hands them to the routers; every
// router hands them on too, so that a ports process that restarts gets them
// back from a router instead of binding ports that are still taken.
//
// The protocol is one request line per connection: "sockets" is answered by
// one message, a JSON array of the sockets' names and a line feed, carrying
// the descriptors in the same order; "health" by "ok" or "fail: REASON" and
// a line feed.
package handover

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is one listening socket and the name it is handed over by
// ("http", "https").
type Socket struct {
	Name string
	File *os.File
}

// maxSockets bounds how many descriptors one answer may carry.
const maxSockets = 8

// requestTimeout bounds one exchange on either side.
const requestTimeout = 5 * time.Second

// Requests.
const (
	reqSockets = "sockets"
	reqHealth  = "health"
)

// Server answers requests for its sockets.
type Server struct {
	sockets []Socket
	// Health is called for a health request; nil answers ok.
	Health func(ctx context.Context) error
	Log    *slog.Logger
}

// NewServer returns a server handing over sockets. The caller keeps them open
// as long as it serves.
func NewServer(sockets []Socket, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{sockets: sockets, Log: log}
}

// Serve answers on ln until ctx is done or ln is closed; it does not close ln.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept handover request: %w", err)
		}
		go s.answer(ctx, c)
	}
}

func (s *Server) answer(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		return
	}
	switch strings.TrimSpace(line) {
	case reqSockets:
		if err := s.send(c); err != nil {
			s.Log.Warn("hand over sockets", "err", err)
			return
		}
		s.Log.Info("handed over sockets", "sockets", s.names())
	case reqHealth:
		hctx, cancel := context.WithTimeout(ctx, requestTimeout-time.Second)
		defer cancel()
		answer := "ok\n"
		if s.Health != nil {
			if err := s.Health(hctx); err != nil {
				answer = "fail: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
			}
		}
		_, _ = c.Write([]byte(answer))
	default:
		_, _ = c.Write([]byte("fail: unknown request\n"))
	}
}

func (s *Server) names() []string {
	names := make([]string, len(s.sockets))
	for i, so := range s.sockets {
		names[i] = so.Name
	}
	return names
}

func (s *Server) send(c *net.UnixConn) error {
	data, err := json.Marshal(s.names())
	if err != nil {
		return err
	}
	fds := make([]int, 0, len(s.sockets))
	send := func() error {
		n, oobn, err := c.WriteMsgUnix(append(data, '\n'), unix.UnixRights(fds...), nil)
		if err != nil {
			return err
		}
		if n != len(data)+1 || oobn == 0 && len(fds) > 0 {
			return errors.New("short write")
		}
		return nil
	}
	// Each descriptor is only valid inside its file's Control callback.
	var withFDs func(i int) error
	withFDs = func(i int) error {
		if i == len(s.sockets) {
			return send()
		}
		var inner error
		err := control(s.sockets[i].File, func(fd int) error {
			fds = append(fds, fd)
			inner = withFDs(i + 1)
			return nil
		})
		if err != nil {
			return err
		}
		return inner
	}
	return withFDs(0)
}

// control runs fn with f's descriptor. Unlike f.Fd it leaves the descriptor
// in non-blocking mode: the open file is shared with the other processes
// that accept on it, and a blocking one would hang their accept calls.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var inner error
	if err := rc.Control(func(fd uintptr) { inner = fn(int(fd)) }); err != nil {
		return err
	}
	return inner
}

// Fetch asks the server at path for its sockets. The caller owns the files.
func Fetch(ctx context.Context, path string) ([]Socket, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(reqSockets + "\n")); err != nil {
		return nil, fmt.Errorf("ask %s for sockets: %w", path, err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(maxSockets*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("read sockets from %s: %w", path, err)
	}
	files, ferr := parseRights(oob[:oobn])
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	if ferr != nil || flags&(unix.MSG_CTRUNC|unix.MSG_TRUNC) != 0 {
		closeAll()
		return nil, fmt.Errorf("read sockets from %s: truncated or malformed answer (%v)", path, ferr)
	}
	var names []string
	if err := json.Unmarshal(buf[:n], &names); err != nil || len(names) != len(files) {
		closeAll()
		return nil, fmt.Errorf("read sockets from %s: %d names for %d descriptors (%v)", path, len(names), len(files), err)
	}
	out := make([]Socket, len(files))
	for i, f := range files {
		if err := Listening(f); err != nil {
			closeAll()
			return nil, fmt.Errorf("socket %s from %s: %w", names[i], path, err)
		}
		out[i] = Socket{Name: names[i], File: f}
	}
	return out, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "handed-over"))
		}
	}
	return files, nil
}

// Listening reports an error unless f is (still) a listening TCP socket.
func Listening(f *os.File) error { return control(f, listening) }

func listening(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil || typ != unix.SOCK_STREAM || acc != 1 {
		return errors.New("not a listening stream socket")
	}
	// The address family from the socket's name rather than SO_DOMAIN,
	// which only Linux has.
	switch sa, err := unix.Getsockname(fd); sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		if err == nil {
			return nil
		}
	}
	return errors.New("not a TCP socket")
}

// BoundPort returns the local port a listening socket is bound to.
func BoundPort(f *os.File) (int, error) {
	port := 0
	err := control(f, func(fd int) error {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fmt.Errorf("socket name: %w", err)
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			port = a.Port
		case *unix.SockaddrInet6:
			port = a.Port
		default:
			return errors.New("not a TCP socket")
		}
		return nil
	})
	return port, err
}

// Healthy asks the server at path for its health.
func Healthy(ctx context.Context, path string) error {
	c, err := dial(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte(reqHealth + "\n")); err != nil {
		return fmt.Errorf("ask %s for its health: %w", path, err)
	}
	line, err := bufio.NewReaderSize(c, 512).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read health from %s: %w", path, err)
	}
	if line = strings.TrimSpace(line); line != "ok" {
		return errors.New(strings.TrimPrefix(line, "fail: "))
	}
	return nil
}

func dial(ctx context.Context, path string) (*net.UnixConn, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w", path, err)
	}
	uc := c.(*net.UnixConn)
	deadline, _ := ctx.Deadline()
	_ = uc.SetDeadline(deadline)
	return uc, nil
}

// Directory layout: the ports process answers at PortsSocket, each router at
// a RouterSocket of its own.
const (
	PortsSocket  = "ports.sock"
	routerPrefix = "router-"
)

// RouterSocket is the name of the socket of the router with the given
// (container host) name.
func RouterSocket(host string) string { return routerPrefix + host + ".sock" }

// FetchAny asks the ports process in dir for the sockets, and each router
// in dir when it does not answer. It returns the sockets of the first that
// answers and which one it was. Sockets of routers that are gone (nothing
// listens on them any more) are removed.
func FetchAny(ctx context.Context, dir, self string) ([]Socket, string, error) {
	paths := []string{filepath.Join(dir, PortsSocket)}
	routers, _ := filepath.Glob(filepath.Join(dir, routerPrefix+"*.sock"))
	slices.Sort(routers)
	for _, p := range routers {
		if filepath.Base(p) != self {
			paths = append(paths, p)
		}
	}
	var errs []error
	for _, p := range paths {
		socks, err := Fetch(ctx, p)
		if err == nil {
			return socks, p, nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) && p != paths[0] {
			_ = os.Remove(p) // its router is gone
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// Endpoint is a unix socket listener at a path that may be taken over: a
// new process listening at the same path replaces it atomically (rename),
// and the old one then leaves the path alone when it closes.
type Endpoint struct {
	*net.UnixListener
	path string
	ino  uint64
}

// Listen listens on a unix socket at path, owner-only, replacing whatever
// socket is there.
func Listen(path string) (*Endpoint, error) {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Endpoint, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(tmp, &st); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return &Endpoint{UnixListener: ln, path: path, ino: st.Ino}, nil
}

// Close stops listening and removes the path unless another process has
// taken it over since.
func (e *Endpoint) Close() error {
	var st unix.Stat_t
	if err := unix.Stat(e.path, &st); err == nil && st.Ino == e.ino {
		_ = os.Remove(e.path)
	}
	return e.UnixListener.Close()
}

// Path is where the endpoint listens.
func (e *Endpoint) Path() string { return e.path }

// Port is a listening socket wanted by name, bound to a port.
type Port struct {
	Name string // "http", "https"
	Port int
}

// Take asks the holders in dir (FetchAny) until one hands over a socket for
// each of want, bound to its port, and returns them in want's order. It
// tries every retry interval until ctx is done: a router may start before
// its ports process, or while the ports process is being replaced. Sockets
// handed over that it does not want are closed.
func Take(ctx context.Context, dir, self string, want []Port, retry time.Duration, log *slog.Logger) ([]Socket, error) {
	var lastErr error
	logged := time.Time{}
	for {
		socks, from, err := FetchAny(ctx, dir, self)
		if err == nil {
			var out []Socket
			out, err = pick(socks, want)
			if err == nil {
				if log != nil {
					log.Info("took the listening sockets", "from", from)
				}
				return out, nil
			}
			err = fmt.Errorf("sockets from %s: %w", from, err)
		}
		lastErr = err
		if log != nil && time.Since(logged) > 30*time.Second {
			logged = time.Now()
			log.Warn("waiting for the listening sockets", "dir", dir, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("take the listening sockets: %w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(retry):
		}
	}
}

// pick returns the sockets of want from socks, in want's order, and closes
// the others; on an error it closes all.
func pick(socks []Socket, want []Port) ([]Socket, error) {
	out := make([]Socket, 0, len(want))
	used := make([]bool, len(socks))
	var err error
	for _, w := range want {
		i := slices.IndexFunc(socks, func(s Socket) bool { return s.Name == w.Name })
		if i < 0 {
			err = fmt.Errorf("no %s socket", w.Name)
			break
		}
		port, perr := BoundPort(socks[i].File)
		if perr != nil || port != w.Port {
			err = fmt.Errorf("the %s socket is bound to port %d, not %d", w.Name, port, w.Port)
			break
		}
		used[i] = true
		out = append(out, socks[i])
	}
	for i, s := range socks {
		if !used[i] || err != nil {
			s.File.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
