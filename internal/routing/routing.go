// Package routing is the control plane's side of the router: it keeps each
// app's domains, certificates, ports and limits in the store, publishes them
// to the routers as Swarm config objects (contract.AppConfig,
// contract.GlobalConfig), and obtains and renews ACME certificates.
package routing

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/internal/paas"
	"paas/router/contract"
)

// Docker is the part of the Docker API the publisher uses.
type Docker interface {
	ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error)
	ConfigCreate(ctx context.Context, config swarm.ConfigSpec) (swarm.ConfigCreateResponse, error)
	ConfigRemove(ctx context.Context, id string) error
}

var _ Docker = (*client.Client)(nil)

// Store is the state routing reads and changes.
type Store interface {
	Apps() ([]*paas.App, error)
	Routing(app string) (*paas.Routing, error)
	AllRouting() (map[string]*paas.Routing, error)
	UpdateRouting(app string, fn func(*paas.Routing) error) (*paas.Routing, error)
	DeleteRouting(app string) error
	GlobalDomain() (string, error)
	SetGlobalDomain(domain string) error
	GlobalDomains() ([]string, error)
}

// Options configure a Service.
type Options struct {
	Installation string // the --name prefix
	Domain       string // the --domain flag; domains:set-global overrides it
	HTTPPort     int    // the router's HTTP port on this host (ACME challenges are checked through it)
	HTTPSPort    int
	DataDir      string // the ACME account key lives under DataDir/acme
	// CertKey seals certificates' private keys in the route configs
	// (contract.SealCertKey); the routers get it as a Swarm secret. Nil:
	// keys go in plain.
	CertKey []byte
	ACME    ACMEOptions
	// Refresh, when set, asks this host's router to read its routes now
	// (its control endpoint) after a change is published; routers that are
	// not asked see it at their next poll, within a second.
	Refresh func(ctx context.Context) error
	// ControlCert, when set, routes paas.D for every global domain D to
	// the control plane's HTTP server, with the certificate it returns for
	// those names (paasd's API and dashboard).
	ControlCert func(hosts []string) (contract.CertPEM, error)
	Log         *slog.Logger
}

// ACMEOptions configure the ACME client.
type ACMEOptions struct {
	DirectoryURL string         // default: Let's Encrypt's production directory
	Roots        *x509.CertPool // trusted roots for the ACME server's HTTPS; nil: the system's
	Email        string         // account contact; optional
	RenewBefore  time.Duration  // renew this long before expiry; default 30 days
	CheckEvery   time.Duration  // how often expiry is checked; default 1 hour
}

// Service publishes route configuration and manages ACME certificates.
type Service struct {
	docker Docker
	store  Store
	opts   Options
	log    *slog.Logger

	mu         sync.Mutex        // serializes publishing
	challenges map[string]string // ACME token -> key authorization, being validated
	acmeMu     sync.Mutex        // one ACME issuance at a time
}

// New returns a Service.
func New(docker Docker, store Store, opts Options) *Service {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.ACME.DirectoryURL == "" {
		opts.ACME.DirectoryURL = LetsEncryptURL
	}
	if opts.ACME.RenewBefore <= 0 {
		opts.ACME.RenewBefore = 30 * 24 * time.Hour
	}
	if opts.ACME.CheckEvery <= 0 {
		opts.ACME.CheckEvery = time.Hour
	}
	return &Service{docker: docker, store: store, opts: opts, log: opts.Log.With("component", "routing"), challenges: map[string]string{}}
}

// Domain returns the global domain: domains:set-global's, else --domain.
func (s *Service) Domain() string {
	if d, err := s.store.GlobalDomain(); err == nil && d != "" {
		return d
	}
	return paas.CanonicalDomain(s.opts.Domain)
}

// Domains returns every global domain, Domain's first: domains:set-global's
// and domains:add-global's, else --domain.
func (s *Service) Domains() []string {
	if ds, err := s.store.GlobalDomains(); err == nil && len(ds) > 0 {
		return ds
	}
	return []string{s.Domain()}
}

// ControlHosts are the names the control plane is served at: paas.D for
// every global domain D.
func (s *Service) ControlHosts() []string {
	var hosts []string
	for _, d := range s.Domains() {
		hosts = append(hosts, paas.ControlAppName+"."+d)
	}
	return hosts
}

// DefaultHost is APP.DOMAIN.
func (s *Service) DefaultHost(app string) string { return app + "." + s.Domain() }

// HTTPSPort is the router's HTTPS port.
func (s *Service) HTTPSPort() int { return s.opts.HTTPSPort }

// HTTPPort is the router's HTTP port.
func (s *Service) HTTPPort() int { return s.opts.HTTPPort }

// appConfig is what the router is told about app; nil when nothing beyond
// the default.
func appConfig(app string, r *paas.Routing, certKey []byte) (*contract.AppConfig, error) {
	c := &contract.AppConfig{App: app, Domains: slices.Clone(r.Domains), NoVhost: r.DomainsDisabled, MaxBodyBytes: r.MaxBodyBytes, ReadTimeoutMS: r.ReadTimeout.Milliseconds()}
	for _, p := range r.Ports {
		if p.Scheme == "http" || c.Port == 0 {
			c.Port = p.ContainerPort
		}
	}
	for _, cert := range []*paas.Cert{r.Cert, r.ACMECert} {
		if cert != nil {
			key := cert.KeyPEM
			if certKey != nil {
				var err error
				if key, err = contract.SealCertKey(certKey, key); err != nil {
					return nil, fmt.Errorf("seal the certificate key of %s: %w", app, err)
				}
			}
			c.Certs = append(c.Certs, contract.CertPEM{Cert: cert.CertPEM, Key: key})
		}
	}
	if len(c.Domains) == 0 && c.Port == 0 && len(c.Certs) == 0 && c.MaxBodyBytes == 0 && c.ReadTimeoutMS == 0 && !c.NoVhost {
		return nil, nil
	}
	return c, nil
}

