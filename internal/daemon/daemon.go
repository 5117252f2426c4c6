// Package daemon is the composition root of `paasd serve`: it builds the
// concrete parts (store, Docker, registry, builder, scheduler, router service,
// pipeline, commands, SSH server) and runs them until the context ends.
package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/sync/errgroup"

	"paas/builder"
	"paas/gitreceive"
	"paas/internal/auth"
	"paas/internal/commands"
	"paas/internal/deploy"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/router"
	"paas/scheduler"
)

// Config is the operator contract of `paasd serve` (DESIGN.md).
type Config struct {
	DataDir   string
	SSHAddr   string
	HTTPPort  int
	HTTPSPort int
	Domain    string
	AdminKeys string
	Name      string
	// RegistryAddr is where the embedded registry listens;
	// RegistryAdvertiseAddr (HOST[:PORT]) is where every node reaches it,
	// its host by default. Registry (HOST[:PORT][/PATH]) is a registry
	// elsewhere, used instead, with RegistryUser, RegistryPasswordFile and
	// RegistryCAFile (a PEM of its CA when the system's roots do not cover
	// it).
	RegistryAddr          string
	RegistryAdvertiseAddr string
	Registry              string
	RegistryUser          string
	RegistryPasswordFile  string
	RegistryCAFile        string
	// DockerCertsDir is where the local Docker daemon looks for registry CAs
	// (DefaultDockerCertsDir); "" writes none.
	DockerCertsDir string
	PluginsDir     string
	// KeepReleases is how many releases' images an app keeps in the
	// registry (rollback reaches that far back).
	KeepReleases int
	// PostgresImage is the image of Postgres databases (postgres.DefaultImage when empty).
	PostgresImage string
	Version       string
	LDAP          LDAPConfig
	// ACME: the directory URL (default Let's Encrypt), a PEM file of extra
	// roots to trust for its HTTPS, and the account's contact email.
	ACMEDirectory string
	ACMECAFile    string
	ACMEEmail     string
	// ACMERenewBefore: an ACME certificate is renewed this long before it
	// expires (checked at start and hourly).
	ACMERenewBefore time.Duration
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("--data-dir is required")
	case c.Domain == "":
		return errors.New("--domain is required")
	case paas.ValidateAppName(c.Name) != nil || len(c.Name) > 20:
		return fmt.Errorf("--name %q: use lowercase letters, digits and dashes, at most 20 characters", c.Name)
	case c.HTTPPort <= 0 || c.HTTPPort > 65535:
		return fmt.Errorf("--http-port %d is not a port", c.HTTPPort)
	case c.KeepReleases < 0 || c.KeepReleases > 1000:
		return fmt.Errorf("--keep-releases %d: use 1 to 1000 (0 for the default, 10)", c.KeepReleases)
	case c.HTTPSPort < 0 || c.HTTPSPort > 65535 || c.HTTPSPort == c.HTTPPort:
		return fmt.Errorf("--https-port %d is not a port other than --http-port (0: no HTTPS)", c.HTTPSPort)
	}
	if _, _, err := net.SplitHostPort(c.SSHAddr); err != nil {
		return fmt.Errorf("--ssh-addr %q: %w", c.SSHAddr, err)
	}
	if err := c.validateRegistry(); err != nil {
		return err
	}
	return c.LDAP.validate()
}

// ShutdownGrace is how long a stopping paasd lets running deploys finish.
const ShutdownGrace = 2 * time.Minute

