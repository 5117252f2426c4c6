package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
)

// maxBodyLimit is the largest client-max-body-size accepted (and what "0"
// does not mean: 0 is no limit).
const maxBodyLimit = 1 << 40

func (p *Platform) proxyCommands() []*Command {
	return []*Command{
		{Name: "proxy:report", Args: "APP", Help: "Show how the router serves an app", App: true, Flags: formatFlag, Run: p.proxyReport},
		{Name: "proxy:set", Args: "APP client-max-body-size|proxy-read-timeout VALUE", Help: "Set a router limit: client-max-body-size (e.g. 10m, 0 for none), proxy-read-timeout (e.g. 60s, 0 for none)", App: true, MinArgs: 2, Run: p.proxySet},
		{Name: "ports:set", Args: "APP SCHEME:HOST-PORT:CONTAINER-PORT...", Help: "Set the container port the router sends an app's requests to, e.g. http:80:5000 (host ports: the router's)", App: true, MinArgs: 1, Run: p.portsSet},
		{Name: "ports:add", Args: "APP SCHEME:HOST-PORT:CONTAINER-PORT...", Help: "Add port mappings, e.g. https:443:5000 (host ports: the router's)", App: true, MinArgs: 1, Run: p.portsAdd},
		{Name: "ports:remove", Args: "APP HOST-PORT|SCHEME:HOST-PORT[:CONTAINER-PORT]...", Help: "Remove port mappings: all of a host port, or one", App: true, MinArgs: 1, Run: p.portsRemove},
		{Name: "ports:list", Args: "APP", Help: "List an app's port mappings", App: true, Run: p.portsList},
		{Name: "ports:clear", Args: "APP", Help: "Send an app's requests to the port of its release again", App: true, Run: p.portsClear},
		{Name: "ports:report", Args: "APP", Help: "Show an app's port mappings (--ports-map-json: as JSON)", App: true, Flags: formatFlag, Run: p.portsReport},
	}
}

// portMaps reads the mappings: a scheme's host port must be the router's
// port for it, since the router is what listens.
func (p *Platform) portMaps(args []string) ([]paas.PortMap, error) {
	var out []paas.PortMap
	for _, a := range args {
		m, err := paas.ParsePortMap(a)
		if err != nil {
			return nil, fmt.Errorf("%s", sanitize(err.Error()))
		}
		want := p.Routing.HTTPPort()
		if m.Scheme == "https" {
			want = p.Routing.HTTPSPort()
		}
		if m.HostPort != want && !(m.Scheme == "http" && m.HostPort == 80) && !(m.Scheme == "https" && m.HostPort == 443) {
			if m.Scheme == "https" && want == 0 {
				return nil, fmt.Errorf("invalid port mapping %q: this installation serves no HTTPS (paasd --https-port 0)", sanitize(a))
			}
			return nil, fmt.Errorf("invalid port mapping %q: the router listens for %s on port %d (which %s:%d also names), and apps are served on the router's ports only: a mapping cannot open another host port",
				sanitize(a), m.Scheme, want, m.Scheme, map[string]int{"http": 80, "https": 443}[m.Scheme])
		}
		out = append(out, m)
	}
	return out, checkPortMaps(out)
}

// checkPortMaps refuses mappings the router cannot serve: two container
// ports, or one scheme and host port mapped twice.
func checkPortMaps(maps []paas.PortMap) error {
	for i := range maps {
		if maps[i].ContainerPort != maps[0].ContainerPort {
			return errors.New("every mapping must name the same container port: the router sends all of an app's requests to one port")
		}
		for _, o := range maps[:i] {
			if o.Scheme == maps[i].Scheme && o.HostPort == maps[i].HostPort {
				return fmt.Errorf("%s:%d is mapped twice (%s and %s)", o.Scheme, o.HostPort, o, maps[i])
			}
		}
	}
	return nil
}

