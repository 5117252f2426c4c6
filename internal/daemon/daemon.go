// Package daemon is the composition root of `paasd serve`: it builds the
// concrete parts (store, Docker, registry, builder, scheduler, router service,
// pipeline, commands, SSH server) and runs them until the context ends.
package daemon

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/sync/errgroup"

	"paas/builder"
	"paas/gitreceive"
	"paas/internal/applock"
	"paas/internal/auth"
	"paas/internal/commands"
	"paas/internal/cron"
	"paas/internal/dashboard"
	"paas/internal/deploy"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/internal/web"
	"paas/plugins"
	"paas/router/contract"
	"paas/scheduler"
)

// Config is the operator contract of `paasd serve` (DESIGN.md).
type Config struct {
	DataDir string
	// ConfigKeyFile holds the key the store's values are sealed with; empty:
	// DATA_DIR/config.key, created on first start.
	ConfigKeyFile string
	SSHAddr       string
	HTTPPort      int
	HTTPSPort     int
	Domain        string
	AdminKeys     string
	Name          string
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
	// NodeDockerSocket is the Docker socket's path on each manager, for the
	// router's ports process (default: /var/run/docker.sock).
	NodeDockerSocket string
	// ControlAddr is HOST:PORT where the routers of the other managers
	// reach the control plane through their ports process's relay (TLS,
	// the relay's certificate required): "" for this node's Swarm address
	// and DefaultControlPort, ControlAddrOff for none (paas.DOMAIN then
	// answers on paasd's node only).
	ControlAddr string
	// KeepReleases is how many releases' images an app keeps in the
	// registry (rollback reaches that far back).
	KeepReleases int
	// PostgresImage is the image of Postgres databases (postgres.DefaultImage when empty).
	PostgresImage string
	Version       string
	LDAP          LDAPConfig
	Signin        SigninConfig
	// ACME: the directory URL (default Let's Encrypt), a PEM file of extra
	// roots to trust for its HTTPS, and the account's contact email.
	ACMEDirectory string
	ACMECAFile    string
	ACMEEmail     string
	// ACMERenewBefore: an ACME certificate is renewed this long before it
	// expires (checked at start and hourly).
	ACMERenewBefore time.Duration
	// Limits on what one client may send or hold (0: no limit): the
	// largest push (bytes of its pack), config value and whole config of an
	// app, the tasks of one process type, and SSH connections.
	MaxPushSize        int64
	MaxConfigValue     int64
	MaxConfigSize      int64
	MaxScale           int
	SSHMaxConnsPerAddr int
	// RouterMaxConnsPerAddr is the router's limit of connections per client
	// address (0: none).
	RouterMaxConnsPerAddr int
	SSHAuthTimeout        time.Duration
	SSHIdleTimeout        time.Duration
	// StorageRoot is the host directory administrators' host-path mounts
	// must lie inside (paas.DefaultStorageRoot when empty).
	StorageRoot string
	// BuildMemory and BuildCPUs bound what one build may use (0 and "":
	// no limit), so a build cannot starve the node's apps.
	BuildMemory int64
	BuildCPUs   string
	// CronSeconds lets app.json cron schedules have a leading seconds
	// field and looks at them 4 times a second (for tests).
	CronSeconds bool
	// AppNetworkBatch is how many app networks the router gets at a time
	// (DefaultAppNetworkBatch when zero).
	AppNetworkBatch int
}

// Default limits of `paasd serve` (those of SSH are gitreceive's).
const (
	DefaultMaxConfigValue = 64 << 10
	DefaultMaxConfigSize  = 512 << 10
	DefaultMaxScale       = 100
	// DefaultBuildMemory is what one build may use unless --build-memory
	// says otherwise.
	DefaultBuildMemory = 2 << 30
	// DefaultAppNetworkBatch is how many app networks the router gets at a
	// time.
	DefaultAppNetworkBatch = scheduler.AppNetworkBatch
)

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
	case c.MaxPushSize < 0 || c.MaxConfigValue < 0 || c.MaxConfigSize < 0 || c.MaxScale < 0 || c.SSHMaxConnsPerAddr < 0 || c.RouterMaxConnsPerAddr < 0 || c.SSHAuthTimeout < 0 || c.SSHIdleTimeout < 0:
		return errors.New("a limit (--max-*, --ssh-*) is negative: use 0 for no limit")
	case c.MaxConfigValue > math.MaxInt32 || c.MaxConfigSize > math.MaxInt32:
		return errors.New("--max-config-value and --max-config-size: at most 2GB")
	case c.StorageRoot != "" && (!filepath.IsAbs(c.StorageRoot) || filepath.Clean(c.StorageRoot) != c.StorageRoot || c.StorageRoot == "/"):
		return fmt.Errorf("--storage-root %q: use an absolute, clean directory other than /", c.StorageRoot)
	}
	if _, err := c.buildLimits(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.SSHAddr); err != nil {
		return fmt.Errorf("--ssh-addr %q: %w", c.SSHAddr, err)
	}
	if err := validControlAddr(c.ControlAddr); err != nil {
		return err
	}
	if err := c.validateRegistry(); err != nil {
		return err
	}
	if err := c.Signin.validate(c.LDAP.AdminGroup); err != nil {
		return err
	}
	return c.LDAP.validate()
}