// Run starts every part of the control plane and blocks until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	st, err := store.Open(dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	// No build runs yet: a build dir here is a killed build's leftover.
	if err := removeContents(filepath.Join(dataDir, "builds")); err != nil {
		return err
	}
	// Deploys a stopped paasd left open, settled once the router runs.
	open, err := st.OpenDeploys()
	if err != nil {
		return err
	}
	if len(open) > 0 {
		log.Warn("deploys were interrupted by a stop; settling them", "count", len(open))
	}

	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer docker.Close()
	if _, err := docker.Ping(ctx); err != nil {
		return fmt.Errorf("reach the Docker daemon: %w", err)
	}

	// The embedded registry must serve before anything is pushed to it.
	reg, err := openRegistry(cfg, dataDir, log)
	if err != nil {
		return err
	}
	defer reg.close()
	target := reg.target

	network := cfg.Name + "-net"
	routerToken, err := secretFile(filepath.Join(dataDir, "router_token"))
	if err != nil {
		return err
	}
	traffic := &traffic{c: &router.Client{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPPort)), Token: routerToken}}
	sched := scheduler.New(docker, scheduler.Options{
		Name: cfg.Name, Network: network, Log: log, Traffic: traffic,
		RegistryAuth: func() string { return builder.DockerAuth(target) },
	})
	builds, err := newBuilders(ctx, docker, st, dataDir, target, cfg.Name, log)
	if err != nil {
		return err
	}
	defer builds.close()
	routes, err := newRouting(docker, st, cfg, dataDir, func(ctx context.Context) error {
		_, err := traffic.c.Refresh(ctx)
		return err
	}, log)
	if err != nil {
		return err
	}
	appURL := func(app string) string {
		if cfg.HTTPPort == 80 {
			return "http://" + routes.DefaultHost(app)
		}
		return fmt.Sprintf("http://%s:%d", routes.DefaultHost(app), cfg.HTTPPort)
	}
	triggers := newPlugins(cfg, dataDir, st, log)
	pipeline := deploy.New(st, builds.selector, sched, triggers, deploy.Options{
		BuildRoot:    filepath.Join(dataDir, "builds"),
		AppURL:       appURL,
		AppHost:      routes.DefaultHost, // follows domains:set-global
		Images:       reg,
		KeepReleases: cfg.KeepReleases,
		Log:          log.With("component", "deploy"),
	})
	audit := &auditLog{store: st, log: log.With("component", "audit")}
	repos := &repos{dir: filepath.Join(dataDir, "repos"), store: st, audit: audit}
	platform := &commands.Platform{
		Store: st, Pipeline: pipeline, Runtime: sched, Repos: repos, AppURL: appURL,
		Images: imagesFunc(func(app string) error {
			if err := builds.pack.PurgeCache(context.Background(), app); err != nil {
				return err
			}
			return reg.DeleteApp(app)
		}),
		Releases: &releases{Pipeline: pipeline, store: st, repos: repos},
		OneOffs:  sched,
		Routing:  routes, RoutingStore: st,
	}
	if err := registerPlugins(triggers, cfg, dataDir, st, docker, pipeline, network, log); err != nil {
		return err
	}
	dispatcher := commands.NewDispatcher(st, cfg.Version,
		commands.WithTriggers(platform.Builtins(), triggers),
		commands.WithTriggers(builds.commands(st, pipeline), triggers),
		commands.AccessCommands(st), commands.WhoamiCommands(), commands.EventCommands(st),
		pluginCommands(triggers))
	dispatcher.SetAuditor(audit)
	dispatcher.SetMore(execPluginCommands(triggers))
	var keys gitreceive.Authenticator
	local, dirKeys, closeDir, err := cfg.LDAP.authenticator(cfg.AdminKeys, st, log)
	if err != nil {
		return err
	}
	defer closeDir()
	keys = local
	if dirKeys != nil {
		keys = dirKeys
	}

	ssh, err := gitreceive.New(gitreceive.Options{
		Addr:        cfg.SSHAddr,
		HostKeyPath: filepath.Join(dataDir, "ssh_host_ed25519_key"),
		DataDir:     dataDir,
		Auth:        keys,
		Repos:       repos,
		Pushes:      &pushes{pipeline: pipeline, store: st, audit: audit, triggers: triggers},
		Commands:    &commands.UserAuth{Next: dispatcher, Triggers: triggers},
		Log:         log.With("component", "ssh"),
	})
	if err != nil {
		return err
	}
	if err := ssh.Listen(); err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reg.Run(gctx, ShutdownGrace) })
	g.Go(func() error {
		if err := sched.EnsureNetwork(gctx); err != nil {
			return err
		}
		if err := routes.Sync(gctx); err != nil {
			log.Warn("cannot publish the route configuration", "err", err)
		}
		if err := startRouter(gctx, docker, sched, cfg, target, network, routerToken, log); err != nil {
			return err
		}
		g.Go(func() error { return routes.Run(gctx) })
		return reconcile(gctx, st, pipeline, sched, open, repos, audit, log)
	})
	g.Go(func() error { return ssh.Run(gctx, ShutdownGrace) })
	g.Go(func() error { return triggers.Run(gctx) })
	log.Info("paasd serving", "ssh", ssh.Addr().String(), "registry", target.Prefix, "registry_listen", reg.Addr(), "domain", cfg.Domain, "name", cfg.Name, "version", cfg.Version)
	return g.Wait()
}

