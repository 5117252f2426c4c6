// Command paasd is the paas platform in one binary: `paasd serve` runs the
// control plane, `paasd router` the data plane. Invoked as git's pre-receive
// hook, it forwards a push to the running paasd.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-units"

	"paas/gitreceive"
	"paas/internal/daemon"
	"paas/internal/directory"
	"paas/internal/signin"
	"paas/internal/store"
	"paas/router"
)

var version = "dev"

const usage = `paasd: a git-push platform on Docker Swarm

Usage:
  paasd serve [flags]          run the control plane (SSH, git, builds, deploys, registry)
  paasd router [flags]         run the HTTP router (started by serve as a Swarm service)
  paasd router-ports [flags]   bind the router's ports on the host, hand them to the
                               routers and serve them a read-only Docker API (a Swarm
                               service started by serve)
  paasd router-health [flags]  check the router, or with --ports the ports process, of
                               this container (their services' health check)
  paasd rotate-key [flags]     re-encrypt the stopped installation's store under a
                               new config key, written to its key file
  paasd restore [flags]        restore a backup (ssh paas backup:export) into a new
                               data dir; the next paasd serve runs every app again
  paasd version                print the version

Run 'paasd COMMAND --help' for a command's flags. Every flag also reads
PAAS_<FLAG> from the environment, e.g. PAAS_DATA_DIR for --data-dir.
`

func main() {
	if filepath.Base(os.Args[0]) == gitreceive.HookName {
		os.Exit(gitreceive.RunHook(os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "router":
		return runRouter(args[1:], stderr)
	case "router-ports":
		return runRouterPorts(args[1:], stderr)
	case "router-health":
		return runRouterHealth(args[1:], stdout, stderr)
	case "env-exec":
		return envExec(args[1:], stderr)
	case "rotate-key":
		return rotateKey(args[1:], stdout, stderr)
	case "restore":
		return restoreBackup(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "paasd %s\n", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "paasd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// envFlags defines flags whose defaults come from PAAS_<FLAG> when set. An env
// value that does not parse is an error, never silently replaced by a default.
type envFlags struct {
	fs   *flag.FlagSet
	errs []string
}

func envName(name string) string {
	return "PAAS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (e *envFlags) String(p *string, name, def, help string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	e.fs.StringVar(p, name, def, help+" ("+envName(name)+")")
}

func (e *envFlags) Int(p *int, name string, def int, help string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q is not a number", envName(name), v))
		}
		def = n
	}
	e.fs.IntVar(p, name, def, help+" ("+envName(name)+")")
}

func (e *envFlags) Bool(p *bool, name string, def bool, help string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q is not true or false", envName(name), v))
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, help+" ("+envName(name)+")")
}

func (e *envFlags) Duration(p *time.Duration, name string, def time.Duration, help string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q is not a duration (e.g. 60s)", envName(name), v))
		}
		def = d
	}
	e.fs.DurationVar(p, name, def, help+" ("+envName(name)+")")
}

// Size defines a flag of a number of bytes: 1024, 64KB, 512k, 1GB, 1GiB (all
// powers of 1024).
func (e *envFlags) Size(p *int64, name string, def int64, help string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q is not a size (e.g. 64KB, 1GB)", envName(name), v))
		}
		def = n
	}
	*p = def
	e.fs.Var(byteSize{p}, name, help+" ("+envName(name)+")")
}

// byteSize is a flag.Value of a number of bytes.
type byteSize struct{ p *int64 }

func (b byteSize) String() string {
	if b.p == nil {
		return ""
	}
	return units.BytesSize(float64(*b.p))
}

func (b byteSize) Set(s string) error {
	n, err := units.RAMInBytes(s)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size (e.g. 64KB, 1GB)", s)
	}
	*b.p = n
	return nil
}

