// Package relay is the ports process's control relay: on a manager where
// paasd does not run, the router finds no control plane on its
// contract.ControlSocket and connects to contract.ControlRelaySocket, where
// this relay accepts and copies each connection's bytes, unchanged, to
// paasd's relay listener over TLS with the relay's client certificate (see
// contract.RelayBundle). The router's request, its X-Forwarded-For
// included, reaches paasd as the router wrote it.
//
// Where paasd listens is read from the Swarm (the newest
// contract.RoleControlRelay config of the installation) when a connection
// comes, at most every CacheFor, and again when connecting fails: a paasd
// that restarted or moved to another node is found by the next connection.
package relay

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
	"paas/router/contract"
)

// ConfigAPI is the part of the Docker API the relay reads paasd's address
// from.
type ConfigAPI interface {
	ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error)
}

// Options configure a Relay.
type Options struct {
	Installation string
	Configs      ConfigAPI
	// TLS is the client configuration (contract.RelayBundle.ClientTLS).
	TLS *tls.Config
	// DialTimeout bounds connecting to paasd, handshake included; default 5s.
	DialTimeout time.Duration
	// CacheFor is how long an address read from the Swarm is used without
	// reading it again; default 5s.
	CacheFor time.Duration
	Log      *slog.Logger
}

// Relay relays connections to paasd.
type Relay struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	addr   string
	readAt time.Time
}

// New returns a Relay.
func New(opts Options) *Relay {
	opts.DialTimeout = cmp.Or(opts.DialTimeout, 5*time.Second)
	opts.CacheFor = cmp.Or(opts.CacheFor, 5*time.Second)
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Relay{opts: opts, log: opts.Log.With("component", "control-relay")}
}

// Serve accepts on ln until ctx ends, then closes ln and lets the relayed
// connections run for up to grace before it cuts them.
func (r *Relay) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	conns, cut := context.WithCancel(context.WithoutCancel(ctx))
	defer cut()
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			break
		}
		wg.Go(func() { r.relay(conns, c) })
	}
	if ctx.Err() != nil {
		err = nil
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		cut()
		<-done
	}
	return err
}

// relay carries c to paasd and back until both sides are done.
func (r *Relay) relay(ctx context.Context, c net.Conn) {
	defer c.Close()
	up, err := r.connect(ctx)
	if err != nil {
		r.log.Warn("control plane unreachable", "err", err)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { pipe(up, c) })
	pipe(c, up)
	wg.Wait()
}

// pipe copies from src to dst, then tells dst nothing more comes.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

// connect dials paasd at the address it last published; when that fails,
// it reads the address again and, if it changed, tries the new one.
func (r *Relay) connect(ctx context.Context) (net.Conn, error) {
	addr, err := r.address(ctx, false)
	if err != nil {
		return nil, err
	}
	c, err := r.dial(ctx, addr)
	if err == nil {
		return c, nil
	}
	fresh, ferr := r.address(ctx, true)
	if ferr != nil || fresh == addr {
		return nil, err
	}
	return r.dial(ctx, fresh)
}

func (r *Relay) dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.DialTimeout)
	defer cancel()
	d := &tls.Dialer{Config: r.opts.TLS}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to the control plane at %s: %w", addr, err)
	}
	return c, nil
}

// address is paasd's relay address: the cached one unless it is older
// than CacheFor or refresh is set.
func (r *Relay) address(ctx context.Context, refresh bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !refresh && r.addr != "" && time.Since(r.readAt) < r.opts.CacheFor {
		return r.addr, nil
	}
	addr, err := Lookup(ctx, r.opts.Configs, r.opts.Installation)
	if err != nil {
		return "", err
	}
	r.addr, r.readAt = addr, time.Now()
	return addr, nil
}

// ErrNoAddress is returned by Lookup when paasd published no address.
var ErrNoAddress = errors.New("the control plane published no relay address")

// Lookup reads the relay address paasd published for installation: the
// newest RoleControlRelay config's.
func Lookup(ctx context.Context, api ConfigAPI, installation string) (string, error) {
	cfgs, err := api.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+installation),
		filters.Arg("label", paas.LabelRole+"="+contract.RoleControlRelay),
	)})
	if err != nil {
		return "", fmt.Errorf("read the control relay address: %w", err)
	}
	cfgs = slices.DeleteFunc(cfgs, func(c swarm.Config) bool {
		l := c.Spec.Labels
		return l[paas.LabelInstallation] != installation || l[paas.LabelRole] != contract.RoleControlRelay
	})
	if len(cfgs) == 0 {
		return "", ErrNoAddress
	}
	newest := slices.MaxFunc(cfgs, func(a, b swarm.Config) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Version.Index, b.Version.Index))
	})
	doc, err := contract.ParseControlRelay(newest.Spec.Data)
	if err != nil {
		return "", err
	}
	return doc.Addr, nil
}