// Publish hands the app's current routing settings to the routers. A change
// is served within the routers' poll interval (a second).
func (s *Service) Publish(ctx context.Context, app string) error {
	r, err := s.store.Routing(app)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := appConfig(app, r, s.opts.CertKey)
	if err != nil {
		return err
	}
	if c == nil {
		return s.write(ctx, contract.RoleAppConfig, app, nil)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.write(ctx, contract.RoleAppConfig, app, data)
}

// PublishGlobal hands the global domain and the pending ACME challenges to
// the routers.
func (s *Service) PublishGlobal(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publishGlobal(ctx)
}

func (s *Service) publishGlobal(ctx context.Context) error {
	ds, err := s.store.GlobalDomains()
	if err != nil {
		return err
	}
	var g contract.GlobalConfig
	if len(ds) > 0 {
		g.Domain, g.MoreDomains = ds[0], ds[1:]
	}
	if len(s.challenges) > 0 {
		g.Challenges = maps.Clone(s.challenges)
	}
	if s.opts.ControlCert != nil {
		hosts := s.ControlHosts()
		cert, err := s.opts.ControlCert(hosts)
		if err != nil {
			return fmt.Errorf("control plane certificate: %w", err)
		}
		if s.opts.CertKey != nil {
			if cert.Key, err = contract.SealCertKey(s.opts.CertKey, cert.Key); err != nil {
				return fmt.Errorf("seal the control plane certificate key: %w", err)
			}
		}
		g.Control = &contract.ControlConfig{Hosts: hosts, Certs: []contract.CertPEM{cert}}
	}
	if g.Domain == "" && len(g.MoreDomains) == 0 && len(g.Challenges) == 0 && g.Control == nil {
		return s.write(ctx, contract.RoleGlobalConfig, "", nil)
	}
	data, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return s.write(ctx, contract.RoleGlobalConfig, "", data)
}

// Sync publishes every app's settings and the global ones, and removes the
// configs of apps that no longer exist: run at start, so that a control
// plane restored from a backup or upgraded brings the routers in line.
func (s *Service) Sync(ctx context.Context) error {
	all, err := s.store.AllRouting()
	if err != nil {
		return err
	}
	apps, err := s.store.Apps()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, a := range apps {
		known[a.Name] = true
	}
	var errs []error
	for app := range all {
		if !known[app] {
			errs = append(errs, s.Forget(ctx, app))
			continue
		}
		errs = append(errs, s.Publish(ctx, app))
	}
	existing, err := s.list(ctx, contract.RoleAppConfig)
	if err != nil {
		return err
	}
	for _, c := range existing {
		if app := c.Spec.Labels[paas.LabelApp]; all[app] == nil || !known[app] {
			errs = append(errs, s.remove(ctx, c))
		}
	}
	errs = append(errs, s.PublishGlobal(ctx))
	return errors.Join(errs...)
}

// Forget removes everything routing keeps about app (apps:destroy).
func (s *Service) Forget(ctx context.Context, app string) error {
	if err := s.store.DeleteRouting(app); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(ctx, contract.RoleAppConfig, app, nil)
}

// write makes data the one config object of (role, app): created under a
// name derived from its content (nothing to do when it exists), then the
// older ones removed; the routers take the newest, so there is no moment
// without one. nil data removes them all.
func (s *Service) write(ctx context.Context, role, app string, data []byte) error {
	existing, err := s.list(ctx, role)
	if err != nil {
		return err
	}
	name := ""
	if data != nil {
		name = contract.ConfigName(s.opts.Installation, role, app, data)
	}
	found := false
	var stale []swarm.Config
	for _, c := range existing {
		if c.Spec.Labels[paas.LabelApp] != app {
			continue
		}
		if c.Spec.Name == name {
			found = true
			continue
		}
		stale = append(stale, c)
	}
	if data != nil && !found {
		_, err := s.docker.ConfigCreate(ctx, swarm.ConfigSpec{
			Annotations: swarm.Annotations{Name: name, Labels: contract.ConfigLabels(s.opts.Installation, role, app)},
			Data:        data,
		})
		if err != nil {
			return fmt.Errorf("publish route config of %s: %w", cmpApp(app), err)
		}
	}
	var errs []error
	for _, c := range stale {
		errs = append(errs, s.remove(ctx, c))
	}
	if (data != nil && !found) || len(stale) > 0 {
		s.refresh(ctx)
	}
	return errors.Join(errs...)
}

// refresh asks the local router to apply a change now; best effort.
func (s *Service) refresh(ctx context.Context) {
	if s.opts.Refresh == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.opts.Refresh(ctx); err != nil {
		s.log.Debug("router refresh", "err", err)
	}
}

func cmpApp(app string) string {
	if app == "" {
		return "the installation"
	}
	return app
}

func (s *Service) list(ctx context.Context, role string) ([]swarm.Config, error) {
	cfgs, err := s.docker.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.opts.Installation),
		filters.Arg("label", paas.LabelRole+"="+role),
	)})
	if err != nil {
		return nil, fmt.Errorf("list route configs: %w", err)
	}
	return cfgs, nil
}

func (s *Service) remove(ctx context.Context, c swarm.Config) error {
	if err := s.docker.ConfigRemove(ctx, c.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove route config %s: %w", c.Spec.Name, err)
	}
	return nil
}