// limitFlags defines the limits on what one client may send or hold.
func limitFlags(f *envFlags, c *daemon.Config) {
	f.Size(&c.MaxPushSize, "max-push-size", gitreceive.DefaultMaxPushSize, "largest `size` of the pack one git push sends (64KB, 1GB...); a bigger push is refused and nothing of it stored (0: no limit)")
	f.Size(&c.MaxConfigValue, "max-config-value", daemon.DefaultMaxConfigValue, "largest `size` of one config value (0: no limit)")
	f.Size(&c.MaxConfigSize, "max-config-size", daemon.DefaultMaxConfigSize, "largest `size` of one app's config, KEY=VALUE summed (0: no limit)")
	f.String(&c.StorageRoot, "storage-root", "/var/lib/paas/storage", "the only host `directory` administrators' host-path mounts (storage:mount APP /host/path:/path) may lie inside")
	f.Int(&c.MaxScale, "max-scale", daemon.DefaultMaxScale, "most tasks ps:scale may give one process type (0: no limit)")
	f.Size(&c.BuildMemory, "build-memory", daemon.DefaultBuildMemory, "memory one build may use (each Dockerfile step, each buildpacks container), so a build cannot starve the node's apps (0: no limit)")
	f.String(&c.BuildCPUs, "build-cpus", "", "CPUs one build may use, e.g. 1.5 (empty: no limit)")
	f.Int(&c.SSHMaxConnsPerAddr, "ssh-max-conns-per-addr", gitreceive.DefaultMaxConnsPerAddr, "SSH connections one client address may hold open at once (0: no limit)")
	f.Int(&c.RouterMaxConnsPerAddr, "router-max-conns-per-addr", router.DefaultMaxConnsPerAddr, "HTTP(S) connections one client address may hold open at once on the router; one more gets a 429 and is closed (0: no limit; raise it behind a load balancer or NAT)")
	f.Duration(&c.SSHAuthTimeout, "ssh-auth-timeout", gitreceive.DefaultAuthTimeout, "an SSH connection that has not authenticated by then is closed (0: never)")
	f.Duration(&c.SSHIdleTimeout, "ssh-idle-timeout", gitreceive.DefaultIdleTimeout, "an SSH connection without an open session for this long is closed; a running command or push is never idle (0: never)")
}

// signinFlags defines the flags of the browser sign-in. The client secret
// is never a flag value, which ps would show.
func signinFlags(f *envFlags, c *daemon.SigninConfig) {
	f.String(&c.OIDCIssuer, "oidc-issuer", "", "OpenID Connect issuer URL of the company's sign-in (off when empty: directory passwords with --ldap-url, and ssh paas login)")
	f.String(&c.OIDCClientID, "oidc-client-id", "", "client ID of paas at the OpenID provider")
	f.String(&c.OIDCClientSecretFile, "oidc-client-secret-file", "", "file holding the client secret (or set PAAS_OIDC_CLIENT_SECRET)")
	f.String(&c.OIDCRedirectURL, "oidc-redirect-url", "", "redirect URL registered at the provider (default https://paas.DOMAIN/auth/callback)")
	f.String(&c.OIDCNameClaim, "oidc-name-claim", signin.DefaultNameClaim, "ID token claim holding the user name")
	f.String(&c.OIDCGroupsClaim, "oidc-groups-claim", signin.DefaultGroupsClaim, "ID token claim holding the user's groups")
	f.String(&c.OIDCAdminGroup, "oidc-admin-group", "", "group (as the groups claim names it) whose members are administrators (default: the cn of --ldap-admin-group)")
	f.String(&c.OIDCScopes, "oidc-scopes", strings.Join(signin.DefaultScopes, " "), "scopes asked of the provider, space-separated")
	f.String(&c.OIDCCAFile, "oidc-ca-file", "", "PEM CA certificates to verify the provider with (default: system roots)")
	f.Duration(&c.SessionTTL, "session-ttl", signin.DefaultSessionTTL, "how long a browser session lasts")
}

// ldapFlags defines the directory flags. The bind password is never a flag
// (it would show in ps): a file, or PAAS_LDAP_BIND_PASSWORD.
func ldapFlags(f *envFlags, c *daemon.LDAPConfig) {
	f.String(&c.URL, "ldap-url", "", "LDAP directory for users' keys, ldap://HOST:PORT or ldaps://HOST:PORT (off when empty)")
	f.String(&c.BindDN, "ldap-bind-dn", "", "DN of the service account to bind as")
	f.String(&c.BindPasswordFile, "ldap-bind-password-file", "", "file holding the service account's password (or set PAAS_LDAP_BIND_PASSWORD)")
	f.String(&c.BaseDN, "ldap-base-dn", "", "where users are searched, e.g. ou=people,dc=example,dc=com")
	f.String(&c.GroupBaseDN, "ldap-group-base-dn", "", "where groups are searched (default: --ldap-base-dn)")
	f.String(&c.AdminGroup, "ldap-admin-group", "", "DN of the group whose members are administrators")
	f.Bool(&c.StartTLS, "ldap-starttls", false, "upgrade an ldap:// connection with StartTLS")
	f.String(&c.CAFile, "ldap-ca-file", "", "PEM CA certificates to verify the directory with (default: system roots)")
	f.String(&c.UserFilter, "ldap-user-filter", directory.DefaultUserFilter, "filter of user entries, ANDed with the key match")
	f.String(&c.KeyAttribute, "ldap-key-attribute", directory.DefaultKeyAttribute, "attribute holding SSH public keys")
	f.String(&c.NameAttribute, "ldap-name-attribute", directory.DefaultNameAttribute, "attribute naming the user (sAMAccountName on Active Directory)")
	f.String(&c.GroupFilter, "ldap-group-filter", directory.DefaultGroupFilter, "filter finding a user's groups; {dn} and {name} are replaced, escaped; - for memberOf only")
	f.Duration(&c.CacheTTL, "ldap-cache-ttl", 60*time.Second, "how long a key the directory confirmed is trusted without asking again, also through an outage")
	f.Duration(&c.Timeout, "ldap-timeout", directory.DefaultTimeout, "timeout of every dial and request to the directory")
}

