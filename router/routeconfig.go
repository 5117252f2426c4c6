package router

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"paas/router/contract"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// Edge is what an app's route configuration adds to a Route: wildcard names,
// certificates and limits. An Edge is built once per config object and never
// changed; Key tells two apart.
type Edge struct {
	Key          string
	Wildcards    []string // "*.preview.example.com", canonical
	Certs        []*tls.Certificate
	MaxBodyBytes int64
	ReadTimeout  time.Duration
}

// Global is the compiled contract.GlobalConfig.
type Global struct {
	Key         string
	Domain      string
	MoreDomains []string
	Challenges  map[string]string
	// ControlHosts are served by the control plane (contract.ControlConfig),
	// with ControlCerts.
	ControlHosts map[string]bool
	ControlCerts []*tls.Certificate
}

// isControl reports whether host (canonical) is the control plane's.
func (g *Global) isControl(host string) bool {
	return g != nil && g.ControlHosts[host]
}

func edgeKey(e *Edge) string {
	if e == nil {
		return ""
	}
	return e.Key
}

func globalKey(g *Global) string {
	if g == nil {
		return ""
	}
	return g.Key
}

// ConfigAPI is the part of the Docker client a ConfigSource uses.
type ConfigAPI interface {
	ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error)
}

// ConfigSource adds the route configuration in the installation's Swarm
// config objects (custom domains, certificates, ports, limits, the global
// domain and ACME challenges) to the table of another Source. A read is one
// more API call; while Watch runs, configs are read again only after a
// config event or a resync. A config object is parsed once, when it first
// appears.
type ConfigSource struct {
	inner Source
	api   ConfigAPI
	opts  Options
	log   *slog.Logger

	mu       sync.Mutex
	parsed   map[string]parsedConfig // by config ID; IDs are never reused
	watching bool                    // inner's Watch runs with this source's hook
	stale    bool                    // while watching: configs changed since read
	apps     map[string]parsedConfig // what the last read found
	global   *Global
}

type parsedConfig struct {
	app    *contract.AppConfig
	edge   *Edge
	global *Global
	err    error
}

var _ Source = (*ConfigSource)(nil)

// NewConfigSource returns a Source that reads inner's table and adds the
// route configuration read through api. It uses Installation, Domain and Log
// from opts.
func NewConfigSource(inner Source, api ConfigAPI, opts Options) *ConfigSource {
	opts = opts.withDefaults()
	return &ConfigSource{inner: inner, api: api, opts: opts, log: opts.Log.With("component", "router"), parsed: map[string]parsedConfig{}}
}

// Routes returns inner's table with the route configuration applied.
func (s *ConfigSource) Routes(ctx context.Context) (Table, error) {
	t, err := s.inner.Routes(ctx)
	if err != nil {
		return Table{}, err
	}
	if s.opts.Installation == "" {
		return Table{}, errors.New("list route configs: no installation name")
	}
	s.mu.Lock()
	read := !s.watching || s.stale || s.apps == nil
	s.stale = false
	apps, global := s.apps, s.global
	s.mu.Unlock()
	if read {
		cfgs, err := s.api.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(
			filters.Arg("label", paas.LabelInstallation+"="+s.opts.Installation),
		)})
		if err != nil {
			s.markStale()
			return Table{}, fmt.Errorf("list route configs: %w", err)
		}
		apps, global = s.compile(cfgs)
		s.mu.Lock()
		s.apps, s.global = apps, global
		s.mu.Unlock()
	}
	return s.merge(t, apps, global), nil
}

// configWatcher is a Source that can tell a ConfigSource about config
// events (DockerSource).
type configWatcher interface {
	WatchedSource
	watch(ctx context.Context, changed, onConfig func()) error
}

// Watch follows inner's changes and the config events; inner must be a
// DockerSource (or another source that reports config events).
func (s *ConfigSource) Watch(ctx context.Context, changed func()) error {
	cw, ok := s.inner.(configWatcher)
	if !ok {
		return errNoEvents
	}
	s.mu.Lock()
	s.watching, s.stale = true, true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watching = false
		s.mu.Unlock()
	}()
	return cw.watch(ctx, changed, s.markStale)
}

// Invalidate makes the next Routes read everything again.
func (s *ConfigSource) Invalidate() {
	s.markStale()
	if ws, ok := s.inner.(WatchedSource); ok {
		ws.Invalidate()
	}
}

// Suspect passes on to inner that connections to these backends failed.
func (s *ConfigSource) Suspect(addrs []string) bool {
	if sus, ok := s.inner.(suspecter); ok {
		return sus.Suspect(addrs)
	}
	return false
}

func (s *ConfigSource) markStale() {
	s.mu.Lock()
	s.stale = true
	s.mu.Unlock()
}

