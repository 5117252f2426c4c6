package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"paas/internal/paas"
	"paas/router"
	"paas/router/contract"
	"paas/router/handover"
	"paas/router/ports"
	"paas/router/relay"
)

// In the router's Swarm services (scheduler.EnsureRouter), a router takes its
// listening sockets from the ports process through --sockets-dir instead of
// listening itself; once its context ends it keeps idle keep-alive
// connections open for routerIdleDrain (see router.Options.IdleDrain).
const routerIdleDrain = time.Second

func runRouter(args []string, stderr io.Writer) int {
	var opts router.Options
	var port, httpsPort int
	var socketsDir string
	accessLog := "on"
	routesFrom := "events"
	f := &envFlags{fs: flag.NewFlagSet("paasd router", flag.ContinueOnError)}
	f.String(&opts.Installation, "name", "paas", "installation whose apps are routed")
	f.String(&opts.Domain, "domain", "paas.localhost", "apps are served at APP.DOMAIN")
	f.String(&opts.Network, "network", "paas-net", "overlay network the app tasks are reached on")
	f.Int(&port, "http-port", 80, "HTTP listen port")
	f.Int(&opts.MaxConnsPerAddr, "max-conns-per-addr", router.DefaultMaxConnsPerAddr, "connections one client address may hold open at once; one more gets a 429 and is closed (0: no limit)")
	f.Int(&httpsPort, "https-port", 0, "HTTPS listen port; 0: no HTTPS")
	f.String(&socketsDir, "sockets-dir", "", "take the listening sockets from the ports process (paasd router-ports) in this directory instead of listening, and hand them on")
	f.Duration(&opts.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM, how long requests in flight may take to finish")
	f.Duration(&opts.ConnectTimeout, "connect-timeout", time.Second, "how long connecting to an app's task may take, and what is sent to one may go unacknowledged, before the task counts as unreachable (it is ejected and idempotent requests move to another task)")
	f.String(&accessLog, "access-log", accessLog, "on: one JSON line per request on stderr; off: none")
	f.Duration(&opts.ResyncInterval, "resync-interval", 30*time.Second, "routes follow Docker's event stream; everything is re-read this often anyway (up to 10 times less often where a full read is slow)")
	f.String(&routesFrom, "routes-from", routesFrom, "events: follow Docker's event stream; poll: re-read every route each second")
	f.String(&opts.AdminToken, "admin-token", "", "token of the control endpoint paasd uses to drain and check tasks (set it through PAAS_ADMIN_TOKEN)")
	certKeyFile := contract.CertKeySecretPath
	f.String(&certKeyFile, "cert-key-file", certKeyFile, "`file` (a Swarm secret) whose text opens the certificates' private keys sealed in route configs")
	if !f.parse(args, stderr) {
		return 2
	}
	if text, err := os.ReadFile(certKeyFile); err == nil {
		opts.CertKey = contract.CertKey(string(text))
	} else if !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "paasd: --cert-key-file: %v\n", err)
		return 1
	}
	if accessLog != "on" && accessLog != "off" {
		fmt.Fprintf(stderr, "paasd: --access-log %q: use on or off\n", accessLog)
		return 2
	}
	if opts.ConnectTimeout < 100*time.Millisecond || opts.ConnectTimeout > time.Minute {
		fmt.Fprintf(stderr, "paasd: --connect-timeout %s: use 100ms to 1m\n", opts.ConnectTimeout)
		return 2
	}
	opts.AccessLog = accessLog == "on"
	if routesFrom != "events" && routesFrom != "poll" {
		fmt.Fprintf(stderr, "paasd: --routes-from %q: use events or poll\n", routesFrom)
		return 2
	}
	opts.NoWatch = routesFrom == "poll"
	opts.HTTPAddr = fmt.Sprintf(":%d", port)
	if httpsPort > 0 {
		opts.HTTPSAddr = fmt.Sprintf(":%d", httpsPort)
		opts.HTTPSPort = httpsPort
	}
	opts.PollInterval = time.Second
	router.TuneGC()
	// Access log lines are written in batches (at most 100 ms late).
	logOut := router.NewBufferedLog(stderr, 100*time.Millisecond)
	defer logOut.Close()
	opts.Log = newLogger(logOut)
	opts.AccessLogOut = logOut
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		opts.Log.Error("docker client", "err", err)
		return 1
	}
	defer docker.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src := router.NewConfigSource(router.NewDockerSource(docker, opts), docker, opts)
	if socketsDir == "" {
		err = router.New(src, opts).Run(ctx)
	} else {
		opts.IdleDrain = routerIdleDrain
		opts.ControlSocket = filepath.Join(socketsDir, contract.ControlSocket)
		opts.ControlRelaySocket = filepath.Join(socketsDir, contract.ControlRelaySocket)
		opts.WaitForRoutes = true
		err = serveHandedOver(ctx, src, opts, socketsDir, port, httpsPort)
	}
	if err != nil {
		opts.Log.Error("router stopped", "err", err)
		return 1
	}
	return 0
}