func (e *envFlags) parse(args []string, stderr io.Writer) bool {
	e.fs.SetOutput(stderr)
	if err := e.fs.Parse(args); err != nil {
		return false
	}
	if len(e.errs) > 0 {
		fmt.Fprintf(stderr, "paasd: %s\n", strings.Join(e.errs, "; "))
		return false
	}
	if e.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "paasd: unexpected argument %q\n", e.fs.Arg(0))
		return false
	}
	return true
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func serve(args []string, stderr io.Writer) int {
	var cfg daemon.Config
	f := &envFlags{fs: flag.NewFlagSet("paasd serve", flag.ContinueOnError)}
	f.String(&cfg.DataDir, "data-dir", "/var/lib/paas", "state, repositories, registry and host key")
	configKeyFlag(f, &cfg.ConfigKeyFile)
	f.String(&cfg.SSHAddr, "ssh-addr", ":2222", "SSH listen address")
	f.Int(&cfg.HTTPPort, "http-port", 80, "router HTTP port (bound on every manager by the router's ports process)")
	f.Int(&cfg.HTTPSPort, "https-port", 443, "router HTTPS port")
	f.String(&cfg.Domain, "domain", "paas.localhost", "apps are served at APP.DOMAIN")
	f.String(&cfg.AdminKeys, "admin-keys", "/etc/paas/admin_keys", "authorized_keys file of administrators (re-read on change)")
	f.String(&cfg.Name, "name", "paas", "prefix of every Swarm object of this installation")
	f.String(&cfg.RegistryAddr, "registry-addr", "127.0.0.1:5000", "listen address of the embedded registry (TLS, login in DATA_DIR/registry-auth)")
	f.String(&cfg.RegistryAdvertiseAddr, "registry-advertise-addr", "", "HOST[:PORT] every node pulls the embedded registry's images from (default: --registry-addr)")
	f.String(&cfg.Registry, "registry", "", "HOST[:PORT][/PATH] of a registry elsewhere to use instead of the embedded one (images at REGISTRY/APP)")
	f.String(&cfg.RegistryUser, "registry-user", "", "user of --registry")
	f.String(&cfg.RegistryPasswordFile, "registry-password-file", "", "file holding the password (or token) of --registry-user")
	f.String(&cfg.RegistryCAFile, "registry-ca-file", "", "PEM of the CA of --registry when the system's roots do not cover it")
	f.String(&cfg.DockerCertsDir, "docker-certs-dir", daemon.DefaultDockerCertsDir, "where the local Docker daemon looks for registry CAs (HOST:PORT/ca.crt); empty: write none")
	f.String(&cfg.PluginsDir, "plugins-dir", "", "directory of executable plugins (default DATA_DIR/plugins)")
	f.String(&cfg.NodeDockerSocket, "node-docker-socket", "", "the Docker socket's path on every manager, for the router's ports process (default /var/run/docker.sock; Swarm templates such as {{.Node.Hostname}} allowed)")
	f.String(&cfg.ControlAddr, "control-addr", "", "HOST:PORT where the routers of the other managers reach the API and dashboard, through their ports process's relay (TLS, only the relay's certificate gets in); default: this node's Swarm address, port 7443; off: paas.DOMAIN answers on this node only")
	f.Int(&cfg.KeepReleases, "keep-releases", 10, "releases whose images each app keeps in the registry (how far rollback reaches)")
	f.String(&cfg.PostgresImage, "postgres-image", "", "image of Postgres databases (default paas-postgres:15, built by scripts/postgres/build.sh)")
	limitFlags(f, &cfg)
	ldapFlags(f, &cfg.LDAP)
	signinFlags(f, &cfg.Signin)
	f.String(&cfg.ACMEDirectory, "acme-directory", "", "ACME directory URL for letsencrypt:enable (default Let's Encrypt's)")
	f.String(&cfg.ACMECAFile, "acme-ca-file", "", "PEM file of extra roots trusted for the ACME server's HTTPS")
	f.String(&cfg.ACMEEmail, "acme-email", "", "contact email of the ACME account")
	f.Bool(&cfg.CronSeconds, "cron-seconds", false, "allow a leading seconds field in app.json cron schedules (for tests)")
	f.Int(&cfg.AppNetworkBatch, "app-network-batch", daemon.DefaultAppNetworkBatch, "how many app networks the router is given at a time (each app has one of its own; the router is replaced each time it gets more)")
	f.Duration(&cfg.ACMERenewBefore, "acme-renew-before", 30*24*time.Hour, "renew an ACME certificate this long before it expires")
	if !f.parse(args, stderr) {
		return 2
	}
	cfg.LDAP.BindPassword = os.Getenv("PAAS_LDAP_BIND_PASSWORD")
	os.Unsetenv("PAAS_LDAP_BIND_PASSWORD") // not passed on to git, builds or plugins
	cfg.Signin.OIDCClientSecret = os.Getenv("PAAS_OIDC_CLIENT_SECRET")
	os.Unsetenv("PAAS_OIDC_CLIENT_SECRET")
	if cfg.PluginsDir == "" {
		cfg.PluginsDir = filepath.Join(cfg.DataDir, "plugins")
	}
	cfg.Version = version
	log := newLogger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg, log); err != nil {
		log.Error("paasd stopped", "err", err)
		return 1
	}
	return 0
}

