package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"paas/internal/paas"
	"paas/internal/registry"
)

// DefaultDockerCertsDir is where the Docker daemon looks for the CA of a
// registry (HOST:PORT/ca.crt).
const DefaultDockerCertsDir = "/etc/docker/certs.d"

// Files of the embedded registry under the data dir.
const (
	registryStorageDir = "registry"      // Distribution's storage
	registryTLSDir     = "registry-tls"  // ca.crt, ca.key, server.crt, server.key
	registryAuthDir    = "registry-auth" // password, htpasswd
)

// validateRegistry checks the registry flags: the embedded registry's
// addresses, or a registry elsewhere with its login.
func (c *Config) validateRegistry() error {
	if c.Registry != "" {
		if c.RegistryAdvertiseAddr != "" {
			return errors.New("--registry-advertise-addr is for the embedded registry, not with --registry")
		}
		if _, err := externalPrefix(c.Registry); err != nil {
			return err
		}
		if (c.RegistryUser == "") != (c.RegistryPasswordFile == "") {
			return errors.New("--registry-user and --registry-password-file go together")
		}
		return nil
	}
	if c.RegistryUser != "" || c.RegistryPasswordFile != "" || c.RegistryCAFile != "" {
		return errors.New("--registry-user, --registry-password-file and --registry-ca-file are for a registry elsewhere (--registry)")
	}
	if _, _, err := net.SplitHostPort(c.RegistryAddr); err != nil {
		return fmt.Errorf("--registry-addr %q: %w", c.RegistryAddr, err)
	}
	_, err := c.registryAdvertise()
	return err
}

// registryAdvertise is the HOST:PORT every node pulls from: the
// --registry-advertise-addr (its port defaulting to --registry-addr's), or
// --registry-addr itself.
func (c *Config) registryAdvertise() (string, error) {
	host, port, _ := net.SplitHostPort(c.RegistryAddr)
	adv := c.RegistryAdvertiseAddr
	if adv == "" {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return "", fmt.Errorf("--registry-addr %q listens on every address: set --registry-advertise-addr to the one the nodes reach", c.RegistryAddr)
		}
		adv = host
	}
	if h, p, err := net.SplitHostPort(adv); err == nil {
		host, port = h, p
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(adv, "["), "]")
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) || strings.ContainsAny(host, "/ ") {
		return "", fmt.Errorf("--registry-advertise-addr %q: not an address the nodes can reach", c.RegistryAdvertiseAddr)
	}
	hostport := net.JoinHostPort(host, port)
	if _, err := name.NewRegistry(hostport, name.StrictValidation); err != nil {
		return "", fmt.Errorf("--registry-advertise-addr %q: %w", c.RegistryAdvertiseAddr, err)
	}
	return hostport, nil
}

// externalPrefix checks --registry (HOST[:PORT][/PATH], https:// allowed)
// and returns it without the scheme.
func externalPrefix(s string) (string, error) {
	if strings.HasPrefix(s, "http://") {
		return "", fmt.Errorf("--registry %q: plain HTTP is not supported; for a registry with a private CA, use https and --registry-ca-file", s)
	}
	p := strings.TrimSuffix(strings.TrimPrefix(s, "https://"), "/")
	// Strict: the host is spelt out (a dot, a port or localhost), never
	// Docker Hub by default.
	if _, err := name.NewRepository(p+"/app", name.StrictValidation); err != nil {
		return "", fmt.Errorf("--registry %q: want HOST[:PORT][/PATH] of an OCI registry, e.g. ghcr.io/acme/paas", s)
	}
	return p, nil
}

// imageRegistry is the installation's registry: the embedded one, which it
// serves, or one elsewhere. Apps' images are deleted through it.
type imageRegistry struct {
	target   paas.ImageRegistry
	embedded *registry.Registry // nil for a registry elsewhere
	remote   *registry.Remote
	server   *http.Server
	listener net.Listener
	log      *slog.Logger
}