// compile picks the newest config object per app (an object is replaced by
// creating the new one before removing the old one) and parses it.
func (s *ConfigSource) compile(cfgs []swarm.Config) (map[string]parsedConfig, *Global) {
	slices.SortFunc(cfgs, func(a, b swarm.Config) int {
		return cmp.Or(cmp.Compare(a.Version.Index, b.Version.Index), a.CreatedAt.Compare(b.CreatedAt))
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(cfgs))
	apps := map[string]parsedConfig{}
	var global *Global
	for _, c := range cfgs {
		l := c.Spec.Labels
		if l[paas.LabelInstallation] != s.opts.Installation {
			continue
		}
		role := l[paas.LabelRole]
		if role != contract.RoleAppConfig && role != contract.RoleGlobalConfig {
			continue
		}
		seen[c.ID] = true
		p, ok := s.parsed[c.ID]
		if !ok {
			p = parseConfig(c.ID, role, c.Spec.Data, s.opts.CertKey)
			if p.err != nil {
				s.log.Warn("route config ignored", "config", c.Spec.Name, "err", p.err)
			}
			s.parsed[c.ID] = p
		}
		if p.err != nil {
			continue
		}
		if role == contract.RoleGlobalConfig {
			global = p.global
			continue
		}
		if p.app.App != l[paas.LabelApp] {
			continue
		}
		apps[p.app.App] = p // newest wins
	}
	for id := range s.parsed {
		if !seen[id] {
			delete(s.parsed, id)
		}
	}
	return apps, global
}

func parseConfig(id, role string, data []byte, certKey []byte) parsedConfig {
	if role == contract.RoleGlobalConfig {
		var g contract.GlobalConfig
		if err := json.Unmarshal(data, &g); err != nil {
			return parsedConfig{err: fmt.Errorf("decode global config: %w", err)}
		}
		more := make([]string, 0, len(g.MoreDomains))
		for _, d := range g.MoreDomains {
			if d = canonicalHost(d); d != "" {
				more = append(more, d)
			}
		}
		gl := &Global{Key: id, Domain: canonicalHost(g.Domain), MoreDomains: more, Challenges: g.Challenges}
		if c := g.Control; c != nil {
			gl.ControlHosts = map[string]bool{}
			for _, h := range c.Hosts {
				if h = canonicalHost(h); h != "" {
					gl.ControlHosts[h] = true
				}
			}
			for i, pem := range c.Certs {
				cert, err := parseCert(pem, certKey)
				if err != nil {
					return parsedConfig{err: fmt.Errorf("control plane certificate %d: %w", i+1, err)}
				}
				gl.ControlCerts = append(gl.ControlCerts, cert)
			}
		}
		return parsedConfig{global: gl}
	}
	var a contract.AppConfig
	if err := json.Unmarshal(data, &a); err != nil {
		return parsedConfig{err: fmt.Errorf("decode app config: %w", err)}
	}
	if err := paas.ValidateAppName(a.App); err != nil {
		return parsedConfig{err: err}
	}
	e := &Edge{Key: id, MaxBodyBytes: a.MaxBodyBytes, ReadTimeout: time.Duration(a.ReadTimeoutMS) * time.Millisecond}
	for _, d := range a.Domains {
		if strings.HasPrefix(d, "*.") && !a.NoVhost {
			e.Wildcards = append(e.Wildcards, canonicalHost(d))
		}
	}
	for i, c := range a.Certs {
		cert, err := parseCert(c, certKey)
		if err != nil {
			return parsedConfig{err: fmt.Errorf("app %s certificate %d: %w", a.App, i+1, err)}
		}
		e.Certs = append(e.Certs, cert)
	}
	return parsedConfig{app: &a, edge: e}
}

// parseCert reads a certificate chain and its key (sealed under certKey,
// or plain), with its leaf parsed.
func parseCert(c contract.CertPEM, certKey []byte) (*tls.Certificate, error) {
	keyPEM, err := contract.OpenCertKey(certKey, c.Key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair([]byte(c.Cert), []byte(keyPEM))
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// merge applies the route configuration to t: the global domain replaces the
// router's own in every app's default name, the more global domains add
// APP.D names, custom exact names are added (an app whose names are
// disabled gets none at all), the port is replaced, and the Edge is
// attached.
func (s *ConfigSource) merge(t Table, apps map[string]parsedConfig, global *Global) Table {
	t.Global = global
	oldSuffix := "." + canonicalHost(s.opts.Domain)
	t.Routes = slices.Clone(t.Routes) // the inner source's table stays as it was
	for i := range t.Routes {
		rt := &t.Routes[i]
		rt.Hosts = slices.Clip(rt.Hosts)
		if global != nil && global.Domain != "" && s.opts.Domain != "" {
			hosts := make([]string, 0, len(rt.Hosts)+4)
			for _, h := range rt.Hosts {
				if h == rt.App+oldSuffix {
					h = rt.App + "." + global.Domain
				}
				hosts = append(hosts, h)
			}
			rt.Hosts = hosts
		}
		if global != nil {
			for _, d := range global.MoreDomains {
				rt.Hosts = append(rt.Hosts, rt.App+"."+d)
			}
		}
		p, ok := apps[rt.App]
		if !ok {
			continue
		}
		if p.app.NoVhost {
			rt.Hosts = nil
		}
		for _, d := range p.app.Domains {
			if !strings.HasPrefix(d, "*.") && !p.app.NoVhost {
				rt.Hosts = append(rt.Hosts, d)
			}
		}
		if p.app.Port > 0 && p.app.Port < 65536 {
			bs := make([]Backend, 0, len(rt.Backends))
			for _, b := range rt.Backends {
				if ap, err := netip.ParseAddrPort(b.Addr); err == nil {
					b.Addr = netip.AddrPortFrom(ap.Addr(), uint16(p.app.Port)).String()
				}
				bs = append(bs, b)
			}
			rt.Backends = bs
		}
		rt.Edge = p.edge
	}
	return t
}
