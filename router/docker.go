package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/internal/paas"
)

// DockerAPI is the part of the Docker client a DockerSource uses.
type DockerAPI interface {
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	TaskList(ctx context.Context, options swarm.TaskListOptions) ([]swarm.Task, error)
}

var _ DockerAPI = (*client.Client)(nil)

// DockerSource reads routes from Swarm: the services labelled with the
// installation, the web process type and routed=true (the control plane
// sets it once a release's tasks are healthy and removes it to drain them),
// and their running tasks' addresses on the installation's network. A read
// of everything is two API calls, whatever the number of apps; while Watch
// runs, Routes re-reads only what the event stream says changed (watch.go).
type DockerSource struct {
	api  DockerAPI
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	warned map[string]bool // problems with labels already logged
	w      watchState

	readMu sync.Mutex // serializes Routes; guards cache
	cache  routeCache
}

var _ Source = (*DockerSource)(nil)

// NewDockerSource returns a Source that reads the Swarm services of
// opts.Installation through api. It uses Installation, Domain, Network,
// ResyncInterval and Log from opts. With Network empty, a task's first
// address on any network but the ingress is used. It can watch (Watch) when
// api is also an EventsAPI.
func NewDockerSource(api DockerAPI, opts Options) *DockerSource {
	opts = opts.withDefaults()
	return &DockerSource{
		api:    api,
		opts:   opts,
		log:    opts.Log.With("component", "router"),
		warned: map[string]bool{},
	}
}

// Routes lists the installation's web services and their running tasks.
func (s *DockerSource) Routes(ctx context.Context) (Table, error) {
	if s.opts.Installation == "" {
		// An empty label value would match every installation.
		return Table{}, errors.New("list routes: no installation name")
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.mu.Lock()
	watching := s.w.on
	s.mu.Unlock()
	if watching {
		return s.cachedRoutes(ctx)
	}
	s.cache = routeCache{}
	services, tasks, err := s.list(ctx, "")
	if err != nil {
		return Table{}, err
	}
	return s.table(services, tasks), nil
}

// appRoute collects what the services of one app contribute.
type appRoute struct {
	route   Route
	primary string   // APP.DOMAIN
	extra   []string // from the hosts label
}

type webService struct {
	app  *appRoute
	port uint16 // 0: the port label is unusable, no backends
}

func (s *DockerSource) table(services []swarm.Service, tasks []swarm.Task) Table {
	apps := map[string]*appRoute{}
	byID := make(map[string]webService, len(services))
	for _, svc := range services {
		l := svc.Spec.Labels
		// Check again what the filter asked for: cheap, and it keeps a
		// daemon that ignores a filter from routing someone else's service.
		if l[paas.LabelInstallation] != s.opts.Installation || l[paas.LabelProcess] != paas.WebProcess {
			continue
		}
		name := l[paas.LabelApp]
		if err := paas.ValidateAppName(name); err != nil {
			s.warnOnce("service "+svc.Spec.Name+" app "+name, "service not routed: bad app label", "service", svc.Spec.Name, "err", err)
			continue
		}
		app := apps[name]
		if app == nil {
			app = &appRoute{route: Route{App: name}}
			if s.opts.Domain != "" {
				app.primary = canonicalHost(name + "." + s.opts.Domain)
			}
			apps[name] = app
		}
		for h := range strings.SplitSeq(l[paas.LabelHosts], ",") {
			h = canonicalHost(h)
			if h == "" {
				continue
			}
			if !validHost(h) {
				s.warnOnce("host "+svc.Spec.Name+" "+h, "host name not routed: invalid", "app", name, "host", h)
				continue
			}
			app.extra = append(app.extra, h)
		}
		port, err := parsePort(l[paas.LabelPort])
		if err != nil {
			s.warnOnce("port "+svc.Spec.Name+" "+l[paas.LabelPort], "app not reachable: bad port label", "app", name, "service", svc.Spec.Name, "err", err)
		}
		if l[paas.LabelRouted] != "true" {
			continue // known app, but these tasks get no traffic (yet, or any more)
		}
		byID[svc.ID] = webService{app: app, port: port}
	}

	for _, t := range tasks {
		ws, ok := byID[t.ServiceID]
		if !ok || ws.port == 0 {
			continue
		}
		if t.DesiredState != swarm.TaskStateRunning || t.Status.State != swarm.TaskStateRunning {
			continue
		}
		ip, ok := s.taskAddr(t)
		if !ok {
			continue
		}
		ws.app.route.Backends = append(ws.app.route.Backends, Backend{Addr: netip.AddrPortFrom(ip, ws.port).String()})
	}
	return s.assignHosts(apps)
}

// assignHosts gives every host name to one app: an app's own APP.DOMAIN is
// always its own; a name from the hosts label that two apps claim goes to the
// first app by name.
func (s *DockerSource) assignHosts(apps map[string]*appRoute) Table {
	names := make([]string, 0, len(apps))
	for name := range apps {
		names = append(names, name)
	}
	slices.Sort(names)
	owner := map[string]string{}
	for _, name := range names {
		if p := apps[name].primary; p != "" {
			owner[p] = name
		}
	}
	t := Table{Routes: make([]Route, 0, len(names))}
	for _, name := range names {
		app := apps[name]
		if app.primary != "" {
			app.route.Hosts = append(app.route.Hosts, app.primary)
		}
		for _, h := range app.extra {
			if o, taken := owner[h]; taken && o != name {
				s.warnOnce("claim "+name+" "+h, "host name not routed: another app has it", "app", name, "host", h, "owner", o)
				continue
			}
			owner[h] = name
			app.route.Hosts = append(app.route.Hosts, h)
		}
		t.Routes = append(t.Routes, app.route)
	}
	return t.normalize()
}

// taskAddr is the task's IP address on its app's own network (an app
// network of the installation, which the router is on), or on the
// installation network for an app deployed before apps had networks of
// their own. Other networks a task joins (network:set, a linked database's)
// are not the router's.
func (s *DockerSource) taskAddr(t swarm.Task) (netip.Addr, bool) {
	for _, na := range t.NetworksAttachments {
		l := na.Network.Spec.Labels
		appNet := l[paas.LabelInstallation] == s.opts.Installation && l[paas.LabelNetworkRole] == paas.NetworkRoleApp
		switch {
		case appNet:
		case s.opts.Network != "":
			if na.Network.Spec.Name != s.opts.Network {
				continue
			}
		case na.Network.Spec.Ingress:
			continue
		}
		for _, a := range na.Addresses { // CIDR, e.g. 10.0.1.5/24
			if p, err := netip.ParsePrefix(a); err == nil {
				return p.Addr(), true
			}
			if ip, err := netip.ParseAddr(a); err == nil {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

func (s *DockerSource) warnOnce(key, msg string, args ...any) {
	s.mu.Lock()
	seen := s.warned[key]
	s.warned[key] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, args...)
	}
}

// parsePort reads the port label; absent means the default port.
func parsePort(v string) (uint16, error) {
	if v == "" {
		return paas.DefaultPort, nil
	}
	p, err := strconv.ParseUint(v, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("invalid port %q", v)
	}
	return uint16(p), nil
}

// validHost accepts a lower-case DNS name (letters, digits, dashes, dots).
func validHost(h string) bool {
	if len(h) > 253 || h[0] == '.' || h[0] == '-' || strings.Contains(h, "..") {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