func (p *Platform) portsAdd(ctx context.Context, c *Call) error {
	add, err := p.portMaps(c.Args)
	if err != nil {
		return err
	}
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	next := slices.Clone(r.Ports)
	if len(next) == 0 {
		next = p.effectivePorts(r, c.App)
	}
	var added []paas.PortMap
	for _, m := range add {
		if slices.Contains(next, m) {
			output.Step(c.Out, "Skipping %s: already mapped for %s", m, c.App.Name)
			continue
		}
		next = append(next, m)
		added = append(added, m)
	}
	if len(added) == 0 {
		return nil
	}
	if err := checkPortMaps(next); err != nil {
		return fmt.Errorf("%w; nothing changed", err)
	}
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Ports = next }); err != nil {
		return err
	}
	output.Step(c.Out, "Adding port mappings to %s: %s", c.App.Name, portList(added))
	return nil
}

func (p *Platform) portsRemove(ctx context.Context, c *Call) error {
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	if len(r.Ports) == 0 {
		return fmt.Errorf("%s has no port mappings set: its requests go to %s (ports:report)", c.App.Name, portList(p.effectivePorts(r, c.App)))
	}
	next := slices.Clone(r.Ports)
	var removed []paas.PortMap
	for _, a := range c.Args {
		match, err := portMatcher(a)
		if err != nil {
			return err
		}
		n := len(next)
		next = slices.DeleteFunc(next, func(m paas.PortMap) bool {
			if match(m) {
				removed = append(removed, m)
				return true
			}
			return false
		})
		if len(next) == n {
			return fmt.Errorf("%s maps no %s (its mappings: %s); nothing changed", c.App.Name, sanitize(a), portList(r.Ports))
		}
	}
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Ports = next }); err != nil {
		return err
	}
	output.Step(c.Out, "Removing port mappings from %s: %s", c.App.Name, portList(removed))
	return nil
}

// portMatcher reads one of ports:remove's arguments: HOST-PORT (every
// mapping of it), SCHEME:HOST-PORT or SCHEME:HOST-PORT:CONTAINER-PORT.
func portMatcher(a string) (func(paas.PortMap) bool, error) {
	bad := fmt.Errorf("invalid port mapping %q: use HOST-PORT, SCHEME:HOST-PORT or SCHEME:HOST-PORT:CONTAINER-PORT, e.g. 80 or http:80:5000", sanitize(a))
	parts := strings.Split(a, ":")
	if len(parts) == 3 {
		m, err := paas.ParsePortMap(a)
		if err != nil {
			return nil, fmt.Errorf("%s", sanitize(err.Error()))
		}
		return func(x paas.PortMap) bool { return x == m }, nil
	}
	host, err := strconv.Atoi(parts[len(parts)-1])
	if err != nil || host < 1 || host > 65535 || len(parts) > 2 {
		return nil, bad
	}
	if len(parts) == 1 {
		return func(x paas.PortMap) bool { return x.HostPort == host }, nil
	}
	if parts[0] != "http" && parts[0] != "https" {
		return nil, bad
	}
	return func(x paas.PortMap) bool { return x.Scheme == parts[0] && x.HostPort == host }, nil
}

func (p *Platform) portsList(_ context.Context, c *Call) error {
	if len(c.Args) > 0 {
		return errors.New("ports:list takes only the app name")
	}
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	output.Step(c.Out, "Port mappings for %s", c.App.Name)
	output.Step(c.Out, "%-18s %-25s %s", "scheme", "host port", "container port")
	for _, m := range p.effectivePorts(r, c.App) {
		fmt.Fprintf(c.Out, "%-25s %-25d %d\n", m.Scheme, m.HostPort, m.ContainerPort)
	}
	return nil
}

func (p *Platform) portsSet(ctx context.Context, c *Call) error {
	maps, err := p.portMaps(c.Args)
	if err != nil {
		return err
	}
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Ports = maps }); err != nil {
		return err
	}
	output.Step(c.Out, "Setting port mappings for %s: %s", c.App.Name, portList(maps))
	return nil
}

func (p *Platform) portsClear(ctx context.Context, c *Call) error {
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Ports = nil }); err != nil {
		return err
	}
	output.Step(c.Out, "Clearing port mappings for %s", c.App.Name)
	return nil
}

func (p *Platform) updateAndPublish(ctx context.Context, app string, fn func(*paas.Routing)) error {
	if _, err := p.RoutingStore.UpdateRouting(app, func(r *paas.Routing) error { fn(r); return nil }); err != nil {
		return err
	}
	return p.Routing.Publish(ctx, app)
}

func portList(maps []paas.PortMap) string {
	s := make([]string, len(maps))
	for i, m := range maps {
		s[i] = m.String()
	}
	return strings.Join(s, " ")
}