// buildLimits reads --build-memory and --build-cpus.
func (c *Config) buildLimits() (builder.BuildLimits, error) {
	l := builder.BuildLimits{MemoryBytes: c.BuildMemory}
	if c.BuildMemory != 0 && c.BuildMemory < paas.MinMemoryBytes {
		return l, fmt.Errorf("--build-memory %d: at least %s (0: no limit)", c.BuildMemory, paas.FormatMemory(paas.MinMemoryBytes))
	}
	if c.BuildCPUs != "" && c.BuildCPUs != "0" {
		n, err := paas.ParseCPU(c.BuildCPUs)
		if err != nil {
			return l, fmt.Errorf("--build-cpus: %w", err)
		}
		l.NanoCPUs = n
	}
	return l, nil
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
	st, err := OpenStore(dataDir, cfg.ConfigKeyFile)
	if err != nil {
		return err
	}
	defer st.Close()
	// No build runs yet: a build dir here is a killed build's leftover.
	if err := removeLeftoverBuilds(filepath.Join(dataDir, "builds"), log); err != nil {
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
	embeddedPrefix := "" // where the embedded registry names images
	if cfg.Registry == "" {
		embeddedPrefix = target.Prefix
	}

	network := cfg.Name + "-net" // apps deployed before apps had networks of their own
	routerToken, err := secretFile(filepath.Join(dataDir, "router_token"))
	if err != nil {
		return err
	}
	// Certificate keys reach the routers sealed under a key the routers
	// get as a Swarm secret (contract.SealCertKey).
	certKeyText, err := secretFile(filepath.Join(dataDir, "router_cert_key"))
	if err != nil {
		return err
	}
	nodes := scheduler.NewNodes(docker, cfg.Name)
	// Rollouts wait until the router runs this paasd's image: while an
	// upgrade replaces it, an old and a new router serve side by side, and
	// a rollout must see every router that serves.
	routerReady := make(chan struct{})
	traffic := &traffic{port: cfg.HTTPPort, token: routerToken, routers: nodes.RouterHosts, ready: routerReady}
	sched := scheduler.New(docker, scheduler.Options{
		Name: cfg.Name, Network: network, Log: log, Traffic: traffic, AppNetworkBatch: cfg.AppNetworkBatch,
		RegistryAuth: func() string { return builder.DockerAuth(target) },
	})
	buildLimits, _ := cfg.buildLimits() // checked by Validate
	builds, err := newBuilders(ctx, docker, st, dataDir, target, cfg.Name, buildLimits, log)
	if err != nil {
		return err
	}
	defer builds.close()
	routes, err := newRouting(docker, st, cfg, dataDir, contract.CertKey(certKeyText), func(ctx context.Context) error {
		return traffic.Refresh(ctx)
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
	nodeImages := &localImages{docker: docker, repoPrefix: target.Prefix, installation: cfg.Name, log: log.With("component", "images")}
	// Every release's image gets this very (static) binary as its env
	// wrapper, so its tasks get their config from a secret.
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	envWrapper := builder.NewEnvWrapper(builds.importer, exe)
	pipeline := deploy.New(st, builds.selector, sched, triggers, deploy.Options{
		BuildRoot: filepath.Join(dataDir, "builds"),
		AppURL:    appURL,
		AppHost:   routes.DefaultHost, // follows domains:set-global
		Images: pruneFunc(func(app string, keep []string) error {
			if err := reg.Prune(app, keep); err != nil {
				return err
			}
			_, err := nodeImages.Prune(context.Background(), app, keep)
			return err
		}),
		KeepReleases: cfg.KeepReleases,
		EnvWrapper:   envWrapper,
		Log:          log.With("component", "deploy"),
		CronSeconds:  cfg.CronSeconds,
		Networks:     sched,
	})
	audit := &auditLog{store: st, log: log.With("component", "audit")}
	sched.OnKill(audit.recordKill)
	cronJobs := cron.New(st, sched, audit, cron.Options{Dir: filepath.Join(dataDir, "cron"), Seconds: cfg.CronSeconds, Log: log.With("component", "cron")})
	repos := &repos{dir: filepath.Join(dataDir, "repos"), store: st, audit: audit}
	// One push lock per app, for pushes and everything else that writes
	// an app's repository.
	pushLocks := &applock.Set{}
	platform := &commands.Platform{
		Store: st, Pipeline: pipeline, Runtime: sched, Repos: repos, AppURL: appURL,
		Images: &appImages{copier: builds.importer, delete: func(app string) error {
			if err := builds.pack.PurgeCache(context.Background(), app); err != nil {
				return err
			}
			if _, err := nodeImages.Prune(context.Background(), app, nil); err != nil {
				return err
			}
			return reg.DeleteApp(app)
		}},
		Releases: &releases{Pipeline: pipeline, store: st, repos: repos, sched: sched},
		OneOffs:  sched, Counts: sched,
		Routing: routes, RoutingStore: st,
		Limits:    commands.Limits{MaxConfigValue: int(cfg.MaxConfigValue), MaxConfigSize: int(cfg.MaxConfigSize), MaxScale: cfg.MaxScale},
		Sources:   &sources{locks: pushLocks, store: st, repos: repos, pipeline: pipeline, tmp: filepath.Join(dataDir, "builds")},
		PushLocks: pushLocks,
	}
	repos.create = func(id paas.Identity, name string, out io.Writer) (*paas.App, error) {
		// The same user-auth check as `ssh paas apps:create NAME`.
		ctx := plugins.WithUser(ctx, id)
		if err := triggers.Trigger(ctx, plugins.TriggerUserAuth, []string{id.Name, "apps:create", name}, out); err != nil {
			return nil, fmt.Errorf("permission denied: %w", err)
		}
		return platform.CreateApp(id, name, out)
	}
	if err := registerPlugins(triggers, cfg, dataDir, st, docker, pipeline, network, log, cronJobs); err != nil {
		return err
	}
	var keys gitreceive.Authenticator
	local, dirKeys, users, dirClient, closeDir, err := cfg.LDAP.authenticator(cfg.AdminKeys, st, log)
	if err != nil {
		return err
	}
	defer closeDir()
	tokens := auth.NewTokens(st, users)
	// The browser sign-in of paas.DOMAIN: mounted at /auth/ of the web
	// server, its sessions one of the server's authenticators, its links
	// what `ssh paas login` prints.
	signinSvc, err := newSignin(cfg, dataDir, dirClient, audit, log)
	if err != nil {
		return err
	}
	dispatcher := commands.NewDispatcher(st, cfg.Version,
		commands.WithTriggers(platform.Builtins(), triggers),
		commands.WithTriggers(builds.commands(st, pipeline), triggers),
		commands.StorageCommands(&commands.Storage{Apps: st, Volumes: scheduler.NewVolumes(docker, cfg.Name), Pipeline: pipeline, Root: cmp.Or(cfg.StorageRoot, paas.DefaultStorageRoot), DataDir: dataDir}),
		commands.AccessCommands(st), commands.AppSettingsCommands(st), commands.NodeCommands(nodes, pipeline, commands.JoinRegistry{Host: target.Host(), CAFile: target.CAFile}), commands.WhoamiCommands(), commands.EventCommands(st),
		commands.ResourceCommands(st, pipeline),
		commands.NetworkCommands(&commands.Network{Apps: st, Networks: sched, Pipeline: pipeline}),
		commands.CronCommands(cronJobs), pluginCommands(triggers),
		commands.TokenCommands(tokens, store.ErrTokenExists), commands.LoginCommands(signinSvc),
		commands.BackupCommands(&backups{dataDir: dataDir, keyFile: KeyFile(dataDir, cfg.ConfigKeyFile), st: st, name: cfg.Name, version: cfg.Version, embedded: cfg.Registry == "", registry: target.Prefix}))
	dispatcher.SetAuditor(audit)
	dispatcher.SetMore(execPluginCommands(triggers))
	keys = local
	if dirKeys != nil {
		keys = dirKeys
	}

	// The HTTP API runs the same commands as SSH, behind the same
	// user-auth trigger, for an API token or a browser session; a request
	// that may change state and comes with the session cookie must carry
	// the session's CSRF token. The dashboard's pages at / run the same
	// commands again, for the browser's session.
	webCommands := &commands.UserAuth{Next: dispatcher, Triggers: triggers}
	dash := dashboard.New(dashboard.Options{Commands: webCommands, Sessions: signinSvc, Log: log})
	webSrv := web.New(web.Options{
		Commands:       webCommands,
		Authenticators: []web.Authenticator{web.Tokens{Tokens: tokens}, signinSvc},
		Mounts:         []web.Mount{{Prefix: "/auth/", Handler: signinSvc}, {Prefix: "/", Handler: dash}},
		Guard:          signinSvc.RequireCSRF,
		Refusals:       audit,
		Relayed:        contract.IsRelayClient,
		Log:            log,
	})
	// The same server for the routers of the other managers, through
	// their ports processes' relay.
	relay, err := listenRelay(ctx, cfg, dataDir, func(ctx context.Context) (string, error) {
		info, err := docker.Info(ctx)
		return info.Swarm.NodeAddr, err
	}, log)
	if err != nil {
		return err
	}
	relayBundle := ""
	if relay != nil {
		defer relay.ln.Close()
		relayBundle = relay.bundle
	}

	ssh, err := gitreceive.New(gitreceive.Options{
		Addr:        cfg.SSHAddr,
		HostKeyPath: filepath.Join(dataDir, "ssh_host_ed25519_key"),
		DataDir:     dataDir,
		Auth:        keys,
		Repos:       repos,
		Pushes:      &pushes{pipeline: pipeline, store: st, audit: audit, triggers: triggers},
		Commands:    &commands.UserAuth{Next: dispatcher, Triggers: triggers},
		Limits: gitreceive.Limits{
			MaxPushSize: cfg.MaxPushSize, MaxConnsPerAddr: cfg.SSHMaxConnsPerAddr,
			AuthTimeout: cfg.SSHAuthTimeout, IdleTimeout: cfg.SSHIdleTimeout,
		},
		Refusals:  audit,
		Log:       log.With("component", "ssh"),
		PushLocks: pushLocks,
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
		if err := startRouter(gctx, docker, sched, cfg, target, network, routerToken, certKeyText, relayBundle, log); err != nil {
			return err
		}
		close(routerReady)
		g.Go(func() error { return routes.Run(gctx) })
		if err := reconcile(gctx, st, pipeline, sched, open, repos, audit, log); err != nil {
			return err
		}
		// Renames a stop interrupted: finished once the router serves.
		if err := platform.FinishRenames(gctx, io.Discard); err != nil {
			log.Error("finish interrupted renames", "err", err)
		}
		// A data dir restored from a backup: the apps run again.
		if err := restoreRollouts(gctx, dataDir, embeddedPrefix, st, pipeline, sched, audit, log); err != nil {
			log.Error("roll out the restored apps", "err", err)
		}
		return nil
	})
	g.Go(func() error { return ssh.Run(gctx, ShutdownGrace) })
	g.Go(func() error { return serveWeb(gctx, docker, sched, cfg.Name, webSrv, log) })
	if relay != nil {
		g.Go(func() error { return serveRelay(gctx, docker, cfg.Name, relay, webSrv, log) })
	}
	g.Go(func() error { return triggers.Run(gctx) })
	g.Go(func() error { return sched.WatchKills(gctx, docker, audit.recordKill) })
	g.Go(func() error { return cronJobs.Run(gctx) })
	log.Info("paasd serving", "ssh", ssh.Addr().String(), "registry", target.Prefix, "registry_listen", reg.Addr(), "domain", cfg.Domain, "name", cfg.Name, "version", cfg.Version)
	return g.Wait()
}

// startRouter builds the router image from this very binary and runs it as
// the router's two Swarm services (scheduler.EnsureRouter): the ports
// process, which binds the HTTP and HTTPS ports on the host, and the router.
func startRouter(ctx context.Context, docker client.APIClient, sched *scheduler.Swarm, cfg Config, reg paas.ImageRegistry, network, token, certKey, relayBundle string, log *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	sum, err := fileDigest(exe)
	if err != nil {
		return err
	}
	ref := reg.Repository("router") + ":" + sum[:16]
	ports := []string{"--http-port", strconv.Itoa(cfg.HTTPPort), "--https-port", strconv.Itoa(cfg.HTTPSPort)}
	routerArgs := append([]string{"router", "--name", cfg.Name, "--domain", cfg.Domain, "--network", network, "--max-conns-per-addr", strconv.Itoa(cfg.RouterMaxConnsPerAddr)}, ports...)
	portsArgs := append([]string{"router-ports", "--name", cfg.Name}, ports...)
	var image string
	for attempt := 1; ; attempt++ {
		image, err = builder.BuildSelfImage(ctx, docker, exe, ref, routerArgs, &reg, io.Discard)
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
	err = sched.EnsureRouter(ctx, scheduler.RouterSpec{
		Image:         image,
		Binary:        builder.SelfBinaryPath,
		RouterArgs:    routerArgs,
		RouterEnv:     []string{"PAAS_ADMIN_TOKEN=" + token},
		CertKeySecret: certKey,
		PortsArgs:     portsArgs,
		RelaySecret:   relayBundle,

		NodeDockerSocket: cfg.NodeDockerSocket,
	})
	if err != nil {
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

type pruneFunc func(app string, keep []string) error

func (f pruneFunc) Prune(app string, keep []string) error { return f(app, keep) }

// appImages are the apps' images in the installation's registry.
type appImages struct {
	copier interface {
		Copy(ctx context.Context, img paas.Image, app, tag string) (paas.Image, error)
	}
	delete func(app string) error
}

func (i *appImages) DeleteApp(app string) error { return i.delete(app) }

func (i *appImages) Copy(ctx context.Context, img paas.Image, app, tag string) (paas.Image, error) {
	return i.copier.Copy(ctx, img, app, tag)
}

// repos keeps one bare repository per app under dir.
type repos struct {
	dir   string
	store *store.Store
	audit *auditLog
	// create makes an app for a push to a missing one (apps:create's rules).
	create func(id paas.Identity, name string, out io.Writer) (*paas.App, error)
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

// autocreate creates the app a push names, as Dokku does on a first push,
// unless an administrator turned that off (apps:set --global
// disable-autocreation true).
func (r *repos) autocreate(id paas.Identity, name string, out io.Writer) (*paas.App, error) {
	set, err := r.store.AppsSettings()
	if err != nil {
		return nil, err
	}
	if set.DisableAutocreation || paas.ValidateAppName(name) != nil {
		return nil, paas.ErrAppNotFound
	}
	app, err := r.create(id, name, out)
	if err != nil {
		return nil, err
	}
	r.audit.Record(&paas.Event{Actor: id.Name, Source: id.Source, App: name, Action: "apps:create", Result: commands.ResultOf(commands.ExitOK), Detail: "created by a push"})
	return app, nil
}

func (r *repos) Remove(app string) error {
	if err := paas.ValidateAppName(app); err != nil {
		return err
	}
	return os.RemoveAll(r.Path(app))
}

func (r *repos) RepoFor(_ context.Context, id paas.Identity, name string, write bool, out io.Writer) (string, error) {
	app, err := r.store.App(name)
	if errors.Is(err, paas.ErrAppNotFound) && write {
		app, err = r.autocreate(id, name, out)
	}
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
func (r *repos) UpdatedAt(app, branch string) (time.Time, error) {
	return gitreceive.BranchUpdatedAt(r.Path(app), branch)
}

// Rename moves an app's repository to the name to; a repository left there
// by no app is replaced. When old is gone and to is there, it moved
// already (a rename finished at start).
func (r *repos) Rename(old, to string) error {
	if err := paas.ValidateAppName(old); err != nil {
		return err
	}
	if err := paas.ValidateAppName(to); err != nil {
		return err
	}
	if _, err := os.Stat(r.Path(old)); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(r.Path(to)); err == nil {
			return nil
		}
	}
	if err := os.RemoveAll(r.Path(to)); err != nil {
		return err
	}
	return os.Rename(r.Path(old), r.Path(to))
}

// CopyRefs copies the branches and tags of from's repository into to's.
func (r *repos) CopyRefs(from, to string) error {
	if err := r.Create(to); err != nil {
		return err
	}
	return gitreceive.CopyRefs(context.Background(), r.Path(from), r.Path(to))
}

// OpenStore opens the store in dataDir with the config key in keyFile; with
// no keyFile, with DATA_DIR/config.key, created (random, 0600) on first
// start. A key file the operator names must exist.
func OpenStore(dataDir, keyFile string) (*store.Store, error) {
	if keyFile == "" {
		return store.OpenWithKeyFile(dataDir, filepath.Join(dataDir, store.KeyFileName), true)
	}
	return store.OpenWithKeyFile(dataDir, keyFile, false)
}

// KeyFile is the config key file that OpenStore reads for keyFile.
func KeyFile(dataDir, keyFile string) string {
	if keyFile == "" {
		return filepath.Join(dataDir, store.KeyFileName)
	}
	return keyFile
}
