package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"paas/internal/paas"
	"paas/internal/registry"
	"paas/internal/web"
	"paas/router/contract"
	"paas/scheduler"
)

// WebTLSDir is where, under the data dir, the control plane's certificate
// for paas.DOMAIN is kept with the CA that signed it (ca.crt: what API
// clients trust, e.g. curl --cacert).
const WebTLSDir = "web-tls"

// controlCert returns the certificate of the control plane's names,
// signed by the installation's own CA in dir, made again when the names
// change or it nears its end.
func controlCert(dir string) func(hosts []string) (contract.CertPEM, error) {
	var mu sync.Mutex
	return func(hosts []string) (contract.CertPEM, error) {
		mu.Lock()
		defer mu.Unlock()
		c, err := registry.LoadCertificates(dir, hosts)
		if err != nil {
			return contract.CertPEM{}, err
		}
		crt, err := os.ReadFile(filepath.Join(dir, "server.crt"))
		if err != nil {
			return contract.CertPEM{}, err
		}
		key, err := os.ReadFile(filepath.Join(dir, "server.key"))
		if err != nil {
			return contract.CertPEM{}, err
		}
		chain := strings.TrimRight(string(crt), "\n") + "\n" + string(c.CA)
		return contract.CertPEM{Cert: chain, Key: string(key)}, nil
	}
}

// listenControl listens on the control socket in the router's sockets
// volume on this node, where the router (on the same node) reaches the
// control plane's HTTP server: no port of its own.
func listenControl(ctx context.Context, docker client.APIClient, volumeName, installation string) (net.Listener, error) {
	// Made here if the router has not made it yet (the same volume its
	// services mount), so that the API serves before the router starts.
	vol, err := docker.VolumeCreate(ctx, volume.CreateOptions{
		Name: volumeName, Labels: map[string]string{paas.LabelInstallation: installation},
	})
	if err != nil {
		return nil, fmt.Errorf("find the router's sockets volume: %w", err)
	}
	if vol.Mountpoint == "" {
		return nil, errors.New("the router's sockets volume has no mount point on this node")
	}
	path := filepath.Join(vol.Mountpoint, contract.ControlSocket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on the control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serveWeb serves srv on the control socket until ctx ends.
func serveWeb(ctx context.Context, docker client.APIClient, sched *scheduler.Swarm, installation string, srv *web.Server, log *slog.Logger) error {
	ln, err := listenControl(ctx, docker, sched.RouterVolumeName(), installation)
	if err != nil {
		return err
	}
	log.Info("API serving through the router", "socket", ln.Addr().String())
	return srv.Serve(ctx, ln, ShutdownGrace)
}

// serveRelay says in the Swarm where the relay listener is, then serves srv
// on it until ctx ends.
func serveRelay(ctx context.Context, docker client.APIClient, installation string, rl *relayListener, srv *web.Server, log *slog.Logger) error {
	if err := publishRelay(ctx, docker, installation, rl.addr); err != nil {
		return err
	}
	log.Info("API serving the routers of the other managers through their relay", "addr", rl.addr)
	return srv.Serve(ctx, rl.ln, ShutdownGrace)
}