// configKeyFlag defines --config-key-file. The key itself is never a flag
// (it would show in ps).
func configKeyFlag(f *envFlags, p *string) {
	f.String(p, "config-key-file", "", "`file` holding the key (base64 of 32 random bytes, mode 0600) that config values, certificate keys and every other value in the store are encrypted with (default DATA_DIR/config.key, created on first start)")
}

// rotateKey re-encrypts a stopped installation's store under a new key.
// paasd holds the store file while it runs, so this waits for it a few
// seconds, then says to stop it.
func rotateKey(args []string, stdout, stderr io.Writer) int {
	var dataDir, keyFile string
	f := &envFlags{fs: flag.NewFlagSet("paasd rotate-key", flag.ContinueOnError)}
	f.String(&dataDir, "data-dir", "/var/lib/paas", "the installation's data dir")
	configKeyFlag(f, &keyFile)
	if !f.parse(args, stderr) {
		return 2
	}
	st, err := daemon.OpenStore(dataDir, keyFile)
	if errors.Is(err, store.ErrInUse) {
		fmt.Fprintf(stderr, "paasd: the store in %s is in use: stop paasd serve first (apps keep serving meanwhile)\n", dataDir)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "paasd: %v\n", err)
		return 1
	}
	defer st.Close()
	path := daemon.KeyFile(dataDir, keyFile)
	n, err := st.RotateKeyFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "paasd: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "-----> Re-encrypted %d values under a new config key, now in %s\n", n, path)
	return 0
}

// restoreBackup puts a backup (backup:export) into a new data dir, with the
// config key saved apart from it, checking that the key opens the store
// before anything is in place.
func restoreBackup(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var dataDir, keyFile, from string
	f := &envFlags{fs: flag.NewFlagSet("paasd restore", flag.ContinueOnError)}
	f.String(&dataDir, "data-dir", "/var/lib/paas", "the new installation's data dir: missing, or empty but for the config key")
	configKeyFlag(f, &keyFile)
	f.String(&from, "from", "", "the backup `file` that `ssh paas backup:export` wrote; - for standard input (required)")
	if !f.parse(args, stderr) {
		return 2
	}
	if from == "" {
		fmt.Fprintln(stderr, "paasd: --from is required: paasd restore --data-dir DIR --from paas-backup.tar")
		return 2
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "paasd: %v\n", err)
		return 1
	}
	in := stdin
	if from != "-" {
		file, err := os.Open(from)
		if err != nil {
			fmt.Fprintf(stderr, "paasd: %v\n", err)
			return 1
		}
		defer file.Close()
		in = file
	}
	m, sum, err := daemon.Restore(in, dataDir, keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "paasd: restore: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "-----> Restored the backup of %s made %s by paasd %s: %d apps, %d files, %.1f MB, in %s\n",
		m.Installation, m.CreatedAt.Format(time.RFC3339), m.Version, m.Apps, sum.Files, float64(sum.Bytes)/1e6, dataDir)
	fmt.Fprintf(stdout, "       Start paasd serve with --name %s and the same --domain: it runs every app's current release again\n", m.Installation)
	if !m.Images {
		fmt.Fprintln(stdout, "       The backup holds no images: an app whose image the registry lacks is built again with ssh paas ps:rebuild APP")
	}
	return 0
}
