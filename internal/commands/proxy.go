package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"paas/internal/paas"
)

// maxBodyLimit is the largest client-max-body-size accepted (and what "0"
// does not mean: 0 is no limit).
const maxBodyLimit = 1 << 40

func (p *Platform) proxyCommands() []*Command {
	return []*Command{
		{Name: "proxy:report", Args: "APP", Help: "Show how the router serves an app", App: true, Flags: formatFlag, Run: p.proxyReport},
		{Name: "proxy:set", Args: "APP client-max-body-size|proxy-read-timeout VALUE", Help: "Set a router limit: client-max-body-size (e.g. 10m, 0 for none), proxy-read-timeout (e.g. 60s, 0 for none)", App: true, MinArgs: 2, Run: p.proxySet},
		{Name: "ports:set", Args: "APP SCHEME:HOST-PORT:CONTAINER-PORT...", Help: "Set the container port the router sends an app's requests to, e.g. http:80:5000", App: true, MinArgs: 1, Run: p.portsSet},
		{Name: "ports:clear", Args: "APP", Help: "Send an app's requests to the port of its release again", App: true, Run: p.portsClear},
		{Name: "ports:report", Args: "APP", Help: "Show an app's port mappings", App: true, Flags: formatFlag, Run: p.portsReport},
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
			return nil, fmt.Errorf("invalid port mapping %q: the router listens for %s on port %d", sanitize(a), m.Scheme, want)
		}
		out = append(out, m)
	}
	for i := 1; i < len(out); i++ {
		if out[i].ContainerPort != out[0].ContainerPort {
			return nil, errors.New("every mapping must name the same container port: the router sends all of an app's requests to one port")
		}
	}
	return out, nil
}

func (p *Platform) portsSet(ctx context.Context, c *Call) error {
	maps, err := p.portMaps(c.Args)
	if err != nil {
		return err
	}
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Ports = maps }); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "-----> Setting port mappings for %s: %s\n", c.App.Name, portList(maps))
	return nil
}

func (p *Platform) portsClear(ctx context.Context, c *Call) error {
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Ports = nil }); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "-----> Clearing port mappings for %s\n", c.App.Name)
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

func (p *Platform) portsReport(_ context.Context, c *Call) error {
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
	fmt.Fprintf(c.Out, "-----> Setting %s to %s for %s\n", prop, val, c.App.Name)
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
