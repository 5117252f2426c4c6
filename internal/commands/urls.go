package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/internal/routing"
)

// appURLs returns every URL app is served at, sorted: APP.DOMAIN and its
// exact custom domains, https where a valid certificate of the app covers
// the name (the router then redirects http there), http otherwise, with the
// router's port when it is not the scheme's default. Without routing (no
// router configured) it is the app's default URL alone.
func (p *Platform) appURLs(app string) ([]string, error) {
	if p.Routing == nil || p.RoutingStore == nil {
		return []string{p.AppURL(app)}, nil
	}
	r, err := p.RoutingStore.Routing(app)
	if err != nil {
		return nil, err
	}
	return p.routedURLs(r, p.Routing.DefaultHost(app), time.Now()), nil
}

// routedURLs are appURLs of an app whose routing settings are r and
// whose APP.DOMAIN is host.
func (p *Platform) routedURLs(r *paas.Routing, host string, now time.Time) []string {
	hosts := []string{host}
	for _, d := range r.Domains {
		if !strings.HasPrefix(d, "*.") && !slices.Contains(hosts, d) {
			hosts = append(hosts, d)
		}
	}
	urls := make([]string, 0, len(hosts))
	for _, h := range hosts {
		urls = append(urls, p.hostURL(h, p.servesHTTPS(r, h, now)))
	}
	slices.Sort(urls)
	return urls
}

// servesHTTPS reports whether the router serves host over HTTPS: it has a
// valid certificate of the app for it.
func (p *Platform) servesHTTPS(r *paas.Routing, host string, now time.Time) bool {
	if p.Routing.HTTPSPort() <= 0 {
		return false
	}
	for _, c := range []*paas.Cert{r.Cert, r.ACMECert} {
		if c != nil && now.After(c.NotBefore) && now.Before(c.NotAfter) && routing.Covers(c, host) {
			return true
		}
	}
	return false
}

func (p *Platform) hostURL(host string, https bool) string {
	scheme, port, std := "http", p.Routing.HTTPPort(), 80
	if https {
		scheme, port, std = "https", p.Routing.HTTPSPort(), 443
	}
	if port == std {
		return scheme + "://" + host
	}
	return fmt.Sprintf("%s://%s:%d", scheme, host, port)
}

// appURL is the app's URL as Dokku's `url` prints it: APP.DOMAIN's, unless
// only other names of the app are served over https: then the first of
// those.
func (p *Platform) appURL(app string) (string, error) {
	if p.Routing == nil || p.RoutingStore == nil {
		return p.AppURL(app), nil
	}
	// The app's settings and APP.DOMAIN are read once (apps:list --detail
	// makes the URL of every app it lists).
	r, err := p.RoutingStore.Routing(app)
	if err != nil {
		return "", err
	}
	host := p.Routing.DefaultHost(app)
	now := time.Now()
	if p.servesHTTPS(r, host, now) {
		return p.hostURL(host, true), nil
	}
	for _, u := range p.routedURLs(r, host, now) {
		if strings.HasPrefix(u, "https://") {
			return u, nil
		}
	}
	return p.hostURL(host, false), nil
}

func (p *Platform) url(_ context.Context, c *Call) error {
	if len(c.Args) > 0 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args, " ")))
	}
	u, err := p.appURL(c.App.Name)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Out, u)
	return nil
}

func (p *Platform) urls(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	if len(c.Args) > 0 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args, " ")))
	}
	urls, err := p.appURLs(c.App.Name)
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, urls)
	}
	for _, u := range urls {
		fmt.Fprintln(c.Out, u)
	}
	return nil
}