// openRegistry sets up the installation's registry from cfg: for the
// embedded one, its CA and certificate (naming the advertise address and
// 127.0.0.1), its login and its listener. This process and the local Docker
// daemon then trust the registry's CA.
func openRegistry(cfg Config, dataDir string, log *slog.Logger) (*imageRegistry, error) {
	r := &imageRegistry{log: log.With("component", "registry")}
	var caPEM []byte
	if cfg.Registry != "" {
		prefix, err := externalPrefix(cfg.Registry)
		if err != nil {
			return nil, err
		}
		r.target = paas.ImageRegistry{Prefix: prefix, Username: cfg.RegistryUser, CAFile: cfg.RegistryCAFile}
		if cfg.RegistryPasswordFile != "" {
			b, err := os.ReadFile(cfg.RegistryPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("--registry-password-file: %w", err)
			}
			r.target.Password = strings.TrimSpace(string(b))
		}
		if cfg.RegistryCAFile != "" {
			if caPEM, err = os.ReadFile(cfg.RegistryCAFile); err != nil {
				return nil, fmt.Errorf("--registry-ca-file: %w", err)
			}
		}
		r.remote = &registry.Remote{Auth: authn.FromConfig(authn.AuthConfig{Username: r.target.Username, Password: r.target.Password})}
	} else {
		advertise, err := cfg.registryAdvertise()
		if err != nil {
			return nil, err
		}
		advHost, _, _ := net.SplitHostPort(advertise)
		certs, err := registry.LoadCertificates(filepath.Join(dataDir, registryTLSDir), []string{advHost, "127.0.0.1"})
		if err != nil {
			return nil, err
		}
		login, err := registry.LoadLogin(filepath.Join(dataDir, registryAuthDir))
		if err != nil {
			return nil, err
		}
		storage := filepath.Join(dataDir, registryStorageDir)
		if r.embedded, err = registry.New(registry.Options{Dir: storage, HTPasswd: login.HTPasswd(), Log: log}); err != nil {
			return nil, err
		}
		// The images of the registry paasd embedded before Distribution.
		if _, err := r.embedded.ImportLegacy(context.Background(), storage); err != nil {
			r.log.Warn("cannot import the old registry's images; they stay for the next start", "err", err)
		}
		caPEM = certs.CA
		r.target = paas.ImageRegistry{Prefix: advertise + "/" + cfg.Name, Username: login.User, Password: login.Password, CAFile: certs.CAFile()}
		r.server = &http.Server{Handler: r.embedded, ReadHeaderTimeout: 30 * time.Second, TLSConfig: certs.TLSConfig(), ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)}
		if r.listener, err = net.Listen("tcp", cfg.RegistryAddr); err != nil {
			r.embedded.Close()
			return nil, fmt.Errorf("listen registry: %w", err)
		}
	}
	if caPEM != nil {
		if err := registry.TrustCA(caPEM); err != nil {
			r.close()
			return nil, err
		}
		if err := registry.WriteDockerCA(cfg.DockerCertsDir, r.target.Host(), caPEM); err != nil {
			r.close()
			return nil, fmt.Errorf("%w (--docker-certs-dir: where the Docker daemon reads registry CAs; empty to write none)", err)
		}
	}
	return r, nil
}

// Addr is where the embedded registry listens ("" for one elsewhere).
func (r *imageRegistry) Addr() string {
	if r.listener == nil {
		return ""
	}
	return r.listener.Addr().String()
}

// Run serves the embedded registry and collects its garbage until ctx ends,
// then lets requests finish for up to grace.
func (r *imageRegistry) Run(ctx context.Context, grace time.Duration) error {
	if r.embedded == nil {
		return nil
	}
	errc := make(chan error, 1)
	go func() { errc <- r.server.ServeTLS(r.listener, "", "") }()
	go func() { _ = r.embedded.Run(ctx) }()
	select {
	case err := <-errc:
		return fmt.Errorf("registry: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return r.server.Shutdown(sctx)
}

func (r *imageRegistry) close() {
	if r.listener != nil {
		r.listener.Close()
	}
	if r.embedded != nil {
		r.embedded.Close()
	}
}

// registryTimeout bounds a prune or a deletion.
const registryTimeout = 2 * time.Minute

// Prune keeps the images keep (digests) of app and deletes the others.
func (r *imageRegistry) Prune(app string, keep []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	var err error
	if r.embedded != nil {
		_, err = r.embedded.Prune(ctx, r.path(app), keep)
	} else {
		_, err = r.remote.Prune(ctx, r.target.Repository(app), keep)
	}
	return err
}

// DeleteApp deletes app's repository.
func (r *imageRegistry) DeleteApp(app string) error {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if r.embedded != nil {
		return r.embedded.DeleteRepository(ctx, r.path(app))
	}
	return r.remote.DeleteRepository(ctx, r.target.Repository(app))
}

// path is app's repository without the registry's host.
func (r *imageRegistry) path(app string) string {
	return strings.TrimPrefix(r.target.Repository(app), r.target.Host()+"/")
}