// serveHandedOver runs the router on the sockets it takes from the holders
// in dir, and hands them on, with its health, at its own socket there.
func serveHandedOver(ctx context.Context, src router.Source, opts router.Options, dir string, port, httpsPort int) error {
	self, err := routerSocketName()
	if err != nil {
		return err
	}
	want := []handover.Port{{Name: "http", Port: port}}
	if httpsPort > 0 {
		want = append(want, handover.Port{Name: "https", Port: httpsPort})
	}
	socks, err := handover.Take(ctx, dir, self, want, 500*time.Millisecond, opts.Log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it served
		}
		return err
	}
	defer func() {
		for _, s := range socks {
			s.File.Close()
		}
	}()
	lns := make([]net.Listener, len(socks))
	for i, s := range socks {
		if lns[i], err = net.FileListener(s.File); err != nil {
			return fmt.Errorf("listen on the %s socket: %w", s.Name, err)
		}
	}
	r := router.New(src, opts)
	ep, err := handover.Listen(filepath.Join(dir, self))
	if err != nil {
		return err
	}
	defer ep.Close()
	hs := handover.NewServer(socks, opts.Log)
	hs.Health = r.Healthy
	// Handed on until the router exits, also while it drains.
	hctx, stopHandover := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHandover()
	go func() {
		if err := hs.Serve(hctx, ep.UnixListener); err != nil {
			opts.Log.Warn("handing the sockets on stopped", "err", err)
		}
	}()
	var tlsLn net.Listener
	if len(lns) > 1 {
		tlsLn = lns[1]
	}
	return r.ServeTLS(ctx, lns[0], tlsLn)
}

// routerSocketName is this router's socket in the sockets directory, named
// after its container's host name (unique on a node).
func routerSocketName() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host name: %w", err)
	}
	return handover.RouterSocket(host), nil
}

func runRouterPorts(args []string, stderr io.Writer) int {
	var o ports.Options
	var name string
	var httpPort, httpsPort int
	f := &envFlags{fs: flag.NewFlagSet("paasd router-ports", flag.ContinueOnError)}
	f.String(&name, "name", "paas", "installation whose routers get the ports")
	f.Int(&httpPort, "http-port", 80, "HTTP port to bind")
	f.Int(&httpsPort, "https-port", 0, "HTTPS port to bind; 0: none")
	f.String(&o.Dir, "sockets-dir", "", "directory shared with the routers (required)")
	f.String(&o.Docker, "docker-socket", "/var/run/docker.sock", "the Docker API socket the read-only proxy reads from")
	relayFile := contract.ControlRelaySecretPath
	f.String(&relayFile, "control-relay-file", relayFile, "`file` (a Swarm secret) of the control relay's certificate; without it, no relay to the control plane on another node")
	if !f.parse(args, stderr) {
		return 2
	}
	if o.Dir == "" {
		fmt.Fprintln(stderr, "paasd: --sockets-dir is required")
		return 2
	}
	var bundle *contract.RelayBundle
	if data, err := os.ReadFile(relayFile); err == nil {
		b, err := contract.ParseRelayBundle(data)
		if err != nil {
			fmt.Fprintf(stderr, "paasd: --control-relay-file: %v\n", err)
			return 1
		}
		bundle = &b
	} else if !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "paasd: --control-relay-file: %v\n", err)
		return 1
	}
	o.Ports = []handover.Port{{Name: "http", Port: httpPort}}
	if httpsPort > 0 {
		o.Ports = append(o.Ports, handover.Port{Name: "https", Port: httpsPort})
	}
	o.InstallLabel = paas.LabelInstallation + "=" + name
	o.Log = newLogger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if bundle != nil {
		stopRelay, err := startControlRelay(ctx, o, name, *bundle)
		if err != nil {
			o.Log.Error("control relay", "err", err)
			return 1
		}
		defer stopRelay()
	}
	if err := ports.Run(ctx, o); err != nil {
		o.Log.Error("router ports stopped", "err", err)
		return 1
	}
	return 0
}

// runRouterHealth is the Docker health check of the router's services: it
// asks the router of this container (or the ports process, with --ports)
// whether it serves, and exits 0 when it does.
func runRouterHealth(args []string, stdout, stderr io.Writer) int {
	var dir string
	var portsProcess bool
	f := &envFlags{fs: flag.NewFlagSet("paasd router-health", flag.ContinueOnError)}
	f.String(&dir, "sockets-dir", "", "the sockets directory of the router (required)")
	f.Bool(&portsProcess, "ports", false, "check the ports process instead of the router")
	if !f.parse(args, stderr) {
		return 2
	}
	if dir == "" {
		fmt.Fprintln(stderr, "paasd: --sockets-dir is required")
		return 2
	}
	sock := handover.PortsSocket
	if !portsProcess {
		var err error
		if sock, err = routerSocketName(); err != nil {
			fmt.Fprintf(stderr, "unhealthy: %v\n", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := handover.Healthy(ctx, filepath.Join(dir, sock)); err != nil {
		fmt.Fprintf(stderr, "unhealthy: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "healthy")
	return 0
}

// startControlRelay relays connections of the control relay socket in the
// sockets directory to paasd on whatever node it runs (router/relay), until
// ctx ends; the function it returns waits for that.
func startControlRelay(ctx context.Context, o ports.Options, installation string, bundle contract.RelayBundle) (func(), error) {
	tlsCfg, err := bundle.ClientTLS()
	if err != nil {
		return nil, err
	}
	docker, err := client.NewClientWithOpts(client.WithHost("unix://"+o.Docker), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		docker.Close()
		return nil, err
	}
	ep, err := handover.Listen(filepath.Join(o.Dir, contract.ControlRelaySocket))
	if err != nil {
		docker.Close()
		return nil, err
	}
	r := relay.New(relay.Options{Installation: installation, Configs: docker, TLS: tlsCfg, Log: o.Log})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Serve(ctx, ep, 5*time.Second); err != nil {
			o.Log.Warn("control relay stopped", "err", err)
		}
	}()
	return func() { <-done; ep.Close(); docker.Close() }, nil
}