// startRouter builds the router image from this very binary and runs it as a
// Swarm service, publishing the HTTP port in host mode.
func startRouter(ctx context.Context, docker client.APIClient, sched *scheduler.Swarm, cfg Config, reg paas.ImageRegistry, network, token string, log *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	sum, err := fileDigest(exe)
	if err != nil {
		return err
	}
	ref := reg.Repository("router") + ":" + sum[:16]
	args := []string{"router", "--name", cfg.Name, "--domain", cfg.Domain, "--http-port", strconv.Itoa(cfg.HTTPPort), "--network", network}
	ports := []int{cfg.HTTPPort}
	if cfg.HTTPSPort > 0 {
		args = append(args, "--https-port", strconv.Itoa(cfg.HTTPSPort))
		ports = append(ports, cfg.HTTPSPort)
	}
	var image string
	for attempt := 1; ; attempt++ {
		image, err = builder.BuildSelfImage(ctx, docker, exe, ref, args, &reg, io.Discard)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			return fmt.Errorf("build router image: %w", err)
		}
		// Docker fails a build whose identical image (the same layers: the
		// same paasd) another client removes meanwhile, with "failed to get
		// digest"; built again, it succeeds.
		log.Warn("building the router image failed; trying again", "err", err, "attempt", attempt)
		time.Sleep(time.Second)
	}
	env := []string{"PAAS_ADMIN_TOKEN=" + token}
	if err := sched.EnsureRouterPorts(ctx, image, args, env, ports...); err != nil {
		return fmt.Errorf("start router: %w", err)
	}
	log.Info("router running", "image", image, "http_port", cfg.HTTPPort)
	return nil
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type imagesFunc func(app string) error

func (f imagesFunc) DeleteApp(app string) error { return f(app) }

// repos keeps one bare repository per app under dir.
type repos struct {
	dir   string
	store *store.Store
	audit *auditLog
}

var (
	_ gitreceive.Repos = (*repos)(nil)
	_ commands.Repos   = (*repos)(nil)
)

func (r *repos) Path(app string) string { return filepath.Join(r.dir, app+".git") }

func (r *repos) Create(app string) error {
	if err := paas.ValidateAppName(app); err != nil {
		return err
	}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return err
	}
	return gitreceive.InitRepo(r.Path(app), "main")
}

func (r *repos) Head(app, branch string) (string, error) {
	return gitreceive.BranchCommit(r.Path(app), branch)
}

func (r *repos) Remove(app string) error {
	if err := paas.ValidateAppName(app); err != nil {
		return err
	}
	return os.RemoveAll(r.Path(app))
}

func (r *repos) RepoFor(_ context.Context, id paas.Identity, name string, write bool) (string, error) {
	app, err := r.store.App(name)
	if err == nil && !auth.CanUseApp(id, app) {
		err = paas.ErrAppNotFound
	}
	if err != nil {
		action := "fetch"
		if write {
			action = "push"
		}
		r.audit.recordPush(id, action, name, err, "")
		return "", err
	}
	if err := r.Create(name); err != nil {
		return "", err
	}
	return r.Path(name), nil
}

// removeContents empties dir, which need not exist.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove a leftover build dir: %w", err)
		}
	}
	return nil
}