// effectivePorts are the app's mappings, or the default one.
func (p *Platform) effectivePorts(r *paas.Routing, app *paas.App) []paas.PortMap {
	if len(r.Ports) > 0 {
		return r.Ports
	}
	port := paas.DefaultPort
	if v, err := strconv.Atoi(app.Config["PORT"]); err == nil && v > 0 {
		port = v
	}
	maps := []paas.PortMap{{Scheme: "http", HostPort: p.Routing.HTTPPort(), ContainerPort: port}}
	if p.Routing.HTTPSPort() > 0 {
		maps = append(maps, paas.PortMap{Scheme: "https", HostPort: p.Routing.HTTPSPort(), ContainerPort: port})
	}
	return maps
}

// routingReport prints a report built from the app's routing settings.
func (p *Platform) routingReport(c *Call, title string, fields func(r *paas.Routing) []kv) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	return report(c, asJSON, c.App.Name+" "+title, fields(r))
}

// portJSON is one mapping as ports:report's --ports-map-json prints it.
type portJSON struct {
	Scheme        string `json:"scheme"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
}

func (p *Platform) portsReport(_ context.Context, c *Call) error {
	for flag, detected := range map[string]bool{"--ports-map-json": false, "--ports-map-detected-json": true} {
		if !c.Has(flag) {
			continue
		}
		r, err := p.RoutingStore.Routing(c.App.Name)
		if err != nil {
			return err
		}
		maps := r.Ports
		if detected {
			maps = p.effectivePorts(r, c.App)
		}
		list := make([]portJSON, 0, len(maps))
		for _, m := range maps {
			list = append(list, portJSON{m.Scheme, m.HostPort, m.ContainerPort})
		}
		return output.JSON(c.Out, list)
	}
	return p.routingReport(c, "ports information", func(r *paas.Routing) []kv {
		return []kv{
			{"Ports map", portList(r.Ports)},
			{"Ports map detected", portList(p.effectivePorts(r, c.App))},
		}
	})
}

func (p *Platform) proxyReport(_ context.Context, c *Call) error {
	return p.routingReport(c, "proxy information", func(r *paas.Routing) []kv {
		limit := "none"
		if r.MaxBodyBytes > 0 {
			limit = strconv.FormatInt(r.MaxBodyBytes, 10)
		}
		timeout := "none"
		if r.ReadTimeout > 0 {
			timeout = r.ReadTimeout.String()
		}
		return []kv{
			{"Proxy enabled", "true"},
			{"Proxy type", "paas-router"},
			{"Proxy port map", portList(p.effectivePorts(r, c.App))},
			{"Proxy vhosts", strings.Join(append([]string{p.Routing.DefaultHost(c.App.Name)}, r.Domains...), " ")},
			{"Proxy https", fmt.Sprint(r.Cert != nil || r.ACMECert != nil)},
			{"Proxy client max body size", limit},
			{"Proxy read timeout", timeout},
		}
	})
}

func (p *Platform) proxySet(ctx context.Context, c *Call) error {
	prop, val := c.Args[0], c.Args[1]
	switch prop {
	case "client-max-body-size":
		n, err := parseSize(val)
		if err != nil {
			return err
		}
		if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.MaxBodyBytes = n }); err != nil {
			return err
		}
	case "proxy-read-timeout":
		d, err := time.ParseDuration(val)
		if val == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 || d > 24*time.Hour {
			return fmt.Errorf("invalid proxy-read-timeout %q: use a duration such as 60s or 2m, at most 24h, or 0 for none", sanitize(val))
		}
		if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.ReadTimeout = d }); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown property %q: use client-max-body-size or proxy-read-timeout", sanitize(prop))
	}
	output.Step(c.Out, "Setting %s to %s for %s", prop, val, c.App.Name)
	return nil
}

// parseSize reads nginx-style sizes: 1024, 512k, 10m, 1g; 0 is no limit.
func parseSize(v string) (int64, error) {
	bad := fmt.Errorf("invalid client-max-body-size %q: use bytes or a number with k, m or g, e.g. 10m; 0 for no limit", sanitize(v))
	s := strings.ToLower(v)
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > maxBodyLimit/mult {
		return 0, bad
	}
	return n * mult, nil
}
