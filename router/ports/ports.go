// Package ports is the router's ports process (paasd router-ports). It runs
// in the host's network namespace, binds the router's HTTP and HTTPS ports
// there and hands the listening sockets to the routers (package handover),
// which run on the installation's overlay network: a socket stays in the
// namespace it was made in, so the connections a router accepts on it come
// straight from the clients, with their addresses, and no userland proxy or
// NAT sits in between. It never accepts a connection itself.
//
// It also serves the routers their read-only view of the Docker API
// (package dockerproxy), so that no router holds the Docker socket.
//
// Everything it shares with the routers is in one directory, owner-only:
//
//	ports.sock          its handover socket (health requests too)
//	router-HOST.sock    each router's handover socket
//	docker.sock         the read-only Docker API
//
// A new ports process (an upgrade, a changed spec) first asks the one
// running for its sockets, then any router; it binds the ports itself only
// when none answers. So the listening sockets, and the connections waiting
// in their accept queues, outlive every process that holds them.
package ports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"paas/router/dockerproxy"
	"paas/router/handover"
)

// DockerSocket is the name of the read-only Docker API socket in the
// directory.
const DockerSocket = "docker.sock"

// Options configure Run.
type Options struct {
	Dir   string          // shared with the routers; created owner-only
	Ports []handover.Port // to bind, each with the name it is handed over by
	// Docker is the unix socket of the Docker API the proxy reads from.
	Docker string
	// InstallLabel is the label filter every list through the proxy must
	// carry ("paas.installation=NAME").
	InstallLabel string
	// BindTimeout is how long a port still taken is tried again; default 30s.
	BindTimeout time.Duration
	Log         *slog.Logger
}

// Run takes or binds the ports and serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.BindTimeout <= 0 {
		o.BindTimeout = 30 * time.Second
	}
	log := o.Log.With("component", "router-ports")
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", o.Dir, err)
	}
	if err := os.Chmod(o.Dir, 0o700); err != nil {
		return fmt.Errorf("restrict %s: %w", o.Dir, err)
	}
	socks, err := obtain(ctx, o, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range socks {
			s.File.Close()
		}
	}()

	// The Docker API first: a router that got its sockets reads routes next.
	dockerEP, err := handover.Listen(filepath.Join(o.Dir, DockerSocket))
	if err != nil {
		return err
	}
	defer dockerEP.Close()
	proxy := &http.Server{
		Handler:           dockerproxy.New(o.Docker, o.InstallLabel, log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	proxied := make(chan error, 1)
	go func() { proxied <- proxy.Serve(dockerEP) }()

	portsEP, err := handover.Listen(filepath.Join(o.Dir, handover.PortsSocket))
	if err != nil {
		_ = proxy.Close()
		return err
	}
	defer portsEP.Close()
	srv := handover.NewServer(socks, log)
	srv.Health = func(ctx context.Context) error { return healthy(ctx, socks, filepath.Join(o.Dir, DockerSocket)) }
	handed := make(chan error, 1)
	go func() { handed <- srv.Serve(ctx, portsEP.UnixListener) }()
	log.Info("ports ready", "dir", o.Dir, "sockets", names(socks))

	var failed error
	select {
	case <-ctx.Done():
	case err := <-proxied:
		failed = fmt.Errorf("serve the Docker API: %w", err)
	case err := <-handed:
		failed = fmt.Errorf("serve the sockets: %w", err)
	}
	// The sockets stay open until Run returns: a newer ports process or a
	// router holds them by now, or still asks for them.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = proxy.Shutdown(sctx)
	if failed != nil {
		return failed
	}
	log.Info("stopped")
	return nil
}

func names(socks []handover.Socket) []string {
	out := make([]string, len(socks))
	for i, s := range socks {
		out[i] = s.Name
	}
	return out
}

// obtain returns a socket for each of o.Ports: the ones a running holder
// hands over when their port matches, bound here otherwise.
func obtain(ctx context.Context, o Options, log *slog.Logger) ([]handover.Socket, error) {
	held := map[string]*os.File{}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	got, from, err := handover.FetchAny(fctx, o.Dir, "")
	cancel()
	if err != nil {
		log.Info("no running holder of the ports; binding them", "tried", err)
	}
	for _, s := range got {
		held[s.Name] = s.File
	}
	out := make([]handover.Socket, 0, len(o.Ports))
	fail := func(err error) ([]handover.Socket, error) {
		for _, s := range out {
			s.File.Close()
		}
		for _, f := range held {
			f.Close()
		}
		return nil, err
	}
	for _, p := range o.Ports {
		if f := held[p.Name]; f != nil {
			delete(held, p.Name)
			if port, err := handover.BoundPort(f); err == nil && port == p.Port {
				log.Info("took over a listening socket", "name", p.Name, "port", p.Port, "from", from)
				out = append(out, handover.Socket{Name: p.Name, File: f})
				continue
			}
			f.Close() // another port: this installation's port changed
		}
		f, err := bind(ctx, p.Port, o.BindTimeout, log)
		if err != nil {
			return fail(err)
		}
		log.Info("bound a listening socket", "name", p.Name, "port", p.Port)
		out = append(out, handover.Socket{Name: p.Name, File: f})
	}
	for _, f := range held {
		f.Close()
	}
	return out, nil
}

// bind listens on port on every address, trying again while the port is
// still taken (by a router of the older kind going away).
func bind(ctx context.Context, port int, timeout time.Duration, log *slog.Logger) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	addr := fmt.Sprintf(":%d", port)
	for {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			f, ferr := ln.(*net.TCPListener).File()
			ln.Close() // the socket lives on in f
			if ferr != nil {
				return nil, fmt.Errorf("listen on %s: %w", addr, ferr)
			}
			return f, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		log.Warn("port taken; trying again", "port", port, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// healthy checks that the sockets still listen and that the Docker API is
// served through the proxy.
func healthy(ctx context.Context, socks []handover.Socket, dockerSock string) error {
	for _, s := range socks {
		if err := handover.Listening(s.File); err != nil {
			return fmt.Errorf("socket %s: %w", s.Name, err)
		}
	}
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", dockerSock)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("docker API: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("docker API: ping answered %s", resp.Status)
	}
	return nil
}
